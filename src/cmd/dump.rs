//! `ringkv dump`: shows a person (or, with `--json`, a script) what a
//! write-ahead log, a hints log or a captured stream of protocol frames
//! holds, one line per record or frame.
//!
//! It only reads: it never repairs, truncates or locks what it reads, so it
//! is safe on the data directory of a running replica. Damage is reported
//! where it is found and the dump goes on with the next record it can find,
//! so one bad byte does not hide the rest of a log.

mod segment;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use argh::FromArgs;
use prost::Message;

use crate::protocol::describe::{self, Field};
use crate::protocol::frame::{split_captured, CapturedFrame, DEFAULT_MAX_FRAME_BYTES};
use crate::protocol::proto::Envelope;
use crate::storage::clock_lease::{read_lease, LEASE_FILE};

/// Print WAL segments, hints logs or a captured stream of protocol frames as text.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "dump")]
pub struct DumpArgs {
    /// a data directory, a wal or hints directory, or one segment file; with --frames, a capture file, or - (the default) for standard input
    #[argh(positional)]
    pub path: Option<PathBuf>,
    /// read PATH as a captured byte stream of protocol frames (length prefix + Envelope), in either direction
    #[argh(switch)]
    pub frames: bool,
    /// print one JSON object per line instead of text
    #[argh(switch)]
    pub json: bool,
}

/// What a dump found: the lines to print, and whether any reports damage.
#[derive(Default)]
pub struct Dump {
    /// One line per segment header, record, seal, frame or damage.
    pub lines: Vec<String>,
    /// Whether some line reports damage (a bad checksum, a cut record, an
    /// undecodable payload or frame), which makes the exit status 1.
    pub damaged: bool,
}

impl Dump {
    fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    fn push_damage(&mut self, line: String) {
        self.damaged = true;
        self.lines.push(line);
    }
}

/// Prints the dump to standard output, and exits as fsck tools do: status
/// 0 when everything read was whole, 1 when damage was reported, 2 when the
/// input could not be read at all.
pub fn run(args: DumpArgs) -> Result<(), String> {
    let dump = match dump(args) {
        Ok(dump) => dump,
        Err(message) => {
            eprintln!("ringkv: {message}");
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout().lock();
    for line in &dump.lines {
        // A closed pipe (`| head`) ends the dump quietly.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    if dump.damaged {
        let _ = out.flush();
        std::process::exit(1);
    }
    Ok(())
}

fn dump(args: DumpArgs) -> Result<Dump, String> {
    if args.frames {
        let bytes = read_capture(args.path.as_deref())?;
        Ok(frames(&bytes, args.json))
    } else {
        let path = args
            .path
            .ok_or("give a data directory, a wal or hints directory, or a segment file")?;
        logs(&path, args.json)
    }
}

fn read_capture(path: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let source = path.unwrap_or(Path::new("/dev/stdin"));
    fs::File::open(source)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    Ok(bytes)
}

/// One line per frame of a captured stream, judged as a replica would.
pub fn frame_lines(bytes: &[u8], json: bool) -> Vec<String> {
    frames(bytes, json).lines
}

fn frames(bytes: &[u8], json: bool) -> Dump {
    let mut dump = Dump::default();
    for piece in split_captured(bytes, DEFAULT_MAX_FRAME_BYTES) {
        let (whole, line) = frame_line(bytes.len(), piece, json);
        if whole {
            dump.push(line);
        } else {
            dump.push_damage(line);
        }
    }
    dump
}

/// The line for one piece of a captured stream of `stream_len` bytes, and
/// whether it is a whole, decodable frame.
fn frame_line(stream_len: usize, piece: CapturedFrame<'_>, json: bool) -> (bool, String) {
    match piece {
        CapturedFrame::Frame { offset, body } => envelope_line(offset, body, json),
        CapturedFrame::TooLong { offset, claimed } => {
            let unread = stream_len - offset;
            (false, damage_line(
                json,
                &[("offset", Field::Num(offset as u64)), ("len", Field::Num(claimed as u64))],
                &format!(
                    "a frame of {claimed} bytes exceeds the limit of {DEFAULT_MAX_FRAME_BYTES} bytes: \
                     a replica refuses it and closes the connection ({unread} bytes from here not read)"
                ),
            ))
        }
        CapturedFrame::Cut {
            offset,
            received,
            expected,
        } => (
            false,
            damage_line(
                json,
                &[
                    ("offset", Field::Num(offset as u64)),
                    ("len", Field::Num(expected as u64)),
                ],
                &format!("the stream ends mid-frame, after {received} of {expected} bytes"),
            ),
        ),
    }
}

/// A whole frame at `offset`: the envelope it holds, or damage when it
/// holds none.
fn envelope_line(offset: usize, body: &[u8], json: bool) -> (bool, String) {
    let at = [
        ("offset", Field::Num(offset as u64)),
        ("len", Field::Num(body.len() as u64)),
    ];
    match Envelope::decode(body) {
        Ok(envelope) => {
            let described = describe::envelope(&envelope);
            let line = if json {
                described.json(&at)
            } else {
                format!("@{offset} len={} {}", body.len(), described.text())
            };
            (true, line)
        }
        Err(error) => (
            false,
            damage_line(
                json,
                &at,
                &format!("not a valid Envelope ({error}): a replica answers INVALID and reads on"),
            ),
        ),
    }
}

/// A line reporting damage, in text or JSON.
fn damage_line(json: bool, at: &[(&str, Field)], reason: &str) -> String {
    if json {
        let mut fields: Vec<(&str, Field)> = at.to_vec();
        fields.push(("damage", Field::Text(reason.to_string())));
        json_line("damage", &fields)
    } else {
        let position: Vec<String> = at
            .iter()
            .map(|(name, value)| match (name, value) {
                (&"offset", Field::Num(n)) => format!("@{n}"),
                (name, Field::Num(n)) => format!("{name}={n}"),
                _ => String::new(),
            })
            .collect();
        format!("{} DAMAGE: {reason}", position.join(" "))
    }
}

/// Which schema a log's payloads follow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LogKind {
    /// `DIR/wal`: `LogRecord`s.
    Writes,
    /// `DIR/hints`: `HintRecord`s.
    Hints,
}

/// One line per segment header and record of every log under `path`: a
/// segment file, a `wal` or `hints` directory, a data directory, or a
/// directory of data directories (a run directory), each in turn.
fn logs(path: &Path, json: bool) -> Result<Dump, String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut dump = Dump::default();
    if meta.is_file() {
        if path.file_name().is_some_and(|name| name == LEASE_FILE) {
            lease_line(path, json, &mut dump);
        } else {
            let kind = kind_of_dir(path.parent().unwrap_or(Path::new(".")));
            // One file on its own: it may well be the newest.
            segment::dump_segment(path, kind, json, true, &mut dump)?;
        }
        return Ok(dump);
    }
    let data_dirs = data_dirs_in(path)?;
    if !data_dirs.is_empty() {
        for dir in data_dirs {
            let one = data_dir_logs(&dir, json)?;
            dump.damaged |= one.damaged;
            dump.lines.extend(one.lines);
        }
        return Ok(dump);
    }
    data_dir_logs(path, json)
}

/// Whether `dir` looks like a data directory: it holds a log directory.
fn is_data_dir(dir: &Path) -> bool {
    dir.join("wal").is_dir() || dir.join("hints").is_dir()
}

/// The data directories directly inside `dir`, in name order, when `dir`
/// is not itself a data directory or a log directory.
fn data_dirs_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    if is_data_dir(dir) || matches!(dir.file_name(), Some(n) if n == "wal" || n == "hints") {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_data_dir(path))
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn data_dir_logs(path: &Path, json: bool) -> Result<Dump, String> {
    let mut dump = Dump::default();
    if path.join(crate::cluster::identity::IDENTITY_FILE).is_file() {
        let (whole, line) = identity_line(path, json);
        if whole {
            dump.push(line);
        } else {
            dump.push_damage(line);
        }
    }
    if path.join(LEASE_FILE).is_file() {
        lease_line(&path.join(LEASE_FILE), json, &mut dump);
    }
    let logs: Vec<(PathBuf, LogKind)> = if is_data_dir(path) {
        [("wal", LogKind::Writes), ("hints", LogKind::Hints)]
            .into_iter()
            .map(|(name, kind)| (path.join(name), kind))
            .filter(|(dir, _)| dir.is_dir())
            .collect()
    } else {
        vec![(path.to_path_buf(), kind_of_dir(path))]
    };
    for (dir, kind) in logs {
        let mut segments: Vec<(u32, PathBuf)> = fs::read_dir(&dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name();
                wal::segment_number_from_name(&name.to_string_lossy())
                    .map(|number| (number, entry.path()))
            })
            .collect();
        segments.sort();
        if segments.is_empty() {
            dump.push(format!("{}: no segments", dir.display()));
        }
        let count = segments.len();
        for (index, (_, segment_file)) in segments.into_iter().enumerate() {
            segment::dump_segment(&segment_file, kind, json, index + 1 == count, &mut dump)?;
        }
    }
    Ok(dump)
}

/// What a data directory's identity file says: whose data it holds; false
/// with a damage line when the file cannot be read.
fn identity_line(data_dir: &Path, json: bool) -> (bool, String) {
    let identity = match crate::cluster::identity::Identity::read(data_dir) {
        Ok(Some(identity)) => identity,
        Ok(None) => return (true, format!("{}: no identity", data_dir.display())),
        Err(reason) => {
            return (
                false,
                damage_line(
                    json,
                    &[(
                        "file",
                        Field::Text(
                            crate::cluster::identity::path_in(data_dir)
                                .display()
                                .to_string(),
                        ),
                    )],
                    &reason,
                ),
            )
        }
    };
    let hex_list = |values: &[u64]| {
        values
            .iter()
            .map(|v| format!("{v:016x}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let fields = [
        ("cluster", Field::Text(identity.cluster.clone())),
        ("replica", Field::Num(u64::from(identity.replica_id))),
        (
            "members_digest",
            Field::Word(format!("{:016x}", identity.members_digest)),
        ),
        (
            "incarnation",
            Field::Word(format!("{:016x}", identity.incarnation)),
        ),
        ("state", Field::Word(identity.state.name().to_string())),
        ("replaces", Field::Word(hex_list(&identity.replaces))),
    ];
    if json {
        return (true, json_line("identity", &fields));
    }
    let text = describe::Description {
        kind: "identity".to_string(),
        fields: fields.into_iter().collect(),
    }
    .text();
    (true, text)
}

/// What the clock lease file says: the timestamp the write clock may not
/// pass until a newer lease is recorded (see `storage::clock_lease`).
fn lease_line(path: &Path, json: bool, dump: &mut Dump) {
    let file = path.display().to_string();
    match read_lease(path) {
        Ok(until) => {
            let lease = describe::Description {
                kind: "clock-lease".to_string(),
                fields: vec![("until", Field::Time(until))],
            };
            dump.push(if json {
                lease.json(&[("file", Field::Text(file))])
            } else {
                format!("{file}: {}", lease.text())
            });
        }
        Err(reason) => dump.push_damage(damage_line(json, &[("file", Field::Text(file))], &reason)),
    }
}

fn kind_of_dir(dir: &Path) -> LogKind {
    if dir.file_name().is_some_and(|name| name == "hints") {
        LogKind::Hints
    } else {
        LogKind::Writes
    }
}

/// One JSON object with only `kind` and these fields: segment headers and
/// damage, which are not records.
fn json_line(kind: &str, fields: &[(&str, Field)]) -> String {
    describe::Description {
        kind: kind.to_string(),
        fields: Vec::new(),
    }
    .json(fields)
}
