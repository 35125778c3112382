#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod decode;
mod dir;
mod error;
mod fault;
mod header;
mod inspect;
mod log;
mod options;
mod record;
mod replay;
mod seal;
mod segment;
mod spare;

pub use crate::dir::{create_durably, LOCK_FILE};
pub use crate::error::{
    CheckpointStart, Corruption, IncompleteCheckpoint, ReplayReport, TornTail, WalError,
};
pub use crate::header::{FORMAT_VERSION, MAGIC, SEGMENT_HEADER_LEN};
pub use crate::inspect::{
    inspect_segment, segment_number_from_name, InspectedEntry, SegmentHeader, SegmentInspection,
};
pub use crate::log::Wal;
pub use crate::options::Options;
pub use crate::record::{MAX_RECORD_BYTES, RECORD_HEADER_LEN};
