//! The open log: appending with group commit, rotation, and checkpoints.
//!
//! This module owns the active segment and the order of durable steps when
//! writing. It never decides what is on disk at open (that is `replay`) and
//! never retries a failed write or fsync. This file opens the log and
//! appends; moving to the next segment is `rotate`, replacing the log with
//! a checkpoint is `checkpoint`.

mod checkpoint;
mod rotate;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{ReplayReport, WalError};
use crate::fault;
use crate::header::{self, Kind};
use crate::options::Options;
use crate::record::{self, MAX_RECORD_BYTES};
use crate::replay::{self, AppendAt};
use crate::seal::SEAL_LEN;
use crate::segment;
use crate::spare::Spare;

/// An open, locked write-ahead log, positioned to append at the end of its
/// newest segment.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: Options,
    /// The next segment's file, prepared ahead (`Options::preallocate_bytes`).
    /// Declared before the lock, so that dropping the `Wal` waits for the
    /// spare's thread before another opener can take the directory.
    spare: Spare,
    /// Held only for its lock; released when the `Wal` is dropped.
    _lock: File,
    /// The newest segment, positioned at `active_len`, where its records
    /// end (a preallocated segment goes on with zeros after that).
    active: File,
    active_number: u32,
    active_len: u64,
    /// CRC seed of the next record appended to the active segment: the CRC
    /// of its last record, or its header CRC while it is empty.
    next_seed: u32,
    /// Records in the active segment, for its seal.
    active_records: u64,
    /// The active segment is version 3 and gets a seal when the log moves
    /// past it (a version 2 segment appended to after an upgrade does not).
    active_sealable: bool,
    /// Bytes in every live segment before the active one.
    sealed_bytes: u64,
    /// Set by the first failed write or fsync; see [`WalError::Poisoned`].
    poisoned: Option<String>,
}

impl Wal {
    /// Opens (creating if missing) the WAL in `dir`, takes an exclusive lock
    /// on `dir/LOCK` (a second opener gets [`WalError::Locked`]), replays
    /// every record from the newest complete checkpoint on, in order, by
    /// calling `on_record(payload)`, repairs what a crash left (torn tail,
    /// torn header, incomplete checkpoint, segments a checkpoint made
    /// obsolete), and leaves the log ready to append.
    ///
    /// If it returns an error, `on_record` may already have seen a prefix of
    /// the records; the caller should discard what it built.
    pub fn open(
        dir: &Path,
        options: Options,
        mut on_record: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(Wal, ReplayReport), WalError> {
        dir::create(dir)?;
        let lock = dir::lock(dir)?;
        let recovered = replay::recover(dir, &options, &mut on_record)?;
        let (active, active_number, active_len, next_seed, active_records, active_sealable) =
            match recovered.append_at {
                AppendAt::End {
                    number,
                    len,
                    next_seed,
                    records,
                    sealable,
                } => {
                    let path = segment::path(dir, number);
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|mut file| file.seek(SeekFrom::Start(len)).map(|_| file))
                        .map_err(|e| WalError::io(&path, e))?;
                    (file, number, len, next_seed, records, sealable)
                }
                AppendAt::Fresh { number, continues } => {
                    let (file, header) = segment::create(dir, number, Kind::Log, continues, None)?;
                    (file, number, header.len as u64, header.first_seed, 0, true)
                }
            };
        let wal = Wal {
            dir: dir.to_path_buf(),
            spare: Spare::start(dir, options.preallocate_bytes)?,
            options,
            _lock: lock,
            active,
            active_number,
            active_len,
            next_seed,
            active_records,
            active_sealable,
            sealed_bytes: recovered.sealed_bytes,
            poisoned: None,
        };
        Ok((wal, recovered.report))
    }

    /// Appends the payloads as consecutive records with one `write` and one
    /// `fdatasync`, returning only once they are durable. This is the
    /// group-commit primitive: batch concurrent writes into one call.
    ///
    /// Rotates to a fresh segment first if this batch would push the current
    /// one past `segment_max_bytes`; a batch is never split across segments.
    /// Empty and oversized payloads are refused before anything is written.
    ///
    /// A full disk is reported as [`WalError::DiskFull`] with the log left
    /// exactly as before the call (what landed of the batch is cut off), and
    /// later appends may succeed once space is freed. Any other write,
    /// fsync or rotation failure poisons the WAL: every later call returns
    /// [`WalError::Poisoned`]. After a failed fsync the kernel may
    /// have dropped the dirty pages and cleared the error, so a retry could
    /// "succeed" without the data ever reaching the disk (PostgreSQL's
    /// "fsyncgate"). The only trustworthy recovery is to reopen, which
    /// re-reads what is really on disk and repairs the tail.
    pub fn append_batch(&mut self, payloads: &[&[u8]]) -> Result<(), WalError> {
        self.check_not_poisoned()?;
        let batch_len = validate(payloads)?;
        if payloads.is_empty() {
            return Ok(());
        }
        let result = self.write_batch(payloads, batch_len);
        self.poison_on_error(result)
    }

    fn write_batch(&mut self, payloads: &[&[u8]], batch_len: u64) -> Result<(), WalError> {
        let header_len = header::SEGMENT_HEADER_LEN;
        // Room is kept for the seal, so a sealed segment stays within
        // `segment_max_bytes` too.
        let seal_len = if self.active_sealable { SEAL_LEN } else { 0 } as u64;
        if self.active_len > header_len
            && self.active_len + batch_len + seal_len > self.options.segment_max_bytes
        {
            self.rotate()?;
        }
        self.write_records(payloads, batch_len)
    }

    /// Encodes `payloads` chained onto the active segment and makes them
    /// durable with one `write` and one `fdatasync`.
    fn write_records(&mut self, payloads: &[&[u8]], batch_len: u64) -> Result<(), WalError> {
        let path = segment::path(&self.dir, self.active_number);
        let capacity = usize::try_from(batch_len).map_err(|_| {
            WalError::io(
                &path,
                std::io::Error::other("batch larger than the address space"),
            )
        })?;
        let mut buf = Vec::with_capacity(capacity);
        let mut seed = self.next_seed;
        for payload in payloads {
            seed = record::encode_into(seed, payload, &mut buf);
        }
        self.append_synced(&buf)?;
        self.active_len += batch_len;
        self.active_records += payloads.len() as u64;
        self.next_seed = seed;
        Ok(())
    }

    /// Appends `bytes` to the active segment and syncs them. On a full disk
    /// nothing of them was synced: whatever part landed is cut off again, so
    /// the segment ends where it did, and the error says the disk is full.
    /// Only if that fails is the log left in doubt (poisoned).
    fn append_synced(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        let path = segment::path(&self.dir, self.active_number);
        if let Err(error) = fault::write_all(&mut self.active, bytes) {
            if !crate::error::is_no_space(&error) {
                return Err(WalError::io(path, error));
            }
            // The file is not in append mode: the next write goes where
            // this one started.
            self.active
                .set_len(self.active_len)
                .and_then(|()| self.active.sync_data())
                .and_then(|()| self.active.seek(SeekFrom::Start(self.active_len)))
                .map_err(|e| WalError::io(&path, e))?;
            return Err(WalError::DiskFull { path });
        }
        self.active.sync_data().map_err(|e| WalError::io(path, e))
    }

    /// Cuts the active segment's unused preallocated space off, durably,
    /// before the log moves past it (rotation or checkpoint). Only the
    /// newest segment may end in zeros: a seal must end its segment, and a
    /// checkpoint cut short by a crash leaves this segment below a newer
    /// one. A crash after the cut leaves it the newest segment, just
    /// shorter. (Cutting later would risk a seal on disk with the old
    /// length, zeros after the seal.)
    fn cut_preallocated(&mut self) -> Result<(), WalError> {
        let path = segment::path(&self.dir, self.active_number);
        self.active
            .metadata()
            .and_then(|meta| {
                if meta.len() > self.active_len {
                    self.active.set_len(self.active_len)?;
                    self.active.sync_all()?;
                }
                Ok(())
            })
            .map_err(|e| WalError::io(path, e))
    }

    /// Blocks until the spare being prepared is ready (or has failed), so
    /// that the next rotation or checkpoint takes it. For tests, which
    /// otherwise could only guess when the spare's thread is done.
    #[doc(hidden)]
    pub fn wait_for_spare(&mut self) {
        self.spare.wait();
    }

    /// Bytes in all live segments, headers included (for status reporting).
    pub fn total_bytes(&self) -> u64 {
        self.sealed_bytes + self.active_len
    }

    /// The directory this WAL lives in (for status and error messages).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_not_poisoned(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(cause) => Err(WalError::Poisoned {
                dir: self.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison_on_error(&mut self, result: Result<(), WalError>) -> Result<(), WalError> {
        match &result {
            // Taken back in place: the log is as it was.
            Err(WalError::DiskFull { .. }) => {}
            Err(e) => self.poisoned = Some(e.to_string()),
            Ok(()) => {}
        }
        result
    }
}

/// Checks every payload (non-empty, at most [`MAX_RECORD_BYTES`]) and
/// returns their total encoded size.
fn validate(payloads: &[&[u8]]) -> Result<u64, WalError> {
    let mut total = 0u64;
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
        total += record::encoded_len(payload.len());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::no_space;
    use std::fs;

    pub(super) fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringkv-wal-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    pub(super) fn replayed(dir: &Path) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        Wal::open(dir, Options::default(), |p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .expect("reopen");
        seen
    }

    pub(super) fn files(dir: &Path) -> Vec<(u32, u64)> {
        dir::segment_numbers(dir)
            .expect("list")
            .into_iter()
            .map(|n| (n, fs::metadata(segment::path(dir, n)).expect("stat").len()))
            .collect()
    }

    pub(super) fn expect_disk_full(result: Result<(), WalError>, path: PathBuf) {
        match result {
            Err(WalError::DiskFull { path: p }) => assert_eq!(p, path),
            other => panic!("expected DiskFull, got {other:?}"),
        }
    }

    #[test]
    fn the_largest_payload_is_accepted_and_one_byte_more_refused() {
        let largest = vec![1u8; MAX_RECORD_BYTES];
        assert_eq!(
            validate(&[b"a", &largest]).expect("valid"),
            9 + 8 + MAX_RECORD_BYTES as u64
        );
        let larger = vec![1u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            validate(&[b"a", &larger]),
            Err(WalError::PayloadTooLarge { index: 1, .. })
        ));
        assert!(matches!(
            validate(&[b"a", b""]),
            Err(WalError::EmptyPayload { index: 1 })
        ));
    }

    #[test]
    fn a_full_disk_takes_the_append_back_and_appends_go_on() {
        let dir = temp_dir("full-append");
        let (mut wal, _) = Wal::open(&dir, Options::default(), |_| Ok(())).expect("open");
        wal.append_batch(&[b"kept"]).expect("append");
        let before = files(&dir);
        no_space::after(5);
        expect_disk_full(wal.append_batch(&[b"not kept"]), segment::path(&dir, 1));
        assert_eq!(files(&dir), before, "what landed was cut off again");
        assert_eq!(wal.total_bytes(), before[0].1);
        wal.append_batch(&[b"later"]).expect("not poisoned");
        drop(wal);
        assert_eq!(replayed(&dir), [b"kept".to_vec(), b"later".to_vec()]);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

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
