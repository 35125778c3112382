//! Replay and inspection read records through one decoder, so they must
//! agree about every byte sequence: for a log damaged in one segment (cut
//! at every offset, bytes flipped, lengths rewritten, seals forged, cut,
//! zeroed or followed by bytes, garbage inserted, tails zero-filled), the
//! records `Wal::open` replays are exactly the intact records
//! `inspect_segment` lists before the first damage, and both name the same
//! file and offset as the first damage. With `skip_corrupt`, every record
//! replay hands over is one inspection lists as intact.
//!
//! Inspection looks at one segment at a time, so the few rules that span
//! segments (every segment but the newest ends with a seal, the newest
//! has none, a version 3 header continues the chain the segment before it
//! ends with, and every header is checked before any record is replayed)
//! are applied here to what inspection reports; everything inside a
//! segment is inspection's own verdict.

mod common;

use std::fs;
use std::path::Path;

use common::{open, open_partial, seal, segment_bytes_v1, segment_bytes_v2, skipping, small, Rng};
use common::{TempDir, SEAL};
use wal::{inspect_segment, InspectedEntry, Options, WalError, MAX_RECORD_BYTES};

/// Segment files of a log, oldest first: (file name, bytes).
type Log = Vec<(String, Vec<u8>)>;

/// Where damage was found: (index of the file in the log, byte offset).
type Place = (usize, u64);

/// A payload nobody else in the log has, so replayed records can be told
/// apart, of nonzero bytes.
fn unique_payload(rng: &mut Rng, index: usize) -> Vec<u8> {
    let mut payload = vec![b'r', (index % 255 + 1) as u8, (index / 255 + 1) as u8];
    payload.extend(rng.payload(1, 12));
    payload
}

/// The segment files in `dir`, oldest first.
fn read_log(dir: &Path) -> Log {
    let mut files: Log = fs::read_dir(dir)
        .expect("list the log")
        .map(|entry| entry.expect("dir entry"))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            wal::segment_number_from_name(&name)?;
            Some((name, fs::read(entry.path()).expect("read segment")))
        })
        .collect();
    files.sort();
    files
}

/// Appends single-record and two-record batches through the crate until
/// the log has `segments` segments and the newest holds a record.
fn append_until(tmp: &TempDir, rng: &mut Rng, options: Options, segments: usize) -> Log {
    let (mut wal, _, _) = open(tmp.path(), options).expect("open");
    let mut index = 0;
    loop {
        let batch: Vec<Vec<u8>> = (0..rng.range(1, 2))
            .map(|_| {
                index += 1;
                unique_payload(rng, index)
            })
            .collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        wal.append_batch(&refs).expect("append");
        let log = read_log(tmp.path());
        if log.len() >= segments {
            return log;
        }
    }
}

/// Three version 3 log segments, two of them sealed.
fn sealed_log(seed: u64) -> Log {
    let tmp = TempDir::new("agree-sealed");
    append_until(&tmp, &mut Rng::new(seed), small(120), 3)
}

/// A checkpoint segment of four records with appends after them, sealed,
/// and the log segment after it.
fn checkpoint_log(seed: u64) -> Log {
    let tmp = TempDir::new("agree-checkpoint");
    let mut rng = Rng::new(seed);
    let (mut wal, _, _) = open(tmp.path(), small(250)).expect("open");
    let state: Vec<Vec<u8>> = (0..4).map(|i| unique_payload(&mut rng, 1000 + i)).collect();
    wal.append_batch(&[&state[0]]).expect("append");
    let refs: Vec<&[u8]> = state.iter().map(Vec::as_slice).collect();
    wal.checkpoint(&refs).expect("checkpoint");
    drop(wal);
    append_until(&tmp, &mut rng, small(250), 2)
}

/// One version 3 log segment, the newest, unsealed.
fn single_segment(seed: u64) -> Log {
    let tmp = TempDir::new("agree-single");
    let mut rng = Rng::new(seed);
    let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
    for index in 0..6 {
        wal.append_batch(&[&unique_payload(&mut rng, index)])
            .expect("append");
    }
    drop(wal);
    read_log(tmp.path())
}

/// A version 2 segment (unsealed, chained) that a version 3 segment
/// continues after an upgrade.
fn upgraded_log(seed: u64) -> Log {
    let tmp = TempDir::new("agree-v2");
    let mut rng = Rng::new(seed);
    let old: Vec<Vec<u8>> = (0..4).map(|i| unique_payload(&mut rng, 2000 + i)).collect();
    fs::write(tmp.seg(1), segment_bytes_v2(1, &old)).expect("write");
    append_until(&tmp, &mut rng, small(150), 2)
}

/// A lone version 1 segment (unchained).
fn version_1_log(seed: u64) -> Log {
    let mut rng = Rng::new(seed);
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| unique_payload(&mut rng, 3000 + i)).collect();
    vec![(
        "00000000000000000001.wal".to_string(),
        segment_bytes_v1(1, &payloads),
    )]
}

/// What inspection says of one segment: its intact records' payloads
/// before the first damage, the first damage, where its intact seal is,
/// the chain value it ends with, its version and what it continues.
struct Inspected {
    records: Vec<Vec<u8>>,
    damage: Option<u64>,
    seal: Option<u64>,
    end_chain: u32,
    version: u32,
    continues: Option<u32>,
}

fn inspect_one(name: &str, data: &[u8]) -> Result<Inspected, ()> {
    let found = inspect_segment(data);
    let header = found.header.map_err(|_| ())?;
    // The header names the segment its file name does.
    if wal::segment_number_from_name(name) != Some(header.number) {
        return Err(());
    }
    let mut seen = Inspected {
        records: Vec::new(),
        damage: None,
        seal: None,
        end_chain: header.first_seed,
        version: header.version,
        continues: header.continues,
    };
    for entry in found.entries {
        match entry {
            InspectedEntry::Record {
                offset,
                crc_ok: true,
                payload,
                ..
            } => {
                let at = offset as usize + 4;
                let crc = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"));
                seen.end_chain = if header.version == 1 { 0 } else { crc };
                seen.records.push(payload);
            }
            InspectedEntry::Seal {
                offset,
                crc,
                crc_ok: true,
                ..
            } => {
                seen.seal = Some(offset);
                seen.end_chain = crc;
            }
            InspectedEntry::Record { offset, .. }
            | InspectedEntry::Seal { offset, .. }
            | InspectedEntry::Damage { offset, .. } => {
                seen.damage = Some(offset);
                break;
            }
        }
    }
    Ok(seen)
}

/// What a strict replay would do, as read from inspection: the records
/// replayed and the first damage.
fn inspection_verdict(log: &[(String, Vec<u8>)]) -> (Vec<Vec<u8>>, Option<Place>) {
    let last = log.len() - 1;
    let mut segments = Vec::new();
    for (index, (name, data)) in log.iter().enumerate() {
        match inspect_one(name, data) {
            Ok(seen) => segments.push(seen),
            // Every header is checked before any record is replayed.
            Err(()) => return (Vec::new(), Some((index, 0))),
        }
    }
    let mut records = Vec::new();
    let mut previous_chain = None;
    for (index, seen) in segments.into_iter().enumerate() {
        if let (Some(continues), Some(chain)) = (seen.continues, previous_chain) {
            if continues != chain {
                return (records, Some((index, 24)));
            }
        }
        records.extend(seen.records);
        if let Some(offset) = seen.damage {
            return (records, Some((index, offset)));
        }
        let data_len = log[index].1.len() as u64;
        match seen.seal {
            Some(offset) if index == last => return (records, Some((index, offset))),
            None if index < last && seen.version >= 3 => return (records, Some((index, data_len))),
            _ => {}
        }
        previous_chain = Some(seen.end_chain);
    }
    (records, None)
}

/// How opening a log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Opened,
    Corrupt,
    BadHeader,
}

/// Writes `log` into a fresh directory and opens it: the records replayed,
/// the first damage named (an error's, a torn tail's, or a bad header's at
/// offset 0), and how it ended.
fn replay_verdict(log: &Log, options: Options) -> (Vec<Vec<u8>>, Option<Place>, Outcome) {
    let tmp = TempDir::new("agree-replay");
    for (name, data) in log {
        fs::write(tmp.path().join(name), data).expect("write segment");
    }
    let index_of = |file: &Path| {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        log.iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("replay named {file:?}, not a file of the log"))
    };
    let (result, seen) = open_partial(tmp.path(), options);
    match result {
        Ok((_, report)) => {
            assert!(report.rotation_finished.is_none() && report.incomplete_checkpoint.is_none());
            let first = report
                .skipped
                .first()
                .map(|s| (index_of(&s.file), s.offset))
                .or_else(|| {
                    report
                        .torn_tail
                        .as_ref()
                        .map(|t| (index_of(&t.file), t.offset))
                });
            (seen, first, Outcome::Opened)
        }
        Err(WalError::Corrupt { file, offset, .. }) => {
            (seen, Some((index_of(&file), offset)), Outcome::Corrupt)
        }
        Err(WalError::BadHeader { file, .. }) => {
            (seen, Some((index_of(&file), 0)), Outcome::BadHeader)
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// Checks one damaged log; `what` says which damage, for the message.
fn check_agreement(log: &Log, what: &str) {
    let (inspected, inspected_damage) = inspection_verdict(log);
    let (replayed, replayed_damage, outcome) = replay_verdict(log, Options::default());
    assert_eq!(
        replayed_damage, inspected_damage,
        "{what}: first damage (file index, offset)"
    );
    if outcome == Outcome::BadHeader {
        assert!(replayed.is_empty(), "{what}: replayed before a bad header");
    } else if replayed_damage == Some((log.len() - 1, 0)) {
        // A torn newest header: rewritten, everything before it replayed.
        let before = match log.len() {
            1 => Vec::new(),
            n => inspection_verdict(&log[..n - 1]).0,
        };
        assert_eq!(replayed, before, "{what}: records before a torn header");
    } else {
        assert_eq!(replayed, inspected, "{what}: records replayed");
    }
    if outcome != Outcome::Corrupt {
        // Nothing to skip: skip_corrupt would replay the same.
        return;
    }
    let all_intact: Vec<Vec<u8>> = log
        .iter()
        .flat_map(|(_, data)| inspect_segment(data).entries)
        .filter_map(|entry| match entry {
            InspectedEntry::Record {
                crc_ok: true,
                payload,
                ..
            } => Some(payload),
            _ => None,
        })
        .collect();
    let (skipping_replay, _, _) = replay_verdict(log, skipping());
    let mut intact = all_intact.iter();
    for record in &skipping_replay {
        assert!(
            intact.any(|r| r == record),
            "{what}: skip_corrupt replayed a record inspection does not list as intact"
        );
    }
}

/// Offsets of the records and seals in an undamaged segment.
fn landmarks(data: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let mut records = Vec::new();
    let mut seals = Vec::new();
    for entry in inspect_segment(data).entries {
        match entry {
            InspectedEntry::Record { offset, .. } => records.push(offset as usize),
            InspectedEntry::Seal { offset, .. } => seals.push(offset as usize),
            InspectedEntry::Damage { .. } => panic!("damage in an undamaged log"),
        }
    }
    (records, seals)
}

/// `log` with file `file` replaced by `data`.
fn with(log: &Log, file: usize, data: Vec<u8>) -> Log {
    let mut damaged = log.clone();
    damaged[file].1 = data;
    damaged
}

fn cut_everywhere(log: &Log) {
    for (file, (_, data)) in log.iter().enumerate() {
        for cut in 0..data.len() {
            check_agreement(
                &with(log, file, data[..cut].to_vec()),
                &format!("file {file} cut at {cut}"),
            );
        }
    }
}

fn flip_every_byte(log: &Log, rng: &mut Rng) {
    for (file, (_, data)) in log.iter().enumerate() {
        for at in 0..data.len() {
            let mut damaged = data.clone();
            damaged[at] ^= rng.range(1, 255) as u8;
            check_agreement(
                &with(log, file, damaged),
                &format!("file {file} byte {at} flipped"),
            );
        }
    }
}

fn rewrite_every_length(log: &Log) {
    for (file, (_, data)) in log.iter().enumerate() {
        let (records, _) = landmarks(data);
        for at in records {
            let len = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"));
            let max = MAX_RECORD_BYTES as u32;
            for bad in [0, 1, len - 1, len + 1, len + 9, max, max + 1, u32::MAX] {
                let mut damaged = data.clone();
                damaged[at..at + 4].copy_from_slice(&bad.to_be_bytes());
                check_agreement(
                    &with(log, file, damaged),
                    &format!("file {file} record at {at} length {len} -> {bad}"),
                );
            }
        }
    }
}

fn damage_every_seal(log: &Log, rng: &mut Rng) {
    for (file, (_, data)) in log.iter().enumerate() {
        let (_, seals) = landmarks(data);
        for at in seals {
            let field = |from: usize| data[from..from + 4].try_into().expect("4 bytes");
            let records = u64::from_be_bytes(data[at + 8..at + 16].try_into().expect("8 bytes"));
            let chain = u32::from_be_bytes(field(at + 16));
            let next = u32::from_be_bytes(field(at + 20));
            let (_, crc) = seal(records, chain, next);
            let forged = [
                ("count + 1", seal(records + 1, chain, next).0),
                ("count - 1", seal(records.wrapping_sub(1), chain, next).0),
                ("next + 1", seal(records, chain, next + 1).0),
                ("next - 1", seal(records, chain, next - 1).0),
                ("chain ^ 1", seal(records, chain ^ 1, next).0),
                ("zeros", vec![0; SEAL]),
            ];
            for (how, bytes) in forged {
                let mut damaged = data[..at].to_vec();
                damaged.extend_from_slice(&bytes);
                check_agreement(
                    &with(log, file, damaged),
                    &format!("file {file} seal {how}"),
                );
            }
            let (record, _) = common::encode_seeded(crc, b"after the seal");
            let garbage: Vec<u8> = (0..20).map(|_| rng.range(1, 255) as u8).collect();
            for (how, tail) in [
                ("zeros", vec![0; 16]),
                ("a record chained to it", record),
                ("garbage", garbage),
            ] {
                let mut damaged = data.clone();
                damaged.extend_from_slice(&tail);
                check_agreement(
                    &with(log, file, damaged),
                    &format!("file {file} seal followed by {how}"),
                );
            }
        }
    }
}

fn insert_and_zero_fill(log: &Log, rng: &mut Rng) {
    for (file, (_, data)) in log.iter().enumerate() {
        let (records, seals) = landmarks(data);
        for at in records.iter().chain(&seals).copied().chain([data.len()]) {
            let garbage: Vec<u8> = (0..rng.range(1, 12))
                .map(|_| rng.range(0, 255) as u8)
                .collect();
            let mut inserted = data[..at].to_vec();
            inserted.extend_from_slice(&garbage);
            inserted.extend_from_slice(&data[at..]);
            check_agreement(
                &with(log, file, inserted),
                &format!("file {file} garbage at {at}"),
            );
            let mut zeroed = data.clone();
            zeroed[at..].fill(0);
            zeroed.extend_from_slice(&[0; 9]);
            check_agreement(
                &with(log, file, zeroed),
                &format!("file {file} zeros from {at}"),
            );
        }
    }
}

fn every_damage(log: &Log, seed: u64) {
    let mut rng = Rng::new(seed);
    check_agreement(log, "undamaged");
    cut_everywhere(log);
    flip_every_byte(log, &mut rng);
    rewrite_every_length(log);
    damage_every_seal(log, &mut rng);
    insert_and_zero_fill(log, &mut rng);
}

#[test]
fn replay_and_inspection_agree_on_a_sealed_log() {
    every_damage(&sealed_log(1), 1);
}

#[test]
fn replay_and_inspection_agree_on_a_checkpoint() {
    every_damage(&checkpoint_log(11), 11);
}

#[test]
fn replay_and_inspection_agree_on_one_segment() {
    every_damage(&single_segment(21), 21);
}

#[test]
fn replay_and_inspection_agree_on_older_formats() {
    every_damage(&upgraded_log(31), 31);
    every_damage(&version_1_log(32), 32);
}
