//! The checks behind ringkv's fuzz targets, one public function per target.
//!
//! Each takes arbitrary bytes, feeds them to the code a replica (or `ringkv
//! dump`, or the console) runs on untrusted input, and panics if that code
//! panics or answers something that cannot be right. They live in a library
//! rather than in the targets so that the normal test suite
//! (`tests/random_bytes.rs`, which includes this file by path) runs the very
//! same checks on seeded random input: CI exercises these paths even where
//! libFuzzer is not available.
//!
//! Only `std`, `prost`, `ringkv` and `wal` are used, because the root test
//! suite has exactly those at hand.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use prost::Message;
use ringkv::client::console::{parse_line, render_value, Command};
use ringkv::cluster::replica_write::checked_replica_write;
use ringkv::cluster::ring::Ring;
use ringkv::cmd::dump::frame_lines;
use ringkv::cmd::encode::encode_lines;
use ringkv::protocol::checks::{checked_key, checked_value};
use ringkv::protocol::describe;
use ringkv::protocol::frame::{split_captured, CapturedFrame, DEFAULT_MAX_FRAME_BYTES};
use ringkv::protocol::proto::{Body, Consistency, Envelope, MAX_KEY};
use wal::{inspect_segment, InspectedEntry, Options, Wal, RECORD_HEADER_LEN};

/// The replicas' default value limit (`--max-value-bytes`, 1 MiB): the one
/// a request meets unless the operator changed it.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// The name of the first segment of a WAL, as the crate writes it.
pub const FIRST_SEGMENT: &str = "00000000000000000001.wal";

/// The name of the second segment of a WAL.
pub const SECOND_SEGMENT: &str = "00000000000000000002.wal";

/// Target `frame_envelope`: the frame decoder, then the Envelope decode and
/// every pure check a replica runs on a decoded request, then the
/// descriptions `dump` prints of it.
pub fn frame_envelope(bytes: &[u8]) {
    let pieces = split_captured(bytes, DEFAULT_MAX_FRAME_BYTES);
    check_split_covers(bytes, &pieces, DEFAULT_MAX_FRAME_BYTES);
    for piece in pieces {
        if let CapturedFrame::Frame { body, .. } = piece {
            if let Ok(envelope) = Envelope::decode(body) {
                check_envelope(&envelope);
            }
        }
    }
    // A small limit reaches the TooLong branch with short inputs too.
    let small = 64;
    check_split_covers(bytes, &split_captured(bytes, small), small);
}

/// The checks for one decoded envelope: what a replica does with a request
/// before it touches any state, and what `dump --frames` prints of it.
pub fn check_envelope(envelope: &Envelope) {
    match &envelope.body {
        Some(Body::Get(request)) => {
            check_key(request.key);
            check_level(request.consistency);
        }
        Some(Body::Put(request)) => {
            check_key(request.key);
            check_level(request.consistency);
            check_value(&request.value);
        }
        Some(Body::Delete(request)) => {
            check_key(request.key);
            check_level(request.consistency);
        }
        Some(Body::Inspect(request)) => check_key(request.key),
        Some(Body::Cas(request)) => {
            check_key(request.key);
            check_value(&request.value);
        }
        Some(Body::PaxosPrepare(prepare)) => check_key(prepare.key),
        Some(Body::PaxosPropose(propose)) => {
            check_key(propose.key);
            if let Some(proposal) = &propose.proposal {
                check_value(&proposal.value);
            }
        }
        Some(Body::ReplicaRead(request)) => check_key(request.key),
        Some(Body::ReplicaWrite(write)) => {
            check_key(write.key);
            if let Some(version) = &write.version {
                check_value(&version.value);
            }
            let ring = test_ring();
            for self_id in 0..4 {
                // Whatever the verdict, it must come as a value, not a panic;
                // an accepted write must be one the checks above accept.
                if let Ok((key, version)) = checked_replica_write(
                    ring,
                    self_id,
                    MAX_VALUE_BYTES,
                    write.key,
                    write.version.clone(),
                ) {
                    assert_eq!(Some(u32::from(key)), write.key);
                    assert!(version.value.len() <= MAX_VALUE_BYTES);
                    assert!(ring.replicas_for(key).contains(&self_id));
                }
            }
        }
        _ => {}
    }
    let described = describe::envelope(envelope);
    let text = described.text();
    assert!(
        !text.contains(['\n', '\r']),
        "an envelope's description is not one line: {text:?}"
    );
    let json = described.json(&[]);
    assert!(
        json.starts_with('{') && json.ends_with('}') && !json.contains(['\n', '\r']),
        "an envelope's JSON is not one object on one line: {json:?}"
    );
    // What decoded must encode and decode back to itself (prost drops
    // unknown fields, so compare the decoded forms).
    let again =
        Envelope::decode(envelope.encode_to_vec().as_slice()).expect("an encoded Envelope decodes");
    assert_eq!(&again, envelope, "an Envelope does not survive re-encoding");
}

/// A key check gives a key exactly when the wire key is present and 0-255.
fn check_key(key: Option<u32>) {
    match (checked_key(key), key) {
        (Ok(checked), Some(raw)) => assert_eq!(u32::from(checked), raw),
        (Ok(checked), None) => panic!("a missing key was accepted as {checked}"),
        (Err(_), Some(raw)) => assert!(raw > MAX_KEY, "key {raw} was refused"),
        (Err(_), None) => {}
    }
}

/// A level check accepts exactly ONE, QUORUM, ALL and SERIAL.
fn check_level(level: i32) {
    match Consistency::from_wire(level) {
        Ok(accepted) => {
            assert!((1..=4).contains(&level), "level {level} was accepted");
            assert_eq!(accepted as i32, level);
        }
        Err(_) => assert!(!(1..=4).contains(&level), "level {level} was refused"),
    }
}

/// A value check accepts exactly the values within the limit.
fn check_value(value: &str) {
    assert_eq!(
        checked_value(value, MAX_VALUE_BYTES).is_ok(),
        value.len() <= MAX_VALUE_BYTES
    );
    assert_eq!(checked_value(value, 0).is_ok(), value.is_empty());
}

/// A four-replica ring like `Cluster::start(4)` makes, built once.
fn test_ring() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(|| {
        Ring::parse("0 127.0.0.1:1\n1 127.0.0.1:2\n2 127.0.0.1:3\n3 127.0.0.1:4\n")
            .expect("a four-line cluster file parses")
    })
}

/// `split_captured` must cover the input exactly, in order: whole frames
/// back to back from offset 0, then at most one final TooLong or Cut piece
/// that accounts for the rest.
pub fn check_split_covers(bytes: &[u8], pieces: &[CapturedFrame<'_>], limit: usize) {
    let mut cursor = 0;
    for (index, piece) in pieces.iter().enumerate() {
        let last = index + 1 == pieces.len();
        match piece {
            CapturedFrame::Frame { offset, body } => {
                assert_eq!(*offset, cursor, "frame does not start where the last ended");
                let prefix = bytes
                    .get(cursor..cursor + 4)
                    .expect("a frame's prefix is inside the input");
                let claimed = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
                assert_eq!(claimed as usize, body.len());
                assert!(body.len() <= limit);
                assert_eq!(Some(*body), bytes.get(cursor + 4..cursor + 4 + body.len()));
                cursor += 4 + body.len();
            }
            CapturedFrame::TooLong { offset, claimed } => {
                assert!(last, "a piece follows a refused frame");
                assert_eq!(*offset, cursor);
                assert!(*claimed > limit);
                cursor = bytes.len();
            }
            CapturedFrame::Cut {
                offset,
                received,
                expected,
            } => {
                assert!(last, "a piece follows a cut frame");
                assert_eq!(*offset, cursor);
                assert_eq!(*received, bytes.len() - cursor);
                assert!(received < expected);
                cursor = bytes.len();
            }
        }
    }
    assert_eq!(cursor, bytes.len(), "the pieces do not cover the input");
}

/// Target `console_line`: the console's parser on any line, the encoder
/// `ringkv encode` runs on it, and the one-line rule for shown values.
pub fn console_line(bytes: &[u8]) {
    let line = String::from_utf8_lossy(bytes);
    let parsed = parse_line(&line);
    let encoded = encode_lines(&[line.to_string()], 1, Consistency::Quorum);
    match &parsed {
        Ok(
            Command::Get(_)
            | Command::Put(..)
            | Command::Delete(_)
            | Command::Cas(..)
            | Command::Where(_),
        ) => {
            let frames = encoded.expect("a request line encodes");
            assert_eq!(frames.len(), 1, "one request line makes one frame");
            let pieces = split_captured(&frames[0], DEFAULT_MAX_FRAME_BYTES);
            assert!(
                matches!(pieces.as_slice(), [CapturedFrame::Frame { .. }]),
                "an encoded line is not one whole frame"
            );
        }
        Ok(Command::Nothing | Command::Consistency(_) | Command::Help | Command::Quit) => {
            assert_eq!(
                encoded.expect("a blank, level, help or quit line encodes"),
                Vec::<Vec<u8>>::new()
            );
        }
        Err(_) => assert!(encoded.is_err(), "a line that is not a request encoded"),
    }
    if let Ok(Command::Put(_, value)) = &parsed {
        let shown = render_value(value);
        assert!(
            !shown.contains(['\n', '\r']),
            "the value {value:?} is shown on more than one line: {shown:?}"
        );
    }
}

/// Target `dump_frames`: `ringkv dump --frames` on any captured stream, in
/// text and JSON: one line per piece the splitter finds, never a panic.
pub fn dump_frames(bytes: &[u8]) {
    let pieces = split_captured(bytes, DEFAULT_MAX_FRAME_BYTES).len();
    for json in [false, true] {
        let lines = frame_lines(bytes, json);
        assert_eq!(lines.len(), pieces, "one line per frame (json: {json})");
        for line in &lines {
            assert!(
                !line.contains(['\n', '\r']),
                "a dump line spans lines: {line:?}"
            );
            if json {
                assert!(
                    line.starts_with('{') && line.ends_with('}'),
                    "not JSON: {line:?}"
                );
            }
        }
    }
}

/// Target `wal_replay`: the bytes as a segment file, opened by `Wal::open`
/// (strict and with `skip_corrupt`), alone and after a valid segment; then
/// `inspect_segment` on them.
pub fn wal_replay(bytes: &[u8]) {
    check_inspection(bytes);
    for skip_corrupt in [false, true] {
        let dir = ScratchDir::new();
        fs::write(dir.path().join(FIRST_SEGMENT), bytes).expect("write the segment");
        open_and_reopen(dir.path(), skip_corrupt);

        let dir = ScratchDir::new();
        fs::write(dir.path().join(FIRST_SEGMENT), valid_segment()).expect("write segment 1");
        fs::write(dir.path().join(SECOND_SEGMENT), bytes).expect("write segment 2");
        open_and_reopen(dir.path(), skip_corrupt);
    }
}

/// Opens the WAL in `dir`; if that succeeds, appends one record, and checks
/// that a second open replays exactly what the first did plus that record:
/// whatever recovery repaired, an acknowledged append after it must survive.
fn open_and_reopen(dir: &Path, skip_corrupt: bool) {
    let options = Options {
        skip_corrupt,
        ..Options::default()
    };
    let mut first = Vec::new();
    let opened = Wal::open(dir, options.clone(), |payload| {
        first.push(payload.to_vec());
        Ok(())
    });
    let Ok((mut log, _report)) = opened else {
        return;
    };
    // An append can only fail on a real I/O error, which a fuzz input
    // cannot cause; then there is nothing more to check.
    if log.append_batch(&[b"after recovery"]).is_err() {
        return;
    }
    drop(log);
    first.push(b"after recovery".to_vec());
    let mut second = Vec::new();
    let reopened = Wal::open(dir, options, |payload| {
        second.push(payload.to_vec());
        Ok(())
    });
    if let Err(error) = reopened {
        panic!("a log that opened and took an append no longer opens: {error}");
    }
    assert_eq!(
        second, first,
        "a reopen does not replay what the first open did plus the append (skip_corrupt: {skip_corrupt})"
    );
}

/// `inspect_segment` on arbitrary bytes: its entries are in file order, back
/// to back from the end of the header to the end of the input, and every
/// record's payload is the input's bytes at that place.
pub fn check_inspection(bytes: &[u8]) {
    let inspection = inspect_segment(bytes);
    let header_len = match bytes.get(8..12) {
        Some([0, 0, 0, 1]) => 16,
        Some([0, 0, 0, 2]) => 28,
        _ => 32,
    };
    let mut cursor = header_len.min(bytes.len());
    for entry in &inspection.entries {
        match entry {
            InspectedEntry::Record {
                offset,
                len,
                payload,
                ..
            } => {
                assert_eq!(
                    *offset, cursor as u64,
                    "a record is not where the last entry ended"
                );
                assert_eq!(*len as usize, payload.len());
                let start = cursor + RECORD_HEADER_LEN;
                assert_eq!(
                    bytes.get(start..start + payload.len()),
                    Some(payload.as_slice()),
                    "a record's payload is not the input's bytes"
                );
                cursor = start + payload.len();
            }
            InspectedEntry::Seal { offset, .. } => {
                assert_eq!(
                    *offset, cursor as u64,
                    "a seal is not where the last entry ended"
                );
                cursor += 24;
                assert!(
                    cursor <= bytes.len(),
                    "a seal runs past the end of the input"
                );
            }
            InspectedEntry::Damage { offset, len, .. } => {
                assert_eq!(
                    *offset, cursor as u64,
                    "damage is not where the last entry ended"
                );
                assert!(*len > 0, "an empty damaged region");
                cursor += usize::try_from(*len).expect("a length within the input");
                assert!(
                    cursor <= bytes.len(),
                    "damage runs past the end of the input"
                );
            }
        }
    }
    assert_eq!(cursor, bytes.len(), "the entries do not cover the input");
}

/// A valid first segment holding three records, written once through the
/// crate's own API, so that the second-segment case starts from real bytes.
pub fn valid_segment() -> &'static [u8] {
    static SEGMENT: OnceLock<Vec<u8>> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        let dir = ScratchDir::new();
        let (mut log, _) =
            Wal::open(dir.path(), Options::default(), |_| Ok(())).expect("open a fresh WAL");
        log.append_batch(&[b"first", b"second"])
            .expect("append to a fresh WAL");
        log.append_batch(&[b"third"])
            .expect("append to a fresh WAL");
        drop(log);
        fs::read(dir.path().join(FIRST_SEGMENT)).expect("read the segment back")
    })
}

/// A fresh directory for one WAL, removed when dropped. On tmpfs
/// (`/dev/shm`) when there is one, so that the fsyncs the WAL makes cost
/// nothing and the fuzzer keeps its pace.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Makes a directory no other call (in any process) uses.
    pub fn new() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "ringkv-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a scratch directory");
        ScratchDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        ScratchDir::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
