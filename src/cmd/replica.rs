//! `ringkv replica`: run one replica of the ring until the process is killed.
//!
//! Stopping is by signal (the scripts use SIGTERM, the crash tests SIGKILL);
//! both are safe because a write is acknowledged only after it is durable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;

use crate::clock::WriteClock;
use crate::clock_lease;
use crate::coordinator::{Coordinator, Limits};
use crate::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::node::{self, Node};
use crate::peers::{PeerTiming, Peers};
use crate::replica::LocalReplica;
use crate::ring::Ring;
use crate::rt;

/// Run one replica: serve clients and peers on the address the cluster file gives its id.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "replica")]
pub struct ReplicaArgs {
    /// the cluster file: one `ID HOST:PORT` line per replica
    #[argh(option)]
    pub config: PathBuf,
    /// this replica's id in the cluster file
    #[argh(option)]
    pub id: u32,
    /// data directory (the write-ahead log lives in DIR/wal); created if missing
    #[argh(option)]
    pub data: PathBuf,
    /// how long a put waits for acknowledgements, in milliseconds (default 2000)
    #[argh(option, default = "2000")]
    pub write_timeout_ms: u64,
    /// how long a get waits for answers, in milliseconds (default 2000)
    #[argh(option, default = "2000")]
    pub read_timeout_ms: u64,
    /// largest value accepted, in bytes (default 1048576 = 1 MiB; at most 16 MiB)
    #[argh(option, default = "1024 * 1024")]
    pub max_value_bytes: usize,
    /// most client and peer connections served at once (default 1024)
    #[argh(option, default = "1024")]
    pub max_connections: usize,
    /// size at which the write-ahead log starts a new segment, in bytes (default 64 MiB)
    #[argh(option, default = "64 * 1024 * 1024")]
    pub wal_segment_bytes: u64,
    /// start even if the write-ahead log is corrupt, skipping damaged records (each one is logged; data in them is lost)
    #[argh(switch)]
    pub skip_corrupt_wal: bool,
}

/// The longest request timeout the flags accept: an hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The largest value the flag may allow: what fits in a frame under the limit.
const MAX_VALUE_LIMIT: usize = 16 * 1024 * 1024;

/// Runs the replica; returns only if it cannot start.
pub fn run(args: ReplicaArgs) -> Result<(), String> {
    crate::logging::set_process_tag(format!("replica {}", args.id));
    if args.max_value_bytes > MAX_VALUE_LIMIT {
        return Err(format!("--max-value-bytes is at most {MAX_VALUE_LIMIT}"));
    }
    for (flag, value) in [
        ("--write-timeout-ms", args.write_timeout_ms),
        ("--read-timeout-ms", args.read_timeout_ms),
    ] {
        if !(1..=MAX_TIMEOUT_MS).contains(&value) {
            return Err(format!("{flag} must be between 1 and {MAX_TIMEOUT_MS}"));
        }
    }
    let ring = Arc::new(Ring::load(&args.config).map_err(|e| e.to_string())?);
    let member = ring
        .member(args.id)
        .ok_or_else(|| format!("replica {} is not in {}", args.id, args.config.display()))?
        .clone();
    crate::info!(
        "starting on {} with data in {} (cluster of {} replicas)",
        member.addr,
        args.data.display(),
        ring.members().len()
    );
    let options = wal::Options {
        segment_max_bytes: args.wal_segment_bytes,
        skip_corrupt: args.skip_corrupt_wal,
    };
    let started = std::time::Instant::now();
    let (local, report) = LocalReplica::open(&args.data, options).map_err(|e| {
        format!(
            "cannot open the write-ahead log in {}: {e}",
            args.data.join("wal").display()
        )
    })?;
    if let Some(torn) = &report.replay.torn_tail {
        crate::warn!("{torn}");
    }
    for skipped in &report.replay.skipped {
        crate::error!("skipped a corrupt write-ahead log record (--skip-corrupt-wal): {skipped}");
    }
    crate::info!(
        "replayed {} records from {} segments in {} in {} ms: {} keys in memory",
        report.replay.records,
        report.replay.segments,
        report.wal_dir.display(),
        started.elapsed().as_millis(),
        report.keys_held
    );
    let limits = Limits {
        write_timeout: Duration::from_millis(args.write_timeout_ms),
        read_timeout: Duration::from_millis(args.read_timeout_ms),
        max_value_bytes: args.max_value_bytes,
    };
    // Past every timestamp in the log, then past the previous run's lease.
    let clock = Arc::new(WriteClock::new());
    clock.observe_from_disk(
        report.newest_timestamp,
        &report.wal_dir.display().to_string(),
    );
    clock_lease::start(&args.data, &clock)?;
    rt::block_on(async move {
        let listener = rt::TcpListener::bind(&member.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", member.addr))?;
        let local = Arc::new(local);
        let peers = Arc::new(Peers::new(&ring, args.id, PeerTiming::default()));
        peers.start_probing();
        rt::spawn(clock_lease::renew_forever(args.data.clone(), clock.clone()));
        let coordinator = Arc::new(Coordinator::new(
            args.id,
            ring.clone(),
            local.clone(),
            peers.clone(),
            clock.clone(),
            limits.clone(),
        ));
        let node = Arc::new(Node {
            self_id: args.id,
            coordinator,
            local,
            peers,
            ring,
            clock,
            limits,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_requests_per_connection: 128,
            max_connections: args.max_connections,
        });
        crate::info!("listening on {}", member.addr);
        node::serve(node, listener).await;
        Ok(())
    })
}
