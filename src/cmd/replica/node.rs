//! The replica's parts built around its opened data, the port opened once
//! the running peers have been met, and the tasks that run beside serving
//! for as long as the process does.

use std::sync::Arc;
use std::time::Duration;

use super::data_dir::OpenedData;
use super::flags::{ReplicaArgs, Settings};
use crate::cluster::anti_entropy::AntiEntropy;
use crate::cluster::peers::{PeerTiming, Peers};
use crate::cluster::ring::Ring;
use crate::coordinator::{Coordinator, CoordinatorParts};
use crate::ops::budget::MemoryBudget;
use crate::ops::rt;
use crate::ops::shutdown::Shutdown;
use crate::protocol::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::server::Node;
use crate::storage::clock::WriteClock;
use crate::storage::clock_lease;

/// Requests one connection may have in progress at once; past it, the
/// replica stops reading from the connection until one finishes.
const MAX_REQUESTS_PER_CONNECTION: usize = 128;

/// Builds the replica's parts around its data, meets the peers that are
/// running (ready means listening: they see our hello and we see them
/// before our port opens), then opens the port. A start that cannot get
/// its port (another process holds it) stops here, having written nothing.
pub(super) async fn assemble(
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
pub(super) fn start_background_tasks(node: &Arc<Node>, args: &ReplicaArgs) {
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
