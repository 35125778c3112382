//! ringkv's write-ahead log.
//!
//! A replica appends every write here, makes it durable with `fdatasync`,
//! and only then applies and acknowledges it; on start it replays the log.
//! The WAL knows bytes only: payloads are opaque.
//!
//! # On-disk format (version 1)
//!
//! A WAL is a directory:
//!
//! ```text
//! LOCK                        lock file (exclusive advisory lock while open)
//! 00000000000000000001.wal    segment 1
//! 00000000000000000002.wal    segment 2, ...
//! ```
//!
//! Segment names are the segment number as 20 zero-padded decimal digits
//! followed by `.wal`. Numbers start at 1 and have no gaps. Other files are
//! ignored. All integers are big-endian.
//!
//! A segment is a 16-byte header followed by records, back to back, with
//! no padding:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "RKVWAL\r\n" (52 4B 56 57 41 4C 0D 0A)
//!      8     4  format version, u32 = 1
//!     12     4  segment number, u32, equal to the number in the file name
//!     16     …  records
//! ```
//!
//! A record:
//!
//! ```text
//! offset  size  field
//!      0     4  payload length L, u32, 1 ..= 64 MiB
//!      4     4  CRC-32 (IEEE, as crc32fast/zlib) of bytes 0..4 then the payload
//!      8     L  payload
//! ```
//!
//! The checksum covers the length field, so a damaged length is detected.
//! Empty payloads are refused at append, so a length of 0 is always damage
//! (typically a zero-filled tail); in addition, the CRC of four zero bytes
//! is `0x2144df1c`, not 0, so a run of zeros never checks out as a record.
//! A length above [`MAX_RECORD_BYTES`] is damage too and is never allocated.
//!
//! # Durability
//!
//! * [`Wal::append_batch`] encodes the whole batch into one buffer, issues
//!   one `write`, then one `fdatasync`; it returns only after both succeed.
//! * A new segment is created with its header written, the file `fsync`ed,
//!   then the directory `fsync`ed, before any record goes into it.
//! * A failed write or fsync poisons the [`Wal`]: see
//!   [`WalError::Poisoned`] and [`Wal::append_batch`].
//!
//! # Recovery rules (applied by [`Wal::open`])
//!
//! * Missing or empty directory: create it and segment 1.
//! * Segments are replayed in number order. A gap, or a first segment other
//!   than 1, is [`WalError::MissingSegment`]. Wrong magic, version or number
//!   is [`WalError::BadHeader`].
//! * The newest segment may end in a *torn tail*, the unfinished write of a
//!   crashed process: a partial record header, a payload running past end
//!   of file, a checksum failure on the final record, or a zero-filled tail.
//!   Damage counts as a torn tail only if every byte after the damaged
//!   record's claimed extent is zero *and* no intact record starts anywhere
//!   after it. It is truncated away (`set_len` + `fsync`) and reported in
//!   [`ReplayReport::torn_tail`].
//! * The newest segment may be shorter than its header (crash while
//!   creating it) holding a prefix of its header or zeros: its header is
//!   rewritten and this is reported as a torn tail at offset 0.
//! * Any other damage, including any damage in an older segment, is
//!   [`WalError::Corrupt`]. With [`Options::skip_corrupt`] the damaged
//!   record is skipped by its own length when that length is plausible and
//!   fits in the file; otherwise the rest of the segment is skipped. Either
//!   way the region is listed in [`ReplayReport::skipped`]. If the newest
//!   segment ends in such an unparseable region, appends go to a fresh
//!   segment, leaving the damaged bytes in place.
//!
//! # What this crate never does
//!
//! * Interpret payloads, or hand `on_record` a record whose checksum failed.
//! * Split a batch across segments, or acknowledge an append before
//!   `fdatasync` returned.
//! * Retry an fsync, or append after one failed.
//! * Skip damage silently: every dropped byte is in the [`ReplayReport`].
//! * Delete segments (there is no compaction yet), or modify anything but
//!   the newest segment's torn tail or torn header.
//!
//! # Costs and limits
//!
//! * Replay reads one whole segment into memory at a time (at most
//!   `segment_max_bytes` plus one batch).
//! * Telling a torn tail from corruption may scan ahead for an intact
//!   record; that work is capped at 256 MiB of checksumming, past which the
//!   damage is conservatively reported as [`WalError::Corrupt`].
//! * Without batch framing, a crash that persisted a *later* page of the
//!   final unsynced write but not an earlier one (possible on some file
//!   systems) leaves intact records behind a hole and is reported as
//!   [`WalError::Corrupt`], not repaired: the safe direction. An operator
//!   can recover with [`Options::skip_corrupt`].

#![deny(missing_docs)]

mod dir;
mod error;
mod inspect;
mod log;
mod record;
mod replay;
mod segment;

pub use crate::dir::LOCK_FILE;
pub use crate::error::{
    CheckpointStart, Corruption, IncompleteCheckpoint, ReplayReport, TornTail, WalError,
};
pub use crate::inspect::{
    inspect_segment, segment_number_from_name, InspectedEntry, SegmentHeader, SegmentInspection,
};
pub use crate::log::{Options, Wal};
pub use crate::record::{MAX_RECORD_BYTES, RECORD_HEADER_LEN};
pub use crate::segment::{FORMAT_VERSION, MAGIC, SEGMENT_HEADER_LEN};
