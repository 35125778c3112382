//! Checkpoints: replay starts from the newest complete one, and a crash at
//! any step of writing one (simulated by building the on-disk state that
//! crash leaves) replays to the same state.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::{
    encode_chain, file_len, header_seed, open, open_partial, segment_numbers, small, TempDir,
};
use wal::{CheckpointStart, Options, WalError};

/// The state the records describe: `key=value` puts, later ones win.
fn state(records: &[Vec<u8>]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut map = BTreeMap::new();
    for r in records {
        let at = r.iter().position(|&b| b == b'=').expect("key=value");
        map.insert(r[..at].to_vec(), r[at + 1..].to_vec());
    }
    map
}

fn put(key: u32, value: u32) -> Vec<u8> {
    format!("k{key}=v{value}").into_bytes()
}

/// A log of several segments with overwrites; returns every record written.
fn history(tmp: &TempDir) -> Vec<Vec<u8>> {
    let (mut wal, _, _) = open(tmp.path(), small(200)).expect("open");
    let mut written = Vec::new();
    for i in 0..40 {
        let record = put(i % 7, i);
        wal.append_batch(&[&record]).expect("append");
        written.push(record);
    }
    assert!(segment_numbers(tmp.path()).len() >= 4, "test setup");
    written
}

/// The checkpoint records restating `records`: one put per key.
fn restated(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    state(records)
        .into_iter()
        .map(|(k, v)| [k, b"=".to_vec(), v].concat())
        .collect()
}

/// The bytes of a complete checkpoint segment `number` holding `records`.
fn checkpoint_segment(number: u32, records: &[Vec<u8>]) -> Vec<u8> {
    checkpoint_after(number, records, 0)
}

/// A checkpoint segment as the crate writes it after a segment whose
/// records end with chain value `continues`.
fn checkpoint_after(number: u32, records: &[Vec<u8>], continues: u32) -> Vec<u8> {
    let mut out = common::checkpoint_header_after(number, records.len() as u32, continues);
    let (bytes, _) = encode_chain(header_seed(&out), records);
    out.extend_from_slice(&bytes);
    out
}

/// Opens, checks the replayed state, appends one more put, reopens and
/// checks again; returns the first report.
fn replays_to(tmp: &TempDir, expected: &[Vec<u8>], what: &str) -> wal::ReplayReport {
    let (mut wal, report, seen) =
        open(tmp.path(), small(200)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(state(&seen), state(expected), "{what}");
    let later = put(99, 99);
    wal.append_batch(&[&later]).expect("append after reopen");
    let total = wal.total_bytes();
    drop(wal);
    let on_disk: u64 = segment_numbers(tmp.path())
        .iter()
        .map(|&n| file_len(&tmp.seg(n)))
        .sum();
    assert_eq!(total, on_disk, "{what}: total_bytes");
    let (_, again, seen) = open(tmp.path(), small(200)).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut with_later = expected.to_vec();
    with_later.push(later);
    assert_eq!(state(&seen), state(&with_later), "{what}: after reopen");
    assert_eq!(again.torn_tail, None, "{what}");
    assert_eq!(again.incomplete_checkpoint, None, "{what}");
    report
}

#[test]
fn a_checkpoint_replaces_the_log_and_appends_continue_after_it() {
    let tmp = TempDir::new("basic");
    let written = history(&tmp);
    let newest = *segment_numbers(tmp.path()).last().expect("segments");
    let newest_end = common::next_seed(&fs::read(tmp.seg(newest)).expect("read"));
    let records = restated(&written);
    {
        let (mut wal, _, seen) = open(tmp.path(), small(200)).expect("open");
        assert_eq!(seen, written);
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        wal.checkpoint(&refs).expect("checkpoint");
        assert_eq!(segment_numbers(tmp.path()), [newest + 1]);
        assert_eq!(
            fs::read(tmp.seg(newest + 1)).expect("read"),
            checkpoint_after(newest + 1, &records, newest_end),
            "the documented bytes"
        );
        assert_eq!(wal.total_bytes(), file_len(&tmp.seg(newest + 1)));
        wal.append_batch(&[b"k1=after"]).expect("append");
    }
    let (_, report, seen) = open(tmp.path(), small(200)).expect("reopen");
    let mut expected = records.clone();
    expected.push(b"k1=after".to_vec());
    assert_eq!(seen, expected, "checkpoint records, then later appends");
    assert_eq!(
        report.checkpoint,
        Some(CheckpointStart {
            segment: newest + 1,
            records: records.len() as u32
        })
    );
    assert_eq!(report.segments, 1);
    assert_eq!(report.stale_segments_removed, 0);
}

#[test]
fn an_invalid_checkpoint_is_refused_before_anything_is_written() {
    let tmp = TempDir::new("invalid");
    let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
    wal.append_batch(&[b"k=1"]).expect("append");
    assert!(matches!(
        wal.checkpoint(&[b"k=1", b""]),
        Err(WalError::EmptyPayload { index: 1 })
    ));
    assert_eq!(segment_numbers(tmp.path()), [1]);
    wal.checkpoint(&[]).expect("an empty checkpoint is valid");
    assert_eq!(segment_numbers(tmp.path()), [2]);
}

/// Crash while the checkpoint is being written, and after it was written
/// but before its fdatasync returned: the checkpoint segment holds any
/// prefix of its bytes, or that prefix followed by zeros up to its full
/// length (the size reached the disk, the data did not). A cut inside the
/// header is a crash while creating the segment. The older segments are
/// all still there.
#[test]
fn a_crash_while_writing_the_checkpoint_replays_to_the_same_state() {
    let base = TempDir::new("cut-base");
    let written = history(&base);
    let numbers = segment_numbers(base.path());
    let newest = *numbers.last().expect("segments");
    let records = restated(&written);
    let newest_end = common::next_seed(&fs::read(base.seg(newest)).expect("read"));
    let full = checkpoint_after(newest + 1, &records, newest_end);
    let old: Vec<(u32, Vec<u8>)> = numbers
        .iter()
        .map(|&n| (n, fs::read(base.seg(n)).expect("read")))
        .collect();
    for zero_fill in [false, true] {
        for cut in 0..=full.len() {
            if zero_fill && cut < 32 {
                // The header was synced (file and directory) before any
                // record was written: a longer file always has it whole.
                continue;
            }
            let what = format!("cut {cut} of {} zero_fill {zero_fill}", full.len());
            let tmp = TempDir::new("cut");
            for (n, bytes) in &old {
                fs::write(tmp.seg(*n), bytes).expect("write");
            }
            let mut partial = full[..cut].to_vec();
            if zero_fill {
                partial.resize(full.len(), 0);
            }
            fs::write(tmp.seg(newest + 1), &partial).expect("write");
            let report = replays_to(&tmp, &written, &what);
            if cut == full.len() {
                assert_eq!(
                    report.checkpoint.map(|c| c.segment),
                    Some(newest + 1),
                    "{what}"
                );
                assert_eq!(
                    report.stale_segments_removed as usize,
                    numbers.len(),
                    "{what}"
                );
            } else if partial.len() < 32 || partial[..32].iter().all(|&b| b == 0) {
                // Torn header: rewritten as an empty log segment.
                assert!(report.torn_tail.is_some(), "{what}");
            } else {
                let incomplete = report.incomplete_checkpoint.expect("incomplete checkpoint");
                assert_eq!(incomplete.file, tmp.seg(newest + 1), "{what}");
                assert_eq!(incomplete.records, records.len() as u32, "{what}");
                assert_eq!(report.checkpoint, None, "{what}");
            }
        }
    }
}

/// Crash between the deletions of the old segments: the complete
/// checkpoint and any of the old segments (oldest removed first, but any
/// subset must work) remain.
#[test]
fn a_crash_between_deletions_replays_to_the_same_state() {
    let base = TempDir::new("del-base");
    let written = history(&base);
    let numbers = segment_numbers(base.path());
    let newest = *numbers.last().expect("segments");
    let records = restated(&written);
    let newest_end = common::next_seed(&fs::read(base.seg(newest)).expect("read"));
    let full = checkpoint_after(newest + 1, &records, newest_end);
    let subsets: Vec<Vec<u32>> = (0..numbers.len())
        .map(|k| numbers[k..].to_vec()) // oldest-first removal, k removed
        .chain([vec![numbers[0]], vec![numbers[0], numbers[2]], vec![newest]])
        .collect();
    for kept in subsets {
        let what = format!("kept {kept:?}");
        let tmp = TempDir::new("del");
        for &n in &kept {
            fs::copy(base.seg(n), tmp.seg(n)).expect("copy");
        }
        fs::write(tmp.seg(newest + 1), &full).expect("write");
        let report = replays_to(&tmp, &records, &what);
        assert_eq!(report.stale_segments_removed as usize, kept.len(), "{what}");
        assert_eq!(segment_numbers(tmp.path()), [newest + 1], "{what}");
    }
}

#[test]
fn a_damaged_checkpoint_with_nothing_before_it_is_corruption() {
    let tmp = TempDir::new("alone");
    let records = vec![put(1, 1), put(2, 2)];
    let mut full = checkpoint_segment(5, &records);
    let last = full.len() - 1;
    full[last] ^= 1;
    fs::write(tmp.seg(5), &full).expect("write");
    let (result, seen) = open_partial(tmp.path(), Options::default());
    assert!(
        matches!(result, Err(WalError::Corrupt { .. })),
        "{:?}",
        result.map(|_| ())
    );
    assert_eq!(seen, records[..1]);
    assert_eq!(file_len(&tmp.seg(5)), full.len() as u64, "nothing modified");
    // An incomplete checkpoint with a gap below it is no crash either: the
    // segment it followed is gone.
    let tmp = TempDir::new("gap-below");
    fs::write(tmp.seg(2), common::segment_bytes(2, &records)).expect("write");
    let four = checkpoint_segment(4, &records);
    fs::write(tmp.seg(4), &four[..four.len() - 1]).expect("write");
    let (result, _) = open_partial(tmp.path(), Options::default());
    assert!(
        matches!(result, Err(WalError::Corrupt { .. })),
        "{:?}",
        result.map(|_| ())
    );
    assert_eq!(segment_numbers(tmp.path()), [2, 4], "nothing removed");
    // A lone log segment other than 1 is still a missing segment: the one
    // it follows (a deleted checkpoint, typically), not segment 1.
    let tmp = TempDir::new("alone-log");
    fs::write(tmp.seg(5), common::segment_bytes(5, &records)).expect("write");
    match open(tmp.path(), Options::default()) {
        Err(
            e @ WalError::MissingSegment {
                expected: 4,
                found: 5,
                ..
            },
        ) => assert!(e.to_string().contains("00000000000000000004.wal"), "{e}"),
        other => panic!("expected MissingSegment, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn replay_starts_from_the_newest_complete_checkpoint() {
    // Two checkpoints on disk (a crash before the first deletion after the
    // second): the newer one wins, everything before it is removed.
    let tmp = TempDir::new("two");
    let first = vec![put(1, 1)];
    let second = vec![put(1, 2), put(2, 2)];
    fs::write(tmp.seg(3), checkpoint_segment(3, &first)).expect("write");
    fs::write(tmp.seg(4), common::segment_bytes(4, &[put(3, 3)])).expect("write");
    fs::write(tmp.seg(5), checkpoint_segment(5, &second)).expect("write");
    let (_, report, seen) = open(tmp.path(), Options::default()).expect("open");
    assert_eq!(seen, second);
    assert_eq!(report.stale_segments_removed, 2);
    assert_eq!(segment_numbers(tmp.path()), [5]);
}
