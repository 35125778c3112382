//! ringkv: a small Cassandra-style replicated key-value store.
//!
//! Four replicas (by default) on a static byte-ordered ring, keys 0-255,
//! string values, three copies of each key, and a consistency level (ONE,
//! QUORUM, ALL) chosen per request. `docs/ARCHITECTURE.md` walks through
//! the layers below; each imports only the ones listed after it.

#![warn(missing_docs)]

pub mod client;
pub mod cluster;
pub mod cmd;
pub mod coordinator;
pub mod metrics;
pub mod ops;
pub mod protocol;
pub mod server;
pub mod storage;
