//! Clocks that disagree, with real processes (`--test-clock-offset-ms`
//! pretends a replica's wall clock is off): a put acknowledged after
//! another wins whatever the skew, QUORUM stays linearizable with clocks
//! 300 ms apart either way, and a clock 10 s fast is fenced instead of
//! dragging the others along.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::history::{self, Workload};
use common::linearizability::check_history;
use common::Cluster;
use prost::Message;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::frame::encode_frame;
use ringkv::protocol::proto::{
    Body, Consistency, Envelope, ReplicaWrite, StatusReply, StatusRequest, Versioned,
};
use ringkv::storage::clock::wall_micros;
use ringkv::storage::clock::LEASE_SPAN;
use ringkv::storage::clock_lease::{read_lease, LEASE_FILE};

/// The default maximum clock offset, in microseconds.
const MAX_OFFSET: u64 = 500_000;

fn status(cluster: &Cluster, id: usize) -> StatusReply {
    match rt::block_on(cluster.client(id).call(Body::Status(StatusRequest {}))) {
        Ok(Body::StatusReply(status)) => *status,
        other => panic!("status of replica {id}: {other:?}"),
    }
}

/// Sends one frame on a fresh raw connection and returns the reply's body.
fn raw_call(addr: &str, body: Body) -> Option<Body> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(&encode_frame(&Envelope {
            request_id: 7,
            body: Some(body),
        }))
        .expect("send");
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).expect("reply");
    let mut reply = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut reply).expect("reply body");
    Envelope::decode(reply.as_slice()).expect("decode").body
}

#[test]
fn a_put_through_a_replica_400_ms_behind_beats_the_put_acknowledged_before_it() {
    // Replica 3 holds no copy of keys 10-19 (they live on 0, 1, 2), so
    // nothing it stores can lift its clock above the first put's stamp.
    let cluster = Cluster::start_with_clock_offsets(4, &[(3, -400)]);
    for key in 10..20 {
        let first = format!("first {key}");
        let second = format!("second {key}");
        cluster
            .put(2, key, &first, Consistency::Quorum)
            .expect("put through replica 2");
        cluster
            .put(3, key, &second, Consistency::Quorum)
            .expect("put through replica 3, 400 ms behind");
        assert_eq!(
            cluster.get(0, key, Consistency::Quorum).expect("get"),
            Some(second),
            "key {key}: the put acknowledged last must win"
        );
    }
    let metrics = match rt::block_on(
        cluster
            .client(3)
            .call(Body::Metrics(ringkv::protocol::proto::MetricsRequest {})),
    ) {
        Ok(Body::MetricsReply(metrics)) => metrics,
        other => panic!("metrics: {other:?}"),
    };
    assert!(
        metrics.stale_write_retries >= 10,
        "each put through replica 3 was stamped above the one before it: {}",
        metrics.stale_write_retries
    );
}

#[test]
fn a_replica_that_missed_a_put_through_a_clock_behind_is_hinted_its_stamp() {
    let mut cluster = Cluster::start_with_clock_offsets(4, &[(3, -400)]);
    // Key 10 lives on 0, 1, 2. Replica 1 is down for both puts.
    cluster.kill(1);
    let first = cluster
        .put(2, 10, "first", Consistency::Quorum)
        .expect("put through 2");
    let second = cluster
        .put(3, 10, "second", Consistency::Quorum)
        .expect("put through 3, 400 ms behind");
    assert!(second > first, "stamped above the first put");
    cluster.restart(1);
    // Its hints arrive, with the stamp the put was acknowledged with.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cluster.held(0, 1, 10) {
            Some(Some(version)) if version.value == "second" => {
                assert_eq!(version.timestamp_micros, second, "{version:?}");
                assert_eq!(version.coordinator_id, 3);
                break;
            }
            held => assert!(
                Instant::now() < deadline,
                "replica 1 never got the put's stamp: {held:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Records a QUORUM history (8 clients through every coordinator) of
/// `workload` for `seconds` and checks it.
fn quorum_history_is_linearizable(
    cluster: &Cluster,
    test: &str,
    mut workload: Workload,
    seconds: u64,
) {
    workload.duration = Duration::from_secs(seconds);
    let history = history::record(&workload);
    assert!(!history.is_empty(), "{test}: no operations recorded");
    println!("{test}: {}", history.summary());
    if let Err(explanation) = check_history(&history.ops_by_key) {
        panic!("{test}: {explanation}");
    }
    for id in 0..4 {
        assert_eq!(
            status(cluster, id).clock_fence,
            "",
            "{test}: replica {id} is within the maximum offset of a majority"
        );
    }
}

#[test]
fn quorum_history_with_one_clock_300_ms_ahead_is_linearizable() {
    let cluster = Cluster::start_with_clock_offsets(4, &[(1, 300)]);
    let workload = Workload::new(cluster.addrs.clone());
    quorum_history_is_linearizable(&cluster, "one clock 300 ms ahead", workload, 3);
}

#[test]
fn quorum_history_with_one_clock_300_ms_behind_is_linearizable() {
    let cluster = Cluster::start_with_clock_offsets(4, &[(3, -300)]);
    // Keys replica 3 holds no copy of, mostly written: little lifts its
    // clock to the others' stamps but the stale answers themselves.
    let mut workload = Workload::new(cluster.addrs.clone());
    workload.keys = vec![10, 30, 50, 63];
    workload.put_percent = 80;
    quorum_history_is_linearizable(&cluster, "one clock 300 ms behind", workload, 3);
}

/// Two clocks 600 ms apart, each within 300 ms of the other two: they
/// refuse each other's stamps (beyond the maximum offset), which costs
/// failed writes and read repairs, but never linearizability.
#[test]
fn quorum_history_with_one_clock_300_ms_ahead_and_one_300_ms_behind_is_linearizable() {
    let cluster = Cluster::start_with_clock_offsets(4, &[(1, 300), (3, -300)]);
    let workload = Workload::new(cluster.addrs.clone());
    quorum_history_is_linearizable(&cluster, "clocks +300 ms and -300 ms", workload, 2);
}

#[test]
fn a_replica_10_s_fast_is_fenced_and_moves_no_other_clock() {
    let mut cluster = Cluster::start_with_clock_offsets(4, &[(3, 10_000)]);
    // Its pings measure every peer 10 s behind: it stops coordinating
    // writes as soon as they are in.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reason = loop {
        let reason = status(&cluster, 3).clock_fence;
        if !reason.is_empty() {
            break reason;
        }
        assert!(Instant::now() < deadline, "replica 3 was never fenced");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reason.contains("3 of its 3 peers"), "{reason}");
    for id in 0..3 {
        assert_eq!(status(&cluster, id).clock_fence, "", "replica {id}");
    }
    let error = cluster
        .put(3, 200, "from the future", Consistency::Quorum)
        .expect_err("a fenced replica coordinates no writes");
    assert_eq!(error.kind, ErrorKind::Internal, "{error}");
    assert!(error.message.contains("clock fence"), "{error}");
    assert!(error.message.contains("Nothing was written"), "{error}");
    let error = cluster
        .delete(3, 200, Consistency::One)
        .expect_err("nor deletes");
    assert!(error.message.contains("clock fence"), "{error}");
    let shown = String::from_utf8_lossy(
        &cluster
            .run_command(&[
                "status",
                "--config",
                cluster.config.to_str().expect("utf-8"),
            ])
            .stdout,
    )
    .into_owned();
    assert!(
        shown.contains("NOT COORDINATING WRITES") && shown.contains("3 of its 3 peers"),
        "{shown}"
    );
    // It still serves reads, and stores writes from correct coordinators.
    cluster
        .put(0, 200, "via 0", Consistency::All)
        .expect("a put that replica 3 stores");
    assert_eq!(
        cluster.get(3, 200, Consistency::Quorum).expect("get via 3"),
        Some("via 0".into())
    );
    // Replica 3 holds a version 9.5 s ahead of the true time (as one it
    // coordinated before its fence went up would be): within its own
    // clock's fence, so it takes it.
    let ahead = Versioned {
        value: "stamped ahead".into(),
        timestamp_micros: wall_micros() + 9_500_000,
        coordinator_id: 3,
        tombstone: false,
    };
    let reply = raw_call(
        &cluster.addrs[3],
        Body::ReplicaWrite(ReplicaWrite {
            key: Some(200),
            version: Some(ahead),
            client_write: false,
        }),
    );
    assert!(matches!(reply, Some(Body::ReplicaWriteAck(_))), "{reply:?}");
    // Reads that see it, and an anti-entropy round that offers it to 0
    // and 2, move no other clock: the others refuse it, and a get returns
    // it (or fails to repair it) without observing it past the fence.
    for via in 0..3 {
        let _ = cluster.get(via, 200, Consistency::All);
    }
    let _ = cluster.run_command(&[
        "repair",
        "--config",
        cluster.config.to_str().expect("utf-8"),
    ]);
    // A stranger's write stamped nine minutes ahead, on a raw socket.
    let stranger = Versioned {
        value: "nine minutes ahead".into(),
        timestamp_micros: wall_micros() + 9 * 60 * 1_000_000,
        coordinator_id: 1,
        tombstone: false,
    };
    match raw_call(
        &cluster.addrs[0],
        Body::ReplicaWrite(ReplicaWrite {
            key: Some(10),
            version: Some(stranger),
            client_write: true,
        }),
    ) {
        Some(Body::Error(error)) => {
            assert_eq!(
                error.kind,
                ringkv::protocol::proto::ErrorKind::Invalid as i32
            );
            assert!(
                error
                    .message
                    .contains("the write of coordinator 1 is stamped 5")
                    && error.message.contains("ms ahead of replica 0's clock"),
                "{}",
                error.message
            );
        }
        other => panic!("expected INVALID, got {other:?}"),
    }
    // Puts through correct replicas go on, and no lease moved.
    cluster
        .put(1, 200, "after", Consistency::Quorum)
        .expect("put through 1");
    let limit = wall_micros() + MAX_OFFSET + LEASE_SPAN.as_micros() as u64;
    for id in 0..3 {
        let lease = read_lease(&cluster.data_dir(id).join(LEASE_FILE)).expect("lease");
        assert!(
            lease <= limit,
            "replica {id}'s lease is {} ms ahead of the wall clock",
            lease.saturating_sub(wall_micros()) / 1_000
        );
    }
    // A correct replica restarted now takes puts within about the maximum
    // offset, not the 10 s replica 3 is ahead.
    cluster.kill(0);
    cluster.restart(0);
    let started = Instant::now();
    cluster
        .put(0, 10, "after the restart", Consistency::Quorum)
        .expect("put through restarted 0");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the restarted replica held puts for {:?}",
        started.elapsed()
    );
    assert_eq!(
        cluster
            .log(3)
            .matches("clock fence: stops coordinating")
            .count(),
        1,
        "the fence is logged once, not at every ping:\n{}",
        cluster.log(3)
    );
}
