//! The cluster layer: this replica among the others. The static ring and
//! key placement, whose data a data directory holds, the links to peers with their up/down view and the
//! agreement on who they are, hints for peers that missed writes,
//! anti-entropy, rebuilding after lost data, and the repair mode. It uses
//! `storage`, `protocol` and `ops`, never the coordinator or the server.

pub mod anti_entropy;
pub mod hints;
pub mod identity;
pub mod membership;
pub mod peers;
pub mod rebuild;
pub mod repair_mode;
pub mod replica_write;
pub mod ring;
