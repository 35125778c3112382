//! Listing a segment's body entry by entry: intact records and seals as
//! the decoder finds them, and each kind of damage shown the way a person
//! can use it (a record whose CRC failed, with its payload, when its length
//! is believable; a seal that is not the one needed; a zero-filled tail; a
//! damaged region, after which `resync` finds where to go on).

use std::ops::ControlFlow;

use super::resync::{resync_after, SEARCH_BUDGET};
use super::InspectedEntry;
use crate::decode::{Damage, Entry, Layout, Reader};
use crate::record::{self, Damage as RecordDamage, RECORD_HEADER_LEN};
use crate::seal::{self, Seal, SealDamage, SEAL_LEN};

/// Every entry after the header, in file order, covering every byte.
pub(super) fn inspect_records(data: &[u8], layout: Layout) -> Vec<InspectedEntry> {
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

/// A damaged region of `len` bytes at `offset`.
pub(super) fn damaged_region(offset: usize, len: usize, reason: String) -> InspectedEntry {
    InspectedEntry::Damage {
        offset: offset as u64,
        len: len as u64,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::super::inspect_segment;
    use super::super::tests::{offsets, reason_of, segment_with};
    use super::*;
    use crate::header::Kind;

    fn four_records() -> Vec<u8> {
        segment_with(Kind::Log, &[b"aaaa", b"bbbb", b"cccc", b"dddd"])
    }

    #[test]
    fn a_bad_checksum_costs_one_record() {
        let clean = four_records();
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
    }

    #[test]
    fn a_damaged_length_costs_a_region() {
        let clean = four_records();
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
    }

    #[test]
    fn a_torn_or_zero_filled_end_is_damage_to_the_end() {
        let clean = four_records();
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
    fn only_in_version_3_can_a_seal_follow_a_damaged_record() {
        // A version 2 segment: one record, its payload hit, then bytes
        // starting with the seal marker. Version 2 has no seals, so those
        // bytes cannot be what follows the record: its length is taken for
        // the damage (in version 3 the record would be listed, crc_ok
        // false, as in the test above).
        let mut data = crate::header::header_bytes(9, Kind::Log, 0)[..24].to_vec();
        data[11] = 2;
        let seed = crc32fast::hash(&data);
        data.extend_from_slice(&seed.to_be_bytes());
        record::encode_into(seed, b"aaaa", &mut data);
        data.extend_from_slice(&[0xFF; 24]);
        data[28 + 9] ^= 1;
        let entries = inspect_segment(&data).entries;
        assert!(
            matches!(entries[0], InspectedEntry::Damage { offset: 28, .. }),
            "{entries:?}"
        );
    }
}
