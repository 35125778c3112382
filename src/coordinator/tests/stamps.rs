//! The write clock as the coordinator uses it: a clock held after a
//! restart, a lease not renewed, a newer stamp held beyond the clock
//! fence; and
//! what a write holds of the memory budget while it is in flight.
//!
//! A clock held past the second a put waits for it cannot be set up here:
//! the hold stops at the maximum offset plus the lease span (600 ms).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{coordinator, failed, put, settle, version, Kind, Setup, KEY};
use crate::coordinator::link::{ReplicaAsk, WriteOf};
use crate::coordinator::Limits;
use crate::metrics::Gauges;
use crate::ops::rt;
use crate::protocol::error::ErrorKind;
use crate::protocol::proto::Consistency::{One, Quorum};
use crate::storage::clock::wall_micros;

fn stale_retries(c: &super::super::Coordinator<super::ScriptedLink>) -> u64 {
    c.metrics
        .reply(Gauges {
            replica_id: 3,
            repairs_sent: 0,
            hints_pending: 0,
            anti_entropy_rounds: 0,
            anti_entropy_fixes: 0,
        })
        .stale_write_retries
}

#[test]
fn a_clock_held_after_a_restart_delays_puts_for_up_to_a_second() {
    let (c, link) = coordinator(Setup::default());
    // Held longer than the write timeout (300 ms), shorter than the
    // second a put waits for its clock.
    let held = wall_micros() + 550_000;
    c.clock.hold_until_past(held, "a test");
    let started = Instant::now();
    let stamp = put(&c, KEY, "v", One).expect("put once the hold passed");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(stamp > held);
    assert!(!link.asked().is_empty());
}

#[test]
fn a_clock_held_past_the_deadline_refuses_at_once_with_nothing_sent() {
    let (c, link) = coordinator(Setup::default());
    c.clock.hold_until_past(wall_micros() + 500_000, "a test");
    let started = Instant::now();
    let refused = rt::block_on(c.stamp_by(Instant::now() + Duration::from_millis(300)));
    let error = failed(refused);
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(error.kind, ErrorKind::Internal);
    assert!(error.message.contains("held until"), "{}", error.message);
    assert!(link.asked().is_empty());
}

#[test]
fn a_lease_not_renewed_refuses_after_waiting_a_second() {
    let (c, link) = coordinator(Setup::default());
    c.clock.grant_lease(1);
    let started = Instant::now();
    let error = failed(put(&c, KEY, "v", One));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(error.kind, ErrorKind::Internal);
    assert!(error.message.contains("lease"), "{}", error.message);
    settle(5);
    assert!(
        link.asked_of(Kind::ClientWrite).is_empty(),
        "nothing written"
    );
}

#[test]
fn a_newer_stamp_past_the_fence_is_outwaited_within_the_timeout() {
    let (c, link) = coordinator(Setup {
        write_timeout: Duration::from_millis(1_500),
        ..Setup::default()
    });
    // 700 ms ahead: past what this clock may issue (500 ms), within what
    // it chases (twice that).
    let ahead = version("ahead", wall_micros() + 700_000, 0);
    for id in 0..2 {
        link.script(id, |r| {
            r.held.insert(KEY, ahead.clone());
        });
    }
    let started = Instant::now();
    let stamp = put(&c, KEY, "mine", Quorum).expect("put");
    assert!(stamp > ahead.timestamp_micros);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(stale_retries(&c), 1);
}

#[test]
fn a_newer_stamp_that_cannot_be_outwaited_in_time_is_a_timeout_with_nothing_written() {
    let (c, link) = coordinator(Setup::default());
    let ahead = version("ahead", wall_micros() + 900_000, 0);
    for id in 0..2 {
        link.script(id, |r| {
            r.held.insert(KEY, ahead.clone());
        });
    }
    let started = Instant::now();
    let error = failed(put(&c, KEY, "mine", Quorum));
    assert_eq!(error.kind, ErrorKind::Timeout, "{}", error.message);
    assert!(
        error.message.contains("ahead of replica 3's clock"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("nothing was written"),
        "{}",
        error.message
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "gives up at once"
    );
    assert_eq!(stale_retries(&c), 1);
    settle(5);
    assert!(link.asked_of(Kind::ClientWrite).is_empty());
}

#[test]
fn a_write_in_flight_holds_two_copies_of_its_value_per_replica() {
    let (c, link) = coordinator(Setup::default());
    for id in 0..3 {
        link.script(id, |r| r.delay = Duration::from_millis(50));
    }
    let value = version(&"x".repeat(100), 1, 3);
    let write = ReplicaAsk::Write(KEY, Arc::new(value), WriteOf::Client);
    let mut fan = c.fan_out(&[0, 1, 2], write, false, Duration::from_millis(300));
    assert_eq!(c.budget.used(), 600);
    rt::block_on(fan.gather(None));
    settle(5);
    assert_eq!(c.budget.used(), 0);
    // Reads hold nothing.
    let _fan = c.fan_out(
        &[0, 1, 2],
        ReplicaAsk::Read(KEY),
        false,
        Duration::from_millis(300),
    );
    assert_eq!(c.budget.used(), 0);
}

#[test]
fn the_default_limits_are_two_seconds_and_a_mebibyte() {
    let limits = Limits::default();
    assert_eq!(limits.write_timeout, Duration::from_secs(2));
    assert_eq!(limits.read_timeout, Duration::from_secs(2));
    assert_eq!(limits.max_value_bytes, 1024 * 1024);
}
