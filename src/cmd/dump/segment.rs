//! The lines `ringkv dump` prints for one WAL or hints segment file: its
//! header, then each record (decoded by its log's schema), seal and
//! damaged region that `wal::inspect_segment` finds, in text or JSON.
//!
//! It only reads the file, and judges nothing itself: whether bytes are a
//! record, a seal or damage is the wal crate's verdict, the one replay
//! uses.

use std::fs;
use std::path::Path;

use prost::Message;

use super::{json_line, Dump, LogKind};
use crate::protocol::describe::{self, Field};
use crate::protocol::proto::{HintRecord, LogRecord};

/// One line for a segment's header and one per record, seal or damaged
/// region in it, as `wal::inspect_segment` reads it. In the `newest`
/// segment of a log, zeros from the end of its records to the end of the
/// file are unused space (a preallocated segment), not damage: replay cuts
/// them off the same way.
pub(super) fn dump_segment(
    path: &Path,
    kind: LogKind,
    json: bool,
    newest: bool,
    dump: &mut Dump,
) -> Result<(), String> {
    let data = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = path.display().to_string();
    let inspection = wal::inspect_segment(&data);
    match &inspection.header {
        Ok(header) => dump.push(header_line(&file, header, data.len(), json)),
        Err(reason) => dump.push_damage(bad_header_line(&file, &data, reason, json)),
    }
    for entry in &inspection.entries {
        if newest {
            if let Some(line) = unused_line(&file, entry, &data, json) {
                dump.push(line);
                continue;
            }
        }
        let (whole, line) = entry_line(&file, entry, kind, json);
        if whole {
            dump.push(line);
        } else {
            dump.push_damage(line);
        }
    }
    Ok(())
}

/// What a valid segment header says: number, format, kind, chain.
fn header_line(file: &str, header: &wal::SegmentHeader, file_len: usize, json: bool) -> String {
    if json {
        let mut fields = vec![
            ("file", Field::Text(file.to_string())),
            ("version", Field::Num(u64::from(header.version))),
            ("segment", Field::Num(u64::from(header.number))),
        ];
        if let Some(n) = header.checkpoint_records {
            fields.push(("checkpoint_records", Field::Num(u64::from(n))));
        }
        if let Some(chain) = header.continues {
            fields.push(("continues", Field::Num(u64::from(chain))));
        }
        fields.push(("first_seed", Field::Num(u64::from(header.first_seed))));
        return json_line("segment", &fields);
    }
    let checkpoint = header
        .checkpoint_records
        .map(|n| format!(", checkpoint of {n} records"))
        .unwrap_or_default();
    let continues = header
        .continues
        .map(|chain| format!(", continues chain {chain:#010x}"))
        .unwrap_or_default();
    format!(
        "{file}: segment {} (format {}){checkpoint}{continues}, {file_len} bytes, \
         header chain {:#010x}",
        header.number, header.version, header.first_seed
    )
}

/// Damage: a segment header that cannot be read.
fn bad_header_line(file: &str, data: &[u8], reason: &str, json: bool) -> String {
    // A file that is no log at all (the clock lease, a stray file) gets one
    // sentence, not a list of byte values.
    let reason = if data.starts_with(&wal::MAGIC) {
        format!("bad segment header: {reason}")
    } else {
        "not a ringkv log segment: it does not begin with the segment magic".to_string()
    };
    if json {
        json_line(
            "damage",
            &[
                ("file", Field::Text(file.to_string())),
                ("offset", Field::Num(0)),
                ("damage", Field::Text(reason)),
            ],
        )
    } else {
        format!("{file}: DAMAGE: {reason}")
    }
}

/// The line for one thing found after a segment's header, and whether it
/// is whole: false for a record or seal that failed its checks, a damaged
/// region, or a payload that does not decode.
fn entry_line(
    file: &str,
    entry: &wal::InspectedEntry,
    kind: LogKind,
    json: bool,
) -> (bool, String) {
    match entry {
        wal::InspectedEntry::Record {
            offset,
            len,
            crc_ok,
            payload,
        } => {
            let (described, decodable) = describe_payload(kind, payload);
            let line = record_line(file, *offset, *len, *crc_ok, &described, json);
            (*crc_ok && decodable, line)
        }
        wal::InspectedEntry::Seal {
            offset,
            records,
            chain,
            next,
            crc,
            crc_ok,
        } => {
            let line = if json {
                json_line(
                    "seal",
                    &[
                        ("file", Field::Text(file.to_string())),
                        ("offset", Field::Num(*offset)),
                        ("records", Field::Num(*records)),
                        ("chain", Field::Num(u64::from(*chain))),
                        ("next", Field::Num(u64::from(*next))),
                        ("crc", Field::Num(u64::from(*crc))),
                        ("crc_ok", Field::Flag(*crc_ok)),
                    ],
                )
            } else {
                let verdict = if *crc_ok { "ok" } else { "BAD" };
                format!(
                    "{file} @{offset} SEAL records={records} chain={chain:#010x} next={next} \
                     crc={crc:#010x} {verdict}"
                )
            };
            (*crc_ok, line)
        }
        wal::InspectedEntry::Damage {
            offset,
            len,
            reason,
        } => (false, region_line(file, *offset, *len, reason, json)),
    }
}

/// A record's payload described by the schema of its log, and whether it
/// decoded (an undecodable one is described as such).
fn describe_payload(kind: LogKind, payload: &[u8]) -> (describe::Description, bool) {
    let decoded = match kind {
        LogKind::Writes => LogRecord::decode(payload).map(|record| describe::log_record(&record)),
        LogKind::Hints => HintRecord::decode(payload).map(|record| describe::hint_record(&record)),
    };
    match decoded {
        Ok(described) => (described, true),
        Err(error) => (
            describe::Description {
                kind: "undecodable".into(),
                fields: vec![("error", Field::Text(error.to_string()))],
            },
            false,
        ),
    }
}

/// One record: where it is, its checksum verdict, and what it says.
fn record_line(
    file: &str,
    offset: u64,
    len: u32,
    crc_ok: bool,
    described: &describe::Description,
    json: bool,
) -> String {
    if json {
        described.json(&[
            ("file", Field::Text(file.to_string())),
            ("offset", Field::Num(offset)),
            ("len", Field::Num(u64::from(len))),
            ("crc_ok", Field::Flag(crc_ok)),
        ])
    } else {
        let crc = if crc_ok { "ok" } else { "BAD" };
        format!("{file} @{offset} len={len} crc={crc} {}", described.text())
    }
}

/// The line for `entry` if it is a region of zeros that runs to the end of
/// the file: space preallocated and not written yet (or a write none of
/// whose bytes reached the disk).
fn unused_line(file: &str, entry: &wal::InspectedEntry, data: &[u8], json: bool) -> Option<String> {
    let wal::InspectedEntry::Damage { offset, len, .. } = entry else {
        return None;
    };
    let start = usize::try_from(*offset).ok()?;
    let unused = start.checked_add(usize::try_from(*len).ok()?)? == data.len()
        && data[start..].iter().all(|&byte| byte == 0);
    if !unused {
        return None;
    }
    Some(if json {
        json_line(
            "unused",
            &[
                ("file", Field::Text(file.to_string())),
                ("offset", Field::Num(*offset)),
                ("len", Field::Num(*len)),
            ],
        )
    } else {
        format!(
            "{file} @{offset} len={len} UNUSED: zeros after the last record (preallocated space, \
             or a write that never reached the disk)"
        )
    })
}

/// A damaged region of a segment: where, how long, and why.
fn region_line(file: &str, offset: u64, len: u64, reason: &str, json: bool) -> String {
    if json {
        json_line(
            "damage",
            &[
                ("file", Field::Text(file.to_string())),
                ("offset", Field::Num(offset)),
                ("len", Field::Num(len)),
                ("damage", Field::Text(reason.to_string())),
            ],
        )
    } else {
        format!("{file} @{offset} len={len} DAMAGE: {reason}")
    }
}
