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
    /// Bytes each new segment is made long before it takes records (0:
    /// none). A spare file this long is zero-filled and synced ahead of
    /// time by a thread of its own and becomes the next segment at rotation
    /// or checkpoint, so appends inside it overwrite allocated blocks in
    /// place and each `fdatasync` flushes data only, not the file's size.
    /// A segment that outgrows it grows as any other. See the README's
    /// "Preallocated segments".
    pub preallocate_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_max_bytes: 64 * 1024 * 1024,
            skip_corrupt: false,
            preallocate_bytes: 0,
        }
    }
}
