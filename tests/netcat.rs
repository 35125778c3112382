//! Netcat-style debugging, end to end: `ringkv encode` makes request
//! frames, a plain TCP socket carries them to a real replica, and
//! `ringkv dump --frames` shows what came back; a capture of a real console
//! session, taken by a recording proxy, dumps as every request and reply.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{run_with_stdin, Cluster};

fn ringkv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(args)
        .output()
        .expect("run ringkv")
}

/// `ringkv dump --frames -` of these bytes, as text lines.
fn dump_frames(bytes: &[u8], extra: &[&str]) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringkv"));
    command.args(["dump", "--frames", "-"]).args(extra);
    let output = run_with_binary_stdin(&mut command, bytes);
    let lines: Vec<String> = String::from_utf8(output.stdout.clone())
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    // As fsck tools do: 1 when it reported damage, else 0.
    let damage = lines
        .iter()
        .any(|l| l.contains("DAMAGE") || l.contains("\"damage\""));
    assert_eq!(output.status.code(), Some(i32::from(damage)), "{output:?}");
    lines
}

fn run_with_binary_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("output")
}

/// Sends request bytes on a fresh connection, says it is done sending, and
/// returns everything the replica answered before closing.
fn round_trip(addr: &str, requests: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(requests).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).expect("read replies");
    replies
}

#[test]
fn encode_then_a_socket_then_dump_shows_the_replies() {
    let cluster = Cluster::start(4);
    let encoded = ringkv(&["encode", "put 10 hello netcat"]);
    assert!(encoded.status.success(), "{encoded:?}");
    let lines = dump_frames(&encoded.stdout, &[]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("@0 len=")
            && lines[0]
                .contains("put request_id=1 key=10 value=\"hello netcat\" consistency=QUORUM"),
        "{lines:?}"
    );
    let replies = round_trip(&cluster.addrs[0], &encoded.stdout);
    let lines = dump_frames(&replies, &[]);
    assert!(
        lines[0].contains("put reply request_id=1 timestamp="),
        "{lines:?}"
    );

    let encoded = ringkv(&[
        "encode",
        "--first-request-id",
        "9",
        "consistency ALL",
        "get 10",
        "get 300",
    ]);
    let replies = round_trip(&cluster.addrs[2], &encoded.stdout);
    let mut lines = dump_frames(&replies, &[]);
    lines.sort_by_key(|line| line.contains("request_id=10"));
    assert!(
        lines[0].contains("get reply request_id=9 value=\"hello netcat\""),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("error request_id=10 error=INVALID message=\"key 300 is out of range"),
        "{lines:?}"
    );
    let json = dump_frames(&replies, &["--json"]);
    assert!(
        json.iter()
            .any(|l| l.starts_with("{\"offset\":") && l.contains("\"value\":\"hello netcat\"")),
        "{json:?}"
    );
}

/// A TCP proxy that records both directions of every connection.
struct RecordingProxy {
    addr: String,
    to_replica: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    fn start(target: String) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let to_replica = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let (up, down) = (to_replica.clone(), to_client.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let replica = TcpStream::connect(&target).expect("connect to replica");
                pump(
                    client.try_clone().expect("clone"),
                    replica.try_clone().expect("clone"),
                    up.clone(),
                );
                pump(replica, client, down.clone());
            }
        });
        RecordingProxy {
            addr,
            to_replica,
            to_client,
        }
    }
}

/// Copies `from` to `to`, recording every byte, until `from` closes.
fn pump(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 {
                break;
            }
            record
                .lock()
                .expect("record")
                .extend_from_slice(&buffer[..n]);
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn a_captured_console_session_dumps_as_every_request_and_reply() {
    let cluster = Cluster::start(4);
    let proxy = RecordingProxy::start(cluster.addrs[1].clone());
    let config = cluster.dir.join("through-proxy.conf");
    let text: String = (0..4)
        .map(|id| {
            let addr = if id == 1 {
                &proxy.addr
            } else {
                &cluster.addrs[id]
            };
            format!("{id} {addr}\n")
        })
        .collect();
    std::fs::write(&config, text).expect("write config");
    let mut console = Command::new(env!("CARGO_BIN_EXE_ringkv"));
    console.args([
        "client",
        "--config",
        config.to_str().expect("path"),
        "--coordinator",
        "1",
    ]);
    let output = run_with_stdin(
        &mut console,
        "put 70 captured\nget 70\ndelete 70\nget 70\nwhere 70\n",
    );
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        printed.lines().collect::<Vec<_>>()[..4],
        ["OK", "captured", "OK", "NOT FOUND"]
    );
    // The console has exited: its connection is closed and fully recorded.
    thread::sleep(std::time::Duration::from_millis(100));
    let requests = proxy.to_replica.lock().expect("record").clone();
    let replies = proxy.to_client.lock().expect("record").clone();
    let sent = dump_frames(&requests, &[]);
    let kinds: Vec<&str> = sent
        .iter()
        .map(|line| line.split_whitespace().nth(2).expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["put", "get", "delete", "get", "inspect"],
        "{sent:?}"
    );
    let answered = dump_frames(&replies, &[]);
    assert_eq!(answered.len(), 5, "{answered:?}");
    assert!(
        answered[1].contains("get reply request_id=2 value=\"captured\""),
        "{answered:?}"
    );
    assert!(
        answered[3].contains("get reply request_id=4 found=false"),
        "{answered:?}"
    );
    assert!(answered[4].contains("inspect reply"), "{answered:?}");
    // The same capture cut in the middle of its last frame.
    let cut = dump_frames(&replies[..replies.len() - 3], &[]);
    assert_eq!(cut.len(), 5);
    assert!(
        cut[4].contains("DAMAGE: the stream ends mid-frame"),
        "{cut:?}"
    );
    // And a length prefix no replica would accept.
    let mut oversize = requests[..].to_vec();
    oversize.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
    let lines = dump_frames(&oversize, &[]);
    assert!(
        lines[5].contains("exceeds the limit") && lines[5].contains("closes the connection"),
        "{lines:?}"
    );
}

#[test]
fn dump_shows_every_intact_record_and_each_damage_in_a_data_directory() {
    let mut cluster = Cluster::start(4);
    for key in 0..12u32 {
        cluster
            .put(
                0,
                key,
                &format!("value {key}"),
                ringkv::protocol::proto::Consistency::All,
            )
            .expect("put");
    }
    cluster
        .delete(0, 5, ringkv::protocol::proto::Consistency::All)
        .expect("delete");
    cluster.kill(1);
    let data = cluster.data_dir(1);
    let dir = data.join("wal");
    let segment = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .expect("a segment");
    let clean = ringkv(&["dump", data.to_str().expect("path")]);
    assert_eq!(clean.status.code(), Some(0), "a whole log exits 0");
    let clean_text = String::from_utf8(clean.stdout).expect("utf-8");
    let records = clean_text
        .lines()
        .filter(|l| l.contains(" crc=ok "))
        .count();
    assert_eq!(records, 13, "{clean_text}");
    assert!(
        clean_text.contains("write key=3 value=\"value 3\""),
        "{clean_text}"
    );
    assert!(
        clean_text.contains("delete key=5 tombstone=true"),
        "{clean_text}"
    );
    assert!(
        clean_text.contains("hints"),
        "the hints log is listed too:\n{clean_text}"
    );

    // Flip a bit in the payload of the fourth record, and leave half a
    // record at the end, as a crash in the middle of a write would.
    let mut bytes = std::fs::read(&segment).expect("read");
    let fourth = clean_text
        .lines()
        .filter(|l| l.contains(" crc=ok "))
        .nth(3)
        .and_then(|l| l.split(" @").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("offset of the fourth record");
    bytes[fourth + 10] ^= 0x01;
    let whole = bytes.len();
    let half_a_record: Vec<u8> = bytes[wal::SEGMENT_HEADER_LEN as usize..][..20].to_vec();
    bytes.extend_from_slice(&half_a_record);
    std::fs::write(&segment, &bytes).expect("damage");
    let damaged = ringkv(&["dump", dir.to_str().expect("path")]);
    assert_eq!(damaged.status.code(), Some(1), "damage exits 1");
    let text = String::from_utf8(damaged.stdout).expect("utf-8");
    assert_eq!(
        text.lines().filter(|l| l.contains(" crc=ok ")).count(),
        12,
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("@{fourth} ")) && l.contains("crc=BAD")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("@{whole} ")) && l.contains("DAMAGE")),
        "{text}"
    );
    // It only reads: the damage is still there for the replica to judge.
    assert_eq!(std::fs::read(&segment).expect("read"), bytes);
    let json = ringkv(&["dump", "--json", segment.to_str().expect("path")]);
    let json = String::from_utf8(json.stdout).expect("utf-8");
    assert!(
        json.lines().all(|l| l.starts_with('{') && l.ends_with('}')),
        "{json}"
    );
    assert!(json.contains("\"crc_ok\":false"), "{json}");

    // The directory holding the data directories dumps each of them, and
    // the damage in one still makes the exit status 1.
    let parent = data.parent().expect("the data directories' parent");
    let all = ringkv(&["dump", parent.to_str().expect("path")]);
    assert_eq!(all.status.code(), Some(1));
    let all = String::from_utf8(all.stdout).expect("utf-8");
    for id in 0..4 {
        let wal = cluster.data_dir(id).join("wal");
        assert!(
            all.contains(wal.to_str().expect("path")),
            "replica {id}'s wal:\n{all}"
        );
    }
    // A file that is no log gets one sentence, and input that cannot be
    // read at all exits 2.
    let stray = parent.join("not-a-log");
    std::fs::write(&stray, "hello, this is text").expect("stray file");
    let stray_dump = ringkv(&["dump", stray.to_str().expect("path")]);
    assert_eq!(stray_dump.status.code(), Some(1));
    let stray_text = String::from_utf8(stray_dump.stdout).expect("utf-8");
    assert!(
        stray_text.contains("not a ringkv log segment"),
        "{stray_text}"
    );
    assert!(!stray_text.contains('['), "{stray_text}");
    // The clock lease is read, not taken for a bad segment: in the data
    // directory's dump, and given alone; a damaged one is damage.
    assert!(clean_text.contains("clock-lease until="), "{clean_text}");
    let copy = parent.join("lease-copy");
    std::fs::create_dir_all(&copy).expect("dir");
    let lease = copy.join("clock-lease");
    std::fs::copy(data.join("clock-lease"), &lease).expect("copy the lease");
    let alone = ringkv(&["dump", lease.to_str().expect("path")]);
    assert_eq!(alone.status.code(), Some(0), "{alone:?}");
    assert!(String::from_utf8_lossy(&alone.stdout).contains("clock-lease until="));
    std::fs::write(&lease, "not a time").expect("damage the lease");
    let bad = ringkv(&["dump", lease.to_str().expect("path")]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("does not hold a timestamp"));
    let missing = ringkv(&["dump", parent.join("nothing-here").to_str().expect("path")]);
    assert_eq!(missing.status.code(), Some(2));
}
