//! The one error type of the crate, and the reports replay hands back.
//!
//! This module only describes outcomes; it never performs I/O or decides
//! what damage means.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong opening or appending to a WAL. Each variant
/// is a distinct kind a caller can match on; messages name the file (and
/// offset, where there is one) so an operator can go and look.
#[derive(Debug)]
#[non_exhaustive]
pub enum WalError {
    /// An operating-system call failed on `path`.
    Io {
        /// The file or directory the call was made on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another handle (in this process or another) holds the directory's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A record that is not a torn tail failed its checks, or a segment's
    /// seal or chain says records are gone (a sealed segment cut short, the
    /// segment a seal names missing, a segment that does not continue the
    /// one before it): acknowledged data may be damaged or lost, so open
    /// refuses to continue (see `Options::skip_corrupt`).
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the damaged record within the file.
        offset: u64,
        /// What exactly was wrong.
        reason: String,
    },
    /// A segment's name or header is not what this crate writes (wrong magic,
    /// unsupported version, number not matching the file name, torn header on
    /// a segment that is not the newest).
    BadHeader {
        /// The segment file.
        file: PathBuf,
        /// What exactly was wrong.
        reason: String,
    },
    /// Segment numbers are not contiguous from 1: replaying past the gap
    /// would silently lose the records of the missing segment.
    MissingSegment {
        /// The WAL directory.
        dir: PathBuf,
        /// The number that should have been present.
        expected: u32,
        /// The next number that is present.
        found: u32,
    },
    /// The caller's `on_record` callback rejected a record during replay.
    Replay {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the rejected record within the file.
        offset: u64,
        /// The callback's message.
        message: String,
    },
    /// `append_batch` was given an empty payload; empty records are refused so
    /// that a zero-filled region can never be mistaken for one.
    EmptyPayload {
        /// Position of the payload within the batch.
        index: usize,
    },
    /// `append_batch` was given a payload above [`crate::MAX_RECORD_BYTES`].
    PayloadTooLarge {
        /// Position of the payload within the batch.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The disk (or the user's quota) is full. Unlike a failed fsync this
    /// is recoverable in place: whatever part of the write landed was cut
    /// off again, so the log ends exactly where it ended before, nothing in
    /// the failed batch is durable, and a later append may succeed once
    /// space is freed. The WAL is not poisoned.
    DiskFull {
        /// The file being written or created.
        path: PathBuf,
    },
    /// An earlier append failed to write or fsync; the WAL refuses every
    /// further append until it is reopened (which repairs the tail).
    Poisoned {
        /// The WAL directory.
        dir: PathBuf,
        /// The error that poisoned it.
        cause: String,
    },
}

impl WalError {
    /// Whether this is an operating-system error saying the disk or the
    /// quota is full.
    pub(crate) fn is_no_space(&self) -> bool {
        match self {
            WalError::Io { source, .. } => is_no_space(source),
            WalError::DiskFull { .. } => true,
            _ => false,
        }
    }

    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> WalError {
        WalError::Io {
            path: path.into(),
            source,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_no_space(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || error.kind() == io::ErrorKind::QuotaExceeded
        || matches!(error.raw_os_error(), Some(28) | Some(122))
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { path, source } => {
                write!(f, "WAL I/O error on {}: {source}", path.display())
            }
            WalError::Locked { path } => write!(
                f,
                "WAL is locked by another open handle: {}",
                path.display()
            ),
            WalError::Corrupt { file, offset, reason } => write!(
                f,
                "WAL corrupt: {} at offset {offset}: {reason}",
                file.display()
            ),
            WalError::BadHeader { file, reason } => {
                write!(f, "WAL segment {} is invalid: {reason}", file.display())
            }
            WalError::MissingSegment { dir, expected, found } => write!(
                f,
                "WAL {}: segment {expected:020}.wal is missing (next present is {found:020}.wal); \
                 refusing to replay across the gap",
                dir.display()
            ),
            WalError::Replay { file, offset, message } => write!(
                f,
                "WAL replay aborted: record at {} offset {offset} was rejected: {message}",
                file.display()
            ),
            WalError::EmptyPayload { index } => write!(
                f,
                "WAL append refused: payload {index} of the batch is empty"
            ),
            WalError::PayloadTooLarge { index, len } => write!(
                f,
                "WAL append refused: payload {index} of the batch is {len} bytes, above the {} byte limit",
                crate::MAX_RECORD_BYTES
            ),
            WalError::DiskFull { path } => write!(
                f,
                "disk full: no space to write {} (nothing from this write was kept; appends go on once space is freed)",
                path.display()
            ),
            WalError::Poisoned { dir, cause } => write!(
                f,
                "WAL {} refuses appends after an earlier failed write or fsync ({cause}); \
                 reopen it to recover",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What replay found and did, so the server can log it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records handed to `on_record`.
    pub records: u64,
    /// Segment files read (0 for a freshly created WAL).
    pub segments: u32,
    /// The incomplete final write that was cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Damaged regions skipped because `Options::skip_corrupt` was set.
    pub skipped: Vec<Corruption>,
    /// The complete checkpoint replay started from, if the log has one.
    pub checkpoint: Option<CheckpointStart>,
    /// Segments older than that checkpoint, obsolete, deleted at open (a
    /// crash interrupted the deletions that follow a checkpoint).
    pub stale_segments_removed: u32,
    /// A checkpoint whose writing a crash interrupted, deleted at open;
    /// replay used the segments before it instead.
    pub incomplete_checkpoint: Option<IncompleteCheckpoint>,
    /// A rotation a crash interrupted between creating the new segment and
    /// sealing the one before it: that segment was cut where its records
    /// end (dropping a partial seal, if any) and sealed at open.
    pub rotation_finished: Option<TornTail>,
}

/// The checkpoint segment replay started from: everything before it was
/// restated by its first `records` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStart {
    /// Its segment number.
    pub segment: u32,
    /// Records the checkpoint holds (records appended after it not counted).
    pub records: u32,
}

/// A checkpoint segment that did not hold all its records at open: the
/// crash came before its fdatasync returned, so the segments before it were
/// all still there and replayed instead. The file was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteCheckpoint {
    /// The deleted segment file.
    pub file: PathBuf,
    /// Records its header promised.
    pub records: u32,
    /// Its length when deleted.
    pub bytes_dropped: u64,
    /// The first record that was missing or damaged, and why.
    pub reason: String,
}

impl fmt::Display for IncompleteCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WAL incomplete checkpoint removed: {} ({} bytes, {} records promised): {}",
            self.file.display(),
            self.bytes_dropped,
            self.records,
            self.reason
        )
    }
}

/// An incomplete final write found at the end of the newest segment and
/// truncated away. Expected after a crash; never an acknowledged record
/// unless the disk itself damaged the last record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file that was truncated.
    pub file: PathBuf,
    /// The new length of the file: where the incomplete record began.
    pub offset: u64,
    /// Bytes removed.
    pub bytes_dropped: u64,
    /// Every byte removed was zero: space preallocated for records that
    /// never came (what a replica killed with a preallocated segment
    /// leaves), or a write none of whose bytes reached the disk. Either
    /// way no record was cut off (unless the disk acknowledged a flush it
    /// never made, which no software can see).
    pub unwritten: bool,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unwritten {
            return write!(
                f,
                "WAL {}: {} bytes of zeros after the last record (offset {}) cut off: preallocated space \
                 never written, or a write that never reached the disk",
                self.file.display(),
                self.bytes_dropped,
                self.offset,
            );
        }
        write!(
            f,
            "WAL torn tail repaired: {} truncated at offset {}, {} bytes of an incomplete write dropped",
            self.file.display(),
            self.offset,
            self.bytes_dropped
        )
    }
}

/// A damaged region that replay stepped over (only with `skip_corrupt`).
/// Records inside it are lost; this is the record of that loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The segment file.
    pub file: PathBuf,
    /// Offset of the first damaged byte.
    pub offset: u64,
    /// Bytes skipped (to the next record boundary, or to end of file when no
    /// boundary can be trusted).
    pub bytes: u64,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WAL corruption skipped: {} at offset {}, {} bytes: {}",
            self.file.display(),
            self.offset,
            self.bytes,
            self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_full_disk_or_quota_is_told_from_other_errors() {
        for code in [28, 122] {
            let error = io::Error::from_raw_os_error(code);
            assert!(is_no_space(&error), "errno {code}");
            assert!(WalError::io("f", error).is_no_space(), "errno {code}");
        }
        assert!(is_no_space(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(is_no_space(&io::Error::from(io::ErrorKind::QuotaExceeded)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(5))); // EIO
        assert!(!is_no_space(&io::Error::other("no")));
        assert!(WalError::DiskFull { path: "f".into() }.is_no_space());
        assert!(!WalError::Locked { path: "f".into() }.is_no_space());
        assert!(!WalError::io("f", io::Error::from_raw_os_error(5)).is_no_space());
    }

    /// Each error's message contains each of its parts, and only an I/O
    /// error has a source.
    fn assert_messages(cases: Vec<(WalError, &[&str])>) {
        for (error, parts) in cases {
            let text = error.to_string();
            for part in parts {
                assert!(text.contains(part), "{text:?} lacks {part:?}");
            }
            assert_eq!(
                error.source().is_some(),
                matches!(error, WalError::Io { .. })
            );
        }
    }

    #[test]
    fn errors_about_files_name_the_file_and_offset() {
        let file = PathBuf::from("/d/00000000000000000007.wal");
        let cases: Vec<(WalError, &[&str])> = vec![
            (
                WalError::io(&file, io::Error::other("boom")),
                &["I/O error", "00000000000000000007.wal", "boom"],
            ),
            (
                WalError::Locked {
                    path: "/d/LOCK".into(),
                },
                &["locked", "/d/LOCK"],
            ),
            (
                WalError::Corrupt {
                    file: file.clone(),
                    offset: 42,
                    reason: "why".into(),
                },
                &["corrupt", "00000000000000000007.wal", "offset 42", "why"],
            ),
            (
                WalError::BadHeader {
                    file: file.clone(),
                    reason: "why".into(),
                },
                &["invalid", "00000000000000000007.wal", "why"],
            ),
            (
                WalError::MissingSegment {
                    dir: "/d".into(),
                    expected: 6,
                    found: 7,
                },
                &[
                    "/d",
                    "00000000000000000006.wal is missing",
                    "00000000000000000007.wal",
                ],
            ),
            (
                WalError::Replay {
                    file: file.clone(),
                    offset: 9,
                    message: "no".into(),
                },
                &["rejected", "00000000000000000007.wal", "offset 9", "no"],
            ),
        ];
        assert_messages(cases);
    }

    #[test]
    fn errors_about_input_or_state_say_which_and_what_to_do() {
        let file = PathBuf::from("/d/00000000000000000007.wal");
        let cases: Vec<(WalError, &[&str])> = vec![
            (WalError::EmptyPayload { index: 3 }, &["payload 3", "empty"]),
            (
                WalError::PayloadTooLarge { index: 2, len: 99 },
                &["payload 2", "99 bytes", "67108864"],
            ),
            (
                WalError::DiskFull { path: file.clone() },
                &["disk full", "00000000000000000007.wal"],
            ),
            (
                WalError::Poisoned {
                    dir: "/d".into(),
                    cause: "fsync failed".into(),
                },
                &["/d", "fsync failed", "reopen"],
            ),
        ];
        assert_messages(cases);
    }

    #[test]
    fn reports_say_file_offset_and_size() {
        let file = PathBuf::from("/d/00000000000000000002.wal");
        for unwritten in [false, true] {
            let torn = TornTail {
                file: file.clone(),
                offset: 100,
                bytes_dropped: 7,
                unwritten,
            }
            .to_string();
            for part in ["00000000000000000002.wal", "offset 100", "7 bytes"] {
                assert!(torn.contains(part), "{torn}");
            }
            assert_eq!(torn.contains("zeros"), unwritten, "{torn}");
        }
        let skipped = Corruption {
            file: file.clone(),
            offset: 5,
            bytes: 12,
            reason: "why".into(),
        }
        .to_string();
        for part in ["00000000000000000002.wal", "offset 5", "12 bytes", "why"] {
            assert!(skipped.contains(part), "{skipped}");
        }
        let incomplete = IncompleteCheckpoint {
            file,
            records: 4,
            bytes_dropped: 60,
            reason: "why".into(),
        }
        .to_string();
        for part in ["00000000000000000002.wal", "60 bytes", "4 records", "why"] {
            assert!(incomplete.contains(part), "{incomplete}");
        }
    }
}
