//! Operator metrics on a real cluster: what one coordinator counts (requests
//! by operation and level, errors by kind, latency percentiles), what the
//! WAL threads count, hints stored and delivered, and what
//! `ringkv status --metrics` prints.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::{self, Body, Consistency, GetRequest, LatencySummary, MetricsReply};

/// The coordinator every request of the test goes through.
const COORDINATOR: usize = 1;

fn metrics(cluster: &Cluster, id: usize) -> MetricsReply {
    rt::block_on(cluster.client(id).metrics()).expect("metrics")
}

fn requests(reply: &MetricsReply, op: &str, level: Consistency) -> u64 {
    reply
        .requests
        .iter()
        .find(|r| r.operation == op && r.consistency == level as i32)
        .map_or(0, |r| r.count)
}

fn errors(reply: &MetricsReply, kind: proto::ErrorKind) -> u64 {
    reply
        .errors
        .iter()
        .find(|e| e.kind == kind as i32)
        .map_or(0, |e| e.count)
}

/// The summary is present, counted `count` requests, and its percentiles
/// are nonzero and ordered.
fn check_latency(name: &str, summary: &Option<LatencySummary>, count: u64) {
    let s = summary.as_ref().expect("a latency summary");
    assert_eq!(s.count, count, "{name} latency count");
    assert!(s.p50_us > 0, "{name}: p50 is zero: {s:?}");
    assert!(
        s.p50_us <= s.p90_us
            && s.p90_us <= s.p95_us
            && s.p95_us <= s.p99_us
            && s.p99_us <= s.p999_us,
        "{name}: percentiles out of order: {s:?}"
    );
    assert!(s.p999_us <= s.max_us, "{name}: p999 above max: {s:?}");
    assert!(
        s.mean_us > 0 && s.mean_us <= s.max_us,
        "{name}: mean outside (0, max]: {s:?}"
    );
}

/// Polls until `done` holds for the metrics of every replica, or fails.
fn wait_for(cluster: &Cluster, what: &str, done: impl Fn(&[MetricsReply]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all: Vec<MetricsReply> = (0..4)
            .filter_map(|id| rt::block_on(cluster.client(id).metrics()).ok())
            .collect();
        if all.len() == 4 && done(&all) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_coordinator_counts_its_requests_errors_latency_and_wal_batches() {
    let mut cluster = Cluster::start(4);
    let before = metrics(&cluster, COORDINATOR);
    assert_eq!(before.replica_id, COORDINATOR as u32);
    assert!(before.requests.iter().all(|r| r.count == 0), "{before:?}");

    for key in 0..5 {
        cluster
            .put(COORDINATOR, key * 50, "quorum", Consistency::Quorum)
            .expect("put");
    }
    for key in 0..3 {
        cluster
            .put(COORDINATOR, key * 50 + 1, "one", Consistency::One)
            .expect("put");
    }
    for key in 0..4 {
        cluster
            .get(COORDINATOR, key * 50, Consistency::Quorum)
            .expect("get");
    }
    for key in 0..2 {
        cluster
            .get(COORDINATOR, key * 50, Consistency::All)
            .expect("get");
    }
    for key in 0..2 {
        cluster
            .delete(COORDINATOR, key * 50, Consistency::Quorum)
            .expect("delete");
    }
    // Two invalid requests: a key out of range, and a get with no level.
    let refused = cluster.put(COORDINATOR, 300, "x", Consistency::Quorum);
    assert_eq!(refused.map_err(|e| e.kind), Err(ErrorKind::Invalid));
    let no_level = rt::block_on(cluster.client(COORDINATOR).call(Body::Get(GetRequest {
        key: Some(7),
        consistency: Consistency::Unspecified as i32,
    })));
    assert_eq!(no_level.map_err(|e| e.kind), Err(ErrorKind::Invalid));

    let after = metrics(&cluster, COORDINATOR);
    assert_eq!(requests(&after, "put", Consistency::Quorum), 6);
    assert_eq!(requests(&after, "put", Consistency::One), 3);
    assert_eq!(requests(&after, "put", Consistency::All), 0);
    assert_eq!(requests(&after, "get", Consistency::Quorum), 4);
    assert_eq!(requests(&after, "get", Consistency::All), 2);
    assert_eq!(requests(&after, "get", Consistency::Unspecified), 1);
    assert_eq!(requests(&after, "delete", Consistency::Quorum), 2);
    assert_eq!(errors(&after, proto::ErrorKind::Invalid), 2);
    for kind in [
        proto::ErrorKind::Unavailable,
        proto::ErrorKind::Timeout,
        proto::ErrorKind::Internal,
    ] {
        assert_eq!(errors(&after, kind), 0, "{kind:?}");
    }
    // Refused requests are counted but not timed.
    check_latency("put", &after.put_latency, 8);
    check_latency("get", &after.get_latency, 6);
    check_latency("delete", &after.delete_latency, 2);
    // Another coordinator counted none of them.
    let other = metrics(&cluster, (COORDINATOR + 1) % 4);
    assert!(other.requests.iter().all(|r| r.count == 0), "{other:?}");

    // Each of the 10 writes lands in the WAL of all 3 of its replicas (a
    // read repair racing a write's third copy may add one more).
    wait_for(&cluster, "every write in 3 WALs", |all| {
        all.iter().map(|m| m.wal_records).sum::<u64>() >= 30
    });
    for reply in (0..4).map(|id| metrics(&cluster, id)) {
        assert!(reply.wal_batches >= 1, "{reply:?}");
        assert!(
            reply.cpu_user_us + reply.cpu_system_us > 0,
            "no CPU time: {reply:?}"
        );
        assert!(reply.wal_batches <= reply.wal_records, "{reply:?}");
    }

    let config = cluster.config.display().to_string();
    let output = cluster.run_command(&["status", "--config", &config, "--metrics"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "status --metrics failed: {stdout}");
    for section in [
        "requests: get ONE",
        "errors: INVALID",
        "latency put: 8 requests, mean",
        "latency get: 6 requests",
        "p95",
        "p999",
        "cpu: ",
        "wal: ",
        "records per fdatasync",
        "checkpoints",
        "read repairs sent",
        "hints 0 pending",
        "anti-entropy rounds",
    ] {
        assert!(stdout.contains(section), "no {section:?} in:\n{stdout}");
    }
    assert_eq!(
        stdout.matches("  requests: ").count(),
        4,
        "one block per replica:\n{stdout}"
    );

    // A write missed by a replica that is down leaves a hint, delivered
    // once it is back.
    let key = 200;
    let victim = cluster
        .holdings(COORDINATOR, key)
        .into_iter()
        .map(|(id, _)| id as usize)
        .find(|&id| id != COORDINATOR)
        .expect("a replica of the key other than the coordinator");
    cluster.kill(victim);
    cluster.wait_for_view(COORDINATOR, victim, false);
    cluster
        .put(COORDINATOR, key, "hinted", Consistency::Quorum)
        .expect("put with one replica down");
    let hinted = metrics(&cluster, COORDINATOR);
    assert_eq!(hinted.hints_stored, 1, "{hinted:?}");
    assert_eq!(hinted.hints_pending, 1, "{hinted:?}");
    cluster.restart(victim);
    wait_for(&cluster, "the hint delivered", |all| {
        all[COORDINATOR].hints_delivered == 1 && all[COORDINATOR].hints_pending == 0
    });
}
