//! Seeded random bytes through every parser of untrusted input, in the
//! normal suite: the same checks as the cargo-fuzz targets in `fuzz/`
//! (that crate's library is included here by path), on random inputs and on
//! mutations of valid frames, console lines and WAL segments, so that CI
//! exercises these paths without libFuzzer. Then a real replica is sent
//! random frames and random streams and must keep serving.
//!
//! Everything is driven by one xorshift generator with a fixed seed, so a
//! failure reproduces; a failing input is printed in hex before the panic
//! goes on, ready to become a fuzz corpus file or a regression test.
//! `RINGKV_RANDOM_SEED=N` picks another seed.

#[allow(dead_code)] // the fuzz targets use parts of it this test does not
#[path = "../fuzz/src/lib.rs"]
mod checks;
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::cmd::encode::encode_lines;
use ringkv::protocol::frame::encode_frame;
use ringkv::protocol::proto::{
    Body, Consistency, DeleteRequest, Envelope, GetReply, GetRequest, InspectRequest, PutRequest,
    ReplicaRead, ReplicaWrite, Versioned,
};

/// The default seed; any other can be given with `RINGKV_RANDOM_SEED`.
const DEFAULT_SEED: u64 = 0x5eed_f022_2b17_e5a1;

/// Each loop stops at its count or at this much time, whichever comes
/// first, so a slow debug build or a busy machine still finishes well
/// under 10 s.
const LOOP_BUDGET: Duration = Duration::from_millis(1500);

/// xorshift64*: tiny, good enough to pick bytes, and needs no crate.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("RINGKV_RANDOM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_SEED);
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Random bytes of a random length.
    fn blob(&mut self) -> Vec<u8> {
        let len = self.len();
        self.bytes(len)
    }

    /// A random length, mostly short, now and then long.
    fn len(&mut self) -> usize {
        match self.below(10) {
            0 => self.below(4096),
            1..=3 => self.below(8),
            _ => self.below(256),
        }
    }

    /// One to four mutations of `input`: bit flips, truncations,
    /// insertions, overwrites, and the special values that find off-by-ones
    /// in length fields.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = if out.is_empty() {
                0
            } else {
                self.below(out.len())
            };
            match self.below(6) {
                0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                1 => out.truncate(at),
                2 => {
                    let n = 1 + self.below(16);
                    let inserted = self.bytes(n);
                    out.splice(at..at, inserted);
                }
                3 if !out.is_empty() => out[at] = [0, 0xff, 0x7f, 0x80, b'\n'][self.below(5)],
                4 if out.len() >= at + 4 => {
                    let value: u32 =
                        [0, 1, 0xffff_ffff, 0x7fff_ffff, out.len() as u32][self.below(5)];
                    out[at..at + 4].copy_from_slice(&value.to_be_bytes());
                }
                _ => {
                    // Duplicate a slice, as a replayed or doubled write would.
                    let end = (at + 1 + self.below(32)).min(out.len());
                    let copy = out[at..end].to_vec();
                    out.splice(end..end, copy);
                }
            }
        }
        out
    }
}

/// Runs `check` on `input`; if it panics, prints the input in hex (with
/// what it was fed to) before letting the panic fail the test.
fn run(what: &str, input: &[u8], check: fn(&[u8])) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(input))) {
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("{what} panicked on {} bytes: {hex}", input.len());
        resume_unwind(panic);
    }
}

/// Runs `body` at least `min` times, then on up to `max` times while the
/// loop budget lasts; returns how many times it ran. The first `min` inputs
/// are the same on every machine; a fast one gets more on top.
fn repeat(min: usize, max: usize, mut body: impl FnMut()) -> usize {
    let deadline = Instant::now() + LOOP_BUDGET;
    let mut done = 0;
    while done < min || (done < max && Instant::now() < deadline) {
        body();
        done += 1;
    }
    done
}

/// Valid frames of most request and reply kinds, as a capture would hold.
fn valid_stream() -> Vec<u8> {
    let bodies = vec![
        Body::Get(GetRequest {
            key: Some(7),
            consistency: Consistency::Quorum as i32,
        }),
        Body::Put(PutRequest {
            key: Some(200),
            value: "a value\twith \"quotes\"\nand a line".to_string(),
            consistency: Consistency::All as i32,
        }),
        Body::Delete(DeleteRequest {
            key: Some(255),
            consistency: Consistency::One as i32,
        }),
        Body::Inspect(InspectRequest { key: Some(0) }),
        Body::StatusReply(Box::new(ringkv::protocol::proto::StatusReply {
            repair_mode: "both".to_string(),
            ..Default::default()
        })),
        Body::ReplicaRead(ReplicaRead {
            key: Some(64),
            ..Default::default()
        }),
        Body::ReplicaWrite(ReplicaWrite {
            client_write: false,
            key: Some(3),
            version: Some(Versioned {
                value: "x".to_string(),
                timestamp_micros: 1_700_000_000_000_000,
                coordinator_id: 1,
                tombstone: false,
            }),
        }),
        Body::GetReply(GetReply {
            found: Some(Versioned {
                value: String::new(),
                timestamp_micros: u64::MAX,
                coordinator_id: 3,
                tombstone: true,
            }),
        }),
    ];
    let mut stream = Vec::new();
    for (id, body) in bodies.into_iter().enumerate() {
        stream.extend(encode_frame(&Envelope {
            request_id: id as u64 + 1,
            body: Some(body),
        }));
    }
    stream
}

/// Console lines of every command, in the forms people type.
const LINES: &[&str] = &[
    "get 7",
    "put 12 hello world",
    "put 3 \"a \\\"quoted\\\" value\\nwith a line\\tand a tab\"",
    "PUT 255   trailing   ",
    "delete 0",
    "where 200",
    "consistency all",
    "consistency",
    "help",
    "quit",
    "",
];

#[test]
fn random_and_mutated_frames_are_split_decoded_and_described_without_panic() {
    let mut rng = Rng::new();
    let valid = valid_stream();
    // The unmutated stream is all whole frames that decode.
    let pieces = ringkv::protocol::frame::split_captured(
        &valid,
        ringkv::protocol::frame::DEFAULT_MAX_FRAME_BYTES,
    );
    assert_eq!(pieces.len(), 8);
    run("frame_envelope", &valid, checks::frame_envelope);
    run("dump_frames", &valid, checks::dump_frames);

    let random = repeat(500, 3000, || {
        let input = rng.blob();
        run("frame_envelope", &input, checks::frame_envelope);
        run("dump_frames", &input, checks::dump_frames);
    });
    let mutated = repeat(500, 3000, || {
        let input = rng.mutate(&valid);
        run("frame_envelope", &input, checks::frame_envelope);
        run("dump_frames", &input, checks::dump_frames);
    });
    eprintln!("frames: {random} random and {mutated} mutated inputs");
}

#[test]
fn random_and_mutated_console_lines_parse_encode_and_render_on_one_line() {
    let mut rng = Rng::new();
    for line in LINES {
        run("console_line", line.as_bytes(), checks::console_line);
    }
    // The valid lines that are requests encode to frames.
    let requests: Vec<String> = LINES[..6].iter().map(|s| s.to_string()).collect();
    let frames = encode_lines(&requests, 1, Consistency::Quorum).expect("valid lines encode");
    assert_eq!(frames.len(), 6);

    let random = repeat(1000, 5000, || {
        let input = rng.blob();
        run("console_line", &input, checks::console_line);
    });
    let mutated = repeat(1000, 5000, || {
        let line = LINES[rng.below(LINES.len())];
        let input = rng.mutate(line.as_bytes());
        run("console_line", &input, checks::console_line);
    });
    eprintln!("console: {random} random and {mutated} mutated lines");
}

#[test]
fn random_and_mutated_wal_segments_inspect_in_bounds_and_replay_without_panic() {
    let mut rng = Rng::new();
    let valid = checks::valid_segment().to_vec();
    // The valid segment inspects as its three records, all verified.
    let inspection = wal::inspect_segment(&valid);
    assert!(inspection.header.is_ok());
    let payloads: Vec<&[u8]> = inspection
        .entries
        .iter()
        .map(|entry| match entry {
            wal::InspectedEntry::Record {
                crc_ok: true,
                payload,
                ..
            } => payload.as_slice(),
            other => panic!("a valid segment shows {other:?}"),
        })
        .collect();
    assert_eq!(payloads, [&b"first"[..], b"second", b"third"]);
    run("wal_replay", &valid, checks::wal_replay);

    // inspect_segment is pure and fast: many inputs.
    let inspected = repeat(500, 4000, || {
        let input = if rng.below(4) == 0 {
            rng.blob()
        } else {
            rng.mutate(&valid)
        };
        run("inspect_segment", &input, checks::check_inspection);
    });
    // Opening a WAL touches the file system (eight opens per input): fewer.
    let replayed = repeat(30, 400, || {
        let input = if rng.below(4) == 0 {
            rng.blob()
        } else {
            rng.mutate(&valid)
        };
        run("wal_replay", &input, checks::wal_replay);
    });
    eprintln!("wal: {inspected} inspected and {replayed} replayed segments");
}

/// Found by `cargo fuzz run frame_envelope` (and it fails `dump_frames` the
/// same way): a StatusReply whose `repair_mode` string holds line breaks is
/// described with that string bare (`Field::Word`), so `describe::envelope
/// (..).text()`, and with it `ringkv dump --frames`, prints one frame as
/// several lines, which a sender can use to forge lines in a dump.
/// Fixed: `describe` quotes every string that comes from the wire.
#[test]
fn fuzz_crash_status_reply_repair_mode_spans_lines() {
    let found = hex("0000002bba012808080808 2a08000808080808 08082a082a08404040 4040400808080808 082a08050a0a0a0a 0a0a0a0a0a0a0000 000000ff000700 00ff0800");
    run("frame_envelope", &found, checks::frame_envelope);
    run("dump_frames", &found, checks::dump_frames);
    // The same, made by hand: one frame whose description forges a second line.
    let forged = encode_frame(&Envelope {
        request_id: 1,
        body: Some(Body::StatusReply(Box::new(
            ringkv::protocol::proto::StatusReply {
                repair_mode: "off\n@0 len=9 put request_id=2 key=1 value=\"forged\"".to_string(),
                ..Default::default()
            },
        ))),
    });
    run("dump_frames", &forged, checks::dump_frames);
}

/// Writes the seed corpora in `fuzz/seeds/` that `scripts/fuzz.sh` hands
/// libFuzzer beside its own corpus: valid frames, lines and a WAL segment
/// made with the crate's API, which libFuzzer would take long to find
/// alone (a WAL record needs a chained CRC). Run it after a format change:
/// `cargo test --test random_bytes -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files into fuzz/seeds; run by hand after a format change"]
fn write_fuzz_seeds() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = seeds.join(target);
        std::fs::create_dir_all(&dir).expect("create a seed directory");
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    };
    let stream = valid_stream();
    for target in ["frame_envelope", "dump_frames"] {
        write(target, "valid-stream", &stream);
        write(target, "cut-stream", &stream[..stream.len() - 3]);
    }
    for (index, line) in LINES.iter().enumerate() {
        write("console_line", &format!("line-{index:02}"), line.as_bytes());
    }
    write("wal_replay", "valid-segment", checks::valid_segment());
}

/// Bytes from hex digits, spaces ignored.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            u8::from_str_radix(std::str::from_utf8(pair).expect("ASCII"), 16).expect("hex digits")
        })
        .collect()
}

/// Writes `bytes` on a fresh connection to `addr`, then closes the writing
/// half and reads whatever comes back until the replica closes or goes
/// quiet: a refused frame may reset the connection, which is fine.
fn send_and_drain(addr: &str, bytes: &[u8]) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        panic!("replica at {addr} refused a connection");
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("set a write timeout");
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn a_replica_fed_random_frames_and_streams_keeps_serving() {
    let mut rng = Rng::new();
    let mut cluster = Cluster::start(4);
    let target = 1;
    let addr = cluster.addrs[target].clone();

    // 200 frames with a true length prefix and a random body, ten to a
    // connection; some bodies are valid Envelopes by chance, most are not.
    for _ in 0..20 {
        let mut batch = Vec::new();
        for _ in 0..10 {
            let body = rng.blob();
            batch.extend_from_slice(&(body.len() as u32).to_be_bytes());
            batch.extend_from_slice(&body);
        }
        send_and_drain(&addr, &batch);
    }
    // 50 raw streams: any length prefix, cut anywhere.
    for _ in 0..50 {
        let mut stream = rng.blob();
        stream.push(rng.next() as u8);
        send_and_drain(&addr, &stream);
    }

    assert!(cluster.is_running(target), "the replica exited");
    cluster
        .put(target, 10, "x", Consistency::All)
        .expect("an ALL put through the replica after the random input");
    assert_eq!(
        cluster
            .get(target, 10, Consistency::All)
            .expect("an ALL get through the replica after the random input"),
        Some("x".to_string())
    );
    assert!(cluster.is_running(target), "the replica exited");
}
