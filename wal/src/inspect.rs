//! Reading a segment for people (`ringkv dump`): every record that can be
//! found, with its checksum verdict, and every damaged region, in order.
//!
//! This module never modifies anything, never calls back into replay, never
//! panics and never allocates by a length read from the input: whatever the
//! bytes, it returns a description of them.

use byteorder::{BigEndian, ByteOrder};

use crate::record::{self, Chain, MAX_RECORD_BYTES, RECORD_HEADER_LEN};
use crate::seal::{self, SEAL_LEN};
use crate::segment::{
    self, Kind, FORMAT_VERSION_1, FORMAT_VERSION_2, SEGMENT_HEADER_LEN, V1_HEADER_LEN,
    V2_HEADER_LEN,
};

/// Upper bound on checksum work spent searching for the next record after
/// damage, for one whole segment. Past it, the rest of the segment is
/// reported as one damaged region.
const SEARCH_BUDGET: usize = 256 * 1024 * 1024;

/// What a segment file holds, read without repairing anything, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInspection {
    /// The parsed header, or what is wrong with it (records are still
    /// looked for after it).
    pub header: Result<SegmentHeader, String>,
    /// Records and damaged regions, in file order, covering every byte
    /// after the header.
    pub entries: Vec<InspectedEntry>,
}

/// The fields of a segment header a person cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// On-disk format version (1: unchained records, 2: chained, 3: chained
    /// and sealed).
    pub version: u32,
    /// Segment number the header claims (should match the file name).
    pub number: u32,
    /// `Some(N)` for a checkpoint segment: its first N records restate the
    /// whole log before it.
    pub checkpoint_records: Option<u32>,
    /// Version 3: the chain value the segment continues from (the CRC of
    /// the previous segment's seal; 0 for the first segment of a log).
    pub continues: Option<u32>,
    /// The seed of the first record's CRC (the header CRC; 0 in version 1).
    pub first_seed: u32,
}

/// One finding in a segment, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InspectedEntry {
    /// A record whose length was plausible. `crc_ok` false: the checksum failed (payload shown anyway).
    Record {
        /// Byte offset of the record within the file.
        offset: u64,
        /// Payload length from its length field.
        len: u32,
        /// Whether its CRC verified (chained to the record before it).
        crc_ok: bool,
        /// The payload bytes.
        payload: Vec<u8>,
    },
    /// A seal: the segment's end, once the log moved past it.
    Seal {
        /// Byte offset of the seal within the file.
        offset: u64,
        /// Records it says the segment holds.
        records: u64,
        /// The chain value it says the records end with.
        chain: u32,
        /// The segment it names as the next.
        next: u32,
        /// Its CRC field: the chain value the next segment continues from.
        crc: u32,
        /// Whether its CRC verified and its chain value is the one the
        /// records before it end with.
        crc_ok: bool,
    },
    /// Bytes that hold no record that could be found: from offset, this many bytes, and why.
    Damage {
        /// Byte offset of the first damaged byte.
        offset: u64,
        /// Bytes in the damaged region.
        len: u64,
        /// What is wrong (a zero-filled tail says so).
        reason: String,
    },
}

/// The segment number of a file named like a segment (`{number:020}.wal`,
/// number in `1..=u32::MAX`), so a tool can list a WAL directory in order;
/// `None` for any other name.
pub fn segment_number_from_name(name: &str) -> Option<u32> {
    crate::dir::parse_file_name(name)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
}

/// What a segment file holds, read without repairing anything, for people.
///
/// Records are read from the end of the header (16 bytes if the version
/// field says 1, otherwise 28, even when the header is damaged). Each
/// record is checked with the seed rule of its format: in version 2, the
/// CRC field of the record before it (the header CRC field for the first);
/// after a record whose CRC failed, either its stored or its recomputed CRC
/// is accepted as the next seed, so a damaged CRC field costs one record,
/// not the rest of the segment. In version 1, seed 0.
///
/// A record with a plausible length that fits is shown even when its CRC
/// fails, and reading goes on at `offset + 8 + len`, as long as what is
/// there could be a record, zeros, or the end of the file (otherwise its
/// length is the likely damage, and it is treated as below). Any other
/// bytes are damage, and reading resumes at the first later offset where
/// a record verifies seeded with the damaged record's CRC field or with the
/// seed in effect before it; in version 2 also after the first pair of
/// records where the second verifies seeded with the first's CRC field
/// (which re-finds the chain after a lost seed; such a pair could also sit
/// inside a client's payload, which only matters inside a damaged region).
/// A tail of zeros is reported as damage saying "zero-filled tail".
pub fn inspect_segment(data: &[u8]) -> SegmentInspection {
    let parsed = segment::parse_header(data);
    let version_field = data.get(8..12).map(BigEndian::read_u32);
    let (chain, header_len, first_seed, sealable) = match &parsed {
        Ok(header) => (
            header.chain(),
            header.len,
            header.first_seed,
            header.sealable(),
        ),
        Err(_) if version_field == Some(FORMAT_VERSION_1) => {
            (Chain::Unchained, V1_HEADER_LEN as usize, 0, false)
        }
        Err(_) => {
            let (len, sealable) = if version_field == Some(FORMAT_VERSION_2) {
                (V2_HEADER_LEN as usize, false)
            } else {
                (SEGMENT_HEADER_LEN as usize, true)
            };
            let seed = data.get(len - 4..len).map_or(0, BigEndian::read_u32);
            (Chain::Chained, len, seed, sealable)
        }
    };
    let header = parsed.map(|h| SegmentHeader {
        version: h.version,
        number: h.number,
        checkpoint_records: match h.kind {
            Kind::Checkpoint { records } => Some(records),
            Kind::Log => None,
        },
        continues: h.continues,
        first_seed: h.first_seed,
    });
    let entries = inspect_records(
        data,
        header_len.min(data.len()),
        chain,
        first_seed,
        sealable,
    );
    SegmentInspection { header, entries }
}

fn inspect_records(
    data: &[u8],
    start: usize,
    chain: Chain,
    first_seed: u32,
    sealable: bool,
) -> Vec<InspectedEntry> {
    let mut entries = Vec::new();
    let mut budget = SEARCH_BUDGET;
    // Seeds the record at `off` may be continued from.
    let mut seeds = vec![first_seed];
    let mut off = start;
    while off < data.len() {
        let rest = &data[off..];
        if sealable && seal::starts_seal(rest) && rest.len() >= SEAL_LEN {
            let found = inspect_seal(&rest[..SEAL_LEN], off, &seeds);
            if let InspectedEntry::Seal { crc, .. } = found {
                seeds = vec![crc];
            }
            entries.push(found);
            off += SEAL_LEN;
            continue;
        }
        if rest.iter().all(|&b| b == 0) {
            entries.push(damage(off, rest.len(), "zero-filled tail".to_string()));
            break;
        }
        if rest.len() < RECORD_HEADER_LEN {
            entries.push(damage(
                off,
                rest.len(),
                format!(
                    "partial record header: {} of {RECORD_HEADER_LEN} bytes before end of file",
                    rest.len()
                ),
            ));
            break;
        }
        let len = BigEndian::read_u32(&rest[0..4]);
        let stored = BigEndian::read_u32(&rest[4..8]);
        let fits = plausible_fit(rest).is_some();
        let end = off + RECORD_HEADER_LEN + len as usize;
        if fits {
            let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len as usize];
            let crc_ok = seeds
                .iter()
                .any(|&seed| record::checksum(seed, &rest[0..4], payload) == stored);
            // A record whose CRC failed is believed about its length only if
            // what follows could be a record (or is the end, or zeros);
            // otherwise its length is likely the damaged part.
            let after = &data[end..];
            if crc_ok
                || after.is_empty()
                || after.iter().all(|&b| b == 0)
                || plausible_fit(after).is_some()
            {
                let computed = record::checksum(seeds[0], &rest[0..4], payload);
                entries.push(InspectedEntry::Record {
                    offset: off as u64,
                    len,
                    crc_ok,
                    payload: payload.to_vec(),
                });
                seeds = if crc_ok {
                    vec![chain.seed_after(stored)]
                } else {
                    vec![chain.seed_after(stored), chain.seed_after(computed)]
                };
                off = end;
                continue;
            }
        }
        let reason = if fits {
            format!(
                "record of {len} bytes fails its checksum and is not followed by a record \
                 (its length is likely damaged)"
            )
        } else if len == 0 {
            "record length is 0".to_string()
        } else if len as usize > MAX_RECORD_BYTES {
            format!("record length {len} exceeds the maximum of {MAX_RECORD_BYTES} bytes")
        } else {
            format!(
                "record claims {len} payload bytes but only {} remain before end of file",
                rest.len() - RECORD_HEADER_LEN
            )
        };
        let damaged_seed = chain.seed_after(stored);
        let mut candidates = vec![damaged_seed];
        candidates.extend(seeds.iter().copied().filter(|&s| s != damaged_seed));
        // From the next byte: the bytes at `off` were just found to be no
        // record (nor the first of a pair), so starting at `off` finds the
        // same; starting a byte earlier differs only for a record forged
        // to verify across the previous one's last byte. The mutants of
        // this `+ 1` are left standing for that reason.
        match resync(data, off + 1, &candidates, chain, &mut budget) {
            Ok(Some((next, seed))) => {
                entries.push(damage(off, next - off, reason));
                seeds = vec![seed];
                off = next;
            }
            Ok(None) => {
                entries.push(damage(off, rest.len(), reason + "; no later record found"));
                break;
            }
            Err(()) => {
                entries.push(damage(
                    off,
                    rest.len(),
                    reason
                        + &format!(
                            "; search for a later record stopped after {} MiB of checksumming",
                            SEARCH_BUDGET >> 20
                        ),
                ));
                break;
            }
        }
    }
    entries
}

/// The 24 bytes of a seal at `offset`, checked against `seeds` (the chain
/// values the records before it may end with).
fn inspect_seal(bytes: &[u8], offset: usize, seeds: &[u32]) -> InspectedEntry {
    let chain = BigEndian::read_u32(&bytes[16..20]);
    let crc_ok = seal::decode(bytes).is_ok() && seeds.contains(&chain);
    InspectedEntry::Seal {
        offset: offset as u64,
        records: BigEndian::read_u64(&bytes[8..16]),
        chain,
        next: BigEndian::read_u32(&bytes[20..24]),
        crc: BigEndian::read_u32(&bytes[4..8]),
        crc_ok,
    }
}

/// The payload length if `buf` starts with a record header whose length is
/// plausible (1 ..= [`MAX_RECORD_BYTES`]) and whose payload fits in `buf`.
fn plausible_fit(buf: &[u8]) -> Option<usize> {
    let len_field = buf.get(0..4)?;
    let len = BigEndian::read_u32(len_field) as usize;
    let fits =
        len != 0 && len <= MAX_RECORD_BYTES && len <= buf.len() - RECORD_HEADER_LEN.min(buf.len());
    (fits && buf.len() >= RECORD_HEADER_LEN).then_some(len)
}

/// The first offset at or after `from` where reading can resume, and the
/// seed the record there verifies with: a record that verifies seeded with
/// one of `seeds`, or (chained segments) the record after a pair where the
/// second verifies seeded with the first's CRC field, which re-finds the
/// chain when the seed in between was lost. Checksums at most `*budget`
/// payload bytes; `Err(())` when that runs out.
fn resync(
    data: &[u8],
    from: usize,
    seeds: &[u32],
    chain: Chain,
    budget: &mut usize,
) -> Result<Option<(usize, u32)>, ()> {
    for start in from..data.len() {
        let rest = &data[start..];
        let Some(len) = plausible_fit(rest) else {
            continue;
        };
        let stored = BigEndian::read_u32(&rest[4..8]);
        let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
        for &seed in seeds {
            spend(budget, len)?;
            if record::checksum(seed, &rest[0..4], payload) == stored {
                return Ok(Some((start, seed)));
            }
        }
        if chain == Chain::Unchained {
            continue;
        }
        let next = start + RECORD_HEADER_LEN + len;
        let after = &data[next..];
        if let Some(next_len) = plausible_fit(after) {
            spend(budget, next_len)?;
            let next_payload = &after[RECORD_HEADER_LEN..RECORD_HEADER_LEN + next_len];
            let next_stored = BigEndian::read_u32(&after[4..8]);
            let seed = chain.seed_after(stored);
            if record::checksum(seed, &after[0..4], next_payload) == next_stored {
                return Ok(Some((next, seed)));
            }
        }
    }
    Ok(None)
}

fn spend(budget: &mut usize, bytes: usize) -> Result<(), ()> {
    *budget = budget.checked_sub(bytes).ok_or(())?;
    Ok(())
}

fn damage(offset: usize, len: usize, reason: String) -> InspectedEntry {
    InspectedEntry::Damage {
        offset: offset as u64,
        len: len as u64,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::header_bytes;

    fn segment_with(kind: Kind, payloads: &[&[u8]]) -> Vec<u8> {
        let header = header_bytes(9, kind, 0);
        let mut seed = crc32fast::hash(&header[..28]);
        let mut data = header.to_vec();
        for p in payloads {
            seed = record::encode_into(seed, p, &mut data);
        }
        data
    }

    fn offsets(entries: &[InspectedEntry]) -> Vec<(u64, bool)> {
        entries
            .iter()
            .map(|e| match e {
                InspectedEntry::Record { offset, crc_ok, .. } => (*offset, *crc_ok),
                InspectedEntry::Damage { offset, .. } => (*offset, false),
                InspectedEntry::Seal { offset, crc_ok, .. } => (*offset, *crc_ok),
            })
            .collect()
    }

    #[test]
    fn a_clean_checkpoint_segment_is_listed_record_by_record() {
        let data = segment_with(Kind::Checkpoint { records: 2 }, &[b"one", b"two"]);
        let found = inspect_segment(&data);
        assert_eq!(
            found.header,
            Ok(SegmentHeader {
                version: 3,
                number: 9,
                checkpoint_records: Some(2),
                continues: Some(0),
                first_seed: crc32fast::hash(&data[..28]),
            })
        );
        assert_eq!(
            found.entries,
            [
                InspectedEntry::Record {
                    offset: 32,
                    len: 3,
                    crc_ok: true,
                    payload: b"one".to_vec()
                },
                InspectedEntry::Record {
                    offset: 43,
                    len: 3,
                    crc_ok: true,
                    payload: b"two".to_vec()
                },
            ]
        );
    }

    #[test]
    fn damage_is_marked_and_reading_goes_on() {
        let clean = segment_with(Kind::Log, &[b"aaaa", b"bbbb", b"cccc", b"dddd"]);
        // Payload bit: bad CRC, next record still verifies.
        let mut data = clean.clone();
        data[32 + 12 + 9] ^= 1;
        assert_eq!(
            offsets(&inspect_segment(&data).entries),
            [(32, true), (44, false), (56, true), (68, true)]
        );
        // CRC field bit: that record fails, the next one still verifies.
        let mut data = clean.clone();
        data[32 + 12 + 5] ^= 1;
        assert_eq!(
            offsets(&inspect_segment(&data).entries),
            [(32, true), (44, false), (56, true), (68, true)]
        );
        // Implausible length: damage up to the next record that verifies.
        let mut data = clean.clone();
        data[32 + 12] = 0xff;
        let entries = inspect_segment(&data).entries;
        assert_eq!(
            offsets(&entries),
            [(32, true), (44, false), (56, true), (68, true)]
        );
        assert!(matches!(entries[1], InspectedEntry::Damage { len: 12, .. }));
        // A length that still fits but is wrong: a bad-CRC record, then
        // damage, then the genuine next record.
        let mut data = clean.clone();
        data[32 + 12 + 3] = 2;
        let entries = inspect_segment(&data).entries;
        assert_eq!(
            entries
                .last()
                .map(|e| matches!(e, InspectedEntry::Record { crc_ok: true, .. })),
            Some(true)
        );
        assert!(entries.iter().any(|e| matches!(
            e,
            InspectedEntry::Record {
                offset: 56,
                crc_ok: true,
                ..
            }
        )));
        // A torn last record followed by zeros: its length still fits, so
        // it shows as a record with a bad CRC, then the zeros.
        let mut data = clean[..clean.len() - 2].to_vec();
        data.extend_from_slice(&[0; 40]);
        let entries = inspect_segment(&data).entries;
        assert_eq!(
            offsets(&entries),
            [(32, true), (44, true), (56, true), (68, false), (80, false)]
        );
        assert!(matches!(
            &entries[4],
            InspectedEntry::Damage {
                offset: 80,
                len: 38,
                ..
            }
        ));
        // Cut inside the payload: damage to the end.
        let data = clean[..clean.len() - 2].to_vec();
        let entries = inspect_segment(&data).entries;
        assert!(matches!(
            &entries[3],
            InspectedEntry::Damage {
                offset: 68,
                len: 10,
                ..
            }
        ));
        let mut data = clean.clone();
        data.extend_from_slice(&[0; 100]);
        match inspect_segment(&data).entries.last() {
            Some(InspectedEntry::Damage {
                offset: 80,
                len: 100,
                reason,
            }) => {
                assert!(reason.contains("zero-filled"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    fn reason_of(entry: &InspectedEntry) -> &str {
        match entry {
            InspectedEntry::Damage { reason, .. } => reason,
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn each_kind_of_bad_length_is_named() {
        let clean = segment_with(Kind::Log, &[b"aaaa"]);
        let mut lengths = [
            (
                vec![0, 0, 0, 5, 1, 2, 3, 4],
                "claims 5 payload bytes but only 0",
            ),
            (vec![0, 0, 0, 0, 1, 2, 3, 4, 9], "record length is 0"),
            (
                vec![0x04, 0, 0, 0, 1, 2, 3, 4, 9],
                "claims 67108864 payload bytes",
            ),
            (vec![0x04, 0, 0, 1, 1, 2, 3, 4, 9], "exceeds the maximum"),
            (vec![0, 0, 5], "partial record header: 3 of 8"),
        ];
        for (tail, expected) in &mut lengths {
            let mut data = clean.clone();
            data.append(tail);
            let entries = inspect_segment(&data).entries;
            assert_eq!(entries.len(), 2, "{expected}");
            assert!(reason_of(&entries[1]).contains(*expected), "{entries:?}");
        }
    }

    #[test]
    fn a_seal_is_listed_and_what_follows_it_too() {
        let mut data = segment_with(Kind::Log, &[b"aaaa"]);
        let chain = u32::from_be_bytes(data[36..40].try_into().expect("4 bytes"));
        let (seal, crc) = crate::seal::Seal {
            records: 1,
            chain,
            next: 10,
        }
        .encode();
        data.extend_from_slice(&seal);
        // Bytes after a seal are not the log's, but they are shown.
        record::encode_into(crc, b"after", &mut data);
        let entries = inspect_segment(&data).entries;
        assert_eq!(
            entries[1],
            InspectedEntry::Seal {
                offset: 44,
                records: 1,
                chain,
                next: 10,
                crc,
                crc_ok: true
            }
        );
        assert_eq!(offsets(&entries), [(32, true), (44, true), (68, true)]);
        // A seal whose chain value is not the records' is not ok.
        let mut data2 = segment_with(Kind::Log, &[b"aaaa"]);
        let (other, _) = crate::seal::Seal {
            records: 1,
            chain: chain ^ 1,
            next: 10,
        }
        .encode();
        data2.extend_from_slice(&other);
        assert_eq!(
            offsets(&inspect_segment(&data2).entries),
            [(32, true), (44, false)]
        );
    }

    #[test]
    fn bytes_inserted_between_records_cost_no_record() {
        // The record after the garbage continues from the record before it
        // (the seed in effect before the damage), not from the garbage's
        // CRC field.
        let clean = segment_with(Kind::Log, &[b"aaaa", b"bbbb", b"cccc"]);
        let mut data = clean[..44].to_vec();
        data.extend_from_slice(&[0x7F, 0, 0, 0, 9, 9, 9, 9]);
        data.extend_from_slice(&clean[44..]);
        assert_eq!(
            offsets(&inspect_segment(&data).entries),
            [(32, true), (44, false), (52, true), (64, true)]
        );
    }

    #[test]
    fn a_lost_seed_is_found_again_after_a_pair_of_records() {
        // Record 2's length and CRC field are both garbage: record 3 was
        // seeded with a CRC nobody knows any more, so only the pair
        // (3, 4) re-finds the chain, at record 4.
        let clean = segment_with(Kind::Log, &[b"aaaa", b"bbbb", b"cccc", b"dddd", b"eeee"]);
        let mut data = clean.clone();
        data[44..52].copy_from_slice(&[0x7F, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            offsets(&inspect_segment(&data).entries),
            [(32, true), (44, false), (68, true), (80, true)]
        );
        // In version 1 there is no chain to re-find: any record that
        // verifies unseeded is the next one.
        let mut v1 = b"RKVWAL\r\n\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for p in [b"aaaa", b"bbbb", b"cccc"] {
            record::encode_into(0, p, &mut v1);
        }
        v1[28..36].copy_from_slice(&[0x7F, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            offsets(&inspect_segment(&v1).entries),
            [(16, true), (28, false), (40, true)]
        );
    }

    #[test]
    fn the_search_after_damage_stops_at_its_budget() {
        // Every fourth offset claims a 4096-byte record that fits: ruling
        // them all out would cost more than 256 MiB of checksumming.
        let mut data = segment_with(Kind::Log, &[]);
        data.extend_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]);
        for _ in 0..40_000 {
            data.extend_from_slice(&[0, 0, 0x10, 0]);
        }
        data.extend_from_slice(&[1; 5000]);
        let entries = inspect_segment(&data).entries;
        assert_eq!(entries.len(), 1);
        assert!(
            reason_of(&entries[0]).contains("stopped after 256 MiB"),
            "{entries:?}"
        );
    }

    #[test]
    fn the_search_after_damage_may_checksum_megabytes() {
        // Garbage, then 2000 bytes where every fourth offset claims a
        // 4096-byte record that fits (about 2 MiB of checksumming to rule
        // them out), then a record of the chain: it is found.
        let mut data = segment_with(Kind::Log, &[]);
        let seed = crc32fast::hash(&data[..28]);
        data.extend_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]);
        for _ in 0..500 {
            data.extend_from_slice(&[0, 0, 0x10, 0]);
        }
        let at = data.len() as u64;
        record::encode_into(seed, &[7; 5000], &mut data);
        let entries = inspect_segment(&data).entries;
        assert_eq!(offsets(&entries), [(32, false), (at, true)], "{entries:?}");
    }

    #[test]
    fn a_damaged_header_is_reported_and_records_are_still_read() {
        let mut data = segment_with(Kind::Log, &[b"one", b"two"]);
        data[0] = b'X';
        let found = inspect_segment(&data);
        assert!(found.header.is_err());
        assert_eq!(offsets(&found.entries), [(32, true), (43, true)]);
        // Version 1: unchained, 16-byte header.
        let mut v1 = b"RKVWAL\r\n\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        record::encode_into(0, b"old", &mut v1);
        let found = inspect_segment(&v1);
        assert_eq!(found.header.map(|h| h.version), Ok(1));
        assert_eq!(offsets(&found.entries), [(16, true)]);
    }

    #[test]
    fn names_give_numbers() {
        assert_eq!(
            segment_number_from_name("00000000000000000042.wal"),
            Some(42)
        );
        assert_eq!(segment_number_from_name("00000000000000000000.wal"), None);
        assert_eq!(segment_number_from_name("99999999999999999999.wal"), None);
        assert_eq!(segment_number_from_name("LOCK"), None);
    }
}
