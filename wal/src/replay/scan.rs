//! Replaying one segment: its records, read through the decoder in order
//! and handed to the caller, and the policy that says what damage in them
//! means (a torn tail to truncate, a seal a crash interrupted, corruption
//! to refuse, or with `skip_corrupt` a region to skip).
//!
//! This module looks at one segment only and modifies nothing: a torn tail
//! is returned, not truncated. What a segment's end means for the segments
//! around it is `chain`'s question.

use std::ops::ControlFlow;
use std::path::Path;

use crate::decode::{Damage, Entry, Layout, Reader};
use crate::error::{Corruption, TornTail, WalError};
use crate::header::Header;
use crate::record::MAX_RECORD_BYTES;
use crate::record::{self, Chain, Damage as RecordDamage, RECORD_HEADER_LEN};
use crate::seal::{FoundSeal, Seal, SealDamage, SEAL_LEN};

/// Upper bound on checksum work spent looking for an intact record after
/// damage in the newest segment. Past it, the damage is conservatively
/// treated as corruption rather than a torn tail. (Tests use less: a
/// mutant of this product, 64 MiB + 4, is caught only past 64 MiB.)
const SCAN_AHEAD_BUDGET: usize = 4 * MAX_RECORD_BYTES;

/// What scanning one segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Intact records replayed.
    pub records: u64,
    /// A torn tail to truncate (newest segment only). Not yet applied.
    pub torn_tail: Option<TornTail>,
    /// Regions skipped with `skip_corrupt`.
    pub skipped: Vec<Corruption>,
    /// With `skip_corrupt`, damage left no trustworthy record boundary, so
    /// nothing may be appended to this segment.
    pub unparseable_tail: bool,
    /// Seed of the record an append would add after the last one scanned.
    pub next_seed: u32,
    /// Offset just past the last record (or skipped region): where a seal
    /// goes.
    pub records_end: usize,
    /// The seal the segment ends with.
    pub seal: Option<FoundSeal>,
    /// Where a seal that a crash interrupted starts (only looked for with
    /// `Rules::may_end_in_torn_seal`): the bytes from there to the end are
    /// each zero or the byte the seal would have.
    pub torn_seal: Option<usize>,
}

/// How damage in one segment is judged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// The newest segment: the only one that may end in a torn tail.
    pub newest: bool,
    /// `Options::skip_corrupt`.
    pub skip_corrupt: bool,
    /// Records at the start of the segment that belong to a checkpoint:
    /// damage among them is never a torn tail (the checkpoint was synced
    /// before anything could be appended behind it).
    pub protected_records: u64,
    /// A crash may have interrupted writing this segment's seal (the
    /// segment after it is the newest and empty): a partial seal at the
    /// end is reported in `Scan::torn_seal` instead of as damage.
    pub may_end_in_torn_seal: bool,
}

/// Replays the records of one segment (`data` is the whole file, `header`
/// its already checked header), applying the recovery rules described in
/// the crate documentation. Modifies nothing: a torn tail is returned, not
/// truncated.
pub(crate) fn scan(
    data: &[u8],
    header: &Header,
    file: &Path,
    rules: Rules,
    on_record: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<Scan, WalError> {
    let mut reader = Reader::new(data, Layout::of(header));
    let mut scan = Scan::default();
    while let Some(next) = reader.next_entry() {
        match next {
            Ok(Entry::Record {
                offset, payload, ..
            }) => on_record(payload).map_err(|message| WalError::Replay {
                file: file.to_path_buf(),
                offset: offset as u64,
                message,
            })?,
            Ok(Entry::Seal(found)) => scan.seal = Some(found),
            Err(damage) => {
                if judge_damage(&mut reader, damage, header, file, rules, &mut scan)?.is_break() {
                    break;
                }
            }
        }
    }
    scan.records = reader.records();
    scan.next_seed = reader.next_seed();
    scan.records_end = reader.body_end();
    Ok(scan)
}

/// What damage at the reader's offset means here: a seal that ends the
/// segment all the same, an interrupted seal, a torn tail, corruption to
/// refuse, or (with `skip_corrupt`) a region to skip. Breaks when nothing
/// more of the segment can be read.
fn judge_damage(
    reader: &mut Reader<'_>,
    damage: Damage,
    header: &Header,
    file: &Path,
    rules: Rules,
    scan: &mut Scan,
) -> Result<ControlFlow<()>, WalError> {
    let data = reader.data();
    let off = reader.offset();
    match damage {
        // An intact seal that does not end the records before it still
        // ends the segment: what follows it is damage too.
        Damage::Seal(SealDamage::Mismatch { found, .. }) => {
            corruption(rules, scan, file, off, SEAL_LEN, damage.describe())?;
            reader.accept_seal(found);
            scan.seal = Some(found);
            return Ok(ControlFlow::Continue(()));
        }
        Damage::AfterSeal { bytes } => {
            corruption(rules, scan, file, off, bytes, damage.describe())?;
            return Ok(ControlFlow::Break(()));
        }
        _ => {}
    }
    if rules.may_end_in_torn_seal && is_torn_seal(&data[off..], header, reader) {
        scan.torn_seal = Some(off);
        return Ok(ControlFlow::Break(()));
    }
    let protected = reader.records() < rules.protected_records;
    if rules.newest && !protected && is_torn_tail(data, off, &damage, reader.chain()) {
        scan.torn_tail = Some(TornTail {
            file: file.to_path_buf(),
            offset: off as u64,
            bytes_dropped: (data.len() - off) as u64,
            unwritten: data[off..].iter().all(|&byte| byte == 0),
        });
        return Ok(ControlFlow::Break(()));
    }
    // Skip by the record's own length when it is plausible and fits;
    // otherwise no later boundary can be trusted: stop this segment.
    let skip = damage.in_file_extent().unwrap_or(data.len() - off);
    corruption(rules, scan, file, off, skip, damage.describe())?;
    if reader.skip_by_length(&damage) {
        Ok(ControlFlow::Continue(()))
    } else {
        scan.unparseable_tail = true;
        Ok(ControlFlow::Break(()))
    }
}

/// Damage inside a segment: `WalError::Corrupt`, or with `skip_corrupt` a
/// region of `bytes` bytes listed as skipped.
fn corruption(
    rules: Rules,
    scan: &mut Scan,
    file: &Path,
    offset: usize,
    bytes: usize,
    reason: String,
) -> Result<(), WalError> {
    if !rules.skip_corrupt {
        return Err(WalError::Corrupt {
            file: file.to_path_buf(),
            offset: offset as u64,
            reason,
        });
    }
    scan.skipped.push(Corruption {
        file: file.to_path_buf(),
        offset: offset as u64,
        bytes: bytes as u64,
        reason,
    });
    Ok(())
}

/// The bytes from a damaged offset to the end are what a crash while
/// writing the segment's seal leaves: no longer than the seal, and each byte
/// zero or the byte the seal of the records before it would have there.
fn is_torn_seal(tail: &[u8], header: &Header, reader: &Reader<'_>) -> bool {
    let (expected, _) = Seal {
        records: reader.records(),
        chain: reader.next_seed(),
        next: header.number.wrapping_add(1),
    }
    .encode();
    tail.len() <= SEAL_LEN && tail.iter().zip(expected).all(|(&b, e)| b == e || b == 0)
}

/// Damage at `off` in the newest segment is a torn tail (the unfinished last
/// write of a crashed process) only if it looks like one:
///
/// 1. every byte after the damaged record's claimed extent is zero (a
///    partial header or a payload running past end of file claims everything
///    to the end; a garbage length claims only its 8 header bytes), and
/// 2. no record that continues the chain starts anywhere after `off`: in a
///    chained segment, one that verifies seeded with the damaged record's
///    stored CRC field, which is how the genuine next record was written
///    (so a damaged length field cannot swallow the acknowledged records
///    behind it, while records a client embedded in a payload, which cannot
///    know that seed, do not count). In an unchained (version 1) segment
///    any record that verifies counts, as it always did.
///
/// Anything else is corruption of data that may have been acknowledged.
fn is_torn_tail(data: &[u8], off: usize, damage: &Damage, chain: Chain) -> bool {
    let claimed_end = match damage {
        Damage::Record(RecordDamage::PartialHeader { .. })
        | Damage::Record(RecordDamage::PartialPayload { .. }) => data.len(),
        Damage::Record(RecordDamage::BadLength { .. }) => off + RECORD_HEADER_LEN,
        Damage::Record(RecordDamage::BadChecksum { .. }) => {
            off + damage.in_file_extent().unwrap_or(0)
        }
        // A seal is written only once the next segment exists: the newest
        // segment never ends in one that a crash cut.
        Damage::Seal(_) | Damage::AfterSeal { .. } => return false,
    };
    if !data[claimed_end..].iter().all(|&b| b == 0) {
        return false;
    }
    // Fewer than 8 bytes left: no stored CRC, and no room for a record.
    let Some(stored) = damage.stored_crc() else {
        return true;
    };
    let mut budget = SCAN_AHEAD_BUDGET;
    // Running out of budget counts as "found one": the safe answer.
    matches!(
        record::find_record(data, off + 1, &[chain.seed_after(stored)], &mut budget),
        Ok(None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{self, header_bytes, Kind, SEGMENT_HEADER_LEN};

    const SKIP: Rules = Rules {
        newest: false,
        skip_corrupt: true,
        protected_records: 0,
        may_end_in_torn_seal: false,
    };

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let header = header_bytes(1, Kind::Log, 0);
        let mut seed = crc32fast::hash(&header[..28]);
        let mut data = header.to_vec();
        for p in payloads {
            seed = record::encode_into(seed, p, &mut data);
        }
        data
    }

    fn header_of(data: &[u8]) -> Header {
        header::parse_header(data).expect("valid header")
    }

    #[test]
    fn a_damaged_length_cannot_swallow_later_records() {
        let mut data = segment(&[b"first", b"second", b"third"]);
        let header = header_of(&data);
        let off = SEGMENT_HEADER_LEN as usize;
        data[off + 2] = 0x10; // "first" now claims ~1 MiB, past end of file
        let damage = Damage::Record(record::decode(&data[off..], header.first_seed).unwrap_err());
        assert!(!is_torn_tail(&data, off, &damage, Chain::Chained));
        // The same damage on the last record is a torn tail.
        let data = segment(&[b"first", b"second", b"third"]);
        let last = data.len() - (RECORD_HEADER_LEN + 5);
        let second = SEGMENT_HEADER_LEN as usize + RECORD_HEADER_LEN + 5;
        let seed = u32::from_be_bytes(data[second + 4..second + 8].try_into().expect("4"));
        let mut cut = data[..data.len() - 1].to_vec();
        let damage = Damage::Record(record::decode(&cut[last..], seed).unwrap_err());
        assert!(is_torn_tail(&cut, last, &damage, Chain::Chained));
        cut.extend_from_slice(&[0, 0, 0, 1]); // non-zero garbage past the extent
        let damage = Damage::Record(record::decode(&cut[last..], seed).unwrap_err());
        assert!(matches!(
            damage,
            Damage::Record(RecordDamage::BadChecksum { .. })
        ));
        assert!(!is_torn_tail(&cut, last, &damage, Chain::Chained));
    }

    #[test]
    fn skip_corrupt_skips_by_length_or_stops() {
        let mut data = segment(&[b"aaaa", b"bbbb", b"cccc"]);
        let header = header_of(&data);
        let second = SEGMENT_HEADER_LEN as usize + 12;
        data[second + 9] ^= 0x40; // payload bit of "bbbb"
        let mut seen = Vec::new();
        let found = scan(&data, &header, Path::new("x"), SKIP, &mut |p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .expect("skip_corrupt replays past the damage");
        assert_eq!(seen, [b"aaaa".to_vec(), b"cccc".to_vec()]);
        assert_eq!(found.skipped.len(), 1);
        assert_eq!(found.skipped[0].offset, second as u64);
        assert_eq!(found.skipped[0].bytes, 12);
        assert!(!found.unparseable_tail);

        let mut data = segment(&[b"aaaa", b"bbbb", b"cccc"]);
        data[second] = 0xff; // implausible length: no boundary to trust
        let mut seen = 0;
        let found = scan(&data, &header, Path::new("x"), SKIP, &mut |_| {
            seen += 1;
            Ok(())
        })
        .expect("skip_corrupt stops the segment");
        assert_eq!(seen, 1);
        assert_eq!(found.skipped[0].bytes, 24);
        assert!(found.unparseable_tail);
    }
}
