//! Replay and repair at open: which segments are live, replaying them in
//! order, and the torn-tail policy that tells a crashed write from damage.
//!
//! This module owns every decision `Wal::open` makes about what is on disk
//! (after etcd's `repair.go`). It never appends, and it modifies the
//! directory only after every live record has been replayed: truncating a
//! torn tail, rewriting a torn header, deleting an incomplete checkpoint and
//! the stale segments before a complete one.

use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{
    CheckpointStart, Corruption, IncompleteCheckpoint, ReplayReport, TornTail, WalError,
};
use crate::options::Options;
use std::ops::ControlFlow;

use crate::decode::{Damage, Entry, Layout, Reader};
use crate::record::{self, Chain, Damage as RecordDamage, RECORD_HEADER_LEN};
use crate::seal::{FoundSeal, Seal, SealDamage, SEAL_LEN};
use crate::segment::{self, Header, HeaderCheck, Kind, FORMAT_VERSION_1, SCAN_AHEAD_BUDGET};

/// Where appends go after replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendAt {
    /// Continue at the end of this existing segment, which holds `records`
    /// records and gets a seal when the log moves past it if `sealable`.
    End {
        number: u32,
        len: u64,
        next_seed: u32,
        records: u64,
        sealable: bool,
    },
    /// Create this segment, continuing the chain from `continues` (none is
    /// usable: empty directory, version 1, unparseable or sealed newest
    /// segment).
    Fresh { number: u32, continues: u32 },
}

/// What replay found, and where to append.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub report: ReplayReport,
    pub append_at: AppendAt,
    /// Bytes of every live segment before the one appends go to.
    pub sealed_bytes: u64,
}

/// A live segment found by [`live_segments`].
#[derive(Debug)]
enum Live {
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
struct Plan {
    /// Oldest first: a base (segment 1 or a checkpoint) and every segment
    /// after it, contiguous.
    live: Vec<Live>,
    /// The base is a checkpoint whose records are all intact.
    base_checkpoint: Option<CheckpointStart>,
    /// Segments before the base: obsolete once the base is a complete
    /// checkpoint.
    stale: Vec<u32>,
    /// The newest segment: a checkpoint that was never completed, and the
    /// chain value its header continues from.
    incomplete: Option<(u32, IncompleteCheckpoint, Option<u32>)>,
}

/// Replays the WAL in `dir` (already created and locked), applies the
/// recovery rules, and says where appends go.
pub(crate) fn recover(
    dir: &Path,
    options: &Options,
    on_record: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<Recovered, WalError> {
    let numbers = dir::segment_numbers(dir)?;
    let mut report = ReplayReport::default();
    let Some(&newest) = numbers.last() else {
        return Ok(Recovered {
            report,
            append_at: AppendAt::Fresh {
                number: 1,
                continues: 0,
            },
            sealed_bytes: 0,
        });
    };
    // Every header is checked (and the base found) before any record is
    // replayed, so a bad segment late in the log fails open before the
    // caller has applied anything.
    let plan = live_segments(dir, &numbers)?;
    let rotation = unfinished_rotation(dir, &plan.live)?;

    let mut sealed_bytes = 0;
    let mut append_at = None;
    let mut torn_header = None;
    // A seal a crash kept from being written: (file, where it goes, seal).
    let mut to_seal = None;
    let mut previous: Option<Previous> = None;
    let newest_live = plan.live.len().saturating_sub(1);
    for (index, live) in plan.live.into_iter().enumerate() {
        report.segments += 1;
        let (number, header, data) = match live {
            Live::TornHeader { number } => {
                torn_header = Some(number);
                continue;
            }
            Live::Valid {
                number,
                header,
                data,
            } => (number, header, data),
        };
        let path = segment::path(dir, number);
        let data = match data {
            Some(data) => data,
            None => segment::read(&path)?,
        };
        check_continues(&header, &path, previous.as_ref(), options, &mut report)?;
        // A checkpoint is only ever the base (the first live segment). Its
        // records are never a torn tail: complete, they are all intact;
        // incomplete and not droppable, their damage is corruption.
        let protected_records = match (index, header.kind) {
            (0, Kind::Checkpoint { records }) => u64::from(records),
            _ => 0,
        };
        let rotating = rotation.filter(|r| r.sealing == number);
        let rules = Rules {
            newest: number == newest,
            skip_corrupt: options.skip_corrupt,
            protected_records,
            may_end_in_torn_seal: rotating.is_some_and(|r| r.continues.is_some()),
        };
        let scan = scan(&data, &header, &path, rules, on_record)?;
        report.records += scan.records;
        report.skipped.extend(scan.skipped.iter().cloned());
        let mut len = data.len() as u64;
        if let Some(torn) = scan.torn_tail {
            len = torn.offset;
            report.torn_tail = Some(torn);
        }
        let mut end_chain = Some(scan.next_seed);
        if let Some(found) = &scan.seal {
            end_chain = Some(found.crc);
            if index == newest_live {
                // Sealed, so the log went on in the next segment: it is
                // gone (typically the newest segment, deleted).
                let next = found.seal.next;
                fault(
                    options,
                    &mut report,
                    &path,
                    found.offset as u64,
                    0,
                    format!(
                        "segment {next} ({}) is missing: segment {number} is sealed at offset {} \
                         and names {next} as its successor, so the records written there are lost",
                        crate::dir::file_name(next),
                        found.offset
                    ),
                )?;
                sealed_bytes += len;
                append_at = Some(AppendAt::Fresh {
                    number: next,
                    continues: found.crc,
                });
            }
        } else if header.sealable() && index < newest_live && !scan.unparseable_tail {
            // The log moved past this segment, so it was sealed; unless a
            // crash interrupted the rotation that seals it, its end is gone.
            let seal = Seal {
                records: scan.records,
                chain: scan.next_seed,
                next: number.wrapping_add(1),
            };
            let (_, crc) = seal.encode();
            if rotating.is_some_and(|r| r.continues.is_none_or(|c| c == crc)) {
                to_seal = Some((path.clone(), scan.records_end as u64, seal));
                len = (scan.records_end + SEAL_LEN) as u64;
                end_chain = Some(crc);
            } else {
                let offset = scan.torn_seal.unwrap_or(data.len());
                fault(
                    options,
                    &mut report,
                    &path,
                    offset as u64,
                    (data.len() - offset) as u64,
                    format!(
                        "segment {number} ends without its seal, but segment {} follows: \
                         the end of this segment was cut off and the records it held are lost",
                        number.wrapping_add(1)
                    ),
                )?;
                end_chain = None;
            }
        }
        if index < newest_live {
            sealed_bytes += len;
        } else if append_at.is_some() {
            // Set above: a sealed newest segment.
        } else if scan.unparseable_tail || header.version == FORMAT_VERSION_1 {
            // Appending behind bytes replay cannot parse would hide the new
            // records from the next replay; a version 1 segment is never
            // appended to (new records are always chained). Either way a
            // fresh segment starts, and these bytes stay as they are.
            sealed_bytes += len;
            append_at = Some(AppendAt::Fresh {
                number: next_number(dir, number)?,
                continues: scan.next_seed,
            });
        } else {
            append_at = Some(AppendAt::End {
                number,
                len,
                next_seed: scan.next_seed,
                records: scan.records,
                sealable: header.sealable(),
            });
        }
        previous = Some(Previous {
            number,
            path,
            end_chain,
        });
    }
    if let (Some((_, incomplete, Some(continues))), Some(below)) = (&plan.incomplete, &previous) {
        // The checkpoint was created right after the segment before it was
        // last synced, so it continues from where that segment ends.
        match below.end_chain {
            Some(end) if end != *continues => fault(
                options,
                &mut report,
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
            )?,
            _ => {}
        }
    }

    // Everything replayed: now, and only now, repair.
    if let Some(torn) = &report.torn_tail {
        segment::truncate(&torn.file, torn.offset)?;
    }
    if let Some(number) = torn_header {
        // A crash while creating the segment: it holds no records. Its
        // header is written before the seal of the segment before it, as
        // rotation does, so a crash here is the same crash again.
        let path = segment::path(dir, number);
        let len = std::fs::metadata(&path)
            .map_err(|e| WalError::io(&path, e))?
            .len();
        let continues = previous.as_ref().and_then(|p| p.end_chain).unwrap_or(0);
        let header = segment::rewrite_header(dir, number, continues)?;
        report.torn_tail = Some(TornTail {
            file: path,
            offset: 0,
            bytes_dropped: len,
        });
        append_at = Some(AppendAt::End {
            number,
            len: header.len as u64,
            next_seed: header.first_seed,
            records: 0,
            sealable: true,
        });
    }
    if let Some((path, at, seal)) = to_seal {
        let len = std::fs::metadata(&path)
            .map_err(|e| WalError::io(&path, e))?
            .len();
        segment::write_at_end(&path, at, &seal.encode().0)?;
        report.rotation_finished = Some(TornTail {
            file: path,
            offset: at,
            bytes_dropped: len - at,
        });
    }
    if let Some((number, incomplete, _)) = plan.incomplete {
        segment::remove(dir, number)?;
        report.incomplete_checkpoint = Some(incomplete);
        // Appends go on where the log was before the checkpoint began: at
        // the end of the segment before it (or, if that one cannot take
        // appends, in a fresh segment that takes the checkpoint's number).
    }
    if plan.base_checkpoint.is_some() {
        // Oldest first, so that what is left is always a contiguous run
        // ending at the checkpoint.
        for number in plan.stale {
            segment::remove(dir, number)?;
            report.stale_segments_removed += 1;
        }
    }
    report.checkpoint = plan.base_checkpoint;
    let append_at = append_at.unwrap_or(AppendAt::Fresh {
        number: next_number(dir, newest)?,
        continues: 0,
    });
    Ok(Recovered {
        report,
        append_at,
        sealed_bytes,
    })
}

/// The segment replayed before the current one.
#[derive(Debug)]
struct Previous {
    number: u32,
    path: PathBuf,
    /// The chain value it ends with (its seal's CRC if sealed); `None` when
    /// its end was already reported as damaged.
    end_chain: Option<u32>,
}

/// A rotation a crash interrupted: the newest segment was created (or was
/// being created) but the one before it, `sealing`, was not sealed yet.
#[derive(Debug, Clone, Copy)]
struct Rotation {
    sealing: u32,
    /// The newest segment's chain value, which the seal must produce;
    /// `None` when its header is torn.
    continues: Option<u32>,
}

/// The rotation a crash may have interrupted: the newest live segment (not
/// the first, so a log segment) holds nothing but a header (or a torn
/// header) and the one before it is version 3. Whether it really was a crash (the seal the
/// segment would get matches what the newest header continues from) is
/// decided once that segment has been replayed.
fn unfinished_rotation(dir: &Path, live: &[Live]) -> Result<Option<Rotation>, WalError> {
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
            let len = std::fs::metadata(&path)
                .map_err(|e| WalError::io(&path, e))?
                .len();
            match header.continues {
                Some(continues) if len == header.len as u64 => Some(continues),
                _ => return Ok(None),
            }
        }
    };
    Ok(Some(Rotation {
        sealing: *sealing,
        continues,
    }))
}

/// A version 3 segment after another must continue the chain that one ends
/// with; otherwise it is not the segment that followed it.
fn check_continues(
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
            segment::CONTINUES_OFFSET,
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
fn live_segments(dir: &Path, numbers: &[u32]) -> Result<Plan, WalError> {
    let mut plan = Plan::default();
    let Some(&newest) = numbers.last() else {
        return Ok(plan);
    };
    for index in (0..numbers.len()).rev() {
        let number = numbers[index];
        let path = segment::path(dir, number);
        let below = index.checked_sub(1).map(|i| numbers[i]);
        let header = match segment::read_header(&path, number)? {
            HeaderCheck::Valid(header) => header,
            HeaderCheck::Torn if number == newest => {
                plan.live.push(Live::TornHeader { number });
                check_contiguous(dir, number, below)?;
                if below.is_none() {
                    break;
                }
                continue;
            }
            HeaderCheck::Torn => {
                return Err(WalError::BadHeader {
                    file: path,
                    reason: "torn header in a segment that is not the newest".to_string(),
                })
            }
            HeaderCheck::Invalid(reason) => return Err(WalError::BadHeader { file: path, reason }),
        };
        let Kind::Checkpoint { records } = header.kind else {
            plan.live.push(Live::Valid {
                number,
                header,
                data: None,
            });
            check_contiguous(dir, number, below)?;
            if below.is_none() {
                break;
            }
            continue;
        };
        let data = segment::read(&path)?;
        match checkpoint_damage(&data, &header) {
            None => {
                plan.live.push(Live::Valid {
                    number,
                    header,
                    data: Some(data),
                });
                plan.base_checkpoint = Some(CheckpointStart {
                    segment: number,
                    records,
                });
                plan.stale = numbers[..index].to_vec();
                break;
            }
            Some(reason) if number == newest && below == number.checked_sub(1) => {
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
            }
            Some(_) => {
                // Cannot be a crash: let the scan report the damage.
                plan.live.push(Live::Valid {
                    number,
                    header,
                    data: Some(data),
                });
                plan.stale = numbers[..index].to_vec();
                break;
            }
        }
    }
    plan.live.reverse();
    Ok(plan)
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

fn next_number(dir: &Path, current: u32) -> Result<u32, WalError> {
    current.checked_add(1).ok_or_else(|| {
        WalError::io(
            dir,
            std::io::Error::other("segment numbers exhausted (u32::MAX reached)"),
        )
    })
}

/// What scanning one segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub records: u64,
    /// A torn tail to truncate (newest segment only). Not yet applied.
    pub torn_tail: Option<TornTail>,
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
    use crate::segment::{header_bytes, SEGMENT_HEADER_LEN};

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
        segment::parse_header(data).expect("valid header")
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
