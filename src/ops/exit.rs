//! The exit codes a replica process ends with, besides 0 (stopped) and 1
//! (could not start), so that scripts and supervisors can tell them apart.

/// A write to a log (the WAL or the hints log) failed after it may have
/// been partly made durable: the page cache can no longer be trusted, so
/// the process stops and a restart replays the log from disk.
pub const EXIT_WAL_FAILED: i32 = 3;
