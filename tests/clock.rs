//! The write clock across restarts, seen from outside: a restarted
//! coordinator neither reissues old timestamps nor runs ahead of the wall
//! clock, so a put acknowledged later wins, whichever coordinator took it.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::Cluster;
use ringkv::protocol::proto::Consistency;
use ringkv::storage::clock::wall_micros;
use ringkv::storage::clock::LEASE_SPAN;
use ringkv::storage::clock_lease::{read_lease, LEASE_FILE};

#[test]
fn a_put_acknowledged_after_a_restarted_coordinators_put_wins() {
    let mut cluster = Cluster::start(4);
    // Key 10 lives on 0, 1, 2; replica 3 holds no copy of it.
    for round in 0..3 {
        cluster.kill(1);
        cluster.restart(1);
        let first = format!("through restarted 1, round {round}");
        let second = format!("through 3 afterwards, round {round}");
        cluster
            .put(1, 10, &first, Consistency::Quorum)
            .expect("put through the restarted coordinator");
        cluster
            .put(3, 10, &second, Consistency::Quorum)
            .expect("put through a coordinator without a copy");
        for via in 0..4 {
            assert_eq!(
                cluster.get(via, 10, Consistency::Quorum).expect("get"),
                Some(second.clone()),
                "round {round}: the later put must win, read through {via}"
            );
        }
    }
}

#[test]
fn starts_that_cannot_bind_leave_the_lease_alone() {
    let mut cluster = Cluster::start(4);
    cluster.put(2, 130, "x", Consistency::All).expect("put");
    cluster.kill(2);
    let lease_file = cluster.data_dir(2).join(LEASE_FILE);
    let before = read_lease(&lease_file).expect("lease");
    // Something else holds replica 2's port: every start fails to bind.
    let squatter = TcpListener::bind(&cluster.addrs[2]).expect("take the port");
    for _ in 0..30 {
        cluster.spawn_with(2, &[]);
        assert!(!cluster.wait_for_exit(2), "a start without its port fails");
    }
    drop(squatter);
    let after = read_lease(&lease_file).expect("lease");
    assert_eq!(
        after, before,
        "a start that issued nothing recorded nothing"
    );
    let span = LEASE_SPAN.as_micros() as u64;
    assert!(
        after <= wall_micros() + span,
        "the lease {after} is more than {span} us ahead of the wall clock"
    );
    assert!(cluster.log(2).contains("cannot listen on"));
    // And the replica starts fine once its port is free.
    cluster.spawn_with(2, &[]);
    cluster.wait_until_all_see_each_other();
    std::thread::sleep(Duration::from_millis(10));
    cluster
        .put(2, 130, "y", Consistency::All)
        .expect("put after the failed starts");
}
