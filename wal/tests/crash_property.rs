//! Seeded crash simulation: durable batches through the WAL, sometimes with
//! a checkpoint among them (restating every durable record), then one
//! unsynced batch written raw and cut at a random point (sometimes followed
//! by zeros, as when a file's size reached disk before its data). Replay
//! must return exactly the records whose bytes survived whole, in order,
//! with segments grown append by append and with preallocated ones (where
//! the unsynced batch lands among zeros). Other tests crash in the middle
//! of writing a checkpoint, and of a rotation.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use common::{
    checkpoint_header_after, encode_chain, file_len, header_seed, header_v3, next_seed, open, seal,
    segment_numbers, small, Rng, TempDir, HDR, SEAL,
};

#[test]
fn replay_after_a_random_crash_is_exactly_the_surviving_prefix() {
    random_crashes(0..300, false);
}

/// The same with preallocated segments: the unsynced batch lands inside
/// the zeros after the records, so everything after it is zeros too.
#[test]
fn replay_after_a_random_crash_on_preallocated_segments_is_exactly_the_surviving_prefix() {
    random_crashes(300..400, true);
}

fn random_crashes(seeds: std::ops::Range<u64>, preallocate: bool) {
    let mut zeros_after_records = 0;
    for seed in seeds {
        let mut rng = Rng::new(seed);
        let tmp = TempDir::new("crash");
        let mut options = small(rng.range(64, 1024));
        if preallocate {
            options.preallocate_bytes = options.segment_max_bytes;
        }
        let mut durable = Vec::new();
        let synced;
        {
            let (mut wal, _, _) = open(tmp.path(), options.clone()).expect("open");
            let batches = rng.range(0, 8);
            // Sometimes a checkpoint, restating the log as it is, comes
            // after batch `checkpoint_after`.
            let checkpoint_after = match rng.range(0, 2) {
                0 => Some(rng.range(0, batches)),
                _ => None,
            };
            for i in 0..=batches {
                if preallocate {
                    wal.wait_for_spare();
                }
                if checkpoint_after == Some(i) {
                    let refs: Vec<&[u8]> = durable.iter().map(Vec::as_slice).collect();
                    wal.checkpoint(&refs).expect("checkpoint");
                }
                if i == batches {
                    break;
                }
                let batch: Vec<Vec<u8>> =
                    (0..rng.range(1, 4)).map(|_| rng.payload(1, 120)).collect();
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                wal.append_batch(&refs).expect("append");
                durable.extend(batch);
            }
            // Where the newest segment's records end: the log's bytes less
            // those of the (cut and sealed) segments before it.
            let numbers = segment_numbers(tmp.path());
            let older: u64 = numbers[..numbers.len() - 1]
                .iter()
                .map(|&n| file_len(&tmp.seg(n)))
                .sum();
            synced = wal.total_bytes() - older;
        }
        // The batch in flight when the process died.
        let newest = *segment_numbers(tmp.path()).last().expect("a segment");
        let path = tmp.seg(newest);
        let in_flight: Vec<Vec<u8>> = (0..rng.range(1, 4)).map(|_| rng.payload(1, 120)).collect();
        let written = std::fs::read(&path).expect("read segment");
        if written.len() as u64 > synced {
            zeros_after_records += 1;
        }
        let seed = next_seed(&written[..synced as usize]);
        let (raw, _) = encode_chain(seed, &in_flight);
        let cut = rng.range(0, raw.len() as u64) as usize;
        let zeros = if rng.range(0, 2) == 0 {
            rng.range(1, 600) as usize
        } else {
            0
        };
        let mut f = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open raw");
        f.seek(SeekFrom::Start(synced)).expect("seek");
        f.write_all(&raw[..cut]).expect("raw write");
        f.write_all(&vec![0u8; zeros]).expect("zeros");
        drop(f);
        let file_end = file_len(&path);

        let mut expected = durable.clone();
        let mut survived_end = 0;
        for p in &in_flight {
            if survived_end + 8 + p.len() > cut {
                break;
            }
            survived_end += 8 + p.len();
            expected.push(p.clone());
        }
        let (mut wal, report, seen) =
            open(tmp.path(), options.clone()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(seen, expected, "seed {seed}");
        let dropped = file_end - synced - survived_end as u64;
        match &report.torn_tail {
            None => assert_eq!(dropped, 0, "seed {seed}"),
            Some(tail) => {
                assert_eq!(tail.file, path, "seed {seed}");
                assert_eq!(tail.offset, synced + survived_end as u64, "seed {seed}");
                assert_eq!(tail.bytes_dropped, dropped, "seed {seed}");
            }
        }
        assert!(report.skipped.is_empty(), "seed {seed}");

        // The repaired log keeps working.
        wal.append_batch(&[b"after crash"]).expect("append");
        drop(wal);
        expected.push(b"after crash".to_vec());
        let (_, report, seen) = open(tmp.path(), options).expect("reopen");
        assert_eq!(seen, expected, "seed {seed}");
        assert_eq!(report.torn_tail, None, "seed {seed}");
    }
    // Without preallocation the newest segment ends with its records;
    // with it, most crashes land in a preallocated one.
    if preallocate {
        assert!(zeros_after_records > 50, "{zeros_after_records} of 100");
    } else {
        assert_eq!(zeros_after_records, 0);
    }
}

#[test]
fn a_crash_in_the_middle_of_a_checkpoint_replays_the_same_records() {
    for seed in 0..200 {
        let mut rng = Rng::new(1000 + seed);
        let tmp = TempDir::new("crash-checkpoint");
        let options = small(rng.range(64, 1024));
        let mut durable = Vec::new();
        {
            let (mut wal, _, _) = open(tmp.path(), options.clone()).expect("open");
            for _ in 0..rng.range(0, 8) {
                let batch: Vec<Vec<u8>> =
                    (0..rng.range(1, 4)).map(|_| rng.payload(1, 120)).collect();
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                wal.append_batch(&refs).expect("append");
                durable.extend(batch);
            }
        }
        // The checkpoint being written when the process died: its segment
        // holds a prefix of its bytes (never less than the header, which
        // was synced first, unless the crash hit creation itself), maybe
        // followed by zeros; if it was whole, some old segments may be gone.
        let numbers = segment_numbers(tmp.path());
        let newest = *numbers.last().expect("a segment");
        let newest_end = next_seed(&std::fs::read(tmp.seg(newest)).expect("read"));
        let mut full = checkpoint_header_after(newest + 1, durable.len() as u32, newest_end);
        let (records, _) = encode_chain(header_seed(&full), &durable);
        full.extend_from_slice(&records);
        let cut = rng.range(0, full.len() as u64) as usize;
        let mut bytes = full[..cut].to_vec();
        if cut >= 32 && rng.range(0, 2) == 0 {
            bytes.resize(full.len(), 0);
        }
        std::fs::write(tmp.seg(newest + 1), &bytes).expect("write checkpoint");
        if cut == full.len() {
            let removed = rng.range(0, numbers.len() as u64) as usize;
            for &n in &numbers[..removed] {
                std::fs::remove_file(tmp.seg(n)).expect("remove");
            }
        }
        let (mut wal, _, seen) =
            open(tmp.path(), options.clone()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(seen, durable, "seed {seed}");
        wal.append_batch(&[b"after crash"]).expect("append");
        drop(wal);
        durable.push(b"after crash".to_vec());
        let (_, report, seen) = open(tmp.path(), options).expect("reopen");
        assert_eq!(seen, durable, "seed {seed}");
        assert_eq!(report.torn_tail, None, "seed {seed}");
        assert!(
            segment_numbers(tmp.path()).len() <= numbers.len() + 1,
            "seed {seed}"
        );
    }
}

/// A crash at every point of moving to a new segment: while its header is
/// written (a torn header, maybe zeros), after it is durable but before the
/// seal of the segment before it is (no seal, or a prefix of it, maybe
/// zero-filled), or after both. Replay gives exactly the durable records,
/// the rotation is finished (the segment before is sealed, the new one
/// continues its chain), and the log keeps working.
#[test]
fn a_crash_in_the_middle_of_a_rotation_replays_the_same_records() {
    for seed in 0..200 {
        let mut rng = Rng::new(5000 + seed);
        let tmp = TempDir::new("crash-rotation");
        let options = small(rng.range(96, 600));
        let mut durable = Vec::new();
        {
            let (mut wal, _, _) = open(tmp.path(), options.clone()).expect("open");
            let batches = rng.range(0, 8);
            let checkpoint_after = rng.range(0, batches + 2);
            for i in 0..batches {
                if checkpoint_after == i {
                    let refs: Vec<&[u8]> = durable.iter().map(Vec::as_slice).collect();
                    wal.checkpoint(&refs).expect("checkpoint");
                }
                let batch: Vec<Vec<u8>> =
                    (0..rng.range(1, 4)).map(|_| rng.payload(1, 60)).collect();
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                wal.append_batch(&refs).expect("append");
                durable.extend(batch);
            }
        }
        let newest = *segment_numbers(tmp.path()).last().expect("a segment");
        let before = std::fs::read(tmp.seg(newest)).expect("read");
        let records = wal::inspect_segment(&before)
            .entries
            .iter()
            .filter(|e| matches!(e, wal::InspectedEntry::Record { .. }))
            .count() as u64;
        let (seal_bytes, crc) = seal(records, next_seed(&before), newest + 1);
        let header = header_v3(newest + 1, 0, 0, crc);
        // Where the crash came: within the new header, then within the seal.
        let point = rng.range(0, (HDR + SEAL) as u64) as usize;
        let zeros = rng.range(0, 2) == 0;
        if point < HDR {
            let mut torn = header[..point].to_vec();
            if zeros {
                torn.resize(HDR, 0);
            }
            std::fs::write(tmp.seg(newest + 1), &torn).expect("torn header");
        } else {
            std::fs::write(tmp.seg(newest + 1), &header).expect("header");
            let landed = point - HDR;
            let mut tail = seal_bytes[..landed].to_vec();
            if zeros {
                tail.resize(SEAL, 0);
            }
            let mut f = OpenOptions::new()
                .append(true)
                .open(tmp.seg(newest))
                .expect("open raw");
            f.write_all(&tail).expect("partial seal");
        }
        let what = format!("seed {seed} point {point} zeros {zeros}");
        let (mut wal, report, seen) =
            open(tmp.path(), options.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(seen, durable, "{what}");
        // What of the seal had landed (zeros included) is what was cut,
        // unless all of it had: then the rotation was complete.
        if point < HDR + SEAL {
            let landed = match point.checked_sub(HDR) {
                None => 0,
                Some(_) if zeros => SEAL as u64,
                Some(part) => part as u64,
            };
            let finished = report
                .rotation_finished
                .unwrap_or_else(|| panic!("{what}: the rotation is not finished"));
            assert_eq!(
                (finished.file, finished.offset, finished.bytes_dropped),
                (tmp.seg(newest), before.len() as u64, landed),
                "{what}"
            );
        } else {
            assert_eq!(report.rotation_finished, None, "{what}");
        }
        let mut sealed = before.clone();
        sealed.extend_from_slice(&seal_bytes);
        assert_eq!(
            std::fs::read(tmp.seg(newest)).expect("read"),
            sealed,
            "{what}: the rotation is finished"
        );
        assert_eq!(
            std::fs::read(tmp.seg(newest + 1)).expect("read"),
            header,
            "{what}"
        );
        wal.append_batch(&[b"after crash"]).expect("append");
        drop(wal);
        durable.push(b"after crash".to_vec());
        let (_, report, seen) = open(tmp.path(), options).expect("reopen");
        assert_eq!(seen, durable, "{what}");
        assert_eq!(report.torn_tail, None, "{what}");
        assert!(report.skipped.is_empty(), "{what}");
    }
}
