//! SIGKILL under load: writers keep putting at QUORUM through every
//! coordinator while replicas are killed and restarted one at a time. No
//! write that was acknowledged may be lost, and every replica must come back.
//!
//! Every value carries bytes that parse as intact write-ahead-log records
//! (format 1 style, with an unseeded checksum, and seeded as a segment's
//! first record would be seeded by nothing): a kill that tears a batch
//! holding one must still be repaired as a torn tail, never refused as
//! corruption.
//!
//! By default this is a short run (five kills). `scripts/crash_test.sh
//! --seconds N` runs the same test for N seconds, killing a random replica
//! every second or so; it reads the duration from `RINGKV_CRASH_SECONDS`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::Cluster;
use ringkv::client::Client;
use ringkv::ops::rt;
use ringkv::protocol::proto::Consistency;

const WRITERS: usize = 4;
const KEYS_PER_WRITER: u32 = 8;

/// A record (length, CRC-32 of length and payload, payload) whose bytes
/// are all ASCII, so that it fits in a string value: found by trying
/// payloads until the checksum's bytes happen to be ASCII (1 in 16).
fn ascii_record(seed: u32) -> String {
    (0u32..)
        .map(|n| format!("forged-record-{seed}-{n:08}"))
        .find_map(|payload| {
            let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
            let mut hasher = crc32fast::Hasher::new_with_initial(seed);
            hasher.update(&bytes);
            hasher.update(payload.as_bytes());
            bytes.extend_from_slice(&hasher.finalize().to_be_bytes());
            bytes.extend_from_slice(payload.as_bytes());
            bytes
                .iter()
                .all(u8::is_ascii)
                .then(|| String::from_utf8(bytes).expect("ascii"))
        })
        .expect("some payload has an ASCII checksum")
}

/// The keys writer `w` owns: spread over the whole ring.
fn keys_of(writer: usize) -> impl Iterator<Item = u32> {
    (0..KEYS_PER_WRITER).map(move |i| (i * WRITERS as u32 + writer as u32) * 7 % 256)
}

/// What one writer saw: the last acknowledged sequence number of each of
/// its keys, and how many puts were acknowledged in all.
struct WriterReport {
    last_acked: HashMap<u32, u64>,
    acked: u64,
}

/// Which replicas to kill, one after another: a fixed short list, or for
/// a timed run, pseudo-random victims until the time is up.
fn victims() -> Box<dyn Iterator<Item = usize>> {
    match std::env::var("RINGKV_CRASH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        None => Box::new([1, 3, 0, 2, 1].into_iter()),
        Some(seconds) => {
            let until = Instant::now() + Duration::from_secs(seconds);
            let mut state = ringkv::storage::clock::wall_micros() | 1;
            Box::new(std::iter::from_fn(move || {
                // xorshift64: varied victims without a dependency.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (Instant::now() < until).then_some((state % 4) as usize)
            }))
        }
    }
}

#[test]
fn no_acknowledged_write_is_lost_when_replicas_are_killed_under_load() {
    // A small checkpoint threshold, so kills land before, during and after
    // checkpoints of both logs.
    let mut cluster = Cluster::start_with(4, &["--checkpoint-bytes", "65536"]);
    let stop = AtomicBool::new(false);
    let addrs = cluster.addrs.clone();
    let mut kills = 0;
    let reports: Vec<WriterReport> = thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (stop, addr) = (&stop, addrs[writer].clone());
                scope.spawn(move || {
                    let client = Client::new(addr).with_timeout(Duration::from_secs(5));
                    let mut report = WriterReport {
                        last_acked: HashMap::new(),
                        acked: 0,
                    };
                    let mut sequence = 0u64;
                    let forged = format!("{}{}", ascii_record(0), ascii_record(1));
                    while !stop.load(Ordering::Relaxed) {
                        sequence += 1;
                        for key in keys_of(writer) {
                            let value = format!("{sequence}|{forged}");
                            // Failures are expected while this writer's own
                            // coordinator is down; only acknowledgements count.
                            if rt::block_on(client.put(key, &value, Consistency::Quorum)).is_ok() {
                                report.last_acked.insert(key, sequence);
                                report.acked += 1;
                            }
                        }
                    }
                    report
                })
            })
            .collect();
        for victim in victims() {
            thread::sleep(Duration::from_millis(300));
            cluster.kill(victim);
            kills += 1;
            thread::sleep(Duration::from_millis(300));
            cluster.restart(victim);
        }
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });
    let acked: u64 = reports.iter().map(|r| r.acked).sum();
    let acknowledged: HashMap<u32, u64> = reports.into_iter().flat_map(|r| r.last_acked).collect();
    assert_eq!(
        acknowledged.len(),
        WRITERS * KEYS_PER_WRITER as usize,
        "every key got acknowledged writes"
    );
    let mut lost = Vec::new();
    for (&key, &last_acked) in &acknowledged {
        let read = cluster
            .get(key as usize % 4, key, Consistency::Quorum)
            .expect("QUORUM get");
        let seen: u64 = read
            .as_deref()
            .unwrap_or("0")
            .split('|')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a sequence number");
        // A later, unacknowledged write may have landed too; an older value
        // means an acknowledged write was lost.
        if seen < last_acked {
            lost.push((key, last_acked, seen));
        }
    }
    assert!(
        lost.is_empty(),
        "acknowledged writes lost (key, acked, read): {lost:?}"
    );
    // Then the replicas converge: hints, the reads' repairs and
    // anti-entropy leave every replica of every key with the same version.
    let quiet = Instant::now();
    let keys: Vec<u32> = acknowledged.keys().copied().collect();
    let converged = loop {
        let diverging: Vec<u32> = keys
            .iter()
            .copied()
            .filter(|&key| {
                let held: Vec<_> = cluster
                    .holdings(0, key)
                    .into_iter()
                    .map(|(_, h)| h)
                    .collect();
                !(held.iter().all(Option::is_some) && held.windows(2).all(|p| p[0] == p[1]))
            })
            .collect();
        if diverging.is_empty() {
            break quiet.elapsed();
        }
        assert!(
            quiet.elapsed() < Duration::from_secs(5),
            "replicas still disagree on keys {diverging:?} 5 s after the load stopped"
        );
        thread::sleep(Duration::from_millis(50));
    };
    println!(
        "crash test: {acked} writes acknowledged, {kills} kills, {} keys verified, {} lost, converged in {} ms",
        acknowledged.len(),
        lost.len(),
        converged.as_millis()
    );
    for id in 0..4 {
        assert!(
            cluster.is_running(id),
            "replica {id} runs after its restarts"
        );
        assert!(
            !cluster.log(id).contains(" ERROR "),
            "replica {id} logged an error:\n{}",
            cluster.log(id)
        );
    }
}
