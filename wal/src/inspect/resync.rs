//! Where reading goes on after damage of unknown extent: the first later
//! offset where a record continues the chain (seeded with the damaged
//! record's CRC field or the seed before it), or where a pair of chained
//! records picks the chain up again. Replay never does this; it is for
//! showing people as much of a damaged segment as can be found.

use std::ops::ControlFlow;

use byteorder::{BigEndian, ByteOrder};

use super::entries::damaged_region;
use super::InspectedEntry;
use crate::decode::{Damage, Reader};
use crate::record::{self, Chain, RECORD_HEADER_LEN};

/// Upper bound on checksum work spent searching for the next record after
/// damage, for one whole segment. Past it, the rest of the segment is
/// reported as one damaged region.
pub(super) const SEARCH_BUDGET: usize = 256 * 1024 * 1024;

/// Damage of unknown extent at the reader's offset: a region up to the
/// first later offset where the chain can be picked up again (the reader
/// resumes there), or to the end of the file.
pub(super) fn resync_after(
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

#[cfg(test)]
mod tests {
    use super::super::inspect_segment;
    use super::super::tests::{offsets, reason_of, segment_with};
    use super::*;
    use crate::header::Kind;

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
}
