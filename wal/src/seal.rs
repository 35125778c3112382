//! The seal that ends a segment the log moved past: how many records the
//! segment holds, the chain value they end with, and the number of the
//! segment that follows.
//!
//! A seal is what makes the loss of a segment's *end* visible: without it,
//! an older segment cut exactly at a record boundary, or a newest segment
//! deleted outright, replays as a shorter log that looks whole. This module
//! only encodes and checks the 24 bytes and names the ways they can be
//! wrong; whether a seal is the one its segment needs is `decode`'s
//! verdict, and what a missing or damaged seal means is `replay`'s decision.

use byteorder::{BigEndian, ByteOrder};

use crate::record;

/// First four bytes of a seal, where a record has its length. Above
/// [`record::MAX_RECORD_BYTES`], so no record can start with them.
pub(crate) const SEAL_MARKER: [u8; 4] = [0xFF; 4];

/// Bytes of a seal on disk.
pub(crate) const SEAL_LEN: usize = 24;

/// What a seal says about the segment it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seal {
    /// Records in the segment (a checkpoint's records included).
    pub records: u64,
    /// The chain value the records end with: the CRC field of the last
    /// record, or the header CRC when there is none. The seal's own CRC is
    /// seeded with it.
    pub chain: u32,
    /// Number of the segment that follows.
    pub next: u32,
}

impl Seal {
    /// The 24 bytes of this seal, and its CRC field: the chain value the
    /// next segment's header continues from.
    pub(crate) fn encode(&self) -> ([u8; SEAL_LEN], u32) {
        let mut bytes = [0u8; SEAL_LEN];
        bytes[0..4].copy_from_slice(&SEAL_MARKER);
        BigEndian::write_u64(&mut bytes[8..16], self.records);
        BigEndian::write_u32(&mut bytes[16..20], self.chain);
        BigEndian::write_u32(&mut bytes[20..24], self.next);
        let crc = record::checksum(self.chain, &bytes[0..4], &bytes[8..SEAL_LEN]);
        BigEndian::write_u32(&mut bytes[4..8], crc);
        (bytes, crc)
    }
}

/// Whether `buf` starts with the seal marker.
pub(crate) fn starts_seal(buf: &[u8]) -> bool {
    buf.starts_with(&SEAL_MARKER)
}

/// Why the 24 bytes at a seal marker are not the seal the segment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SealDamage {
    /// Fewer than [`SEAL_LEN`] bytes remain before end of file.
    Partial { available: usize },
    /// The seal's CRC does not verify (seeded with the chain value it states).
    BadChecksum {
        seal: Seal,
        stored: u32,
        computed: u32,
    },
    /// An intact seal that names another segment than the one after
    /// segment `number`.
    WrongNext { found: FoundSeal, number: u32 },
    /// An intact seal whose count or chain value differs from the records
    /// before it (`records` of them, ending with chain value `chain`).
    Mismatch {
        found: FoundSeal,
        records: u64,
        chain: u32,
    },
}

impl SealDamage {
    /// Human-readable reason used in errors and reports.
    pub(crate) fn describe(&self) -> String {
        match *self {
            SealDamage::Partial { available } => {
                format!("partial seal: {available} of {SEAL_LEN} bytes before end of file")
            }
            SealDamage::BadChecksum {
                stored, computed, ..
            } => {
                format!("seal checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            SealDamage::WrongNext { found, number } => format!(
                "the seal names segment {} as the next, but segment {} follows segment {number}",
                found.seal.next,
                number.wrapping_add(1)
            ),
            SealDamage::Mismatch {
                found,
                records,
                chain,
            } => format!(
                "the seal says {} records ending with chain value {:#010x}, but {records} records \
                 ending with {chain:#010x} precede it: records before the seal are missing",
                found.seal.records, found.seal.chain
            ),
        }
    }
}

/// An intact seal, where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FoundSeal {
    /// Byte offset of the seal within the file.
    pub offset: usize,
    /// What it says.
    pub seal: Seal,
    /// Its CRC field: the chain value the next segment continues from.
    pub crc: u32,
}

/// Decodes the seal at the start of `buf` (which starts with the marker)
/// and checks its CRC, seeded with the chain value it states. Returns the
/// seal and its CRC field, or what is wrong with it. Whether it is the seal
/// its segment needs is `decode`'s question.
pub(crate) fn decode(buf: &[u8]) -> Result<(Seal, u32), SealDamage> {
    let Some(bytes) = buf.get(..SEAL_LEN) else {
        return Err(SealDamage::Partial {
            available: buf.len(),
        });
    };
    let seal = Seal {
        records: BigEndian::read_u64(&bytes[8..16]),
        chain: BigEndian::read_u32(&bytes[16..20]),
        next: BigEndian::read_u32(&bytes[20..24]),
    };
    let stored = BigEndian::read_u32(&bytes[4..8]);
    let computed = record::checksum(seal.chain, &bytes[0..4], &bytes[8..SEAL_LEN]);
    if stored != computed {
        return Err(SealDamage::BadChecksum {
            seal,
            stored,
            computed,
        });
    }
    Ok((seal, stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_is_the_documented_twenty_four_bytes() {
        let seal = Seal {
            records: 0x0102_0304_0506_0708,
            chain: 0xAABB_CCDD,
            next: 9,
        };
        let (bytes, crc) = seal.encode();
        assert_eq!(bytes[0..4], [0xFF; 4]);
        assert_eq!(bytes[8..16], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes[16..20], [0xAA, 0xBB, 0xCC, 0xDD]);
        assert_eq!(bytes[20..24], [0, 0, 0, 9]);
        // CRC-32 seeded with the chain, over the marker then bytes 8..24.
        let mut hasher = crc32fast::Hasher::new_with_initial(0xAABB_CCDD);
        hasher.update(&bytes[0..4]);
        hasher.update(&bytes[8..24]);
        assert_eq!(crc, hasher.finalize());
        assert_eq!(bytes[4..8], crc.to_be_bytes());
        assert!(starts_seal(&bytes));
        assert_eq!(decode(&bytes), Ok((seal, crc)));
        // Trailing bytes are not the seal's business.
        let mut longer = bytes.to_vec();
        longer.push(1);
        assert_eq!(decode(&longer), Ok((seal, crc)));
    }

    #[test]
    fn damaged_or_partial_seals_are_refused() {
        let (bytes, _) = Seal {
            records: 3,
            chain: 7,
            next: 2,
        }
        .encode();
        let partial = decode(&bytes[..SEAL_LEN - 1]).expect_err("one byte short");
        assert!(partial.describe().contains("23 of 24"), "{partial:?}");
        for byte in 4..SEAL_LEN {
            let mut flipped = bytes;
            flipped[byte] ^= 0x20;
            assert!(decode(&flipped).is_err(), "byte {byte}");
        }
        assert!(!starts_seal(&bytes[..3]));
        assert!(!starts_seal(&[0xFF, 0xFF, 0xFF, 0xFE, 0]));
    }
}
