//! The storage layer: one replica's own data and clock. The in-memory store
//! of newest versions, the durable store that logs every write to the `wal`
//! crate before applying it, the write clock with its lease on disk and its
//! fence, and small files replaced whole.
//! It knows nothing of peers or the ring; it uses `protocol` (versions and
//! errors) and `ops`.

pub mod clock;
pub mod clock_fence;
pub mod clock_lease;
pub mod durable;
pub mod durable_file;
pub mod group_commit;
pub mod paxos;
pub mod store;
