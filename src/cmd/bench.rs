//! `ringkv bench`: a closed-loop load generator on the client library the
//! console uses. Each connection keeps `--pipeline` requests in flight
//! against one coordinator; connections are spread over the coordinators.
//!
//! Values are unique per put and name their key (`k<key>-<connection>-<n>`,
//! padded to `--value-bytes`), so every get checks that what it read was
//! written for that key: a value of another key counts as a `WRONG_KEY`
//! error. Latencies go into a fixed-size histogram (`histogram.rs`), one per
//! worker, merged at the end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argh::FromArgs;

use crate::client::Client;
use crate::cluster::ring::Ring;
use crate::metrics::histogram::Histogram;
use crate::ops::lock::lock;
use crate::ops::rt;
use crate::protocol::error::KvError;
use crate::protocol::proto::Consistency;

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
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyChoice {
    /// Every key as likely.
    Uniform,
    /// 80 % of requests on 16 keys spread over the ring.
    Hot,
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

/// What the workers share while they run.
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    /// Requests started in the measured phase (for `--requests`).
    started: AtomicU64,
    /// Requests completed in the measured phase, for the progress line.
    completed: AtomicU64,
    failed: AtomicU64,
    limit: Option<u64>,
}

/// One worker's results.
#[derive(Default)]
struct WorkerReport {
    latency_us: Histogram,
    errors: BTreeMap<String, u64>,
}

/// Runs the benchmark and prints its report.
pub fn run(args: BenchArgs) -> Result<(), String> {
    let config = super::cluster_file(args.config.as_deref())?;
    rt::set_executor_threads(args.threads);
    let ring = Ring::load(&config).map_err(|e| e.to_string())?;
    let secret = crate::ops::secret::load_given(args.secret_file.as_deref())?;
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
    let coordinators = coordinator_addrs(&ring, args.coordinators.as_deref())?;
    let args = Arc::new(args);
    let (report, elapsed, total) = rt::block_on(drive(args.clone(), coordinators, secret));
    print_report(&args, &report, elapsed, total);
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

/// Runs the workers through the warm-up and the measured run, printing a
/// line a second; returns what they recorded, the measured time and the
/// requests completed in it.
async fn drive(
    args: Arc<BenchArgs>,
    coordinators: Vec<String>,
    secret: Option<Vec<u8>>,
) -> (WorkerReport, Duration, u64) {
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        started: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        limit: args.requests,
    });
    let report = Arc::new(Mutex::new(WorkerReport::default()));
    let mut workers = Vec::new();
    for connection in 0..args.connections {
        let client = Arc::new(
            Client::new(coordinators[connection % coordinators.len()].clone())
                .with_secret(secret.clone()),
        );
        for slot in 0..args.pipeline {
            let (client, shared, report, args) =
                (client.clone(), shared.clone(), report.clone(), args.clone());
            let worker_id = (connection * args.pipeline + slot) as u64;
            workers.push(rt::spawn(async move {
                let mine = work(worker_id, &client, &shared, &args).await;
                let mut all = lock(&report);
                all.latency_us.merge(&mine.latency_us);
                for (kind, count) in mine.errors {
                    *all.errors.entry(kind).or_default() += count;
                }
            }));
        }
    }
    rt::sleep(Duration::from_secs(args.warmup_seconds)).await;
    shared.measuring.store(true, Ordering::SeqCst);
    let began = Instant::now();
    let duration = Duration::from_secs(args.seconds.unwrap_or(10));
    let mut last = 0;
    loop {
        rt::sleep(Duration::from_secs(1).min(duration)).await;
        let done = shared.completed.load(Ordering::Relaxed);
        if !args.json {
            eprintln!(
                "{:>4.0} s: {:>9.0} ops/s, {} errors so far",
                began.elapsed().as_secs_f64(),
                (done - last) as f64,
                shared.failed.load(Ordering::Relaxed)
            );
        }
        last = done;
        let finished = match args.requests {
            Some(limit) => done >= limit,
            None => began.elapsed() >= duration,
        };
        if finished {
            break;
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    let elapsed = began.elapsed();
    for worker in workers {
        worker.await;
    }
    let total = shared.completed.load(Ordering::Relaxed);
    let report = std::mem::take(&mut *lock(&report));
    (report, elapsed, total)
}

/// Prints throughput, latency percentiles and errors, as text or JSON.
fn print_report(args: &BenchArgs, report: &WorkerReport, elapsed: Duration, total: u64) {
    let ops_per_sec = total as f64 / elapsed.as_secs_f64();
    let h = &report.latency_us;
    let percentiles = [
        ("p50", h.percentile(0.50)),
        ("p90", h.percentile(0.90)),
        ("p99", h.percentile(0.99)),
        ("p999", h.percentile(0.999)),
        ("max", h.max()),
    ];
    if args.json {
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(|(kind, n)| format!("\"{kind}\": {n}"))
            .collect();
        let latency: Vec<String> = percentiles
            .iter()
            .map(|(name, us)| format!("\"{name}\": {us}"))
            .collect();
        println!(
            "{{\"ops_per_sec\": {ops_per_sec:.1}, \"requests\": {total}, \"errors\": {{{}}}, \"latency_us\": {{{}}}}}",
            errors.join(", "),
            latency.join(", ")
        );
        return;
    }
    println!(
        "{} {} x{} conns x{} pipeline, reads {:.0}%, cas {:.0}%, {} B values: {ops_per_sec:.0} ops/s over {:.1} s ({total} requests)",
        args.consistency,
        match args.keys {
            KeyChoice::Uniform => "uniform",
            KeyChoice::Hot => "hot",
        },
        args.connections,
        args.pipeline,
        args.reads * 100.0,
        args.cas * 100.0,
        args.value_bytes,
        elapsed.as_secs_f64()
    );
    let latency: Vec<String> = percentiles
        .iter()
        .map(|(name, us)| format!("{name} {}", format_micros(*us)))
        .collect();
    println!("latency: {}", latency.join(", "));
    if report.errors.is_empty() {
        println!("errors: none");
    } else {
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        println!("errors: {}", errors.join(", "));
    }
}

fn format_micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

/// One closed loop: a request, its answer, the next request.
async fn work(worker_id: u64, client: &Client, shared: &Shared, args: &BenchArgs) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut random = worker_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut n = 0u64;
    let read_threshold = (args.reads * u32::MAX as f64) as u64;
    let cas_threshold = ((args.reads + args.cas) * u32::MAX as f64) as u64;
    // What this worker last saw of each key, for its cas.
    let mut last_seen: Vec<Option<String>> = vec![None; 256];
    while !shared.stop.load(Ordering::Relaxed) {
        let measuring = shared.measuring.load(Ordering::Relaxed);
        if measuring {
            if let Some(limit) = shared.limit {
                if shared.started.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
            }
        }
        random = xorshift(random);
        let key = match args.keys {
            KeyChoice::Uniform => (random >> 8) % 256,
            KeyChoice::Hot if random % 10 < 8 => ((random >> 8) % 16) * 16,
            KeyChoice::Hot => (random >> 8) % 256,
        } as u32;
        let draw = (random >> 32) & 0xffff_ffff;
        let read = draw < read_threshold;
        let cas = !read && draw < cas_threshold;
        n += 1;
        let began = Instant::now();
        let outcome = if cas {
            let value = padded(format!("k{key}-{worker_id}-{n}"), args.value_bytes);
            let expected = last_seen[key as usize].take();
            match client.cas(key, expected.as_deref(), &value).await {
                Ok(reply) if reply.applied => {
                    last_seen[key as usize] = Some(value);
                    Ok(())
                }
                // Not applied is an answer, not an error: learn the value.
                Ok(reply) => {
                    last_seen[key as usize] = reply.current.map(|v| v.value);
                    Ok(())
                }
                Err(error) => Err(error.kind.as_str().to_string()),
            }
        } else if read {
            match client.get(key, args.consistency).await {
                Ok(Some(version)) if !version.value.starts_with(&format!("k{key}-")) => {
                    Err("WRONG_KEY".to_string())
                }
                Ok(_) => Ok(()),
                Err(error) => Err(error.kind.as_str().to_string()),
            }
        } else {
            let value = padded(format!("k{key}-{worker_id}-{n}"), args.value_bytes);
            client
                .put(key, &value, args.consistency)
                .await
                .map(|_| ())
                .map_err(|error| error.kind.as_str().to_string())
        };
        if !measuring {
            continue;
        }
        report.latency_us.record(began.elapsed().as_micros() as u64);
        shared.completed.fetch_add(1, Ordering::Relaxed);
        if let Err(kind) = outcome {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            *report.errors.entry(kind).or_default() += 1;
        }
    }
    report
}

/// `text` padded with dots to `len` bytes (or left longer, if it is).
fn padded(mut text: String, len: usize) -> String {
    if text.len() < len {
        text.extend(std::iter::repeat_n('.', len - text.len()));
    }
    text
}

fn xorshift(mut state: u64) -> u64 {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    state
}
