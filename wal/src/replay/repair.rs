//! What open changes on disk, once every live record was replayed and
//! nothing failed: truncating a torn tail, rewriting a torn header,
//! writing the seal an interrupted rotation left out, deleting an
//! incomplete checkpoint, and deleting the stale segments a complete
//! checkpoint made obsolete (oldest first).
//!
//! Nothing here decides what is damaged; it carries out what replay found,
//! and says where appends go.

use std::path::Path;

use super::{AppendAt, Found, Recovered};
use crate::dir;
use crate::error::{CheckpointStart, IncompleteCheckpoint, TornTail, WalError};
use crate::seal::Seal;
use crate::segment;

/// Carries out the repairs `found` calls for, and those the plan made
/// (an `incomplete` newest checkpoint to drop, `stale` segments to delete
/// when there is a `base_checkpoint`), and says where appends go.
pub(super) fn repair(
    dir: &Path,
    newest: u32,
    found: Found,
    incomplete: Option<(u32, IncompleteCheckpoint, Option<u32>)>,
    base_checkpoint: Option<CheckpointStart>,
    stale: Vec<u32>,
) -> Result<Recovered, WalError> {
    let Found {
        mut report,
        sealed_bytes,
        mut append_at,
        torn_header,
        to_seal,
        previous,
    } = found;
    if let Some(torn) = &report.torn_tail {
        segment::truncate(&torn.file, torn.offset)?;
    }
    if let Some(number) = torn_header {
        let continues = previous.as_ref().and_then(|p| p.end_chain).unwrap_or(0);
        let (torn, appends) = rewrite_torn_header(dir, number, continues)?;
        report.torn_tail = Some(torn);
        append_at = Some(appends);
    }
    if let Some((path, at, seal)) = to_seal {
        report.rotation_finished = Some(finish_rotation(&path, at, seal)?);
    }
    if let Some((number, incomplete, _)) = incomplete {
        segment::remove(dir, number)?;
        report.incomplete_checkpoint = Some(incomplete);
        // Appends go on where the log was before the checkpoint began: at
        // the end of the segment before it (or, if that one cannot take
        // appends, in a fresh segment that takes the checkpoint's number).
    }
    if base_checkpoint.is_some() {
        // Oldest first, so that what is left is always a contiguous run
        // ending at the checkpoint.
        for number in stale {
            segment::remove(dir, number)?;
            report.stale_segments_removed += 1;
        }
    }
    report.checkpoint = base_checkpoint;
    let append_at = append_at.unwrap_or(AppendAt::Fresh {
        number: dir::next_number(dir, newest)?,
        continues: 0,
    });
    Ok(Recovered {
        report,
        append_at,
        sealed_bytes,
    })
}

/// A crash while creating segment `number`: it holds no records. Its header
/// is rewritten, continuing from `continues` (where the segment before it
/// ends), before the seal of the segment before it is written, as rotation
/// does, so a crash here is the same crash again. Returns the torn tail to
/// report and where appends go.
fn rewrite_torn_header(
    dir: &Path,
    number: u32,
    continues: u32,
) -> Result<(TornTail, AppendAt), WalError> {
    let path = segment::path(dir, number);
    let len = std::fs::metadata(&path)
        .map_err(|e| WalError::io(&path, e))?
        .len();
    let header = segment::rewrite_header(dir, number, continues)?;
    let torn = TornTail {
        file: path,
        offset: 0,
        bytes_dropped: len,
        // A torn header is a crash while creating a segment, whatever its
        // bytes: report it as such.
        unwritten: false,
    };
    let appends = AppendAt::End {
        number,
        len: header.len as u64,
        next_seed: header.first_seed,
        records: 0,
        sealable: true,
    };
    Ok((torn, appends))
}

/// Writes the seal a crash between the two steps of a rotation left out, at
/// offset `at` of `path` (cutting any partial seal), and says what it
/// replaced.
fn finish_rotation(path: &Path, at: u64, seal: Seal) -> Result<TornTail, WalError> {
    let len = std::fs::metadata(path)
        .map_err(|e| WalError::io(path, e))?
        .len();
    segment::write_at_end(path, at, &seal.encode().0)?;
    Ok(TornTail {
        file: path.to_path_buf(),
        offset: at,
        bytes_dropped: len - at,
        unwritten: false,
    })
}
