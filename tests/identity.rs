//! Whose data a replica serves: a data directory records its identity on
//! its first start, and a replica started on another replica's or another
//! cluster's directory refuses to start; replicas whose cluster files
//! disagree refuse each other's hellos and count each other down, so no
//! level is ever reached with a replica that is not the real one.

mod common;

use std::time::{Duration, Instant};

use common::{unique_dir, Cluster};
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::{Consistency, DataState};

/// Waits up to 10 s for `condition`, failing with `what`.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts replica `id` the wrong way and returns what it logged when it
/// refused to start; fails if it did not exit with an error.
fn refused_start(
    cluster: &mut Cluster,
    id: usize,
    config: &std::path::Path,
    data: &std::path::Path,
) -> String {
    let before = cluster.log(id).len();
    cluster.spawn_as(id, config, data, &[]);
    assert!(!cluster.wait_for_exit(id), "replica {id} started");
    cluster.log(id)[before..].to_string()
}

#[test]
fn a_data_directory_of_another_replica_or_cluster_is_refused() {
    let mut a = Cluster::start(4);
    a.put(0, 10, "a's value", Consistency::All).expect("put");
    // Replica 1 started on replica 0's data directory.
    a.kill(0);
    a.kill(1);
    let (config, data_of_0) = (a.config.clone(), a.data_dir(0));
    let log = refused_start(&mut a, 1, &config, &data_of_0);
    assert!(
        log.contains("belongs to replica 0") && log.contains("not replica 1"),
        "{log}"
    );
    // Another cluster's replica 2 directory under this cluster's replica 2.
    let mut b = Cluster::start(4);
    b.put(0, 130, "b's value", Consistency::All).expect("put");
    b.kill(2);
    a.kill(2);
    let data_of_b2 = b.data_dir(2);
    let log = refused_start(&mut a, 2, &config, &data_of_b2);
    assert!(log.contains("belongs to cluster"), "{log}");
    // Each replica on its own directory starts and serves its own data.
    for id in 0..3 {
        a.spawn(id);
    }
    a.wait_until_all_see_each_other();
    assert_eq!(
        a.get(1, 10, Consistency::All).expect("get"),
        Some("a's value".into())
    );
    assert_eq!(a.get(3, 130, Consistency::Quorum).expect("get"), None);
    // dump shows whose directory it is.
    let dump = a.run_command(&["dump", a.data_dir(2).to_str().expect("path")]);
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.starts_with("identity ") && l.contains("replica=2")),
        "{text}"
    );
}

#[test]
fn a_replica_whose_cluster_file_differs_is_refused_and_counted_down() {
    let mut cluster = Cluster::start(4);
    let addrs = cluster.addrs.clone();
    // Replica 3 with replicas 0 and 1's addresses swapped, on a new data
    // directory (its own refuses the changed file).
    cluster.kill(3);
    let swapped = cluster.dir.join("swapped.conf");
    std::fs::write(
        &swapped,
        format!(
            "0 {}\n1 {}\n2 {}\n3 {}\n",
            addrs[1], addrs[0], addrs[2], addrs[3]
        ),
    )
    .expect("write");
    let own_data = cluster.data_dir(3);
    let log = refused_start(&mut cluster, 3, &swapped, &own_data);
    assert!(
        log.contains("the same cluster file on every replica"),
        "{log}"
    );
    let fresh = unique_dir();
    cluster.spawn_as(3, &swapped, &fresh.join("data"), &[]);
    cluster.wait_for_port(3);
    let clients: Vec<_> = (0..4).map(|id| cluster.client(id)).collect();
    let status = |id: usize| rt::block_on(clients[id].status()).expect("status");
    eventually("replica 0 shows why it refuses replica 3", || {
        status(0)
            .peers
            .iter()
            .any(|p| p.replica_id == 3 && !p.up && p.refused.contains("other members"))
    });
    assert!(
        status(3).peers.iter().all(|p| !p.up),
        "{:?}",
        status(3).peers
    );
    // Key 200 lives on 3, 0, 1: no ALL put counts the misconfigured 3.
    let error = cluster
        .put(0, 200, "all three", Consistency::All)
        .expect_err("replica 3 is not counted");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    let error = cluster
        .put(3, 10, "through 3", Consistency::Quorum)
        .expect_err("replica 3 counts no peer");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    // Logged once, not on every ping.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cluster.log(0).matches("refusing replica 3").count(),
        1,
        "{}",
        cluster.log(0)
    );
    // A fifth member in replica 3's file: its ALL put of key 10 (on 0, 1,
    // 2 in both files) is never acknowledged without them.
    cluster.kill(3);
    let five = cluster.dir.join("five.conf");
    let extra = common::free_ports(1).remove(0);
    std::fs::write(
        &five,
        format!(
            "0 {}\n1 {}\n2 {}\n3 {}\n4 {extra}\n",
            addrs[0], addrs[1], addrs[2], addrs[3]
        ),
    )
    .expect("write");
    cluster.spawn_as(3, &five, &unique_dir().join("data"), &[]);
    cluster.wait_for_port(3);
    let error = cluster
        .put(3, 10, "five", Consistency::All)
        .expect_err("refused by every peer");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert_eq!(
        cluster.get(0, 10, Consistency::All).expect("get"),
        None,
        "nothing was written"
    );
    eventually("replica 1 refuses the five-member replica 3", || {
        status(1)
            .peers
            .iter()
            .any(|p| p.replica_id == 3 && !p.up && p.refused.contains("other members"))
    });
}

#[test]
fn a_new_cluster_settles_at_once_even_with_a_member_missing() {
    // Replicas 0-2 of a four-replica cluster; 3 never starts.
    let mut cluster = Cluster::launch(4, &[]);
    cluster.kill(3);
    cluster.wait_until_all_see_each_other();
    for key in [10u32, 70, 130, 200] {
        cluster
            .put(0, key, "new", Consistency::Quorum)
            .expect("put");
        assert_eq!(
            cluster.get(1, key, Consistency::Quorum).expect("get"),
            Some("new".into()),
            "key {key}"
        );
    }
    for id in 0..3 {
        let identity = rt::block_on(cluster.client(id).status())
            .expect("status")
            .identity
            .expect("identity");
        assert!(identity.unreadable_keys.is_empty(), "{identity:?}");
        assert_ne!(identity.state, DataState::Rebuilding as i32);
    }
}
