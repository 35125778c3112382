//! Sealed segments: a segment the log moved past ends with a seal, and the
//! next one's header continues its chain, so losing the end of a segment,
//! the newest segment, or a segment's place in the chain is refused (naming
//! the file, the offset and the segment really missing) instead of
//! replaying a shorter log that looks whole. `skip_corrupt` skips loudly.

mod common;

use std::fs;

use common::{
    header_v3, next_seed, open, open_partial, seal, segment_bytes_v2, segment_numbers, skipping,
    small, Rng, TempDir, HDR, SEAL,
};
use wal::{inspect_segment, InspectedEntry, Options, WalError};

/// A log of several sealed segments and an unsealed newest one, written
/// through the crate; returns every record and, per segment, its records.
fn sealed_log(tmp: &TempDir, seed: u64) -> (Vec<Vec<u8>>, Vec<Vec<Vec<u8>>>) {
    let mut rng = Rng::new(seed);
    let (mut wal, _, _) = open(tmp.path(), small(200)).expect("open");
    let mut written = Vec::new();
    for _ in 0..30 {
        let p = rng.payload(5, 30);
        wal.append_batch(&[&p]).expect("append");
        written.push(p);
    }
    drop(wal);
    let per_segment = segment_numbers(tmp.path())
        .iter()
        .map(|&n| records_of(&fs::read(tmp.seg(n)).expect("read")))
        .collect::<Vec<_>>();
    assert!(per_segment.len() >= 4, "test setup: {}", per_segment.len());
    (written, per_segment)
}

/// Bytes in every segment file of the log.
fn bytes_on_disk(tmp: &TempDir) -> u64 {
    segment_numbers(tmp.path())
        .iter()
        .map(|&n| common::file_len(&tmp.seg(n)))
        .sum()
}

fn records_of(data: &[u8]) -> Vec<Vec<u8>> {
    inspect_segment(data)
        .entries
        .into_iter()
        .filter_map(|e| match e {
            InspectedEntry::Record { payload, .. } => Some(payload),
            _ => None,
        })
        .collect()
}

/// Offsets where each record of `data` starts, and where its seal starts.
fn boundaries(data: &[u8]) -> (Vec<u64>, Option<u64>) {
    let mut records = Vec::new();
    let mut seal_at = None;
    for entry in inspect_segment(data).entries {
        match entry {
            InspectedEntry::Record { offset, .. } => records.push(offset),
            InspectedEntry::Seal { offset, crc_ok, .. } => {
                assert!(crc_ok);
                seal_at = Some(offset);
            }
            InspectedEntry::Damage { .. } => panic!("damage in a clean log"),
        }
    }
    (records, seal_at)
}

fn expect_corrupt<T>(result: Result<T, WalError>) -> (std::path::PathBuf, u64, String) {
    match result {
        Err(WalError::Corrupt {
            file,
            offset,
            reason,
        }) => (file, offset, reason),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("expected Corrupt, the log opened"),
    }
}

#[test]
fn every_segment_but_the_newest_is_sealed_and_continued() {
    let tmp = TempDir::new("sealed");
    let (written, per_segment) = sealed_log(&tmp, 1);
    let numbers = segment_numbers(tmp.path());
    let mut continues = 0u32;
    for (i, &n) in numbers.iter().enumerate() {
        let data = fs::read(tmp.seg(n)).expect("read");
        assert_eq!(data[24..28], continues.to_be_bytes(), "segment {n}");
        let (_, seal_at) = boundaries(&data);
        if i + 1 == numbers.len() {
            assert_eq!(seal_at, None, "the newest segment is not sealed");
            break;
        }
        // The documented seal: count, chain value, next number.
        let records = per_segment[i].len() as u64;
        let at = data.len() - SEAL;
        assert_eq!(seal_at, Some(at as u64));
        let (expected, crc) = seal(records, next_seed(&data[..at]), n + 1);
        assert_eq!(data[at..], expected[..], "segment {n}");
        continues = crc;
    }
    let (_, report, seen) = open(tmp.path(), small(200)).expect("reopen");
    assert_eq!(seen, written);
    assert!(report.skipped.is_empty());
}

#[test]
fn a_sealed_segment_cut_at_any_record_boundary_is_refused_naming_it() {
    let base = TempDir::new("cut-base");
    let (written, per_segment) = sealed_log(&base, 2);
    let original = fs::read(base.seg(2)).expect("read");
    let (starts, seal_at) = boundaries(&original);
    let mut cuts = starts.clone();
    cuts.push(seal_at.expect("segment 2 is sealed"));
    for (kept, &cut) in cuts.iter().enumerate() {
        let tmp = TempDir::new("cut");
        for n in segment_numbers(base.path()) {
            fs::copy(base.seg(n), tmp.seg(n)).expect("copy");
        }
        fs::write(tmp.seg(2), &original[..cut as usize]).expect("cut");
        let (result, _) = open_partial(tmp.path(), Options::default());
        let (file, offset, reason) = expect_corrupt(result);
        assert_eq!((file, offset), (tmp.seg(2), cut), "cut at {cut}");
        assert!(reason.contains("without its seal"), "{reason}");
        assert_eq!(
            fs::read(tmp.seg(2)).expect("read"),
            original[..cut as usize],
            "nothing modified"
        );

        let (_, report, seen) = open(tmp.path(), skipping()).expect("skip_corrupt");
        let lost = &per_segment[1][kept..];
        let expected: Vec<Vec<u8>> = written
            .iter()
            .filter(|r| !lost.contains(r))
            .cloned()
            .collect();
        assert_eq!(seen, expected, "cut at {cut}");
        assert_eq!(
            report.skipped.len(),
            1,
            "cut at {cut}: {:?}",
            report.skipped
        );
        assert_eq!(report.skipped[0].file, tmp.seg(2));
        assert_eq!(report.skipped[0].offset, cut);
        assert_eq!(report.skipped[0].bytes, 0, "nothing left to skip there");
    }
}

#[test]
fn a_seal_cut_off_before_a_newest_segment_with_records_is_refused() {
    // Only an empty newest segment can be a rotation a crash interrupted:
    // once records went to it, the segment before it had been sealed.
    let tmp = TempDir::new("cut-seal-before-newest");
    sealed_log(&tmp, 10);
    let numbers = segment_numbers(tmp.path());
    let below = numbers[numbers.len() - 2];
    let data = fs::read(tmp.seg(below)).expect("read");
    let at = data.len() - SEAL;
    fs::write(tmp.seg(below), &data[..at]).expect("cut");
    let (file, offset, _) = expect_corrupt(open(tmp.path(), Options::default()));
    assert_eq!((file, offset), (tmp.seg(below), at as u64));
}

#[test]
fn only_a_partial_seal_is_taken_for_an_interrupted_rotation() {
    // The newest segment holds only its header: the log was moving on
    // from the segment before it, which is unsealed.
    let tmp = TempDir::new("rotation-garbage");
    sealed_log(&tmp, 11);
    let newest = *segment_numbers(tmp.path()).last().expect("segments");
    let data = fs::read(tmp.seg(newest)).expect("read");
    let (starts, _) = boundaries(&data);
    let (_, crc) = seal(starts.len() as u64, next_seed(&data), newest + 1);
    fs::write(tmp.seg(newest + 1), header_v3(newest + 1, 0, 0, crc)).expect("write");
    // Garbage where the seal should start is damage, not a torn seal.
    let mut garbage = data.clone();
    garbage.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 9]);
    fs::write(tmp.seg(newest), &garbage).expect("write");
    let (file, offset, _) = expect_corrupt(open(tmp.path(), Options::default()));
    assert_eq!((file, offset), (tmp.seg(newest), data.len() as u64));
    // A damaged record is named as such.
    let mut flipped = data.clone();
    flipped[starts[0] as usize + 9] ^= 1;
    fs::write(tmp.seg(newest), &flipped).expect("write");
    let (file, offset, reason) = expect_corrupt(open(tmp.path(), Options::default()));
    assert_eq!((file, offset), (tmp.seg(newest), starts[0]));
    assert!(reason.contains("checksum mismatch"), "{reason}");
    // Whole, it is sealed at open.
    fs::write(tmp.seg(newest), &data).expect("write");
    let (_, report, _) = open(tmp.path(), Options::default()).expect("open");
    assert!(report.rotation_finished.is_some());
}

#[test]
fn a_deleted_newest_segment_is_refused_naming_it() {
    let tmp = TempDir::new("deleted-newest");
    let (written, per_segment) = sealed_log(&tmp, 3);
    let numbers = segment_numbers(tmp.path());
    let newest = *numbers.last().expect("segments");
    fs::remove_file(tmp.seg(newest)).expect("rm");
    let before = fs::read(tmp.seg(newest - 1)).expect("read");
    let (result, _) = open_partial(tmp.path(), Options::default());
    let (file, offset, reason) = expect_corrupt(result);
    assert_eq!(file, tmp.seg(newest - 1));
    assert_eq!(offset, (before.len() - SEAL) as u64, "the seal's offset");
    let missing = format!("segment {newest} ({newest:020}.wal) is missing");
    assert!(reason.contains(&missing), "{reason}");
    assert!(
        reason.contains(&format!("names {newest} as its successor")),
        "{reason}"
    );

    // Skipped loudly; appends then go to the missing number, so the chain
    // is whole again and a later open needs no flag.
    let lost = per_segment.last().expect("newest");
    let expected = written[..written.len() - lost.len()].to_vec();
    let (mut wal, report, seen) = open(tmp.path(), skipping()).expect("skip_corrupt");
    assert_eq!(seen, expected);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].to_string().contains(&missing));
    assert_eq!(wal.total_bytes(), bytes_on_disk(&tmp));
    wal.append_batch(&[b"after"]).expect("append");
    drop(wal);
    assert_eq!(segment_numbers(tmp.path()).last(), Some(&newest));
    let (_, report, seen) = open(tmp.path(), small(200)).expect("reopen");
    assert_eq!(seen.len(), expected.len() + 1);
    assert!(report.skipped.is_empty());
}

#[test]
fn a_segment_that_does_not_continue_the_chain_is_refused() {
    // Segment 3 replaced by segment 3 of another log of the same shape.
    let tmp = TempDir::new("foreign");
    sealed_log(&tmp, 4);
    let other = TempDir::new("foreign-other");
    sealed_log(&other, 5);
    fs::copy(other.seg(3), tmp.seg(3)).expect("copy");
    let (result, seen) = open_partial(tmp.path(), Options::default());
    let (file, offset, reason) = expect_corrupt(result);
    assert_eq!((file, offset), (tmp.seg(3), 24));
    assert!(reason.contains("not the segment that followed"), "{reason}");
    assert!(!seen.is_empty(), "segments 1 and 2 replayed first");
    // Skipped loudly: both junctions, 2 to 3 and 3 to 4, are broken.
    let (_, report, _) = open(tmp.path(), skipping()).expect("skip_corrupt");
    let places: Vec<_> = report
        .skipped
        .iter()
        .map(|s| (s.file.clone(), s.offset))
        .collect();
    assert_eq!(places, [(tmp.seg(3), 24), (tmp.seg(4), 24)]);
}

#[test]
fn records_missing_before_a_seal_are_refused() {
    let tmp = TempDir::new("gap-before-seal");
    sealed_log(&tmp, 6);
    let data = fs::read(tmp.seg(2)).expect("read");
    let (starts, seal_at) = boundaries(&data);
    let seal_at = seal_at.expect("sealed") as usize;
    // The last record cut out, the seal moved up behind the one before.
    let last = *starts.last().expect("records") as usize;
    let mut cut = data[..last].to_vec();
    cut.extend_from_slice(&data[seal_at..]);
    fs::write(tmp.seg(2), &cut).expect("write");
    let (file, offset, reason) = expect_corrupt(open(tmp.path(), Options::default()));
    assert_eq!((file, offset), (tmp.seg(2), last as u64));
    assert!(
        reason.contains("records before the seal are missing"),
        "{reason}"
    );
    // A seal that miscounts, or states another chain value, is refused
    // at the seal even though its own CRC verifies.
    let chain = next_seed(&data[..seal_at]);
    for (records, chain) in [
        (starts.len() as u64 + 1, chain),
        (starts.len() as u64, chain ^ 1),
    ] {
        let mut forged = data.clone();
        forged[seal_at..].copy_from_slice(&seal(records, chain, 3).0);
        fs::write(tmp.seg(2), &forged).expect("write");
        let (file, offset, reason) = expect_corrupt(open(tmp.path(), Options::default()));
        assert_eq!((file, offset), (tmp.seg(2), seal_at as u64), "{reason}");
    }
    // Bytes after a seal are damage too.
    let mut longer = data.clone();
    longer.extend_from_slice(b"junk");
    fs::write(tmp.seg(2), &longer).expect("write");
    let (file, offset, reason) = expect_corrupt(open(tmp.path(), Options::default()));
    assert_eq!((file, offset), (tmp.seg(2), data.len() as u64));
    assert!(reason.contains("4 bytes after the seal"), "{reason}");
    let (_, report, _) = open(tmp.path(), skipping()).expect("skip_corrupt");
    let skipped: Vec<_> = report.skipped.iter().map(|s| (s.offset, s.bytes)).collect();
    assert_eq!(skipped, [(data.len() as u64, 4)]);
    // A seal naming another segment.
    let mut wrong = data.clone();
    let (bad, _) = seal((starts.len()) as u64, next_seed(&data[..seal_at]), 9);
    wrong[seal_at..].copy_from_slice(&bad);
    fs::write(tmp.seg(2), &wrong).expect("write");
    let (file, offset, reason) = expect_corrupt(open(tmp.path(), Options::default()));
    assert_eq!((file, offset), (tmp.seg(2), seal_at as u64));
    assert!(reason.contains("names segment 9"), "{reason}");
}

#[test]
fn a_deleted_checkpoint_is_named_as_the_missing_segment() {
    let tmp = TempDir::new("deleted-checkpoint");
    let (written, _) = sealed_log(&tmp, 7);
    let refs: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
    let checkpoint;
    {
        let (mut wal, _, _) = open(tmp.path(), small(200)).expect("open");
        wal.checkpoint(&refs[..3]).expect("checkpoint");
        checkpoint = segment_numbers(tmp.path())[0];
        for r in &refs[3..12] {
            wal.append_batch(&[r]).expect("append");
        }
    }
    assert!(segment_numbers(tmp.path()).len() >= 2, "test setup");
    fs::remove_file(tmp.seg(checkpoint)).expect("rm");
    match open(tmp.path(), Options::default()) {
        Err(
            e @ WalError::MissingSegment {
                expected, found, ..
            },
        ) => {
            assert_eq!((expected, found), (checkpoint, checkpoint + 1));
            assert!(
                e.to_string().contains(&format!("{checkpoint:020}.wal")),
                "{e}"
            );
        }
        other => panic!("expected MissingSegment, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn an_incomplete_checkpoint_after_a_cut_segment_is_refused() {
    let tmp = TempDir::new("incomplete-after-cut");
    sealed_log(&tmp, 8);
    let newest = *segment_numbers(tmp.path()).last().expect("segments");
    let data = fs::read(tmp.seg(newest)).expect("read");
    let (starts, _) = boundaries(&data);
    // A checkpoint begun after the whole segment, then crashed...
    let mut checkpoint = common::checkpoint_header_after(newest + 1, 5, next_seed(&data));
    checkpoint.extend_from_slice(&[0; 10]);
    fs::write(tmp.seg(newest + 1), &checkpoint).expect("write");
    // ...is dropped when nothing else is wrong,
    let (_, report, _) = open(tmp.path(), Options::default()).expect("open");
    assert!(report.incomplete_checkpoint.is_some());
    // but not when the segment before it lost its last record since.
    fs::write(tmp.seg(newest + 1), &checkpoint).expect("write");
    let last = *starts.last().expect("records");
    fs::write(tmp.seg(newest), &data[..last as usize]).expect("cut");
    let (file, _, reason) = expect_corrupt(open(tmp.path(), Options::default()));
    assert_eq!(file, tmp.seg(newest));
    assert!(reason.contains("was cut off"), "{reason}");
}

#[test]
fn a_version_2_log_goes_on_in_version_3_segments() {
    let tmp = TempDir::new("upgrade");
    let mut rng = Rng::new(9);
    let old: Vec<Vec<u8>> = (0..6).map(|_| rng.payload(5, 30)).collect();
    fs::write(tmp.seg(1), segment_bytes_v2(1, &old[..3])).expect("write");
    fs::write(tmp.seg(2), segment_bytes_v2(2, &old[3..])).expect("write");
    let mut written = old.clone();
    {
        let (mut wal, _, seen) = open(tmp.path(), small(200)).expect("open");
        assert_eq!(seen, old);
        for _ in 0..20 {
            let p = rng.payload(5, 30);
            wal.append_batch(&[&p]).expect("append");
            written.push(p);
        }
    }
    let numbers = segment_numbers(tmp.path());
    assert!(numbers.len() >= 4, "test setup");
    // Segment 2 (version 2) took appends and ends unsealed; segment 3
    // continues from its last record.
    let two = fs::read(tmp.seg(2)).expect("read");
    assert_eq!(two[8..12], [0, 0, 0, 2]);
    let three = fs::read(tmp.seg(3)).expect("read");
    assert_eq!(three[..HDR], header_v3(3, 0, 0, next_seed(&two))[..]);
    let (_, _, seen) = open(tmp.path(), small(200)).expect("reopen");
    assert_eq!(seen, written);
    // The version 2 segment cut at a record boundary: segment 3 no longer
    // continues it.
    let (starts, _) = boundaries(&two);
    fs::write(
        tmp.seg(2),
        &two[..*starts.last().expect("records") as usize],
    )
    .expect("cut");
    let (file, offset, _) = expect_corrupt(open(tmp.path(), Options::default()));
    assert_eq!((file, offset), (tmp.seg(3), 24));
}
