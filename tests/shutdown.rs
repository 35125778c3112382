//! Stopping: SIGTERM stops a replica cleanly under load (exit 0 within
//! 5 s, requests in progress answered, nothing acknowledged lost).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::Consistency;

#[test]
fn sigterm_stops_a_busy_replica_cleanly_and_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(4);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8u32)
        .map(|writer| {
            let (client, stop) = (cluster.client(0), stop.clone());
            std::thread::spawn(move || {
                let mut acked = HashMap::new();
                let mut errors = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = writer * 30 + 1;
                    match rt::block_on(client.put(key, &n.to_string(), Consistency::Quorum)) {
                        Ok(_) => {
                            acked.insert(key, n);
                        }
                        Err(error) => errors.push(error),
                    }
                }
                (acked, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let terminated = Instant::now();
    cluster.signal(0, "TERM");
    assert!(
        cluster.wait_for_exit(0),
        "SIGTERM ends the replica with status 0"
    );
    let took = terminated.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashMap::new();
    for writer in writers {
        let (acked, errors) = writer.join().expect("writer");
        acknowledged.extend(acked);
        for error in errors {
            // Refused while stopping, or the coordinator is gone: both say
            // so; none may claim a success that did not happen.
            assert!(
                matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
                "{error}"
            );
        }
    }
    let log = cluster.log(0);
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    assert!(
        log.contains("every connection finished its requests"),
        "{log}"
    );
    cluster.restart(0);
    for (key, last) in acknowledged {
        let read: u64 = cluster
            .get(0, key, Consistency::Quorum)
            .expect("get")
            .expect("a value")
            .parse()
            .expect("a number");
        assert!(read >= last, "key {key}: acknowledged {last}, read {read}");
    }
}
