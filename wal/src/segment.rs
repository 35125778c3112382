//! One segment file: creating it durably, rewriting a torn header,
//! truncating it, finishing its seal, removing it, and reading it past the
//! page cache.
//!
//! This module never decides what damage means and never looks at more than
//! one segment: the header's bytes live in `header`, the recovery policy in
//! `replay`, the directory in `dir`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::dir::file_name;
use crate::error::WalError;
use crate::header::{
    check_header, header_bytes, parse_header, Header, HeaderCheck, Kind, SEGMENT_HEADER_LEN,
};

/// Creates segment `number` of `kind`, continuing the chain from
/// `continues`, durably: header written, file synced, directory synced.
/// Returns the file positioned just after its header, and the header.
///
/// With a `spare` (a zero-filled file prepared ahead, at `spare_path`),
/// the header is written over its first bytes and synced, and only then is
/// the spare given the segment's name (a link, which never replaces an
/// existing file, then the spare's name removed): a crash leaves either a
/// spare, which open deletes, or a complete header followed by zeros, which
/// replay reads as a segment with no records.
pub(crate) fn create(
    dir: &Path,
    number: u32,
    kind: Kind,
    continues: u32,
    spare: Option<(File, &Path)>,
) -> Result<(File, Header), WalError> {
    let path = dir.join(file_name(number));
    let bytes = header_bytes(number, kind, continues);
    let file = match spare {
        None => {
            let mut file = crate::fault::create_new(&path).map_err(|e| WalError::io(&path, e))?;
            crate::fault::write_all(&mut file, &bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| WalError::io(&path, e))?;
            file
        }
        Some((mut file, spare_path)) => {
            let linked = crate::fault::write_all(&mut file, &bytes)
                .and_then(|()| file.sync_data())
                .map_err(|e| WalError::io(spare_path, e))
                .and_then(|()| {
                    std::fs::hard_link(spare_path, &path).map_err(|e| WalError::io(&path, e))
                });
            // Linked, the file is the segment; not linked, it is no longer
            // a prepared spare. Either way its spare name goes.
            let unnamed = std::fs::remove_file(spare_path).map_err(|e| WalError::io(spare_path, e));
            linked.and(unnamed)?;
            file
        }
    };
    crate::dir::sync(dir)?;
    let header = parse_header(&bytes).map_err(|reason| WalError::BadHeader {
        file: path.clone(),
        reason: format!("this build wrote a header it cannot parse: {reason}"),
    })?;
    Ok((file, header))
}

/// Replaces a torn header (crash during `create`) with a complete log
/// segment header, durably, and returns it. A torn checkpoint header becomes
/// an empty log segment: the checkpoint never started, and the segments
/// before it still hold the log. `continues` is the chain value the
/// segment before it ends with (0 if there is none).
pub(crate) fn rewrite_header(dir: &Path, number: u32, continues: u32) -> Result<Header, WalError> {
    let path = dir.join(file_name(number));
    let mut file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    let bytes = header_bytes(number, Kind::Log, continues);
    file.set_len(0)
        .and_then(|()| file.write_all(&bytes))
        .and_then(|()| file.sync_all())
        .map_err(|e| WalError::io(&path, e))?;
    crate::dir::sync(dir)?;
    parse_header(&bytes).map_err(|reason| WalError::BadHeader {
        file: path,
        reason: format!("this build wrote a header it cannot parse: {reason}"),
    })
}

/// Cuts `path` to `len` bytes and makes the new length durable.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        .map_err(|e| WalError::io(path, e))
}

/// Cuts `path` to `len` bytes, appends `bytes` and makes both durable:
/// finishing a seal that a crash interrupted.
pub(crate) fn write_at_end(path: &Path, len: u64, bytes: &[u8]) -> Result<(), WalError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| {
            f.set_len(len)?;
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| WalError::io(path, e))
}

/// Path of segment `number` in `dir`.
pub(crate) fn path(dir: &Path, number: u32) -> PathBuf {
    dir.join(file_name(number))
}

/// Reads the first bytes of segment `number` at `path` (up to a version 2
/// header's worth) and checks them.
pub(crate) fn read_header(path: &Path, number: u32) -> Result<HeaderCheck, WalError> {
    let file = File::open(path).map_err(|e| WalError::io(path, e))?;
    let len = file.metadata().map_err(|e| WalError::io(path, e))?.len();
    let mut start = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
    file.take(SEGMENT_HEADER_LEN)
        .read_to_end(&mut start)
        .map_err(|e| WalError::io(path, e))?;
    Ok(check_header(&start, len, number))
}

/// Reads a whole segment file as the disk holds it, not as the page cache
/// remembers it. Replay holds one segment in memory at a time.
///
/// First the file is fsynced (so that no page is dirty), then on Linux
/// `posix_fadvise(POSIX_FADV_DONTNEED)` drops its cached pages, so the read
/// goes to the disk. This matters after a failed `fdatasync`: Linux may keep
/// the pages that failed to reach the disk in the cache, marked clean, and a
/// plain read would serve records that are not on disk. What this does not
/// cover is listed in the crate README ("Page cache after a failed fsync").
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, WalError> {
    let mut file = File::open(path).map_err(|e| WalError::io(path, e))?;
    file.sync_all().map_err(|e| WalError::io(path, e))?;
    drop_cached_pages(&file).map_err(|e| WalError::io(path, e))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| WalError::io(path, e))?;
    Ok(data)
}

/// What this changes is visible only after a writeback failed (pages the
/// disk lost would otherwise be read from the cache): no test here can
/// tell it from `Ok(())`, a mutant left standing on purpose.
#[cfg(target_os = "linux")]
fn drop_cached_pages(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    /// `POSIX_FADV_DONTNEED` from `<fcntl.h>` on Linux (every architecture).
    const POSIX_FADV_DONTNEED: i32 = 4;
    extern "C" {
        fn posix_fadvise(fd: i32, offset: i64, len: i64, advice: i32) -> i32;
    }
    // SAFETY: `fd` is an open descriptor owned by `file` for the whole call;
    // posix_fadvise reads no memory of ours. offset 0, len 0 = whole file.
    let rc = unsafe { posix_fadvise(file.as_raw_fd(), 0, 0, POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        // posix_fadvise returns the error number instead of setting errno.
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

#[cfg(not(target_os = "linux"))]
fn drop_cached_pages(_file: &File) -> std::io::Result<()> {
    Ok(())
}

/// Removes segment `number` and fsyncs the directory, so that the removal
/// is durable before anything else happens.
pub(crate) fn remove(dir: &Path, number: u32) -> Result<(), WalError> {
    let path = path(dir, number);
    std::fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
    crate::dir::sync(dir)
}
