//! The flags of `ringkv replica`, each default named once, and the
//! settings checked from them: what a start refuses before it opens
//! anything.

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::cluster::repair_mode::RepairMode;
use crate::coordinator::read_plan::ReadPolicy;
use crate::coordinator::Limits;

/// Each flag's default, named once (the flag's help repeats the number).
pub mod defaults {
    /// How long a put waits for acknowledgements.
    pub const WRITE_TIMEOUT_MS: u64 = 2000;
    /// How long a get waits for answers.
    pub const READ_TIMEOUT_MS: u64 = 2000;
    /// The largest value accepted: 1 MiB.
    pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
    /// Client connections served at once.
    pub const MAX_CONNECTIONS: usize = 1024;
    /// Peer connections served at once, apart from the clients'.
    pub const MAX_PEER_CONNECTIONS: usize = 64;
    /// The size at which the write-ahead log starts a new segment.
    pub const WAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
    /// Log growth between checkpoints.
    pub const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
    /// Hints older than this are dropped: 3 hours.
    pub const HINT_WINDOW_SECS: u64 = 3 * 3600;
    /// Keys a hint is kept for, per down replica: every key.
    pub const MAX_HINTS_PER_REPLICA: usize = 256;
    /// A started frame must finish within this.
    pub const FRAME_READ_TIMEOUT_MS: u64 = 10_000;
    /// Bytes held for requests and replies across all connections.
    pub const MEMORY_BUDGET_BYTES: usize = 256 * 1024 * 1024;
    /// Threads that run the async tasks.
    pub const EXECUTOR_THREADS: usize = 1;
    /// Seconds between anti-entropy rounds.
    pub const ANTI_ENTROPY_SECS: u64 = 60;
}

/// Run one replica: serve clients and peers on the address the cluster file gives its id.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "replica")]
pub struct ReplicaArgs {
    /// the cluster file: one `ID HOST:PORT` line per replica (default: $RINGKV_CONFIG, else cluster.conf here, else scripts/cluster.conf)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// this replica's id in the cluster file
    #[argh(option)]
    pub id: u32,
    /// data directory (the write-ahead log lives in DIR/wal); created if missing
    #[argh(option)]
    pub data: PathBuf,
    /// how long a put waits for acknowledgements, in milliseconds (default 2000)
    #[argh(option, default = "defaults::WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: u64,
    /// how long a get waits for answers, in milliseconds (default 2000)
    #[argh(option, default = "defaults::READ_TIMEOUT_MS")]
    pub read_timeout_ms: u64,
    /// largest value accepted, in bytes (default 1048576 = 1 MiB; at most 16 MiB)
    #[argh(option, default = "defaults::MAX_VALUE_BYTES")]
    pub max_value_bytes: usize,
    /// most client connections served at once (default 1024)
    #[argh(option, default = "defaults::MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// most connections from other replicas served at once, apart from the clients' allowance, so clients can never lock replicas out (default 64)
    #[argh(option, default = "defaults::MAX_PEER_CONNECTIONS")]
    pub max_peer_connections: usize,
    /// size at which the write-ahead log starts a new segment, in bytes (default 64 MiB)
    #[argh(option, default = "defaults::WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: u64,
    /// log growth since the last checkpoint past which the replica writes a checkpoint and deletes the segments behind it, in bytes (default 4 MiB); the hints log too
    #[argh(option, default = "defaults::CHECKPOINT_BYTES")]
    pub checkpoint_bytes: u64,
    /// bytes each new write-ahead log segment is zero-filled to ahead of time, so that appends inside it change no file metadata and each sync writes data only (default: the checkpoint threshold and a quarter, so that a checkpoint segment and the writes until the next checkpoint fit; at most the segment size; 0 turns it off)
    #[argh(option)]
    pub wal_preallocate_bytes: Option<u64>,
    /// start even if the write-ahead log is corrupt, skipping damaged records (each one is logged; data in them is lost)
    #[argh(switch)]
    pub skip_corrupt_wal: bool,
    /// how replicas catch up: read-repair, hinted-handoff or both (default both)
    #[argh(option, default = "RepairMode::Both")]
    pub repair: RepairMode,
    /// share of gets, 0 to 1, that ask every replica of the key and repair late ones in the background; the others ask only as many as their level needs (default 1 with --repair read-repair, 0.1 with both, 0 with hinted-handoff)
    #[argh(option)]
    pub read_repair_chance: Option<f64>,
    /// a get that asked only the replicas its level needs asks the others too if their answers are not all in after this many milliseconds (default 10)
    #[argh(
        option,
        default = "crate::coordinator::read_plan::DEFAULT_SPECULATE_AFTER.as_millis() as u64"
    )]
    pub speculative_read_ms: u64,
    /// hints older than this many seconds are dropped instead of delivered (default 10800 = 3 h)
    #[argh(option, default = "defaults::HINT_WINDOW_SECS")]
    pub hint_window_secs: u64,
    /// most keys a hint is kept for, per down replica (default 256, every key; 0 keeps no hints)
    #[argh(option, default = "defaults::MAX_HINTS_PER_REPLICA")]
    pub max_hints_per_replica: usize,
    /// a frame that has started must finish within this many milliseconds, or the connection is closed (default 10000; idle time between frames is not limited)
    #[argh(option, default = "defaults::FRAME_READ_TIMEOUT_MS")]
    pub frame_read_timeout_ms: u64,
    /// bytes held for requests and replies across all connections; past it, connections holding bytes stop reading until some are freed (default 268435456 = 256 MiB)
    #[argh(option, default = "defaults::MEMORY_BUDGET_BYTES")]
    pub memory_budget_bytes: usize,
    /// a file holding the cluster's shared secret: every connection must then authenticate, and only replicas may send replica messages (without TLS this guards against strangers and mistakes, not eavesdroppers)
    #[argh(option)]
    pub secret_file: Option<PathBuf>,
    /// threads that run the replica's async tasks (default 1; the WAL and hints logs have threads of their own)
    #[argh(option, default = "defaults::EXECUTOR_THREADS")]
    pub executor_threads: usize,
    /// address to listen on, when it differs from the one the cluster file gives this replica (which peers and clients use to reach it, through a proxy or NAT, say); default: the cluster file's
    #[argh(option)]
    pub listen: Option<String>,
    /// seconds between anti-entropy rounds with ring neighbours (default 60; 0 runs them only on `ringkv repair`)
    #[argh(option, default = "defaults::ANTI_ENTROPY_SECS")]
    pub anti_entropy_secs: u64,
    /// the largest clock offset tolerated, in milliseconds (default 500): a write stamped further ahead of this replica's wall clock is refused, and this replica coordinates no writes while its clock is further than this from a majority of its peers' clocks
    #[argh(
        option,
        default = "crate::storage::clock::DEFAULT_MAX_CLOCK_OFFSET.as_millis() as u64"
    )]
    pub max_clock_offset_ms: u64,
    /// serve the metrics in the Prometheus text format on GET /metrics at this address (HOST:PORT); off by default
    #[argh(option)]
    pub metrics_addr: Option<String>,
    /// for tests only: pretend the wall clock is off by this many milliseconds (negative: behind; default 0)
    #[argh(option, default = "0")]
    pub test_clock_offset_ms: i64,
}

/// The largest --max-clock-offset-ms: ten minutes.
pub(super) const MAX_CLOCK_OFFSET_LIMIT_MS: u64 = 600_000;

/// The largest value the flag may allow: what fits in a frame under the limit.
const MAX_VALUE_LIMIT: usize = 16 * 1024 * 1024;

/// The settings checked from the flags: what is refused before anything
/// is opened.
pub(super) struct Settings {
    pub(super) read_policy: ReadPolicy,
    pub(super) limits: Limits,
    pub(super) log_options: wal::Options,
}

impl Settings {
    pub(super) fn from_flags(args: &ReplicaArgs) -> Result<Settings, String> {
        if args.max_value_bytes > MAX_VALUE_LIMIT {
            return Err(format!("--max-value-bytes is at most {MAX_VALUE_LIMIT}"));
        }
        for (flag, value) in [
            ("--write-timeout-ms", args.write_timeout_ms),
            ("--read-timeout-ms", args.read_timeout_ms),
            ("--frame-read-timeout-ms", args.frame_read_timeout_ms),
            ("--speculative-read-ms", args.speculative_read_ms),
        ] {
            crate::cmd::checked_timeout_ms(flag, value)?;
        }
        Ok(Settings {
            read_policy: ReadPolicy::new(
                args.repair,
                args.read_repair_chance,
                Duration::from_millis(args.speculative_read_ms),
            )?,
            limits: Limits {
                write_timeout: Duration::from_millis(args.write_timeout_ms),
                read_timeout: Duration::from_millis(args.read_timeout_ms),
                max_value_bytes: args.max_value_bytes,
            },
            log_options: wal::Options {
                segment_max_bytes: args.wal_segment_bytes,
                skip_corrupt: args.skip_corrupt_wal,
                preallocate_bytes: args.wal_preallocate_bytes.unwrap_or(
                    args.checkpoint_bytes
                        .saturating_add(args.checkpoint_bytes / 4)
                        .min(args.wal_segment_bytes),
                ),
            },
        })
    }
}
