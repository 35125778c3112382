//! A replica that lost its data (its data directory wiped, or only its
//! write-ahead log) while its peers knew it rebuilds before it serves: it
//! takes writes, but no read counts on its copy of a key until both other
//! replicas of the key have answered its pull. So a value acknowledged at
//! QUORUM that survives on a single replica, which is down, is never
//! shadowed by an older one: reads answer UNAVAILABLE until it returns.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::{Consistency, DataState, StatusReply};

fn status(cluster: &Cluster, id: usize) -> StatusReply {
    rt::block_on(cluster.client(id).status()).expect("status")
}

/// Waits up to 10 s for `condition`, failing with `what`.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_of(cluster: &Cluster, id: usize) -> DataState {
    let identity = status(cluster, id).identity.expect("identity");
    DataState::try_from(identity.state).expect("state")
}

/// The story: key 10 lives on 0, 1, 2. v1 at QUORUM; 2 stops; v2
/// at QUORUM (0 and 1 hold it); 0 and 1 stop; `lose` destroys 1's data;
/// 1 and 2 start. Replica 1 rebuilds; key 10 is unreadable on it until 0
/// returns, so no QUORUM get answers v1.
fn lost_data_never_serves_an_old_value(lose: impl Fn(&Path), expected_log: &str) {
    let mut cluster = Cluster::start(4);
    cluster.put(0, 10, "v1", Consistency::Quorum).expect("v1");
    cluster.kill(2);
    cluster.put(0, 10, "v2", Consistency::Quorum).expect("v2");
    cluster.kill(0);
    cluster.kill(1);
    lose(&cluster.data_dir(1));
    cluster.spawn(1);
    cluster.spawn(2);
    cluster.wait_for_view(3, 1, true);
    cluster.wait_for_view(3, 2, true);
    cluster.wait_for_view(1, 2, true);
    assert!(cluster.log(1).contains(expected_log), "{}", cluster.log(1));
    assert_eq!(state_of(&cluster, 1), DataState::Rebuilding);
    // Replica 1 waits for 0 (down) for every key it shares with it.
    eventually("replicas 2 and 3 answer replica 1's pull", || {
        status(&cluster, 1).rebuild_waiting_for == vec![0]
    });
    for via in [1, 2, 3] {
        for level in [Consistency::Quorum, Consistency::All, Consistency::One] {
            match cluster.get(via, 10, level) {
                Err(error) => assert_eq!(error.kind, ErrorKind::Unavailable, "{error}"),
                // Only replica 2 may answer (ONE): it never saw v2.
                Ok(found) if level == Consistency::One => assert_eq!(found, Some("v1".into())),
                Ok(found) => panic!("{level:?} get through {via} answered {found:?}"),
            }
        }
    }
    // Keys replica 1 shares only with 2 and 3 (64-127) are readable on it.
    cluster.put(3, 70, "fresh", Consistency::All).expect("put");
    assert_eq!(
        cluster.get(1, 70, Consistency::Quorum).expect("get"),
        Some("fresh".into())
    );
    // Replica 0 returns: 1 pulls from it, finishes, and v2 is what reads see.
    cluster.restart(0);
    eventually("replica 1 finishes rebuilding", || {
        state_of(&cluster, 1) == DataState::Settled
    });
    assert!(
        cluster.log(1).contains("rebuild finished"),
        "{}",
        cluster.log(1)
    );
    assert_eq!(
        cluster.get(3, 10, Consistency::Quorum).expect("get"),
        Some("v2".into())
    );
    let held = cluster.held(3, 1, 10).expect("replica 1 answers");
    assert_eq!(held.map(|v| v.value), Some("v2".into()), "pulled from 0");
    // Its peers took the new incarnation: a restart is an ordinary one.
    cluster.kill(1);
    cluster.restart(1);
    assert_eq!(state_of(&cluster, 1), DataState::Settled);
    assert_eq!(
        cluster.get(1, 10, Consistency::All).expect("get"),
        Some("v2".into())
    );
}

#[test]
fn a_wiped_data_directory_rebuilds_and_never_serves_an_old_value() {
    lost_data_never_serves_an_old_value(
        |dir| std::fs::remove_dir_all(dir).expect("wipe"),
        "knew this replica as incarnation",
    );
}

#[test]
fn a_lost_write_ahead_log_is_lost_data_even_with_the_clock_lease() {
    lost_data_never_serves_an_old_value(
        |dir| std::fs::remove_dir_all(dir.join("wal")).expect("lose the log"),
        "but no write-ahead log: its data is lost",
    );
}

#[test]
fn a_rebuild_interrupted_by_a_crash_resumes() {
    let mut cluster = Cluster::start(4);
    cluster.put(0, 10, "kept", Consistency::All).expect("put");
    cluster.kill(0);
    cluster.kill(1);
    std::fs::remove_dir_all(cluster.data_dir(1)).expect("wipe");
    cluster.spawn(1);
    cluster.wait_for_view(1, 2, true);
    cluster.wait_for_view(3, 1, true);
    // Killed while it waits for 0: it comes back still rebuilding.
    eventually("replicas 2 and 3 answer replica 1's pull", || {
        status(&cluster, 1).rebuild_waiting_for == vec![0]
    });
    cluster.kill(1);
    cluster.spawn(1);
    // Its peers see it up from its hello, before its port opens: ask it
    // only once it answers.
    cluster.wait_for_view(1, 2, true);
    cluster.wait_for_view(3, 1, true);
    assert_eq!(state_of(&cluster, 1), DataState::Rebuilding);
    let error = cluster
        .get(3, 10, Consistency::All)
        .expect_err("0 is down and 1 rebuilding");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    cluster.restart(0);
    eventually("replica 1 finishes rebuilding", || {
        state_of(&cluster, 1) == DataState::Settled
    });
    assert_eq!(
        cluster.get(1, 10, Consistency::All).expect("get"),
        Some("kept".into())
    );
}
