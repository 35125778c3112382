//! A replica that answers with the wrong kind of reply is a failure, never
//! an acknowledgement. The misbehaving replica here is a real TCP server in
//! the test, speaking the protocol: it says hello and answers pings like a
//! replica, but answers every replica write with a read reply.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::Cluster;
use prost::Message;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::frame::encode_frame;
use ringkv::protocol::proto::{
    self, Body, Consistency, DigestEntry, Envelope, Hello, Pong, ReplicaRead, ReplicaReadReply,
};

/// Serves one connection: pongs to pings, a read reply to everything else.
fn serve_wrongly(stream: TcpStream, hello: Hello) {
    serve(stream, hello, |_| {
        Body::ReplicaReadReply(ReplicaReadReply::default())
    });
}

/// Serves one connection: pongs to pings, and `answer` to everything else.
fn serve(mut stream: TcpStream, hello: Hello, answer: fn(&Body) -> Body) {
    loop {
        let mut length = [0u8; 4];
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let Ok(request) = Envelope::decode(body.as_slice()) else {
            return;
        };
        let reply = match request.body {
            Some(Body::Ping(_)) => Body::Pong(Pong {
                replica_id: 3,
                hello: Some(hello.clone()),
                wall_micros: None,
            }),
            Some(other) => answer(&other),
            None => return,
        };
        let frame = encode_frame(&Envelope {
            request_id: request.request_id,
            body: Some(reply),
        });
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

#[test]
fn a_read_reply_to_a_write_is_not_an_acknowledgement() {
    let mut cluster = Cluster::start(4);
    cluster.kill(3);
    let listener = TcpListener::bind(&cluster.addrs[3]).expect("take replica 3's address");
    let hello = cluster.hello_of(3);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let hello = hello.clone();
            std::thread::spawn(move || serve_wrongly(stream, hello));
        }
    });
    cluster.wait_for_view(0, 3, true);
    // Key 200 lives on 3, 0, 1.
    let error = cluster
        .put(0, 200, "needs all three", Consistency::All)
        .expect_err("replica 3 never acknowledged");
    assert_eq!(error.kind, ErrorKind::Internal, "{error}");
    assert!(
        error
            .message
            .contains("replica 3: INTERNAL: answered a replica write with a replica read reply"),
        "{error}"
    );
    assert!(
        error.message.contains("the write was applied on 0,1"),
        "{error}"
    );
    std::thread::sleep(Duration::from_millis(10));
    cluster
        .put(0, 200, "two are enough", Consistency::Quorum)
        .expect("QUORUM needs only the two real replicas");
}

/// Replica 3 claims, in its digests, a version newer than any other, but
/// fails every read of the value.
fn claim_newer_but_never_send_it(request: &Body) -> Body {
    match request {
        Body::ReplicaRead(ReplicaRead {
            key: Some(key),
            digest_only: true,
        }) => Body::ReplicaReadReply(ReplicaReadReply {
            found: None,
            digest: Some(DigestEntry {
                key: *key,
                timestamp_micros: u64::MAX / 2,
                coordinator_id: 3,
            }),
        }),
        _ => Body::Error(proto::Error::from(
            ringkv::protocol::error::KvError::internal("this replica's disk is failing"),
        )),
    }
}

#[test]
fn a_replica_whose_newer_digest_cannot_be_fetched_is_replaced_by_a_spare() {
    let mut cluster = Cluster::start_with(4, &["--repair", "hinted-handoff"]);
    // Key 200 lives on 3, 0, 1.
    cluster
        .put(0, 200, "the real value", Consistency::All)
        .expect("put");
    cluster.kill(3);
    let listener = TcpListener::bind(&cluster.addrs[3]).expect("take replica 3's address");
    let hello = cluster.hello_of(3);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let hello = hello.clone();
            std::thread::spawn(move || serve(stream, hello, claim_newer_but_never_send_it));
        }
    });
    cluster.wait_for_view(0, 3, true);
    // Through 0, a QUORUM get reads 0's own copy and a digest from 1 or 3,
    // in turn: every get that asks 3 has to fall back to 1.
    for _ in 0..4 {
        assert_eq!(
            cluster.get(0, 200, Consistency::Quorum).expect("get"),
            Some("the real value".to_string())
        );
    }
}
