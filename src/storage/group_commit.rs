//! The one group-commit loop, run on a thread of its own by each log a
//! replica keeps (its write-ahead log in `durable`, and the hints log in
//! `cluster::hints`): take every job waiting, encode them, make them
//! durable with one append (one write, one fdatasync), then let the log's
//! owner apply them and tell their waiters. Throughput grows with the
//! number of concurrent writers instead of being capped at one sync per
//! write, and disk work never runs on the async executor's threads.
//!
//! A full disk refuses the whole batch (the `wal` crate cuts off whatever
//! part of it landed) and the loop goes on; any other failed append stops
//! the process with `EXIT_WAL_FAILED`, since after a failed fdatasync only
//! the log on disk can be trusted and a restart replays it.

use crate::ops::exit::EXIT_WAL_FAILED;
use crate::ops::rt;

/// What a log's owner does around each group commit.
pub trait Committer {
    /// One write waiting for the log, with whoever waits for it.
    type Job;

    /// The job's record payload.
    fn encode(&self, job: &Self::Job) -> Vec<u8>;

    /// Bytes the job holds, for the batch bound.
    fn size(&self, job: &Self::Job) -> usize;

    /// The batch is durable: apply it, tell its waiters, and checkpoint if
    /// it is time.
    fn committed(&mut self, log: &mut wal::Wal, batch: Vec<Self::Job>);

    /// The disk was full: nothing of the batch was kept. Tell its waiters.
    fn refused(&mut self, log: &mut wal::Wal, batch: Vec<Self::Job>, error: &wal::WalError);

    /// What the log is, for the line logged before a failed append stops
    /// the process ("write-ahead log", "hints log").
    fn name(&self) -> &'static str;
}

/// Runs group commits of the jobs sent on `jobs` until every sender is
/// gone; a batch holds what is waiting, up to `max_batch_bytes`.
pub fn run<C: Committer>(
    mut log: wal::Wal,
    jobs: rt::Receiver<C::Job>,
    mut committer: C,
    max_batch_bytes: usize,
) {
    // A plain blocking wait: `block_on` would also drive the async reactor
    // from this thread, which then wakes executor tasks from here and
    // leaves the reactor to another thread whenever it is in fdatasync.
    while let Ok(first) = jobs.recv_blocking() {
        let mut batch_bytes = committer.size(&first);
        let mut batch = vec![first];
        while batch_bytes < max_batch_bytes {
            match jobs.try_recv() {
                Ok(next) => {
                    batch_bytes += committer.size(&next);
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let encoded: Vec<Vec<u8>> = batch.iter().map(|job| committer.encode(job)).collect();
        let payloads: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        match log.append_batch(&payloads) {
            Ok(()) => {
                drop(encoded);
                committer.committed(&mut log, batch);
            }
            Err(error @ wal::WalError::DiskFull { .. }) => {
                committer.refused(&mut log, batch, &error);
            }
            Err(error) => {
                crate::error!(
                    "{} append of {} records failed: {error}; stopping so that a restart replays the log from disk",
                    committer.name(),
                    batch.len()
                );
                std::process::exit(EXIT_WAL_FAILED);
            }
        }
    }
}
