//! `ringkv status`: one line per replica: up or down, keys held, WAL size,
//! and which peers it believes are down. With `--wait`, keeps asking until
//! every replica answers, which is how the scripts know a cluster is ready.
//! With `--metrics`, each line is followed by a block of the replica's
//! counters (`MetricsReply`): requests, errors, coordinator latency, WAL
//! group commits, repairs and hints.

use std::fmt::Write as _;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::FromArgs;

use crate::client::Client;
use crate::cluster::ring::Ring;
use crate::ops::rt;
use crate::protocol::proto::{
    Consistency, DataState, ErrorKind, LatencySummary, MetricsReply, StatusReply,
};

/// Show every replica: up or down, keys held, write-ahead log size, peers it sees down.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct StatusArgs {
    /// the cluster file: one `ID HOST:PORT` line per replica (default: $RINGKV_CONFIG, else cluster.conf here, else scripts/cluster.conf)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// keep asking for up to this many seconds until every replica answers
    /// and sees every other one up (default 0: ask once)
    #[argh(option, default = "0")]
    pub wait: u64,
    /// a file holding the cluster's shared secret, if its replicas run with --secret-file
    #[argh(option)]
    pub secret_file: Option<PathBuf>,
    /// also print each replica's counters: requests by operation and level, errors by kind, put/get/delete latency percentiles, WAL batches and records per fdatasync, repairs, hints and anti-entropy rounds
    #[argh(switch)]
    pub metrics: bool,
}

/// The longest `--wait` accepted: a day.
const MAX_WAIT_SECONDS: u64 = 86_400;

/// Prints the status; fails (exit 1) unless every replica answered.
pub fn run(args: StatusArgs) -> Result<(), String> {
    let config = super::cluster_file(args.config.as_deref())?;
    let ring = Ring::load(&config).map_err(|e| e.to_string())?;
    let secret = crate::ops::secret::load_given(args.secret_file.as_deref())?;
    if args.wait > MAX_WAIT_SECONDS {
        return Err(format!("--wait is at most {MAX_WAIT_SECONDS} seconds"));
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    rt::block_on(async {
        loop {
            let answers = ask_all(&ring, &secret).await;
            let all_ready = answers.iter().all(|answer| {
                answer
                    .as_ref()
                    .is_ok_and(|status| status.peers.iter().all(|p| p.up))
            });
            if all_ready || Instant::now() >= deadline {
                let mut failed = false;
                for (member, answer) in ring.members().iter().zip(&answers) {
                    println!("{}", render(member.id, &member.addr, answer));
                    if args.metrics && answer.is_ok() {
                        match client(&member.addr, &secret).metrics().await {
                            Ok(metrics) => print!("{}", render_metrics(&metrics)),
                            Err(error) => {
                                println!("  metrics: no answer ({})", error.message);
                                failed = true;
                            }
                        }
                    }
                }
                let up = answers.iter().filter(|a| a.is_ok()).count();
                if failed && up == answers.len() {
                    return Err("a replica did not answer for its metrics".to_string());
                }
                return if up == answers.len() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {} replicas did not answer",
                        answers.len() - up,
                        answers.len()
                    ))
                };
            }
            rt::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn ask_all(ring: &Ring, secret: &Option<Vec<u8>>) -> Vec<Result<StatusReply, String>> {
    let mut answers = Vec::new();
    for member in ring.members() {
        let client = client(&member.addr, secret);
        answers.push(client.status().await.map_err(|e| e.message));
    }
    answers
}

fn client(addr: &str, secret: &Option<Vec<u8>>) -> Client {
    Client::new(addr)
        .with_timeout(Duration::from_secs(2))
        .with_secret(secret.clone())
}

/// The `--metrics` block of one replica: a few indented lines, each
/// starting with what it counts.
fn render_metrics(metrics: &MetricsReply) -> String {
    let mut block = String::new();
    let mut requests = Vec::new();
    let mut unspecified = 0;
    for op in ["get", "put", "delete"] {
        let mut by_level = Vec::new();
        for entry in metrics.requests.iter().filter(|r| r.operation == op) {
            match Consistency::try_from(entry.consistency) {
                Ok(Consistency::Unspecified) | Err(_) => unspecified += entry.count,
                Ok(level) => by_level.push(format!("{level} {}", entry.count)),
            }
        }
        requests.push(format!("{op} {}", by_level.join(" ")));
    }
    let _ = write!(block, "  requests: {}", requests.join(", "));
    if unspecified > 0 {
        let _ = write!(block, ", without a valid level {unspecified}");
    }
    block.push('\n');
    let errors: Vec<String> = metrics
        .errors
        .iter()
        .filter(|e| e.kind != ErrorKind::Unauthenticated as i32 || e.count > 0)
        .map(|e| {
            let kind = ErrorKind::try_from(e.kind).unwrap_or(ErrorKind::Unspecified);
            let name = kind.as_str_name().trim_start_matches("ERROR_KIND_");
            format!("{name} {}", e.count)
        })
        .collect();
    let _ = writeln!(block, "  errors: {}", errors.join(", "));
    for (op, summary) in [
        ("put", &metrics.put_latency),
        ("get", &metrics.get_latency),
        ("delete", &metrics.delete_latency),
        ("cas", &metrics.cas_latency),
    ] {
        let _ = writeln!(block, "  latency {op}: {}", render_latency(summary));
    }
    let per_sync = if metrics.wal_batches == 0 {
        0.0
    } else {
        metrics.wal_records as f64 / metrics.wal_batches as f64
    };
    let _ = writeln!(
        block,
        "  wal: {} batches (fdatasyncs), {} records, {per_sync:.2} records per fdatasync, {} checkpoints",
        metrics.wal_batches, metrics.wal_records, metrics.wal_checkpoints
    );
    let _ = writeln!(
        block,
        "  clock: {} writes stamped above a newer version a replica held",
        metrics.stale_write_retries
    );
    let _ = writeln!(
        block,
        "  repair: {} read repairs sent; hints {} pending, {} stored, {} delivered, {} dropped; {} anti-entropy rounds (fixed {})",
        metrics.repairs_sent,
        metrics.hints_pending,
        metrics.hints_stored,
        metrics.hints_delivered,
        metrics.hints_dropped,
        metrics.anti_entropy_rounds,
        metrics.anti_entropy_fixes
    );
    let _ = writeln!(
        block,
        "  cpu: {:.3} s user, {:.3} s system since start",
        metrics.cpu_user_us as f64 / 1e6,
        metrics.cpu_system_us as f64 / 1e6
    );
    block
}

/// `N requests, p50 .. max` in microseconds.
fn render_latency(summary: &Option<LatencySummary>) -> String {
    match summary {
        Some(s) if s.count > 0 => format!(
            "{} requests, mean {} us, p50 {} us, p90 {} us, p95 {} us, p99 {} us, p999 {} us, max {} us",
            s.count, s.mean_us, s.p50_us, s.p90_us, s.p95_us, s.p99_us, s.p999_us, s.max_us
        ),
        _ => "no requests".to_string(),
    }
}

/// "cluster NAME, incarnation X, settled", or the rebuild's progress.
fn render_identity(status: &StatusReply) -> String {
    let Some(identity) = &status.identity else {
        return "identity unknown".to_string();
    };
    let state = DataState::try_from(identity.state).unwrap_or(DataState::Unspecified);
    let progress = match state {
        DataState::Rebuilding => {
            let waiting: Vec<String> = status
                .rebuild_waiting_for
                .iter()
                .map(ToString::to_string)
                .collect();
            format!(
                "REBUILDING: {} keys not yet readable, waiting for replicas {}",
                identity.unreadable_keys.len(),
                waiting.join(",")
            )
        }
        other => other.name().to_string(),
    };
    format!(
        "cluster {}, incarnation {:016x}, {progress}",
        identity.cluster, identity.incarnation
    )
}

fn render(id: u32, addr: &str, answer: &Result<StatusReply, String>) -> String {
    match answer {
        Ok(status) => {
            let down: Vec<String> = status
                .peers
                .iter()
                .filter(|p| !p.up)
                .map(|p| p.replica_id.to_string())
                .collect();
            let view = if down.is_empty() {
                "sees all peers up".to_string()
            } else {
                format!("sees down: {}", down.join(","))
            };
            let hints: Vec<String> = status
                .peers
                .iter()
                .map(|p| format!("{}:{}", p.replica_id, p.hints_pending))
                .collect();
            let offsets: Vec<String> = status
                .peer_clock_offsets
                .iter()
                .map(|p| format!("{}:{:+}ms", p.replica_id, p.offset_micros / 1_000))
                .collect();
            let fence = if status.clock_fence.is_empty() {
                String::new()
            } else {
                format!(", NOT COORDINATING WRITES ({})", status.clock_fence)
            };
            let mut text = format!(
                "replica {id} {addr} up, {} keys, wal {} bytes, {view}, repair {}, hints {}, repairs sent {}, anti-entropy rounds {} (fixed {}), clock offsets {}{fence}, {}",
                status.keys_held,
                status.wal_bytes,
                status.repair_mode,
                hints.join(" "),
                status.repairs_sent,
                status.anti_entropy_rounds,
                status.anti_entropy_fixes,
                if offsets.is_empty() { "none measured".to_string() } else { offsets.join(" ") },
                render_identity(status)
            );
            for peer in status
                .peers
                .iter()
                .filter(|p| !p.up && !p.refused.is_empty())
            {
                text.push_str(&format!(
                    "\n  peer {} down: {}",
                    peer.replica_id, peer.refused
                ));
            }
            for peer in &status.peers {
                if peer.state == DataState::Rebuilding as i32 {
                    text.push_str(&format!(
                        "\n  peer {} is rebuilding: {} keys not yet readable there",
                        peer.replica_id, peer.unreadable_keys
                    ));
                }
            }
            text
        }
        Err(reason) => format!("replica {id} {addr} DOWN ({reason})"),
    }
}
