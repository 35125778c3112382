//! Chained records (format version 2): a torn tail whose payload embeds
//! valid-looking records is still a torn tail; genuine damage in the middle
//! is still corruption; version 1 segments still replay.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;

use common::{
    encode_chain, encode_seeded, encode_v1, file_len, header, header_seed, next_seed, open,
    open_partial, segment_bytes_v1, segment_numbers, small, TempDir, HDR,
};
use wal::{Options, TornTail, WalError};

/// A value a client could send: it embeds an unseeded (version 1 style)
/// record, a record seeded like the first record of a segment, and a record
/// seeded with the true chain seed at the start of the batch.
fn evil_value(segment_header: &[u8], batch_seed: u32) -> Vec<u8> {
    let mut value = b"prefix:".to_vec();
    value.extend_from_slice(&encode_v1(b"fake record, version 1 style"));
    value.extend_from_slice(&encode_seeded(0, b"another unseeded fake").0);
    value.extend_from_slice(&encode_seeded(header_seed(segment_header), b"fake first record").0);
    value.extend_from_slice(&encode_seeded(batch_seed, b"fake seeded with the batch seed").0);
    value.extend_from_slice(b":suffix");
    value
}

#[test]
fn a_torn_batch_whose_value_embeds_valid_records_is_a_torn_tail() {
    let durable: Vec<Vec<u8>> = vec![b"one".to_vec(), b"two".to_vec()];
    let base = TempDir::new("evil-base");
    {
        let (mut wal, _, _) = open(base.path(), Options::default()).expect("open");
        let refs: Vec<&[u8]> = durable.iter().map(Vec::as_slice).collect();
        wal.append_batch(&refs).expect("append");
    }
    let synced = fs::read(base.seg(1)).expect("read");
    let seed = next_seed(&synced);
    let evil = evil_value(&header(1), seed);
    let in_flight = vec![b"plain".to_vec(), evil.clone(), b"after".to_vec()];
    let (raw, _) = encode_chain(seed, &in_flight);
    let mut ends = Vec::new();
    let mut end = 0;
    for p in &in_flight {
        end += 8 + p.len();
        ends.push(end);
    }
    for zeros in [0usize, 100] {
        for cut in 1..raw.len() {
            let tmp = TempDir::new("evil");
            let mut data = synced.clone();
            data.extend_from_slice(&raw[..cut]);
            data.extend(std::iter::repeat_n(0u8, zeros));
            fs::write(tmp.seg(1), &data).expect("write");
            let (wal, report, seen) = open(tmp.path(), Options::default())
                .unwrap_or_else(|e| panic!("cut {cut} zeros {zeros}: {e}"));
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            let survived = if complete == 0 { 0 } else { ends[complete - 1] };
            let mut expected = durable.clone();
            expected.extend_from_slice(&in_flight[..complete]);
            assert_eq!(seen, expected, "cut {cut} zeros {zeros}");
            let dropped = (cut - survived + zeros) as u64;
            let offset = synced.len() + survived;
            let expected_tail = (dropped > 0).then(|| TornTail {
                file: tmp.seg(1),
                offset: offset as u64,
                bytes_dropped: dropped,
                unwritten: data[offset..].iter().all(|&b| b == 0),
            });
            assert_eq!(report.torn_tail, expected_tail, "cut {cut} zeros {zeros}");
            drop(wal);
        }
    }
}

#[test]
fn the_same_torn_value_in_a_version_1_segment_is_still_refused() {
    // The original bug, kept for version 1 segments (unchained, so any
    // record that verifies counts): it fails safe, as it always did.
    let durable = vec![b"one".to_vec(), b"two".to_vec()];
    let evil = evil_value(&header(1), 0);
    let mut data = segment_bytes_v1(1, &durable);
    let whole = encode_v1(&evil);
    data.extend_from_slice(&whole[..whole.len() - 3]);
    let tmp = TempDir::new("evil-v1");
    fs::write(tmp.seg(1), &data).expect("write");
    let (result, seen) = open_partial(tmp.path(), Options::default());
    assert!(
        matches!(result, Err(WalError::Corrupt { .. })),
        "{result:?}"
    );
    assert_eq!(seen, durable);
}

fn five_records(tmp: &TempDir) -> (Vec<Vec<u8>>, Vec<usize>) {
    let records: Vec<Vec<u8>> = (1..=5u8).map(|i| vec![i; 10 + i as usize]).collect();
    let (mut wal, _, _) = open(tmp.path(), Options::default()).expect("open");
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    wal.append_batch(&refs).expect("append");
    let mut offsets = vec![HDR];
    for r in &records {
        offsets.push(offsets[offsets.len() - 1] + 8 + r.len());
    }
    (records, offsets)
}

#[test]
fn damage_in_the_middle_with_intact_records_after_is_still_corruption() {
    // (byte within record 2, xor mask, what)
    let cases: [(usize, u8, &str); 4] = [
        (8 + 3, 0x01, "payload bit"),
        (3, 0x40, "length grows, still inside the file"),
        (2, 0x10, "length grows past end of file"),
        (3, 0x01, "length shrinks by one"),
    ];
    for (at, mask, what) in cases {
        let tmp = TempDir::new("middle");
        let (records, offsets) = five_records(&tmp);
        let mut data = fs::read(tmp.seg(1)).expect("read");
        data[offsets[2] + at] ^= mask;
        fs::write(tmp.seg(1), &data).expect("write");
        let (result, seen) = open_partial(tmp.path(), Options::default());
        match result {
            Err(WalError::Corrupt { file, offset, .. }) => {
                assert_eq!((file, offset), (tmp.seg(1), offsets[2] as u64), "{what}")
            }
            other => panic!("{what}: expected Corrupt, got {:?}", other.map(|_| ())),
        }
        assert_eq!(seen, records[..2], "{what}");
        assert_eq!(
            file_len(&tmp.seg(1)),
            data.len() as u64,
            "{what}: untouched"
        );
    }
}

#[test]
fn version_1_segments_replay_and_appends_go_to_a_fresh_version_2_segment() {
    let tmp = TempDir::new("v1");
    let first = vec![b"a".to_vec(), b"bb".to_vec()];
    let second = vec![b"ccc".to_vec()];
    fs::write(tmp.seg(1), segment_bytes_v1(1, &first)).expect("write");
    fs::write(tmp.seg(2), segment_bytes_v1(2, &second)).expect("write");
    let v1_len = file_len(&tmp.seg(2));
    let mut all: Vec<Vec<u8>> = first.iter().chain(&second).cloned().collect();
    {
        let (mut wal, report, seen) = open(tmp.path(), small(1000)).expect("open");
        assert_eq!(seen, all);
        assert_eq!(report.segments, 2);
        assert_eq!(segment_numbers(tmp.path()), [1, 2, 3]);
        assert_eq!(fs::read(tmp.seg(3)).expect("read"), header(3));
        wal.append_batch(&[b"dddd"]).expect("append");
    }
    assert_eq!(
        file_len(&tmp.seg(2)),
        v1_len,
        "a v1 segment is never appended to"
    );
    all.push(b"dddd".to_vec());
    let (_, _, seen) = open(tmp.path(), small(1000)).expect("reopen");
    assert_eq!(seen, all);
}

#[test]
fn a_torn_tail_in_a_version_1_segment_is_repaired() {
    let tmp = TempDir::new("v1-torn");
    let records = vec![b"kept".to_vec(), b"torn away".to_vec()];
    let data = segment_bytes_v1(1, &records);
    fs::write(tmp.seg(1), &data[..data.len() - 4]).expect("write");
    let mut f = OpenOptions::new()
        .append(true)
        .open(tmp.seg(1))
        .expect("open");
    f.write_all(&[0; 50]).expect("zeros");
    drop(f);
    let (mut wal, report, seen) = open(tmp.path(), Options::default()).expect("open");
    assert_eq!(seen, records[..1]);
    let tail = report.torn_tail.expect("torn tail");
    assert_eq!(tail.offset, 16 + 12);
    wal.append_batch(&[b"new"]).expect("append");
    drop(wal);
    let (_, _, seen) = open(tmp.path(), Options::default()).expect("reopen");
    assert_eq!(seen, [b"kept".to_vec(), b"new".to_vec()]);
}
