//! Whole-cluster linearizability: many clients put and get a few keys at
//! QUORUM through every coordinator, and the checker must find an order of
//! their operations that a single register per key could have produced,
//! with no faults, while replicas are SIGKILLed and restarted, and right
//! after a restart. The run length is `RINGKV_HISTORY_SECONDS` (default 10);
//! `scripts/history_test.sh` runs longer.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::history::{self, History, Workload};
use common::linearizability::check_history;
use common::Cluster;

/// Checks the history and prints the test's summary line either way.
fn check(test: &str, history: &History, started: Instant) {
    assert!(!history.is_empty(), "{test}: no operations recorded");
    let checking = Instant::now();
    let verdict = check_history(&history.ops_by_key);
    println!(
        "{test}: {}; checked in {:?}; {:?} in all; {}",
        history.summary(),
        checking.elapsed(),
        started.elapsed(),
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

/// Sleeps up to `duration`, waking early when `done` turns true.
fn sleep_unless(done: &AtomicBool, duration: Duration) {
    let until = Instant::now() + duration;
    while !done.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn quorum_history_without_faults_is_linearizable() {
    let started = Instant::now();
    let cluster = Cluster::start(4);
    let history = history::record(&Workload::new(cluster.addrs.clone()));
    check("no faults", &history, started);
}

#[test]
fn quorum_history_with_replicas_killed_is_linearizable() {
    let started = Instant::now();
    let mut cluster = Cluster::start(4);
    let workload = Workload::new(cluster.addrs.clone());
    let mut kills = 0;
    let history = history::record_with_faults(&workload, |done| {
        // One replica down at a time, each in turn, while clients run.
        let mut victim = 0;
        sleep_unless(done, Duration::from_millis(500));
        while !done.load(Ordering::SeqCst) {
            cluster.kill(victim);
            kills += 1;
            sleep_unless(done, Duration::from_secs(1));
            cluster.restart(victim);
            sleep_unless(done, Duration::from_millis(300));
            victim = (victim + 1) % 4;
        }
    });
    println!("replicas killed and restarted: {kills}");
    check("replicas killed", &history, started);
}

#[test]
fn quorum_history_after_a_restart_is_linearizable() {
    let started = Instant::now();
    let mut cluster = Cluster::start(4);
    cluster.kill(1);
    cluster.restart(1);
    let history = history::record(&Workload::new(cluster.addrs.clone()));
    check("after a restart", &history, started);
}

#[test]
fn quorum_history_with_a_disk_wiped_while_its_newest_holder_is_down_is_linearizable() {
    let started = Instant::now();
    let mut cluster = Cluster::start(4);
    // Mostly reads: the first operation on a key after a wipe is then
    // usually a read, which is where an old value would show.
    let workload = Workload {
        put_percent: 30,
        ..Workload::new(cluster.addrs.clone())
    };
    let mut wipes = 0;
    let history = history::record_with_faults(&workload, |done| {
        // Keys owned by `victim` live on victim, holder (next) and third.
        // With third down, their writes land on victim and holder only;
        // then holder goes down and victim loses its disk, so the newest
        // copies survive on holder alone while victim and a stale third
        // are up: reads must wait for holder, never answer the old value.
        let mut victim = 1;
        sleep_unless(done, Duration::from_millis(500));
        while !done.load(Ordering::SeqCst) {
            let (holder, third) = ((victim + 1) % 4, (victim + 2) % 4);
            cluster.kill(third);
            sleep_unless(done, Duration::from_millis(700));
            cluster.kill(holder);
            cluster.kill(victim);
            std::fs::remove_dir_all(cluster.data_dir(victim)).expect("wipe");
            wipes += 1;
            cluster.spawn(third);
            cluster.spawn(victim);
            sleep_unless(done, Duration::from_millis(1500));
            cluster.restart(holder);
            sleep_unless(done, Duration::from_millis(700));
            victim = (victim + 1) % 4;
        }
        cluster.wait_until_all_see_each_other();
    });
    println!("disks wiped: {wipes}");
    check("disk wiped", &history, started);
}
