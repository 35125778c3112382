//! Ready means listening: once a replica's port accepts connections, it
//! and its peers already see each other, so a script that waits only for
//! the ports can use every level at once.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::proto::Consistency;

/// Sends an ALL put through every coordinator at the same moment.
fn all_through_every_coordinator(cluster: &Cluster, round: usize) {
    let threads: Vec<_> = (0..cluster.addrs.len())
        .map(|id| {
            let client = cluster.client(id);
            std::thread::spawn(move || {
                let key = (id * 64 + round) as u32;
                rt::block_on(client.put(key, "ready", Consistency::All))
                    .map_err(|e| format!("ALL put through {id}: {e}"))
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .expect("thread")
            .expect("the first request works");
    }
}

#[test]
fn every_level_works_as_soon_as_the_ports_accept_connections() {
    let mut cluster = Cluster::launch(4, &[]);
    for id in 0..4 {
        cluster.wait_for_port(id);
    }
    all_through_every_coordinator(&cluster, 0);
    for round in 1..4 {
        let id = round % 4;
        cluster.kill(id);
        cluster.spawn(id);
        cluster.wait_for_port(id);
        let opened = Instant::now();
        cluster.wait_until_all_see_each_other();
        let settled = opened.elapsed();
        assert!(
            settled < Duration::from_millis(100),
            "replica {id} and its peers saw each other only {settled:?} after its port opened"
        );
        all_through_every_coordinator(&cluster, round);
    }
}
