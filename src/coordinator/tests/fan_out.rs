//! The pieces under the rules: a peer reply of the wrong type is a
//! failure, a shortfall's kind, what counts as older, and what a fan-out
//! collects.

use std::sync::Arc;
use std::time::Duration;

use super::{coordinator, recent, version, Act, Setup, KEY};
use crate::coordinator::link::{
    outcome_of_reply, request_of, Expects, Outcome, ReplicaAsk, WriteOf,
};
use crate::coordinator::read::{is_older, Heard};
use crate::coordinator::write::{acknowledgements, describe, shortfall_kind};
use crate::ops::rt;
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::mux::CallError;
use crate::protocol::proto::{Body, DigestEntry, GetReply, ReplicaReadReply, ReplicaWriteAck};

const WAIT: Duration = Duration::from_millis(100);

fn read_reply(found: Option<crate::protocol::proto::Versioned>) -> Body {
    Body::ReplicaReadReply(ReplicaReadReply {
        found,
        digest: None,
    })
}

#[test]
fn a_read_reply_to_a_write_is_a_failure_never_an_ack() {
    let outcome = outcome_of_reply(Expects::WriteAck, Ok(read_reply(None)), WAIT);
    assert!(
        matches!(&outcome, Outcome::Failed(ErrorKind::Internal, why)
            if why.starts_with("answered a replica write with a ")),
        "{outcome:?}"
    );
    assert!(!outcome.answered());
}

#[test]
fn a_write_ack_or_a_client_reply_to_a_read_is_a_failure() {
    let ack = Body::ReplicaWriteAck(ReplicaWriteAck { held_newer: None });
    for (expects, named) in [
        (Expects::Value, "answered a replica read with a "),
        (Expects::Digest, "answered a replica digest read with a "),
    ] {
        let outcome = outcome_of_reply(expects, Ok(ack.clone()), WAIT);
        assert!(
            matches!(&outcome, Outcome::Failed(ErrorKind::Internal, why) if why.starts_with(named)),
            "{outcome:?}"
        );
        let outcome = outcome_of_reply(expects, Ok(Body::GetReply(GetReply { found: None })), WAIT);
        assert!(matches!(outcome, Outcome::Failed(ErrorKind::Internal, _)));
    }
}

#[test]
fn replies_of_the_expected_type_are_answers() {
    let ack = Body::ReplicaWriteAck(ReplicaWriteAck { held_newer: None });
    assert_eq!(
        outcome_of_reply(Expects::WriteAck, Ok(ack), WAIT),
        Outcome::Answered(None)
    );
    let held = DigestEntry {
        key: 10,
        timestamp_micros: 77,
        coordinator_id: 2,
    };
    let stale = Body::ReplicaWriteAck(ReplicaWriteAck {
        held_newer: Some(held),
    });
    assert_eq!(
        outcome_of_reply(Expects::WriteAck, Ok(stale), WAIT),
        Outcome::Stale((77, 2))
    );
    let value = version("v", 5, 1);
    assert_eq!(
        outcome_of_reply(Expects::Value, Ok(read_reply(Some(value.clone()))), WAIT),
        Outcome::Answered(Some(value.clone()))
    );
    // A value where a digest was asked for is as good.
    assert_eq!(
        outcome_of_reply(Expects::Digest, Ok(read_reply(Some(value.clone()))), WAIT),
        Outcome::Answered(Some(value))
    );
    let digest = Body::ReplicaReadReply(ReplicaReadReply {
        found: None,
        digest: Some(held),
    });
    assert_eq!(
        outcome_of_reply(Expects::Digest, Ok(digest), WAIT),
        Outcome::Digest(Some((77, 2)))
    );
}

#[test]
fn call_errors_are_failures_or_silence_by_what_they_say_of_the_write() {
    let refused = |error| outcome_of_reply(Expects::WriteAck, Err(CallError::Refused(error)), WAIT);
    assert!(matches!(
        refused(KvError::invalid("bad")),
        Outcome::Failed(ErrorKind::Invalid, _)
    ));
    // A replica that timed out itself may still apply the write.
    assert!(matches!(
        refused(KvError::timeout("slow disk")),
        Outcome::NoAnswer(_)
    ));
    let cut = outcome_of_reply(
        Expects::Value,
        Err(CallError::Disconnected("reset".into())),
        WAIT,
    );
    assert_eq!(cut, Outcome::NoAnswer("reset".into()));
    let late = outcome_of_reply(Expects::Digest, Err(CallError::TimedOut), WAIT);
    assert_eq!(late, Outcome::NoAnswer("no answer within 100 ms".into()));
}

#[test]
fn asks_become_the_requests_that_name_them() {
    let write = ReplicaAsk::Write(KEY, Arc::new(version("v", 1, 0)), WriteOf::Client);
    match request_of(write) {
        (Body::ReplicaWrite(w), Expects::WriteAck) => assert!(w.client_write),
        other => panic!("{other:?}"),
    }
    let repair = ReplicaAsk::Write(KEY, Arc::new(version("v", 1, 0)), WriteOf::Repair);
    match request_of(repair) {
        (Body::ReplicaWrite(w), Expects::WriteAck) => assert!(!w.client_write),
        other => panic!("{other:?}"),
    }
    match request_of(ReplicaAsk::Digest(KEY)) {
        (Body::ReplicaRead(r), Expects::Digest) => assert!(r.digest_only),
        other => panic!("{other:?}"),
    }
    match request_of(ReplicaAsk::Read(KEY)) {
        (Body::ReplicaRead(r), Expects::Value) => assert!(!r.digest_only),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_shortfall_is_invalid_first_then_timeout_then_internal() {
    let invalid = (1, Outcome::Failed(ErrorKind::Invalid, "x".into()));
    let silent = (2, Outcome::NoAnswer("gone".into()));
    let failed = (3, Outcome::Failed(ErrorKind::Internal, "disk".into()));
    let stale = (0, Outcome::Stale((1, 1)));
    let kind = |misses: &[(u32, Outcome)]| shortfall_kind(misses);
    assert_eq!(kind(&[silent.clone(), invalid.clone()]), ErrorKind::Invalid);
    assert_eq!(kind(&[failed.clone(), silent.clone()]), ErrorKind::Timeout);
    assert_eq!(kind(&[failed.clone(), stale.clone()]), ErrorKind::Internal);
    assert_eq!(
        describe(&[invalid, silent, stale]),
        "replica 1: INVALID: x; replica 2: gone; replica 0: stale: it holds (1, coordinator 1)"
    );
}

#[test]
fn older_means_an_older_stamp_or_nothing_at_all() {
    let old = Some(version("a", 10, 1));
    let new = Some(version("b", 10, 2));
    assert!(is_older(&old, &new));
    assert!(!is_older(&new, &old));
    assert!(!is_older(&new, &new));
    assert!(is_older(&None, &new));
    assert!(!is_older(&old, &None));
    assert!(Heard::Stamp(Some((10, 1))).is_older_than(&new));
    assert!(!Heard::Stamp(Some((10, 2))).is_older_than(&new));
    assert!(!Heard::Stamp(Some((11, 0))).is_older_than(&new));
    assert!(Heard::Stamp(None).is_older_than(&new));
    assert!(!Heard::Stamp(None).is_older_than(&None));
    assert!(Heard::Value(old).is_older_than(&new));
}

#[test]
fn a_fan_out_collects_until_the_count_and_names_the_ones_still_waiting() {
    let (c, link) = coordinator(Setup::default());
    link.script(2, |r| r.delay = Duration::from_millis(200));
    let mut fan = c.fan_out(&[0, 1, 2], ReplicaAsk::Read(KEY), false, WAIT);
    rt::block_on(fan.gather(Some(2)));
    assert_eq!(fan.answered(), 2);
    let misses = fan.misses(WAIT);
    assert_eq!(
        misses,
        vec![(2, Outcome::NoAnswer("no answer within 100 ms".into()))]
    );
    // Until everyone: the slow one is past the deadline.
    rt::block_on(fan.gather(None));
    assert_eq!(fan.answered(), 2);
    assert_eq!(fan.misses(WAIT).len(), 1);
}

#[test]
fn a_fan_out_waits_for_the_replicas_named() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| r.delay = Duration::from_millis(20));
    link.script(2, |r| r.reads = Act::Silent);
    let mut fan = c.fan_out(&[0, 1, 2], ReplicaAsk::Read(KEY), false, WAIT);
    rt::block_on(fan.gather_until_reported(&[1]));
    assert!(fan.outcomes.iter().any(|(id, _)| *id == 1));
    assert_eq!(fan.waiting, vec![2]);
}

#[test]
fn a_stale_answer_counts_toward_a_write_only_up_to_the_horizon() {
    let (c, link) = coordinator(Setup::default());
    link.script(0, |r| r.writes = Act::Answer(Outcome::Stale((500, 1))));
    link.script(1, |r| r.writes = Act::Answer(Outcome::Stale((900, 2))));
    link.script(2, |r| r.writes = Act::Answer(Outcome::Stale((700, 0))));
    let write = ReplicaAsk::Write(KEY, Arc::new(recent("v", 1)), WriteOf::Client);
    let mut fan = c.fan_out(&[0, 1, 2], write, false, WAIT);
    rt::block_on(fan.gather(None));
    assert_eq!(acknowledgements(&fan.outcomes, 1_000), 3);
    assert_eq!(acknowledgements(&fan.outcomes, 800), 2);
    assert_eq!(acknowledgements(&fan.outcomes, 700), 2);
    assert_eq!(acknowledgements(&fan.outcomes, 499), 0);
    assert_eq!(
        fan.answered(),
        0,
        "stale is not the answer a write asks for"
    );
}
