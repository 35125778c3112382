//! The linearizability checker itself, on hand-written histories whose
//! verdict is known and on large generated ones: a checker that accepts
//! everything would make the cluster history tests worthless.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::linearizability::{check_history, check_register, Op, OpKind};

fn put(client: usize, call: u64, ret: u64, value: &str) -> Op {
    Op {
        client,
        call,
        ret: Some(ret),
        kind: OpKind::Put(value.to_string()),
        stamp: None,
    }
}

/// A put that never answered: it may have been applied, or not.
fn put_lost(client: usize, call: u64, value: &str) -> Op {
    Op {
        client,
        call,
        ret: None,
        kind: OpKind::Put(value.to_string()),
        stamp: None,
    }
}

fn delete(client: usize, call: u64, ret: Option<u64>) -> Op {
    Op {
        client,
        call,
        ret,
        kind: OpKind::Delete,
        stamp: None,
    }
}

fn get(client: usize, call: u64, ret: u64, value: Option<&str>) -> Op {
    Op {
        client,
        call,
        ret: Some(ret),
        kind: OpKind::Get(value.map(str::to_string)),
        stamp: None,
    }
}

#[test]
fn an_empty_history_and_a_read_of_nothing_are_linearizable() {
    assert_eq!(check_register(&[]), Ok(()));
    assert_eq!(check_register(&[get(0, 0, 5, None)]), Ok(()));
    assert!(check_register(&[get(0, 0, 5, Some("a"))]).is_err());
}

#[test]
fn a_stale_read_after_a_completed_put_is_rejected() {
    let ops = [
        put(0, 0, 10, "a"),
        put(1, 20, 30, "b"),
        get(2, 40, 50, Some("a")),
    ];
    let error = check_register(&ops).expect_err("stale read accepted");
    // The explanation names the read it could not place.
    assert!(error.contains("get -> \"a\""), "{error}");
    assert!(error.contains("c2 [0.040 .. 0.050 ms]"), "{error}");
}

#[test]
fn a_concurrent_interleaving_is_accepted() {
    // The puts overlap, so either order is possible; the reads pick b then a.
    let ops = [
        put(0, 0, 100, "a"),
        put(1, 10, 90, "b"),
        get(2, 20, 30, Some("b")),
        get(3, 95, 120, Some("a")),
        get(2, 130, 140, Some("a")),
    ];
    assert_eq!(check_register(&ops), Ok(()));
}

#[test]
fn a_read_of_an_in_flight_put_is_accepted() {
    let ops = [
        put(0, 0, 10, "a"),
        put(1, 20, 100, "b"),
        get(2, 30, 40, Some("a")),
        get(3, 50, 60, Some("b")),
        get(2, 70, 80, Some("b")),
    ];
    assert_eq!(check_register(&ops), Ok(()));
}

#[test]
fn a_value_read_again_after_a_newer_one_is_rejected_and_its_stamps_are_shown() {
    // What the store once did under clock skew: a put's value read, then a
    // newer put's, then the first again, written under a second stamp.
    let stamped = |op: Op, at: u64, by: u32| Op {
        stamp: Some((at, by)),
        ..op
    };
    let ops = [
        stamped(put(0, 0, 100, "p"), 900, 2),
        stamped(get(1, 10, 20, Some("p")), 500, 2),
        stamped(put(2, 30, 40, "q"), 600, 3),
        stamped(get(1, 50, 60, Some("q")), 600, 3),
        stamped(get(3, 70, 80, Some("p")), 900, 2),
    ];
    let error = check_register(&ops).expect_err("p, q, p");
    assert!(error.contains("get -> \"p\" (stamp 900 by 2)"), "{error}");
    assert!(
        error.contains("read or acknowledged with 2 different stamps: [(500, 2), (900, 2)]"),
        "{error}"
    );
}

#[test]
fn a_read_going_back_in_time_after_another_saw_the_newer_value_is_rejected() {
    // The non-monotonic quorum read: b is still in flight, one read sees it,
    // a later read (by someone else) sees a again.
    let ops = [
        put(0, 0, 10, "a"),
        put(1, 20, 200, "b"),
        get(2, 30, 40, Some("b")),
        get(3, 50, 60, Some("a")),
    ];
    let error = check_register(&ops).expect_err("read went back in time");
    assert!(
        error.contains("the value read was written by c0"),
        "{error}"
    );
}

#[test]
fn an_indeterminate_put_may_have_been_applied() {
    let ops = [
        put(0, 0, 10, "a"),
        put_lost(1, 20, "b"),
        get(2, 100, 110, Some("b")),
        get(3, 120, 130, Some("b")),
    ];
    assert_eq!(check_register(&ops), Ok(()));
}

#[test]
fn an_indeterminate_put_may_never_have_been_applied() {
    let ops = [
        put(0, 0, 10, "a"),
        put_lost(1, 20, "b"),
        get(2, 100, 110, Some("a")),
        get(3, 120, 130, Some("a")),
    ];
    assert_eq!(check_register(&ops), Ok(()));
    // Or applied late, after reads that did not see it.
    let late = [
        put(0, 0, 10, "a"),
        put_lost(1, 20, "b"),
        get(2, 100, 110, Some("a")),
        get(3, 120, 130, Some("b")),
    ];
    assert_eq!(check_register(&late), Ok(()));
}

#[test]
fn an_indeterminate_put_once_seen_cannot_be_unseen() {
    let ops = [
        put(0, 0, 10, "a"),
        put_lost(1, 20, "b"),
        get(2, 100, 110, Some("b")),
        get(3, 120, 130, Some("a")),
    ];
    assert!(check_register(&ops).is_err());
    // Nor can it take effect before it was sent.
    let early = [put_lost(1, 50, "b"), get(2, 10, 20, Some("b"))];
    assert!(check_register(&early).is_err());
}

#[test]
fn deletes_leave_the_register_empty() {
    let ops = [
        put(0, 0, 10, "a"),
        delete(1, 20, Some(30)),
        get(2, 40, 50, None),
    ];
    assert_eq!(check_register(&ops), Ok(()));
    let stale = [
        put(0, 0, 10, "a"),
        delete(1, 20, Some(30)),
        get(2, 40, 50, Some("a")),
    ];
    assert!(check_register(&stale).is_err());
    // A lost delete may or may not have happened, but not both ways round.
    let lost = [
        put(0, 0, 10, "a"),
        delete(1, 20, None),
        get(2, 40, 50, Some("a")),
        get(3, 60, 70, None),
    ];
    assert_eq!(check_register(&lost), Ok(()));
    let flapping = [
        put(0, 0, 10, "a"),
        delete(1, 20, None),
        get(2, 40, 50, None),
        get(3, 60, 70, Some("a")),
    ];
    assert!(check_register(&flapping).is_err());
}

#[test]
fn an_op_returning_before_its_call_is_reported() {
    let error = check_register(&[put(0, 50, 10, "a")]).expect_err("bad interval");
    assert!(error.contains("returns before it is called"), "{error}");
}

#[test]
fn history_checks_every_key_and_names_the_bad_ones() {
    let mut ops_by_key = BTreeMap::new();
    ops_by_key.insert(1, vec![put(0, 0, 10, "a"), get(1, 20, 30, Some("a"))]);
    ops_by_key.insert(2, vec![put(0, 0, 10, "a"), get(1, 20, 30, None)]);
    // Each key is its own register: key 3 never saw key 1's put.
    ops_by_key.insert(3, vec![get(1, 40, 50, None)]);
    let error = check_history(&ops_by_key).expect_err("key 2 is stale");
    assert!(error.starts_with("key 2:"), "{error}");
    assert!(
        !error.contains("key 1:") && !error.contains("key 3:"),
        "{error}"
    );
    ops_by_key.remove(&2);
    assert_eq!(check_history(&ops_by_key), Ok(()));
}

/// A small deterministic generator for the simulated histories (a 64-bit
/// LCG; its high bits are good enough for picking durations).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// A history of `clients` clients against a real (atomic) register: every
/// op takes effect at a random instant inside its interval; some puts lose
/// their answer (half of those never take effect), some ops are deletes.
fn simulated_history(seed: u64, clients: usize, per_client: usize) -> Vec<Op> {
    let mut random = Lcg(seed);
    // (instant it takes effect or None, op)
    let mut planned: Vec<(Option<u64>, Op)> = Vec::new();
    for client in 0..clients {
        let mut now = random.below(50);
        for n in 0..per_client {
            let call = now + random.below(30);
            let ret = call + 1 + random.below(300);
            let effect = call + random.below(ret - call + 1);
            let roll = random.below(100);
            let (kind, lost) = match roll {
                0..=44 => (OpKind::Put(format!("c{client}-{n}")), false),
                45..=47 => (OpKind::Put(format!("c{client}-{n}")), true),
                48..=49 => (OpKind::Delete, false),
                _ => (OpKind::Get(None), false),
            };
            let applied = !lost || random.below(2) == 0;
            let ret = if lost { None } else { Some(ret) };
            let op = Op {
                client,
                call,
                ret,
                kind,
                stamp: None,
            };
            planned.push((applied.then_some(effect), op));
            now = ret.unwrap_or(call + 1000);
        }
    }
    planned.sort_by_key(|(effect, _)| *effect);
    let mut register: Option<String> = None;
    for (effect, op) in &mut planned {
        if effect.is_none() {
            continue;
        }
        match &mut op.kind {
            OpKind::Put(v) => register = Some(v.clone()),
            OpKind::Delete => register = None,
            OpKind::Get(seen) => *seen = register.clone(),
            // The generator makes no cas.
            OpKind::Cas(..) => unreachable!("simulated histories hold no cas"),
        }
    }
    let mut ops: Vec<Op> = planned.into_iter().map(|(_, op)| op).collect();
    ops.sort_by_key(|op| op.call);
    ops
}

#[test]
fn thousands_of_valid_concurrent_ops_check_quickly() {
    let started = Instant::now();
    for seed in 0..3 {
        let ops = simulated_history(seed, 8, 400);
        assert_eq!(ops.len(), 3200);
        assert_eq!(check_register(&ops), Ok(()), "seed {seed}");
    }
    let took = started.elapsed();
    println!("3 generated histories of 3200 ops checked in {took:?}");
    assert!(took < Duration::from_secs(10), "checker too slow: {took:?}");
}

#[test]
fn a_long_history_checks_in_linear_time() {
    // A minute of the cluster workload holds about this many ops per key.
    let ops = simulated_history(11, 8, 6000);
    let started = Instant::now();
    assert_eq!(check_register(&ops), Ok(()));
    let took = started.elapsed();
    println!(
        "a generated history of {} ops checked in {took:?}",
        ops.len()
    );
    assert!(took < Duration::from_secs(10), "checker too slow: {took:?}");
}

#[test]
fn one_bad_read_among_thousands_is_found_quickly() {
    let mut ops = simulated_history(7, 8, 400);
    // Make a read late in the history return a value from its very start.
    let first_put = ops
        .iter()
        .find_map(|op| match &op.kind {
            OpKind::Put(v) if op.ret.is_some() => Some(v.clone()),
            _ => None,
        })
        .expect("a put");
    let late_read = ops
        .iter()
        .rposition(|op| matches!(op.kind, OpKind::Get(_)))
        .expect("a late read");
    ops[late_read].kind = OpKind::Get(Some(first_put));
    let started = Instant::now();
    let error = check_register(&ops).expect_err("stale read accepted");
    let took = started.elapsed();
    println!("rejected in {took:?}:\n{error}");
    assert!(took < Duration::from_secs(10), "checker too slow: {took:?}");
}

fn cas(client: usize, call: u64, ret: Option<u64>, old: Option<&str>, new: &str) -> Op {
    Op {
        client,
        call,
        ret,
        kind: OpKind::Cas(old.map(str::to_string), new.to_string()),
        stamp: None,
    }
}

#[test]
fn a_cas_applies_only_where_the_register_held_its_old_value() {
    // Two clients race to claim an empty key: only one can have applied.
    let both = [
        cas(0, 0, Some(10), None, "a"),
        cas(1, 0, Some(10), None, "b"),
    ];
    assert!(check_register(&both).is_err(), "two claims of an empty key");
    // One claims, the other reads the winner (a cas that did not apply).
    let one = [
        cas(0, 0, Some(10), None, "a"),
        get(1, 0, 10, Some("a")),
        cas(1, 20, Some(30), Some("a"), "b"),
        get(0, 40, 50, Some("b")),
    ];
    assert_eq!(check_register(&one), Ok(()));
    // A cas from a value the register never held is refused.
    let wrong = [put(0, 0, 10, "a"), cas(1, 20, Some(30), Some("z"), "b")];
    assert!(check_register(&wrong).is_err());
    // An unanswered cas may have applied, once its value is seen.
    let lost = [
        put(0, 0, 10, "a"),
        cas(1, 20, None, Some("a"), "b"),
        get(0, 40, 50, Some("b")),
    ];
    assert_eq!(check_register(&lost), Ok(()));
}
