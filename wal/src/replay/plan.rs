//! Which segments are live, decided before any record is replayed: the
//! base replay starts from (segment 1 or the newest complete checkpoint),
//! the contiguous run after it with every header checked, a newest
//! checkpoint a crash left incomplete, the stale segments a complete one
//! made obsolete, and a rotation a crash may have interrupted.
//!
//! This module reads headers and checks a checkpoint's records; it never
//! replays a record and never modifies anything.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use crate::decode::{Entry, Layout, Reader};
use crate::error::{CheckpointStart, IncompleteCheckpoint, WalError};
use crate::header::{Header, HeaderCheck, Kind};
use crate::record::Damage as RecordDamage;
use crate::segment;

/// A live segment found by [`live_segments`].
#[derive(Debug)]
pub(super) enum Live {
    /// Valid header; `data` kept when it was already read (a checkpoint
    /// checked for completeness).
    Valid {
        number: u32,
        header: Header,
        data: Option<Vec<u8>>,
    },
    /// The newest segment, holding only part of a header.
    TornHeader { number: u32 },
}

/// Which segments replay reads, and what else is on disk.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Oldest first: a base (segment 1 or a checkpoint) and every segment
    /// after it, contiguous.
    pub live: Vec<Live>,
    /// The base is a checkpoint whose records are all intact.
    pub base_checkpoint: Option<CheckpointStart>,
    /// Segments before the base: obsolete once the base is a complete
    /// checkpoint.
    pub stale: Vec<u32>,
    /// The newest segment: a checkpoint that was never completed, and the
    /// chain value its header continues from.
    pub incomplete: Option<(u32, IncompleteCheckpoint, Option<u32>)>,
}

/// Finds the base replay starts from and the live segments after it,
/// checking every live header and the numbering:
///
/// * walking down from the newest segment, the first checkpoint segment
///   whose records are all intact is the base;
/// * the newest segment, when it is an incomplete checkpoint and the
///   segment before it exists, is dropped: a crash interrupted the
///   checkpoint before it was synced, so nothing older was deleted yet;
/// * with no complete checkpoint the base must be segment 1 (otherwise
///   [`WalError::MissingSegment`]); an incomplete checkpoint that cannot be
///   dropped is the base, and its damage is reported as corruption;
/// * from the base up, numbers must be contiguous.
pub(super) fn live_segments(dir: &Path, numbers: &[u32]) -> Result<Plan, WalError> {
    let mut plan = Plan::default();
    let Some(&newest) = numbers.last() else {
        return Ok(plan);
    };
    for index in (0..numbers.len()).rev() {
        let number = numbers[index];
        let below = index.checked_sub(1).map(|i| numbers[i]);
        let walk = match live_header(dir, number, newest)? {
            None => {
                plan.live.push(Live::TornHeader { number });
                down_to_segment_1(dir, number, below)?
            }
            Some(header) => match header.kind {
                Kind::Log => {
                    plan.live.push(Live::Valid {
                        number,
                        header,
                        data: None,
                    });
                    down_to_segment_1(dir, number, below)?
                }
                Kind::Checkpoint { records } => {
                    checkpoint_segment(dir, &mut plan, numbers, index, header, records)?
                }
            },
        };
        if walk.is_break() {
            break;
        }
    }
    plan.live.reverse();
    Ok(plan)
}

/// The header of live segment `number`, checked; `None` when it is torn,
/// which only the newest segment may be.
fn live_header(dir: &Path, number: u32, newest: u32) -> Result<Option<Header>, WalError> {
    let path = segment::path(dir, number);
    match segment::read_header(&path, number)? {
        HeaderCheck::Valid(header) => Ok(Some(header)),
        HeaderCheck::Torn if number == newest => Ok(None),
        HeaderCheck::Torn => Err(WalError::BadHeader {
            file: path,
            reason: "torn header in a segment that is not the newest".to_string(),
        }),
        HeaderCheck::Invalid(reason) => Err(WalError::BadHeader { file: path, reason }),
    }
}

/// Below a live segment that is not a checkpoint the walk goes on down to
/// segment 1, with no gap in the numbers.
fn down_to_segment_1(
    dir: &Path,
    number: u32,
    below: Option<u32>,
) -> Result<ControlFlow<()>, WalError> {
    check_contiguous(dir, number, below)?;
    Ok(match below {
        None => ControlFlow::Break(()),
        Some(_) => ControlFlow::Continue(()),
    })
}

/// Checkpoint segment `numbers[index]` of `records` records: complete, it
/// is the base and the walk stops; the newest, incomplete, with the segment
/// numbered just before it present, is dropped (a crash interrupted it) and
/// the walk goes on; otherwise it cannot be a crash and is the base all the
/// same, its damage left for the scan to report.
fn checkpoint_segment(
    dir: &Path,
    plan: &mut Plan,
    numbers: &[u32],
    index: usize,
    header: Header,
    records: u32,
) -> Result<ControlFlow<()>, WalError> {
    let number = numbers[index];
    let newest = numbers.last() == Some(&number);
    let below = index.checked_sub(1).map(|i| numbers[i]);
    let path = segment::path(dir, number);
    let data = segment::read(&path)?;
    match checkpoint_damage(&data, &header) {
        None => {
            plan.base_checkpoint = Some(CheckpointStart {
                segment: number,
                records,
            });
        }
        Some(reason) if newest && below == number.checked_sub(1) => {
            plan.incomplete = Some((
                number,
                IncompleteCheckpoint {
                    file: path,
                    records,
                    bytes_dropped: data.len() as u64,
                    reason,
                },
                header.continues,
            ));
            return Ok(ControlFlow::Continue(()));
        }
        Some(_) => {}
    }
    plan.live.push(Live::Valid {
        number,
        header,
        data: Some(data),
    });
    plan.stale = numbers[..index].to_vec();
    Ok(ControlFlow::Break(()))
}

/// Segment `number` is live and not a checkpoint: the one `below` it must
/// be `number - 1`, and with none below it must be segment 1. The segment
/// named missing is the one right before `number`: the one it continues
/// from (a deleted checkpoint, typically), not segment 1.
fn check_contiguous(dir: &Path, number: u32, below: Option<u32>) -> Result<(), WalError> {
    match below {
        None if number == 1 => Ok(()),
        None => Err(WalError::MissingSegment {
            dir: dir.to_path_buf(),
            expected: number - 1,
            found: number,
        }),
        Some(lower) if lower.checked_add(1) == Some(number) => Ok(()),
        Some(lower) => Err(WalError::MissingSegment {
            dir: dir.to_path_buf(),
            expected: lower.saturating_add(1),
            found: number,
        }),
    }
}

/// `None` if all the records a checkpoint segment's header promises are
/// intact; otherwise what is wrong with the first one that is not.
fn checkpoint_damage(data: &[u8], header: &Header) -> Option<String> {
    let Kind::Checkpoint { records } = header.kind else {
        return None;
    };
    let mut reader = Reader::new(data, Layout::of(header));
    while reader.records() < u64::from(records) {
        let index = reader.records();
        let off = reader.offset();
        let reason = match reader.next_entry() {
            Some(Ok(Entry::Record { .. })) => continue,
            Some(Ok(Entry::Seal(_))) => "a seal ends the segment first".to_string(),
            Some(Err(damage)) => damage.describe(),
            None => RecordDamage::PartialHeader { available: 0 }.describe(),
        };
        return Some(format!(
            "checkpoint record {index} of {records} at offset {off}: {reason}"
        ));
    }
    None
}

/// A rotation a crash interrupted: the newest segment was created (or was
/// being created) but the one before it, `sealing`, was not sealed yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rotation {
    /// The segment before the newest, which the rotation was sealing.
    pub sealing: u32,
    /// The newest segment's chain value, which the seal must produce;
    /// `None` when its header is torn.
    pub continues: Option<u32>,
}

/// The rotation a crash may have interrupted: the newest live segment (not
/// the first, so a log segment) holds nothing but a header (or a torn
/// header) and the one before it is version 3. Whether it really was a
/// crash (the seal the segment would get matches what the newest header
/// continues from) is decided once that segment has been replayed.
pub(super) fn unfinished_rotation(dir: &Path, live: &[Live]) -> Result<Option<Rotation>, WalError> {
    let [.., Live::Valid {
        number: sealing,
        header: below,
        ..
    }, last] = live
    else {
        return Ok(None);
    };
    if !below.sealable() {
        return Ok(None);
    }
    let continues = match last {
        Live::TornHeader { .. } => None,
        // Not the first live segment, so not a checkpoint: a log segment.
        Live::Valid { number, header, .. } => {
            let path = segment::path(dir, *number);
            match header.continues {
                Some(continues) if holds_only_header(&path, header.len as u64)? => Some(continues),
                _ => return Ok(None),
            }
        }
    };
    Ok(Some(Rotation {
        sealing: *sealing,
        continues,
    }))
}

/// Whether the segment at `path` holds its `header_len`-byte header and
/// nothing else: no more bytes, or (a preallocated segment) only zeros.
/// Reads only until the first byte that is not zero.
fn holds_only_header(path: &Path, header_len: u64) -> Result<bool, WalError> {
    let read = || -> std::io::Result<bool> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(header_len))?;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                return Ok(true);
            }
            if chunk[..n].iter().any(|&byte| byte != 0) {
                return Ok(false);
            }
        }
    };
    read().map_err(|e| WalError::io(path, e))
}
