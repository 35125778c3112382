//! Keys land on exactly the replicas the ring names: the owner and the next
//! two clockwise, including the wrap-around past the last replica.

mod common;

use common::Cluster;
use ringkv::proto::Consistency;

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
            let client = cluster.client(replica as usize);
            let held = ringkv::rt::block_on(async {
                // Ask the replica itself, bypassing the coordinator.
                client
                    .call(ringkv::proto::Body::ReplicaRead(
                        ringkv::proto::ReplicaRead { key: Some(key) },
                    ))
                    .await
            })
            .expect("replica read");
            let ringkv::proto::Body::ReplicaReadReply(reply) = held else {
                panic!("unexpected reply {held:?}");
            };
            let holds = reply.found.map(|v| v.value);
            if expected.contains(&replica) {
                assert_eq!(
                    holds.as_deref(),
                    Some(value.as_str()),
                    "key {key} on replica {replica}"
                );
            } else {
                assert_eq!(holds, None, "key {key} must not be on replica {replica}");
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
}
