//! What a replica does with a damaged write-ahead log at start: a torn tail
//! (a crash mid-append) is cut off with a warning and the replica serves
//! every write it acknowledged; damage before the tail is corruption, and the
//! replica refuses to start, naming the file and offset, unless the operator
//! passes --skip-corrupt-wal. Lost ends of segments count as damage too: an
//! older (sealed) segment cut at a record boundary, or the newest segment
//! deleted, would otherwise replay as an older state that looks whole.

mod common;

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use common::Cluster;
use ringkv::protocol::proto::Consistency;

/// The segment files in replica `id`'s WAL, oldest first.
fn segments(cluster: &Cluster, id: usize) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = fs::read_dir(cluster.data_dir(id).join("wal"))
        .expect("wal dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    segments
}

/// The newest segment file in replica `id`'s WAL.
fn newest_segment(cluster: &Cluster, id: usize) -> PathBuf {
    segments(cluster, id).pop().expect("a segment")
}

/// A cluster whose replicas move to a new WAL segment every 512 bytes and
/// never checkpoint, after two rounds of puts to keys 0..40 (held by
/// replicas 0, 1 and 2), so that replica 1's WAL has several sealed
/// segments and older segments hold older values. Replica 1 is then
/// SIGKILLed.
fn many_segments_then_kill_replica_1() -> Cluster {
    let mut cluster = Cluster::start_with(
        4,
        &[
            "--wal-segment-bytes",
            "512",
            "--checkpoint-bytes",
            "1000000000",
        ],
    );
    for round in 0..2 {
        put_round(&cluster, round, 40);
    }
    cluster.kill(1);
    assert!(segments(&cluster, 1).len() >= 4, "test setup");
    cluster
}

/// Puts "round R of key K" to keys `0..keys` at ALL through replica 0.
fn put_round(cluster: &Cluster, round: u32, keys: u32) {
    for key in 0..keys {
        cluster
            .put(
                0,
                key,
                &format!("round {round} of key {key}"),
                Consistency::All,
            )
            .expect("put");
    }
}

/// Starts replica 1 on its damaged log: it must refuse, with one error
/// line holding every one of `expected`; then with --skip-corrupt-wal it
/// must start and say loudly what it skipped.
fn refused_then_skipped_loudly(cluster: &mut Cluster, expected: &[&str]) {
    cluster.spawn_with(1, &[]);
    // A replica that starts anyway would never exit: give it a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while cluster.is_running(1) {
        if std::time::Instant::now() > deadline {
            cluster.kill(1);
            panic!(
                "the replica started on a log that lost records:\n{}",
                cluster.log(1)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !cluster.wait_for_exit(1),
        "a log that lost records must stop the replica"
    );
    let log = cluster.log(1);
    assert!(
        log.lines().any(|line| line.starts_with("ringkv: ")
            && expected.iter().all(|part| line.contains(part))
            && line.contains("--skip-corrupt-wal")),
        "one error line names {expected:?} and the way out:\n{log}"
    );
    cluster.spawn_with(1, &["--skip-corrupt-wal"]);
    cluster.wait_until_all_see_each_other();
    let log = cluster.log(1);
    assert!(
        log.lines().any(|line| line.contains(" ERROR ")
            && line.contains("skipped a corrupt write-ahead log record")
            && expected.iter().all(|part| line.contains(part))),
        "skipping is loud and says what was skipped:\n{log}"
    );
}

#[test]
fn an_older_segment_cut_at_a_record_boundary_stops_the_replica() {
    let mut cluster = many_segments_then_kill_replica_1();
    // Cut segment 2 (sealed) right after its first record: a whole number
    // of records is left, so only the missing seal shows the loss.
    let segment = segments(&cluster, 1)[1].clone();
    let bytes = fs::read(&segment).expect("read segment");
    let starts: Vec<u64> = wal::inspect_segment(&bytes)
        .entries
        .iter()
        .filter_map(|entry| match entry {
            wal::InspectedEntry::Record { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert!(starts.len() >= 2, "test setup: {starts:?}");
    let cut = starts[1];
    fs::write(&segment, &bytes[..cut as usize]).expect("cut segment");
    refused_then_skipped_loudly(
        &mut cluster,
        &[
            &segment.display().to_string(),
            &format!("offset {cut}"),
            "without its seal",
        ],
    );
}

#[test]
fn a_deleted_newest_segment_stops_the_replica_naming_it() {
    let mut cluster = many_segments_then_kill_replica_1();
    let newest = newest_segment(&cluster, 1);
    let name = newest
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .to_string();
    let number: u32 = name.trim_end_matches(".wal").parse().expect("a number");
    fs::remove_file(&newest).expect("delete the newest segment");
    refused_then_skipped_loudly(
        &mut cluster,
        &[&format!("segment {number} ({name}) is missing")],
    );
}

#[test]
fn a_torn_tail_is_cut_off_with_a_warning_and_acknowledged_writes_survive() {
    let mut cluster = Cluster::start(4);
    for key in 0..20u32 {
        cluster
            .put(0, key, &format!("v{key}"), Consistency::All)
            .expect("put");
    }
    cluster.kill(1);
    // A crash in the middle of appending: half a record header.
    let segment = newest_segment(&cluster, 1);
    fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open segment")
        .write_all(&[0, 0, 1])
        .expect("append torn bytes");
    cluster.restart(1);
    let log = cluster.log(1);
    let segment_name = segment.display().to_string();
    assert!(
        log.lines().any(|line| line.contains(" WARN ")
            && line.contains(&segment_name)
            && line.contains("3 bytes")),
        "one warning line names the file and the 3 bytes dropped:\n{log}"
    );
    for key in 0..20u32 {
        assert_eq!(
            held_by_replica_1(&cluster, key),
            Some(format!("v{key}")),
            "key {key}"
        );
    }
}

/// The value replica 1 holds locally for `key` (it holds keys 0-63 as
/// their second replica).
fn held_by_replica_1(cluster: &Cluster, key: u32) -> Option<String> {
    cluster
        .holdings(1, key)
        .into_iter()
        .find(|(id, _)| *id == 1)
        .expect("replica 1 listed")
        .1
        .flatten()
        .map(|version| version.value)
}

#[test]
fn a_replica_killed_on_a_preallocated_segment_keeps_every_write_without_a_warning() {
    // Checkpoints every 4 KiB of log, so segments come from spares of
    // 5 KiB (a quarter more), zero-filled ahead of time.
    let mut cluster = Cluster::start_with(4, &["--checkpoint-bytes", "4096"]);
    let mut round = 0;
    let preallocated = loop {
        round += 1;
        put_round(&cluster, round, 20);
        let newest = newest_segment(&cluster, 1);
        let bytes = fs::read(&newest).expect("read");
        if bytes.len() == 5120 && bytes.ends_with(&[0; 64]) {
            break newest;
        }
        assert!(round < 50, "no preallocated segment after {round} rounds");
    };
    assert!(
        cluster.data_dir(1).join("wal/spare.tmp").exists(),
        "the next spare is ready"
    );
    cluster.kill(1);
    // `ringkv dump` shows the zeros as unused space, not damage.
    let wal_dir = cluster.data_dir(1).join("wal");
    let dump = cluster.run_command(&["dump", wal_dir.to_str().expect("utf-8 path")]);
    let shown = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(dump.status.success(), "dump exits 0:\n{shown}");
    let last = shown.lines().last().expect("lines");
    assert!(
        last.contains(" UNUSED: zeros after the last record"),
        "{shown}"
    );
    cluster.restart(1);
    let log = cluster.log(1);
    let name = preallocated.display().to_string();
    assert!(
        log.lines()
            .any(|line| line.contains(" INFO ") && line.contains(&name) && line.contains("zeros")),
        "the zeros after the records are cut off and said so, quietly:\n{log}"
    );
    assert!(!log.contains(" WARN "), "nothing to warn about:\n{log}");
    for key in 0..20u32 {
        assert_eq!(
            held_by_replica_1(&cluster, key),
            Some(format!("round {round} of key {key}")),
            "key {key}"
        );
    }
}

#[test]
fn corruption_before_the_tail_stops_the_replica_until_the_operator_skips_it() {
    let mut cluster = Cluster::start(4);
    for key in 0..10u32 {
        cluster
            .put(0, key, &format!("value-{key}"), Consistency::All)
            .expect("put");
    }
    cluster.kill(2);
    // Flip a byte inside the first record's payload (after the segment
    // header and the 8-byte record header).
    let header = wal::SEGMENT_HEADER_LEN as usize;
    let segment = newest_segment(&cluster, 2);
    let mut bytes = fs::read(&segment).expect("read segment");
    bytes[header + 8 + 2] ^= 0x40;
    fs::write(&segment, &bytes).expect("write segment");

    cluster.spawn_with(2, &[]);
    assert!(
        !cluster.wait_for_exit(2),
        "a corrupt log must stop the replica"
    );
    let log = cluster.log(2);
    assert!(
        log.contains(&segment.display().to_string()),
        "the error names the file:\n{log}"
    );
    assert!(
        log.contains(&format!("offset {header}")),
        "the error names the offset:\n{log}"
    );

    cluster.spawn_with(2, &["--skip-corrupt-wal"]);
    cluster.wait_until_all_see_each_other();
    let log = cluster.log(2);
    assert!(
        log.contains("skipped a corrupt write-ahead log record"),
        "skipping is loud:\n{log}"
    );
    // Only the damaged record (key 0's write) is lost; the rest replayed.
    let holding = |key: u32| {
        cluster
            .holdings(0, key)
            .into_iter()
            .find(|(id, _)| *id == 2)
            .expect("replica 2 listed")
            .1
            .flatten()
    };
    assert_eq!(holding(0), None);
    for key in 1..10u32 {
        assert_eq!(
            holding(key).map(|v| v.value),
            Some(format!("value-{key}")),
            "key {key}"
        );
    }
}

#[test]
fn a_data_directory_that_cannot_be_used_fails_the_start_with_one_clear_line() {
    let dir = common::unique_dir();
    let config = dir.join("cluster.conf");
    let addrs = common::free_ports(3);
    let text: String = addrs
        .iter()
        .enumerate()
        .map(|(id, addr)| format!("{id} {addr}\n"))
        .collect();
    fs::write(&config, text).expect("config");
    let file = dir.join("not-a-directory");
    fs::write(&file, "x").expect("file");
    for data in [
        file.clone(),
        PathBuf::from("/proc/ringkv-cannot-create-here"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv"))
            .args(["replica", "--config"])
            .arg(&config)
            .args(["--id", "0", "--data"])
            .arg(&data)
            .output()
            .expect("run replica");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("ringkv: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(&data.display().to_string()), "{stderr}");
    }
    let _ = fs::remove_dir_all(&dir);
}
