//! Limits, each hit on purpose while other clients keep being served: a
//! connection that starts a frame and goes silent is closed, clients that
//! take every connection slot cannot lock a peer out, and the memory budget
//! stops a client that pipelines large values without aborting anything.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::Consistency;

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
    let request = ringkv::protocol::frame::encode_frame(&ringkv::protocol::proto::Envelope {
        request_id: 1,
        body: Some(ringkv::protocol::proto::Body::Get(
            ringkv::protocol::proto::GetRequest {
                key: Some(5),
                consistency: Consistency::One as i32,
            },
        )),
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

#[test]
fn the_memory_budget_holds_back_a_client_pipelining_large_values_and_serves_the_rest() {
    let mut cluster = Cluster::start(4);
    cluster.kill(0);
    cluster.spawn_with(0, &["--memory-budget-bytes", "2000000"]);
    cluster.wait_until_all_see_each_other();
    // 48 puts of about 1 MB each, all in flight at once on one connection
    // to replica 0: 48 MB against a 2 MB budget.
    let big = "v".repeat(1_000_000);
    // Held back means slow: on a loaded machine the last of them may take
    // longer than a client's default 10 s to be read and written.
    let heavy = std::sync::Arc::new(cluster.client(0).with_timeout(Duration::from_secs(60)));
    let puts: Vec<_> = (0..48u32)
        .map(|i| {
            let (heavy, value) = (heavy.clone(), format!("{i}:{big}"));
            std::thread::spawn(move || rt::block_on(heavy.put(i % 64, &value, Consistency::One)))
        })
        .collect();
    // Meanwhile another client is served promptly, over and over.
    let light = cluster.client(0);
    for n in 0..20 {
        let started = Instant::now();
        rt::block_on(light.put(200, &format!("small {n}"), Consistency::One)).expect("small put");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // Nothing is aborted: every large put completes.
    for put in puts {
        put.join()
            .expect("thread")
            .expect("a large put held back, not refused");
    }
    assert!(
        cluster
            .log(0)
            .contains("memory budget of 2000000 bytes reached"),
        "{}",
        cluster.log(0)
    );
}

#[test]
fn writes_still_on_their_way_after_the_answer_count_against_the_budget() {
    let mut cluster = Cluster::start(4);
    cluster.kill(0);
    cluster.spawn_with(0, &["--memory-budget-bytes", "3000000"]);
    cluster.wait_until_all_see_each_other();
    // Replica 2 freezes: ONE puts through replica 0 of keys 2 holds are
    // answered at once, but each leaves a 1 MB write waiting on replica 2.
    cluster.signal(2, "STOP");
    let big = "w".repeat(1_000_000);
    // Held back means slow: on a loaded machine the last of them may take
    // longer than a client's default 10 s to be read and written.
    let heavy = std::sync::Arc::new(cluster.client(0).with_timeout(Duration::from_secs(60)));
    let started = Instant::now();
    let puts: Vec<_> = (0..24u32)
        .map(|i| {
            let (heavy, value) = (heavy.clone(), format!("{i}:{big}"));
            let key = [10, 130][i as usize % 2];
            std::thread::spawn(move || rt::block_on(heavy.put(key, &value, Consistency::One)))
        })
        .collect();
    for put in puts {
        put.join()
            .expect("thread")
            .expect("a ONE put is held back, not refused");
    }
    // The writes to the frozen replica held the budget until they timed
    // out (2 s), so the puts could not all be read at once.
    assert!(
        cluster
            .log(0)
            .contains("memory budget of 3000000 bytes reached"),
        "{}",
        cluster.log(0)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    cluster.signal(2, "CONT");
    cluster
        .put(0, 10, "after", Consistency::All)
        .expect("put once 2 is back");
}

/// The replica's resident memory, from /proc.
fn resident_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024
}

#[test]
fn frames_still_arriving_count_against_the_memory_budget() {
    const BUDGET_MIB: u64 = 32;
    let budget = (BUDGET_MIB * 1024 * 1024).to_string();
    let cluster = Cluster::start_with(
        4,
        &[
            "--memory-budget-bytes",
            &budget,
            "--frame-read-timeout-ms",
            "60000",
        ],
    );
    let pid = cluster.pid(0);
    let before = resident_mib(pid);
    // 24 connections each claim a 12 MB frame, send 11 MB of it and stop:
    // 264 MB if each were read, against a 32 MiB budget.
    let claimed: u32 = 12_000_000;
    let senders: Vec<(TcpStream, std::thread::JoinHandle<()>)> = (0..24)
        .map(|_| {
            let stream = TcpStream::connect(&cluster.addrs[0]).expect("connect");
            let mut writer = stream.try_clone().expect("clone");
            let sending = std::thread::spawn(move || {
                let _ = writer.write_all(&claimed.to_be_bytes());
                let _ = writer.write_all(&vec![0u8; 11_000_000]);
            });
            (stream, sending)
        })
        .collect();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        peak = peak.max(resident_mib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Other clients are served meanwhile: small frames arrive whole.
    cluster
        .put(0, 10, "still served", Consistency::Quorum)
        .expect("put while the budget is full");
    assert_eq!(
        cluster.get(0, 10, Consistency::Quorum).expect("get"),
        Some("still served".into())
    );
    assert!(
        peak < before + BUDGET_MIB + 64,
        "resident memory reached {peak} MiB (from {before} MiB) with a {BUDGET_MIB} MiB budget"
    );
    for (stream, sending) in senders {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        sending.join().expect("sender");
    }
    // Their reservations are given back: a large put fits again.
    let large = "x".repeat(1_000_000);
    cluster
        .put(0, 11, &large, Consistency::Quorum)
        .expect("the budget drained");
    println!("peak resident memory {peak} MiB, from {before} MiB, budget {BUDGET_MIB} MiB");
}
#[test]
fn many_clients_pipelining_large_puts_stay_within_the_budget() {
    const BUDGET_MIB: u64 = 32;
    let budget = (BUDGET_MIB * 1024 * 1024).to_string();
    let cluster = Cluster::start_with(4, &["--memory-budget-bytes", &budget]);
    let pids: Vec<u32> = (0..4).map(|id| cluster.pid(id)).collect();
    let before: Vec<u64> = pids.iter().map(|&pid| resident_mib(pid)).collect();
    // 50 clients, each with 6 puts of 1 MB in flight on its connection to
    // replica 0: 300 MB at once. Eight keys, so the store itself (which
    // keeps each key's newest value, and writes it whole in checkpoints)
    // holds 8 MB of it.
    let big = std::sync::Arc::new("v".repeat(1_000_000));
    let mut puts = Vec::new();
    for c in 0..50u32 {
        let client = std::sync::Arc::new(cluster.client(0).with_timeout(Duration::from_secs(120)));
        for i in 0..6u32 {
            let (client, big) = (client.clone(), big.clone());
            puts.push(rt::spawn(async move {
                let value = format!("{c}-{i}:{big}");
                client
                    .put((c * 6 + i) % 8, &value, Consistency::Quorum)
                    .await
            }));
        }
    }
    let sampling = std::thread::spawn(move || {
        let mut peak = vec![0u64; pids.len()];
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            for (peak, &pid) in peak.iter_mut().zip(&pids) {
                *peak = (*peak).max(resident_mib(pid));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let failures: Vec<String> = rt::block_on(async {
        let mut failures = Vec::new();
        for put in puts {
            if let Err(error) = put.await {
                failures.push(error.to_string());
            }
        }
        failures
    });
    let peak = sampling.join().expect("sampler");
    println!("peak resident memory by replica {peak:?} MiB, from {before:?} MiB, budget {BUDGET_MIB} MiB");
    // No put fails for want of memory or of a renewed clock lease.
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    for (id, (&peak, &before)) in peak.iter().zip(&before).enumerate() {
        assert!(
            peak < before + BUDGET_MIB + 64,
            "replica {id}: resident memory reached {peak} MiB (from {before} MiB) with a {BUDGET_MIB} MiB budget"
        );
    }
}
