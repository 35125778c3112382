//! The coordinator's write clock: microseconds since the Unix epoch that
//! never repeat and never go backwards, even if the wall clock steps back.
//!
//! Last-write-wins is only as good as its timestamps. If the wall clock
//! jumps back, we keep counting up from the last timestamp handed out, so
//! a later put through this coordinator always beats an earlier one.
//!
//! The clock also moves past every timestamp this replica stores (written
//! by another coordinator, or replayed from its log), in the manner of a
//! Lamport clock: a put through a replica of a key beats every write of that
//! key the replica has seen, whatever the skew between coordinators.
//!
//! Across restarts the clock is held to a lease (`clock_lease.rs`): it never
//! issues a timestamp beyond a limit already recorded on disk, and a
//! restarted replica issues nothing until its wall clock has passed the
//! recorded limit. So even a coordinator that holds no copy of a key cannot
//! reissue a timestamp it used before a crash, and it never runs ahead of
//! the wall clock either: it waits (at most the lease span, about 100 ms)
//! instead of jumping past the limit. Running ahead would be worse than
//! waiting: a put stamped in the future shadows puts that other
//! coordinators accept after it was acknowledged.
//!
//! Nothing from outside may move the clock more than the maximum clock
//! offset (`--max-clock-offset-ms`, 500 ms by default) ahead of the wall
//! clock: `observe` stops there, and so does the hold a restart finds on
//! disk (plus the lease span). One fast clock elsewhere in the cluster
//! therefore cannot drag this one along, and a restart waits at most about
//! the maximum offset. The fence itself (who refuses what) is in
//! `clock_fence.rs`.
//!
//! Two settings belong to the process's wall clock rather than to one
//! clock object, and are set once at start: the maximum offset, and (for
//! tests only) an offset added to the wall clock, applied in `wall_micros`
//! and nowhere else.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far past the clock each renewal records the limit. Short, because a
/// restarted replica waits until its wall clock passes the recorded limit
/// before it stamps a put: at most this long.
pub const LEASE_SPAN: Duration = Duration::from_millis(100);

/// The default `--max-clock-offset-ms`: 500 ms, as in CockroachDB.
pub const DEFAULT_MAX_CLOCK_OFFSET: Duration = Duration::from_millis(500);

/// The maximum clock offset in force, in microseconds.
static MAX_OFFSET_MICROS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_CLOCK_OFFSET.as_micros() as u64);

/// For tests only: microseconds added to the wall clock.
static TEST_OFFSET_MICROS: AtomicI64 = AtomicI64::new(0);

/// Sets the maximum clock offset for this process (once, at start).
pub fn set_max_offset(max_offset: Duration) {
    MAX_OFFSET_MICROS.store(max_offset.as_micros() as u64, Ordering::Relaxed);
}

/// The maximum clock offset in force, in microseconds.
pub fn max_offset_micros() -> u64 {
    MAX_OFFSET_MICROS.load(Ordering::Relaxed)
}

/// For tests only: pretends the wall clock is off by `offset` microseconds
/// (negative: behind). Set once at start, before anything reads the clock.
pub fn set_test_offset_micros(offset: i64) {
    TEST_OFFSET_MICROS.store(offset, Ordering::Relaxed);
}

/// Why the clock cannot issue a timestamp now. Nothing is issued, so a put
/// refused for either reason writes nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum ClockRefusal {
    /// The next timestamp is past the lease recorded on disk: the renewer
    /// has not caught up yet (briefly after a jump, or a slow disk).
    LeaseBehind {
        /// The limit in force, in microseconds since the epoch.
        lease_until: u64,
    },
    /// The next timestamp is more than the maximum offset ahead of the wall
    /// clock, so replicas would refuse it: the clock observed a timestamp up
    /// to that limit and has issued the ones after it. Wait until the wall
    /// clock moves on (at most about the maximum offset).
    FarAhead {
        /// The timestamp that would be next.
        next: u64,
        /// The wall clock.
        wall: u64,
    },
    /// The clock is held until the wall clock passes a limit recorded
    /// before a restart; wait until then.
    Held {
        /// Timestamps up to this one may have been issued before the restart.
        until: u64,
    },
}

/// Hands out strictly increasing write timestamps, never beyond its lease.
#[derive(Debug)]
pub struct WriteClock {
    last_issued: AtomicU64,
    /// Timestamps up to this one may be issued; a limit recorded on disk.
    lease_until: AtomicU64,
    /// Set when a timestamp was refused for want of lease.
    renewal_requested: AtomicBool,
    /// Nothing is issued until the wall clock passes this: the limit a
    /// previous run recorded (or the newest timestamp it logged).
    hold_until: AtomicU64,
}

impl Default for WriteClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteClock {
    /// A clock that has issued nothing yet and has no lease limit.
    pub fn new() -> Self {
        WriteClock {
            last_issued: AtomicU64::new(0),
            lease_until: AtomicU64::new(u64::MAX),
            renewal_requested: AtomicBool::new(false),
            hold_until: AtomicU64::new(0),
        }
    }

    /// Allows timestamps up to `until` (once it is recorded durably).
    pub fn grant_lease(&self, until: u64) {
        self.lease_until.store(until, Ordering::Relaxed);
    }

    /// Whether a timestamp was refused for want of lease since the last
    /// call; clears the request.
    pub fn take_renewal_request(&self) -> bool {
        self.renewal_requested.swap(false, Ordering::Relaxed)
    }

    /// The current lease limit.
    pub fn lease_until(&self) -> u64 {
        self.lease_until.load(Ordering::Relaxed)
    }

    /// The last timestamp issued or observed.
    pub fn last_issued(&self) -> u64 {
        self.last_issued.load(Ordering::Relaxed)
    }

    /// Makes every later timestamp greater than `seen`, as far as the fence
    /// allows: never past the wall clock plus the maximum offset, so that a
    /// timestamp from a fast clock (a version stored before the fence, read
    /// back) cannot drag this clock, and its lease, ahead.
    pub fn observe(&self, seen: u64) {
        self.observe_at(seen, wall_micros());
    }

    fn observe_at(&self, seen: u64, wall: u64) {
        let cap = wall.saturating_add(max_offset_micros());
        self.last_issued.fetch_max(seen.min(cap), Ordering::Relaxed);
    }

    /// Holds the clock until the wall clock passes a timestamp found on
    /// disk at start (`found_in` names where): the previous run's lease, or
    /// the newest write in the log. Nothing is issued until then, so a
    /// restart neither reissues a timestamp nor runs ahead of the wall
    /// clock. The hold stops at the maximum offset plus the lease span
    /// ahead, which is as far as this clock could have gone if it was right:
    /// anything further was recorded by a version without the fence, or
    /// this wall clock stepped back (then the peers' pings fence it). That
    /// is logged. Reissuing a timestamp then cannot lose an update either:
    /// a replica that holds a newer version answers a put "stale", and the
    /// coordinator stamps it again above it.
    pub fn hold_until_past(&self, seen: u64, found_in: &str) {
        let wall = wall_micros();
        let limit = wall
            .saturating_add(max_offset_micros())
            .saturating_add(LEASE_SPAN.as_micros() as u64);
        if seen > limit {
            crate::warn!(
                "{found_in} holds timestamp {seen}, {} ms ahead of this wall clock, more than the maximum clock offset \
                 ({} ms): recorded by a version without the clock fence, or this clock stepped back. \
                 Puts through this replica wait only until {limit}",
                seen.saturating_sub(wall) / 1_000,
                max_offset_micros() / 1_000
            );
        }
        self.hold_until
            .fetch_max(seen.min(limit), Ordering::Relaxed);
    }

    /// The timestamp the clock is held past (0 once nothing holds it).
    pub fn held_until(&self) -> u64 {
        self.hold_until.load(Ordering::Relaxed)
    }

    /// The next timestamp: the wall clock, or one past the last timestamp
    /// issued or observed if the wall clock has not moved past it. Refused,
    /// with nothing issued, if that is beyond the lease or too far ahead of
    /// the wall clock.
    pub fn next(&self) -> Result<u64, ClockRefusal> {
        self.next_after_wall(wall_micros())
    }

    fn next_after_wall(&self, wall: u64) -> Result<u64, ClockRefusal> {
        let held = self.held_until();
        if held != 0 {
            if wall <= held {
                return Err(ClockRefusal::Held { until: held });
            }
            // Passed: from now on the monotonic rule below covers it, and a
            // later step back of the wall clock must not hold puts again.
            self.observe(held);
            let _ = self
                .hold_until
                .compare_exchange(held, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        let mut last = self.last_issued.load(Ordering::Relaxed);
        loop {
            // Saturating: the top of the range is refused as far ahead below.
            let candidate = wall.max(last.saturating_add(1));
            if candidate > wall.saturating_add(max_offset_micros()) {
                return Err(ClockRefusal::FarAhead {
                    next: candidate,
                    wall,
                });
            }
            let lease_until = self.lease_until();
            if candidate > lease_until {
                self.renewal_requested.store(true, Ordering::Relaxed);
                return Err(ClockRefusal::LeaseBehind { lease_until });
            }
            match self.last_issued.compare_exchange_weak(
                last,
                candidate,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(candidate),
                Err(seen) => last = seen,
            }
        }
    }
}

/// The wall clock in microseconds since the Unix epoch (0 if the clock is
/// set before 1970, which the monotonic step above then covers), plus the
/// test offset (`--test-clock-offset-ms`, for tests only; 0 otherwise).
pub fn wall_micros() -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    wall.saturating_add_signed(TEST_OFFSET_MICROS.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_never_go_backwards_when_the_wall_clock_does() {
        let clock = WriteClock::new();
        assert_eq!(clock.next_after_wall(1_000), Ok(1_000));
        assert_eq!(clock.next_after_wall(500), Ok(1_001));
        assert_eq!(clock.next_after_wall(1_001), Ok(1_002));
        assert_eq!(clock.next_after_wall(5_000), Ok(5_000));
    }

    #[test]
    fn observed_timestamps_push_the_clock_forward() {
        let clock = WriteClock::new();
        clock.observe(9_000);
        assert_eq!(clock.next_after_wall(1_000), Ok(9_001));
        clock.observe(5_000);
        assert_eq!(clock.next_after_wall(1_000), Ok(9_002));
    }

    #[test]
    fn an_observed_timestamp_moves_the_clock_at_most_the_maximum_offset() {
        let clock = WriteClock::new();
        let max = max_offset_micros();
        // Nine minutes ahead, as a stranger's write or an old version
        // stamped by a fast clock: the clock stops at the fence.
        clock.observe_at(1_000 + 9 * 60 * 1_000_000, 1_000);
        assert_eq!(clock.last_issued(), 1_000 + max);
        assert_eq!(
            clock.next_after_wall(1_000),
            Err(ClockRefusal::FarAhead {
                next: 1_000 + max + 1,
                wall: 1_000
            })
        );
        // A microsecond of wall clock later it goes on, never below what
        // it observed.
        assert_eq!(clock.next_after_wall(1_001), Ok(1_000 + max + 1));
        // Within the fence, an observed timestamp moves it all the way.
        let clock = WriteClock::new();
        clock.observe_at(1_000 + max - 10, 1_000);
        assert_eq!(clock.next_after_wall(1_000), Ok(1_000 + max - 9));
    }

    #[test]
    fn a_held_clock_waits_for_the_wall_clock_instead_of_jumping() {
        let clock = WriteClock::new();
        clock.hold_until_past(2_000, "test");
        assert_eq!(
            clock.next_after_wall(1_500),
            Err(ClockRefusal::Held { until: 2_000 })
        );
        assert_eq!(
            clock.next_after_wall(2_000),
            Err(ClockRefusal::Held { until: 2_000 })
        );
        // Once the wall clock has passed the hold, timestamps are the wall
        // clock's own: never ahead of it.
        assert_eq!(clock.next_after_wall(2_001), Ok(2_001));
        assert_eq!(clock.next_after_wall(2_500), Ok(2_500));
        // A later step back of the wall clock does not hold puts again:
        // the clock counts on from what it issued.
        assert_eq!(clock.next_after_wall(1_000), Ok(2_501));
    }

    #[test]
    fn a_hold_found_on_disk_waits_at_most_the_maximum_offset_and_the_lease_span() {
        let clock = WriteClock::new();
        let wall = wall_micros();
        let most = max_offset_micros() + LEASE_SPAN.as_micros() as u64;
        clock.hold_until_past(wall + 9 * 60 * 1_000_000, "test");
        let held = clock.held_until();
        assert!(
            held >= wall + most && held <= wall_micros() + most,
            "held until {held}, {} us past the wall clock",
            held - wall
        );
        // A hold within the limit is kept as it is.
        let clock = WriteClock::new();
        clock.hold_until_past(wall + 2_000, "test");
        assert_eq!(clock.held_until(), wall + 2_000);
    }

    #[test]
    fn nothing_is_issued_beyond_the_lease() {
        let clock = WriteClock::new();
        clock.grant_lease(2_000);
        assert_eq!(clock.next_after_wall(1_999), Ok(1_999));
        assert_eq!(clock.next_after_wall(1_000), Ok(2_000));
        assert_eq!(
            clock.next_after_wall(1_000),
            Err(ClockRefusal::LeaseBehind { lease_until: 2_000 })
        );
        assert_eq!(
            clock.last_issued(),
            2_000,
            "a refused timestamp is not used up"
        );
        clock.grant_lease(3_000);
        assert_eq!(clock.next_after_wall(1_000), Ok(2_001));
    }

    #[test]
    fn concurrent_callers_never_share_a_timestamp() {
        let clock = std::sync::Arc::new(WriteClock::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .map(|_| clock.next().expect("no lease limit"))
                        .collect::<Vec<_>>()
                })
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
