//! The WAL directory: locking, listing and replaying segments, appending
//! with group commit, and rotation.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{ReplayReport, TornTail, WalError};
use crate::record::{self, MAX_RECORD_BYTES};
use crate::segment::{self, HeaderCheck, Kind, FORMAT_VERSION_1, SEGMENT_HEADER_LEN};

/// Name of the lock file inside the WAL directory.
pub const LOCK_FILE: &str = "LOCK";

/// Tuning knobs for [`Wal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// A segment is closed and a new one started when the next batch would
    /// push it past this many bytes (header included). A batch is never
    /// split, so a segment holding a single oversized batch can exceed it.
    pub segment_max_bytes: u64,
    /// Replay past corrupt records instead of failing, listing each skipped
    /// region in [`ReplayReport::skipped`]. For operator-driven recovery only:
    /// skipped records are lost.
    pub skip_corrupt: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_max_bytes: 64 * 1024 * 1024,
            skip_corrupt: false,
        }
    }
}

/// An open, locked write-ahead log, positioned to append at the end of its
/// newest segment.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: Options,
    /// Held only for its lock; released when the `Wal` is dropped.
    _lock: File,
    /// The newest segment, opened in append mode.
    active: File,
    active_number: u32,
    active_len: u64,
    /// CRC seed of the next record appended to the active segment: the CRC
    /// of its last record, or its header CRC while it is empty.
    next_seed: u32,
    /// Bytes in every segment before the active one.
    sealed_bytes: u64,
    /// Set by the first failed write or fsync; see [`WalError::Poisoned`].
    poisoned: Option<String>,
}

impl Wal {
    /// Opens (creating if missing) the WAL in `dir`, takes an exclusive lock
    /// on `dir/LOCK` (a second opener gets [`WalError::Locked`]), replays
    /// every record in order by calling `on_record(payload)`, repairs a torn
    /// tail, and leaves the log ready to append at the end of the newest
    /// segment.
    ///
    /// If it returns an error, `on_record` may already have seen a prefix of
    /// the records; the caller should discard what it built.
    pub fn open(
        dir: &Path,
        options: Options,
        mut on_record: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(Wal, ReplayReport), WalError> {
        create_dir(dir)?;
        let lock = lock(dir)?;
        let numbers = list_segments(dir)?;
        let mut report = ReplayReport::default();

        let Some(&newest) = numbers.last() else {
            let (active, header) = segment::create(dir, 1, Kind::Log)?;
            let wal = Wal::new(
                dir,
                options,
                lock,
                (active, 1, SEGMENT_HEADER_LEN),
                header.first_seed,
                0,
            );
            return Ok((wal, report));
        };

        // Check every header before replaying anything, so a bad segment
        // late in the log fails open before the caller has applied records.
        let mut torn_header = false;
        let mut headers = Vec::with_capacity(numbers.len());
        for &number in &numbers {
            let path = segment::path(dir, number);
            match read_header(&path, number)? {
                HeaderCheck::Valid(header) => headers.push(header),
                HeaderCheck::Torn if number == newest => torn_header = true,
                HeaderCheck::Torn => {
                    return Err(WalError::BadHeader {
                        file: path,
                        reason: "torn header in a segment that is not the newest".to_string(),
                    })
                }
                HeaderCheck::Invalid(reason) => {
                    return Err(WalError::BadHeader { file: path, reason })
                }
            }
        }

        let mut sealed_bytes = 0;
        let mut newest_len = SEGMENT_HEADER_LEN;
        let mut newest_unparseable = false;
        let mut next_seed = 0;
        let mut newest_is_v1 = false;
        for (&number, header) in numbers
            .iter()
            .zip(headers.iter().map(Some).chain(std::iter::repeat(None)))
        {
            let path = segment::path(dir, number);
            report.segments += 1;
            if number == newest && torn_header {
                // A crash while creating the segment: it holds no records.
                let len = fs::metadata(&path)
                    .map_err(|e| WalError::io(&path, e))?
                    .len();
                next_seed = segment::rewrite_header(dir, number)?.first_seed;
                report.torn_tail = Some(TornTail {
                    file: path,
                    offset: 0,
                    bytes_dropped: len,
                });
                break;
            }
            let Some(header) = header else {
                break;
            };
            let data = segment::read(&path)?;
            let is_newest = number == newest;
            let scan = segment::scan(
                &data,
                header,
                &path,
                is_newest,
                options.skip_corrupt,
                &mut on_record,
            )?;
            report.records += scan.records;
            report.skipped.extend(scan.skipped);
            if !is_newest {
                sealed_bytes += data.len() as u64;
                continue;
            }
            newest_len = data.len() as u64;
            newest_unparseable = scan.unparseable_tail;
            newest_is_v1 = header.version == FORMAT_VERSION_1;
            next_seed = scan.next_seed;
            if let Some(torn) = scan.torn_tail {
                segment::truncate(&path, torn.offset)?;
                newest_len = torn.offset;
                report.torn_tail = Some(torn);
            }
        }

        let active = if newest_unparseable || newest_is_v1 {
            // Appending behind bytes replay cannot parse would hide the new
            // records from the next replay; start a fresh segment instead and
            // leave the damaged bytes in place for inspection. A version 1
            // segment is never appended to: new records are always chained.
            sealed_bytes += newest_len;
            let number = next_number(dir, newest)?;
            let (file, header) = segment::create(dir, number, Kind::Log)?;
            next_seed = header.first_seed;
            (file, number, SEGMENT_HEADER_LEN)
        } else {
            let path = segment::path(dir, newest);
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| WalError::io(&path, e))?;
            (file, newest, newest_len)
        };
        let wal = Wal::new(dir, options, lock, active, next_seed, sealed_bytes);
        Ok((wal, report))
    }

    fn new(
        dir: &Path,
        options: Options,
        lock: File,
        (active, active_number, active_len): (File, u32, u64),
        next_seed: u32,
        sealed_bytes: u64,
    ) -> Wal {
        Wal {
            dir: dir.to_path_buf(),
            options,
            _lock: lock,
            active,
            active_number,
            active_len,
            next_seed,
            sealed_bytes,
            poisoned: None,
        }
    }

    /// Appends the payloads as consecutive records with one `write` and one
    /// `fdatasync`, returning only once they are durable. This is the
    /// group-commit primitive: batch concurrent writes into one call.
    ///
    /// Rotates to a fresh segment first if this batch would push the current
    /// one past `segment_max_bytes`; a batch is never split across segments.
    /// Empty and oversized payloads are refused before anything is written.
    ///
    /// Any write, fsync or rotation failure poisons the WAL: every later call
    /// returns [`WalError::Poisoned`]. After a failed fsync the kernel may
    /// have dropped the dirty pages and cleared the error, so a retry could
    /// "succeed" without the data ever reaching the disk (PostgreSQL's
    /// "fsyncgate"). The only trustworthy recovery is to reopen, which
    /// re-reads what is really on disk and repairs the tail.
    pub fn append_batch(&mut self, payloads: &[&[u8]]) -> Result<(), WalError> {
        if let Some(cause) = &self.poisoned {
            return Err(WalError::Poisoned {
                dir: self.dir.clone(),
                cause: cause.clone(),
            });
        }
        let mut batch_len = 0u64;
        for (index, payload) in payloads.iter().enumerate() {
            if payload.is_empty() {
                return Err(WalError::EmptyPayload { index });
            }
            if payload.len() > MAX_RECORD_BYTES {
                return Err(WalError::PayloadTooLarge {
                    index,
                    len: payload.len(),
                });
            }
            batch_len += record::encoded_len(payload.len());
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let result = self.write_batch(payloads, batch_len);
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result
    }

    fn write_batch(&mut self, payloads: &[&[u8]], batch_len: u64) -> Result<(), WalError> {
        if self.active_len > SEGMENT_HEADER_LEN
            && self.active_len + batch_len > self.options.segment_max_bytes
        {
            self.rotate()?;
        }
        let capacity = usize::try_from(batch_len).expect("a batch in memory fits in usize");
        let mut buf = Vec::with_capacity(capacity);
        let mut seed = self.next_seed;
        for payload in payloads {
            seed = record::encode_into(seed, payload, &mut buf);
        }
        let path = segment::path(&self.dir, self.active_number);
        self.active
            .write_all(&buf)
            .and_then(|()| self.active.sync_data())
            .map_err(|e| WalError::io(path, e))?;
        self.active_len += batch_len;
        self.next_seed = seed;
        Ok(())
    }

    /// Seals the active segment (already durable: every append synced it)
    /// and makes a new, durable, empty one the active segment.
    fn rotate(&mut self) -> Result<(), WalError> {
        let number = next_number(&self.dir, self.active_number)?;
        let (file, header) = segment::create(&self.dir, number, Kind::Log)?;
        self.active = file;
        self.next_seed = header.first_seed;
        self.sealed_bytes += self.active_len;
        self.active_number = number;
        self.active_len = SEGMENT_HEADER_LEN;
        Ok(())
    }

    /// Deletes every record, leaving one empty segment 1: for a log whose
    /// records have all become obsolete (the hints log, once every hint is
    /// delivered). Segments are removed newest first, so a crash part way
    /// leaves the oldest ones, a prefix of the log that replays as a
    /// shorter log: never a gap. The directory is fsynced after each
    /// removal, and the fresh segment is created durably. A failure
    /// poisons the log, as a failed append does.
    pub fn clear(&mut self) -> Result<(), WalError> {
        if let Some(cause) = &self.poisoned {
            return Err(WalError::Poisoned {
                dir: self.dir.clone(),
                cause: cause.clone(),
            });
        }
        let result = self.remove_segments_and_restart();
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result
    }

    fn remove_segments_and_restart(&mut self) -> Result<(), WalError> {
        // One directory fsync per removal: unlinks are not guaranteed to
        // reach the disk in order, and a surviving later segment without
        // the earlier ones would be a gap that replay refuses.
        for number in list_segments(&self.dir)?.into_iter().rev() {
            let path = segment::path(&self.dir, number);
            fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
            segment::sync_dir(&self.dir)?;
        }
        let (file, header) = segment::create(&self.dir, 1, Kind::Log)?;
        self.active = file;
        self.next_seed = header.first_seed;
        self.active_number = 1;
        self.active_len = SEGMENT_HEADER_LEN;
        self.sealed_bytes = 0;
        Ok(())
    }

    /// Bytes in all segments, headers included (for status reporting).
    pub fn total_bytes(&self) -> u64 {
        self.sealed_bytes + self.active_len
    }

    /// The directory this WAL lives in (for status and error messages).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn next_number(dir: &Path, current: u32) -> Result<u32, WalError> {
    current.checked_add(1).ok_or_else(|| {
        WalError::io(
            dir,
            std::io::Error::other("segment numbers exhausted (u32::MAX reached)"),
        )
    })
}

/// Creates `dir` if missing, and makes its entry durable in the parent.
fn create_dir(dir: &Path) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => segment::sync_dir(parent),
        _ => segment::sync_dir(Path::new(".")),
    }
}

fn lock(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(WalError::io(path, e)),
    }
}

/// Segment numbers present in `dir`, sorted, checked to run 1, 2, 3, ...
/// without gaps. Files not named like segments are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u32>, WalError> {
    let mut numbers = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(segment::parse_file_name) else {
            continue;
        };
        match u32::try_from(number) {
            Ok(n) if n > 0 => numbers.push(n),
            _ => {
                return Err(WalError::BadHeader {
                    file: entry.path(),
                    reason: format!("segment number {number} is outside 1..={}", u32::MAX),
                })
            }
        }
    }
    numbers.sort_unstable();
    for (i, &found) in numbers.iter().enumerate() {
        let expected = i as u32 + 1;
        if found != expected {
            return Err(WalError::MissingSegment {
                dir: dir.to_path_buf(),
                expected,
                found,
            });
        }
    }
    Ok(numbers)
}

fn read_header(path: &Path, number: u32) -> Result<HeaderCheck, WalError> {
    use std::io::Read;
    let file = File::open(path).map_err(|e| WalError::io(path, e))?;
    let len = file.metadata().map_err(|e| WalError::io(path, e))?.len();
    let mut start = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
    file.take(SEGMENT_HEADER_LEN)
        .read_to_end(&mut start)
        .map_err(|e| WalError::io(path, e))?;
    Ok(segment::check_header(&start, len, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_poisons_until_reopen() {
        let dir =
            std::env::temp_dir().join(format!("ringkv-wal-unit-poison-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (mut wal, _) = Wal::open(&dir, Options::default(), |_| Ok(())).expect("open");
        wal.append_batch(&[b"durable"]).expect("append");
        // Swap in a read-only handle: the next write fails like a dying disk.
        let path = segment::path(&dir, wal.active_number);
        wal.active = File::open(&path).expect("read-only handle");
        match wal.append_batch(&[b"lost"]) {
            Err(WalError::Io { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected Io, got {other:?}"),
        }
        for _ in 0..2 {
            match wal.append_batch(&[b"refused"]) {
                Err(e @ WalError::Poisoned { .. }) => {
                    assert!(e.to_string().contains("reopen"), "{e}")
                }
                other => panic!("expected Poisoned, got {other:?}"),
            }
        }
        drop(wal);
        let mut seen = Vec::new();
        let (mut wal, _) = Wal::open(&dir, Options::default(), |p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .expect("reopen");
        assert_eq!(seen, [b"durable".to_vec()]);
        wal.append_batch(&[b"again"]).expect("append after reopen");
        drop(wal);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
