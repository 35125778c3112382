//! Compare-and-set and SERIAL gets against scripted acceptors: the
//! condition, the round trips, finishing a proposal left in progress,
//! losing to a higher ballot, an unknown outcome, and a proposal of ours
//! that another round finished.

use std::sync::Arc;
use std::time::Duration;

use super::{
    coordinator, failed, get, put, settle, settle_until, version, Act, Kind, ScriptedLink, Setup,
    KEY,
};
use crate::coordinator::link::Outcome;
use crate::coordinator::Coordinator;
use crate::ops::rt;
use crate::protocol::error::{ErrorKind, KvError};
use crate::protocol::proto::Consistency::{Quorum, Serial};
use crate::protocol::proto::{CasReply, CasRequest};
use crate::storage::clock::wall_micros;

fn cas(
    c: &Arc<Coordinator<ScriptedLink>>,
    expected: Option<&str>,
    value: &str,
) -> Result<CasReply, KvError> {
    rt::block_on(c.cas(CasRequest {
        key: Some(u32::from(KEY)),
        expected: expected.map(str::to_string),
        value: value.to_string(),
    }))
}

fn current_value(reply: &CasReply) -> Option<String> {
    reply.current.as_ref().map(|v| v.value.clone())
}

#[test]
fn an_uncontended_cas_takes_a_prepare_a_proposal_and_a_commit() {
    let (c, link) = coordinator(Setup::default());
    let reply = cas(&c, None, "first").expect("cas");
    assert!(reply.applied);
    settle_until("the commit at every replica", || {
        link.asked_of(Kind::Repair).len() == 3 && (0..3).all(|id| link.held(id, KEY).is_some())
    });
    let kinds: Vec<Kind> = link.asked().iter().map(|a| a.kind).collect();
    let count = |kind| kinds.iter().filter(|&&k| k == kind).count();
    assert_eq!(count(Kind::Prepare), 3);
    assert_eq!(count(Kind::Propose), 3);
    assert_eq!(count(Kind::Repair), 3, "the commit goes to every replica");
    for id in 0..3 {
        let held = link.held(id, KEY).expect("committed");
        assert_eq!(held.value, "first");
        assert_eq!(held.timestamp_micros, reply.timestamp_micros);
    }
}

#[test]
fn the_condition_compares_the_current_value_and_no_value() {
    let (c, link) = coordinator(Setup::default());
    assert!(cas(&c, None, "a").expect("cas").applied);
    let refused = cas(&c, None, "b").expect("cas");
    assert!(!refused.applied);
    assert_eq!(current_value(&refused), Some("a".into()));
    let refused = cas(&c, Some("x"), "b").expect("cas");
    assert_eq!(current_value(&refused), Some("a".into()));
    assert!(cas(&c, Some("a"), "b").expect("cas").applied);
    settle(5);
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("b".into()));
    // A refused cas proposes nothing.
    let proposals = link.asked_of(Kind::Propose).len();
    let _ = cas(&c, Some("a"), "c").expect("cas");
    assert_eq!(link.asked_of(Kind::Propose).len(), proposals);
}

#[test]
fn a_deleted_key_holds_no_value() {
    let (c, link) = coordinator(Setup::default());
    let tombstone = crate::protocol::proto::Versioned {
        tombstone: true,
        ..version("", wall_micros() - 10_000, 0)
    };
    for id in 0..3 {
        link.script(id, |r| {
            r.held.insert(KEY, tombstone.clone());
        });
    }
    let refused = cas(&c, Some(""), "x").expect("cas");
    assert!(!refused.applied);
    assert_eq!(refused.current, None, "a tombstone is no value");
    assert!(cas(&c, None, "x").expect("cas").applied);
}

#[test]
fn a_proposal_left_in_progress_is_finished_before_the_new_one() {
    let (c, link) = coordinator(Setup::default());
    // Replicas 0 and 1 accepted a proposal that was never committed: it
    // was chosen, and every majority sees it.
    let stamp = wall_micros() - 5_000;
    let unfinished = version("unfinished", stamp, 1);
    for id in [0, 1] {
        link.script(id, |r| {
            r.promised.insert(KEY, (stamp, 1));
            r.accepted.insert(KEY, ((stamp, 1), unfinished.clone()));
        });
    }
    // The cas expects the unfinished value: it is the current one once
    // finished.
    let reply = cas(&c, Some("unfinished"), "next").expect("cas");
    assert!(reply.applied, "{reply:?}");
    // Replica 2 is sent the unfinished proposal's commit first.
    settle_until("the new value's commit at replica 2", || {
        link.held(2, KEY).is_some_and(|v| v.value == "next")
    });
    assert_eq!(link.held(2, KEY).map(|v| v.value), Some("next".into()));
}

#[test]
fn a_serial_get_finishes_a_proposal_in_progress_and_a_quorum_get_then_sees_it() {
    let (c, link) = coordinator(Setup::default());
    // A proposal accepted by a majority (so chosen) but never committed.
    let stamp = wall_micros() - 5_000;
    for id in [1, 2] {
        link.script(id, |r| {
            r.promised.insert(KEY, (stamp, 1));
            r.accepted
                .insert(KEY, ((stamp, 1), version("chosen", stamp, 1)));
        });
    }
    // A QUORUM get does not see it: nothing was committed.
    assert_eq!(get(&c, KEY, Quorum).expect("quorum get"), None);
    // A SERIAL get finishes it.
    assert_eq!(
        get(&c, KEY, Serial).expect("serial get"),
        Some("chosen".into())
    );
    assert_eq!(
        get(&c, KEY, Quorum).expect("quorum get"),
        Some("chosen".into())
    );
    let chosen = |id| link.held(id, KEY).is_some_and(|v| v.value == "chosen");
    settle_until("the chosen value at two replicas", || {
        (0..3).filter(|&id| chosen(id)).count() >= 2
    });
    let held: Vec<Option<String>> = (0..3)
        .map(|id| link.held(id, KEY).map(|v| v.value))
        .collect();
    assert!(
        held.iter()
            .filter(|v| v.as_deref() == Some("chosen"))
            .count()
            >= 2,
        "{held:?}"
    );
}

#[test]
fn a_higher_ballot_makes_the_round_start_again_above_it() {
    let (c, link) = coordinator(Setup::default());
    // Two replicas promised a ballot a little ahead of this clock.
    let ahead = (wall_micros() + 50_000, 0);
    for id in [0, 1] {
        link.script(id, |r| {
            r.promised.insert(KEY, ahead);
        });
    }
    let reply = cas(&c, None, "after").expect("cas");
    assert!(reply.applied);
    assert!(
        reply.timestamp_micros > ahead.0,
        "the ballot went above the one it met"
    );
    settle_until("a second round", || link.asked_of(Kind::Prepare).len() >= 6);
}

#[test]
fn too_few_promises_is_a_timeout_that_wrote_nothing() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| r.prepares = Act::Silent);
    link.script(2, |r| r.prepares = Act::Silent);
    let error = failed(cas(&c, None, "x"));
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(error.message.contains("nothing was written"), "{error}");
    assert!(link.asked_of(Kind::Propose).is_empty());
}

#[test]
fn a_proposal_accepted_by_too_few_is_an_unknown_outcome() {
    let (c, link) = coordinator(Setup {
        write_timeout: Duration::from_millis(150),
        ..Setup::default()
    });
    // Every replica promises; only replica 0 answers the proposal.
    link.script(1, |r| r.proposals = Act::Silent);
    link.script(2, |r| r.proposals = Act::Silent);
    let error = failed(cas(&c, None, "maybe"));
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(error.message.contains("outcome is unknown"), "{error}");
    // Replica 0 accepted it: a later round may finish it.
    let mut accepted = None;
    link.script(0, |r| {
        accepted = r.accepted.get(&KEY).map(|(_, v)| v.value.clone())
    });
    assert_eq!(accepted.as_deref(), Some("maybe"));
}

#[test]
fn our_proposal_finished_by_another_round_is_applied_not_refused() {
    let (c, link) = coordinator(Setup::default());
    // The first proposal is refused by two replicas that promised a higher
    // ballot meanwhile (answered once each), and accepted by replica 0.
    let higher = (wall_micros() + 20_000, 1);
    let refusal = Outcome::Accepted(false, Some(higher));
    for id in [1u32, 2] {
        link.script(id, |r| {
            r.proposals = Act::Answer(refusal.clone());
            r.delay = Duration::from_millis(20);
        });
    }
    let scripted = link.clone();
    // Replicas 1 and 2 refuse the first proposal, then serve (having
    // promised the higher ballot).
    std::thread::spawn(move || {
        while scripted.asked_of(Kind::Propose).len() < 3 {
            std::thread::sleep(Duration::from_micros(50));
        }
        for id in [1u32, 2] {
            scripted.script(id, |r| {
                r.proposals = Act::Serve;
                r.promised.insert(KEY, higher);
            });
        }
    });
    let reply = cas(&c, None, "once").expect("cas");
    assert!(reply.applied, "{reply:?}");
    settle_until("the commit at every replica", || {
        (0..3).all(|id| {
            link.held(id, KEY)
                .is_some_and(|v| v.timestamp_micros == reply.timestamp_micros)
        })
    });
    let values: Vec<Option<String>> = (0..3)
        .map(|id| link.held(id, KEY).map(|v| v.value))
        .collect();
    assert!(
        values.iter().all(|v| v.as_deref() == Some("once")),
        "{values:?}"
    );
}

#[test]
fn a_proposal_of_ours_that_may_have_been_written_over_is_an_unknown_outcome() {
    let (c, link) = coordinator(Setup::default());
    put(&c, KEY, "base", Quorum).expect("put");
    settle(5);
    // The cas expects "base"; its first proposal is refused by 1 and 2 and
    // accepted by 0; meanwhile the key changes to "other" on 1 and 2: the
    // proposal may have been finished and written over, or never chosen.
    let higher = (wall_micros() + 20_000, 1);
    let scripted = link.clone();
    for id in [1u32, 2] {
        link.script(id, |r| {
            r.proposals = Act::Answer(Outcome::Accepted(false, Some(higher)));
            // Their refusals arrive after the key has changed on them.
            r.delay = Duration::from_millis(20);
        });
    }
    std::thread::spawn(move || {
        while scripted.asked_of(Kind::Propose).len() < 3 {
            std::thread::sleep(Duration::from_micros(50));
        }
        for id in [1u32, 2] {
            scripted.script(id, |r| {
                r.proposals = Act::Serve;
                r.promised.insert(KEY, higher);
                r.held.insert(KEY, version("other", higher.0, 1));
            });
        }
    });
    let error = failed(cas(&c, Some("base"), "mine"));
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(error.message.contains("outcome is unknown"), "{error}");
}

#[test]
fn a_proposal_refused_by_every_replica_cannot_linger_and_the_cas_goes_on() {
    let (c, link) = coordinator(Setup::default());
    put(&c, KEY, "base", Quorum).expect("put");
    settle(5);
    // Every replica refuses the first proposal (a higher ballot came in
    // between), then serves: the retry is a clean second attempt.
    let higher = (wall_micros() + 20_000, 1);
    for id in 0..3u32 {
        link.script(id, |r| {
            r.proposals = Act::Answer(Outcome::Accepted(false, Some(higher)));
        });
    }
    let scripted = link.clone();
    std::thread::spawn(move || {
        while scripted.asked_of(Kind::Propose).len() < 3 {
            std::thread::sleep(Duration::from_micros(50));
        }
        for id in 0..3u32 {
            scripted.script(id, |r| {
                r.proposals = Act::Serve;
                r.promised.insert(KEY, higher);
            });
        }
    });
    let reply = cas(&c, Some("base"), "mine").expect("cas");
    assert!(reply.applied, "{reply:?}");
    assert!(reply.timestamp_micros > higher.0);
}

#[test]
fn serial_puts_are_refused_by_the_server_not_the_coordinator_and_serial_gets_need_a_majority() {
    let (c, link) = coordinator(Setup::default());
    link.script(0, |r| r.up = false);
    link.script(1, |r| r.up = false);
    let error = failed(get(&c, KEY, Serial));
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
}
