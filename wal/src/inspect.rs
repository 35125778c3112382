//! Reading a segment for people (`ringkv dump`): every record that can be
//! found, with its checksum verdict, and every damaged region, in order.
//! What the bytes are is decided by `decode`, the decoder replay uses too;
//! this module only decides how to show damage and where reading goes on
//! after it, which replay never does.
//!
//! This module never modifies anything, never calls back into replay, never
//! panics and never allocates by a length read from the input: whatever the
//! bytes, it returns a description of them.

use std::ops::ControlFlow;

use byteorder::{BigEndian, ByteOrder};

use crate::decode::{Damage, Entry, Layout, Reader};
use crate::header::{
    self, Kind, FORMAT_VERSION_1, FORMAT_VERSION_2, SEGMENT_HEADER_LEN, V1_HEADER_LEN,
    V2_HEADER_LEN,
};
use crate::record::{self, Chain, Damage as RecordDamage, RECORD_HEADER_LEN};
use crate::seal::{self, Seal, SealDamage, SEAL_LEN};

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
        /// Whether it is the seal the records before it call for: its CRC
        /// verifies, it names the segment after this one (when the header
        /// is readable), and its chain value and count are those of the
        /// records before it (the count is not checked after damage).
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
/// field says 1, 28 if it says 2, otherwise 32, even when the header is
/// damaged), through the same decoder replay uses, so an entry listed
/// intact is exactly what replay would accept there. Each record is checked
/// with the seed rule of its format: in versions 2 and 3, the CRC field of
/// the record before it (the header CRC field for the first); after a
/// record whose CRC failed, either its stored or its recomputed CRC is
/// accepted as the next seed, so a damaged CRC field costs one record, not
/// the rest of the segment. In version 1, seed 0.
///
/// A record with a plausible length that fits is shown even when its CRC
/// fails, and reading goes on at `offset + 8 + len`, as long as what is
/// there could be a record, a seal, zeros, or the end of the file
/// (otherwise its length is the likely damage, and it is treated as below).
/// A seal is listed with `crc_ok` saying whether it is the seal the records
/// before it call for; after one whose CRC verifies, the rest of the file
/// is damage ("bytes after the seal"). Any other bytes are damage, and
/// reading resumes at the first later offset where a record verifies
/// seeded with the damaged record's CRC field or with the seed in effect
/// before it; in versions 2 and 3 also after the first pair of records
/// where the second verifies seeded with the first's CRC field (which
/// re-finds the chain after a lost seed; such a pair could also sit inside
/// a client's payload, which only matters inside a damaged region). A tail
/// of zeros is reported as damage saying "zero-filled tail".
pub fn inspect_segment(data: &[u8]) -> SegmentInspection {
    let parsed = header::parse_header(data);
    let layout = match &parsed {
        Ok(header) => Layout::of(header),
        Err(_) => guessed_layout(data),
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
    let entries = inspect_records(data, layout);
    SegmentInspection { header, entries }
}

/// Where the records of a segment with a damaged header are looked for:
/// the layout of the version its version field names (version 3 when that
/// is unreadable too), seeded with whatever is where the header CRC would
/// be. The segment's number is not trusted, so a seal's is not checked.
fn guessed_layout(data: &[u8]) -> Layout {
    let (len, chain, sealable) = match data.get(8..12).map(BigEndian::read_u32) {
        Some(FORMAT_VERSION_1) => (V1_HEADER_LEN as usize, Chain::Unchained, false),
        Some(FORMAT_VERSION_2) => (V2_HEADER_LEN as usize, Chain::Chained, false),
        _ => (SEGMENT_HEADER_LEN as usize, Chain::Chained, true),
    };
    let first_seed = match chain {
        Chain::Unchained => 0,
        Chain::Chained => data.get(len - 4..len).map_or(0, BigEndian::read_u32),
    };
    Layout {
        start: len,
        chain,
        first_seed,
        sealable,
        number: None,
    }
}

/// Every entry after the header, in file order, covering every byte.
fn inspect_records(data: &[u8], layout: Layout) -> Vec<InspectedEntry> {
    let mut reader = Reader::new(data, layout);
    let mut budget = SEARCH_BUDGET;
    let mut entries = Vec::new();
    while let Some(next) = reader.next_entry() {
        let (entry, flow) = match next {
            Ok(intact) => (intact_entry(intact), ControlFlow::Continue(())),
            Err(damage) => damaged_entry(&mut reader, damage, &mut budget),
        };
        entries.push(entry);
        if flow.is_break() {
            break;
        }
    }
    entries
}

fn intact_entry(entry: Entry<'_>) -> InspectedEntry {
    match entry {
        Entry::Record {
            offset, payload, ..
        } => InspectedEntry::Record {
            offset: offset as u64,
            // At most MAX_RECORD_BYTES, which fits in a u32.
            len: payload.len() as u32,
            crc_ok: true,
            payload: payload.to_vec(),
        },
        Entry::Seal(found) => seal_entry(found.offset, found.seal, found.crc, true),
    }
}

/// How damage at the reader's offset is shown, and whether reading goes
/// on (the reader is moved to where it does).
fn damaged_entry(
    reader: &mut Reader<'_>,
    damage: Damage,
    budget: &mut usize,
) -> (InspectedEntry, ControlFlow<()>) {
    let data = reader.data();
    let off = reader.offset();
    let rest = &data[off..];
    match damage {
        Damage::Seal(seal_damage) => damaged_seal(reader, seal_damage),
        Damage::AfterSeal { bytes } => (
            damaged_region(off, bytes, damage.describe()),
            ControlFlow::Break(()),
        ),
        Damage::Record(_) if rest.iter().all(|&b| b == 0) => (
            damaged_region(off, rest.len(), "zero-filled tail".to_string()),
            ControlFlow::Break(()),
        ),
        Damage::Record(RecordDamage::BadChecksum { len, .. })
            if could_follow(reader, off + RECORD_HEADER_LEN + len as usize) =>
        {
            let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len as usize];
            reader.skip_by_length(&damage);
            let entry = InspectedEntry::Record {
                offset: off as u64,
                len,
                crc_ok: false,
                payload: payload.to_vec(),
            };
            (entry, ControlFlow::Continue(()))
        }
        Damage::Record(RecordDamage::BadChecksum { len, .. }) => {
            let reason = format!(
                "record of {len} bytes fails its checksum and is not followed by a record \
                 (its length is likely damaged)"
            );
            resync_after(reader, &damage, reason, budget)
        }
        Damage::Record(_) => resync_after(reader, &damage, damage.describe(), budget),
    }
}

/// A record whose CRC failed is believed about its length only if what
/// follows it could come next in the segment: the end of the file, zeros,
/// a record that fits, or a seal. Otherwise its length is likely the
/// damaged part.
fn could_follow(reader: &Reader<'_>, at: usize) -> bool {
    let after = &reader.data()[at..];
    after.iter().all(|&b| b == 0)
        || record::plausible_len(after).is_some()
        || (reader.sealable() && seal::starts_seal(after))
}

/// A seal that is not the one the segment needs. One whose CRC verifies is
/// a seal all the same (what follows it is after the seal); after one
/// whose CRC fails, reading goes on right after it, continuing from its
/// CRC field; a partial one runs to the end of the file.
fn damaged_seal(reader: &mut Reader<'_>, damage: SealDamage) -> (InspectedEntry, ControlFlow<()>) {
    let off = reader.offset();
    match damage {
        SealDamage::Partial { available } => (
            InspectedEntry::Damage {
                offset: off as u64,
                len: available as u64,
                reason: damage.describe(),
            },
            ControlFlow::Break(()),
        ),
        SealDamage::BadChecksum { seal, stored, .. } => {
            reader.resume_at(off + SEAL_LEN, stored);
            (
                seal_entry(off, seal, stored, false),
                ControlFlow::Continue(()),
            )
        }
        SealDamage::WrongNext { found, .. } | SealDamage::Mismatch { found, .. } => {
            reader.accept_seal(found);
            (
                seal_entry(found.offset, found.seal, found.crc, false),
                ControlFlow::Continue(()),
            )
        }
    }
}

fn seal_entry(offset: usize, seal: Seal, crc: u32, crc_ok: bool) -> InspectedEntry {
    InspectedEntry::Seal {
        offset: offset as u64,
        records: seal.records,
        chain: seal.chain,
        next: seal.next,
        crc,
        crc_ok,
    }
}

/// Damage of unknown extent at the reader's offset: a region up to the
/// first later offset where the chain can be picked up again (the reader
/// resumes there), or to the end of the file.
fn resync_after(
    reader: &mut Reader<'_>,
    damaged: &Damage,
    reason: String,
    budget: &mut usize,
) -> (InspectedEntry, ControlFlow<()>) {
    let data = reader.data();
    let off = reader.offset();
    let to_end = data.len() - off;
    // Fewer than 8 bytes: no CRC field, and no room for a record.
    let Some(stored) = damaged.stored_crc() else {
        return (damaged_region(off, to_end, reason), ControlFlow::Break(()));
    };
    let chain = reader.chain();
    let damaged_seed = chain.seed_after(stored);
    let mut candidates = vec![damaged_seed];
    candidates.extend(
        reader
            .seeds()
            .iter()
            .copied()
            .filter(|&s| s != damaged_seed),
    );
    // From the next byte: the bytes at `off` were just found to be no
    // record (nor the first of a pair), so starting at `off` finds the
    // same; starting a byte earlier differs only for a record forged
    // to verify across the previous one's last byte. The mutants of
    // this `+ 1` are left standing for that reason.
    match resync(data, off + 1, &candidates, chain, budget) {
        Ok(Some((next, seed))) => {
            reader.resume_at(next, seed);
            (
                damaged_region(off, next - off, reason),
                ControlFlow::Continue(()),
            )
        }
        Ok(None) => (
            damaged_region(off, to_end, reason + "; no later record found"),
            ControlFlow::Break(()),
        ),
        Err(()) => (
            damaged_region(
                off,
                to_end,
                reason
                    + &format!(
                        "; search for a later record stopped after {} MiB of checksumming",
                        SEARCH_BUDGET >> 20
                    ),
            ),
            ControlFlow::Break(()),
        ),
    }
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
        if let Some(seed) = record::verifying_seed(&data[start..], seeds, budget)? {
            return Ok(Some((start, seed)));
        }
        if chain == Chain::Chained {
            if let Some(found) = chained_pair(data, start, chain, budget)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// If a record that fits starts at `start` and the one after it verifies
/// seeded with its CRC field: where that second record starts, and the seed.
fn chained_pair(
    data: &[u8],
    start: usize,
    chain: Chain,
    budget: &mut usize,
) -> Result<Option<(usize, u32)>, ()> {
    let rest = &data[start..];
    let Some(len) = record::plausible_len(rest) else {
        return Ok(None);
    };
    let next = start + RECORD_HEADER_LEN + len;
    let seed = chain.seed_after(BigEndian::read_u32(&rest[4..8]));
    let found = record::verifying_seed(&data[next..], &[seed], budget)?;
    Ok(found.map(|_| (next, seed)))
}

fn damaged_region(offset: usize, len: usize, reason: String) -> InspectedEntry {
    InspectedEntry::Damage {
        offset: offset as u64,
        len: len as u64,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::header_bytes;

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
    fn a_seal_is_listed_and_what_follows_it_is_damage() {
        let mut data = segment_with(Kind::Log, &[b"aaaa"]);
        let chain = u32::from_be_bytes(data[36..40].try_into().expect("4 bytes"));
        let (seal, crc) = crate::seal::Seal {
            records: 1,
            chain,
            next: 10,
        }
        .encode();
        data.extend_from_slice(&seal);
        // Bytes after a seal are never the log's, even a record chained
        // to it: replay refuses them, and so they are damage here too.
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
        assert_eq!(offsets(&entries), [(32, true), (44, true), (68, false)]);
        assert_eq!(reason_of(&entries[2]), "13 bytes after the seal");
    }

    #[test]
    fn a_seal_must_be_the_one_the_records_call_for() {
        let records = segment_with(Kind::Log, &[b"aaaa"]);
        let chain = u32::from_be_bytes(records[36..40].try_into().expect("4 bytes"));
        let sealed = |records_field: u64, chain: u32, next: u32| {
            let mut data = records.clone();
            let seal = crate::seal::Seal {
                records: records_field,
                chain,
                next,
            };
            data.extend_from_slice(&seal.encode().0);
            offsets(&inspect_segment(&data).entries)
        };
        assert_eq!(sealed(1, chain, 10), [(32, true), (44, true)]);
        // Another chain value, another count, another next segment.
        assert_eq!(sealed(1, chain ^ 1, 10), [(32, true), (44, false)]);
        assert_eq!(sealed(2, chain, 10), [(32, true), (44, false)]);
        assert_eq!(sealed(1, chain, 11), [(32, true), (44, false)]);
        // A cut seal is a partial seal, not a record with a huge length.
        let mut cut = records.clone();
        cut.extend_from_slice(&[0xFF; 10]);
        let entries = inspect_segment(&cut).entries;
        assert_eq!(
            reason_of(&entries[1]),
            "partial seal: 10 of 24 bytes before end of file"
        );
    }

    #[test]
    fn a_record_that_fails_its_checksum_before_a_seal_is_read_past() {
        // The record's length is believed, since a seal follows it, and the
        // seal continues from its stored CRC, as replay with skip_corrupt
        // reads it.
        let mut data = segment_with(Kind::Log, &[b"aaaa", b"bbbb"]);
        let chain = u32::from_be_bytes(data[48..52].try_into().expect("4 bytes"));
        let seal = crate::seal::Seal {
            records: 2,
            chain,
            next: 10,
        };
        data.extend_from_slice(&seal.encode().0);
        data[44 + 9] ^= 1;
        assert_eq!(
            offsets(&inspect_segment(&data).entries),
            [(32, true), (44, false), (56, true)]
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
