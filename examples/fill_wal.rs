//! Fills a replica's data directory with N writes, exactly as the replica
//! would log them (same record encoding, same checkpoint rule), so restart
//! time can be measured after millions of writes without waiting for a
//! cluster to take them:
//!
//! ```text
//! cargo run --release --example fill_wal -- DIR WRITES [CHECKPOINT_BYTES|none]
//! ringkv replica --config ... --id 0 --data DIR   # then time its "listening" line
//! ```
//!
//! Writes go to the 256 keys in turn with 16-byte values, 64 records per
//! append (one fdatasync each). With CHECKPOINT_BYTES (default 4 MiB, the
//! replica's default) the store is checkpointed whenever the log passes it;
//! with `none` the log only grows.

use ringkv::protocol::proto::Versioned;
use ringkv::storage::durable::encode_record;
use ringkv::storage::store::Store;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: fill_wal DIR WRITES [CHECKPOINT_BYTES|none]");
        std::process::exit(2);
    }
    let dir = std::path::Path::new(&args[0]).join("wal");
    let writes: u64 = args[1].parse().expect("WRITES is a number");
    let checkpoint_bytes: Option<u64> = match args.get(2).map(String::as_str) {
        Some("none") => None,
        Some(n) => Some(n.parse().expect("CHECKPOINT_BYTES is a number")),
        None => Some(4 * 1024 * 1024),
    };
    let (mut log, _) = wal::Wal::open(&dir, wal::Options::default(), |_| Ok(())).expect("open");
    let store = Store::new();
    let started = std::time::Instant::now();
    let mut written = 0u64;
    let mut checkpoints = 0u64;
    let base = ringkv::storage::clock::wall_micros() - writes;
    while written < writes {
        let batch: Vec<(u8, Versioned)> = (0..64.min(writes - written))
            .map(|i| {
                let n = written + i;
                let version = Versioned {
                    value: format!("{n:016}"),
                    timestamp_micros: base + n,
                    coordinator_id: 0,
                    tombstone: false,
                };
                ((n % 256) as u8, version)
            })
            .collect();
        let encoded: Vec<Vec<u8>> = batch.iter().map(|(k, v)| encode_record(*k, v)).collect();
        let payloads: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        log.append_batch(&payloads).expect("append");
        for (key, version) in batch {
            store.merge(key, version);
        }
        written += payloads.len() as u64;
        if checkpoint_bytes.is_some_and(|limit| log.total_bytes() > limit) {
            let snapshot: Vec<Vec<u8>> = store
                .all()
                .iter()
                .map(|(k, v)| encode_record(*k, v))
                .collect();
            let payloads: Vec<&[u8]> = snapshot.iter().map(Vec::as_slice).collect();
            log.checkpoint(&payloads).expect("checkpoint");
            checkpoints += 1;
        }
    }
    println!(
        "{written} writes, {checkpoints} checkpoints, {} bytes of log in {}, in {:.1} s",
        log.total_bytes(),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}
