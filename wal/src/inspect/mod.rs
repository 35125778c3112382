//! Reading a segment for people (`ringkv dump`): every record that can be
//! found, with its checksum verdict, and every damaged region, in order.
//! What the bytes are is decided by `decode`, the decoder replay uses too;
//! this module only decides how to show damage (`entries`) and where
//! reading goes on after it (`resync`), which replay never does.
//!
//! This module never modifies anything, never calls back into replay, never
//! panics and never allocates by a length read from the input: whatever the
//! bytes, it returns a description of them.

mod entries;
mod resync;

use byteorder::{BigEndian, ByteOrder};

use crate::decode::Layout;
use crate::header::{
    self, Kind, FORMAT_VERSION_1, FORMAT_VERSION_2, SEGMENT_HEADER_LEN, V1_HEADER_LEN,
    V2_HEADER_LEN,
};
use crate::record::Chain;

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
    let entries = entries::inspect_records(data, layout);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::header_bytes;
    use crate::record;

    pub(super) fn segment_with(kind: Kind, payloads: &[&[u8]]) -> Vec<u8> {
        let header = header_bytes(9, kind, 0);
        let mut seed = crc32fast::hash(&header[..28]);
        let mut data = header.to_vec();
        for p in payloads {
            seed = record::encode_into(seed, p, &mut data);
        }
        data
    }

    pub(super) fn offsets(entries: &[InspectedEntry]) -> Vec<(u64, bool)> {
        entries
            .iter()
            .map(|e| match e {
                InspectedEntry::Record { offset, crc_ok, .. } => (*offset, *crc_ok),
                InspectedEntry::Damage { offset, .. } => (*offset, false),
                InspectedEntry::Seal { offset, crc_ok, .. } => (*offset, *crc_ok),
            })
            .collect()
    }

    pub(super) fn reason_of(entry: &InspectedEntry) -> &str {
        match entry {
            InspectedEntry::Damage { reason, .. } => reason,
            other => panic!("expected damage, got {other:?}"),
        }
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
