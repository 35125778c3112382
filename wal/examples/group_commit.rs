//! Measures group commit through the WAL crate alone: N writer threads each
//! append one record at a time and wait until it is durable; one log thread
//! takes whatever is queued and appends it with one write and one
//! fdatasync (the same shape as ringkv's replica WAL thread).
//!
//! ```text
//! cargo run --release -p wal --example group_commit -- DIR [SECONDS] [WRITERS...]
//! ```
//!
//! Prints, per writer count: appends/s, fdatasyncs/s and records per sync.
//! With one writer, appends/s is the disk's serial fdatasync rate.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A record waiting for the log thread, and where to say it is durable.
type Job = (Vec<u8>, mpsc::SyncSender<()>);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: group_commit DIR [SECONDS] [WRITERS...]");
        std::process::exit(2);
    };
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let writer_counts: Vec<usize> = if args.len() > 2 {
        args[2..].iter().filter_map(|s| s.parse().ok()).collect()
    } else {
        vec![1, 8, 64]
    };
    println!("writers  appends/s  fdatasyncs/s  records/sync");
    for writers in writer_counts {
        let path = std::path::Path::new(dir).join(format!("group-commit-{writers}"));
        let _ = std::fs::remove_dir_all(&path);
        let (appends, syncs, elapsed) = run(&path, writers, Duration::from_secs(seconds));
        let secs = elapsed.as_secs_f64();
        println!(
            "{writers:>7}  {:>9.0}  {:>12.0}  {:>12.1}",
            appends as f64 / secs,
            syncs as f64 / secs,
            appends as f64 / syncs.max(1) as f64
        );
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// Runs `writers` threads for `duration`; returns (appends, syncs, elapsed).
fn run(path: &std::path::Path, writers: usize, duration: Duration) -> (u64, u64, Duration) {
    let (mut wal, _) = wal::Wal::open(path, wal::Options::default(), |_| Ok(())).expect("open");
    let (to_log, jobs) = mpsc::sync_channel::<Job>(4096);
    let log_thread = std::thread::spawn(move || {
        let mut syncs = 0u64;
        let mut appends = 0u64;
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while let Ok(next) = jobs.try_recv() {
                batch.push(next);
            }
            let payloads: Vec<&[u8]> = batch.iter().map(|(p, _)| p.as_slice()).collect();
            wal.append_batch(&payloads).expect("append");
            syncs += 1;
            appends += batch.len() as u64;
            for (_, done) in batch {
                let _ = done.send(());
            }
        }
        (appends, syncs)
    });
    let began = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let to_log = to_log.clone();
            std::thread::spawn(move || {
                let payload = vec![writer as u8; 48];
                while began.elapsed() < duration {
                    let (done, durable) = mpsc::sync_channel(1);
                    to_log.send((payload.clone(), done)).expect("send");
                    durable.recv().expect("durable");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer");
    }
    let elapsed = began.elapsed();
    drop(to_log);
    let (appends, syncs) = log_thread.join().expect("log thread");
    (appends, syncs, elapsed)
}
