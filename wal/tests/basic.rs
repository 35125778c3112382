//! Normal operation: round trips, rotation, locking, input validation.

mod common;

use std::fs;

use common::{append_each, file_len, open, segment_numbers, small, Rng, TempDir};
use wal::{Options, Wal, WalError, MAX_RECORD_BYTES, SEGMENT_HEADER_LEN};

#[test]
fn fresh_directory_gets_a_durable_segment_one() {
    let tmp = TempDir::new("fresh");
    let dir = tmp.path().join("nested/wal");
    let (wal, report, seen) = open(&dir, Options::default()).expect("open");
    assert!(seen.is_empty());
    assert_eq!(report, wal::ReplayReport::default());
    assert_eq!(wal.dir(), dir.as_path());
    assert_eq!(wal.total_bytes(), SEGMENT_HEADER_LEN);
    let bytes = fs::read(dir.join("00000000000000000001.wal")).expect("segment 1");
    assert_eq!(bytes, common::header(1));
    assert!(dir.join("LOCK").exists());
}

#[test]
fn round_trip_and_append_after_reopen() {
    let tmp = TempDir::new("roundtrip");
    let mut rng = Rng::new(1);
    let mut written = Vec::new();
    {
        let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
        for _ in 0..20 {
            let batch: Vec<Vec<u8>> = (0..rng.range(1, 5)).map(|_| rng.payload(1, 300)).collect();
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            wal.append_batch(&refs).expect("append");
            written.extend(batch);
        }
        wal.append_batch(&[]).expect("an empty batch is a no-op");
    }
    let more = vec![b"after reopen".to_vec(), b"x".to_vec()];
    {
        let (mut wal, report, seen) = open(tmp.path(), Options::default()).expect("reopen");
        assert_eq!(seen, written);
        assert_eq!(report.records, written.len() as u64);
        assert_eq!(report.segments, 1);
        assert_eq!(report.torn_tail, None);
        append_each(&mut wal, &more);
        assert_eq!(wal.total_bytes(), file_len(&tmp.seg(1)));
    }
    written.extend(more);
    let (_, _, seen) = open(tmp.path(), Options::default()).expect("reopen again");
    assert_eq!(seen, written);
    // The file is exactly the documented encoding, byte for byte.
    assert_eq!(
        fs::read(tmp.seg(1)).expect("read"),
        common::segment_bytes(1, &written)
    );
}

#[test]
fn rotation_keeps_order_and_numbering() {
    let tmp = TempDir::new("rotation");
    let max = 200;
    let mut rng = Rng::new(2);
    let mut written = Vec::new();
    {
        let (mut wal, _, _) = open(tmp.path(), small(max)).expect("open");
        for _ in 0..150 {
            let batch: Vec<Vec<u8>> = (0..rng.range(1, 3)).map(|_| rng.payload(1, 40)).collect();
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            wal.append_batch(&refs).expect("append");
            written.extend(batch);
        }
        let numbers = segment_numbers(tmp.path());
        assert!(
            numbers.len() > 5,
            "expected several segments, got {numbers:?}"
        );
        assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>());
        let total: u64 = numbers.iter().map(|&n| file_len(&tmp.seg(n))).sum();
        assert_eq!(wal.total_bytes(), total);
        for &n in &numbers {
            let bytes = fs::read(tmp.seg(n)).expect("read");
            // Fields before the chain value (checked by replay below).
            assert_eq!(
                bytes[..24],
                common::header(n)[..24],
                "header of segment {n}"
            );
            assert!(
                bytes.len() as u64 <= max,
                "segment {n} is {} bytes",
                bytes.len()
            );
        }
    }
    let (mut wal, report, seen) = open(tmp.path(), small(max)).expect("reopen");
    assert_eq!(seen, written);
    assert_eq!(report.segments as usize, segment_numbers(tmp.path()).len());
    wal.append_batch(&[b"tail"]).expect("append after reopen");
    drop(wal);
    written.push(b"tail".to_vec());
    let (_, _, seen) = open(tmp.path(), small(max)).expect("reopen");
    assert_eq!(seen, written);
}

#[test]
fn oversized_batch_goes_alone_into_a_fresh_segment() {
    let tmp = TempDir::new("oversized");
    let big = vec![7u8; 500];
    {
        let (mut wal, _, _) = open(tmp.path(), small(100)).expect("open");
        wal.append_batch(&[b"a"]).expect("small");
        wal.append_batch(&[&big]).expect("big");
        wal.append_batch(&[b"b"]).expect("small");
    }
    assert_eq!(segment_numbers(tmp.path()), [1, 2, 3]);
    // Header, the record, the seal.
    assert_eq!(file_len(&tmp.seg(2)), 32 + 8 + 500 + 24);
    // A fresh, empty segment takes an oversized batch without rotating again.
    let tmp2 = TempDir::new("oversized-first");
    {
        let (mut wal, _, _) = open(tmp2.path(), small(100)).expect("open");
        wal.append_batch(&[&big, &big]).expect("big batch");
    }
    assert_eq!(segment_numbers(tmp2.path()), [1]);
    let (_, _, seen) = open(tmp2.path(), small(100)).expect("reopen");
    assert_eq!(seen, [big.clone(), big]);
}

#[test]
fn second_open_is_locked_until_the_first_is_dropped() {
    let tmp = TempDir::new("lock");
    let (wal, _, _) = open(tmp.path(), Options::default()).expect("open");
    match Wal::open(tmp.path(), Options::default(), |_| Ok(())) {
        Err(WalError::Locked { path }) => assert_eq!(path, tmp.path().join("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(wal);
    open(tmp.path(), Options::default()).expect("open after drop");
}

#[test]
fn invalid_payloads_are_refused_without_writing() {
    let tmp = TempDir::new("invalid");
    let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
    let before = wal.total_bytes();
    match wal.append_batch(&[b"ok", b""]) {
        Err(WalError::EmptyPayload { index: 1 }) => {}
        other => panic!("expected EmptyPayload, got {other:?}"),
    }
    let huge = vec![1u8; MAX_RECORD_BYTES + 1];
    match wal.append_batch(&[&huge]) {
        Err(WalError::PayloadTooLarge { index: 0, len }) => assert_eq!(len, huge.len()),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(wal.total_bytes(), before);
    // Refusals do not poison.
    wal.append_batch(&[b"still fine"]).expect("append");
    drop(wal);
    let (_, _, seen) = open(tmp.path(), Options::default()).expect("reopen");
    assert_eq!(seen, [b"still fine".to_vec()]);
}

#[test]
fn a_rejecting_callback_aborts_replay_naming_the_record() {
    let tmp = TempDir::new("reject");
    {
        let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
        wal.append_batch(&[b"one", b"two", b"three"])
            .expect("append");
    }
    let mut calls = 0;
    let result = Wal::open(tmp.path(), Options::default(), |p| {
        calls += 1;
        if p == b"two" {
            Err("cannot decode".to_string())
        } else {
            Ok(())
        }
    });
    match result {
        Err(e @ WalError::Replay { .. }) => {
            let WalError::Replay {
                file,
                offset,
                message,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(file, &tmp.seg(1));
            assert_eq!(*offset, 32 + 8 + 3);
            assert_eq!(message, "cannot decode");
            let text = e.to_string();
            assert!(
                text.contains("00000000000000000001.wal") && text.contains("43"),
                "{text}"
            );
        }
        other => panic!("expected Replay, got {other:?}"),
    }
    assert_eq!(calls, 2);
}

#[test]
fn stray_files_are_ignored() {
    let tmp = TempDir::new("stray");
    {
        let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
        wal.append_batch(&[b"kept"]).expect("append");
    }
    for name in [
        "notes.txt",
        "1.wal",
        "00000000000000000002.wal.tmp",
        "0000000000000000000x.wal",
    ] {
        fs::write(tmp.path().join(name), b"junk").expect("write stray");
    }
    fs::create_dir(tmp.path().join("subdir")).expect("mkdir");
    let (_, report, seen) = open(tmp.path(), Options::default()).expect("open");
    assert_eq!(seen, [b"kept".to_vec()]);
    assert_eq!(report.segments, 1);
}

#[test]
fn clear_leaves_one_empty_segment_and_appends_go_on() {
    let tmp = TempDir::new("clear");
    let newest;
    {
        let (mut wal, _, _) = open(tmp.path(), small(120)).expect("open");
        for i in 0..30u8 {
            wal.append_batch(&[&[i; 20]]).expect("append");
        }
        let before = segment_numbers(tmp.path());
        assert!(before.len() > 3);
        newest = *before.last().expect("segments");
        wal.clear().expect("clear");
        // An empty checkpoint: the next number, the only segment left.
        assert_eq!(segment_numbers(tmp.path()), vec![newest + 1]);
        // It continues from where the segment before it ended (that
        // chain value is not checked once the checkpoint is complete).
        let bytes = fs::read(tmp.seg(newest + 1)).expect("read");
        assert_eq!(bytes.len(), common::HDR);
        assert_eq!(bytes[..24], common::checkpoint_header(newest + 1, 0)[..24]);
        assert_eq!(wal.total_bytes(), SEGMENT_HEADER_LEN);
        wal.append_batch(&[b"after clear"])
            .expect("append after clear");
    }
    let (_, report, seen) = open(tmp.path(), small(120)).expect("reopen");
    assert_eq!(seen, vec![b"after clear".to_vec()]);
    assert_eq!(
        report.checkpoint,
        Some(wal::CheckpointStart {
            segment: newest + 1,
            records: 0
        })
    );
}

#[test]
fn a_clear_cut_short_replays_as_empty() {
    // A crash between the removals of old segments (oldest first) leaves
    // the newest old segments and the empty checkpoint: nothing replays,
    // and the leftovers are removed.
    let tmp = TempDir::new("clear-cut");
    {
        let (mut wal, _, _) = open(tmp.path(), small(120)).expect("open");
        for i in 0..30u8 {
            wal.append_batch(&[&[i + 1; 20]]).expect("append");
        }
    }
    let numbers = segment_numbers(tmp.path());
    let newest = *numbers.last().expect("segments");
    fs::write(
        tmp.seg(newest + 1),
        common::checkpoint_header(newest + 1, 0),
    )
    .expect("checkpoint");
    for &n in &numbers[..numbers.len() / 2] {
        fs::remove_file(tmp.seg(n)).expect("remove, as clear does, oldest first");
    }
    let (_, report, seen) = open(tmp.path(), small(120)).expect("reopen after a cut-short clear");
    assert!(seen.is_empty());
    assert_eq!(
        report.stale_segments_removed as usize,
        numbers.len() - numbers.len() / 2
    );
    assert_eq!(segment_numbers(tmp.path()), [newest + 1]);
}
