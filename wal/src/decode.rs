//! The one decoder of a segment's body: the records after its header, and
//! the seal that may end it. Replay (recovery) and inspection (`ringkv
//! dump`) both walk a segment through [`Reader`], so they cannot disagree
//! about what a byte sequence is: an intact record, an intact seal, or
//! which kind of damage (a partial header, a garbage length, a payload
//! running past end of file, a checksum mismatch, a partial or damaged
//! seal, a seal that does not end the records before it, bytes after a
//! seal).
//!
//! This module says what bytes *are*, never what damage *means*: whether
//! it is a torn tail, corruption to refuse or a region to skip is replay's
//! policy, and how to show it is inspection's. It never touches files.

use crate::header::Header;
use crate::record::{self, Chain, Damage as RecordDamage, RECORD_HEADER_LEN};
use crate::seal::{self, FoundSeal, SealDamage, SEAL_LEN};

/// How to read the body of one segment: what its header says, or (for a
/// damaged header, in inspection) a best guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Offset of the first record (the header's length).
    pub start: usize,
    /// How records are linked.
    pub chain: Chain,
    /// Seed of the first record's CRC.
    pub first_seed: u32,
    /// Whether a seal may end the segment (version 3).
    pub sealable: bool,
    /// The segment's number, which its seal must name plus one; `None`
    /// when the header is unreadable (the seal's next is then not checked).
    pub number: Option<u32>,
}

impl Layout {
    /// The layout a valid header gives.
    pub(crate) fn of(header: &Header) -> Layout {
        Layout {
            start: header.len,
            chain: header.chain(),
            first_seed: header.first_seed,
            sealable: header.sealable(),
            number: Some(header.number),
        }
    }
}

/// Something intact found in a segment's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    /// A record that verifies, continuing the chain.
    Record {
        offset: usize,
        payload: &'a [u8],
        /// Its CRC field.
        crc: u32,
    },
    /// The seal the records before it call for.
    Seal(FoundSeal),
}

/// Why the bytes at the reader's offset are neither an intact record nor
/// the seal the segment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Not a record (see [`record::Damage`]).
    Record(RecordDamage),
    /// A seal marker, but not the seal the records before it call for.
    Seal(SealDamage),
    /// Bytes after the seal, which ends the segment: `bytes` of them.
    AfterSeal { bytes: usize },
}

impl Damage {
    /// Bytes the damaged record claims, when its extent is known and lies
    /// within the data (a record that failed only its checksum).
    pub(crate) fn in_file_extent(&self) -> Option<usize> {
        match self {
            Damage::Record(damage) => damage.in_file_extent(),
            Damage::Seal(_) | Damage::AfterSeal { .. } => None,
        }
    }

    /// The damaged record's CRC field, when its 8 header bytes are present.
    pub(crate) fn stored_crc(&self) -> Option<u32> {
        match self {
            Damage::Record(damage) => damage.stored_crc(),
            Damage::Seal(_) | Damage::AfterSeal { .. } => None,
        }
    }

    /// Human-readable reason used in errors, reports and dumps.
    pub(crate) fn describe(&self) -> String {
        match self {
            Damage::Record(damage) => damage.describe(),
            Damage::Seal(damage) => damage.describe(),
            Damage::AfterSeal { bytes } => format!("{bytes} bytes after the seal"),
        }
    }
}

/// Walks the body of one segment, entry by entry, keeping the chain state:
/// the seeds the next record may continue from, the records read so far
/// (a seal must count them) and whether the seal was read.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    layout: Layout,
    off: usize,
    /// Seeds the record at `off` may continue from: one, except right after
    /// a record skipped by its length (its stored or its recomputed CRC).
    seeds: Vec<u32>,
    /// Seed an append would use: the stored CRC field of the last record
    /// read or skipped (the header's seed while there is none).
    next_seed: u32,
    records: u64,
    /// Offset just past the last record or skipped region: where a seal goes.
    body_end: usize,
    /// Bytes were skipped, so a seal's count cannot be checked.
    lost: bool,
    /// A seal was read: anything after it is damage.
    sealed: bool,
}

impl<'a> Reader<'a> {
    /// A reader at the first record of `data` (the whole file).
    pub(crate) fn new(data: &'a [u8], layout: Layout) -> Reader<'a> {
        let start = layout.start.min(data.len());
        Reader {
            data,
            layout,
            off: start,
            seeds: vec![layout.first_seed],
            next_seed: layout.first_seed,
            records: 0,
            body_end: start,
            lost: false,
            sealed: false,
        }
    }

    /// The whole file being read.
    pub(crate) fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Offset of the next thing to decode (of the damage just returned).
    pub(crate) fn offset(&self) -> usize {
        self.off
    }

    /// Intact records read so far.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// The seed the next appended record would use.
    pub(crate) fn next_seed(&self) -> u32 {
        self.next_seed
    }

    /// The seeds the record at the current offset may continue from.
    pub(crate) fn seeds(&self) -> &[u32] {
        &self.seeds
    }

    /// Offset just past the last record or skipped region.
    pub(crate) fn body_end(&self) -> usize {
        self.body_end
    }

    /// How this segment's records are linked.
    pub(crate) fn chain(&self) -> Chain {
        self.layout.chain
    }

    /// Whether a seal may end this segment.
    pub(crate) fn sealable(&self) -> bool {
        self.layout.sealable
    }

    /// Decodes what starts at the current offset; `None` at end of file.
    /// An intact record or seal is consumed; on damage the reader stays
    /// where it is, for the caller to stop, [`skip_by_length`](Self::skip_by_length),
    /// [`accept_seal`](Self::accept_seal) or [`resume_at`](Self::resume_at).
    pub(crate) fn next_entry(&mut self) -> Option<Result<Entry<'a>, Damage>> {
        let data = self.data;
        let rest = data.get(self.off..).filter(|rest| !rest.is_empty())?;
        if self.sealed {
            return Some(Err(Damage::AfterSeal { bytes: rest.len() }));
        }
        if self.layout.sealable && seal::starts_seal(rest) {
            return Some(self.decode_seal(rest).map(Entry::Seal));
        }
        Some(self.decode_record(rest))
    }

    fn decode_record(&mut self, rest: &'a [u8]) -> Result<Entry<'a>, Damage> {
        let found = record::decode_any(rest, &self.seeds).map_err(Damage::Record)?;
        let offset = self.off;
        self.records += 1;
        self.next_seed = self.layout.chain.seed_after(found.crc);
        self.seeds = vec![self.next_seed];
        self.off += found.size;
        self.body_end = self.off;
        Ok(Entry::Record {
            offset,
            payload: found.payload,
            crc: found.crc,
        })
    }

    /// A seal is the one the segment needs when its CRC verifies, it names
    /// the segment after this one, its chain value is one the records
    /// before it may end with, and (unless bytes were skipped) it counts
    /// them.
    fn decode_seal(&mut self, rest: &[u8]) -> Result<FoundSeal, Damage> {
        let (found_seal, crc) = seal::decode(rest).map_err(Damage::Seal)?;
        let found = FoundSeal {
            offset: self.off,
            seal: found_seal,
            crc,
        };
        if let Some(number) = self.layout.number {
            if found_seal.next != number.wrapping_add(1) {
                return Err(Damage::Seal(SealDamage::WrongNext { found, number }));
            }
        }
        if !self.seeds.contains(&found_seal.chain)
            || (!self.lost && found_seal.records != self.records)
        {
            return Err(Damage::Seal(SealDamage::Mismatch {
                found,
                records: self.records,
                chain: self.next_seed,
            }));
        }
        self.accept_seal(found);
        Ok(found)
    }

    /// Takes `found` as the segment's seal even though it failed a check
    /// other than its CRC: everything after it is then damage.
    pub(crate) fn accept_seal(&mut self, found: FoundSeal) {
        self.sealed = true;
        self.off = found.offset + SEAL_LEN;
    }

    /// Steps over a damaged record by its own length when that is known
    /// (it failed only its checksum): the next record may then continue
    /// from its stored or its recomputed CRC, so a damaged CRC field costs
    /// one record. Returns false, without moving, for damage whose extent
    /// is unknown.
    pub(crate) fn skip_by_length(&mut self, damage: &Damage) -> bool {
        let Damage::Record(RecordDamage::BadChecksum {
            len,
            stored,
            computed,
        }) = *damage
        else {
            return false;
        };
        let chain = self.layout.chain;
        self.seeds = vec![chain.seed_after(stored), chain.seed_after(computed)];
        self.next_seed = chain.seed_after(stored);
        self.off += RECORD_HEADER_LEN + len as usize;
        self.body_end = self.off;
        self.lost = true;
        true
    }

    /// Goes on at `offset` (after damage whose extent is unknown), where
    /// the record continues from `seed`.
    pub(crate) fn resume_at(&mut self, offset: usize, seed: u32) {
        self.off = offset;
        self.seeds = vec![seed];
        self.next_seed = seed;
        self.lost = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{header_bytes, parse_header, Kind};
    use crate::seal::Seal;

    fn segment(payloads: &[&[u8]]) -> (Vec<u8>, Layout) {
        let mut data = header_bytes(4, Kind::Log, 0).to_vec();
        let layout = Layout::of(&parse_header(&data).expect("valid"));
        let mut seed = layout.first_seed;
        for p in payloads {
            seed = record::encode_into(seed, p, &mut data);
        }
        (data, layout)
    }

    fn sealed(payloads: &[&[u8]], seal: impl Fn(u64, u32) -> Seal) -> (Vec<u8>, Layout) {
        let (mut data, layout) = segment(payloads);
        let mut reader = Reader::new(&data, layout);
        while let Some(Ok(_)) = reader.next_entry() {}
        let (bytes, _) = seal(reader.records(), reader.next_seed()).encode();
        data.extend_from_slice(&bytes);
        (data, layout)
    }

    fn verdicts(data: &[u8], layout: Layout) -> Vec<Result<usize, Damage>> {
        let mut reader = Reader::new(data, layout);
        let mut out = Vec::new();
        while let Some(next) = reader.next_entry() {
            match next {
                Ok(Entry::Record { offset, .. }) => out.push(Ok(offset)),
                Ok(Entry::Seal(found)) => out.push(Ok(found.offset)),
                Err(damage) => {
                    out.push(Err(damage));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn records_and_the_seal_that_counts_them_are_intact() {
        let (data, layout) = sealed(&[b"one", b"two"], |records, chain| Seal {
            records,
            chain,
            next: 5,
        });
        assert_eq!(verdicts(&data, layout), [Ok(32), Ok(43), Ok(54)]);
        let mut more = data.clone();
        more.extend_from_slice(&[0; 3]);
        assert_eq!(
            verdicts(&more, layout).pop(),
            Some(Err(Damage::AfterSeal { bytes: 3 }))
        );
    }

    #[test]
    fn a_seal_must_name_the_next_segment_and_count_the_records() {
        let wrong_next = sealed(&[b"one"], |records, chain| Seal {
            records,
            chain,
            next: 6,
        });
        let miscounted = sealed(&[b"one"], |records, chain| Seal {
            records: records + 1,
            chain,
            next: 5,
        });
        let other_chain = sealed(&[b"one"], |records, chain| Seal {
            records,
            chain: chain ^ 1,
            next: 5,
        });
        for ((data, layout), expected) in [
            (wrong_next, "names segment 6 as the next"),
            (miscounted, "records before the seal are missing"),
            (other_chain, "records before the seal are missing"),
        ] {
            match verdicts(&data, layout).pop() {
                Some(Err(damage @ Damage::Seal(_))) => {
                    assert!(damage.describe().contains(expected), "{damage:?}")
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
        // Without a readable header the next segment is not known.
        let (data, mut layout) = sealed(&[b"one"], |records, chain| Seal {
            records,
            chain,
            next: 6,
        });
        layout.number = None;
        assert!(verdicts(&data, layout).iter().all(Result::is_ok));
    }

    #[test]
    fn a_skipped_record_excuses_the_count_but_not_the_chain() {
        let (mut data, layout) = sealed(&[b"one", b"two"], |records, chain| Seal {
            records,
            chain,
            next: 5,
        });
        data[32 + 9] ^= 1; // a payload bit of "one"
        let mut reader = Reader::new(&data, layout);
        let damage = reader.next_entry().expect("data").expect_err("bad CRC");
        assert_eq!(damage.in_file_extent(), Some(11));
        assert!(reader.skip_by_length(&damage));
        assert!(matches!(
            reader.next_entry(),
            Some(Ok(Entry::Record { offset: 43, .. }))
        ));
        assert!(matches!(reader.next_entry(), Some(Ok(Entry::Seal(_)))));
        assert_eq!(reader.records(), 1);
        assert_eq!(reader.next_entry(), None);
    }

    #[test]
    fn damage_of_unknown_extent_is_not_skipped() {
        let (mut data, layout) = segment(&[b"one"]);
        data.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0]);
        let mut reader = Reader::new(&data, layout);
        assert!(reader.next_entry().expect("record").is_ok());
        let damage = reader.next_entry().expect("seal").expect_err("partial");
        assert_eq!(damage, Damage::Seal(SealDamage::Partial { available: 5 }));
        assert_eq!(damage.stored_crc(), None);
        assert!(!reader.skip_by_length(&damage));
        assert_eq!(reader.offset(), 43);
        assert_eq!(reader.body_end(), 43);
        // In a version 2 segment the marker is just a garbage length.
        let unsealable = Layout {
            sealable: false,
            ..layout
        };
        assert!(matches!(
            verdicts(&data, unsealable).pop(),
            Some(Err(Damage::Record(RecordDamage::PartialHeader {
                available: 5
            })))
        ));
    }
}
