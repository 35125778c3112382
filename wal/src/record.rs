//! Record framing and chaining: `payload length u32 BE | CRC-32 u32 BE |
//! payload`, where the CRC is seeded with the previous record's CRC.
//!
//! This module owns the bytes of one record and the seed rule that links a
//! record to the one before it. It never touches files and never decides
//! what damage means (that is the replay policy's job).

use byteorder::{BigEndian, ByteOrder};

/// Bytes of framing in front of every payload (length + checksum). Exists so
/// callers can size batches against `segment_max_bytes`.
pub const RECORD_HEADER_LEN: usize = 8;

/// Largest payload a record may carry (64 MiB). Appends above it are refused,
/// and a length field above it found on disk is damage: replay never trusts
/// such a length enough to allocate or skip by it.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// How the records of a segment are linked, which follows from the segment's
/// format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chain {
    /// Format version 1: every CRC is unseeded (seed 0).
    Unchained,
    /// Format version 2: a record's CRC is seeded with the stored CRC field
    /// of the record before it (the header CRC for the first record).
    Chained,
}

impl Chain {
    /// The seed of the record that follows a record whose CRC field holds
    /// `stored`. Uses the *stored* field, not a recomputed value: that is
    /// the seed the writer used for the genuine next record, even when the
    /// stored record is damaged.
    pub(crate) fn seed_after(self, stored: u32) -> u32 {
        match self {
            Chain::Unchained => 0,
            Chain::Chained => stored,
        }
    }
}

/// CRC-32 (IEEE) over the big-endian length field followed by the payload,
/// continuing from `seed` (0 gives the plain CRC-32 of those bytes).
pub(crate) fn checksum(seed: u32, len_field: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(len_field);
    hasher.update(payload);
    hasher.finalize()
}

/// On-disk size of a record carrying `payload_len` bytes.
pub(crate) fn encoded_len(payload_len: usize) -> u64 {
    (RECORD_HEADER_LEN + payload_len) as u64
}

/// Appends the framed record, checksummed from `seed`, to `out` and returns
/// its CRC (the seed of the next record in a chained segment). The caller
/// has already checked that the payload is non-empty and at most
/// [`MAX_RECORD_BYTES`], so the length fits in a u32.
pub(crate) fn encode_into(seed: u32, payload: &[u8], out: &mut Vec<u8>) -> u32 {
    let mut header = [0u8; RECORD_HEADER_LEN];
    // MAX_RECORD_BYTES < u32::MAX, so the checked length always fits.
    BigEndian::write_u32(&mut header[0..4], payload.len() as u32);
    let crc = checksum(seed, &header[0..4], payload);
    BigEndian::write_u32(&mut header[4..8], crc);
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    crc
}

/// An intact record found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    /// The payload bytes.
    pub payload: &'a [u8],
    /// Bytes the record occupies on disk (header + payload).
    pub size: usize,
    /// Its CRC field (the seed of the next record in a chained segment).
    pub crc: u32,
}

/// Why the bytes at some offset are not an intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Fewer than [`RECORD_HEADER_LEN`] bytes remain before end of file.
    PartialHeader { available: usize },
    /// The length field is 0 or above [`MAX_RECORD_BYTES`]: never written by
    /// this crate, so the header itself is garbage.
    BadLength { len: u32, stored: u32 },
    /// The length is plausible but the payload runs past end of file.
    PartialPayload {
        len: u32,
        stored: u32,
        available: usize,
    },
    /// Everything is present but the checksum does not match.
    BadChecksum {
        len: u32,
        stored: u32,
        computed: u32,
    },
}

impl Damage {
    /// Bytes this damaged record claims, counted from its first byte, when the
    /// claim lies within the data (`BadChecksum` only). `None` means the extent
    /// of the record is unknown or runs past end of file.
    pub(crate) fn in_file_extent(&self) -> Option<usize> {
        match *self {
            Damage::BadChecksum { len, .. } => Some(RECORD_HEADER_LEN + len as usize),
            _ => None,
        }
    }

    /// The damaged record's CRC field, when its 8 header bytes are present.
    pub(crate) fn stored_crc(&self) -> Option<u32> {
        match *self {
            Damage::PartialHeader { .. } => None,
            Damage::BadLength { stored, .. }
            | Damage::PartialPayload { stored, .. }
            | Damage::BadChecksum { stored, .. } => Some(stored),
        }
    }

    /// Human-readable reason used in errors and reports.
    pub(crate) fn describe(&self) -> String {
        match *self {
            Damage::PartialHeader { available } => format!(
                "partial record header: {available} of {RECORD_HEADER_LEN} bytes before end of file"
            ),
            Damage::BadLength { len: 0, .. } => {
                "record length is 0 (empty records are never written)".to_string()
            }
            Damage::BadLength { len, .. } => {
                format!("record length {len} exceeds the maximum of {MAX_RECORD_BYTES} bytes")
            }
            Damage::PartialPayload { len, available, .. } => format!(
                "record claims {len} payload bytes but only {available} remain before end of file"
            ),
            Damage::BadChecksum { len, stored, computed } => format!(
                "checksum mismatch on a {len}-byte record: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

/// Decodes the record at the start of `buf` (which extends to end of file),
/// checking its CRC as continued from `seed`.
pub(crate) fn decode(buf: &[u8], seed: u32) -> Result<Decoded<'_>, Damage> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(Damage::PartialHeader {
            available: buf.len(),
        });
    }
    let len = BigEndian::read_u32(&buf[0..4]);
    let stored = BigEndian::read_u32(&buf[4..8]);
    if len == 0 || len as usize > MAX_RECORD_BYTES {
        return Err(Damage::BadLength { len, stored });
    }
    let available = buf.len() - RECORD_HEADER_LEN;
    if (len as usize) > available {
        return Err(Damage::PartialPayload {
            len,
            stored,
            available,
        });
    }
    let end = RECORD_HEADER_LEN + len as usize;
    let payload = &buf[RECORD_HEADER_LEN..end];
    let computed = checksum(seed, &buf[0..4], payload);
    if stored != computed {
        return Err(Damage::BadChecksum {
            len,
            stored,
            computed,
        });
    }
    Ok(Decoded {
        payload,
        size: end,
        crc: stored,
    })
}

/// Like [`decode`], accepting a CRC continued from any of `seeds` (tried in
/// order; the damage reported is the one for the first seed). Used after a
/// skipped record whose CRC field may itself be the damaged part.
pub(crate) fn decode_any<'a>(buf: &'a [u8], seeds: &[u32]) -> Result<Decoded<'a>, Damage> {
    let mut first_damage = None;
    for &seed in seeds {
        match decode(buf, seed) {
            Ok(found) => return Ok(found),
            Err(damage @ Damage::BadChecksum { .. }) => {
                first_damage.get_or_insert(damage);
            }
            // Every other kind of damage does not depend on the seed.
            Err(damage) => return Err(damage),
        }
    }
    Err(first_damage.expect("decode_any is always given at least one seed"))
}

/// The payload length, if `buf` starts with a record header whose length is
/// plausible (`1 ..= MAX_RECORD_BYTES`) and whose payload fits in `buf`:
/// bytes that could be a record, before its checksum is looked at.
pub(crate) fn plausible_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..RECORD_HEADER_LEN)?;
    let len = BigEndian::read_u32(&header[0..4]) as usize;
    // The limit check matters only for a buffer of more than 64 MiB (below
    // that, a length above it never fits): changing its `>` to `>=` or
    // `==` is a mutant only a 64 MiB test record would catch, and
    // decode's own limit is tested exactly.
    let plausible = len != 0 && len <= MAX_RECORD_BYTES && len <= buf.len() - RECORD_HEADER_LEN;
    plausible.then_some(len)
}

/// Which of `seeds` (tried in order) the record at the start of `buf`
/// verifies with, if its length is plausible and it fits. Checksums at most
/// `*budget` payload bytes (decremented as it goes, once per seed tried);
/// `Err(())` when the budget runs out first. Never allocates.
pub(crate) fn verifying_seed(
    buf: &[u8],
    seeds: &[u32],
    budget: &mut usize,
) -> Result<Option<u32>, ()> {
    let Some(len) = plausible_len(buf) else {
        return Ok(None);
    };
    let stored = BigEndian::read_u32(&buf[4..8]);
    let payload = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    for &seed in seeds {
        *budget = budget.checked_sub(len).ok_or(())?;
        if checksum(seed, &buf[0..4], payload) == stored {
            return Ok(Some(seed));
        }
    }
    Ok(None)
}

/// Finds the first offset at or after `from` where a record verifies
/// seeded with one of `seeds`. Checksums at most `*budget` payload bytes in
/// total (decremented as it goes); returns `Err(())` when the budget runs
/// out before the search could finish, `Ok(None)` when no such record
/// exists. Lengths are read but never allocated by.
pub(crate) fn find_record(
    data: &[u8],
    from: usize,
    seeds: &[u32],
    budget: &mut usize,
) -> Result<Option<usize>, ()> {
    // A record needs more than its header, so none starts in the last 8
    // bytes; `..` instead of `..=` would only skip a start where
    // `plausible_len` finds no room for a payload anyway.
    let last_start = data.len().saturating_sub(RECORD_HEADER_LEN);
    for start in from..=last_start {
        if verifying_seed(data.get(start..).unwrap_or(&[]), seeds, budget)?.is_some() {
            return Ok(Some(start));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_the_documented_bytes() {
        let mut out = Vec::new();
        // Seed 0 is format version 1's unseeded CRC.
        let crc = encode_into(0, b"hi", &mut out);
        // crc32(00 00 00 02 'h' 'i') = 0x2b0c4d9e, computed independently.
        assert_eq!(out, [0, 0, 0, 2, 0x2b, 0x0c, 0x4d, 0x9e, b'h', b'i']);
        assert_eq!(crc, 0x2b0c_4d9e);
        assert_eq!(
            decode(&out, 0),
            Ok(Decoded {
                payload: &b"hi"[..],
                size: 10,
                crc
            })
        );
        // Chained: the same record seeded differently has another CRC and
        // does not verify under seed 0.
        let mut chained = Vec::new();
        let crc2 = encode_into(crc, b"hi", &mut chained);
        assert_ne!(crc2, crc);
        assert!(matches!(
            decode(&chained, 0),
            Err(Damage::BadChecksum { .. })
        ));
        assert!(decode(&chained, crc).is_ok());
    }

    #[test]
    fn seeding_continues_the_crc_over_the_previous_bytes() {
        // crc32fast's initial state is a running CRC: seeding with crc(a)
        // then hashing b gives crc(a ++ b). The format relies on this only
        // for the documentation's "continues the CRC" wording.
        let a = crc32fast::hash(b"abc");
        assert_eq!(checksum(a, b"de", b"f"), crc32fast::hash(b"abcdef"));
    }

    #[test]
    fn zero_bytes_are_never_a_record() {
        // crc32 of four zero bytes is not zero, and length 0 is refused anyway.
        assert_ne!(checksum(0, &[0; 4], &[]), 0);
        assert_eq!(
            decode(&[0; 16], 0),
            Err(Damage::BadLength { len: 0, stored: 0 })
        );
    }

    #[test]
    fn damage_kinds_are_told_apart() {
        let mut rec = Vec::new();
        let crc = encode_into(7, b"payload", &mut rec);
        assert_eq!(
            decode(&rec[..5], 7),
            Err(Damage::PartialHeader { available: 5 })
        );
        assert_eq!(
            decode(&rec[..10], 7),
            Err(Damage::PartialPayload {
                len: 7,
                stored: crc,
                available: 2
            })
        );
        let mut huge = rec.clone();
        huge[0] = 0xff;
        assert!(matches!(decode(&huge, 7), Err(Damage::BadLength { .. })));
        let mut flipped = rec.clone();
        flipped[9] ^= 1;
        assert!(matches!(
            decode(&flipped, 7),
            Err(Damage::BadChecksum { len: 7, .. })
        ));
        // A flipped length bit that still fits is caught by the checksum.
        let mut shorter = rec.clone();
        shorter[3] = 6;
        assert!(matches!(
            decode(&shorter, 7),
            Err(Damage::BadChecksum { len: 6, .. })
        ));
    }

    #[test]
    fn length_limits_are_exact() {
        // Exactly a header: the payload is what is missing.
        let mut header = [0u8; 8];
        header[3] = 1;
        assert!(matches!(
            decode(&header, 0),
            Err(Damage::PartialPayload { available: 0, .. })
        ));
        // The largest length is plausible (only the payload is missing);
        // one more is garbage.
        BigEndian::write_u32(&mut header[0..4], MAX_RECORD_BYTES as u32);
        assert!(matches!(
            decode(&header, 0),
            Err(Damage::PartialPayload { .. })
        ));
        BigEndian::write_u32(&mut header[0..4], MAX_RECORD_BYTES as u32 + 1);
        assert!(matches!(decode(&header, 0), Err(Damage::BadLength { .. })));
        // A record that ends exactly at the end of the buffer is whole; one
        // byte short is not.
        let mut rec = Vec::new();
        encode_into(3, b"abc", &mut rec);
        assert_eq!(decode(&rec, 3).map(|d| d.size), Ok(11));
        assert!(matches!(
            decode(&rec[..10], 3),
            Err(Damage::PartialPayload { available: 2, .. })
        ));
        assert_eq!(
            Damage::PartialHeader { available: 1 }.in_file_extent(),
            None
        );
        assert_eq!(
            decode(&rec[..7], 3),
            Err(Damage::PartialHeader { available: 7 })
        );
        assert_eq!(encoded_len(3), 11);
    }

    #[test]
    fn find_record_stays_in_bounds_and_counts_its_work() {
        // Buffers too short for any record: nothing, and no panic.
        for len in 0..9 {
            let mut budget = 100;
            assert_eq!(find_record(&vec![1u8; len], 0, &[0], &mut budget), Ok(None));
        }
        let mut data = Vec::new();
        let crc = encode_into(9, b"abc", &mut data);
        // A record that ends exactly at the end of the data is found, with
        // exactly its payload's worth of budget, which it then uses up.
        let mut budget = 3;
        assert_eq!(find_record(&data, 0, &[9], &mut budget), Ok(Some(0)));
        assert_eq!(budget, 0);
        let mut budget = 2;
        assert_eq!(find_record(&data, 0, &[9], &mut budget), Err(()));
        // Two seeds tried on one candidate cost twice.
        let mut budget = 5;
        assert_eq!(find_record(&data, 0, &[1, 2], &mut budget), Err(()));
        let mut budget = 6;
        assert_eq!(find_record(&data, 0, &[1, 9], &mut budget), Ok(Some(0)));
        assert_eq!(budget, 0);
        // Starting past the record, or one byte short of it, finds nothing.
        let mut budget = 100;
        assert_eq!(find_record(&data, 1, &[9], &mut budget), Ok(None));
        assert_eq!(find_record(&data[..10], 0, &[9], &mut budget), Ok(None));
        // A zero length is never a record, even with a CRC that verifies.
        let mut empty = 0u32.to_be_bytes().to_vec();
        empty.extend_from_slice(&checksum(9, &[0; 4], &[]).to_be_bytes());
        empty.push(1);
        let mut budget = 100;
        assert_eq!(find_record(&empty, 0, &[9], &mut budget), Ok(None));
        // A later record is found at its offset.
        let mut more = vec![0xEE; 5];
        more.extend_from_slice(&data);
        let _ = encode_into(crc, b"d", &mut more);
        let mut budget = 100;
        assert_eq!(find_record(&more, 0, &[crc], &mut budget), Ok(Some(16)));
    }

    #[test]
    fn find_record_needs_the_right_seed_and_respects_the_budget() {
        let mut data = vec![0xAA; 3];
        let first = encode_into(5, b"one", &mut data);
        let _ = encode_into(first, b"two", &mut data);
        let mut budget = 1000;
        assert_eq!(find_record(&data, 0, &[5], &mut budget), Ok(Some(3)));
        assert_eq!(find_record(&data, 4, &[first], &mut budget), Ok(Some(14)));
        assert_eq!(find_record(&data, 4, &[0, 1], &mut budget), Ok(None));
        let mut tiny = 2;
        assert_eq!(find_record(&data, 0, &[5], &mut tiny), Err(()));
    }
}
