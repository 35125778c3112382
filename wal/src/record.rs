//! Record framing: `payload length u32 BE | CRC-32 u32 BE | payload`.
//!
//! The checksum covers the four length bytes followed by the payload, so a
//! damaged length is caught by the same check as a damaged payload.

use byteorder::{BigEndian, ByteOrder};

/// Bytes of framing in front of every payload (length + checksum). Exists so
/// callers can size batches against `segment_max_bytes`.
pub const RECORD_HEADER_LEN: usize = 8;

/// Largest payload a record may carry (64 MiB). Appends above it are refused,
/// and a length field above it found on disk is damage: replay never trusts
/// such a length enough to allocate or skip by it.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// CRC-32 (IEEE) over the big-endian length field followed by the payload.
pub(crate) fn checksum(len_field: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_field);
    hasher.update(payload);
    hasher.finalize()
}

/// On-disk size of a record carrying `payload_len` bytes.
pub(crate) fn encoded_len(payload_len: usize) -> u64 {
    (RECORD_HEADER_LEN + payload_len) as u64
}

/// Appends the framed record to `out`. The caller has already checked that
/// the payload is non-empty and at most [`MAX_RECORD_BYTES`].
pub(crate) fn encode_into(payload: &[u8], out: &mut Vec<u8>) {
    let len =
        u32::try_from(payload.len()).expect("payload length was checked against MAX_RECORD_BYTES");
    let mut header = [0u8; RECORD_HEADER_LEN];
    BigEndian::write_u32(&mut header[0..4], len);
    let crc = checksum(&header[0..4], payload);
    BigEndian::write_u32(&mut header[4..8], crc);
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// Why the bytes at some offset are not an intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Fewer than [`RECORD_HEADER_LEN`] bytes remain before end of file.
    PartialHeader { available: usize },
    /// The length field is 0 or above [`MAX_RECORD_BYTES`]: never written by
    /// this crate, so the header itself is garbage.
    BadLength { len: u32 },
    /// The length is plausible but the payload runs past end of file.
    PartialPayload { len: u32, available: usize },
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

    /// Human-readable reason used in errors and reports.
    pub(crate) fn describe(&self) -> String {
        match *self {
            Damage::PartialHeader { available } => format!(
                "partial record header: {available} of {RECORD_HEADER_LEN} bytes before end of file"
            ),
            Damage::BadLength { len: 0 } => "record length is 0 (empty records are never written)".to_string(),
            Damage::BadLength { len } => {
                format!("record length {len} exceeds the maximum of {MAX_RECORD_BYTES} bytes")
            }
            Damage::PartialPayload { len, available } => format!(
                "record claims {len} payload bytes but only {available} remain before end of file"
            ),
            Damage::BadChecksum { len, stored, computed } => format!(
                "checksum mismatch on a {len}-byte record: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

/// Decodes the record at the start of `buf` (which extends to end of file).
/// Returns the payload and the record's total on-disk size.
pub(crate) fn decode(buf: &[u8]) -> Result<(&[u8], usize), Damage> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(Damage::PartialHeader {
            available: buf.len(),
        });
    }
    let len = BigEndian::read_u32(&buf[0..4]);
    if len == 0 || len as usize > MAX_RECORD_BYTES {
        return Err(Damage::BadLength { len });
    }
    let available = buf.len() - RECORD_HEADER_LEN;
    if (len as usize) > available {
        return Err(Damage::PartialPayload { len, available });
    }
    let end = RECORD_HEADER_LEN + len as usize;
    let payload = &buf[RECORD_HEADER_LEN..end];
    let stored = BigEndian::read_u32(&buf[4..8]);
    let computed = checksum(&buf[0..4], payload);
    if stored != computed {
        return Err(Damage::BadChecksum {
            len,
            stored,
            computed,
        });
    }
    Ok((payload, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_the_documented_bytes() {
        let mut out = Vec::new();
        encode_into(b"hi", &mut out);
        // crc32(00 00 00 02 'h' 'i') = 0x2b0c4d9e, computed independently.
        assert_eq!(out, [0, 0, 0, 2, 0x2b, 0x0c, 0x4d, 0x9e, b'h', b'i']);
        assert_eq!(decode(&out), Ok((&b"hi"[..], 10)));
    }

    #[test]
    fn zero_bytes_are_never_a_record() {
        // crc32 of four zero bytes is not zero, and length 0 is refused anyway.
        assert_ne!(checksum(&[0; 4], &[]), 0);
        assert_eq!(decode(&[0; 16]), Err(Damage::BadLength { len: 0 }));
    }

    #[test]
    fn damage_kinds_are_told_apart() {
        let mut rec = Vec::new();
        encode_into(b"payload", &mut rec);
        assert_eq!(
            decode(&rec[..5]),
            Err(Damage::PartialHeader { available: 5 })
        );
        assert_eq!(
            decode(&rec[..10]),
            Err(Damage::PartialPayload {
                len: 7,
                available: 2
            })
        );
        let mut huge = rec.clone();
        huge[0] = 0xff;
        assert!(matches!(decode(&huge), Err(Damage::BadLength { .. })));
        let mut flipped = rec.clone();
        flipped[9] ^= 1;
        assert!(matches!(
            decode(&flipped),
            Err(Damage::BadChecksum { len: 7, .. })
        ));
        // A flipped length bit that still fits is caught by the checksum.
        let mut shorter = rec.clone();
        shorter[3] = 6;
        assert!(matches!(
            decode(&shorter),
            Err(Damage::BadChecksum { len: 6, .. })
        ));
    }
}
