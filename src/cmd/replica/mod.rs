//! `ringkv replica`: run one replica of the ring until it is stopped.
//!
//! SIGTERM or SIGINT stops it cleanly (`shutdown.rs`): no new requests,
//! those in progress finish, exit status 0 within about 5 s. SIGKILL is
//! safe too, because a write is acknowledged only after it is durable.
//!
//! The start in its steps, each in its own file: `flags` (the flags and
//! the settings checked from them), `data_dir` (the data directory opened
//! and replayed), `node` (the parts assembled, the port opened, the
//! background tasks). This file runs them in order.

mod data_dir;
mod flags;
mod node;

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::ring::Ring;
use crate::ops::rt;
use crate::ops::secret;
use crate::ops::shutdown::{self, Shutdown};
use crate::server;
use data_dir::open_data;
pub use flags::{defaults, ReplicaArgs};
use flags::{Settings, MAX_CLOCK_OFFSET_LIMIT_MS};
use node::{assemble, start_background_tasks};

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
