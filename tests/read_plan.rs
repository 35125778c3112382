//! Which replicas a get asks, seen from outside. A get asks only as many
//! replicas as its level needs, so two things must hold that asking
//! everyone gave for free: a replica that hangs without its links breaking
//! costs a read the speculation delay, not its timeout; and the replica a
//! read asks rotates, so a stale replica is read, and repaired, as often as
//! the others.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::protocol::proto::Consistency;

#[test]
fn gets_answer_quickly_while_a_replica_hangs_with_its_links_open() {
    let cluster = Cluster::start_with(4, &["--anti-entropy-secs", "0"]);
    let keys = [10u32, 70, 130, 200];
    for key in keys {
        cluster
            .put(0, key, &format!("v{key}"), Consistency::All)
            .expect("put");
    }
    // SIGSTOP: its sockets stay open and its peers still believe it up
    // until their pings go unanswered.
    cluster.signal(1, "STOP");
    for via in [0, 2, 3] {
        for key in keys {
            for level in [Consistency::One, Consistency::Quorum] {
                // Enough reads that the rotation picks replica 1 for
                // every key it holds.
                for _ in 0..3 {
                    let started = Instant::now();
                    let found = cluster.get(via, key, level);
                    let took = started.elapsed();
                    assert_eq!(found.expect("get"), Some(format!("v{key}")));
                    assert!(
                        took < Duration::from_millis(500),
                        "{level} get of {key} through {via} took {took:?} with replica 1 hung"
                    );
                }
            }
        }
    }
    cluster.signal(1, "CONT");
}

#[test]
fn quorum_reads_through_a_non_replica_reach_and_repair_every_replica_in_turn() {
    // No hints and no background repair: only the replicas a read asks are
    // repaired, so only the rotation can bring replica 2 back.
    let mut cluster = Cluster::start_with(4, &common::ONLY_READS_REPAIR);
    // Key 10 lives on 0, 1 and 2; replica 3 holds no copy.
    cluster.kill(2);
    cluster
        .put(0, 10, "while 2 was down", Consistency::Quorum)
        .expect("put");
    cluster.restart(2);
    let on_2 = |cluster: &Cluster| {
        cluster
            .held(0, 2, 10)
            .flatten()
            .map(|version| version.value)
    };
    assert_eq!(on_2(&cluster), None, "nothing repaired replica 2 yet");
    for _ in 0..3 {
        assert_eq!(
            cluster.get(3, 10, Consistency::Quorum).expect("get"),
            Some("while 2 was down".to_string())
        );
    }
    assert_eq!(
        on_2(&cluster).as_deref(),
        Some("while 2 was down"),
        "three QUORUM reads through replica 3 asked replica 2 and repaired it"
    );
}

#[test]
fn a_digest_newer_than_the_coordinators_own_copy_fetches_the_value_and_repairs_the_copy() {
    // No hints and no background repair: replica 0 stays stale until a
    // read finds it.
    let mut cluster = Cluster::start_with(4, &common::ONLY_READS_REPAIR);
    // Key 10 lives on 0, 1 and 2.
    cluster.put(0, 10, "old", Consistency::All).expect("put");
    cluster.kill(0);
    cluster
        .put(1, 10, "new", Consistency::Quorum)
        .expect("put while 0 is down");
    cluster.restart(0);
    assert_eq!(
        cluster.held(1, 0, 10).flatten().map(|v| v.value).as_deref(),
        Some("old")
    );
    // Through replica 0 a QUORUM get reads 0's own copy and a digest from
    // 1 or 2: the digest is newer, so the value is fetched.
    assert_eq!(
        cluster.get(0, 10, Consistency::Quorum).expect("get"),
        Some("new".to_string())
    );
    assert_eq!(
        cluster.held(1, 0, 10).flatten().map(|v| v.value).as_deref(),
        Some("new"),
        "the read repaired the coordinator's own copy"
    );
    // ONE reads only its own copy: now the new one.
    assert_eq!(
        cluster.get(0, 10, Consistency::One).expect("get"),
        Some("new".to_string())
    );
}
