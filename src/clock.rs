//! The coordinator's write clock: microseconds since the Unix epoch that
//! never repeat and never go backwards, even if the wall clock steps back.
//!
//! Last-write-wins is only as good as its timestamps. If the wall clock
//! jumps back, we keep counting up from the last timestamp handed out, so
//! a later put through this coordinator always beats an earlier one.
//!
//! The clock also moves past every timestamp this replica stores (replayed
//! from its log at start, or written by another coordinator), in the manner
//! of a Lamport clock: a restart cannot reissue a timestamp this coordinator
//! already used, and a put through a replica of a key beats every write of
//! that key the replica has seen, whatever the skew between coordinators.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Hands out strictly increasing write timestamps.
#[derive(Debug, Default)]
pub struct WriteClock {
    last_issued: AtomicU64,
}

impl WriteClock {
    /// A clock that has issued nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later timestamp greater than `seen`.
    pub fn observe(&self, seen: u64) {
        self.last_issued.fetch_max(seen, Ordering::Relaxed);
    }

    /// The next timestamp: the wall clock, or one past the last timestamp
    /// issued or observed if the wall clock has not moved past it.
    pub fn next(&self) -> u64 {
        self.next_after_wall(wall_micros())
    }

    fn next_after_wall(&self, wall: u64) -> u64 {
        let mut last = self.last_issued.load(Ordering::Relaxed);
        loop {
            // Saturating: the store refuses timestamps far in the future, so the
            // top of the range is never reached in practice.
            let candidate = wall.max(last.saturating_add(1));
            match self.last_issued.compare_exchange_weak(
                last,
                candidate,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return candidate,
                Err(seen) => last = seen,
            }
        }
    }
}

/// The wall clock in microseconds since the Unix epoch (0 if the clock is
/// set before 1970, which the monotonic step above then covers).
pub fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_never_go_backwards_when_the_wall_clock_does() {
        let clock = WriteClock::new();
        assert_eq!(clock.next_after_wall(1_000), 1_000);
        assert_eq!(clock.next_after_wall(500), 1_001);
        assert_eq!(clock.next_after_wall(1_001), 1_002);
        assert_eq!(clock.next_after_wall(5_000), 5_000);
    }

    #[test]
    fn observed_timestamps_push_the_clock_forward() {
        let clock = WriteClock::new();
        clock.observe(9_000);
        assert_eq!(clock.next_after_wall(1_000), 9_001);
        clock.observe(5_000);
        assert_eq!(clock.next_after_wall(1_000), 9_002);
    }

    #[test]
    fn concurrent_callers_never_share_a_timestamp() {
        let clock = std::sync::Arc::new(WriteClock::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || (0..10_000).map(|_| clock.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
