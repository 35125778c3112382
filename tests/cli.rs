//! The binary as a newcomer meets it: `--version` and `-h`, argument errors
//! that point at the subcommand's help, and output piped into a reader
//! that stops early ending quietly with status 0 rather than a panic.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn ringkv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringkv"))
}

#[test]
fn version_and_short_help() {
    let out = ringkv().arg("--version").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("ringkv {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let out = ringkv().arg("-h").output().expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"));
    let out = ringkv()
        .args(["status", "--no-such-flag"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("status --help"), "{text}");
}

/// Runs `args` with `input` on stdin, reads one byte of its output, closes
/// the pipe, and returns its exit status and what it said on stderr.
fn read_one_byte_then_close(args: &[&str], input: Vec<u8>) -> (std::process::ExitStatus, String) {
    let mut child = ringkv()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).expect("some output");
    drop(stdout);
    let _ = feeder.join();
    let out = child.wait_with_output().expect("wait");
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    let lines: String = (0..200_000).map(|i| format!("get {}\n", i % 256)).collect();
    let (status, stderr) = read_one_byte_then_close(&["encode"], lines.into_bytes());
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // dump --frames of a large capture, read one byte.
    let frames = ringkv()
        .arg("encode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().expect("stdin");
            let text: String = (0..50_000)
                .map(|i| format!("put {} v{i}\n", i % 256))
                .collect();
            std::thread::spawn(move || stdin.write_all(text.as_bytes()));
            child.wait_with_output()
        })
        .expect("encode")
        .stdout;
    let (status, stderr) = read_one_byte_then_close(&["dump", "--frames", "-"], frames);
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn encode_stops_at_quit_and_skips_help_so_a_console_script_pipes_through() {
    let mut encode = ringkv()
        .arg("encode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("encode");
    encode
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"put 1 a\nhelp\nget 1\nquit\nput 2 b\n")
        .expect("feed");
    let out = encode.wait_with_output().expect("encode");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'help' is for the console"));
    let mut dump = ringkv()
        .args(["dump", "--frames", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("dump");
    dump.stdin
        .take()
        .expect("stdin")
        .write_all(&out.stdout)
        .expect("feed");
    let shown = String::from_utf8_lossy(&dump.wait_with_output().expect("dump").stdout).to_string();
    let frames: Vec<&str> = shown.lines().collect();
    assert_eq!(frames.len(), 2, "{shown}");
    assert!(
        frames[0].contains("put") && frames[1].contains("get"),
        "{shown}"
    );
}

#[test]
fn the_cluster_file_comes_from_the_flag_then_ringkv_config() {
    let dir = std::env::temp_dir().join(format!("ringkv-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("elsewhere.conf");
    // Ports nothing listens on: status reports each replica down.
    std::fs::write(&file, "0 127.0.0.1:9\n1 127.0.0.1:19\n2 127.0.0.1:29\n").expect("write");
    let out = ringkv()
        .arg("status")
        .env("RINGKV_CONFIG", &file)
        .current_dir(&dir)
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("127.0.0.1:19") && text.contains("DOWN"),
        "{text}"
    );
    // With neither, and no cluster.conf where it runs: one clear line.
    let out = ringkv()
        .arg("status")
        .env_remove("RINGKV_CONFIG")
        .current_dir(&dir)
        .output()
        .expect("status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster file"));
    let _ = std::fs::remove_dir_all(&dir);
}
