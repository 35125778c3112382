//! Stopping and slow clients: SIGTERM stops a replica cleanly under load
//! (exit 0 within 5 s, requests in progress answered, nothing acknowledged
//! lost), and a connection that starts a frame and goes silent is closed
//! while idle connections and other clients are served.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::error::ErrorKind;
use ringkv::proto::Consistency;
use ringkv::rt;

#[test]
fn sigterm_stops_a_busy_replica_cleanly_and_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(4);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8u32)
        .map(|writer| {
            let (client, stop) = (cluster.client(0), stop.clone());
            std::thread::spawn(move || {
                let mut acked = HashMap::new();
                let mut errors = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = writer * 30 + 1;
                    match rt::block_on(client.put(key, &n.to_string(), Consistency::Quorum)) {
                        Ok(_) => {
                            acked.insert(key, n);
                        }
                        Err(error) => errors.push(error),
                    }
                }
                (acked, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let terminated = Instant::now();
    cluster.signal(0, "TERM");
    assert!(
        cluster.wait_for_exit(0),
        "SIGTERM ends the replica with status 0"
    );
    let took = terminated.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashMap::new();
    for writer in writers {
        let (acked, errors) = writer.join().expect("writer");
        acknowledged.extend(acked);
        for error in errors {
            // Refused while stopping, or the coordinator is gone: both say
            // so; none may claim a success that did not happen.
            assert!(
                matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
                "{error}"
            );
        }
    }
    let log = cluster.log(0);
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    assert!(
        log.contains("every connection finished its requests"),
        "{log}"
    );
    cluster.restart(0);
    for (key, last) in acknowledged {
        let read: u64 = cluster
            .get(0, key, Consistency::Quorum)
            .expect("get")
            .expect("a value")
            .parse()
            .expect("a number");
        assert!(read >= last, "key {key}: acknowledged {last}, read {read}");
    }
}

#[test]
fn a_half_sent_frame_is_given_up_while_idle_connections_stay() {
    let cluster = Cluster::start_with(4, &["--frame-read-timeout-ms", "300"]);
    let mut idle = TcpStream::connect(&cluster.addrs[1]).expect("connect");
    let mut slow = TcpStream::connect(&cluster.addrs[1]).expect("connect");
    slow.write_all(&[0, 0]).expect("half a length prefix");
    let started = Instant::now();
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buffer = [0u8; 64];
    let closed = matches!(slow.read(&mut buffer), Ok(0) | Err(_));
    assert!(closed, "the half-sent frame's connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Meanwhile and afterwards, everyone else is served, including a
    // connection that sat idle for longer than the timeout.
    cluster
        .put(1, 5, "still serving", Consistency::All)
        .expect("put");
    std::thread::sleep(Duration::from_millis(400));
    let request = ringkv::frame::encode_frame(&ringkv::proto::Envelope {
        request_id: 1,
        body: Some(ringkv::proto::Body::Get(ringkv::proto::GetRequest {
            key: Some(5),
            consistency: Consistency::One as i32,
        })),
    });
    idle.write_all(&request).expect("send after idling");
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut prefix = [0u8; 4];
    idle.read_exact(&mut prefix)
        .expect("an answer after idling");
    let log = cluster.log(1);
    assert!(log.contains("not finished within 300 ms"), "{log}");
}

#[test]
fn clients_filling_every_slot_cannot_lock_a_restarted_peer_out() {
    let mut cluster = Cluster::start(4);
    cluster.kill(0);
    cluster.spawn_with(0, &["--max-connections", "3"]);
    cluster.wait_until_all_see_each_other();
    std::thread::sleep(Duration::from_millis(100));
    // Three idle clients take every client slot of replica 0.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&cluster.addrs[0]).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // A fourth client is refused, with a typed error, after its first request.
    let fourth = ringkv::client::Client::new(cluster.addrs[0].clone());
    let error = rt::block_on(fourth.get(10, Consistency::One)).expect_err("no client slot");
    assert!(
        matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
        "{error}"
    );
    // Replica 1 restarts: its connections to replica 0 come in on the peer
    // allowance, and replica 0 sees it again.
    cluster.kill(1);
    cluster.spawn(1);
    cluster.wait_for_port(1);
    // Key 10 lives on 0, 1, 2: ALL through coordinator 1 needs replica 0.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cluster.put(1, 10, "through the peer allowance", Consistency::All) {
            Ok(_) => break,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("replica 1 never reached replica 0: {error}"),
        }
    }
    assert_eq!(
        cluster.get(1, 10, Consistency::All).expect("get"),
        Some("through the peer allowance".into())
    );
    assert!(
        cluster.log(0).contains("refusing a client connection"),
        "{}",
        cluster.log(0)
    );
    drop(idle);
}
