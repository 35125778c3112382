//! Replicas that missed writes catch up: through hinted handoff, read
//! repair, or anti-entropy, each shown alone, with real processes killed
//! with SIGKILL. Each test turns off the mechanisms it does not exercise,
//! so that the one under test is the only way the replica can catch up.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::proto::{Body, Consistency, ReplicaWrite, Versioned};

/// Keys replica 2 holds: 10 (replicas 0,1,2), 70 (1,2,3), 130 (2,3,0).
const KEYS_OF_2: [u32; 3] = [10, 70, 130];

/// Polls `check` every 20 ms until it holds or `within` has passed.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value replica `id` holds for `key`, asked without repair.
fn value_on(cluster: &Cluster, id: usize, key: u32) -> Option<String> {
    let via = if id == 0 { 1 } else { 0 };
    cluster
        .held(via, id, key)
        .flatten()
        .filter(|v| !v.tombstone)
        .map(|v| v.value)
}

fn hints_pending(cluster: &Cluster, coordinator: usize, target: u32) -> u64 {
    let status = rt::block_on(cluster.client(coordinator).status()).expect("status");
    status
        .peers
        .iter()
        .find(|p| p.replica_id == target)
        .map_or(0, |p| p.hints_pending)
}

/// The seed's story: replica 2 misses writes at ONE and QUORUM while it is
/// down; after its restart, hints alone bring it up to date, with no reads.
fn hints_bring_back_a_replica_without_reads(mode: &str) {
    let mut cluster = Cluster::start_with(4, &["--repair", mode, "--anti-entropy-secs", "0"]);
    cluster.kill(2);
    cluster.put(0, 10, "at ONE", Consistency::One).expect("put");
    cluster
        .put(3, 70, "at QUORUM", Consistency::Quorum)
        .expect("put");
    // Coordinator 1 holds no copy of key 130: it only stores the hint.
    cluster
        .put(1, 130, "from a non-replica", Consistency::Quorum)
        .expect("put");
    assert_eq!(hints_pending(&cluster, 0, 2), 1);
    assert_eq!(hints_pending(&cluster, 3, 2), 1);
    assert_eq!(hints_pending(&cluster, 1, 2), 1);
    let restarted = Instant::now();
    cluster.spawn(2);
    let expected = [
        (10, "at ONE"),
        (70, "at QUORUM"),
        (130, "from a non-replica"),
    ];
    let caught_up = eventually(Duration::from_secs(2), || {
        expected
            .iter()
            .all(|(key, value)| value_on(&cluster, 2, *key).as_deref() == Some(*value))
    });
    assert!(
        caught_up,
        "{mode}: replica 2 did not receive its hints within 2 s of its restart ({:?})",
        restarted.elapsed()
    );
    for coordinator in [0, 1, 3] {
        assert!(
            eventually(Duration::from_secs(1), || hints_pending(
                &cluster,
                coordinator,
                2
            ) == 0),
            "delivered hints are deleted"
        );
    }
}

#[test]
fn hinted_handoff_alone_brings_a_restarted_replica_up_to_date() {
    hints_bring_back_a_replica_without_reads("hinted-handoff");
}

#[test]
fn with_both_mechanisms_hints_bring_a_restarted_replica_up_to_date() {
    hints_bring_back_a_replica_without_reads("both");
}

#[test]
fn in_read_repair_mode_one_read_repairs_the_stale_replica() {
    let mut cluster =
        Cluster::start_with(4, &["--repair", "read-repair", "--anti-entropy-secs", "0"]);
    cluster.kill(2);
    for key in KEYS_OF_2 {
        cluster
            .put(0, key, &format!("new {key}"), Consistency::Quorum)
            .expect("put");
    }
    assert_eq!(hints_pending(&cluster, 0, 2), 0, "no hints in this mode");
    cluster.restart(2);
    std::thread::sleep(Duration::from_millis(300));
    for key in KEYS_OF_2 {
        assert_eq!(value_on(&cluster, 2, key), None, "nothing else repairs it");
    }
    // One read per key, through a different coordinator each time.
    for (via, key) in [(3, 10), (1, 70), (2, 130)] {
        assert_eq!(
            cluster.get(via, key, Consistency::Quorum).expect("get"),
            Some(format!("new {key}"))
        );
    }
    for key in KEYS_OF_2 {
        assert!(
            eventually(Duration::from_secs(1), || value_on(&cluster, 2, key)
                == Some(format!("new {key}"))),
            "the read of key {key} repaired replica 2"
        );
    }
    let status = rt::block_on(cluster.client(3).status()).expect("status");
    assert_eq!(status.repair_mode, "read-repair");
}

#[test]
fn hints_survive_a_crash_of_the_coordinator_that_holds_them() {
    let mut cluster = Cluster::start_with(4, &["--anti-entropy-secs", "0"]);
    cluster.kill(2);
    cluster
        .put(1, 130, "hinted by 1", Consistency::Quorum)
        .expect("put");
    assert_eq!(hints_pending(&cluster, 1, 2), 1);
    cluster.kill(1);
    cluster.restart(1);
    assert_eq!(hints_pending(&cluster, 1, 2), 1, "the hint was replayed");
    assert!(cluster.log(1).contains("1 hints pending for peers"));
    cluster.spawn(2);
    assert!(
        eventually(Duration::from_secs(2), || value_on(&cluster, 2, 130)
            .as_deref()
            == Some("hinted by 1")),
        "the replayed hint was delivered"
    );
}

#[test]
fn a_delete_reaches_a_replica_that_missed_it_and_older_writes_cannot_undo_it() {
    let mut cluster = Cluster::start_with(4, &["--anti-entropy-secs", "0"]);
    cluster.put(0, 10, "alive", Consistency::All).expect("put");
    cluster.kill(2);
    let deleted_at = cluster.delete(0, 10, Consistency::Quorum).expect("delete");
    cluster.spawn(2);
    // Replica 2 replays "alive" from its own log, then takes the hinted
    // tombstone.
    assert!(
        eventually(Duration::from_secs(2), || {
            cluster
                .held(0, 2, 10)
                .flatten()
                .is_some_and(|v| v.tombstone && v.timestamp_micros == deleted_at)
        }),
        "replica 2 holds the tombstone"
    );
    cluster.wait_until_all_see_each_other();
    assert_eq!(cluster.get(2, 10, Consistency::One).expect("get"), None);
    let console = common::console(&cluster, 2, "consistency ONE\nget 10\nwhere 10\n");
    assert_eq!(console[1], "NOT FOUND");
    assert!(console[2].contains("replica 2: DELETED"), "{console:?}");
    // An older put arriving late (a slow hint, a replayed repair) loses to
    // the tombstone.
    let late = Body::ReplicaWrite(ReplicaWrite {
        client_write: false,
        key: Some(10),
        version: Some(Versioned {
            value: "older put".into(),
            timestamp_micros: deleted_at - 1,
            coordinator_id: 3,
            tombstone: false,
        }),
    });
    rt::block_on(cluster.client(2).call(late)).expect("acknowledged, and ignored");
    // And replaying the log after another crash keeps the tombstone.
    cluster.kill(2);
    cluster.restart(2);
    for via in 0..4 {
        assert_eq!(cluster.get(via, 10, Consistency::All).expect("get"), None);
    }
    assert_eq!(cluster.get(2, 10, Consistency::One).expect("get"), None);
}

/// Every replica of every key holds the same version.
fn converged(cluster: &Cluster, keys: &[u32]) -> bool {
    keys.iter().all(|&key| {
        let held: Vec<_> = cluster
            .holdings(0, key)
            .into_iter()
            .map(|(_, held)| held)
            .collect();
        held.iter().all(Option::is_some) && held.windows(2).all(|pair| pair[0] == pair[1])
    })
}

#[test]
fn replicas_converge_after_writes_at_one_under_random_kills() {
    // Hints carry what a down replica missed. A coordinator killed after
    // answering a ONE put but before its other writes left leaves a gap no
    // hint covers; anti-entropy (every second here) closes it.
    let mut cluster = Cluster::start_with(4, &["--anti-entropy-secs", "1"]);
    let keys: Vec<u32> = (0..16).map(|i| i * 16 + 3).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (addr, stop, keys) = (cluster.addrs[writer].clone(), stop.clone(), keys.clone());
            std::thread::spawn(move || {
                let client = ringkv::client::Client::new(addr).with_timeout(Duration::from_secs(3));
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = keys[(n * 7 + writer) % keys.len()];
                    let value = format!("w{writer}-{n}");
                    let _ = rt::block_on(client.put(key, &value, Consistency::One));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut seed = 0x9e37_79b9_u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let victim = (seed % 4) as usize;
        cluster.kill(victim);
        std::thread::sleep(Duration::from_millis(150 + seed % 250));
        cluster.restart(victim);
    }
    stop.store(true, Ordering::Relaxed);
    let writes: usize = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    let quiet = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || converged(&cluster, &keys)),
        "replicas did not converge within 5 s of the last write ({writes} puts)"
    );
    eprintln!(
        "{writes} puts at ONE; converged {:?} after the last",
        quiet.elapsed()
    );
}

#[test]
fn anti_entropy_alone_converges_when_no_hints_are_kept() {
    let mut cluster = Cluster::start_with(4, &common::ONLY_READS_REPAIR);
    cluster.kill(2);
    for key in KEYS_OF_2 {
        cluster
            .put(3, key, &format!("ae {key}"), Consistency::Quorum)
            .expect("put");
    }
    assert!(cluster.log(3).contains("dropped a hint for replica 2"));
    cluster.restart(2);
    std::thread::sleep(Duration::from_millis(300));
    for key in KEYS_OF_2 {
        assert_eq!(value_on(&cluster, 2, key), None, "no hint was kept");
    }
    let config = cluster.config.display().to_string();
    let output = cluster.run_command(&["repair", "--config", &config]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
    // Replica 2 lacked 3 versions: each was sent to it by a neighbour's
    // round or taken in its own.
    let moved: u32 = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|pair| pair[0] == "sent" || pair[0] == "took")
        .filter_map(|pair| pair[1].parse::<u32>().ok())
        .sum();
    assert!(moved >= 3, "{text}");
    for key in KEYS_OF_2 {
        assert_eq!(value_on(&cluster, 2, key), Some(format!("ae {key}")));
    }
    let status = rt::block_on(cluster.client(2).status()).expect("status");
    assert_eq!(status.anti_entropy_rounds, 1);
}

#[test]
fn hints_older_than_the_window_are_dropped_not_delivered() {
    let mut cluster = Cluster::start_with(
        4,
        &[
            "--hint-window-secs",
            "0",
            "--repair",
            "hinted-handoff",
            "--anti-entropy-secs",
            "0",
        ],
    );
    cluster.kill(2);
    cluster
        .put(0, 10, "too late to hint", Consistency::Quorum)
        .expect("put");
    assert!(
        eventually(Duration::from_secs(3), || cluster
            .log(0)
            .contains("older than the hint window")),
        "the expired hint is dropped with a log line"
    );
    assert_eq!(hints_pending(&cluster, 0, 2), 0);
    cluster.restart(2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(value_on(&cluster, 2, 10), None, "nothing was delivered");
}
