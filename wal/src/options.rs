//! The tuning knobs a log is opened with: their own module, so that
//! opening (`log`) and replaying (`replay`) share them without importing
//! each other.

/// Tuning knobs for [`Wal::open`](crate::Wal::open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// A segment is closed and a new one started when the next batch would
    /// push it past this many bytes (header included). A batch is never
    /// split, so a segment holding a single oversized batch can exceed it.
    pub segment_max_bytes: u64,
    /// Replay past corrupt records instead of failing, listing each skipped
    /// region in [`ReplayReport::skipped`](crate::ReplayReport::skipped). For operator-driven recovery only:
    /// skipped records are lost.
    pub skip_corrupt: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_max_bytes: 64 * 1024 * 1024,
            skip_corrupt: false,
        }
    }
}
