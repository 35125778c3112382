//! Bad input gets a clear answer, and the replica keeps serving everyone
//! else: frames written by hand on a raw socket to a real replica process.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Cluster;
use prost::Message;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::frame::{encode_frame, DEFAULT_MAX_FRAME_BYTES};
use ringkv::protocol::proto::{
    self, Body, Consistency, Envelope, GetReply, GetRequest, Pong, PutRequest, ReplicaWrite,
    Versioned,
};

/// How long a raw read waits before the test gives up on a reply.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A raw connection to replica `id`, with read and write timeouts.
fn connect(cluster: &Cluster, id: usize) -> TcpStream {
    let stream = TcpStream::connect(&cluster.addrs[id]).expect("connect to replica");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes raw bytes (a hand-made frame, or part of one).
fn send_raw(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("write to replica");
    stream.flush().unwrap();
}

/// A frame with the given body bytes: 4-byte big-endian length, then the body.
fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

fn send(stream: &mut TcpStream, request_id: u64, body: Body) {
    send_raw(
        stream,
        &encode_frame(&Envelope {
            request_id,
            body: Some(body),
        }),
    );
}

/// Reads exactly one reply frame and decodes it.
fn read_reply(stream: &mut TcpStream) -> Envelope {
    let mut prefix = [0u8; 4];
    stream
        .read_exact(&mut prefix)
        .expect("read a reply's length prefix");
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len <= DEFAULT_MAX_FRAME_BYTES, "reply claims {len} bytes");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).expect("read a reply's body");
    Envelope::decode(body.as_slice()).expect("the reply is a valid Envelope")
}

/// Asserts that the reply is an error of `kind` for `request_id` whose
/// message contains `mentions`; returns the message.
fn assert_error(
    reply: &Envelope,
    request_id: u64,
    kind: proto::ErrorKind,
    mentions: &str,
) -> String {
    assert_eq!(reply.request_id, request_id, "request id of {reply:?}");
    let Some(Body::Error(error)) = &reply.body else {
        panic!("expected an error reply, got {reply:?}");
    };
    assert_eq!(error.kind, kind as i32, "error kind of {error:?}");
    assert!(
        error.message.contains(mentions),
        "error message {:?} should mention {mentions:?}",
        error.message
    );
    error.message.clone()
}

fn assert_invalid(reply: &Envelope, request_id: u64, mentions: &str) -> String {
    assert_error(reply, request_id, proto::ErrorKind::Invalid, mentions)
}

/// Reads until the server closes the connection; fails if it sends more
/// frames first or keeps the connection open.
fn assert_closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        // A reset also means closed; a timeout does not.
        Err(e) if e.kind() == IoErrorKind::ConnectionReset => {}
        Ok(n) => panic!("expected the server to close the connection, got {n} more bytes"),
        Err(e) => panic!("expected the server to close the connection, got {e}"),
    }
}

/// The replica still runs and still serves an ordinary put and get, through
/// a fresh client connection.
fn assert_still_serving(cluster: &mut Cluster, id: usize) {
    assert!(cluster.is_running(id), "replica {id} exited");
    let value = format!("still here {id}");
    cluster
        .put(id, 5, &value, Consistency::Quorum)
        .expect("put after bad input");
    assert_eq!(
        cluster
            .get(id, 5, Consistency::Quorum)
            .expect("get after bad input"),
        Some(value)
    );
    assert!(cluster.is_running(id), "replica {id} exited");
}

/// The same raw connection still answers a valid get with its request id.
fn assert_connection_serves(stream: &mut TcpStream, request_id: u64) {
    send(
        stream,
        request_id,
        Body::Get(GetRequest {
            key: Some(77),
            consistency: Consistency::Quorum as i32,
        }),
    );
    let reply = read_reply(stream);
    assert_eq!(reply.request_id, request_id, "reply {reply:?}");
    assert!(
        matches!(reply.body, Some(Body::GetReply(_))),
        "expected a get reply, got {reply:?}"
    );
}

fn get(key: Option<u32>, consistency: i32) -> Body {
    Body::Get(GetRequest { key, consistency })
}

fn put(key: Option<u32>, value: &str, consistency: i32) -> Body {
    Body::Put(PutRequest {
        key,
        value: value.to_string(),
        consistency,
    })
}

/// The resident memory of the replica process serving `id`, in KiB, found
/// through its command line (its data directory is unique to it).
fn replica_rss_kib(cluster: &Cluster, id: usize) -> Option<u64> {
    let data_dir = cluster.data_dir(id);
    let needle = data_dir.to_str()?.as_bytes().to_vec();
    for entry in std::fs::read_dir("/proc").ok()? {
        let path = entry.ok()?.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let is_it = cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == needle.as_slice());
        if !is_it {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        return line.split_whitespace().nth(1)?.parse().ok();
    }
    None
}

fn wait_for_log(cluster: &Cluster, id: usize, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = cluster.log(id);
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "replica {id}'s log never mentioned {text:?}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_frame_that_is_not_protobuf_gets_invalid_with_id_0_and_the_connection_goes_on() {
    let mut cluster = Cluster::start(4);
    let mut stream = connect(&cluster, 1);
    send_raw(&mut stream, &frame_of(&[0xff, 0xff, 0xff]));
    let reply = read_reply(&mut stream);
    assert_invalid(&reply, 0, "not a valid Envelope");
    assert_connection_serves(&mut stream, 9);

    // Several garbage frames in a row, then a good one: each garbage frame
    // gets exactly one error, in order, before the good reply.
    let mut burst = Vec::new();
    for garbage in [&[0x0a, 0xff][..], &[0xff; 10][..], &[0x52, 0x05, 0x01][..]] {
        burst.extend(frame_of(garbage));
    }
    send_raw(&mut stream, &burst);
    for _ in 0..3 {
        assert_invalid(&read_reply(&mut stream), 0, "not a valid Envelope");
    }
    assert_connection_serves(&mut stream, 10);
    assert_still_serving(&mut cluster, 1);
}

#[test]
fn a_length_prefix_over_the_limit_gets_invalid_then_the_connection_closes() {
    let mut cluster = Cluster::start(4);
    let rss_before = replica_rss_kib(&cluster, 2);
    for claimed in [u32::MAX, (DEFAULT_MAX_FRAME_BYTES + 1) as u32] {
        let mut stream = connect(&cluster, 2);
        send_raw(&mut stream, &claimed.to_be_bytes());
        let reply = read_reply(&mut stream);
        let message = assert_invalid(&reply, 0, "exceeds the limit");
        assert!(
            message.contains(&claimed.to_string())
                && message.contains(&DEFAULT_MAX_FRAME_BYTES.to_string()),
            "message {message:?} should name the claim and the limit"
        );
        assert_closed_by_server(&mut stream);
        assert_still_serving(&mut cluster, 2);
    }
    // Exactly the limit is accepted as a claim: the replica waits for the
    // body rather than refusing, and a short body then closing is logged.
    let mut stream = connect(&cluster, 2);
    send_raw(&mut stream, &(DEFAULT_MAX_FRAME_BYTES as u32).to_be_bytes());
    send_raw(&mut stream, &[0u8; 100]);
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4];
    match stream.read(&mut buf) {
        Err(e) if matches!(e.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) => {}
        other => panic!("a claim of exactly the limit must not be refused: {other:?}"),
    }
    // Claimed, not allocated: the replica's memory has not grown by
    // anything like the claimed sizes.
    if let (Some(before), Some(after)) = (rss_before, replica_rss_kib(&cluster, 2)) {
        assert!(
            after < before + 8 * 1024,
            "replica RSS grew from {before} KiB to {after} KiB"
        );
    }
    drop(stream);
    assert_still_serving(&mut cluster, 2);
}

#[test]
fn the_refusal_of_an_over_limit_frame_survives_the_body_that_follows_it() {
    let mut cluster = Cluster::start(4);
    // A client that sends its oversized frame in one go: prefix and 4 MiB
    // of body are on the wire before it reads anything. The replica must
    // read past them before closing, or the reset would destroy its answer.
    let mut stream = connect(&cluster, 1);
    let claimed = (DEFAULT_MAX_FRAME_BYTES + 1) as u32;
    send_raw(&mut stream, &claimed.to_be_bytes());
    send_raw(&mut stream, &vec![b'x'; 4 * 1024 * 1024]);
    let reply = read_reply(&mut stream);
    assert_invalid(&reply, 0, "exceeds the limit");
    assert_closed_by_server(&mut stream);
    assert_still_serving(&mut cluster, 1);
}

#[test]
fn a_connection_closed_mid_frame_is_logged_and_the_replica_keeps_serving() {
    let mut cluster = Cluster::start(4);
    // Half a length prefix.
    let mut stream = connect(&cluster, 0);
    send_raw(&mut stream, &[0, 0]);
    drop(stream);
    wait_for_log(&cluster, 0, "after 2 of 4 bytes");
    assert_still_serving(&mut cluster, 0);

    // A prefix claiming 100 bytes, then 10 of them.
    let mut stream = connect(&cluster, 0);
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(&[7u8; 10]);
    send_raw(&mut stream, &partial);
    drop(stream);
    let log = wait_for_log(&cluster, 0, "after 14 of 104 bytes");
    assert!(log.contains("mid-frame"), "log:\n{log}");
    assert_still_serving(&mut cluster, 0);
}

#[test]
fn keys_out_of_range_or_missing_are_invalid() {
    let mut cluster = Cluster::start(4);
    let mut stream = connect(&cluster, 3);
    let quorum = Consistency::Quorum as i32;
    send(&mut stream, 1, get(Some(256), quorum));
    assert_invalid(&read_reply(&mut stream), 1, "key 256 is out of range");
    send(&mut stream, 2, put(Some(1000), "v", quorum));
    assert_invalid(&read_reply(&mut stream), 2, "key 1000 is out of range");
    send(&mut stream, 3, put(Some(u32::MAX), "v", quorum));
    assert_invalid(&read_reply(&mut stream), 3, "out of range");
    send(&mut stream, 4, get(None, quorum));
    assert_invalid(&read_reply(&mut stream), 4, "no key");
    send(&mut stream, 5, put(None, "v", quorum));
    assert_invalid(&read_reply(&mut stream), 5, "no key");
    send(
        &mut stream,
        6,
        Body::Inspect(proto::InspectRequest { key: Some(256) }),
    );
    assert_invalid(&read_reply(&mut stream), 6, "out of range");
    send(
        &mut stream,
        7,
        Body::ReplicaRead(proto::ReplicaRead::default()),
    );
    assert_invalid(&read_reply(&mut stream), 7, "no key");
    // 255 is the last valid key.
    send(&mut stream, 8, put(Some(255), "edge", quorum));
    let reply = read_reply(&mut stream);
    assert_eq!(reply.request_id, 8);
    assert!(matches!(reply.body, Some(Body::PutReply(_))), "{reply:?}");
    assert_eq!(
        cluster.get(3, 255, Consistency::Quorum).unwrap(),
        Some("edge".to_string())
    );
    assert_still_serving(&mut cluster, 3);
}

#[test]
fn unspecified_and_unknown_consistency_levels_are_invalid() {
    let mut cluster = Cluster::start(4);
    let mut stream = connect(&cluster, 1);
    send(&mut stream, 11, get(Some(5), 0));
    assert_invalid(&read_reply(&mut stream), 11, "consistency level");
    send(&mut stream, 12, get(Some(5), 7));
    assert_invalid(&read_reply(&mut stream), 12, "consistency level 7");
    send(&mut stream, 13, put(Some(6), "never", 0));
    assert_invalid(&read_reply(&mut stream), 13, "consistency level");
    send(&mut stream, 14, put(Some(6), "never", 7));
    assert_invalid(&read_reply(&mut stream), 14, "consistency level 7");
    send(&mut stream, 15, put(Some(6), "never", -1));
    assert_invalid(&read_reply(&mut stream), 15, "consistency level");
    // The refused puts wrote nothing.
    assert_eq!(cluster.get(1, 6, Consistency::All).unwrap(), None);
    assert_still_serving(&mut cluster, 1);
}

#[test]
fn a_value_over_a_configured_limit_is_invalid_and_one_at_the_limit_is_stored() {
    let mut cluster = Cluster::start_with(4, &["--max-value-bytes", "1000"]);
    let over = "x".repeat(1001);
    let error = cluster
        .put(0, 20, &over, Consistency::Quorum)
        .expect_err("a 1001-byte value is over the limit");
    assert_eq!(error.kind, ErrorKind::Invalid, "{error:?}");
    assert!(
        error.message.contains("limit") && error.message.contains("1000"),
        "{error:?}"
    );
    assert_eq!(cluster.get(0, 20, Consistency::All).unwrap(), None);

    // Bytes, not characters: 334 three-byte characters are 1002 bytes.
    let wide = "€".repeat(334);
    let error = cluster
        .put(0, 20, &wide, Consistency::Quorum)
        .expect_err("1002 bytes is over the limit");
    assert_eq!(error.kind, ErrorKind::Invalid, "{error:?}");

    let at = "y".repeat(1000);
    cluster
        .put(0, 20, &at, Consistency::Quorum)
        .expect("a 1000-byte value is at the limit");
    assert_eq!(cluster.get(2, 20, Consistency::All).unwrap(), Some(at));

    // A replica write bypassing the coordinator is held to the same limit.
    let reply = rt::block_on(cluster.client(1).call(Body::ReplicaWrite(ReplicaWrite {
        client_write: false,
        key: Some(21),
        version: Some(Versioned {
            value: over,
            timestamp_micros: 1,
            coordinator_id: 0,
            tombstone: false,
        }),
    })));
    let error = reply.expect_err("an oversized replica write");
    assert_eq!(error.kind, ErrorKind::Invalid, "{error:?}");
    assert_still_serving(&mut cluster, 0);
    assert_still_serving(&mut cluster, 1);
}

#[test]
fn a_value_over_the_default_one_mib_limit_is_invalid_and_one_mib_is_stored() {
    let mut cluster = Cluster::start(4);
    let mib = 1024 * 1024;
    let client = cluster.client(3);
    let over = "o".repeat(mib + 1);
    let error = rt::block_on(client.put(30, &over, Consistency::Quorum))
        .expect_err("1 MiB + 1 byte is over the default limit");
    assert_eq!(error.kind, ErrorKind::Invalid, "{error:?}");
    assert!(error.message.contains("limit"), "{error:?}");
    assert!(error.message.contains(&mib.to_string()), "{error:?}");

    let at = "a".repeat(mib);
    rt::block_on(client.put(30, &at, Consistency::Quorum)).expect("exactly 1 MiB is allowed");
    let found = rt::block_on(client.get(30, Consistency::All))
        .expect("get the 1 MiB value")
        .expect("the value is there");
    assert_eq!(found.value.len(), mib);
    assert!(found.value == at, "the 1 MiB value came back changed");
    assert_still_serving(&mut cluster, 3);
}

#[test]
fn a_string_field_that_is_not_utf8_is_invalid() {
    let mut cluster = Cluster::start(4);
    let envelope = Envelope {
        request_id: 3,
        body: Some(put(Some(5), "ab", Consistency::Quorum as i32)),
    };
    let mut body = envelope.encode_to_vec();
    // The value field: tag (field 2, length-delimited) 0x12, length 2, "ab".
    let at = body
        .windows(4)
        .position(|w| w == [0x12, 0x02, b'a', b'b'])
        .expect("the value field is in the encoding");
    body[at + 2] = 0xff;
    body[at + 3] = 0xfe;
    assert!(
        Envelope::decode(body.as_slice()).is_err(),
        "the patch broke UTF-8"
    );

    let mut stream = connect(&cluster, 2);
    send_raw(&mut stream, &frame_of(&body));
    let reply = read_reply(&mut stream);
    assert_invalid(&reply, 0, "not a valid Envelope");
    assert_connection_serves(&mut stream, 4);
    // Nothing was written for key 5 before the check below writes it.
    assert_eq!(cluster.get(2, 5, Consistency::All).unwrap(), None);
    assert_still_serving(&mut cluster, 2);
}

#[test]
fn a_reply_sent_as_a_request_is_invalid() {
    let mut cluster = Cluster::start(4);
    let mut stream = connect(&cluster, 0);
    send(&mut stream, 21, Body::GetReply(GetReply { found: None }));
    assert_invalid(&read_reply(&mut stream), 21, "is a reply");
    send(
        &mut stream,
        22,
        Body::Pong(Pong {
            replica_id: 3,
            hello: None,
            wall_micros: None,
        }),
    );
    assert_invalid(&read_reply(&mut stream), 22, "is a reply");
    send(
        &mut stream,
        23,
        Body::Error(proto::Error {
            kind: proto::ErrorKind::Internal as i32,
            message: "boom".into(),
        }),
    );
    assert_invalid(&read_reply(&mut stream), 23, "is a reply");
    assert_connection_serves(&mut stream, 24);
    assert_still_serving(&mut cluster, 0);
}

#[test]
fn an_envelope_with_no_body_is_invalid() {
    let mut cluster = Cluster::start(4);
    let mut stream = connect(&cluster, 1);
    send_raw(
        &mut stream,
        &encode_frame(&Envelope {
            request_id: 31,
            body: None,
        }),
    );
    assert_invalid(&read_reply(&mut stream), 31, "no body");
    // An empty frame decodes as an envelope with neither id nor body; id 0
    // is reserved for errors about unreadable frames, so it is refused.
    send_raw(&mut stream, &frame_of(&[]));
    assert_invalid(&read_reply(&mut stream), 0, "request id 0 is reserved");
    // So is a well-formed request that uses id 0: its reply could not be
    // told apart from an error about an unreadable frame.
    send_raw(
        &mut stream,
        &encode_frame(&Envelope {
            request_id: 0,
            body: Some(Body::Get(GetRequest {
                key: Some(1),
                consistency: Consistency::One as i32,
            })),
        }),
    );
    assert_invalid(&read_reply(&mut stream), 0, "request id 0 is reserved");
    assert_connection_serves(&mut stream, 32);
    assert_still_serving(&mut cluster, 1);
}

#[test]
fn pipelined_requests_are_each_answered_exactly_once() {
    let mut cluster = Cluster::start(4);
    cluster.put(0, 40, "forty", Consistency::All).unwrap();
    let mut stream = connect(&cluster, 0);
    let count = 200u64;
    let first_id = 1_000u64;
    let mut burst = Vec::new();
    for i in 0..count {
        // Every fourth request asks for key 40 (present); the rest for
        // keys nobody wrote.
        let key = if i.is_multiple_of(4) {
            40
        } else {
            100 + (i % 50) as u32
        };
        burst.extend(encode_frame(&Envelope {
            request_id: first_id + i,
            body: Some(get(Some(key), Consistency::One as i32)),
        }));
    }
    send_raw(&mut stream, &burst);
    let mut seen = HashSet::new();
    for _ in 0..count {
        let reply = read_reply(&mut stream);
        let id = reply.request_id;
        assert!(
            (first_id..first_id + count).contains(&id),
            "unexpected request id {id}"
        );
        assert!(seen.insert(id), "request id {id} answered twice");
        let Some(Body::GetReply(GetReply { found })) = reply.body else {
            panic!("expected a get reply for {id}, got {reply:?}");
        };
        let value = found.map(|v| v.value);
        if (id - first_id).is_multiple_of(4) {
            assert_eq!(value.as_deref(), Some("forty"), "request {id}");
        } else {
            assert_eq!(value, None, "request {id}");
        }
    }
    assert_eq!(seen.len(), count as usize);
    // Nothing more arrives.
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    match stream.read(&mut buf) {
        Err(e) if matches!(e.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) => {}
        other => panic!("expected no further replies, got {other:?}"),
    }
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    assert_connection_serves(&mut stream, 5_000);
    assert_still_serving(&mut cluster, 0);
}

#[test]
fn a_replica_write_that_is_misrouted_malformed_or_from_the_future_is_invalid() {
    let mut cluster = Cluster::start(4);
    let mut stream = connect(&cluster, 2);
    let version = Versioned {
        value: "direct".into(),
        timestamp_micros: 1,
        coordinator_id: 0,
        tombstone: false,
    };
    send(
        &mut stream,
        41,
        Body::ReplicaWrite(ReplicaWrite {
            client_write: false,
            key: Some(256),
            version: Some(version.clone()),
        }),
    );
    assert_invalid(&read_reply(&mut stream), 41, "key 256 is out of range");
    send(
        &mut stream,
        42,
        Body::ReplicaWrite(ReplicaWrite {
            client_write: false,
            key: None,
            version: Some(version),
        }),
    );
    assert_invalid(&read_reply(&mut stream), 42, "no key");
    send(
        &mut stream,
        43,
        Body::ReplicaWrite(ReplicaWrite {
            client_write: false,
            key: Some(130),
            version: None,
        }),
    );
    assert_invalid(&read_reply(&mut stream), 43, "no version");
    let write = |key: u32, version: Versioned| {
        Body::ReplicaWrite(ReplicaWrite {
            client_write: false,
            key: Some(key),
            version: Some(version),
        })
    };
    let now = ringkv::storage::clock::wall_micros();
    let good = Versioned {
        value: "direct".into(),
        timestamp_micros: now,
        coordinator_id: 0,
        tombstone: false,
    };
    // Key 10 lives on 0, 1, 2: replica 2 holds it, but not key 200 (3, 0, 1).
    send(&mut stream, 45, write(200, good.clone()));
    assert_invalid(
        &read_reply(&mut stream),
        45,
        "replica 2 does not hold key 200",
    );
    // A coordinator that is not in the ring.
    let stranger = Versioned {
        coordinator_id: 9,
        ..good.clone()
    };
    send(&mut stream, 46, write(10, stranger));
    assert_invalid(
        &read_reply(&mut stream),
        46,
        "coordinator 9, which is not in the ring",
    );
    // A timestamp from the future (beyond the 500 ms clock fence) would
    // beat every later write of the key.
    for (id, timestamp_micros) in [
        (47, u64::MAX),
        (48, now + 3_600_000_000),
        (49, now + 9 * 60 * 1_000_000),
        (50, now + 2_000_000),
    ] {
        let future = Versioned {
            timestamp_micros,
            ..good.clone()
        };
        send(&mut stream, id, write(10, future));
        assert_invalid(
            &read_reply(&mut stream),
            id,
            "clock fence: the write of coordinator 0 is stamped",
        );
    }
    // None of them stored anything on this replica.
    send(&mut stream, 44, Body::Status(proto::StatusRequest {}));
    let reply = read_reply(&mut stream);
    assert_eq!(reply.request_id, 44);
    let Some(Body::StatusReply(status)) = reply.body else {
        panic!("expected a status reply, got {reply:?}");
    };
    assert_eq!(status.keys_held, 0, "{status:?}");
    assert_still_serving(&mut cluster, 2);
}

#[test]
fn the_client_refuses_a_request_too_large_for_any_frame_without_sending_it() {
    let mut cluster = Cluster::start(4);
    let value = "v".repeat(DEFAULT_MAX_FRAME_BYTES);
    let error = ringkv::ops::rt::block_on(cluster.client(0).put(10, &value, Consistency::Quorum))
        .expect_err("a value larger than any frame");
    assert_eq!(error.kind, ErrorKind::Invalid, "{error}");
    assert!(error.message.contains("over the frame limit"), "{error}");
    assert!(
        !cluster.log(0).contains("exceeds the limit"),
        "nothing reached the replica:\n{}",
        cluster.log(0)
    );
    assert_still_serving(&mut cluster, 0);
}
