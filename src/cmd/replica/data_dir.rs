//! The replica's data directory, opened in order: its identity first (a
//! directory of another replica or cluster is refused before anything is
//! written), then the write-ahead log replayed into memory, then the hints
//! log; and the log lines that say what each step found.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::flags::{ReplicaArgs, Settings};
use crate::cluster::hints::{HintOptions, Hints};
use crate::cluster::identity::{Identity, Origin};
use crate::cluster::membership::Membership;
use crate::cluster::ring::Ring;
use crate::metrics::Metrics;
use crate::storage::durable::{LocalReplica, OpenReport};

/// The data directory, opened: whose it is, the store replayed from its
/// write-ahead log, and the hints it holds for peers.
pub(super) struct OpenedData {
    pub(super) membership: Arc<Membership>,
    pub(super) local: LocalReplica,
    pub(super) report: OpenReport,
    pub(super) hints: Hints,
    pub(super) metrics: Arc<Metrics>,
}

/// Opens the data directory in order: the identity first (before anything
/// else is written, a directory of another replica or cluster is refused),
/// then the write-ahead log, replayed into memory, then the hints log.
pub(super) fn open_data(
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
    // The hints log is emptied whenever every hint is delivered: a
    // preallocated segment each time would cost more than it saves.
    let (hints, hints_pending) = Hints::open(
        &args.data,
        wal::Options {
            preallocate_bytes: 0,
            ..settings.log_options.clone()
        },
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
    match &report.replay.torn_tail {
        Some(torn) if torn.unwritten => crate::info!("{torn}"),
        Some(torn) => crate::warn!("{torn}"),
        None => {}
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

/// Opens the data directory's identity (refusing another replica's or
/// cluster's) and the incarnations recorded for the peers, and says what
/// it found.
fn open_membership(data: &Path, ring: &Arc<Ring>, id: u32) -> Result<Membership, String> {
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
