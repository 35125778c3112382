//! A put racing a newer put from a clock that runs ahead, with gets in
//! between: the interleavings a real cluster reaches only on a loaded
//! machine, scripted step by step. What a QUORUM history must never show
//! is a value that was read, then overwritten by one read after it, and
//! then read again.

use std::time::{Duration, Instant};

use super::{coordinator, get, settle, version, Act, Setup, KEY};
use crate::ops::rt;
use crate::protocol::proto::Consistency::Quorum;
use crate::protocol::proto::{PutRequest, Versioned};
use crate::storage::clock::wall_micros;

/// Waits (up to a second) until every replica in `ids` holds `value`.
fn until_held(link: &super::ScriptedLink, ids: &[u32], value: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !ids
        .iter()
        .all(|&id| link.held(id, KEY).is_some_and(|v| v.value == value))
    {
        assert!(Instant::now() < deadline, "{value:?} never reached {ids:?}");
        settle(1);
    }
}

/// The first "not linearizable" of `tests/clock_fence.rs` under load, as
/// the coordinator of put P (replica 3) sees it. Put Q, through replica 1
/// whose clock is 300 ms ahead, has reached replica 1 only; P, stamped by
/// a correct clock, reaches all three; replica 1, which holds the newer
/// Q, answers "stale" before 0 and 2 have taken P. A get
/// (from 0 and 2: replica 1 is slow to serve reads) returns P; then Q's
/// own writes reach 0 and 2, and the next get returns Q. P must not come
/// back after that: P was read before Q was, so P is ordered before Q.
///
/// P's coordinator used to stamp P again above Q's stamp when replica 1
/// answered "stale", and resend it. Replica 1 took that write at once,
/// replicas 0 and 2 later (here: never, so P timed out), and gets that
/// asked replica 1 then returned P again: P, Q, P.
#[test]
fn a_value_read_and_then_overwritten_never_comes_back() {
    let (c, link) = coordinator(Setup::default());
    let q = version("Q", wall_micros() + 300_000, 1);
    link.script(1, |r| {
        r.held.insert(KEY, q.clone());
        r.delay = Duration::from_millis(20);
        r.reads = Act::Silent;
        r.digests = Act::Silent;
    });
    // Replicas 0 and 2 answer after replica 1 does: they take P's first
    // write and never answer another one.
    for id in [0, 2] {
        link.script(id, |r| {
            r.delay = Duration::from_millis(60);
            r.next_writes.push_back(Act::Serve);
            r.writes = Act::Silent;
        });
    }
    let put = {
        let c = c.clone();
        rt::spawn(async move {
            c.put(PutRequest {
                key: Some(u32::from(KEY)),
                value: "P".to_string(),
                consistency: Quorum as i32,
            })
            .await
        })
    };
    until_held(&link, &[0, 2], "P");
    assert_eq!(get(&c, KEY, Quorum).expect("first get"), Some("P".into()));
    // Q's own writes reach replicas 0 and 2 (last write wins there): Q is
    // acknowledged, and read.
    for id in [0, 2] {
        link.script(id, |r| {
            let held = r.held.remove(&KEY);
            let newest = Versioned::newest(held, Some(q.clone())).expect("a version");
            r.held.insert(KEY, newest);
        });
    }
    let second = get(&c, KEY, Quorum).expect("second get");
    assert_eq!(second, Some("Q".into()), "Q is newer than P");
    // Replica 1 serves reads again; P's put ends.
    link.script(1, |r| {
        r.reads = Act::Serve;
        r.digests = Act::Serve;
    });
    let outcome = rt::block_on(put);
    // And replicas 0 and 2 take writes (repairs) again.
    for id in [0, 2] {
        link.script(id, |r| r.writes = Act::Serve);
    }
    // Gets take turns over the pairs of replicas: all three pairs.
    for turn in 0..3 {
        assert_eq!(
            get(&c, KEY, Quorum).expect("later get"),
            Some("Q".into()),
            "get {turn} after P was read and then Q: P came back (P, Q, P is not linearizable); \
             the put answered {outcome:?}; replicas hold {:?}",
            (0..3).map(|id| link.held(id, KEY)).collect::<Vec<_>>()
        );
    }
    assert!(
        outcome.is_ok(),
        "P was acknowledged by 0 and 2: {outcome:?}"
    );
}
