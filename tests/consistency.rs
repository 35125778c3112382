//! Every level through every coordinator, and what each level promises when
//! replicas are SIGKILLed: QUORUM survives one loss, ONE survives two, and a
//! level that cannot be met is refused up front with nothing written.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::Consistency;

const LEVELS: [Consistency; 3] = [Consistency::One, Consistency::Quorum, Consistency::All];

#[test]
fn every_level_works_through_every_coordinator_when_all_are_up() {
    let cluster = Cluster::start(4);
    for coordinator in 0..4 {
        for (l, level) in LEVELS.into_iter().enumerate() {
            // A key in each quarter, so each coordinator is sometimes a
            // replica of the key and sometimes not.
            for key in [5u32, 70, 140, 250] {
                let value = format!("c{coordinator}-{level}-k{key}");
                cluster.put(coordinator, key, &value, level).expect("put");
                // Read back through the next coordinator at every level: a
                // put at ALL is visible to a read at ONE.
                let reader = (coordinator + 1 + l) % 4;
                if level == Consistency::All {
                    for read_level in LEVELS {
                        assert_eq!(
                            cluster.get(reader, key, read_level).expect("get"),
                            Some(value.clone())
                        );
                    }
                } else {
                    assert_eq!(
                        cluster.get(reader, key, Consistency::All).expect("get"),
                        Some(value.clone())
                    );
                }
            }
        }
    }
    assert_eq!(
        cluster.get(2, 99, Consistency::Quorum).expect("get"),
        None,
        "a key never written is not found"
    );
}

#[test]
fn quorum_survives_one_dead_replica_of_the_key() {
    let mut cluster = Cluster::start(4);
    cluster
        .put(0, 100, "before", Consistency::All)
        .expect("put");
    // Key 100 lives on 1, 2, 3.
    cluster.kill(2);
    for coordinator in [0, 1, 3] {
        let value = format!("after-via-{coordinator}");
        cluster
            .put(coordinator, 100, &value, Consistency::Quorum)
            .expect("QUORUM put with one replica down");
        assert_eq!(
            cluster
                .get(coordinator, 100, Consistency::Quorum)
                .expect("QUORUM get"),
            Some(value)
        );
    }
    cluster.wait_for_view(0, 2, false);
    let error = cluster
        .put(0, 100, "x", Consistency::All)
        .expect_err("ALL cannot be met");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
}

#[test]
fn two_dead_replicas_make_quorum_and_all_unavailable_fast_and_write_nothing() {
    let mut cluster = Cluster::start(4);
    // Key 10 lives on 0, 1, 2.
    cluster
        .put(3, 10, "original", Consistency::All)
        .expect("put");
    cluster.kill(1);
    cluster.kill(2);
    for coordinator in [0, 3] {
        cluster.wait_for_view(coordinator, 1, false);
        cluster.wait_for_view(coordinator, 2, false);
    }
    for coordinator in [0, 3] {
        for level in [Consistency::Quorum, Consistency::All] {
            let started = Instant::now();
            let error = cluster
                .put(coordinator, 10, "must-not-land", level)
                .expect_err("put must fail");
            assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
            let error = cluster
                .get(coordinator, 10, level)
                .expect_err("get must fail");
            assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "UNAVAILABLE is decided before anything is sent, so it is fast (took {:?})",
                started.elapsed()
            );
        }
    }
    // Nothing was written: the live replica still holds the original.
    assert_eq!(
        cluster.get(3, 10, Consistency::One).expect("ONE get"),
        Some("original".into())
    );
    // ONE still works, through a replica of the key and through another.
    cluster
        .put(0, 10, "one-via-0", Consistency::One)
        .expect("ONE put via 0");
    assert_eq!(
        cluster.get(3, 10, Consistency::One).expect("ONE get"),
        Some("one-via-0".into())
    );
    cluster
        .put(3, 10, "one-via-3", Consistency::One)
        .expect("ONE put via 3");
    assert_eq!(
        cluster.get(0, 10, Consistency::One).expect("ONE get"),
        Some("one-via-3".into())
    );
}

#[test]
fn a_frozen_replica_delays_nothing_below_all_and_makes_all_time_out() {
    let cluster = Cluster::start_with(
        4,
        &["--write-timeout-ms", "500", "--read-timeout-ms", "500"],
    );
    cluster.put(0, 10, "before", Consistency::All).expect("put");
    // Frozen, not dead: its sockets stay open, so the coordinator still
    // believes it is up (its pings take a second to time out).
    cluster.signal(2, "STOP");
    // Requests go to all replicas at once and answer at the level, so ONE
    // and QUORUM do not wait out the frozen replica's 500 ms timeout.
    let fast = |what: &str, request: &dyn Fn()| {
        let started = Instant::now();
        request();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(450),
            "{what} waited for the frozen replica: {took:?}"
        );
    };
    fast("QUORUM put", &|| {
        cluster
            .put(0, 10, "quorum-during", Consistency::Quorum)
            .expect("QUORUM put");
    });
    fast("QUORUM get", &|| {
        let value = cluster.get(1, 10, Consistency::Quorum).expect("QUORUM get");
        assert_eq!(value, Some("quorum-during".into()));
    });
    fast("ONE put", &|| {
        cluster
            .put(3, 10, "one-during", Consistency::One)
            .expect("ONE put");
    });
    fast("ONE get", &|| {
        assert!(cluster
            .get(3, 10, Consistency::One)
            .expect("ONE get")
            .is_some());
    });
    let started = Instant::now();
    let put = cluster.put(0, 10, "during", Consistency::All);
    let get = cluster.get(1, 10, Consistency::All);
    let elapsed = started.elapsed();
    cluster.signal(2, "CONT");
    let error = put.expect_err("ALL put cannot be acknowledged by a frozen replica");
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(
        error.message.contains("replica 2: no answer within 500 ms"),
        "{error}"
    );
    assert!(error.message.contains("may have been applied"), "{error}");
    let error = get.expect_err("ALL get cannot hear from a frozen replica");
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(
        elapsed < Duration::from_millis(1_500),
        "both answered at their timeout, took {elapsed:?}"
    );
    // The write did land on the two live replicas: TIMEOUT is not a rollback.
    assert_eq!(
        cluster.get(0, 10, Consistency::One).expect("get"),
        Some("during".into())
    );
}

#[test]
fn a_replica_that_refuses_a_write_as_invalid_makes_the_put_invalid_not_a_timeout() {
    let mut cluster = Cluster::start(4);
    // Replica 2 alone is configured with a smaller value limit.
    cluster.kill(2);
    cluster.spawn_with(2, &["--max-value-bytes", "100"]);
    cluster.wait_until_all_see_each_other();
    let value = "x".repeat(300);
    let error = cluster
        .put(0, 10, &value, Consistency::All)
        .expect_err("replica 2 refuses the value");
    assert_eq!(error.kind, ErrorKind::Invalid, "{error}");
    assert!(error.message.contains("replica 2: INVALID"), "{error}");
    assert!(
        error.message.contains("the write was applied on 0,1"),
        "{error}"
    );
    assert!(!error.message.contains("may have been applied"), "{error}");
    // QUORUM needs only the two replicas that accept it.
    cluster
        .put(0, 10, &value, Consistency::Quorum)
        .expect("two replicas accept it");
}

#[test]
fn a_replica_frozen_past_its_pings_is_named_with_that_reason() {
    // A write timeout longer than a ping's: the prober gives up on the
    // frozen replica while the ALL put still waits for it, and closes its
    // connections. The put must say why, not that the replica hung up.
    let cluster = Cluster::start_with(4, &["--write-timeout-ms", "8000"]);
    cluster.put(0, 10, "before", Consistency::All).expect("put");
    cluster.signal(2, "STOP");
    let put = cluster.put(0, 10, "during", Consistency::All);
    let after = cluster.put(0, 10, "after", Consistency::All);
    cluster.signal(2, "CONT");
    let error = put.expect_err("ALL put cannot be acknowledged by a frozen replica");
    assert!(
        error
            .message
            .contains("replica 2: did not answer a ping in time"),
        "{error}"
    );
    assert!(!error.message.contains("closed the connection"), "{error}");
    // The next one is refused or times out, depending on how far the
    // prober has got; either way it names replica 2 with the truth: counted
    // down, or the ping it did not answer. Never a hang-up.
    let error = after.expect_err("ALL put with replica 2 still frozen");
    println!("the put after: {error}");
    assert!(error.message.contains("replica 2"), "{error}");
    assert!(
        error.message.contains("believed down")
            || error.message.contains("did not answer a ping in time"),
        "{error}"
    );
    assert!(!error.message.contains("closed the connection"), "{error}");
}
