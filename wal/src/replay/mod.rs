//! Replay and repair at open: which segments are live, replaying them in
//! order, and the torn-tail policy that tells a crashed write from damage.
//!
//! This module owns every decision `Wal::open` makes about what is on disk
//! (after etcd's `repair.go`). It never appends, and it modifies the
//! directory only after every live record has been replayed: truncating a
//! torn tail, rewriting a torn header, finishing an interrupted rotation,
//! deleting an incomplete checkpoint and the stale segments before a
//! complete one.
//!
//! This file is the recovery driver; each step is its own module:
//! `plan` (which segments are live, every header checked before any record
//! is replayed), `scan` (one segment's records and what damage in them
//! means), `chain` (the checks between segments: seals and continues) and
//! `repair` (the changes on disk, last).

mod chain;
mod plan;
mod repair;
mod scan;

use std::path::{Path, PathBuf};

use self::chain::{EndAction, Previous, Scanned};
use self::plan::{Live, Plan, Rotation};
use self::scan::{Rules, Scan};
use crate::dir;
use crate::error::{ReplayReport, WalError};
use crate::header::{Header, Kind, FORMAT_VERSION_1};
use crate::options::Options;
use crate::seal::{Seal, SEAL_LEN};
use crate::segment;

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
    /// What open reports to the caller.
    pub report: ReplayReport,
    /// Where appends go.
    pub append_at: AppendAt,
    /// Bytes of every live segment before the one appends go to.
    pub sealed_bytes: u64,
}

/// Replays the WAL in `dir` (already created and locked), applies the
/// recovery rules, and says where appends go.
pub(crate) fn recover(
    dir: &Path,
    options: &Options,
    on_record: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<Recovered, WalError> {
    let numbers = dir::segment_numbers(dir)?;
    let Some(&newest) = numbers.last() else {
        return Ok(Recovered {
            report: ReplayReport::default(),
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
    let Plan {
        live,
        base_checkpoint,
        stale,
        incomplete,
    } = plan::live_segments(dir, &numbers)?;
    let mut replay = Replay {
        dir,
        options,
        newest,
        newest_live: live.len().saturating_sub(1),
        rotation: plan::unfinished_rotation(dir, &live)?,
        found: Found::default(),
    };
    for (index, segment) in live.into_iter().enumerate() {
        replay.segment(index, segment, on_record)?;
    }
    let mut found = replay.found;
    let below = found.previous.as_ref();
    chain::check_incomplete_checkpoint(incomplete.as_ref(), below, options, &mut found.report)?;
    // Everything replayed: now, and only now, repair.
    repair::repair(dir, newest, found, incomplete, base_checkpoint, stale)
}

/// Replaying the live segments, oldest first.
struct Replay<'a> {
    dir: &'a Path,
    options: &'a Options,
    /// The newest segment on disk (the only one that may have a torn tail).
    newest: u32,
    /// Index of the newest live segment (not the newest on disk when an
    /// incomplete checkpoint was dropped).
    newest_live: usize,
    rotation: Option<Rotation>,
    found: Found,
}

/// What replay found, before anything is repaired.
#[derive(Debug, Default)]
struct Found {
    report: ReplayReport,
    sealed_bytes: u64,
    append_at: Option<AppendAt>,
    /// The newest segment, whose header is torn: it holds no records.
    torn_header: Option<u32>,
    /// A seal a crash kept from being written: (file, where it goes, seal).
    to_seal: Option<(PathBuf, u64, Seal)>,
    /// The last segment replayed.
    previous: Option<Previous>,
}

impl Replay<'_> {
    /// Replays live segment `index` and checks it against the one before.
    fn segment(
        &mut self,
        index: usize,
        live: Live,
        on_record: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), WalError> {
        self.found.report.segments += 1;
        let (number, header, data) = match live {
            Live::TornHeader { number } => {
                self.found.torn_header = Some(number);
                return Ok(());
            }
            Live::Valid {
                number,
                header,
                data,
            } => (number, header, data),
        };
        let path = segment::path(self.dir, number);
        let data = match data {
            Some(data) => data,
            None => segment::read(&path)?,
        };
        chain::check_continues(
            &header,
            &path,
            self.found.previous.as_ref(),
            self.options,
            &mut self.found.report,
        )?;
        let rotating = self.rotation.filter(|r| r.sealing == number);
        let rules = self.rules(index, number, &header, rotating);
        let scan = scan::scan(&data, &header, &path, rules, on_record)?;
        let len = self.add_to_report(&scan, data.len());
        let scanned = Scanned {
            number,
            path: &path,
            header: &header,
            newest: index == self.newest_live,
            file_len: data.len(),
            scan: &scan,
        };
        let end = chain::segment_end(&scanned, rotating, self.options, &mut self.found.report)?;
        let len = self.follow_end(end.action, &path, len);
        self.place_appends(&scanned, len)?;
        self.found.previous = Some(Previous {
            number,
            path,
            end_chain: end.chain,
        });
        Ok(())
    }

    /// How damage in live segment `index` is judged.
    fn rules(
        &self,
        index: usize,
        number: u32,
        header: &Header,
        rotating: Option<Rotation>,
    ) -> Rules {
        Rules {
            newest: number == self.newest,
            skip_corrupt: self.options.skip_corrupt,
            // A checkpoint is only ever the base (the first live segment).
            // Its records are never a torn tail: complete, they are all
            // intact; incomplete and not droppable, their damage is
            // corruption.
            protected_records: match (index, header.kind) {
                (0, Kind::Checkpoint { records }) => u64::from(records),
                _ => 0,
            },
            may_end_in_torn_seal: rotating.is_some_and(|r| r.continues.is_some()),
        }
    }

    /// Adds what the scan of a `file_len`-byte segment found to the report,
    /// and returns how many of its bytes stay the log's (all but a torn
    /// tail).
    fn add_to_report(&mut self, scan: &Scan, file_len: usize) -> u64 {
        let report = &mut self.found.report;
        report.records += scan.records;
        report.skipped.extend(scan.skipped.iter().cloned());
        match &scan.torn_tail {
            Some(torn) => {
                report.torn_tail = Some(torn.clone());
                torn.offset
            }
            None => file_len as u64,
        }
    }

    /// Does what the way segment `path` ends calls for; returns how many of
    /// its bytes are the log's once that is done (`len` plus a seal still
    /// to be written).
    fn follow_end(&mut self, action: EndAction, path: &Path, len: u64) -> u64 {
        match action {
            EndAction::None => len,
            EndAction::FreshAfterSeal { next, continues } => {
                self.found.sealed_bytes += len;
                self.found.append_at = Some(AppendAt::Fresh {
                    number: next,
                    continues,
                });
                len
            }
            EndAction::FinishSeal { at, seal } => {
                self.found.to_seal = Some((path.to_path_buf(), at, seal));
                at + SEAL_LEN as u64
            }
        }
    }

    /// Counts a segment the log moved past (`len` bytes of it are the
    /// log's), or says where appends go after the newest one.
    fn place_appends(&mut self, segment: &Scanned<'_>, len: u64) -> Result<(), WalError> {
        let found = &mut self.found;
        let scan = segment.scan;
        if !segment.newest {
            found.sealed_bytes += len;
        } else if found.append_at.is_some() {
            // Already set: a sealed newest segment.
        } else if scan.unparseable_tail || segment.header.version == FORMAT_VERSION_1 {
            // Appending behind bytes replay cannot parse would hide the new
            // records from the next replay; a version 1 segment is never
            // appended to (new records are always chained). Either way a
            // fresh segment starts, and these bytes stay as they are.
            found.sealed_bytes += len;
            found.append_at = Some(AppendAt::Fresh {
                number: dir::next_number(self.dir, segment.number)?,
                continues: scan.next_seed,
            });
        } else {
            found.append_at = Some(AppendAt::End {
                number: segment.number,
                len,
                next_seed: scan.next_seed,
                records: scan.records,
                sealable: segment.header.sealable(),
            });
        }
        Ok(())
    }
}
