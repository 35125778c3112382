//! The one place the crate's appending writes and new segment files go
//! through, so that unit tests can make them fail the way a full disk does
//! (ENOSPC before the file exists, or after part of the bytes landed).
//! Outside `cfg(test)` these are `write_all` and `create_new`, nothing more.
//!
//! Nothing here decides what a failure means: `log` takes a failed write
//! back or poisons the log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Creates the file at `path`, which must not exist, for writing from its
/// start.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    #[cfg(test)]
    if no_space::spend(1) == Some(0) {
        return Err(io::Error::from_raw_os_error(28)); // ENOSPC
    }
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Writes all of `bytes` to `file`.
pub(crate) fn write_all(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    #[cfg(test)]
    if let Some(room) = no_space::spend(bytes.len()) {
        file.write_all(&bytes[..room])?;
        return Err(io::Error::from_raw_os_error(28)); // ENOSPC
    }
    file.write_all(bytes)
}

/// The test seam: after `no_space::after(n)`, writes on this thread behave
/// as on a disk with `n` bytes left: the write that does not fit lands what
/// fits, fails with ENOSPC, and disarms the seam. With no room at all, even
/// a new file cannot be created; creating one otherwise costs a byte.
#[cfg(test)]
pub(crate) mod no_space {
    use std::cell::Cell;

    thread_local! {
        static ROOM: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Leaves `bytes` bytes of room for the writes on this thread.
    pub(crate) fn after(bytes: usize) {
        ROOM.with(|room| room.set(Some(bytes)));
    }

    /// Takes `len` bytes of room. `Some(fits)` when they do not fit: the
    /// write lands `fits` bytes and fails; the seam is then disarmed.
    pub(super) fn spend(len: usize) -> Option<usize> {
        ROOM.with(|room| match room.get() {
            Some(left) if left < len => {
                room.set(None);
                Some(left)
            }
            Some(left) => {
                room.set(Some(left - len));
                None
            }
            None => None,
        })
    }
}
