//! Compare-and-set with real replica processes: a unique claim raced by
//! sixteen clients, a counter incremented by cas loops while replicas are
//! killed, a promise that survives a SIGKILL, a proposal left accepted but
//! uncommitted (its coordinator gone) that the next SERIAL get finishes,
//! and histories of cas, puts and SERIAL gets checked for linearizability
//! with and without replicas killed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::history::{self, Workload};
use common::linearizability::check_history;
use common::Cluster;
use ringkv::client::Client;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::{Ballot, Body, Consistency, PaxosPrepare, PaxosPropose, Versioned};

/// Sleeps up to `duration`, waking early when `done` turns true.
fn sleep_unless(done: &AtomicBool, duration: Duration) {
    let until = Instant::now() + duration;
    while !done.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sixteen_clients_racing_to_claim_a_key_leave_exactly_one_winner() {
    let cluster = Cluster::start(4);
    let outcomes: Vec<(
        usize,
        Result<ringkv::protocol::proto::CasReply, ringkv::protocol::error::KvError>,
    )> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..16)
            .map(|n| {
                let client = cluster.client(n % 4);
                scope.spawn(move || {
                    (
                        n,
                        rt::block_on(client.cas(42, None, &format!("client-{n}"))),
                    )
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect()
    });
    let claimed = cluster
        .get(1, 42, Consistency::Serial)
        .expect("serial get")
        .expect("someone claimed the key");
    let winners: Vec<usize> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.as_ref().is_ok_and(|reply| reply.applied))
        .map(|(n, _)| *n)
        .collect();
    // Under contention a cas may end with its outcome unknown (TIMEOUT);
    // no cas is ever told APPLIED unless its value is the one that won.
    assert!(winners.len() <= 1, "{outcomes:?}");
    for (n, outcome) in &outcomes {
        match outcome {
            Ok(reply) if reply.applied => assert_eq!(claimed, format!("client-{n}")),
            Ok(reply) => {
                let current = reply.current.as_ref().map(|v| v.value.clone());
                assert_eq!(current.as_deref(), Some(claimed.as_str()), "client-{n}");
                assert_ne!(
                    claimed,
                    format!("client-{n}"),
                    "told NOT APPLIED, but it won"
                );
            }
            Err(error) => {
                assert_eq!(error.kind, ErrorKind::Timeout, "client-{n}: {error}");
                assert!(error.message.contains("unknown"), "client-{n}: {error}");
            }
        }
    }
    let known = outcomes.iter().filter(|(_, o)| o.is_ok()).count();
    println!(
        "claim: {} winner, {known} of 16 outcomes known",
        winners.len()
    );
    assert!(known >= 8, "most outcomes are known: {outcomes:?}");
}

/// Increments `key` once with a cas loop; returns whether an increment of
/// this call surely applied (Some(true)), surely did not (never: it retries
/// until it applies), or its outcome is unknown (None).
fn increment(client: &Client, key: u32) -> Option<bool> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let current = match rt::block_on(client.get(key, Consistency::Serial)) {
            Ok(found) => found.map(|v| v.value),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let value: u64 = current
            .as_deref()
            .map_or(0, |v| v.parse().expect("a count"));
        match rt::block_on(client.cas(key, current.as_deref(), &(value + 1).to_string())) {
            Ok(reply) if reply.applied => return Some(true),
            Ok(_) => continue,
            Err(error) if error.kind == ErrorKind::Timeout && error.message.contains("unknown") => {
                return None
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("no increment applied in 20 s");
}

#[test]
fn a_counter_incremented_by_cas_loops_while_replicas_are_killed_counts_every_applied_one() {
    let mut cluster = Cluster::start(4);
    let addrs = cluster.addrs.clone();
    let applied = Arc::new(AtomicU64::new(0));
    let unknown = Arc::new(AtomicU64::new(0));
    let done = AtomicBool::new(false);
    let per_client = 25;
    std::thread::scope(|scope| {
        let counters: Vec<_> = (0..8)
            .map(|n| {
                let (applied, unknown) = (applied.clone(), unknown.clone());
                let client = Client::new(addrs[n % 4].clone()).with_timeout(Duration::from_secs(5));
                scope.spawn(move || {
                    for _ in 0..per_client {
                        match increment(&client, 77) {
                            Some(true) => applied.fetch_add(1, Ordering::SeqCst),
                            _ => unknown.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                })
            })
            .collect();
        let nemesis = scope.spawn(|| {
            // Key 77 lives on 1, 2, 3: kill each in turn.
            let mut victim = 1;
            sleep_unless(&done, Duration::from_millis(300));
            while !done.load(Ordering::SeqCst) {
                cluster.kill(victim);
                sleep_unless(&done, Duration::from_millis(600));
                cluster.restart(victim);
                sleep_unless(&done, Duration::from_millis(300));
                victim = if victim == 3 { 1 } else { victim + 1 };
            }
        });
        for counter in counters {
            counter.join().expect("counter");
        }
        done.store(true, Ordering::SeqCst);
        nemesis.join().expect("nemesis");
    });
    let applied = applied.load(Ordering::SeqCst);
    let unknown = unknown.load(Ordering::SeqCst);
    let last: u64 = cluster
        .get(0, 77, Consistency::Serial)
        .expect("serial get")
        .map_or(0, |v| v.parse().expect("a count"));
    println!("counter: {applied} applied, {unknown} unknown, final value {last}");
    assert!(
        last >= applied && last <= applied + unknown,
        "final {last}, applied {applied}, unknown {unknown}"
    );
    assert_eq!(
        cluster.get(3, 77, Consistency::Quorum).expect("quorum get"),
        Some(last.to_string()),
        "a QUORUM get sees the last committed increment"
    );
}

/// A raw replica-to-replica request, as a coordinator would send it.
fn ask(cluster: &Cluster, id: usize, body: Body) -> Body {
    rt::block_on(Client::new(cluster.addrs[id].clone()).call(body)).expect("replica answers")
}

fn prepare(key: u32, micros: u64, coordinator: u32) -> Body {
    Body::PaxosPrepare(PaxosPrepare {
        key: Some(key),
        ballot: Some(Ballot {
            micros,
            coordinator_id: coordinator,
        }),
    })
}

fn propose(key: u32, micros: u64, coordinator: u32, value: &str) -> Body {
    Body::PaxosPropose(PaxosPropose {
        key: Some(key),
        ballot: Some(Ballot {
            micros,
            coordinator_id: coordinator,
        }),
        proposal: Some(Versioned {
            value: value.to_string(),
            timestamp_micros: micros,
            coordinator_id: coordinator,
            tombstone: false,
        }),
    })
}

#[test]
fn a_promise_survives_a_sigkill_of_the_replica_that_made_it() {
    let mut cluster = Cluster::start(4);
    let now = ringkv::storage::clock::wall_micros();
    // Replica 0 promises a ballot for key 10.
    let Body::PaxosPromise(promise) = ask(&cluster, 0, prepare(10, now, 2)) else {
        panic!("not a promise")
    };
    assert!(promise.promised);
    cluster.kill(0);
    cluster.restart(0);
    // After the restart it still refuses a lower ballot, for a prepare and
    // for a proposal alike.
    let Body::PaxosPromise(promise) = ask(&cluster, 0, prepare(10, now - 1, 3)) else {
        panic!("not a promise")
    };
    assert!(!promise.promised);
    assert_eq!(promise.promised_ballot.map(|b| b.micros), Some(now));
    let Body::PaxosAccepted(accepted) = ask(&cluster, 0, propose(10, now - 1, 3, "low")) else {
        panic!("not an acceptance")
    };
    assert!(!accepted.accepted);
    // An acceptance survives too: a prepare after a restart reports it.
    let Body::PaxosAccepted(accepted) = ask(&cluster, 0, propose(10, now, 2, "kept")) else {
        panic!("not an acceptance")
    };
    assert!(accepted.accepted);
    cluster.kill(0);
    cluster.restart(0);
    let Body::PaxosPromise(promise) = ask(&cluster, 0, prepare(10, now + 1, 2)) else {
        panic!("not a promise")
    };
    assert_eq!(promise.accepted.map(|v| v.value), Some("kept".into()));
}

#[test]
fn a_proposal_accepted_but_never_committed_is_finished_by_the_next_serial_get() {
    let cluster = Cluster::start(4);
    cluster.put(0, 10, "before", Consistency::All).expect("put");
    // A coordinator (replica 2) got promises and acceptances from 0 and 1
    // for key 10, then died before committing: sent by hand here.
    let now = ringkv::storage::clock::wall_micros();
    for id in [0, 1] {
        let Body::PaxosPromise(promise) = ask(&cluster, id, prepare(10, now, 2)) else {
            panic!("not a promise")
        };
        assert!(promise.promised);
        let Body::PaxosAccepted(accepted) = ask(&cluster, id, propose(10, now, 2, "chosen")) else {
            panic!("not an acceptance")
        };
        assert!(accepted.accepted);
    }
    // Not committed: a QUORUM get still answers the old value.
    assert_eq!(
        cluster.get(3, 10, Consistency::Quorum).expect("get"),
        Some("before".into())
    );
    // A SERIAL get finishes the proposal, and then every get sees it.
    assert_eq!(
        cluster.get(3, 10, Consistency::Serial).expect("serial get"),
        Some("chosen".into())
    );
    assert_eq!(
        cluster.get(0, 10, Consistency::Quorum).expect("get"),
        Some("chosen".into())
    );
    // And a cas expecting the old value is refused with the chosen one.
    let reply = rt::block_on(cluster.client(1).cas(10, Some("before"), "late")).expect("cas");
    assert!(!reply.applied);
    assert_eq!(reply.current.map(|v| v.value), Some("chosen".into()));
}

/// Runs a workload of cas, puts and gets and checks its history.
fn check(test: &str, history: &history::History) {
    let verdict = check_history(&history.ops_by_key);
    println!(
        "{test}: {}; {}",
        history.summary(),
        if verdict.is_ok() {
            "linearizable"
        } else {
            "NOT linearizable"
        }
    );
    if let Err(explanation) = verdict {
        panic!("{test}: {explanation}");
    }
}

fn cas_workload(addrs: Vec<String>) -> Workload {
    Workload {
        cas_percent: 100,
        delete_percent: 0,
        get_level: Some(Consistency::Serial),
        duration: Duration::from_secs(6),
        ..Workload::new(addrs)
    }
}

#[test]
fn a_history_of_cas_and_serial_gets_is_linearizable() {
    let cluster = Cluster::start(4);
    let history = history::record(&cas_workload(cluster.addrs.clone()));
    assert!(!history.is_empty());
    check("cas and SERIAL gets", &history);
}

#[test]
fn a_history_of_cas_and_serial_gets_with_replicas_killed_is_linearizable() {
    let mut cluster = Cluster::start(4);
    let workload = cas_workload(cluster.addrs.clone());
    let history = history::record_with_faults(&workload, |done| {
        let mut victim = 0;
        sleep_unless(done, Duration::from_millis(500));
        while !done.load(Ordering::SeqCst) {
            cluster.kill(victim);
            sleep_unless(done, Duration::from_secs(1));
            cluster.restart(victim);
            sleep_unless(done, Duration::from_millis(300));
            victim = (victim + 1) % 4;
        }
    });
    check("cas and SERIAL gets, replicas killed", &history);
}

#[test]
fn a_history_of_cas_with_quorum_gets_is_linearizable() {
    let cluster = Cluster::start(4);
    let workload = Workload {
        get_level: Some(Consistency::Quorum),
        ..cas_workload(cluster.addrs.clone())
    };
    let history = history::record(&workload);
    check("cas and QUORUM gets", &history);
}

#[test]
fn cas_and_plain_puts_in_turn_see_each_other_even_with_a_clock_behind() {
    // Replica 2's clock runs 300 ms behind: its stamps are the oldest.
    let cluster = Cluster::start_with_clock_offsets(4, &[(2, -300)]);
    for i in 0..12usize {
        let (a, b, c, d) = (i % 4, (i + 1) % 4, (i + 2) % 4, (i + 3) % 4);
        let key = 10;
        // A put acknowledged before a cas starts is what the cas sees...
        cluster
            .put(a, key, &format!("put-{i}"), Consistency::Quorum)
            .expect("put");
        let reply = rt::block_on(cluster.client(b).cas(
            key,
            Some(&format!("put-{i}")),
            &format!("cas-{i}"),
        ))
        .expect("cas");
        assert!(reply.applied, "round {i}: {reply:?}");
        // ...and a put acknowledged after a cas answered is never shadowed
        // by it, whichever clock stamped either.
        cluster
            .put(c, key, &format!("after-{i}"), Consistency::Quorum)
            .expect("put");
        for level in [Consistency::Quorum, Consistency::Serial] {
            assert_eq!(
                cluster.get(d, key, level).expect("get"),
                Some(format!("after-{i}")),
                "round {i}, {level:?} through {d}"
            );
        }
    }
}
