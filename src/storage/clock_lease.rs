//! The write clock's lease on disk: a timestamp that the coordinator clock
//! may not pass until it has been recorded durably in `DIR/clock-lease`.
//!
//! Why: a coordinator stamps writes of keys it holds no copy of, so its own
//! log cannot tell a restarted replica which timestamps it already used. If
//! the wall clock had stepped back across the restart, it could stamp a new
//! put below an older one it acknowledged, and the new put would silently
//! lose. With the lease, the clock never issues past the recorded limit, and
//! a restarted replica issues nothing until its wall clock has passed it.
//!
//! The limit is short (`LEASE_SPAN`, 100 ms past the clock), so that wait is
//! short too. A start only reads the file: a replica that starts and issues
//! nothing (its port is taken, say) records nothing, so restarts, even a
//! crash loop, can never ratchet the limit ahead of the wall clock.
//!
//! While puts flow, the limit is renewed ahead of need: every `RENEW_CHECK`
//! the renewer checks whether the clock has issued timestamps and is within
//! `RENEW_MARGIN` of the limit, and if so records a limit `LEASE_SPAN`
//! ahead. An idle replica writes nothing; its first put finds the lease
//! behind, asks for a renewal and waits for it (one check interval and one
//! fsync). A put also waits after the clock jumps past the lease (after
//! observing a write from a peer whose clock is ahead). The file holds the
//! limit as decimal microseconds and is replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory). All disk work runs
//! on the blocking pool.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::ops::rt;
use crate::storage::clock::{wall_micros, WriteClock, LEASE_SPAN};

/// The lease file's name inside the data directory.
pub const LEASE_FILE: &str = "clock-lease";

/// Renew once the clock is this close to the limit.
const RENEW_MARGIN: Duration = Duration::from_millis(50);

/// How often the renewer looks (two atomic loads; the disk is touched only
/// when a renewal is due). Short, so that the first put after an idle spell,
/// or after the clock jumps (observing a write from a peer whose clock is
/// ahead), waits only a moment.
const RENEW_CHECK: Duration = Duration::from_millis(5);

/// Reads the previous run's lease and holds the clock until the wall clock
/// passes it. Writes nothing, and grants no lease: the first put asks the
/// renewer for one. Blocking: call before serving.
pub fn start(data_dir: &Path, clock: &WriteClock) -> Result<(), String> {
    let path = data_dir.join(LEASE_FILE);
    clock.hold_until_past(read_lease(&path)?, &path.display().to_string());
    clock.grant_lease(0);
    Ok(())
}

/// Keeps the lease ahead of the clock for as long as the process runs.
pub async fn renew_forever(data_dir: PathBuf, clock: Arc<WriteClock>) {
    let path = data_dir.join(LEASE_FILE);
    let mut failing = false;
    let mut issued_at_renewal = clock.last_issued();
    loop {
        rt::sleep(RENEW_CHECK).await;
        // Renew ahead of need while timestamps are being issued, and on
        // demand after a put found the lease behind; an idle replica does
        // not touch the disk.
        let issued = clock.last_issued();
        let near_limit = issued
            .max(wall_micros())
            .saturating_add(RENEW_MARGIN.as_micros() as u64)
            >= clock.lease_until();
        let due = clock.take_renewal_request() || (issued != issued_at_renewal && near_limit);
        if !due {
            continue;
        }
        issued_at_renewal = issued;
        let until = next_limit(&clock);
        let target = path.clone();
        match rt::spawn_blocking(move || write_lease(&target, until)).await {
            Ok(()) => {
                if failing {
                    crate::info!(
                        "recording the clock lease in {} works again",
                        path.display()
                    );
                    failing = false;
                }
                clock.grant_lease(until);
            }
            Err(error) => {
                if !failing {
                    crate::error!(
                        "cannot record the clock lease in {}: {error}; puts through this replica fail once the current lease runs out",
                        path.display()
                    );
                    failing = true;
                }
            }
        }
    }
}

/// The limit to record next: `LEASE_SPAN` past the clock.
fn next_limit(clock: &WriteClock) -> u64 {
    clock
        .last_issued()
        .max(wall_micros())
        .saturating_add(LEASE_SPAN.as_micros() as u64)
}

/// The recorded limit; 0 if there is none yet.
pub fn read_lease(path: &Path) -> Result<u64, String> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            format!(
                "{} does not hold a timestamp ('{}'); it is replaced atomically, so it was edited or damaged",
                path.display(),
                text.trim()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Replaces the lease file atomically and durably.
fn write_lease(path: &Path, until: u64) -> std::io::Result<()> {
    crate::storage::durable_file::replace(path, format!("{until}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringkv-lease-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_restart_holds_the_clock_past_the_recorded_lease_and_writes_nothing() {
        let dir = scratch_dir("restart");
        let ahead = wall_micros() + 300_000;
        write_lease(&dir.join(LEASE_FILE), ahead).expect("write");
        let clock = WriteClock::new();
        start(&dir, &clock).expect("start");
        assert!(matches!(
            clock.next(),
            Err(crate::storage::clock::ClockRefusal::Held { until }) if until == ahead
        ));
        let recorded = read_lease(&dir.join(LEASE_FILE)).expect("read");
        assert_eq!(recorded, ahead, "a start records nothing");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fresh_directory_starts_without_a_lease_and_a_damaged_one_is_refused() {
        let dir = scratch_dir("fresh");
        let clock = WriteClock::new();
        start(&dir, &clock).expect("start");
        assert!(!dir.join(LEASE_FILE).exists(), "a start writes nothing");
        assert!(matches!(
            clock.next(),
            Err(crate::storage::clock::ClockRefusal::LeaseBehind { .. })
        ));
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join(LEASE_FILE), "garbage").expect("damage");
        let error = start(&dir, &WriteClock::new()).expect_err("damaged lease");
        assert!(error.contains("does not hold a timestamp"), "{error}");
        let _ = fs::remove_dir_all(&dir);
    }
}
