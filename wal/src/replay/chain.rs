//! The checks between segments, which no single segment can make: every
//! version 3 segment the log moved past ends with a seal (unless a crash
//! interrupted the rotation that writes it), the newest one has none, each
//! version 3 header continues the chain the segment before it ends with,
//! and an incomplete checkpoint continues from where the segment before it
//! still ends.
//!
//! This module decides and reports; it modifies nothing (a seal to finish
//! is handed to `repair`).

use std::path::{Path, PathBuf};

use super::plan::Rotation;
use super::scan::Scan;
use crate::error::{Corruption, IncompleteCheckpoint, ReplayReport, WalError};
use crate::header::{self, Header};
use crate::options::Options;
use crate::seal::Seal;

/// The segment replayed before the current one.
#[derive(Debug)]
pub(super) struct Previous {
    /// Its number.
    pub number: u32,
    /// Its file.
    pub path: PathBuf,
    /// The chain value it ends with (its seal's CRC if sealed); `None` when
    /// its end was already reported as damaged.
    pub end_chain: Option<u32>,
}

/// A segment just scanned, as the checks between segments see it.
pub(super) struct Scanned<'a> {
    /// Its number.
    pub number: u32,
    /// Its file.
    pub path: &'a Path,
    /// Its (valid) header.
    pub header: &'a Header,
    /// The newest live segment (the last replayed).
    pub newest: bool,
    /// Bytes in the file.
    pub file_len: usize,
    /// What scanning its records found.
    pub scan: &'a Scan,
}

/// What a segment's end means for the log.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SegmentEnd {
    /// The chain value it ends with; `None` when its end was reported as
    /// damaged.
    pub chain: Option<u32>,
    /// What follows from it.
    pub action: EndAction,
}

/// What follows from how a segment ends.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EndAction {
    /// Nothing.
    None,
    /// The newest segment is sealed, so the segment it names is missing:
    /// appends go to a fresh one of that number, continuing the seal.
    FreshAfterSeal { next: u32, continues: u32 },
    /// A crash came between the two steps of a rotation: this seal goes at
    /// offset `at`, after the records.
    FinishSeal { at: u64, seal: Seal },
}

/// Checks how `segment` ends: sealed where it must be, unsealed where it
/// must not be, or a rotation a crash interrupted (`rotating`: the
/// rotation that would seal this segment, if the newest segment says one
/// was under way).
pub(super) fn segment_end(
    segment: &Scanned<'_>,
    rotating: Option<Rotation>,
    options: &Options,
    report: &mut ReplayReport,
) -> Result<SegmentEnd, WalError> {
    let scan = segment.scan;
    if let Some(found) = &scan.seal {
        let action = if segment.newest {
            newest_sealed(segment, found.seal.next, found.offset, options, report)?;
            EndAction::FreshAfterSeal {
                next: found.seal.next,
                continues: found.crc,
            }
        } else {
            EndAction::None
        };
        return Ok(SegmentEnd {
            chain: Some(found.crc),
            action,
        });
    }
    if !segment.header.sealable() || segment.newest || scan.unparseable_tail {
        return Ok(SegmentEnd {
            chain: Some(scan.next_seed),
            action: EndAction::None,
        });
    }
    // The log moved past this segment, so it was sealed; unless a crash
    // interrupted the rotation that seals it, its end is gone.
    let seal = Seal {
        records: scan.records,
        chain: scan.next_seed,
        next: segment.number.wrapping_add(1),
    };
    let (_, crc) = seal.encode();
    if rotating.is_some_and(|r| r.continues.is_none_or(|c| c == crc)) {
        return Ok(SegmentEnd {
            chain: Some(crc),
            action: EndAction::FinishSeal {
                at: scan.records_end as u64,
                seal,
            },
        });
    }
    missing_seal(segment, options, report)?;
    Ok(SegmentEnd {
        chain: None,
        action: EndAction::None,
    })
}

/// The newest segment is sealed, so the log went on in the segment it
/// names: that one is gone (typically the newest segment, deleted).
fn newest_sealed(
    segment: &Scanned<'_>,
    next: u32,
    seal_offset: usize,
    options: &Options,
    report: &mut ReplayReport,
) -> Result<(), WalError> {
    fault(
        options,
        report,
        segment.path,
        seal_offset as u64,
        0,
        format!(
            "segment {next} ({}) is missing: segment {} is sealed at offset {seal_offset} \
             and names {next} as its successor, so the records written there are lost",
            crate::dir::file_name(next),
            segment.number,
        ),
    )
}

/// A segment the log moved past ends without its seal: its end was cut
/// off (at a record boundary, or inside the seal).
fn missing_seal(
    segment: &Scanned<'_>,
    options: &Options,
    report: &mut ReplayReport,
) -> Result<(), WalError> {
    let offset = segment.scan.torn_seal.unwrap_or(segment.file_len);
    fault(
        options,
        report,
        segment.path,
        offset as u64,
        (segment.file_len - offset) as u64,
        format!(
            "segment {} ends without its seal, but segment {} follows: \
             the end of this segment was cut off and the records it held are lost",
            segment.number,
            segment.number.wrapping_add(1)
        ),
    )
}

/// A version 3 segment after another must continue the chain that one ends
/// with; otherwise it is not the segment that followed it.
pub(super) fn check_continues(
    header: &Header,
    path: &Path,
    previous: Option<&Previous>,
    options: &Options,
    report: &mut ReplayReport,
) -> Result<(), WalError> {
    let (Some(continues), Some(previous)) = (header.continues, previous) else {
        return Ok(());
    };
    match previous.end_chain {
        Some(end) if end != continues => fault(
            options,
            report,
            path,
            header::CONTINUES_OFFSET,
            0,
            format!(
                "segment {} continues the chain from {continues:#010x}, but segment {} ({}) ends \
                 with {end:#010x}: this is not the segment that followed it",
                header.number,
                previous.number,
                previous.path.display()
            ),
        ),
        _ => Ok(()),
    }
}

/// The incomplete checkpoint was created right after the segment before it
/// was last synced, so it continues from where that segment ends; if it
/// does not, that segment lost records since.
pub(super) fn check_incomplete_checkpoint(
    incomplete: Option<&(u32, IncompleteCheckpoint, Option<u32>)>,
    below: Option<&Previous>,
    options: &Options,
    report: &mut ReplayReport,
) -> Result<(), WalError> {
    let (Some((_, incomplete, Some(continues))), Some(below)) = (incomplete, below) else {
        return Ok(());
    };
    match below.end_chain {
        Some(end) if end != *continues => fault(
            options,
            report,
            &below.path,
            0,
            0,
            format!(
                "segment {} ends with chain value {end:#010x}, but the incomplete checkpoint \
                 {} written after it continues from {continues:#010x}: the end of segment {} \
                 was cut off",
                below.number,
                incomplete.file.display(),
                below.number
            ),
        ),
        _ => Ok(()),
    }
}

/// Damage replay found outside a record: an error, or with `skip_corrupt`
/// a skipped region in the report (loudly, by the caller).
fn fault(
    options: &Options,
    report: &mut ReplayReport,
    file: &Path,
    offset: u64,
    bytes: u64,
    reason: String,
) -> Result<(), WalError> {
    if !options.skip_corrupt {
        return Err(WalError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason,
        });
    }
    report.skipped.push(Corruption {
        file: file.to_path_buf(),
        offset,
        bytes,
        reason,
    });
    Ok(())
}
