//! What a replica does with a damaged write-ahead log at start: a torn tail
//! (a crash mid-append) is cut off with a warning and the replica serves
//! every write it acknowledged; damage before the tail is corruption, and the
//! replica refuses to start, naming the file and offset, unless the operator
//! passes --skip-corrupt-wal.

mod common;

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use common::Cluster;
use ringkv::protocol::proto::Consistency;

/// The newest segment file in replica `id`'s WAL.
fn newest_segment(cluster: &Cluster, id: usize) -> PathBuf {
    let mut segments: Vec<PathBuf> = fs::read_dir(cluster.data_dir(id).join("wal"))
        .expect("wal dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
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
        // Replica 1 holds keys 0-63 as the second replica.
        let held = cluster
            .holdings(1, key)
            .into_iter()
            .find(|(id, _)| *id == 1)
            .expect("replica 1 listed")
            .1;
        assert_eq!(
            held.flatten().map(|v| v.value),
            Some(format!("v{key}")),
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
