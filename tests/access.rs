//! Access control with `--secret-file`: every connection authenticates
//! first, replicas authenticate as replicas (the cluster works), clients
//! without the secret or with a wrong one are refused with UNAUTHENTICATED,
//! and a client can never send the replica-only messages, such as a
//! replica write stamped in the future.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{console_with, unique_dir, Cluster};
use prost::Message;
use ringkv::client::Client;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::frame::encode_frame;
use ringkv::protocol::proto::{Body, Consistency, Envelope, Ping, ReplicaWrite, Versioned};

fn secret_cluster() -> (Cluster, String) {
    let dir = unique_dir();
    let secret = dir.join("secret");
    std::fs::write(&secret, "open sesame\n").expect("write the secret");
    let path = secret.to_str().expect("path").to_string();
    (Cluster::start_with(4, &["--secret-file", &path]), path)
}

#[test]
fn replicas_authenticate_to_each_other_and_clients_need_the_secret() {
    let (cluster, secret_path) = secret_cluster();
    // The cluster came up: its replicas authenticated to each other.
    cluster
        .put(0, 200, "guarded", Consistency::All)
        .expect("authenticated put");
    assert_eq!(
        cluster.get(3, 200, Consistency::Quorum).expect("get"),
        Some("guarded".into())
    );
    let stranger = Client::new(cluster.addrs[1].clone());
    let error = rt::block_on(stranger.get(200, Consistency::One)).expect_err("no secret");
    assert_eq!(error.kind, ErrorKind::Unauthenticated, "{error}");
    let guesser = Client::new(cluster.addrs[1].clone()).with_secret(Some(b"open sesame!".to_vec()));
    let error = rt::block_on(guesser.put(200, "x", Consistency::One)).expect_err("wrong secret");
    assert_eq!(error.kind, ErrorKind::Unauthenticated, "{error}");
    assert_eq!(
        cluster.get(1, 200, Consistency::All).expect("get"),
        Some("guarded".into()),
        "nothing was applied"
    );
    // The console: refused without the secret, served with it.
    let refused = console_with(&cluster.config, 2, "get 200\n", &[]);
    assert!(
        refused[0].starts_with("ERROR UNAUTHENTICATED"),
        "{refused:?}"
    );
    let served = console_with(
        &cluster.config,
        2,
        "get 200\n",
        &["--secret-file", &secret_path],
    );
    assert_eq!(served, ["guarded"]);
}

#[test]
fn a_client_cannot_send_replica_messages_even_with_the_secret() {
    let (cluster, _) = secret_cluster();
    cluster
        .put(0, 10, "acknowledged", Consistency::All)
        .expect("put");
    // A client that knows the secret tries a replica write stamped nine
    // minutes ahead, which would otherwise beat every write for minutes.
    let client = cluster.client(1);
    let forged = Body::ReplicaWrite(ReplicaWrite {
        client_write: false,
        key: Some(10),
        version: Some(Versioned {
            value: "from the future".into(),
            timestamp_micros: ringkv::storage::clock::wall_micros() + 9 * 60 * 1_000_000,
            coordinator_id: 0,
            tombstone: false,
        }),
    });
    let error = rt::block_on(client.call(forged)).expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Unauthenticated, "{error}");
    assert_eq!(
        cluster.get(1, 10, Consistency::All).expect("get"),
        Some("acknowledged".into())
    );
    // Before authenticating, even a ping is refused, on a raw socket.
    let mut raw = TcpStream::connect(&cluster.addrs[1]).expect("connect");
    raw.write_all(&encode_frame(&Envelope {
        request_id: 3,
        body: Some(Body::Ping(Ping {
            sender_id: 2,
            hello: None,
        })),
    }))
    .expect("send");
    let mut prefix = [0u8; 4];
    raw.read_exact(&mut prefix).expect("reply");
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    raw.read_exact(&mut body).expect("reply body");
    let reply = Envelope::decode(body.as_slice()).expect("decode");
    match reply.body {
        Some(Body::Error(error)) => {
            assert_eq!(
                error.kind,
                ringkv::protocol::proto::ErrorKind::Unauthenticated as i32
            )
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[test]
fn a_replica_started_without_the_secret_is_counted_down_and_never_a_source() {
    let (mut cluster, secret_path) = secret_cluster();
    cluster
        .put(0, 10, "guarded", Consistency::All)
        .expect("put");
    // Replica 2 restarted on its own data, but without --secret-file.
    cluster.kill(2);
    let (config, data) = (cluster.config.clone(), cluster.data_dir(2));
    cluster.spawn_as(2, &config, &data, &[]);
    cluster.wait_for_port(2);
    // Its peers refuse it either way round: it cannot authenticate to them,
    // and they will not count a replica that requires no secret.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = rt::block_on(cluster.client(0).status()).expect("status");
        let view = status.peers.iter().find(|p| p.replica_id == 2).cloned();
        let view = view.expect("peer 2");
        if view
            .refused
            .contains("does not require the cluster's secret")
        {
            assert!(!view.up, "{view:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{view:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A stranger, with no secret, writes to the open replica.
    let stranger = Client::new(cluster.addrs[2].clone());
    let forged = Body::ReplicaWrite(ReplicaWrite {
        key: Some(10),
        version: Some(Versioned {
            value: "stranger".into(),
            timestamp_micros: ringkv::storage::clock::wall_micros() + 200_000,
            coordinator_id: 2,
            tombstone: false,
        }),
        client_write: false,
    });
    rt::block_on(stranger.call(forged)).expect("the open replica takes it");
    // `ringkv repair` with the secret refuses to ask the open replica, and
    // the others' rounds never take from it.
    let repair = cluster.run_command(&[
        "repair",
        "--config",
        cluster.config.to_str().expect("path"),
        "--secret-file",
        &secret_path,
    ]);
    let printed = String::from_utf8_lossy(&repair.stdout);
    assert!(!repair.status.success(), "{printed}");
    assert!(
        printed.contains("replica 2: ERROR") && printed.contains("does not require the secret"),
        "{printed}"
    );
    for via in [0, 1, 3] {
        assert_eq!(
            cluster.get(via, 10, Consistency::Quorum).expect("get"),
            Some("guarded".into()),
            "through {via}"
        );
    }
    for holder in [0, 1] {
        let held = cluster.held(3, holder, 10).expect("answers");
        assert_eq!(
            held.map(|v| v.value),
            Some("guarded".into()),
            "replica {holder}"
        );
    }
}
