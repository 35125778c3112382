//! `ringkv bench`: a closed-loop load generator on the client library.
//! Each connection keeps `--pipeline` requests in flight against one
//! coordinator; connections are spread over the coordinators. With one in
//! flight (the default) each connection is a `client::serial::Serial`,
//! driven in line by its worker (one `send` and one `recv` a request, as
//! redis-benchmark does); with more, `--pipeline` workers share one
//! multiplexed `Client`.
//!
//! Values are unique per put and name their key (`k<key>-<worker>-<n>`,
//! padded to `--value-bytes`), so every get checks that what it read was
//! written for that key: a value of another key counts as a `WRONG_KEY`
//! error. Latencies go into a fixed-size histogram per operation and
//! worker, merged at the end. Every replica's CPU time is read before and
//! after the measured phase, so the report says what a request cost the
//! servers, not only how many one machine could drive.
//!
//! - `worker.rs`: the closed loop.
//! - `cost.rs`: CPU readings.
//! - `report.rs`: text and JSON.

mod cost;
mod report;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argh::FromArgs;

use crate::client::serial::Serial;
use crate::client::{Client, DEFAULT_CLIENT_TIMEOUT};
use crate::cluster::ring::Ring;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::proto::Consistency;
use cost::CpuSpent;
use report::{RunReport, Settings};
use worker::{KeyChoice, Load, Session, Shared, WorkerReport};

/// Generate load against a running cluster and report throughput and latency.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {
    /// the cluster file: one `ID HOST:PORT` line per replica (default: $RINGKV_CONFIG, else cluster.conf here, else scripts/cluster.conf)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// coordinators to spread connections over, comma-separated (default: every replica)
    #[argh(option)]
    pub coordinators: Option<String>,
    /// client connections (default 32)
    #[argh(option, default = "32")]
    pub connections: usize,
    /// consistency level of every request: ONE, QUORUM (default) or ALL
    #[argh(option, default = "Consistency::Quorum", from_str_fn(parse_level))]
    pub consistency: Consistency,
    /// share of requests that are gets, 0.0 (all puts) to 1.0 (all gets) (default 0.5)
    #[argh(option, default = "0.5")]
    pub reads: f64,
    /// share of requests, 0.0 to 1.0, that are a compare-and-set from the value the worker last saw for the key (it learns the current one from a NOT APPLIED); taken from the writes (default 0)
    #[argh(option, default = "0.0")]
    pub cas: f64,
    /// bytes per value (default 16)
    #[argh(option, default = "16")]
    pub value_bytes: usize,
    /// key choice: uniform over 0-255 (default), or hot (80% of requests on 16 keys)
    #[argh(option, default = "KeyChoice::Uniform", from_str_fn(parse_keys))]
    pub keys: KeyChoice,
    /// measure for this many seconds (default 10)
    #[argh(option)]
    pub seconds: Option<u64>,
    /// measure this many requests instead of a duration
    #[argh(option)]
    pub requests: Option<u64>,
    /// run this long before measuring (default 1)
    #[argh(option, default = "1")]
    pub warmup_seconds: u64,
    /// requests in flight per connection (default 1)
    #[argh(option, default = "1")]
    pub pipeline: usize,
    /// threads that run the client's async tasks (default 1: on a small machine the load generator shares the cores with the replicas)
    #[argh(option, default = "1")]
    pub threads: usize,
    /// a file holding the cluster's shared secret, if its replicas run with --secret-file
    #[argh(option)]
    pub secret_file: Option<PathBuf>,
    /// print one JSON object instead of text
    #[argh(switch)]
    pub json: bool,
    /// exit 0 even when requests failed (by default any failed request makes the exit code 1, after the report)
    #[argh(switch)]
    pub allow_errors: bool,
}

fn parse_level(text: &str) -> Result<Consistency, String> {
    text.parse().map_err(|e: KvError| e.message)
}

fn parse_keys(text: &str) -> Result<KeyChoice, String> {
    match text {
        "uniform" => Ok(KeyChoice::Uniform),
        "hot" => Ok(KeyChoice::Hot),
        other => Err(format!("unknown key choice '{other}': uniform or hot")),
    }
}

/// Runs the benchmark and prints its report; an error when a request
/// failed (unless `--allow-errors`), after the report.
pub fn run(args: BenchArgs) -> Result<(), String> {
    let config = super::cluster_file(args.config.as_deref())?;
    rt::set_executor_threads(args.threads);
    let ring = Ring::load(&config).map_err(|e| e.to_string())?;
    let secret = crate::ops::secret::load_given(args.secret_file.as_deref())?;
    check(&args)?;
    let coordinators = coordinator_addrs(&ring, args.coordinators.as_deref())?;
    let load = Load {
        consistency: args.consistency,
        reads: args.reads,
        cas: args.cas,
        value_bytes: args.value_bytes,
        keys: args.keys,
    };
    let meters = cost::metrics_clients(&ring, &secret);
    let run = rt::block_on(drive(&args, load, &coordinators, secret, &meters));
    let report = RunReport {
        settings: Settings {
            load,
            coordinators: &coordinators,
            connections: args.connections,
            pipeline: args.pipeline,
            threads: args.threads,
            seconds: args.seconds,
            requests: args.requests,
            warmup_seconds: args.warmup_seconds,
        },
        results: &run.results,
        elapsed: run.elapsed,
        cpu: &run.cpu,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    let failed = run.results.all().failed();
    if failed > 0 && !args.allow_errors {
        return Err(format!(
            "{failed} requests failed (see the errors above); pass --allow-errors to exit 0 anyway"
        ));
    }
    Ok(())
}

/// Refuses settings that make no sense, before any connection is opened.
fn check(args: &BenchArgs) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.reads) {
        return Err("--reads is a share between 0.0 and 1.0".into());
    }
    if !(0.0..=1.0).contains(&args.cas) || args.cas + args.reads > 1.0 {
        return Err(
            "--cas is a share between 0.0 and 1.0, and --reads plus --cas is at most 1.0".into(),
        );
    }
    if args.connections == 0 || args.pipeline == 0 {
        return Err("--connections and --pipeline must be at least 1".into());
    }
    if args.seconds.is_some() && args.requests.is_some() {
        return Err("give --seconds or --requests, not both".into());
    }
    if args.requests == Some(0) || args.seconds == Some(0) {
        return Err("--seconds and --requests must be at least 1".into());
    }
    Ok(())
}

/// The addresses of `--coordinators` (every replica when not given).
fn coordinator_addrs(ring: &Ring, list: Option<&str>) -> Result<Vec<String>, String> {
    let Some(list) = list else {
        return Ok(ring.members().iter().map(|m| m.addr.clone()).collect());
    };
    list.split(',')
        .map(|id| {
            let id: u32 = id
                .trim()
                .parse()
                .map_err(|_| format!("'{id}' is not a replica id"))?;
            ring.member(id)
                .map(|m| m.addr.clone())
                .ok_or_else(|| format!("replica {id} is not in the cluster file"))
        })
        .collect()
}

/// What a finished run measured.
struct Measured {
    results: WorkerReport,
    /// From the start of the measured phase until every measured request
    /// was answered.
    elapsed: Duration,
    cpu: CpuSpent,
}

/// Runs the workers through the warm-up and the measured run, printing a
/// progress line a second to stderr (not with `--json`).
async fn drive(
    args: &BenchArgs,
    load: Load,
    coordinators: &[String],
    secret: Option<Vec<u8>>,
    meters: &[(u32, Client)],
) -> Measured {
    let shared = Arc::new(Shared {
        limit: args.requests,
        ..Shared::default()
    });
    let results = Arc::new(Mutex::new(WorkerReport::default()));
    let mut workers = Vec::new();
    for connection in 0..args.connections {
        let coordinator = &coordinators[connection % coordinators.len()];
        let client = (args.pipeline > 1)
            .then(|| Arc::new(Client::new(coordinator.clone()).with_secret(secret.clone())));
        for slot in 0..args.pipeline {
            let mut session = match &client {
                Some(client) => Session::Shared(client.clone()),
                None => Session::Own(Serial::new(
                    coordinator.clone(),
                    secret.clone(),
                    DEFAULT_CLIENT_TIMEOUT,
                )),
            };
            let (shared, results) = (shared.clone(), results.clone());
            let worker_id = (connection * args.pipeline + slot) as u64;
            workers.push(rt::spawn(async move {
                let mine = worker::work(worker_id, &mut session, &shared, load).await;
                lock(&results).merge(&mine);
            }));
        }
    }
    rt::sleep(Duration::from_secs(args.warmup_seconds)).await;
    let before = cost::read(meters).await;
    shared.measuring.store(true, Ordering::SeqCst);
    let began = Instant::now();
    let progress = (!args.json).then(|| rt::spawn(report_progress(shared.clone(), began)));
    if args.requests.is_none() {
        rt::sleep(Duration::from_secs(args.seconds.unwrap_or(10))).await;
        shared.stop.store(true, Ordering::SeqCst);
    }
    // With --requests the workers stop by themselves once every measured
    // request has been started; either way the run ends at the last answer.
    for worker in workers {
        worker.await;
    }
    let elapsed = began.elapsed();
    shared.stop.store(true, Ordering::SeqCst);
    let after = cost::read(meters).await;
    if let Some(progress) = progress {
        progress.await;
    }
    let results = std::mem::take(&mut *lock(&results));
    Measured {
        results,
        elapsed,
        cpu: cost::spent(&before, &after),
    }
}

/// A line a second on stderr: requests answered in that second and errors
/// so far, until the run stops.
async fn report_progress(shared: Arc<Shared>, began: Instant) {
    let mut last = 0;
    let mut next = Duration::from_secs(1);
    loop {
        // Wake often enough to end promptly, print once a second.
        rt::sleep(Duration::from_millis(100)).await;
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if began.elapsed() < next {
            continue;
        }
        next += Duration::from_secs(1);
        let done = shared.completed.load(Ordering::Relaxed);
        eprintln!(
            "{:>4.0} s: {:>9.0} ops/s, {} errors so far",
            began.elapsed().as_secs_f64(),
            (done - last) as f64,
            shared.failed.load(Ordering::Relaxed)
        );
        last = done;
    }
}
