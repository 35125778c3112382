//! The spare: a file zero-filled and synced ahead of time by a thread of
//! its own, which becomes the next segment at rotation or checkpoint.
//!
//! Why: appending to a file that grows changes its size, so every
//! `fdatasync` must write the inode as well as the data (on ext4, a second
//! synchronous write per sync). Appending inside blocks that are already
//! allocated and written changes no metadata, so the sync flushes data
//! only. Preparing the file on another thread keeps the zero-filling off
//! the path of the batch that triggers the rotation.
//!
//! The spare is never part of the log: its name is not a segment's, so
//! replay ignores it, and opening the log deletes one a crash left. It
//! becomes a segment only once its header is written and synced (see
//! `segment::create`). Nothing here decides when a segment is created.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::error::WalError;

/// The spare's file name in the log directory (not a segment's name).
pub(crate) const SPARE_NAME: &str = "spare.tmp";

/// Zeros are written in pieces this large.
const CHUNK: usize = 1 << 20;

/// Free space the file system must keep beyond the spare, as a multiple of
/// its size, for the spare to be prepared at all: on a nearly full disk the
/// log's own appends come first.
const FREE_SPACE_FACTOR: u64 = 4;

/// The spare being prepared, or none (preallocation off, or between a
/// spare being taken and the next one started).
#[derive(Debug)]
pub(crate) struct Spare {
    dir: PathBuf,
    bytes: u64,
    preparing: Option<JoinHandle<io::Result<File>>>,
    /// A spare whose thread `wait` joined, not taken yet.
    ready: Option<File>,
}

impl Spare {
    /// Deletes a spare a crash left in `dir` and starts preparing one of
    /// `bytes` bytes (none if `bytes` is 0).
    pub(crate) fn start(dir: &Path, bytes: u64) -> Result<Spare, WalError> {
        let path = dir.join(SPARE_NAME);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io(&path, e)),
        }
        let mut spare = Spare {
            dir: dir.to_path_buf(),
            bytes,
            preparing: None,
            ready: None,
        };
        spare.prepare_next();
        Ok(spare)
    }

    /// Path of the spare file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(SPARE_NAME)
    }

    /// The spare, positioned at its start, if it is ready; `None` if it is
    /// still being prepared or could not be (no room, an I/O error): the
    /// caller then creates a segment the ordinary way, without waiting.
    /// Call `prepare_next` once the file has been renamed away.
    pub(crate) fn take(&mut self) -> Option<File> {
        if let Some(file) = self.ready.take() {
            return Some(file);
        }
        if !self.preparing.as_ref()?.is_finished() {
            return None;
        }
        self.join()
    }

    /// Waits for the spare being prepared, if any, and keeps it for `take`.
    pub(crate) fn wait(&mut self) {
        if self.ready.is_none() {
            self.ready = self.join();
        }
    }

    /// Joins the preparing thread: its spare, or `None` (and the next
    /// preparation started) if it failed.
    fn join(&mut self) -> Option<File> {
        let prepared = self.preparing.take()?.join().ok().and_then(Result::ok);
        if prepared.is_none() {
            // A spare that failed is gone (the thread removed what it
            // wrote); try again for the segment after.
            self.prepare_next();
        }
        prepared
    }

    /// Starts preparing the next spare, unless preallocation is off or one
    /// is already being prepared.
    pub(crate) fn prepare_next(&mut self) {
        if self.bytes == 0 || self.preparing.is_some() || self.ready.is_some() {
            return;
        }
        let (path, bytes) = (self.path(), self.bytes);
        // A thread that cannot be started means no spare: segments are then
        // created the ordinary way.
        self.preparing = std::thread::Builder::new()
            .name("wal-spare".to_string())
            .spawn(move || prepare(&path, bytes))
            .ok();
    }
}

impl Drop for Spare {
    /// Waits for a spare being prepared (one bounded write and sync), so
    /// that no thread of a closed log still writes in its directory when
    /// the log is opened again.
    fn drop(&mut self) {
        if let Some(preparing) = self.preparing.take() {
            let _ = preparing.join();
        }
    }
}

/// Creates the spare at `path`, `bytes` long, all zeros, synced (data and
/// size), and returns it positioned at its start. On any failure nothing of
/// it is left behind.
fn prepare(path: &Path, bytes: u64) -> io::Result<File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let free = free_bytes(dir)?;
    if free / FREE_SPACE_FACTOR < bytes {
        return Err(io::Error::other(format!(
            "{free} bytes free: not enough to preallocate {bytes}"
        )));
    }
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    match fill_with_zeros(&mut file, bytes) {
        Ok(()) => Ok(file),
        Err(error) => {
            let _ = fs::remove_file(path);
            Err(error)
        }
    }
}

/// Writes `bytes` zeros from the start of `file`, syncs it and seeks back.
fn fill_with_zeros(file: &mut File, bytes: u64) -> io::Result<()> {
    use std::io::Write;
    let zeros = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let piece = left.min(CHUNK as u64) as usize;
        file.write_all(&zeros[..piece])?;
        left -= piece as u64;
    }
    file.sync_all()?;
    file.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Bytes an unprivileged process may still write on `dir`'s file system.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a NUL byte in the log's path"))?;
    // SAFETY: `stat` is plain old data that statvfs fills in; `c_path` is a
    // NUL-terminated string that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringkv-wal-spare-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create");
        dir
    }

    fn ready(spare: &mut Spare) -> Option<File> {
        spare.wait();
        spare.take()
    }

    #[test]
    fn a_spare_is_all_zeros_of_the_size_asked_and_the_next_one_starts_once_asked() {
        let dir = temp_dir("zeros");
        let mut spare = Spare::start(&dir, 3 * CHUNK as u64 + 5).expect("start");
        let file = ready(&mut spare).expect("a spare");
        assert_eq!(file.metadata().expect("meta").len(), 3 * CHUNK as u64 + 5);
        let bytes = fs::read(spare.path()).expect("read");
        assert!(bytes.iter().all(|&b| b == 0));
        // Taken, it is not prepared again until the caller says so.
        assert!(spare.preparing.is_none());
        fs::remove_file(spare.path()).expect("rename it away");
        spare.prepare_next();
        assert!(ready(&mut spare).is_some());
        drop(spare);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_leftover_spare_is_deleted_and_none_is_made_when_preallocation_is_off() {
        let dir = temp_dir("off");
        fs::write(dir.join(SPARE_NAME), b"left by a crash").expect("write");
        let mut spare = Spare::start(&dir, 0).expect("start");
        assert!(!dir.join(SPARE_NAME).exists());
        assert!(spare.take().is_none());
        spare.prepare_next();
        assert!(spare.preparing.is_none());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_closed_log_leaves_no_thread_writing_its_spare() {
        let dir = temp_dir("drop");
        let bytes = 8 * CHUNK as u64;
        drop(Spare::start(&dir, bytes).expect("start"));
        // Dropping waited for the spare to be whole: nothing writes it now.
        assert_eq!(
            fs::metadata(dir.join(SPARE_NAME)).expect("meta").len(),
            bytes
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_spare_that_cannot_be_removed_fails_the_open() {
        let dir = temp_dir("in-the-way");
        fs::create_dir_all(dir.join(SPARE_NAME).join("inside")).expect("a directory in the way");
        assert!(Spare::start(&dir, CHUNK as u64).is_err());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn no_spare_is_made_without_room_for_it_several_times_over() {
        let dir = temp_dir("room");
        // More than any disk here has, four times over, so that a file
        // freed elsewhere meanwhile cannot make room.
        let mut spare = Spare::start(&dir, u64::MAX / 8).expect("start");
        assert!(ready(&mut spare).is_none());
        assert!(!dir.join(SPARE_NAME).exists());
        drop(spare);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
