//! Gets: which replicas are asked, digests and fetches, spares and
//! speculation, the newest of the answers, errors, rebuilding replicas,
//! and `where`.

use std::time::{Duration, Instant};

use super::{coordinator, failed, get, recent, settle, version, Act, Kind, Setup, KEY};
use crate::coordinator::link::Outcome;
use crate::ops::rt;
use crate::protocol::error::ErrorKind;
use crate::protocol::proto::Consistency::{All, One, Quorum};
use crate::protocol::proto::{replica_holding, InspectRequest};

/// Replica 0 coordinates: it holds key 10, so its copy is the one read for
/// the value, and the first read of a key asks 0, then 1, with 2 spare.
fn from_replica_0() -> Setup {
    Setup {
        self_id: 0,
        ..Setup::default()
    }
}

#[test]
fn each_level_asks_only_the_replicas_it_needs_one_for_the_value() {
    let (c, link) = coordinator(from_replica_0());
    let v = recent("v", 5);
    for id in 0..3 {
        link.script(id, |r| {
            r.held.insert(KEY, v.clone());
        });
    }
    for (level, asked) in [(One, 1), (Quorum, 2), (All, 3)] {
        let before = link.asked().len();
        assert_eq!(get(&c, KEY, level).expect("get"), Some("v".into()));
        let now = &link.asked()[before..];
        assert_eq!(now.len(), asked, "{level}: {now:?}");
        let reads: Vec<_> = now.iter().filter(|a| a.kind == Kind::Read).collect();
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].target, 0, "its own copy is read for the value");
    }
}

#[test]
fn the_newest_of_the_answers_wins() {
    let (c, link) = coordinator(from_replica_0());
    link.script(0, |r| {
        r.held.insert(KEY, version("old", 100, 2));
    });
    link.script(1, |r| {
        r.held.insert(KEY, version("new", 100, 3));
    });
    // Same timestamp: the coordinator id breaks the tie.
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("new".into()));
}

#[test]
fn a_digest_newer_than_the_value_read_is_fetched() {
    let (c, link) = coordinator(from_replica_0());
    link.script(0, |r| {
        r.held.insert(KEY, recent("old", 50));
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("new", 10));
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("new".into()));
    assert_eq!(link.asked_of(Kind::Digest), vec![1]);
    assert_eq!(
        link.asked_of(Kind::Read),
        vec![0, 1],
        "1's value was fetched"
    );
}

#[test]
fn a_digest_no_newer_than_the_value_is_not_fetched() {
    let (c, link) = coordinator(from_replica_0());
    link.script(0, |r| {
        r.held.insert(KEY, recent("new", 10));
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("old", 50));
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("new".into()));
    assert_eq!(link.asked_of(Kind::Read), vec![0]);
}

#[test]
fn a_newer_value_that_cannot_be_fetched_is_a_miss_and_a_spare_replaces_it() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_secs(5),
        ..from_replica_0()
    });
    link.script(0, |r| {
        r.held.insert(KEY, recent("old", 50));
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("unfetchable", 10));
        r.reads = Act::Fail(ErrorKind::Internal);
    });
    link.script(2, |r| {
        r.held.insert(KEY, recent("spare's", 30));
    });
    let answer = get(&c, KEY, Quorum).expect("get");
    // Decided by 0 and 2, the replicas that did answer.
    assert_eq!(answer, Some("spare's".into()));
    assert!(link.asked_of(Kind::Read).contains(&2), "{:?}", link.asked());
}

#[test]
fn a_failed_replica_brings_in_a_spare_at_once() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_secs(5),
        ..from_replica_0()
    });
    link.script(1, |r| r.digests = Act::Fail(ErrorKind::Internal));
    let started = Instant::now();
    assert_eq!(get(&c, KEY, Quorum).expect("get"), None);
    assert!(started.elapsed() < Duration::from_millis(1_000));
    assert_eq!(link.asked_of(Kind::Digest), vec![1, 2]);
}

#[test]
fn the_value_replica_failing_brings_in_a_spare_for_the_value() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_secs(5),
        ..Setup::default()
    });
    // Replica 3 coordinates: the first read asks 0 (value) and 1 (digest).
    link.script(0, |r| r.reads = Act::Fail(ErrorKind::Internal));
    let v = recent("v", 5);
    for id in 1..3 {
        link.script(id, |r| {
            r.held.insert(KEY, v.clone());
        });
    }
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("v".into()));
    assert_eq!(link.asked_of(Kind::Read)[..2], [0, 2]);
    assert_eq!(
        link.asks_to(2),
        vec![Kind::Read],
        "asked for the value, once"
    );
}

#[test]
fn a_slow_replica_costs_the_speculation_delay_not_the_timeout() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_millis(20),
        read_timeout: Duration::from_secs(3),
        ..from_replica_0()
    });
    link.script(1, |r| r.delay = Duration::from_millis(1_500));
    let started = Instant::now();
    get(&c, KEY, Quorum).expect("get");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "{took:?}");
    let spare = link
        .asked()
        .into_iter()
        .find(|a| a.target == 2)
        .expect("spare");
    assert!(
        spare.at >= Duration::from_millis(20),
        "asked at {:?}",
        spare.at
    );
}

#[test]
fn spares_wait_for_the_speculation_delay() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_millis(300),
        ..from_replica_0()
    });
    link.script(1, |r| r.delay = Duration::from_millis(40));
    get(&c, KEY, Quorum).expect("get");
    settle(5);
    assert!(
        !link.asked().iter().any(|a| a.target == 2),
        "no spare needed"
    );
}

#[test]
fn one_answers_from_the_first_replica_even_if_the_others_are_slow() {
    let (c, link) = coordinator(Setup {
        everyone: 1.0,
        ..from_replica_0()
    });
    link.script(0, |r| {
        r.held.insert(KEY, recent("v", 5));
    });
    link.script(1, |r| r.delay = Duration::from_millis(1_000));
    link.script(2, |r| r.delay = Duration::from_millis(1_000));
    let started = Instant::now();
    assert_eq!(get(&c, KEY, One).expect("get"), Some("v".into()));
    assert!(started.elapsed() < Duration::from_millis(500));
    settle(5);
    assert_eq!(link.asked().len(), 3, "this read asked everyone");
}

#[test]
fn read_shortfalls_have_the_kind_of_their_misses() {
    for (act, kind) in [
        (Act::Silent, ErrorKind::Timeout),
        (Act::Fail(ErrorKind::Invalid), ErrorKind::Invalid),
        (Act::Fail(ErrorKind::Internal), ErrorKind::Internal),
    ] {
        let (c, link) = coordinator(from_replica_0());
        for id in 1..3 {
            link.script(id, |r| {
                r.reads = act.clone();
                r.digests = act.clone();
            });
        }
        let error = failed(get(&c, KEY, Quorum));
        assert_eq!(error.kind, kind, "{}", error.message);
        assert!(error
            .message
            .contains("QUORUM get of key 10: 1 of 2 replicas answered"));
        assert!(!error.message.contains("write"), "{}", error.message);
    }
}

#[test]
fn rebuilding_replicas_are_never_read_from() {
    let (c, link) = coordinator(Setup::default());
    link.script(1, |r| {
        r.serves = false;
        r.held.insert(KEY, recent("lost", 1));
    });
    for _ in 0..4 {
        assert_eq!(get(&c, KEY, Quorum).expect("get"), None);
    }
    settle(5);
    assert!(
        !link.asked().iter().any(|a| a.target == 1),
        "{:?}",
        link.asked()
    );
    // ALL cannot be served while one rebuilds: nothing is asked.
    let before = link.asked().len();
    let error = failed(get(&c, KEY, All));
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(
        error.message.contains("1 is rebuilding"),
        "{}",
        error.message
    );
    assert_eq!(link.asked().len(), before);
}

#[test]
fn a_get_with_too_few_replicas_up_is_unavailable_and_asks_nothing() {
    let (c, link) = coordinator(Setup::default());
    link.script(0, |r| r.up = false);
    link.script(2, |r| r.up = false);
    let error = failed(get(&c, KEY, Quorum));
    assert_eq!(error.kind, ErrorKind::Unavailable);
    settle(5);
    assert!(link.asked().is_empty());
    get(&c, KEY, One).expect("one replica is enough for ONE");
    assert_eq!(link.asked_of(Kind::Read), vec![1], "the one that is up");
}

#[test]
fn a_bad_key_or_level_is_invalid() {
    let (c, _link) = coordinator(Setup::default());
    let request = |key, consistency| crate::protocol::proto::GetRequest { key, consistency };
    for bad in [
        request(None, One as i32),
        request(Some(300), 1),
        request(Some(1), 99),
    ] {
        let error = failed(rt::block_on(c.get(bad)));
        assert_eq!(error.kind, ErrorKind::Invalid);
    }
}

#[test]
fn where_reports_each_replica_without_repairing() {
    let (c, link) = coordinator(Setup::default());
    link.script(0, |r| {
        r.held.insert(KEY, recent("v", 5));
    });
    link.script(1, |r| r.reads = Act::Fail(ErrorKind::Internal));
    link.script(2, |r| r.reads = Act::Answer(Outcome::Digest(None)));
    let reply = rt::block_on(c.inspect(InspectRequest { key: Some(10) })).expect("where");
    let ids: Vec<u32> = reply.replicas.iter().map(|r| r.replica_id).collect();
    assert_eq!(ids, vec![0, 1, 2], "owner first");
    let outcomes: Vec<_> = reply.replicas.into_iter().map(|r| r.outcome).collect();
    assert!(
        matches!(&outcomes[0], Some(replica_holding::Outcome::Holding(h))
        if h.found.as_ref().map(|f| f.value.as_str()) == Some("v"))
    );
    assert!(
        matches!(&outcomes[1], Some(replica_holding::Outcome::Unreachable(why))
        if why.starts_with("INTERNAL"))
    );
    assert!(
        matches!(&outcomes[2], Some(replica_holding::Outcome::Unreachable(why))
        if why == "answered with a digest")
    );
    settle(5);
    assert!(link.asked_of(Kind::Repair).is_empty());
}

#[test]
fn speculation_asks_a_spare_for_the_value_when_the_value_is_what_is_late() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_millis(10),
        ..Setup::default()
    });
    // Replica 3 coordinates: 0 is asked for the value and hangs, 1 for a
    // digest, 2 is the spare.
    link.script(0, |r| r.delay = Duration::from_millis(1_000));
    link.script(1, |r| {
        r.held.insert(KEY, recent("older", 50));
    });
    link.script(2, |r| {
        r.held.insert(KEY, recent("newer", 10));
    });
    let started = Instant::now();
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("newer".into()));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        link.asks_to(2),
        vec![Kind::Read],
        "the spare sends the value"
    );
}

#[test]
fn no_spare_is_asked_once_the_deadline_has_passed() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_secs(5),
        read_timeout: Duration::from_millis(100),
        ..from_replica_0()
    });
    link.script(1, |r| r.digests = Act::Hang);
    let started = Instant::now();
    let error = failed(get(&c, KEY, Quorum));
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_millis(2_000));
    settle(20);
    assert!(link.asks_to(2).is_empty(), "{:?}", link.asked());
}
