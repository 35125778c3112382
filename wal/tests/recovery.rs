//! Crash and disk-damage recovery: every rule in the crate docs.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;

use common::{
    append_each, file_len, header, open, open_partial, segment_bytes, segment_numbers, skipping,
    small, Rng, TempDir, HDR, SEAL,
};
use wal::{Options, TornTail, WalError, MAX_RECORD_BYTES};

fn payloads(seed: u64, n: usize, lo: usize, hi: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.payload(lo, hi)).collect()
}

/// Offsets at which each record starts in a single-segment file, plus the end.
fn boundaries(records: &[Vec<u8>]) -> Vec<usize> {
    let mut out = vec![HDR];
    for r in records {
        out.push(out[out.len() - 1] + 8 + r.len());
    }
    out
}

fn expect_corrupt(result: Result<impl std::fmt::Debug, WalError>) -> (std::path::PathBuf, u64) {
    match result {
        Err(WalError::Corrupt { file, offset, .. }) => (file, offset),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn truncation_at_every_byte_of_the_last_two_records() {
    let records = payloads(10, 6, 1, 24);
    let full = segment_bytes(1, &records);
    let bounds = boundaries(&records);
    for cut in bounds[records.len() - 2]..=full.len() {
        let tmp = TempDir::new("cut");
        fs::write(tmp.seg(1), &full[..cut]).expect("write");
        let (mut wal, report, seen) =
            open(tmp.path(), Options::default()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let complete = bounds.iter().filter(|&&b| b <= cut).count() - 1;
        assert_eq!(seen, records[..complete], "cut {cut}");
        let boundary = bounds[complete];
        let expected_tail = (boundary != cut).then(|| TornTail {
            file: tmp.seg(1),
            offset: boundary as u64,
            bytes_dropped: (cut - boundary) as u64,
            unwritten: full[boundary..cut].iter().all(|&b| b == 0),
        });
        assert_eq!(report.torn_tail, expected_tail, "cut {cut}");
        assert_eq!(file_len(&tmp.seg(1)), boundary as u64, "cut {cut}");
        wal.append_batch(&[b"next"]).expect("append after repair");
        drop(wal);
        let (_, report, seen) = open(tmp.path(), Options::default()).expect("reopen");
        assert_eq!(seen.len(), complete + 1, "cut {cut}");
        assert_eq!(seen[complete], b"next", "cut {cut}");
        assert_eq!(report.torn_tail, None);
    }
}

#[test]
fn every_bit_flip_is_detected_never_replayed() {
    let records = payloads(11, 4, 1, 10);
    let full = segment_bytes(1, &records);
    let bounds = boundaries(&records);
    let last = records.len() - 1;
    for (i, record) in records.iter().enumerate() {
        for byte in bounds[i]..bounds[i + 1] {
            for bit in 0..8 {
                let mut data = full.clone();
                data[byte] ^= 1 << bit;
                let tmp = TempDir::new("flip");
                fs::write(tmp.seg(1), &data).expect("write");
                let (result, seen) = open_partial(tmp.path(), Options::default());
                assert_eq!(seen, records[..i], "record {i} byte {byte} bit {bit}");
                // Only a larger, still plausible length on the last record
                // looks like a torn write; everything else is corruption.
                let in_length = byte < bounds[i] + 4;
                let new_len =
                    u32::from_be_bytes(data[bounds[i]..bounds[i] + 4].try_into().expect("4 bytes"))
                        as usize;
                let torn = i == last
                    && (!in_length || (new_len > record.len() && new_len <= MAX_RECORD_BYTES));
                let what = format!("record {i} byte {byte} bit {bit}");
                if torn {
                    let (_, report) = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                    let tail = report.torn_tail.expect("torn tail reported");
                    assert_eq!(tail.offset, bounds[i] as u64, "{what}");
                    assert_eq!(tail.bytes_dropped, (8 + record.len()) as u64, "{what}");
                } else {
                    let (file, offset) = expect_corrupt(result);
                    assert_eq!((file, offset), (tmp.seg(1), bounds[i] as u64), "{what}");
                }
                // With skip_corrupt nothing wrong is replayed either.
                let tmp = TempDir::new("flip-skip");
                fs::write(tmp.seg(1), &data).expect("write");
                let (_, report, seen) =
                    open(tmp.path(), skipping()).unwrap_or_else(|e| panic!("{what}: {e}"));
                let mut expected = records.clone();
                expected.remove(i);
                assert!(is_subsequence(&seen, &expected), "{what}: {seen:?}");
                assert!(seen.len() >= i, "{what}");
                assert!(
                    report.torn_tail.is_some() || !report.skipped.is_empty(),
                    "{what}"
                );
                if !in_length {
                    assert_eq!(
                        seen, expected,
                        "{what}: a payload/crc flip costs one record"
                    );
                }
            }
        }
    }
}

fn is_subsequence(sub: &[Vec<u8>], of: &[Vec<u8>]) -> bool {
    let mut it = of.iter();
    sub.iter().all(|s| it.any(|o| o == s))
}

#[test]
fn zero_filled_tail_is_truncated() {
    let tmp = TempDir::new("zeros");
    let records = payloads(12, 5, 1, 50);
    {
        let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
        append_each(&mut wal, &records);
    }
    let len = file_len(&tmp.seg(1));
    let mut f = OpenOptions::new()
        .append(true)
        .open(tmp.seg(1))
        .expect("open segment");
    f.write_all(&[0u8; 4096]).expect("zeros");
    drop(f);
    let (wal, report, seen) = open(tmp.path(), Options::default()).expect("open");
    assert_eq!(seen, records);
    let tail = report.torn_tail.expect("torn tail");
    assert_eq!(
        tail,
        TornTail {
            file: tmp.seg(1),
            offset: len,
            bytes_dropped: 4096,
            unwritten: true,
        }
    );
    let line = tail.to_string();
    assert!(
        line.contains("00000000000000000001.wal")
            && line.contains(&len.to_string())
            && line.contains("4096"),
        "{line}"
    );
    assert_eq!(file_len(&tmp.seg(1)), len);
    assert_eq!(wal.total_bytes(), len);
}

#[test]
fn torn_header_of_the_newest_segment_is_rewritten() {
    for torn in [Vec::new(), header(3)[..7].to_vec(), vec![0u8; HDR]] {
        let tmp = TempDir::new("torn-header");
        let records = payloads(13, 6, 10, 10);
        {
            let (mut wal, _, _) = open(tmp.path(), small(128)).expect("open");
            append_each(&mut wal, &records);
        }
        assert_eq!(segment_numbers(tmp.path()).last(), Some(&2), "test setup");
        fs::write(tmp.seg(3), &torn).expect("torn segment");
        let (mut wal, report, seen) = open(tmp.path(), small(128)).expect("open");
        assert_eq!(seen, records);
        assert_eq!(report.segments, 3);
        assert_eq!(
            report.torn_tail,
            Some(TornTail {
                file: tmp.seg(3),
                offset: 0,
                bytes_dropped: torn.len() as u64,
                unwritten: false,
            })
        );
        // Rewritten, continuing from the seal segment 2 gets now: the
        // crash came while the log was moving to segment 3.
        let two = fs::read(tmp.seg(2)).expect("read");
        let (seal, crc) = common::seal(2, common::next_seed(&two[..two.len() - SEAL]), 3);
        assert_eq!(two[two.len() - SEAL..], seal[..]);
        assert_eq!(
            fs::read(tmp.seg(3)).expect("read"),
            common::header_v3(3, 0, 0, crc)
        );
        wal.append_batch(&[b"into three"]).expect("append");
        drop(wal);
        assert_eq!(file_len(&tmp.seg(3)), (HDR + 8 + 10) as u64);
        let (_, _, seen) = open(tmp.path(), small(128)).expect("reopen");
        assert_eq!(seen.last().map(Vec::as_slice), Some(&b"into three"[..]));
    }
}

fn three_segments(tmp: &TempDir) -> Vec<Vec<u8>> {
    let records = payloads(14, 12, 20, 20);
    let (mut wal, _, _) = open(tmp.path(), small(32 + 4 * 28 + 24)).expect("open");
    append_each(&mut wal, &records);
    assert_eq!(segment_numbers(tmp.path()), [1, 2, 3], "test setup");
    records
}

#[test]
fn missing_segments_are_reported() {
    let tmp = TempDir::new("missing-middle");
    three_segments(&tmp);
    fs::remove_file(tmp.seg(2)).expect("rm");
    match open(tmp.path(), Options::default()) {
        Err(
            e @ WalError::MissingSegment {
                expected: 2,
                found: 3,
                ..
            },
        ) => {
            assert!(e.to_string().contains("00000000000000000002.wal"), "{e}");
        }
        other => panic!("expected MissingSegment, got {:?}", other.map(|_| ())),
    }
    let tmp = TempDir::new("missing-first");
    three_segments(&tmp);
    fs::remove_file(tmp.seg(1)).expect("rm");
    assert!(matches!(
        open(tmp.path(), Options::default()),
        Err(WalError::MissingSegment {
            expected: 1,
            found: 2,
            ..
        })
    ));
}

#[test]
fn bad_headers_are_reported() {
    let mut bad_magic = header(2);
    bad_magic[0] = b'X';
    let mut bad_version = header(2);
    bad_version[11] = 4;
    let wrong_number = header(7);
    let torn_not_newest = header(2)[..5].to_vec();
    for (what, bytes) in [
        ("magic", bad_magic),
        ("version", bad_version),
        ("number", wrong_number),
        ("torn", torn_not_newest),
    ] {
        let tmp = TempDir::new("bad-header");
        three_segments(&tmp);
        let mut data = fs::read(tmp.seg(2)).expect("read");
        let n = bytes.len();
        data.splice(..HDR, bytes);
        if n < HDR {
            data.truncate(n);
        }
        fs::write(tmp.seg(2), &data).expect("write");
        let (result, seen) = open_partial(tmp.path(), Options::default());
        match result {
            Err(WalError::BadHeader { file, .. }) => assert_eq!(file, tmp.seg(2), "{what}"),
            other => panic!("{what}: expected BadHeader, got {other:?}"),
        }
        assert!(seen.is_empty(), "{what}: headers are checked before replay");
    }
}

#[test]
fn unreadable_segment_is_an_io_error_naming_it() {
    let tmp = TempDir::new("unreadable");
    three_segments(&tmp);
    fs::remove_file(tmp.seg(2)).expect("rm");
    fs::create_dir(tmp.seg(2)).expect("a directory where a segment should be");
    match open(tmp.path(), Options::default()) {
        Err(WalError::Io { path, .. }) => assert_eq!(path, tmp.seg(2)),
        other => panic!("expected Io, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn corruption_in_an_older_segment_fails_or_is_skipped() {
    let tmp = TempDir::new("corrupt-old");
    let records = three_segments(&tmp);
    // Second record of segment 1: offset 32 + 28, payload byte 3.
    let mut data = fs::read(tmp.seg(1)).expect("read");
    data[32 + 28 + 8 + 3] ^= 0x10;
    fs::write(tmp.seg(1), &data).expect("write");

    let (result, seen) = open_partial(tmp.path(), Options::default());
    assert_eq!(expect_corrupt(result), (tmp.seg(1), 60));
    assert_eq!(seen, records[..1]);

    let (mut wal, report, seen) = open(tmp.path(), skipping()).expect("skip_corrupt");
    let mut expected = records.clone();
    expected.remove(1);
    assert_eq!(seen, expected);
    assert_eq!(report.skipped.len(), 1);
    let skipped = &report.skipped[0];
    assert_eq!(
        (skipped.file.clone(), skipped.offset, skipped.bytes),
        (tmp.seg(1), 60, 28)
    );
    assert!(skipped.to_string().contains("00000000000000000001.wal"));
    wal.append_batch(&[b"more"]).expect("append");
    drop(wal);
    let (_, _, seen) = open(tmp.path(), skipping()).expect("reopen");
    assert_eq!(seen.len(), expected.len() + 1);
}

#[test]
fn damage_before_valid_records_in_the_newest_segment_is_corruption() {
    let tmp = TempDir::new("corrupt-newest");
    let records = payloads(15, 3, 5, 5);
    {
        let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
        append_each(&mut wal, &records);
    }
    let mut data = fs::read(tmp.seg(1)).expect("read");
    data[HDR + 4] ^= 1; // checksum of the first record
    fs::write(tmp.seg(1), &data).expect("write");
    let len = file_len(&tmp.seg(1));
    assert_eq!(
        expect_corrupt(open(tmp.path(), Options::default())),
        (tmp.seg(1), HDR as u64)
    );
    assert_eq!(
        file_len(&tmp.seg(1)),
        len,
        "nothing is truncated on corruption"
    );
}

#[test]
fn unparseable_newest_segment_moves_appends_to_a_fresh_segment() {
    let tmp = TempDir::new("unparseable");
    let records = payloads(16, 3, 5, 5);
    {
        let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
        append_each(&mut wal, &records);
    }
    let mut data = fs::read(tmp.seg(1)).expect("read");
    data[HDR + 13..HDR + 17].copy_from_slice(&[0xff; 4]); // length of record 2
    fs::write(tmp.seg(1), &data).expect("write");
    assert_eq!(
        expect_corrupt(open(tmp.path(), Options::default())),
        (tmp.seg(1), 45)
    );

    let (mut wal, report, seen) = open(tmp.path(), skipping()).expect("skip");
    assert_eq!(seen, records[..1]);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(
        (report.skipped[0].offset, report.skipped[0].bytes),
        (45, 26)
    );
    assert_eq!(segment_numbers(tmp.path()), [1, 2]);
    assert_eq!(
        file_len(&tmp.seg(1)),
        data.len() as u64,
        "damaged bytes are kept"
    );
    assert_eq!(
        wal.total_bytes(),
        file_len(&tmp.seg(1)) + file_len(&tmp.seg(2))
    );
    wal.append_batch(&[b"fresh"]).expect("append");
    drop(wal);
    let (_, _, seen) = open(tmp.path(), skipping()).expect("reopen");
    assert_eq!(seen, [records[0].clone(), b"fresh".to_vec()]);
    // Without skip_corrupt the damage still stops the open.
    assert_eq!(
        expect_corrupt(open(tmp.path(), Options::default())),
        (tmp.seg(1), 45)
    );
}
