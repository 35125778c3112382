//! Replacing the whole log with a checkpoint: a fresh checkpoint segment,
//! its records, then every older segment deleted, oldest first; on a full
//! disk, the checkpoint dropped and appends go on where they were.

use super::{validate, Wal};
use crate::dir;
use crate::error::WalError;
use crate::header::Kind;
use crate::segment;

impl Wal {
    /// Replaces the whole log with `records`: the caller's restatement of
    /// everything the log holds (for ringkv, the whole store, tombstones
    /// included), so that restart time and disk use stop growing with the
    /// number of writes ever taken.
    ///
    /// Steps, each durable before the next: a fresh segment is created whose
    /// header says "checkpoint of N records" (header written, file fsynced,
    /// directory fsynced); the N records go in with one `write` and one
    /// `fdatasync`; then every older segment is deleted, oldest first, with
    /// a directory fsync after each removal. A crash at any step leaves a
    /// log that replays to the same records (see the README's recovery
    /// rules). Later appends continue in the checkpoint segment.
    ///
    /// `checkpoint(&[])` is a valid empty checkpoint. Payloads are checked
    /// as in [`Wal::append_batch`], and a failure poisons the log the same
    /// way.
    pub fn checkpoint(&mut self, records: &[&[u8]]) -> Result<(), WalError> {
        self.check_not_poisoned()?;
        let batch_len = validate(records)?;
        // The header holds the count as a u32; 2^32 records of at least 9
        // bytes each would not fit in memory anyway.
        let count = u32::try_from(records.len()).map_err(|_| {
            WalError::io(
                &self.dir,
                std::io::Error::other("a checkpoint holds at most u32::MAX records"),
            )
        })?;
        let result = self.write_checkpoint(records, count, batch_len);
        self.poison_on_error(result)
    }

    fn write_checkpoint(
        &mut self,
        records: &[&[u8]],
        count: u32,
        batch_len: u64,
    ) -> Result<(), WalError> {
        let number = dir::next_number(&self.dir, self.active_number)?;
        // The active segment is not sealed: once the checkpoint is durable
        // it is deleted, and until then (a crash) it is still the newest
        // segment of the log. The header records where that segment ends,
        // so replay can tell that it was not cut since.
        self.cut_preallocated()?;
        let (file, header) =
            self.create_or_take_back(number, Kind::Checkpoint { records: count }, self.next_seed)?;
        let previous = (
            std::mem::replace(&mut self.active, file),
            self.active_number,
            self.active_len,
            self.next_seed,
            self.active_records,
            self.active_sealable,
        );
        self.active_number = number;
        self.active_len = header.len as u64;
        self.next_seed = header.first_seed;
        self.active_records = 0;
        self.active_sealable = true;
        if !records.is_empty() {
            if let Err(error) = self.write_records(records, batch_len) {
                if !error.is_no_space() {
                    return Err(error);
                }
                // A checkpoint that does not fit changes nothing: drop its
                // segment and go on appending where the log was.
                (
                    self.active,
                    self.active_number,
                    self.active_len,
                    self.next_seed,
                    self.active_records,
                    self.active_sealable,
                ) = previous;
                segment::remove(&self.dir, number)?;
                return Err(error);
            }
        }
        // The checkpoint is durable: everything before it is obsolete.
        for old in dir::segment_numbers(&self.dir)? {
            if old >= number {
                break;
            }
            segment::remove(&self.dir, old)?;
        }
        self.sealed_bytes = 0;
        Ok(())
    }

    /// Deletes every record: for a log whose records have all become
    /// obsolete (the hints log, once every hint is delivered). It is an
    /// empty [`Wal::checkpoint`], so it leaves one empty segment (whose
    /// number is no longer 1) and is crash-safe the same way. A failure
    /// poisons the log, as a failed append does.
    pub fn clear(&mut self) -> Result<(), WalError> {
        self.checkpoint(&[])
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::tests::{expect_disk_full, files, replayed, temp_dir};
    use crate::fault::no_space;
    use crate::header::SEGMENT_HEADER_LEN;
    use crate::{segment, Options, Wal};

    #[test]
    fn a_preallocated_segment_is_cut_to_its_records_before_a_checkpoint_starts() {
        // A checkpoint cut short by a crash leaves the segment before it
        // below a newer one, where zeros after its records would be damage.
        let dir = temp_dir("preallocated-checkpoint");
        let options = Options {
            preallocate_bytes: 4096,
            ..Options::default()
        };
        let (mut wal, _) = Wal::open(&dir, options, |_| Ok(())).expect("open");
        wal.wait_for_spare();
        wal.checkpoint(&[b"one"]).expect("checkpoint");
        wal.append_batch(&[b"two"]).expect("append");
        let two = segment::path(&dir, 2);
        assert_eq!(
            fs::metadata(&two).expect("meta").len(),
            4096,
            "from the spare"
        );
        // The next checkpoint fails once it has cut the zeros: no room.
        no_space::after(0);
        let full = wal.checkpoint(&[b"one", b"two"]);
        expect_disk_full(full, segment::path(&dir, 3));
        assert_eq!(fs::metadata(&two).expect("meta").len(), wal.total_bytes());
        drop(wal);
        assert_eq!(replayed(&dir), [b"one".to_vec(), b"two".to_vec()]);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_changes_nothing() {
        let dir = temp_dir("full-checkpoint");
        let (mut wal, _) = Wal::open(&dir, Options::default(), |_| Ok(())).expect("open");
        wal.append_batch(&[b"one", b"two"]).expect("append");
        let before = files(&dir);
        // No room for its segment, for its header, then for its records.
        for room in [0, 9, SEGMENT_HEADER_LEN as usize + 4] {
            no_space::after(room);
            let full = wal.checkpoint(&[b"restated one", b"restated two"]);
            expect_disk_full(full, segment::path(&dir, 2));
            assert_eq!(files(&dir), before, "room {room}");
            assert_eq!(wal.total_bytes(), before[0].1, "room {room}");
        }
        wal.append_batch(&[b"three"])
            .expect("appends go on where they were");
        assert_eq!(files(&dir).len(), 1);
        wal.checkpoint(&[b"all"])
            .expect("checkpoint once there is room");
        drop(wal);
        assert_eq!(replayed(&dir), [b"all".to_vec()]);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
