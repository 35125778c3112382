//! `ringkv replica`: run one replica of the ring until it is stopped.
//!
//! SIGTERM or SIGINT stops it cleanly (`shutdown.rs`): no new requests,
//! those in progress finish, exit status 0 within about 5 s. SIGKILL is
//! safe too, because a write is acknowledged only after it is durable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;

use crate::cluster::anti_entropy::AntiEntropy;
use crate::cluster::hints::{HintOptions, Hints};
use crate::cluster::identity::{Identity, Origin};
use crate::cluster::membership::Membership;
use crate::cluster::peers::{PeerTiming, Peers};
use crate::cluster::repair_mode::RepairMode;
use crate::cluster::ring::Ring;
use crate::coordinator::read_plan::ReadPolicy;
use crate::coordinator::{Coordinator, CoordinatorParts, Limits};
use crate::metrics::Metrics;
use crate::ops::budget::MemoryBudget;
use crate::ops::rt;
use crate::ops::secret;
use crate::ops::shutdown::{self, Shutdown};
use crate::protocol::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::server::{self, Node};
use crate::storage::clock::WriteClock;
use crate::storage::clock_lease;
use crate::storage::durable::{LocalReplica, OpenReport};

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

/// Requests one connection may have in progress at once; past it, the
/// replica stops reading from the connection until one finishes.
const MAX_REQUESTS_PER_CONNECTION: usize = 128;

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
const MAX_CLOCK_OFFSET_LIMIT_MS: u64 = 600_000;

/// The largest value the flag may allow: what fits in a frame under the limit.
const MAX_VALUE_LIMIT: usize = 16 * 1024 * 1024;

/// Runs the replica; returns only if it cannot start. The start in its
/// steps: the process (signals, clock flags), settings checked from the
/// flags, the data directory opened and replayed, the parts assembled and
/// the port opened, the background tasks started, then serving.
pub fn run(args: ReplicaArgs) -> Result<(), String> {
    let config = super::cluster_file(args.config.as_deref())?;
    let shutdown = prepare_process(&args)?;
    let settings = Settings::from_flags(&args)?;
    let ring = Arc::new(Ring::load(&config).map_err(|e| e.to_string())?);
    let secret = secret::load_given(args.secret_file.as_deref())?;
    let member = ring
        .member(args.id)
        .ok_or_else(|| format!("replica {} is not in {}", args.id, config.display()))?
        .clone();
    crate::info!(
        "starting on {} with data in {} (cluster of {} replicas)",
        member.addr,
        args.data.display(),
        ring.members().len()
    );
    let data = open_data(&args, &ring, &settings)?;
    rt::block_on(async move {
        let listen_addr = args.listen.clone().unwrap_or_else(|| member.addr.clone());
        let (node, listener) =
            assemble(&args, settings, ring, secret, data, shutdown, &listen_addr).await?;
        start_background_tasks(&node, &args);
        if let Some(addr) = &args.metrics_addr {
            let scrapes = rt::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
            crate::info!("serving Prometheus metrics on http://{addr}/metrics");
            rt::spawn(server::metrics_http::serve(node.clone(), scrapes));
        }
        let up: Vec<String> = node
            .peers
            .view()
            .into_iter()
            .filter(|(_, up)| *up)
            .map(|(id, _)| id.to_string())
            .collect();
        crate::info!(
            "listening on {listen_addr} ({}; peers up: {})",
            node.peers.membership().describe_own(),
            if up.is_empty() {
                "none".to_string()
            } else {
                up.join(",")
            }
        );
        server::serve(node, listener).await;
        Ok(())
    })
}

/// What the process needs before any other thread exists: the executor's
/// size, stop signals taken by a thread of their own (every later thread
/// inherits the blocked signals), the log tag, and the clock's flags
/// (before anything reads the wall clock).
fn prepare_process(args: &ReplicaArgs) -> Result<Arc<Shutdown>, String> {
    rt::set_executor_threads(args.executor_threads);
    // A second signal during the stop is not needed: it ends within 5 s.
    let shutdown = Arc::new(Shutdown::new());
    let stopper = shutdown.clone();
    shutdown::take_stop_signals(move |signal| {
        crate::info!("{signal}: stopping (no new requests; finishing those in progress)");
        stopper.begin();
    })?;
    crate::ops::logging::set_process_tag(format!("replica {}", args.id));
    if !(1..=MAX_CLOCK_OFFSET_LIMIT_MS).contains(&args.max_clock_offset_ms) {
        return Err(format!(
            "--max-clock-offset-ms must be between 1 and {MAX_CLOCK_OFFSET_LIMIT_MS}"
        ));
    }
    crate::storage::clock::set_max_offset(Duration::from_millis(args.max_clock_offset_ms));
    if args.test_clock_offset_ms != 0 {
        crate::storage::clock::set_test_offset_micros(
            args.test_clock_offset_ms.saturating_mul(1_000),
        );
        crate::warn!(
            "--test-clock-offset-ms: pretending the wall clock is {} ms {} (for tests only)",
            args.test_clock_offset_ms.unsigned_abs(),
            if args.test_clock_offset_ms > 0 {
                "ahead"
            } else {
                "behind"
            }
        );
    }
    Ok(shutdown)
}

/// The settings checked from the flags: what is refused before anything
/// is opened.
struct Settings {
    read_policy: ReadPolicy,
    limits: Limits,
    log_options: wal::Options,
}

impl Settings {
    fn from_flags(args: &ReplicaArgs) -> Result<Settings, String> {
        if args.max_value_bytes > MAX_VALUE_LIMIT {
            return Err(format!("--max-value-bytes is at most {MAX_VALUE_LIMIT}"));
        }
        for (flag, value) in [
            ("--write-timeout-ms", args.write_timeout_ms),
            ("--read-timeout-ms", args.read_timeout_ms),
            ("--frame-read-timeout-ms", args.frame_read_timeout_ms),
            ("--speculative-read-ms", args.speculative_read_ms),
        ] {
            super::checked_timeout_ms(flag, value)?;
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
            },
        })
    }
}

/// The data directory, opened: whose it is, the store replayed from its
/// write-ahead log, and the hints it holds for peers.
struct OpenedData {
    membership: Arc<Membership>,
    local: LocalReplica,
    report: OpenReport,
    hints: Hints,
    metrics: Arc<Metrics>,
}

/// Opens the data directory in order: the identity first (before anything
/// else is written, a directory of another replica or cluster is refused),
/// then the write-ahead log, replayed into memory, then the hints log.
fn open_data(
    args: &ReplicaArgs,
    ring: &Arc<Ring>,
    settings: &Settings,
) -> Result<OpenedData, String> {
    let membership = Arc::new(open_membership(&args.data, ring, args.id)?);
    let started = std::time::Instant::now();
    let metrics = Arc::new(Metrics::new());
    let (local, report) = LocalReplica::open(
        &args.data,
        settings.log_options.clone(),
        args.checkpoint_bytes,
        metrics.clone(),
    )
    .map_err(|e| {
        format!(
            "cannot open the write-ahead log in {}: {e}",
            args.data.join("wal").display()
        )
    })?;
    log_replay(&report, started.elapsed());
    let hint_options = HintOptions {
        window: Duration::from_secs(args.hint_window_secs),
        max_per_replica: args.max_hints_per_replica,
    };
    let (hints, hints_pending) = Hints::open(
        &args.data,
        settings.log_options.clone(),
        hint_options,
        args.checkpoint_bytes,
        metrics.clone(),
    )?;
    crate::info!(
        "repair mode {}; {hints_pending} hints pending for peers; {} % of gets ask every replica",
        args.repair,
        settings.read_policy.chance() * 100.0
    );
    Ok(OpenedData {
        membership,
        local,
        report,
        hints,
        metrics,
    })
}

/// Says what replay did: a torn tail cut, records skipped, a checkpoint
/// started from, and how long it took.
fn log_replay(report: &OpenReport, took: Duration) {
    if let Some(torn) = &report.replay.torn_tail {
        crate::warn!("{torn}");
    }
    for skipped in &report.replay.skipped {
        crate::error!("skipped a corrupt write-ahead log record (--skip-corrupt-wal): {skipped}");
    }
    if let Some(incomplete) = &report.replay.incomplete_checkpoint {
        crate::warn!("{incomplete}");
    }
    if let Some(rotation) = &report.replay.rotation_finished {
        crate::warn!("{rotation}");
    }
    let from = match report.replay.checkpoint {
        Some(checkpoint) => format!(
            " (from the checkpoint of {} keys in segment {}{})",
            checkpoint.records,
            checkpoint.segment,
            match report.replay.stale_segments_removed {
                0 => String::new(),
                n => format!("; removed {n} segments older than it"),
            }
        ),
        None => String::new(),
    };
    crate::info!(
        "replayed {} records from {} segments in {} in {} ms{from}: {} keys in memory",
        report.replay.records,
        report.replay.segments,
        report.wal_dir.display(),
        took.as_millis(),
        report.keys_held
    );
}

/// Builds the replica's parts around its data, meets the peers that are
/// running (ready means listening: they see our hello and we see them
/// before our port opens), then opens the port. A start that cannot get
/// its port (another process holds it) stops here, having written nothing.
async fn assemble(
    args: &ReplicaArgs,
    settings: Settings,
    ring: Arc<Ring>,
    secret: Option<Vec<u8>>,
    data: OpenedData,
    shutdown: Arc<Shutdown>,
    listen_addr: &str,
) -> Result<(Arc<Node>, rt::TcpListener), String> {
    let OpenedData {
        membership,
        local,
        report,
        hints,
        metrics,
    } = data;
    // Nothing is stamped until the wall clock has passed every timestamp in
    // the log and the previous run's lease.
    let clock = Arc::new(WriteClock::new());
    clock.hold_until_past(
        report.newest_timestamp,
        &report.wal_dir.display().to_string(),
    );
    clock_lease::start(&args.data, &clock)?;
    let local = Arc::new(local);
    let hints = Arc::new(hints);
    let peers = Arc::new(Peers::new(
        &ring,
        args.id,
        PeerTiming::default(),
        secret.as_deref().map(Arc::from),
        membership,
    ));
    let budget = Arc::new(MemoryBudget::new(args.memory_budget_bytes));
    let limits = settings.limits;
    let coordinator = Arc::new(Coordinator::new(CoordinatorParts {
        self_id: args.id,
        ring: ring.clone(),
        local: local.clone(),
        peers: peers.clone(),
        clock: clock.clone(),
        hints: hints.clone(),
        mode: args.repair,
        read_policy: settings.read_policy,
        limits: limits.clone(),
        metrics: metrics.clone(),
        budget: budget.clone(),
    }));
    let anti_entropy = Arc::new(AntiEntropy::new(
        args.id,
        ring.clone(),
        local.clone(),
        peers.clone(),
        clock.clone(),
        limits.max_value_bytes,
        limits.read_timeout,
    ));
    peers.probe_all_once().await;
    let listener = rt::TcpListener::bind(listen_addr)
        .await
        .map_err(|e| format!("cannot listen on {listen_addr}: {e}"))?;
    let node = Arc::new(Node {
        self_id: args.id,
        coordinator,
        local,
        peers,
        hints,
        anti_entropy,
        mode: args.repair,
        ring,
        clock,
        limits,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        frame_read_timeout: Duration::from_millis(args.frame_read_timeout_ms),
        secret,
        budget,
        shutdown,
        max_requests_per_connection: MAX_REQUESTS_PER_CONNECTION,
        max_connections: args.max_connections,
        max_peer_connections: args.max_peer_connections,
        connections: crate::server::slots::ConnectionSlots::new(
            args.max_connections,
            args.max_peer_connections,
        ),
        metrics,
    });
    Ok((node, listener))
}

/// The tasks that run beside serving for as long as the process does:
/// probing peers, renewing the clock's lease, delivering hints, a round of
/// anti-entropy after a full disk clears, rebuilding after lost data, and
/// periodic anti-entropy.
fn start_background_tasks(node: &Arc<Node>, args: &ReplicaArgs) {
    node.peers.start_probing();
    rt::spawn(clock_lease::renew_forever(
        args.data.clone(),
        node.clock.clone(),
    ));
    rt::spawn(
        node.hints
            .clone()
            .deliver_forever(node.peers.clone(), node.limits.write_timeout),
    );
    rt::spawn(round_after_disk_full(
        node.local.disk_recoveries(),
        node.anti_entropy.clone(),
    ));
    rt::spawn(crate::cluster::rebuild::run_forever(
        node.peers.clone(),
        node.anti_entropy.clone(),
    ));
    if args.anti_entropy_secs > 0 {
        rt::spawn(
            node.anti_entropy
                .clone()
                .run_forever(Duration::from_secs(args.anti_entropy_secs)),
        );
    }
}

/// Opens the data directory's identity (refusing another replica's or
/// cluster's) and the incarnations recorded for the peers, and says what
/// it found.
fn open_membership(
    data: &std::path::Path,
    ring: &Arc<Ring>,
    id: u32,
) -> Result<Membership, String> {
    let (identity, origin) = Identity::open(data, ring, id)?;
    let path = crate::cluster::identity::path_in(data);
    match origin {
        Origin::Found => {}
        Origin::Created => crate::info!(
            "new data directory: recorded its identity in {} (incarnation {:016x})",
            path.display(),
            identity.incarnation
        ),
        Origin::Adopted => crate::warn!(
            "{} held a write-ahead log but no identity (written by an older ringkv): adopted it as incarnation {:016x}",
            data.display(),
            identity.incarnation
        ),
        Origin::LogLost { previous } => crate::error!(
            "{} has an identity (incarnation {previous:016x}) but no write-ahead log: its data is lost. \
             It starts as incarnation {:016x} and rebuilds from its peers before it serves any read",
            data.display(),
            identity.incarnation
        ),
    }
    Membership::open(data, ring.clone(), id, identity)
}

/// Runs an anti-entropy round each time the disk has room again: a put
/// this replica coordinated while its own log could not take it left no
/// hint anywhere for its own copy.
async fn round_after_disk_full(recoveries: rt::Receiver<()>, anti_entropy: Arc<AntiEntropy>) {
    while recoveries.recv().await.is_ok() {
        let reply = anti_entropy.round().await;
        crate::info!(
            "anti-entropy round after the disk had room again: sent {}, took {}",
            reply.versions_sent,
            reply.versions_received
        );
    }
}
