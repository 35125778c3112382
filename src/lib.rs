//! ringkv: a small Cassandra-style replicated key-value store.
//!
//! Four replicas (by default) on a static byte-ordered ring, keys 0-255,
//! string values, three copies of each key, and a consistency level (ONE,
//! QUORUM, ALL) chosen per request. See README.md for the map of modules.

#![warn(missing_docs)]

pub mod anti_entropy;
pub mod client;
pub mod clock;
pub mod clock_fence;
pub mod clock_lease;
pub mod cmd;
pub mod console;
pub mod coordinator;
pub mod describe;
pub mod durable_file;
pub mod error;
pub mod frame;
pub mod framed;
pub mod hints;
pub mod histogram;
pub mod identity;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod mux;
pub mod node;
pub mod peers;
pub mod proto;
pub mod read_plan;
pub mod rebuild;
pub mod repair_mode;
pub mod replica;
pub mod ring;
pub mod rt;
pub mod secret;
pub mod shutdown;
pub mod store;
