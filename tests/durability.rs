//! A replica killed with SIGKILL right after acknowledging writes comes
//! back, on the same port at once, with every write it acknowledged.

mod common;

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::proto::{Body, Consistency, ReplicaRead};

/// What `replica` itself holds for `key`, asked directly.
fn held_by(cluster: &Cluster, replica: usize, key: u32) -> Option<String> {
    let reply = rt::block_on(cluster.client(replica).call(Body::ReplicaRead(ReplicaRead {
        key: Some(key),
        digest_only: false,
    })))
    .expect("replica read");
    match reply {
        Body::ReplicaReadReply(reply) => reply.found.map(|v| v.value),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn a_killed_replica_replays_every_write_it_acknowledged() {
    let mut cluster = Cluster::start(4);
    // Replica 0 holds keys 0-63 (owner), 192-255 and 128-191.
    let keys: Vec<u32> = (0..64).chain(128..256).collect();
    for round in 0..3 {
        for &key in &keys {
            // ALL: replica 0 itself acknowledged every one of these writes.
            cluster
                .put(
                    1 + (key as usize % 3),
                    key,
                    &format!("r{round}-k{key}"),
                    Consistency::All,
                )
                .expect("put");
        }
    }
    cluster.kill(0);
    cluster.restart(0);
    for &key in &keys {
        assert_eq!(
            held_by(&cluster, 0, key),
            Some(format!("r2-k{key}")),
            "key {key} after replay"
        );
    }
    let status = rt::block_on(cluster.client(0).status()).expect("status");
    assert_eq!(
        status.keys_held as usize,
        keys.len(),
        "replica 0 holds exactly its keys"
    );
    assert!(
        cluster.log(0).contains("replayed"),
        "the restart logs its replay"
    );
}

#[test]
fn a_replica_killed_while_coordinating_restarts_at_once_and_keeps_its_writes() {
    let mut cluster = Cluster::start(4);
    for cycle in 0..4 {
        let value = format!("cycle-{cycle}");
        cluster.put(2, 140, &value, Consistency::All).expect("put");
        // Killed with client and peer connections open: the restart must be
        // able to bind the same port straight away.
        cluster.kill(2);
        cluster.restart(2);
        assert_eq!(held_by(&cluster, 2, 140), Some(value.clone()));
        assert_eq!(
            cluster.get(2, 140, Consistency::Quorum).expect("get"),
            Some(value)
        );
    }
}

#[test]
fn a_restarted_coordinator_waits_out_its_lease_instead_of_stamping_ahead() {
    let mut cluster = Cluster::start(4);
    // Replica 3 holds no copy of key 10, so its own log knows nothing of
    // the timestamps it gave key 10; the clock lease on disk does.
    let before = cluster
        .put(3, 10, "before the crash", Consistency::All)
        .expect("put");
    cluster.kill(3);
    let lease_file = cluster
        .data_dir(3)
        .join(ringkv::storage::clock_lease::LEASE_FILE);
    let recorded: u64 = std::fs::read_to_string(&lease_file)
        .expect("the lease file exists")
        .trim()
        .parse()
        .expect("a timestamp");
    assert!(
        recorded > before,
        "the lease covered the timestamp it issued"
    );
    // As if the previous run had issued timestamps up to 400 ms from now
    // (within the 500 ms clock fence, as far as a lease can get).
    let ahead = ringkv::storage::clock::wall_micros() + 400_000;
    std::fs::write(&lease_file, format!("{ahead}\n")).expect("rewrite lease");
    cluster.restart(3);
    let after = cluster
        .put(3, 10, "after the restart", Consistency::All)
        .expect("put");
    let answered_at = ringkv::storage::clock::wall_micros();
    assert!(after > ahead, "stamped {after}, not past the lease {ahead}");
    assert!(
        after <= answered_at,
        "stamped {after}, ahead of the wall clock {answered_at}: it jumped instead of waiting"
    );
    assert_eq!(
        cluster.get(0, 10, Consistency::All).expect("get"),
        Some("after the restart".into())
    );
}

#[test]
fn a_lease_far_ahead_holds_a_restarted_coordinator_only_about_the_maximum_clock_offset() {
    let mut cluster = Cluster::start(4);
    cluster
        .put(3, 10, "before the crash", Consistency::All)
        .expect("put");
    cluster.kill(3);
    // A lease an hour ahead: left by a version without the clock fence
    // (whose clock followed any peer's), or this wall clock stepped back.
    // Its peers' clocks agree with it now, so it is not fenced, and it
    // must not refuse puts for an hour.
    let lease_file = cluster
        .data_dir(3)
        .join(ringkv::storage::clock_lease::LEASE_FILE);
    let ahead = ringkv::storage::clock::wall_micros() + 3_600_000_000;
    std::fs::write(&lease_file, format!("{ahead}\n")).expect("rewrite lease");
    cluster.restart(3);
    let started = std::time::Instant::now();
    cluster
        .put(3, 10, "after the restart", Consistency::All)
        .expect("put after the restart");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "held puts for {:?}",
        started.elapsed()
    );
    assert!(
        cluster
            .log(3)
            .contains("more than the maximum clock offset"),
        "{}",
        cluster.log(3)
    );
    assert_eq!(
        cluster.get(0, 10, Consistency::All).expect("get"),
        Some("after the restart".into())
    );
}
