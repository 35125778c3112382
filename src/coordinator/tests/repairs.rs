//! Read repair: blocking (the answer waits until the level's count hold
//! the newest version) and background (late answers repaired after the
//! client heard back), and tombstones carried by both.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{coordinator, failed, get, recent, settle, settle_until, Act, Kind, Setup, KEY};
use crate::cluster::repair_mode::RepairMode;
use crate::protocol::error::ErrorKind;
use crate::protocol::proto::Consistency::{One, Quorum};
use crate::protocol::proto::Versioned;

fn from_replica_0() -> Setup {
    Setup {
        self_id: 0,
        ..Setup::default()
    }
}

fn tombstone(ms_ago: u64) -> Versioned {
    Versioned {
        tombstone: true,
        ..recent("", ms_ago)
    }
}

#[test]
fn a_quorum_read_that_disagrees_repairs_before_answering() {
    // No speculation: the slow replica stays one of the two deciding.
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_secs(5),
        ..from_replica_0()
    });
    link.script(0, |r| {
        r.held.insert(KEY, recent("old", 50));
        // Slow enough that an answer not waiting for the repair shows.
        r.delay = Duration::from_millis(30);
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("new", 10));
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("new".into()));
    // No settling: the stale member already holds the newest version.
    assert_eq!(link.held(0, KEY).map(|v| v.value), Some("new".into()));
    assert_eq!(link.asked_of(Kind::Repair), vec![0]);
    assert_eq!(c.stats.repairs_sent.load(Ordering::Relaxed), 1);
}

#[test]
fn a_replica_holding_nothing_is_repaired_too() {
    let (c, link) = coordinator(from_replica_0());
    link.script(1, |r| {
        r.held.insert(KEY, recent("only on 1", 10));
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("only on 1".into()));
    assert_eq!(link.held(0, KEY).map(|v| v.value), Some("only on 1".into()));
}

#[test]
fn answers_that_agree_repair_nothing() {
    let (c, link) = coordinator(from_replica_0());
    let same = recent("same", 10);
    for id in 0..3 {
        link.script(id, |r| {
            r.held.insert(KEY, same.clone());
        });
    }
    get(&c, KEY, Quorum).expect("get");
    settle(5);
    assert!(link.asked_of(Kind::Repair).is_empty());
    assert_eq!(c.stats.repairs_sent.load(Ordering::Relaxed), 0);
}

#[test]
fn a_refused_repair_goes_to_the_replica_that_did_not_decide() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_secs(5),
        ..from_replica_0()
    });
    link.script(0, |r| {
        r.held.insert(KEY, recent("old", 50));
        r.writes = Act::Fail(ErrorKind::Invalid);
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("new", 10));
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("new".into()));
    assert_eq!(link.held(2, KEY).map(|v| v.value), Some("new".into()));
    assert_eq!(link.asked_of(Kind::Repair), vec![0, 2]);
}

#[test]
fn a_repair_that_cannot_reach_the_level_is_a_timeout() {
    let (c, link) = coordinator(Setup {
        speculate_after: Duration::from_secs(5),
        ..from_replica_0()
    });
    link.script(0, |r| {
        r.held.insert(KEY, recent("old", 50));
        r.writes = Act::Fail(ErrorKind::Invalid);
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("new", 10));
    });
    link.script(2, |r| r.writes = Act::Silent);
    let error = failed(get(&c, KEY, Quorum));
    assert_eq!(error.kind, ErrorKind::Timeout, "{}", error.message);
    assert!(
        error
            .message
            .contains("read repair reached only 1 of the 2 needed"),
        "{}",
        error.message
    );
}

#[test]
fn a_one_read_repairs_nothing_before_answering() {
    let (c, link) = coordinator(from_replica_0());
    link.script(0, |r| {
        r.held.insert(KEY, recent("old", 50));
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("new", 10));
    });
    assert_eq!(get(&c, KEY, One).expect("get"), Some("old".into()));
    settle(10);
    assert!(link.asked_of(Kind::Repair).is_empty());
}

#[test]
fn late_answers_are_repaired_in_the_background() {
    let (c, link) = coordinator(Setup {
        everyone: 1.0,
        ..from_replica_0()
    });
    let new = recent("new", 10);
    for id in 0..2 {
        link.script(id, |r| {
            r.held.insert(KEY, new.clone());
        });
    }
    link.script(2, |r| {
        r.held.insert(KEY, recent("old", 50));
        r.delay = Duration::from_millis(40);
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("new".into()));
    // Answered before the late replica was heard from or repaired.
    assert!(link.asked_of(Kind::Repair).is_empty());
    assert_eq!(link.held(2, KEY).map(|v| v.value), Some("old".into()));
    settle_until("the background repair", || {
        c.stats.repairs_sent.load(Ordering::Relaxed) == 1
            && link.held(2, KEY).is_some_and(|v| v.value == "new")
    });
    settle(20);
    assert_eq!(link.held(2, KEY).map(|v| v.value), Some("new".into()));
    assert_eq!(c.stats.repairs_sent.load(Ordering::Relaxed), 1);
}

#[test]
fn a_late_answer_newer_than_the_reply_is_spread_in_the_background() {
    let (c, link) = coordinator(Setup {
        everyone: 1.0,
        ..from_replica_0()
    });
    let old = recent("old", 50);
    for id in 0..2 {
        link.script(id, |r| {
            r.held.insert(KEY, old.clone());
        });
    }
    link.script(2, |r| {
        r.held.insert(KEY, recent("newest", 10));
        r.delay = Duration::from_millis(30);
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("old".into()));
    let newest = |id| link.held(id, KEY).is_some_and(|v| v.value == "newest");
    settle_until("the newest value spread", || (0..2).all(newest));
    for id in 0..2 {
        assert_eq!(link.held(id, KEY).map(|v| v.value), Some("newest".into()));
    }
}

#[test]
fn reads_that_do_not_ask_everyone_repair_nothing_late() {
    let (c, link) = coordinator(Setup {
        mode: RepairMode::HintedHandoff,
        ..from_replica_0()
    });
    link.script(0, |r| {
        r.held.insert(KEY, recent("v", 10));
    });
    get(&c, KEY, One).expect("get");
    settle(20);
    assert_eq!(link.asked().len(), 1);
}

#[test]
fn a_tombstone_wins_over_an_older_put_and_is_repaired_like_one() {
    let (c, link) = coordinator(from_replica_0());
    link.script(0, |r| {
        r.held.insert(KEY, recent("older put", 50));
    });
    link.script(1, |r| {
        r.held.insert(KEY, tombstone(10));
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), None);
    assert!(link.held(0, KEY).expect("repaired").tombstone);
}

#[test]
fn a_put_newer_than_a_tombstone_is_found() {
    let (c, link) = coordinator(from_replica_0());
    link.script(0, |r| {
        r.held.insert(KEY, tombstone(50));
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("back", 10));
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("back".into()));
}

#[test]
fn a_read_that_did_not_ask_everyone_leaves_its_late_answers_alone() {
    let (c, link) = coordinator(from_replica_0());
    let new = recent("new", 10);
    for id in [0, 2] {
        link.script(id, |r| {
            r.held.insert(KEY, new.clone());
        });
    }
    // Asked first, late past the speculation delay, and stale.
    link.script(1, |r| {
        r.held.insert(KEY, recent("old", 50));
        r.delay = Duration::from_millis(60);
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("new".into()));
    settle(150);
    assert_eq!(link.held(1, KEY).map(|v| v.value), Some("old".into()));
    assert!(link.asked_of(Kind::Repair).is_empty());
}

#[test]
fn the_background_repair_skips_replicas_the_blocking_repair_already_fixed() {
    let (c, link) = coordinator(Setup {
        everyone: 1.0,
        speculate_after: Duration::from_secs(5),
        ..from_replica_0()
    });
    let old = recent("old", 50);
    link.script(0, |r| {
        r.held.insert(KEY, old.clone());
    });
    link.script(1, |r| {
        r.held.insert(KEY, recent("new", 10));
    });
    link.script(2, |r| {
        r.held.insert(KEY, old.clone());
        r.delay = Duration::from_millis(40);
    });
    assert_eq!(get(&c, KEY, Quorum).expect("get"), Some("new".into()));
    settle_until("the background repair", || {
        c.stats.repairs_sent.load(Ordering::Relaxed) >= 2
            && link.held(2, KEY).is_some_and(|v| v.value == "new")
    });
    settle(20);
    // 0 before answering, 2 after: each once.
    assert_eq!(link.asked_of(Kind::Repair), vec![0, 2]);
    assert_eq!(c.stats.repairs_sent.load(Ordering::Relaxed), 2);
    assert_eq!(link.held(2, KEY).map(|v| v.value), Some("new".into()));
}
