//! `scripts/run_cluster.sh` as a user runs it: start four replicas, talk to
//! them through the script's console, see them in `status`, and stop exactly
//! the processes it started.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn script(run_dir: &Path, config: &Path, args: &[&str], stdin: &str) -> Output {
    script_with_flags(run_dir, config, None, args, stdin)
}

/// The script with `REPLICA_ARGS` set to `flags`, or unset for `None`.
fn script_with_flags(
    run_dir: &Path,
    config: &Path,
    flags: Option<&str>,
    args: &[&str],
    stdin: &str,
) -> Output {
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/run_cluster.sh"
    ));
    command
        .args(args)
        .env("RUN_DIR", run_dir)
        .env("CONFIG", config)
        .env("RINGKV_BIN", env!("CARGO_BIN_EXE_ringkv"))
        .env_remove("REPLICA_ARGS");
    if let Some(flags) = flags {
        command.env("REPLICA_ARGS", flags);
    }
    common::run_with_stdin(&mut command, stdin)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn pid_of(run_dir: &Path, id: usize) -> u32 {
    fs::read_to_string(run_dir.join(format!("replica-{id}.pid")))
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// Runs `stop` when the test ends, passed or failed, so that replicas the
/// script detached (setsid) never outlive the test.
struct StopOnDrop<'a> {
    run_dir: &'a Path,
    config: &'a Path,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        script(self.run_dir, self.config, &["stop"], "");
    }
}

/// A cluster file of four replicas on free loopback ports.
fn write_cluster_file(config: &Path) {
    let lines: String = common::free_ports(4)
        .iter()
        .enumerate()
        .map(|(id, addr)| format!("{id} {addr}\n"))
        .collect();
    fs::write(config, lines).expect("cluster file");
}

/// SIGKILLs a replica and waits until it is gone.
fn sigkill_and_wait(pid: u32) {
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    while cmdline(pid).contains("ringkv") {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn cmdline(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .replace('\0', " ")
}

#[test]
fn help_says_what_the_script_does_and_exits_0() {
    let dir = common::unique_dir();
    let help = script(&dir, &dir.join("cluster.conf"), &["--help"], "");
    assert!(help.status.success(), "{}", text(&help));
    let out = String::from_utf8_lossy(&help.stdout);
    assert!(
        out.contains("Starts a four-replica") && out.contains("REPLICA_ARGS"),
        "{out}"
    );
    let wrong = script(&dir, &dir.join("cluster.conf"), &["frobnicate"], "");
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    assert!(text(&wrong).contains("--help"), "{}", text(&wrong));
}

#[test]
fn a_replica_restarted_later_gets_the_flags_its_peers_started_with() {
    let dir = common::unique_dir();
    let run_dir = dir.join("run");
    let config = dir.join("cluster.conf");
    let _stop = StopOnDrop {
        run_dir: &run_dir,
        config: &config,
    };
    write_cluster_file(&config);
    let flags = "--repair read-repair";
    let started = script_with_flags(&run_dir, &config, Some(flags), &["start"], "");
    assert!(started.status.success(), "{}", text(&started));
    assert!(cmdline(pid_of(&run_dir, 1)).contains(flags));

    // Replica 1 dies; a later start without REPLICA_ARGS brings it back
    // with the same flags, and says where they came from.
    let killed = pid_of(&run_dir, 1);
    sigkill_and_wait(killed);
    let restarted = script(&run_dir, &config, &["start"], "");
    let out = text(&restarted);
    assert!(restarted.status.success(), "{out}");
    assert!(out.contains("using the replica flags remembered"), "{out}");
    assert!(out.contains("replica 0 is already running"), "{out}");
    let again = pid_of(&run_dir, 1);
    assert_ne!(again, killed);
    assert!(cmdline(again).contains(flags), "{}", cmdline(again));

    // Setting REPLICA_ARGS, even to nothing, replaces what was remembered.
    sigkill_and_wait(again);
    let plain = script_with_flags(&run_dir, &config, Some(""), &["start"], "");
    assert!(plain.status.success(), "{}", text(&plain));
    assert!(!text(&plain).contains("remembered"), "{}", text(&plain));
    assert!(!cmdline(pid_of(&run_dir, 1)).contains("--repair"));
    assert!(!run_dir.join("replica-args").exists());
    drop(_stop);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_script_starts_serves_reports_and_stops_its_own_replicas() {
    let dir = common::unique_dir();
    let run_dir = dir.join("run");
    let config = dir.join("cluster.conf");
    let _stop = StopOnDrop {
        run_dir: &run_dir,
        config: &config,
    };
    write_cluster_file(&config);

    // With no subcommand: start, then a console on replica 0 (stdin piped).
    let started = script(&run_dir, &config, &[], "put 10 from the script\nget 10\n");
    assert!(started.status.success(), "{}", text(&started));
    let out = text(&started);
    assert!(
        out.contains("OK\nfrom the script\n"),
        "the console answered:\n{out}"
    );
    assert!(out.contains("still running"), "{out}");
    let pids: Vec<u32> = (0..4).map(|id| pid_of(&run_dir, id)).collect();
    for pid in &pids {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "replica pid {pid} runs after the console exits"
        );
    }
    assert!(
        run_dir.join("data-0/wal").is_dir(),
        "data lives under the run directory"
    );

    let status = script(&run_dir, &config, &["status"], "");
    let out = text(&status);
    for (id, pid) in pids.iter().enumerate() {
        assert!(
            out.contains(&format!("replica {id}: running (pid {pid})")),
            "{out}"
        );
    }
    assert!(
        out.contains("replica 3 ") && out.contains("sees all peers up"),
        "{out}"
    );

    // A second start leaves the running replicas alone.
    let again = script(&run_dir, &config, &["start"], "");
    assert!(
        again.status.success() && text(&again).contains("already running"),
        "{}",
        text(&again)
    );
    assert_eq!(
        (0..4).map(|id| pid_of(&run_dir, id)).collect::<Vec<_>>(),
        pids
    );

    let console = script(&run_dir, &config, &["console", "2"], "get 10\n");
    assert_eq!(
        String::from_utf8_lossy(&console.stdout),
        "from the script\n"
    );

    // A second cluster on the same ports, from another run directory: its
    // replicas cannot listen, and start says so instead of reporting the
    // first cluster's answers as its own.
    let other_run_dir = dir.join("other-run");
    let _stop_other = StopOnDrop {
        run_dir: &other_run_dir,
        config: &config,
    };
    let clash = script(&other_run_dir, &config, &["start"], "");
    let out = text(&clash);
    assert!(!clash.status.success(), "{out}");
    assert!(
        out.contains("replica 0 did not start") && out.contains("cannot listen"),
        "{out}"
    );
    for pid in &pids {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the first cluster's replica {pid} is untouched"
        );
    }

    let stopped = script(&run_dir, &config, &["stop"], "");
    assert!(stopped.status.success(), "{}", text(&stopped));
    for pid in &pids {
        let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!cmdline.contains("ringkv"), "replica pid {pid} is stopped");
    }
    let status = script(&run_dir, &config, &["status"], "");
    assert!(
        text(&status).contains("replica 0: not running"),
        "{}",
        text(&status)
    );
    let _ = fs::remove_dir_all(&dir);
}
