//! Keys land on exactly the replicas the ring names: the owner and the next
//! two clockwise, including the wrap-around past the last replica.

mod common;

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::{Body, Consistency, ReplicaRead};

#[test]
fn each_key_lives_on_its_owner_and_the_next_two_replicas_only() {
    let cluster = Cluster::start(4);
    // One key per quarter of the ring, its edges, and the wrap-around.
    let cases: [(u32, [u32; 3]); 8] = [
        (0, [0, 1, 2]),
        (10, [0, 1, 2]),
        (63, [0, 1, 2]),
        (64, [1, 2, 3]),
        (130, [2, 3, 0]),
        (191, [2, 3, 0]),
        (200, [3, 0, 1]),
        (255, [3, 0, 1]),
    ];
    for (key, expected) in cases {
        let value = format!("value-of-{key}");
        cluster
            .put(0, key, &value, Consistency::All)
            .expect("put at ALL");
        for replica in 0..4u32 {
            // Ask the replica itself, bypassing the coordinator.
            let request = Body::ReplicaRead(ReplicaRead {
                key: Some(key),
                ..Default::default()
            });
            let answer = rt::block_on(cluster.client(replica as usize).call(request));
            if expected.contains(&replica) {
                let Ok(Body::ReplicaReadReply(reply)) = answer else {
                    panic!("key {key} on replica {replica}: {answer:?}");
                };
                assert_eq!(
                    reply.found.map(|v| v.value),
                    Some(value.clone()),
                    "key {key} on replica {replica}"
                );
            } else {
                // A replica refuses to serve a key that is not its own.
                let error = answer.expect_err("a read of a key the replica does not hold");
                assert_eq!(error.kind, ErrorKind::Invalid, "{error}");
                assert!(error.message.contains("does not hold"), "{error}");
            }
        }
        let holders: Vec<u32> = cluster
            .holdings(3, key)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            holders, expected,
            "where {key} lists the key's replicas, owner first"
        );
    }
    // And nothing landed anywhere else: each replica holds exactly the
    // keys whose replicas include it.
    for replica in 0..4u32 {
        let held = rt::block_on(cluster.client(replica as usize).status())
            .expect("status")
            .keys_held;
        let expected = cases
            .iter()
            .filter(|(_, replicas)| replicas.contains(&replica))
            .count();
        assert_eq!(held as usize, expected, "keys held by replica {replica}");
    }
}
