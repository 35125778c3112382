//! A full disk: puts through a replica whose disk is full fail with
//! INTERNAL ("disk full") and nothing unacknowledged is kept, gets go on,
//! puts work again once space is freed without a restart, and the log is
//! never left corrupt: a SIGKILL and restart replays exactly what was
//! acknowledged. The small disk is a tmpfs mount, so this needs root; it
//! says so and skips otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Cluster;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::Consistency;

/// A tmpfs mounted for the test; unmounted (lazily, in case a replica
/// still has it open) when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Result<SmallDisk, String> {
        let _ = std::fs::remove_dir_all(path);
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(SmallDisk {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_refuses_puts_keeps_serving_gets_and_recovers_without_a_restart() {
    let mut cluster =
        Cluster::start_with(4, &["--repair", "read-repair", "--anti-entropy-secs", "0"]);
    cluster.kill(1);
    let disk = match SmallDisk::mount(&cluster.data_dir(1), "4m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: a full disk needs a small tmpfs mount, which needs root ({why})");
            return;
        }
    };
    // Leave about 700 KiB free.
    let ballast = disk.path.join("ballast");
    std::fs::write(&ballast, vec![1u8; 3 * 1024 * 1024 + 300 * 1024]).expect("ballast");
    cluster.spawn(1);
    cluster.wait_until_all_see_each_other();

    // Keys 10 (replicas 0,1,2) and 70 (1,2,3), written at ALL through
    // coordinator 0 until replica 1's disk is full.
    let big = "x".repeat(16 * 1024);
    let mut last_acked = std::collections::HashMap::new();
    let mut refusal = None;
    for n in 0..200 {
        let key = if n % 2 == 0 { 10 } else { 70 };
        let value = format!("{n}:{big}");
        match cluster.put(0, key, &value, Consistency::All) {
            Ok(_) => {
                last_acked.insert(key, value);
            }
            Err(error) => {
                refusal = Some(error);
                break;
            }
        }
    }
    let refusal = refusal.expect("the disk filled up");
    assert_eq!(refusal.kind, ErrorKind::Internal, "{refusal}");
    assert!(refusal.message.contains("disk full"), "{refusal}");
    // Still full: ALL keeps failing, QUORUM works without replica 1, and
    // gets through replica 1 are served.
    let error = cluster
        .put(0, 70, &format!("still full:{big}"), Consistency::All)
        .expect_err("full");
    assert!(error.message.contains("disk full"), "{error}");
    cluster
        .put(
            0,
            70,
            &format!("quorum without 1:{big}"),
            Consistency::Quorum,
        )
        .expect("quorum put");
    assert!(cluster
        .get(1, 10, Consistency::One)
        .expect("get while full")
        .is_some());
    assert!(cluster.log(1).contains("disk full"), "{}", cluster.log(1));

    // Free space: puts through replica 1's disk work again, no restart.
    std::fs::remove_file(&ballast).expect("free space");
    cluster
        .put(0, 10, "after freeing space", Consistency::All)
        .expect("put after freeing");
    assert!(
        cluster.log(1).contains("the disk has room again"),
        "{}",
        cluster.log(1)
    );

    // At once, with no reads and anti-entropy off, replica 1 runs a round
    // and takes the QUORUM put it missed while full.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cluster
        .log(1)
        .contains("anti-entropy round after the disk had room again")
    {
        assert!(std::time::Instant::now() < deadline, "{}", cluster.log(1));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The log is intact and holds exactly what replica 1 acknowledged,
    // and what its round took.
    cluster.kill(1);
    cluster.restart(1);
    assert!(!cluster.log(1).contains("corrupt"), "{}", cluster.log(1));
    // Compared by the part before ':' (the values are 16 KiB long).
    let held = |key: u32| {
        let value = cluster
            .held(0, 1, key)
            .flatten()
            .map(|v| v.value)
            .expect("replica 1 holds the key");
        value.split(':').next().unwrap_or_default().to_string()
    };
    assert!(last_acked.contains_key(&70), "acked 70");
    assert_eq!(held(10), "after freeing space");
    assert_eq!(held(70), "quorum without 1");
    drop(disk);
}
