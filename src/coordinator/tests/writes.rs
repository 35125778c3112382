//! Puts and deletes: counting acknowledgements at each level, the error
//! kind each mix of outcomes ends in, UNAVAILABLE with nothing sent, hints,
//! tombstones, stamping above the newest stamp a quorum holds, and "stale"
//! answers.

use std::time::{Duration, Instant};

use super::{
    coordinator, delete, failed, get, put, settle, settle_until, version, Act, Kind, Setup, KEY,
};
use crate::cluster::repair_mode::RepairMode;
use crate::coordinator::link::Outcome;
use crate::protocol::error::ErrorKind;
use crate::protocol::proto::Consistency::{All, One, Quorum};
use crate::storage::clock::wall_micros;

/// Puts and deletes stamped above a newer version than this clock gave.
fn stale_retries(c: &crate::coordinator::Coordinator<super::ScriptedLink>) -> u64 {
    c.metrics
        .reply(crate::metrics::Gauges {
            replica_id: 3,
            repairs_sent: 0,
            hints_pending: 0,
            anti_entropy_rounds: 0,
            anti_entropy_fixes: 0,
        })
        .stale_write_retries
}

fn silent_ms(ms: u64) -> impl FnOnce(&mut super::Scripted) {
    move |r| r.delay = Duration::from_millis(ms)
}

/// Down in the coordinator's view, and failing at once when asked, as a
/// peer whose connection is down does.
fn down(r: &mut super::Scripted) {
    r.up = false;
    r.writes = Act::Answer(Outcome::NoAnswer("replica is down".to_string()));
}

#[test]
fn every_level_succeeds_when_every_replica_acknowledges() {
    let (c, link) = coordinator(Setup::default());
    for level in [One, Quorum, All] {
        let stamp = put(&c, KEY, "v", level).expect("put");
        let stamp_at = |id| link.held(id, KEY).map(|v| v.timestamp_micros);
        settle_until("the write at every replica", || {
            (0..3).all(|id| stamp_at(id) == Some(stamp))
        });
        for id in 0..3 {
            assert_eq!(stamp_at(id), Some(stamp));
        }
    }
    // Key 10 lives on 0, 1, 2: replica 3 is never sent its writes.
    assert!(!link.asked().iter().any(|asked| asked.target == 3));
}

#[test]
fn one_answers_before_the_slow_replicas() {
    let (c, link) = coordinator(Setup {
        write_timeout: Duration::from_secs(3),
        ..Setup::default()
    });
    link.script(1, silent_ms(1_000));
    link.script(2, silent_ms(1_000));
    let started = Instant::now();
    put(&c, KEY, "fast", One).expect("one put");
    assert!(started.elapsed() < Duration::from_millis(500));
    // The slow ones still get the write.
    settle_until("the write at the slow replica", || {
        link.held(2, KEY).is_some()
    });
    assert_eq!(link.held(2, KEY).map(|v| v.value), Some("fast".into()));
}

#[test]
fn quorum_answers_once_two_acknowledged_and_does_not_wait_for_the_third() {
    let (c, link) = coordinator(Setup::default());
    link.script(0, silent_ms(1_000));
    let started = Instant::now();
    put(&c, KEY, "q", Quorum).expect("quorum put");
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn quorum_fails_with_one_acknowledgement() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| r.writes = Act::Silent);
    link.script(2, |r| r.writes = Act::Silent);
    let error = failed(put(&c, KEY, "q", Quorum));
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(
        error.message.contains("1 of 2 replicas answered"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("may have been applied"),
        "{}",
        error.message
    );
}

#[test]
fn all_needs_every_replica() {
    let (c, link) = coordinator(Setup::default());
    link.script(2, |r| r.writes = Act::Silent);
    let error = failed(put(&c, KEY, "a", All));
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(
        error.message.contains("2 of 3 replicas answered"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("replica 2: no answer within"),
        "{}",
        error.message
    );
}

#[test]
fn invalid_wins_over_silence_and_failure() {
    let (c, link) = coordinator(Setup::default());
    link.script(0, |r| r.writes = Act::Fail(ErrorKind::Internal));
    link.script(1, |r| r.writes = Act::Silent);
    link.script(2, |r| r.writes = Act::Fail(ErrorKind::Invalid));
    let error = failed(put(&c, KEY, "x", Quorum));
    assert_eq!(error.kind, ErrorKind::Invalid);
    assert!(
        error.message.contains("replica 2: INVALID"),
        "{}",
        error.message
    );
}

#[test]
fn any_silence_without_invalid_is_a_timeout() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| r.writes = Act::Fail(ErrorKind::Internal));
    link.script(2, |r| r.writes = Act::Silent);
    let error = failed(put(&c, KEY, "x", All));
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(error
        .message
        .contains("may have been applied on some replicas"));
}

#[test]
fn failures_only_are_internal_and_say_where_the_write_was_applied() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| r.writes = Act::Fail(ErrorKind::Internal));
    link.script(2, |r| r.writes = Act::Fail(ErrorKind::Internal));
    let error = failed(put(&c, KEY, "x", All));
    assert_eq!(error.kind, ErrorKind::Internal);
    assert!(
        error
            .message
            .contains("the write was applied on 0, and hints may still deliver it"),
        "{}",
        error.message
    );
}

#[test]
fn a_write_no_replica_took_says_so_and_mentions_hints_only_when_the_mode_hints() {
    for (mode, mentions_hints) in [(RepairMode::Both, true), (RepairMode::ReadRepair, false)] {
        let (c, link) = coordinator(Setup {
            mode,
            ..Setup::default()
        });
        for id in 0..3 {
            link.script(id, |r| r.writes = Act::Fail(ErrorKind::Internal));
        }
        let error = failed(put(&c, KEY, "x", One));
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(error.message.contains("no replica applied the write yet"));
        assert_eq!(
            error.message.contains("hints"),
            mentions_hints,
            "{}",
            error.message
        );
    }
}

#[test]
fn unavailable_is_decided_before_anything_is_sent() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, down);
    link.script(2, down);
    let error = failed(put(&c, KEY, "never", Quorum));
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(
        error.message.contains("only 1 is up (0); down: 1,2"),
        "{}",
        error.message
    );
    settle(5);
    assert!(
        link.asked().is_empty(),
        "nothing may be sent: {:?}",
        link.asked()
    );
    assert!(link.hints().is_empty());
    // It tried the missing replicas once before deciding.
    assert_eq!(link.refreshed(), vec![1, 2]);
    // ONE needs only the one that is up.
    put(&c, KEY, "one", One).expect("one put with two down");
}

#[test]
fn replicas_that_come_up_when_tried_again_are_not_unavailable() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| r.up = false);
    link.script(2, |r| r.up = false);
    link.up_on_refresh(1);
    put(&c, KEY, "v", Quorum).expect("replica 1 came up");
}

#[test]
fn a_fenced_clock_takes_no_writes() {
    let (c, link) = coordinator(Setup::default());
    link.fence("2 of 3 peers are more than 500 ms off");
    let error = failed(put(&c, KEY, "v", One));
    assert_eq!(error.kind, ErrorKind::Internal);
    assert!(error.message.starts_with("clock fence: replica 3"));
    settle(5);
    assert!(link.asked().is_empty());
}

#[test]
fn bad_keys_and_values_are_invalid_and_send_nothing() {
    let (c, link) = coordinator(Setup::default());
    let error = failed(crate::ops::rt::block_on(c.put(
        crate::protocol::proto::PutRequest {
            key: Some(256),
            value: "v".into(),
            consistency: One as i32,
        },
    )));
    assert_eq!(error.kind, ErrorKind::Invalid);
    let error = failed(put(&c, KEY, &"x".repeat(2048), One));
    assert_eq!(error.kind, ErrorKind::Invalid);
    settle(5);
    assert!(link.asked().is_empty());
}

#[test]
fn a_miss_leaves_a_hint_when_the_mode_hints() {
    let (c, link) = coordinator(Setup::default());
    link.script(2, |r| r.writes = Act::Fail(ErrorKind::Internal));
    let stamp = put(&c, KEY, "h", Quorum).expect("quorum put");
    settle(20);
    let hints = link.hints();
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert_eq!((hints[0].0, hints[0].1), (2, KEY));
    assert_eq!(hints[0].2.timestamp_micros, stamp);
    assert_eq!(hints[0].2.value, "h");
}

#[test]
fn no_hints_when_the_mode_does_not_hint() {
    let (c, link) = coordinator(Setup {
        mode: RepairMode::ReadRepair,
        ..Setup::default()
    });
    link.script(2, |r| r.writes = Act::Fail(ErrorKind::Internal));
    put(&c, KEY, "h", Quorum).expect("quorum put");
    settle(20);
    assert!(link.hints().is_empty());
}

#[test]
fn no_hint_for_the_coordinator_itself_nor_for_acknowledging_replicas() {
    let (c, link) = coordinator(Setup {
        self_id: 0,
        ..Setup::default()
    });
    link.script(0, |r| r.writes = Act::Fail(ErrorKind::Internal));
    put(&c, KEY, "h", Quorum).expect("quorum put");
    settle(20);
    assert!(link.hints().is_empty(), "{:?}", link.hints());
}

#[test]
fn the_hint_of_a_replica_known_down_is_stored_before_the_answer() {
    let (c, link) = coordinator(Setup::default());
    link.script(2, |r| {
        down(r);
        r.delay = Duration::from_millis(30);
    });
    put(&c, KEY, "h", Quorum).expect("quorum put");
    // No settling: the answer waited for the down replica's miss.
    assert_eq!(link.hints().len(), 1);
}

#[test]
fn a_delete_writes_a_tombstone_and_a_get_after_it_finds_nothing() {
    let (c, link) = coordinator(Setup::default());
    put(&c, KEY, "doomed", All).expect("put");
    let stamp = delete(&c, KEY, Quorum).expect("delete");
    settle(5);
    let held = link.held(0, KEY).expect("a tombstone");
    assert!(held.tombstone);
    assert_eq!(held.timestamp_micros, stamp);
    assert_eq!(get(&c, KEY, All).expect("get"), None);
}

#[test]
fn stamps_increase_from_one_write_to_the_next() {
    let (c, _link) = coordinator(Setup::default());
    let first = put(&c, KEY, "a", One).expect("put");
    let second = delete(&c, KEY, One).expect("delete");
    let third = put(&c, KEY, "b", One).expect("put");
    assert!(first < second && second < third);
}

#[test]
fn a_put_is_stamped_above_the_newest_stamp_a_quorum_holds_and_sent_once() {
    let (c, link) = coordinator(Setup::default());
    // Replicas 0 and 1 hold a version from a clock 100 ms ahead: any two
    // of the three replicas include one of them.
    let ahead = version("ahead", wall_micros() + 100_000, 0);
    for id in 0..2 {
        link.script(id, |r| {
            r.held.insert(KEY, ahead.clone());
        });
    }
    let stamp = put(&c, KEY, "mine", Quorum).expect("put");
    assert!(
        stamp > ahead.timestamp_micros,
        "{stamp} <= {}",
        ahead.timestamp_micros
    );
    settle(10);
    let asked = link.asked();
    let digests: Vec<_> = asked.iter().filter(|a| a.kind == Kind::Digest).collect();
    // Two, or three if the speculation delay passed on a loaded machine.
    assert!(digests.len() >= 2, "a quorum's digests: {asked:?}");
    let writes: Vec<_> = asked
        .iter()
        .filter(|a| a.kind == Kind::ClientWrite)
        .collect();
    assert_eq!(writes.len(), 3, "sent once to each replica: {asked:?}");
    assert!(writes.iter().all(|w| w.stamp == Some(stamp)), "{asked:?}");
    assert!(
        digests.iter().all(|d| d.at <= writes[0].at),
        "digests first: {asked:?}"
    );
    assert_eq!(link.held(0, KEY).map(|v| v.value), Some("mine".into()));
}

#[test]
fn a_stale_answer_counts_as_an_acknowledgement_and_nothing_is_stamped_again() {
    let (c, link) = coordinator(Setup::default());
    // Between the digests and the write, a newer write (a concurrent put
    // through a clock 300 ms ahead) reached replica 2; replica 0 is slow.
    let newer = (wall_micros() + 300_000, 1);
    link.script(2, |r| r.writes = Act::Answer(Outcome::Stale(newer)));
    link.script(0, |r| r.writes = Act::Silent);
    let stamp = put(&c, KEY, "v", Quorum).expect("replica 1 and the stale replica 2");
    assert!(stamp < newer.0);
    settle(5);
    assert_eq!(link.asked_of(Kind::ClientWrite).len(), 3, "sent once");
    assert_eq!(stale_retries(&c), 0);
    // At ALL, the silent replica is still missing.
    let error = failed(put(&c, KEY, "v", All));
    assert_eq!(error.kind, ErrorKind::Timeout, "{}", error.message);
    assert!(
        error.message.contains("2 of 3 replicas answered"),
        "{}",
        error.message
    );
}

#[test]
fn a_stamp_beyond_twice_the_offset_is_not_chased() {
    let (c, link) = coordinator(Setup::default());
    let far = version("far", wall_micros() + 10_000_000, 0);
    link.script(0, |r| {
        r.held.insert(KEY, far.clone());
    });
    let stamp = put(&c, KEY, "v", Quorum).expect("quorum of 1 and 2");
    assert!(stamp < far.timestamp_micros);
    settle(5);
    assert_eq!(link.asked_of(Kind::ClientWrite).len(), 3, "sent once");
    // At ALL, the stale replica is a miss: a failure, not silence.
    let error = failed(put(&c, KEY, "v", All));
    assert_eq!(error.kind, ErrorKind::Internal);
    assert!(
        error.message.contains("replica 0: stale: it holds"),
        "{}",
        error.message
    );
}

#[test]
fn a_hint_carries_the_stamp_above_the_newest_held() {
    let (c, link) = coordinator(Setup::default());
    let ahead = version("ahead", wall_micros() + 400_000, 0);
    for id in 0..2 {
        link.script(id, |r| {
            r.held.insert(KEY, ahead.clone());
        });
    }
    link.script(2, |r| {
        r.delay = Duration::from_millis(20);
        r.writes = Act::Fail(ErrorKind::Internal);
    });
    let stamp = put(&c, KEY, "v", Quorum).expect("put");
    assert!(stamp > ahead.timestamp_micros);
    settle(60);
    let hints = link.hints();
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert_eq!(hints[0].0, 2);
    assert_eq!(hints[0].2.timestamp_micros, stamp);
}

#[test]
fn a_write_after_a_read_of_a_newer_version_is_stamped_above_it() {
    let (c, link) = coordinator(Setup::default());
    let ahead = version("ahead", wall_micros() + 200_000, 1);
    for id in 0..3 {
        link.script(id, |r| {
            r.held.insert(KEY, ahead.clone());
        });
    }
    assert_eq!(get(&c, KEY, One).expect("get"), Some("ahead".into()));
    let stamp = put(&c, 11, "later", One).expect("put");
    assert!(stamp > ahead.timestamp_micros);
}

#[test]
fn a_replica_down_with_the_level_still_met_is_not_tried_again() {
    let (c, link) = coordinator(Setup::default());
    link.script(2, down);
    put(&c, KEY, "v", Quorum).expect("two of three are up");
    assert!(link.refreshed().is_empty(), "{:?}", link.refreshed());
}

#[test]
fn replicas_that_never_report_end_the_write_at_its_deadline() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| r.writes = Act::Hang);
    link.script(2, |r| r.writes = Act::Hang);
    let started = Instant::now();
    let error = failed(put(&c, KEY, "v", Quorum));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(1_500),
        "{took:?}"
    );
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(
        error
            .message
            .contains("replica 1: no answer within 300 ms; replica 2: no answer within 300 ms"),
        "{}",
        error.message
    );
}

#[test]
fn the_newest_stamp_is_never_learned_from_a_replica_rebuilding_after_lost_data() {
    let (c, link) = coordinator(Setup::default());
    // Replica 0 lost its data (it holds nothing and may not serve the
    // key); 1 holds a version from a clock 100 ms ahead.
    let ahead = version("ahead", wall_micros() + 100_000, 1);
    link.script(0, |r| r.serves = false);
    link.script(1, |r| {
        r.held.insert(KEY, ahead.clone());
    });
    for _ in 0..3 {
        let stamp = put(&c, KEY, "v", Quorum).expect("put");
        assert!(stamp > ahead.timestamp_micros);
    }
    assert!(
        !link.asked_of(Kind::Digest).contains(&0),
        "{:?}",
        link.asked()
    );
    // It still takes the writes: each put is sent to all three replicas,
    // the last one possibly after the put has answered.
    settle_until("the third write of every put", || {
        link.asked_of(Kind::ClientWrite).len() == 9
    });
    assert_eq!(link.held(0, KEY).map(|v| v.value), Some("v".into()));
    // With 2 down too, one replica cannot tell what a quorum holds.
    link.script(2, down);
    let before = link.asked().len();
    let error = failed(put(&c, KEY, "never", Quorum));
    assert_eq!(error.kind, ErrorKind::Unavailable, "{}", error.message);
    assert!(
        error.message.contains("nothing was written"),
        "{}",
        error.message
    );
    settle(5);
    assert_eq!(link.asked().len(), before, "nothing sent");
}

#[test]
fn a_quorum_that_does_not_say_what_it_holds_in_time_fails_the_write_with_nothing_written() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| r.digests = Act::Silent);
    link.script(2, |r| r.digests = Act::Silent);
    let error = failed(put(&c, KEY, "v", Quorum));
    assert_eq!(error.kind, ErrorKind::Timeout, "{}", error.message);
    assert!(
        error
            .message
            .contains("1 of the 2 replicas needed said what they hold")
            && error.message.contains("nothing was written"),
        "{}",
        error.message
    );
    settle(5);
    assert!(link.asked_of(Kind::ClientWrite).is_empty());
    assert!(
        !link.asked().iter().any(|a| a.kind == Kind::Read),
        "digests only, spares included: {:?}",
        link.asked()
    );
}
