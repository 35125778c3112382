//! One closed loop of `ringkv bench`: a request, its answer, the next
//! request, recorded per operation. Kept light on purpose, since the load
//! generator shares the machine with the replicas it measures: with one
//! request in flight a worker drives its own connection in line (see
//! `client::serial`), values are written into one reused buffer, the key
//! check on a get allocates nothing, and the only shared state touched per
//! request is two relaxed counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::client::serial::Serial;
use crate::client::{cas_outcome, cas_request, found, get_request, put_request, put_stamp, Client};
use crate::metrics::histogram::Histogram;
use crate::protocol::error::KvError;
use crate::protocol::proto::{Body, Consistency};

/// The kinds of request a worker sends, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A get at the run's level.
    Get,
    /// A put at the run's level.
    Put,
    /// A compare-and-set (always linearizable).
    Cas,
}

impl Operation {
    /// Every operation, in report order.
    pub const ALL: [Operation; 3] = [Operation::Get, Operation::Put, Operation::Cas];

    /// The name used in the text and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Put => "put",
            Operation::Cas => "cas",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyChoice {
    /// Every key as likely.
    Uniform,
    /// 80 % of requests on 16 keys spread over the ring.
    Hot,
}

impl KeyChoice {
    /// The name `--keys` takes.
    pub fn name(self) -> &'static str {
        match self {
            KeyChoice::Uniform => "uniform",
            KeyChoice::Hot => "hot",
        }
    }
}

/// What a worker needs to know about the run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Level of gets and puts.
    pub consistency: Consistency,
    /// Share of requests that are gets.
    pub reads: f64,
    /// Share of requests that are compare-and-sets.
    pub cas: f64,
    /// Bytes per value written.
    pub value_bytes: usize,
    /// How keys are chosen.
    pub keys: KeyChoice,
}

/// How a worker reaches its coordinator: with `--pipeline 1`, a connection
/// of its own that it drives in line (the lightest load generator); with
/// more, a multiplexed client shared with the other workers of its
/// connection, so that several requests are in flight on it.
pub enum Session {
    /// A connection of the worker's own.
    Own(Serial),
    /// A client shared by `--pipeline` workers.
    Shared(Arc<Client>),
}

impl Session {
    async fn call(&mut self, body: Body) -> Result<Body, KvError> {
        match self {
            Session::Own(serial) => serial.call(body).await,
            Session::Shared(client) => client.call(body).await,
        }
    }
}

/// What the workers share while they run.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set when the warm-up ends: requests started from now on count.
    pub measuring: AtomicBool,
    /// Set when no new request should start.
    pub stop: AtomicBool,
    /// Requests started in the measured phase (for `--requests`).
    pub started: AtomicU64,
    /// Requests completed in the measured phase, for the progress line.
    pub completed: AtomicU64,
    /// Of those, the ones that failed.
    pub failed: AtomicU64,
    /// `--requests`: how many to measure, if a count rather than a time.
    pub limit: Option<u64>,
}

/// What one operation's requests did.
#[derive(Clone, Debug, Default)]
pub struct OperationReport {
    /// Latency of every measured request, failed ones included.
    pub latency_us: Histogram,
    /// Failures by error kind (`WRONG_KEY` for a get that read another
    /// key's value).
    pub errors: BTreeMap<String, u64>,
}

impl OperationReport {
    /// Adds another worker's results to these.
    pub fn merge(&mut self, other: &OperationReport) {
        self.latency_us.merge(&other.latency_us);
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    /// Requests that failed.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One worker's (or, merged, every worker's) results, by operation.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    /// Indexed by `Operation as usize`.
    pub operations: [OperationReport; 3],
}

impl WorkerReport {
    /// Adds another worker's results to these.
    pub fn merge(&mut self, other: &WorkerReport) {
        for (mine, theirs) in self.operations.iter_mut().zip(&other.operations) {
            mine.merge(theirs);
        }
    }

    /// The results of one operation.
    pub fn of(&self, operation: Operation) -> &OperationReport {
        &self.operations[operation.index()]
    }

    /// Every operation's results together.
    pub fn all(&self) -> OperationReport {
        let mut all = OperationReport::default();
        for operation in &self.operations {
            all.merge(operation);
        }
        all
    }
}

/// Runs one closed loop until told to stop (or, with `--requests`, until
/// the measured requests have all been started).
pub async fn work(
    worker_id: u64,
    session: &mut Session,
    shared: &Shared,
    load: Load,
) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut random = worker_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut n = 0u64;
    let read_threshold = (load.reads * u32::MAX as f64) as u64;
    let cas_threshold = ((load.reads + load.cas) * u32::MAX as f64) as u64;
    // What this worker last saw of each key, for its cas.
    let mut last_seen: Vec<Option<String>> = vec![None; 256];
    let mut value = String::with_capacity(load.value_bytes.max(32));
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
        let key = choose_key(load.keys, random);
        let draw = (random >> 32) & 0xffff_ffff;
        let operation = if draw < read_threshold {
            Operation::Get
        } else if draw < cas_threshold {
            Operation::Cas
        } else {
            Operation::Put
        };
        n += 1;
        if operation != Operation::Get {
            write_value(&mut value, key, worker_id, n, load.value_bytes);
        }
        let began = Instant::now();
        let outcome = match operation {
            Operation::Get => match session
                .call(get_request(key, load.consistency))
                .await
                .and_then(found)
            {
                Ok(Some(version)) if !names_key(&version.value, key) => {
                    Err("WRONG_KEY".to_string())
                }
                Ok(_) => Ok(()),
                Err(error) => Err(error.kind.as_str().to_string()),
            },
            Operation::Put => session
                .call(put_request(key, &value, load.consistency))
                .await
                .and_then(put_stamp)
                .map(|_| ())
                .map_err(|error| error.kind.as_str().to_string()),
            Operation::Cas => {
                let expected = last_seen[key as usize].take();
                let request = cas_request(key, expected.as_deref(), &value);
                match session.call(request).await.and_then(cas_outcome) {
                    Ok(reply) if reply.applied => {
                        last_seen[key as usize] = Some(value.clone());
                        Ok(())
                    }
                    // Not applied is an answer, not an error: learn the value.
                    Ok(reply) => {
                        last_seen[key as usize] = reply.current.map(|v| v.value);
                        Ok(())
                    }
                    Err(error) => Err(error.kind.as_str().to_string()),
                }
            }
        };
        if !measuring {
            continue;
        }
        let mine = &mut report.operations[operation.index()];
        mine.latency_us.record(began.elapsed().as_micros() as u64);
        shared.completed.fetch_add(1, Ordering::Relaxed);
        if let Err(kind) = outcome {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            *mine.errors.entry(kind).or_default() += 1;
        }
    }
    report
}

fn choose_key(keys: KeyChoice, random: u64) -> u32 {
    (match keys {
        KeyChoice::Uniform => (random >> 8) % 256,
        KeyChoice::Hot if random % 10 < 8 => ((random >> 8) % 16) * 16,
        KeyChoice::Hot => (random >> 8) % 256,
    }) as u32
}

/// Writes the value of a put into `value`: `k<key>-<worker>-<n>`, unique
/// per put and naming its key, padded with dots to `len` bytes (or left
/// longer, if it is).
fn write_value(value: &mut String, key: u32, worker_id: u64, n: u64, len: usize) {
    value.clear();
    let _ = write!(value, "k{key}-{worker_id}-{n}");
    if value.len() < len {
        value.extend(std::iter::repeat_n('.', len - value.len()));
    }
}

/// Whether `value` was written by a bench put of `key` (starts `k<key>-`).
fn names_key(value: &str, key: u32) -> bool {
    let Some(rest) = value.strip_prefix('k') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[digits..].starts_with('-') && rest[..digits].parse::<u32>() == Ok(key)
}

fn xorshift(mut state: u64) -> u64 {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_their_key_and_are_padded() {
        let mut value = String::new();
        write_value(&mut value, 7, 3, 12, 16);
        assert_eq!(value, "k7-3-12.........");
        assert!(names_key(&value, 7));
        assert!(!names_key(&value, 77));
        assert!(!names_key(&value, 0));
        write_value(&mut value, 255, 1000, 123_456, 4);
        assert_eq!(value, "k255-1000-123456");
        assert!(names_key(&value, 255));
        assert!(!names_key("k25", 25));
        assert!(!names_key("x25-1", 25));
        assert!(!names_key("k-1", 0));
    }

    #[test]
    fn hot_keys_take_most_requests() {
        let mut random = 1u64;
        let mut hot = 0;
        for _ in 0..10_000 {
            random = xorshift(random);
            let key = choose_key(KeyChoice::Hot, random);
            assert!(key < 256);
            if key.is_multiple_of(16) {
                hot += 1;
            }
        }
        assert!((7_500..9_000).contains(&hot), "{hot} of 10000 on hot keys");
    }
}
