//! Many clients on different coordinators at once: every request gets its
//! own answer, and replicas agree on the newest write of each key.

mod common;

use std::sync::Arc;
use std::thread;

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::proto::Consistency;

#[test]
fn concurrent_writers_on_different_coordinators_leave_replicas_agreeing_on_the_newest() {
    let cluster = Cluster::start(4);
    let keys = [3u32, 64, 150, 255];
    // Every acknowledged put: (key, timestamp, coordinator, value).
    let acknowledged: Vec<(u32, u64, u32, String)> = thread::scope(|scope| {
        let writers: Vec<_> = (0..4)
            .map(|coordinator| {
                let cluster = &cluster;
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for round in 0..40 {
                        for key in keys {
                            let value = format!("via-{coordinator}-round-{round}");
                            let ts = cluster
                                .put(coordinator, key, &value, Consistency::All)
                                .expect("put");
                            acked.push((key, ts, coordinator as u32, value));
                        }
                    }
                    acked
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer"))
            .collect()
    });
    for key in keys {
        // Last write wins: the greatest (timestamp, coordinator) pair.
        let (_, newest_ts, newest_coordinator, newest_value) = acknowledged
            .iter()
            .filter(|(k, ..)| *k == key)
            .max_by_key(|(_, ts, coordinator, _)| (*ts, *coordinator))
            .expect("writes to the key")
            .clone();
        for (replica, held) in cluster.holdings(0, key) {
            let version = held
                .flatten()
                .unwrap_or_else(|| panic!("replica {replica} holds key {key}"));
            assert_eq!(
                (
                    version.timestamp_micros,
                    version.coordinator_id,
                    version.value.as_str()
                ),
                (newest_ts, newest_coordinator, newest_value.as_str()),
                "key {key} on replica {replica}"
            );
        }
        for coordinator in 0..4 {
            assert_eq!(
                cluster
                    .get(coordinator, key, Consistency::One)
                    .expect("get"),
                Some(newest_value.clone())
            );
        }
    }
}

#[test]
fn concurrent_requests_on_one_coordinator_never_see_each_others_answers() {
    let cluster = Cluster::start(4);
    for key in 0..256u32 {
        cluster
            .put(
                key as usize % 4,
                key,
                &format!("value-{key}"),
                Consistency::All,
            )
            .expect("put");
    }
    // Two clients per coordinator, each pipelining reads of every key on
    // its one connection: every answer must be for the key asked.
    thread::scope(|scope| {
        for coordinator in 0..4 {
            for client_no in 0..2 {
                let cluster = &cluster;
                scope.spawn(move || {
                    let client = Arc::new(cluster.client(coordinator));
                    rt::block_on(async {
                        let mut in_flight = Vec::new();
                        for round in 0..4u32 {
                            for key in 0..256u32 {
                                let key = (key + round * 61 + client_no * 17) % 256;
                                let client = client.clone();
                                // Spawned, so all of them are in flight at once on the one connection.
                                in_flight.push(rt::spawn(async move {
                                    (key, client.get(key, Consistency::Quorum).await)
                                }));
                            }
                        }
                        for request in in_flight {
                            let (key, answer) = request.await;
                            let value = answer.expect("get").expect("found").value;
                            assert_eq!(value, format!("value-{key}"));
                        }
                    });
                });
            }
        }
    });
}
