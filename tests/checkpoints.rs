//! Checkpoints keep restarts flat: a replica that has taken many writes
//! replays a checkpoint plus a short tail, from at most two segments, and
//! still holds every acknowledged write after SIGKILL. The hints log is
//! checkpointed the same way while a replica stays down.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::proto::Consistency;

/// Segment files in a log directory.
fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list log")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .count()
}

/// Puts `rounds` values into every key in `keys`, through every coordinator
/// in turn, four writers at once; returns the last value of each key.
fn write_rounds(cluster: &Cluster, keys: &[u32], rounds: usize) -> HashMap<u32, String> {
    let threads: Vec<_> = (0..4)
        .map(|writer| {
            let client = cluster.client(writer);
            let mine: Vec<u32> = keys
                .iter()
                .copied()
                .filter(|k| *k as usize % 4 == writer)
                .collect();
            std::thread::spawn(move || {
                let mut last = HashMap::new();
                for round in 0..rounds {
                    for &key in &mine {
                        let value = format!("round {round} of key {key}, padded to take some room");
                        rt::block_on(client.put(key, &value, Consistency::Quorum)).expect("put");
                        last.insert(key, value);
                    }
                }
                last
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer"))
        .collect()
}

#[test]
fn a_replica_restarts_from_a_checkpoint_after_many_writes_and_keeps_them_all() {
    let mut cluster = Cluster::start_with(
        4,
        &[
            "--checkpoint-bytes",
            "32768",
            "--wal-segment-bytes",
            "1048576",
        ],
    );
    let keys: Vec<u32> = (0..64).map(|i| i * 4 + i % 4).collect();
    let last = write_rounds(&cluster, &keys, 40);
    for id in 0..4 {
        cluster.kill(id);
    }
    for id in 0..4 {
        let wal = cluster.data_dir(id).join("wal");
        assert!(
            segments(&wal) <= 2,
            "replica {id}: {} segments",
            segments(&wal)
        );
        cluster.spawn(id);
    }
    cluster.wait_until_all_see_each_other();
    for (key, value) in &last {
        assert_eq!(
            cluster
                .get(*key as usize % 4, *key, Consistency::Quorum)
                .expect("get")
                .as_ref(),
            Some(value),
            "key {key}"
        );
    }
    for id in 0..4 {
        let log = cluster.log(id);
        assert!(
            log.contains("(from the checkpoint of"),
            "replica {id}:\n{log}"
        );
        // Each replica took about 1,900 writes; replay reads a checkpoint of
        // at most 256 keys plus the writes after it.
        let replayed: u64 = log
            .lines()
            .rev()
            .find_map(|line| line.split("replayed ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a replay line");
        assert!(replayed < 1_000, "replica {id} replayed {replayed} records");
    }
}

#[test]
fn the_hints_log_is_checkpointed_while_a_replica_stays_down() {
    let mut cluster = Cluster::start_with(
        4,
        &["--checkpoint-bytes", "16384", "--anti-entropy-secs", "0"],
    );
    cluster.kill(2);
    // Keys replica 2 holds, written over and over through coordinator 3:
    // one pending hint per key, many records in the log.
    let keys: Vec<u32> = vec![70, 80, 90, 100, 130, 140, 150];
    let mut last = HashMap::new();
    for round in 0..150 {
        for &key in &keys {
            let value = format!("hinted round {round} of {key}");
            cluster
                .put(3, key, &value, Consistency::Quorum)
                .expect("put");
            last.insert(key, value);
        }
    }
    let hints_dir = cluster.data_dir(3).join("hints");
    let size: u64 = std::fs::read_dir(&hints_dir)
        .expect("list hints")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(size < 3 * 16384, "the hints log holds {size} bytes");
    // The checkpointed hints survive a crash of the coordinator holding them.
    cluster.kill(3);
    cluster.restart(3);
    assert!(
        cluster.log(3).contains("7 hints pending for peers"),
        "{}",
        cluster.log(3)
    );
    cluster.spawn(2);
    cluster.wait_until_all_see_each_other();
    std::thread::sleep(Duration::from_millis(500));
    for (key, value) in &last {
        let held = cluster.held(0, 2, *key).flatten().map(|v| v.value);
        assert_eq!(held.as_ref(), Some(value), "key {key} on replica 2");
    }
}
