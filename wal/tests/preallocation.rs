//! Preallocated segments (`Options::preallocate_bytes`): the log they hold
//! is byte for byte the log written without them once a segment is sealed,
//! the newest one differs only by zeros after its records, and every state
//! a crash can leave while a spare becomes a segment replays to the same
//! records.

mod common;

use std::fs;

use common::{file_len, open, segment_numbers, Rng, TempDir};
use wal::{Options, Wal};

const SEGMENT: u64 = 1024;
const SPARE: &str = "spare.tmp";

fn options(preallocate_bytes: u64) -> Options {
    Options {
        segment_max_bytes: SEGMENT,
        preallocate_bytes,
        ..Options::default()
    }
}

/// Appends the same batches, and a checkpoint halfway, to `plain` (no
/// preallocation) and `prepared` (segments preallocated), waiting before
/// each batch of `prepared` until its spare is ready. Returns the records.
fn write_both(plain: &mut Wal, prepared: &mut Wal) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(7);
    let mut all = Vec::new();
    for batch_number in 0..40 {
        let batch: Vec<Vec<u8>> = (0..rng.range(1, 4)).map(|_| rng.payload(5, 90)).collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        prepared.wait_for_spare();
        if batch_number == 20 {
            plain.checkpoint(&refs).expect("checkpoint");
            prepared.checkpoint(&refs).expect("checkpoint");
            all = batch;
            continue;
        }
        plain.append_batch(&refs).expect("append");
        prepared.append_batch(&refs).expect("append");
        all.extend(batch);
    }
    all
}

#[test]
fn a_preallocated_log_is_the_same_log_with_zeros_after_the_newest_records() {
    let (plain_dir, prepared_dir) = (TempDir::new("plain"), TempDir::new("prepared"));
    let (mut plain, _, _) = open(plain_dir.path(), options(0)).expect("open");
    let (mut prepared, _, _) = open(prepared_dir.path(), options(SEGMENT)).expect("open");
    let records = write_both(&mut plain, &mut prepared);
    let numbers = segment_numbers(plain_dir.path());
    assert_eq!(segment_numbers(prepared_dir.path()), numbers);
    assert!(numbers.len() >= 4, "rotations to compare: {numbers:?}");
    let newest = *numbers.last().expect("a segment");
    // Taken from the spare: preallocated, while the plain one only holds
    // its records.
    assert_eq!(file_len(&prepared_dir.seg(newest)), SEGMENT);
    assert!(file_len(&plain_dir.seg(newest)) < SEGMENT);
    drop((plain, prepared));
    for number in numbers {
        let plain_bytes = fs::read(plain_dir.seg(number)).expect("read");
        let prepared_bytes = fs::read(prepared_dir.seg(number)).expect("read");
        if number == newest {
            let (written, rest) = prepared_bytes.split_at(plain_bytes.len());
            assert_eq!(written, plain_bytes, "newest segment {number}");
            assert!(rest.iter().all(|&b| b == 0), "newest segment {number}");
        } else {
            assert_eq!(prepared_bytes, plain_bytes, "sealed segment {number}");
        }
    }

    // Reopened (as after a kill), the zeros are cut off and said to be
    // unwritten space, and appends go on where the records end.
    let (mut wal, report, seen) = open(prepared_dir.path(), options(SEGMENT)).expect("reopen");
    assert_eq!(seen, records);
    let tail = report.torn_tail.expect("the zeros are reported");
    assert!(tail.unwritten, "{tail}");
    assert_eq!(tail.offset + tail.bytes_dropped, SEGMENT);
    wal.append_batch(&[b"after the restart"]).expect("append");
    drop(wal);
    let (_, report, seen) = open(prepared_dir.path(), options(SEGMENT)).expect("reopen");
    assert_eq!(
        seen.last().map(Vec::as_slice),
        Some(&b"after the restart"[..])
    );
    assert_eq!(seen.len(), records.len() + 1);
    assert!(report.torn_tail.is_none());
}

#[test]
fn a_crash_while_a_spare_becomes_the_next_segment_loses_nothing() {
    let tmp = TempDir::new("spare-crash");
    let (mut wal, _, _) = open(tmp.path(), options(SEGMENT)).expect("open");
    let mut rng = Rng::new(11);
    let mut records = Vec::new();
    while segment_numbers(tmp.path()).len() < 2 {
        let payload = rng.payload(20, 60);
        wal.wait_for_spare();
        wal.append_batch(&[&payload]).expect("append");
        records.push(payload);
    }
    drop(wal);
    // Segment 2 came from the spare with one batch in it. The crash came
    // earlier: after the spare was linked as segment 2, before segment 1
    // was sealed (its preallocated tail already cut off). So: segment 1
    // without its seal, segment 2 a header and zeros, and a spare left.
    let last = records.pop().expect("the batch that rotated");
    let one = fs::read(tmp.seg(1)).expect("read");
    fs::write(tmp.seg(1), &one[..one.len() - 24]).expect("unseal");
    let mut two = fs::read(tmp.seg(2)).expect("read");
    assert_eq!(two.len() as u64, SEGMENT, "segment 2 was preallocated");
    two[32..].fill(0);
    fs::write(tmp.seg(2), &two).expect("empty");
    fs::write(tmp.path().join(SPARE), vec![0u8; 100]).expect("a spare left");

    let (mut wal, report, seen) = open(tmp.path(), options(SEGMENT)).expect("reopen");
    assert_eq!(seen, records);
    assert!(report.rotation_finished.is_some(), "{report:?}");
    assert_eq!(fs::read(tmp.seg(1)).expect("read"), one, "sealed as before");
    wal.append_batch(&[&last]).expect("append");
    drop(wal);
    let (_, _, seen) = open(tmp.path(), options(SEGMENT)).expect("reopen");
    records.push(last);
    assert_eq!(seen, records);
}

#[test]
fn only_the_newest_segment_may_end_in_zeros() {
    // A sealed segment followed by zeros is damage, preallocation or not:
    // the log never leaves one (it cuts the zeros before the seal).
    let tmp = TempDir::new("zeros-after-seal");
    let (mut wal, _, _) = open(tmp.path(), options(SEGMENT)).expect("open");
    let mut rng = Rng::new(3);
    while segment_numbers(tmp.path()).len() < 2 {
        wal.append_batch(&[&rng.payload(20, 60)]).expect("append");
    }
    drop(wal);
    let mut one = fs::read(tmp.seg(1)).expect("read");
    one.extend_from_slice(&[0u8; 64]);
    fs::write(tmp.seg(1), &one).expect("write");
    let error = open(tmp.path(), options(SEGMENT)).expect_err("refused");
    assert!(error.to_string().contains("after"), "{error}");
}
