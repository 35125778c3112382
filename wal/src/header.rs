//! A segment's header, versions 1 to 3: its bytes, parsing it, and telling
//! a valid header from a torn one (a crash while the segment was being
//! created) and from an invalid one.
//!
//! This module only reads and writes the header's bytes: opening files is
//! `segment`'s job, and what a torn or invalid header means is `replay`'s.

use byteorder::{BigEndian, ByteOrder};

use crate::record::Chain;

/// First eight bytes of every segment. The `\r\n` catches text-mode
/// transfers that would rewrite line endings.
pub const MAGIC: [u8; 8] = *b"RKVWAL\r\n";

/// The on-disk format version this crate writes. It also reads versions 1
/// (unchained records, 16-byte header) and 2 (no seals, 28-byte header) so
/// that an upgraded replica replays the log an older build left.
pub const FORMAT_VERSION: u32 = 3;

/// The unchained format of earlier builds; read, never written.
pub(crate) const FORMAT_VERSION_1: u32 = 1;

/// Chained records without seals; read, and appended to, never created.
pub(crate) const FORMAT_VERSION_2: u32 = 2;

/// Bytes of a version 3 segment header: magic (8), version (4), number (4),
/// kind (4), checkpoint record count (4), the chain value it continues
/// from (4), header CRC (4). Exists so callers can tell an empty log
/// (`total_bytes() == SEGMENT_HEADER_LEN`).
pub const SEGMENT_HEADER_LEN: u64 = 32;

/// Offset of the chain value in a version 3 header.
pub(crate) const CONTINUES_OFFSET: u64 = 24;

/// Bytes of a version 2 segment header (no chain value).
pub(crate) const V2_HEADER_LEN: u64 = 28;

/// Bytes of a version 1 segment header: magic, version, number.
pub(crate) const V1_HEADER_LEN: u64 = 16;

/// `kind` field of a segment that starts with ordinary appended records.
const KIND_LOG: u32 = 0;
/// `kind` field of a segment that starts with a checkpoint.
const KIND_CHECKPOINT: u32 = 1;

/// What a segment starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Records appended one batch at a time.
    Log,
    /// A checkpoint: the first `records` records restate the whole log up
    /// to this segment; appended records may follow them.
    Checkpoint { records: u32 },
}

/// A parsed, valid segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Format version, 1 to 3.
    pub version: u32,
    /// The segment number the header states.
    pub number: u32,
    /// Log or checkpoint segment.
    pub kind: Kind,
    /// Bytes the header occupies (16, 28 or 32 for versions 1, 2, 3).
    pub len: usize,
    /// Seed of the first record's CRC: the header CRC field in versions 2
    /// and 3, 0 in version 1.
    pub first_seed: u32,
    /// Version 3: the chain value the segment before it ended with (its
    /// seal's CRC, or for an unsealed version 2 predecessor the CRC of its
    /// last record); 0 for a segment that continues nothing.
    pub continues: Option<u32>,
}

impl Header {
    /// How the records after this header are linked.
    pub(crate) fn chain(&self) -> Chain {
        if self.version == FORMAT_VERSION_1 {
            Chain::Unchained
        } else {
            Chain::Chained
        }
    }

    /// Whether the segment ends with a seal once the log moved past it
    /// (version 3). Older segments never have one.
    pub(crate) fn sealable(&self) -> bool {
        self.version >= FORMAT_VERSION
    }
}

/// The exact version 3 header bytes of segment `number`, continuing the
/// chain from `continues`.
pub(crate) fn header_bytes(
    number: u32,
    kind: Kind,
    continues: u32,
) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[0..8].copy_from_slice(&MAGIC);
    BigEndian::write_u32(&mut header[8..12], FORMAT_VERSION);
    BigEndian::write_u32(&mut header[12..16], number);
    let (kind_field, count) = match kind {
        Kind::Log => (KIND_LOG, 0),
        Kind::Checkpoint { records } => (KIND_CHECKPOINT, records),
    };
    BigEndian::write_u32(&mut header[16..20], kind_field);
    BigEndian::write_u32(&mut header[20..24], count);
    BigEndian::write_u32(&mut header[24..28], continues);
    let crc = crc32fast::hash(&header[0..28]);
    BigEndian::write_u32(&mut header[28..32], crc);
    header
}

/// Parses the header at the start of `start` without knowing which segment
/// it should be. `Err` says what is wrong (too short, bad magic, unknown
/// version or kind, header CRC mismatch).
pub(crate) fn parse_header(start: &[u8]) -> Result<Header, String> {
    let (version, len) = version_and_len(start)?;
    let number = BigEndian::read_u32(&start[12..16]);
    if version == FORMAT_VERSION_1 {
        return Ok(Header {
            version,
            number,
            kind: Kind::Log,
            len,
            first_seed: 0,
            continues: None,
        });
    }
    let stored = BigEndian::read_u32(&start[len - 4..len]);
    let computed = crc32fast::hash(&start[0..len - 4]);
    if stored != computed {
        return Err(format!(
            "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    Ok(Header {
        version,
        number,
        kind: parse_kind(&start[16..24])?,
        len,
        first_seed: stored,
        continues: (version == FORMAT_VERSION).then(|| BigEndian::read_u32(&start[24..28])),
    })
}

/// The format version a header starts with (after the magic) and the
/// header's length in that version, once that many bytes are there.
fn version_and_len(start: &[u8]) -> Result<(u32, usize), String> {
    if start.len() < 12 {
        return Err(format!(
            "{} bytes, too short for a segment header",
            start.len()
        ));
    }
    if start[0..8] != MAGIC {
        return Err(format!(
            "bad magic {:02x?}, expected {:02x?}",
            &start[0..8],
            MAGIC
        ));
    }
    let version = BigEndian::read_u32(&start[8..12]);
    let len = match version {
        FORMAT_VERSION_1 => V1_HEADER_LEN as usize,
        FORMAT_VERSION_2 => V2_HEADER_LEN as usize,
        FORMAT_VERSION => SEGMENT_HEADER_LEN as usize,
        _ => {
            return Err(format!(
                "unsupported format version {version}, this build reads versions 1 to 3"
            ))
        }
    };
    if start.len() < len {
        return Err(format!(
            "{} bytes, shorter than the {len}-byte version {version} header",
            start.len()
        ));
    }
    Ok((version, len))
}

/// The kind and checkpoint count fields (bytes 16..24 of a version 2 or 3
/// header): a log segment promises no checkpoint records.
fn parse_kind(fields: &[u8]) -> Result<Kind, String> {
    let count = BigEndian::read_u32(&fields[4..8]);
    match BigEndian::read_u32(&fields[0..4]) {
        KIND_LOG if count == 0 => Ok(Kind::Log),
        KIND_LOG => Err(format!(
            "a log segment header with a record count of {count}"
        )),
        KIND_CHECKPOINT => Ok(Kind::Checkpoint { records: count }),
        other => Err(format!("unknown segment kind {other}")),
    }
}

/// Verdict on the first bytes of a segment file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    Valid(Header),
    /// The file is no longer than a header and holds only a prefix of a
    /// header or zeros: a crash while the segment was being created.
    Torn,
    Invalid(String),
}

/// Checks `start` (the first bytes of the file, at least
/// `SEGMENT_HEADER_LEN` of them if the file is that long) against the header
/// segment `number` must have. `file_len` is the whole file's length.
pub(crate) fn check_header(start: &[u8], file_len: u64, number: u32) -> HeaderCheck {
    if file_len <= SEGMENT_HEADER_LEN && is_torn_header(start, number) {
        return HeaderCheck::Torn;
    }
    match parse_header(start) {
        Ok(header) if header.number != number => HeaderCheck::Invalid(format!(
            "header says segment {} but the file name says {number}",
            header.number
        )),
        Ok(header) => HeaderCheck::Valid(header),
        Err(reason) => HeaderCheck::Invalid(reason),
    }
}

/// All zeros, or a strict prefix of a header this or an older build would
/// write for segment `number`, perhaps followed by zeros (a file whose size
/// reached the disk before all of its bytes). The bytes after the first 16
/// depend on the kind and the chain, so any bytes there are accepted while
/// the header is incomplete.
fn is_torn_header(start: &[u8], number: u32) -> bool {
    if start.iter().all(|&b| b == 0) {
        return true;
    }
    let n = start.len();
    let prefix = n.min(V1_HEADER_LEN as usize);
    let v3 = header_bytes(number, Kind::Log, 0);
    [
        (FORMAT_VERSION_1, V1_HEADER_LEN),
        (FORMAT_VERSION_2, V2_HEADER_LEN),
        (FORMAT_VERSION, SEGMENT_HEADER_LEN),
    ]
    .into_iter()
    .any(|(version, len)| {
        let mut first = [0u8; V1_HEADER_LEN as usize];
        first.copy_from_slice(&v3[..V1_HEADER_LEN as usize]);
        BigEndian::write_u32(&mut first[8..12], version);
        let same = start.iter().zip(first).take_while(|(a, b)| *a == b).count();
        let len = len as usize;
        let incomplete = n < len || crc_partly_landed(&start[..len]);
        incomplete && start[same.min(prefix)..prefix].iter().all(|&b| b == 0)
    })
}

/// A whole-length version 2 or 3 header whose CRC field holds only the
/// first bytes of the CRC of the bytes before it, then zeros: the write
/// stopped inside the CRC. (Version 1 has no CRC: a whole one is complete.)
fn crc_partly_landed(header: &[u8]) -> bool {
    let Some(split) = header.len().checked_sub(4).filter(|&s| s > 12) else {
        return false;
    };
    let computed = crc32fast::hash(&header[..split]).to_be_bytes();
    let stored = &header[split..];
    let landed = stored
        .iter()
        .zip(computed)
        .take_while(|(a, b)| **a == *b)
        .count();
    landed < 4 && stored[landed..].iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir::file_name;

    /// The README's example, computed independently (Python's zlib.crc32).
    const README_HEADER_CRC: [u8; 4] = [0x45, 0x94, 0xD5, 0x17];
    const README_RECORD: [u8; 10] = [0, 0, 0, 2, 0x30, 0xB9, 0xB6, 0x4C, b'h', b'i'];
    const README_SEAL: [u8; 24] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0xAF, 0x80, 0x24, 0xDD, 0, 0, 0, 0, 0, 0, 0, 1, 0x30, 0xB9, 0xB6,
        0x4C, 0, 0, 0, 2,
    ];
    const README_SECOND_HEADER_CRC: [u8; 4] = [0x05, 0xE9, 0xE4, 0xC5];

    #[test]
    fn the_readme_example_is_what_this_build_writes() {
        let one = header_bytes(1, Kind::Log, 0);
        let mut record = Vec::new();
        let chain = crate::record::encode_into(
            parse_header(&one).expect("valid").first_seed,
            b"hi",
            &mut record,
        );
        assert_eq!(record, README_RECORD);
        let (seal, crc) = crate::seal::Seal {
            records: 1,
            chain,
            next: 2,
        }
        .encode();
        assert_eq!(seal, README_SEAL);
        let two = header_bytes(2, Kind::Log, crc);
        assert_eq!(two[24..28], README_SEAL[4..8]);
        assert_eq!(two[28..], README_SECOND_HEADER_CRC);
    }

    #[test]
    fn header_is_the_documented_thirty_two_bytes() {
        let h = header_bytes(0x0102_0304, Kind::Checkpoint { records: 5 }, 0x0A0B_0C0D);
        assert_eq!(
            h[..28],
            *b"RKVWAL\r\n\x00\x00\x00\x03\x01\x02\x03\x04\x00\x00\x00\x01\x00\x00\x00\x05\x0A\x0B\x0C\x0D"
        );
        assert_eq!(h[28..], crc32fast::hash(&h[..28]).to_be_bytes());
        let parsed = parse_header(&h).expect("valid");
        assert_eq!(parsed.kind, Kind::Checkpoint { records: 5 });
        assert_eq!(parsed.first_seed, crc32fast::hash(&h[..28]));
        assert_eq!(parsed.continues, Some(0x0A0B_0C0D));
        assert_eq!(parsed.len, 32);
        assert_eq!(file_name(7), "00000000000000000007.wal");
        // The README's example, byte for byte.
        let one = header_bytes(1, Kind::Log, 0);
        assert_eq!(one[28..], README_HEADER_CRC);
        let mut record = Vec::new();
        crate::record::encode_into(
            parse_header(&one).expect("valid").first_seed,
            b"hi",
            &mut record,
        );
        assert_eq!(record, README_RECORD);
    }

    #[test]
    fn headers_are_parsed_only_when_whole() {
        let h = header_bytes(3, Kind::Log, 7);
        let reason = |bytes: &[u8]| parse_header(bytes).expect_err("too short");
        assert!(reason(&h[..11]).contains("11 bytes, too short"));
        assert!(reason(&h[..12]).contains("12 bytes, shorter than the 32-byte version 3"));
        assert!(reason(&h[..31]).contains("31 bytes, shorter than the 32-byte"));
        assert_eq!(parse_header(&h).map(|p| p.len), Ok(32));
        // A log segment promises no checkpoint records.
        let mut counted = h;
        counted[23] = 5;
        let crc = crc32fast::hash(&counted[..28]);
        counted[28..].copy_from_slice(&crc.to_be_bytes());
        assert!(reason(&counted).contains("a log segment header with a record count of 5"));
        // Version 2: 28 bytes, the CRC over the 24 before it, no chain value.
        let mut v2 = h[..24].to_vec();
        v2[11] = 2;
        let crc = crc32fast::hash(&v2);
        v2.extend_from_slice(&crc.to_be_bytes());
        assert!(reason(&v2[..27]).contains("shorter than the 28-byte version 2"));
        let parsed = parse_header(&v2).expect("version 2");
        assert_eq!(
            (parsed.len, parsed.first_seed, parsed.continues),
            (28, crc, None)
        );
        assert!(!parsed.sealable());
        assert!(parse_header(&h).expect("version 3").sealable());
        // A CRC cut short is a torn header only in a whole-length file.
        let mut cut = h;
        cut[30..].fill(0);
        assert!(crc_partly_landed(&cut));
        assert!(!crc_partly_landed(&h));
        assert!(!crc_partly_landed(&[0; 16]), "version 1 has no CRC");
        let mut wrong = h;
        wrong[28] ^= 1;
        wrong[30..].fill(0);
        assert!(!crc_partly_landed(&wrong));
    }

    #[test]
    fn headers_are_checked() {
        let h = header_bytes(3, Kind::Log, 0);
        assert!(matches!(check_header(&h, 100, 3), HeaderCheck::Valid(_)));
        assert!(matches!(check_header(&h, 100, 4), HeaderCheck::Invalid(_)));
        assert_eq!(check_header(&h[..5], 5, 3), HeaderCheck::Torn);
        assert_eq!(check_header(&h[..20], 20, 3), HeaderCheck::Torn);
        assert_eq!(check_header(&[], 0, 3), HeaderCheck::Torn);
        assert_eq!(check_header(&h[..31], 31, 3), HeaderCheck::Torn);
        let mut prefix_then_zeros = [0u8; 32];
        prefix_then_zeros[..12].copy_from_slice(&h[..12]);
        assert_eq!(check_header(&prefix_then_zeros, 32, 3), HeaderCheck::Torn);
        prefix_then_zeros[13] = 1;
        assert!(matches!(
            check_header(&prefix_then_zeros, 32, 3),
            HeaderCheck::Invalid(_)
        ));
        assert_eq!(check_header(&[0; 32], 32, 3), HeaderCheck::Torn);
        assert!(matches!(
            check_header(&[0; 32], 33, 3),
            HeaderCheck::Invalid(_)
        ));
        assert!(matches!(
            check_header(b"RKVWAL\r\r", 8, 3),
            HeaderCheck::Invalid(_)
        ));
        let mut v4 = h;
        v4[11] = 4;
        assert!(matches!(check_header(&v4, 32, 3), HeaderCheck::Invalid(_)));
        let mut bad_crc = h;
        bad_crc[27] ^= 1;
        assert!(matches!(
            check_header(&bad_crc, 32, 3),
            HeaderCheck::Invalid(_)
        ));
        // Version 1: 16 bytes, unchained.
        let mut v1 = h[..16].to_vec();
        v1[11] = 1;
        match check_header(&v1, 16, 3) {
            HeaderCheck::Valid(header) => {
                assert_eq!((header.version, header.len, header.first_seed), (1, 16, 0));
                assert_eq!(header.chain(), Chain::Unchained);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(check_header(&v1[..10], 10, 3), HeaderCheck::Torn);
    }
}
