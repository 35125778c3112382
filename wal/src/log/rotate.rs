//! Moving the log to its next segment: the new segment first (durable,
//! its header continuing from the seal about to be written), then the
//! active segment's seal; on a full disk, both taken back.
//!
//! Nothing here decides when to rotate (`append_batch` does, by size).

use super::Wal;
use crate::dir;
use crate::error::WalError;
use crate::header::{Header, Kind};
use crate::seal::{Seal, SEAL_LEN};
use crate::segment;

impl Wal {
    /// Moves the log to a new, durable, empty segment and seals the active
    /// one (already durable: every append synced it). The new segment comes
    /// first, its header continuing from the seal about to be written, so a
    /// crash in between leaves an unsealed segment whose successor says
    /// exactly which seal it lacks (replay writes it), never a seal naming
    /// a segment that does not exist (which replay must refuse: it is what
    /// a deleted newest segment looks like).
    pub(super) fn rotate(&mut self) -> Result<(), WalError> {
        let number = dir::next_number(&self.dir, self.active_number)?;
        let seal = self.active_sealable.then_some(Seal {
            records: self.active_records,
            chain: self.next_seed,
            next: number,
        });
        let (seal_bytes, continues) = match seal {
            Some(seal) => {
                let (bytes, crc) = seal.encode();
                (Some(bytes), crc)
            }
            // A version 2 segment ends where its records end.
            None => (None, self.next_seed),
        };
        if seal_bytes.is_some() {
            self.cut_preallocated()?;
        }
        let (file, header) = self.create_or_take_back(number, Kind::Log, continues)?;
        let mut sealed_len = self.active_len;
        if let Some(bytes) = seal_bytes {
            self.write_seal(&bytes, number)?;
            sealed_len += SEAL_LEN as u64;
        }
        self.active = file;
        self.next_seed = header.first_seed;
        self.sealed_bytes += sealed_len;
        self.active_number = number;
        self.active_len = header.len as u64;
        self.active_records = 0;
        self.active_sealable = true;
        Ok(())
    }

    /// Appends the seal to the active segment and syncs it. On a full disk
    /// the seal is cut off again and the segment `next` (just created,
    /// empty) removed, so the log is as it was.
    fn write_seal(&mut self, bytes: &[u8], next: u32) -> Result<(), WalError> {
        match self.append_synced(bytes) {
            Err(full @ WalError::DiskFull { .. }) => {
                segment::remove(&self.dir, next)?;
                Err(full)
            }
            written => written,
        }
    }

    /// Creates segment `number`, from the spare if one is ready; if the
    /// disk is full, removes whatever of it was created, so the log is
    /// exactly as before, and says so. Either way the next spare is then
    /// prepared.
    pub(super) fn create_or_take_back(
        &mut self,
        number: u32,
        kind: Kind,
        continues: u32,
    ) -> Result<(std::fs::File, Header), WalError> {
        let spare_path = self.spare.path();
        let spare = self.spare.take();
        let created = segment::create(
            &self.dir,
            number,
            kind,
            continues,
            spare.map(|file| (file, spare_path.as_path())),
        );
        self.spare.prepare_next();
        match created {
            Err(error) if error.is_no_space() => {
                let path = segment::path(&self.dir, number);
                match std::fs::remove_file(&path) {
                    Ok(()) => crate::dir::sync(&self.dir)?,
                    // Never created. (Any other failure to remove it is an
                    // I/O error the tests cannot provoke: making this guard
                    // `true` is a mutant no test here catches.)
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(WalError::io(&path, e)),
                }
                Err(WalError::DiskFull { path })
            }
            created => created,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::tests::{expect_disk_full, files, replayed, temp_dir};
    use crate::fault::no_space;
    use crate::header::SEGMENT_HEADER_LEN;
    use crate::{dir, segment, Options, Wal, WalError};

    #[test]
    fn a_segment_in_the_way_is_not_a_full_disk() {
        // The next segment's name is taken: creating it fails, and that is
        // an I/O error that poisons the log, with the file left alone.
        let dir = temp_dir("in-the-way");
        let options = Options {
            segment_max_bytes: 80,
            ..Options::default()
        };
        let (mut wal, _) = Wal::open(&dir, options, |_| Ok(())).expect("open");
        wal.append_batch(&[b"first record"]).expect("append");
        let squatter = segment::path(&dir, 2);
        fs::write(&squatter, b"not ours").expect("write");
        match wal.append_batch(&[b"a record that does not fit"]) {
            Err(WalError::Io { path, .. }) => assert_eq!(path, squatter),
            other => panic!("expected Io, got {other:?}"),
        }
        assert_eq!(fs::read(&squatter).expect("read"), b"not ours");
        assert!(matches!(
            wal.append_batch(&[b"x"]),
            Err(WalError::Poisoned { .. })
        ));
        drop(wal);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_segment_in_the_way_of_a_spare_is_left_alone_and_the_spare_is_dropped() {
        let dir = temp_dir("in-the-way-of-a-spare");
        let options = Options {
            segment_max_bytes: 80,
            preallocate_bytes: 80,
            ..Options::default()
        };
        let (mut wal, _) = Wal::open(&dir, options, |_| Ok(())).expect("open");
        wal.append_batch(&[b"first record"]).expect("append");
        let squatter = segment::path(&dir, 2);
        fs::write(&squatter, b"not ours").expect("write");
        wal.wait_for_spare();
        match wal.append_batch(&[b"a record that does not fit"]) {
            Err(WalError::Io { path, .. }) => assert_eq!(path, squatter),
            other => panic!("expected Io, got {other:?}"),
        }
        assert_eq!(fs::read(&squatter).expect("read"), b"not ours");
        // The spare it had written a header into is not left as a spare.
        wal.wait_for_spare();
        let spare = fs::read(dir.join("spare.tmp")).expect("the next spare");
        assert!(spare.iter().all(|&b| b == 0), "a fresh spare, all zeros");
        drop(wal);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_full_disk_while_rotating_leaves_the_log_as_it_was() {
        let dir = temp_dir("full-rotate");
        let options = Options {
            segment_max_bytes: 80,
            ..Options::default()
        };
        let (mut wal, _) = Wal::open(&dir, options, |_| Ok(())).expect("open");
        wal.append_batch(&[b"first record"]).expect("append");
        let before = files(&dir);
        // No room for the new segment at all, none for its whole header,
        // then none for the seal.
        for room in [0, 9, SEGMENT_HEADER_LEN as usize + 4] {
            no_space::after(room);
            let full = wal.append_batch(&[b"a record that does not fit"]);
            let path = if room < SEGMENT_HEADER_LEN as usize {
                2
            } else {
                1
            };
            expect_disk_full(full, segment::path(&dir, path));
            assert_eq!(files(&dir), before, "room {room}");
            assert_eq!(wal.total_bytes(), before[0].1, "room {room}");
        }
        wal.append_batch(&[b"a record that does not fit"])
            .expect("rotates once there is room");
        drop(wal);
        assert_eq!(
            replayed(&dir),
            [
                b"first record".to_vec(),
                b"a record that does not fit".to_vec()
            ]
        );
        assert_eq!(dir::segment_numbers(&dir).expect("list"), [1, 2]);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
