//! Recording what concurrent clients see of a running cluster, as a history
//! the linearizability checker can judge: many clients on different
//! coordinators put and get a few keys for a while, optionally while a fault
//! injector kills and restarts replicas, and every answered (or possibly
//! applied) operation is kept with its call and return times.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ringkv::client::Client;
use ringkv::ops::rt;
use ringkv::protocol::error::ErrorKind;
use ringkv::protocol::proto::Consistency;

use super::linearizability::{Op, OpKind};

/// How long a workload runs unless `RINGKV_HISTORY_SECONDS` says otherwise.
pub const DEFAULT_SECONDS: u64 = 10;

/// The run length the tests use: `RINGKV_HISTORY_SECONDS` if set (so a
/// script can run longer), else `DEFAULT_SECONDS`.
pub fn run_length() -> Duration {
    let seconds = match std::env::var("RINGKV_HISTORY_SECONDS") {
        Ok(text) => text
            .trim()
            .parse()
            .expect("RINGKV_HISTORY_SECONDS must be a whole number of seconds"),
        Err(_) => DEFAULT_SECONDS,
    };
    Duration::from_secs(seconds)
}

/// What the clients do: a description, so tests vary one knob at a time.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Coordinator addresses; client i uses `addrs[i % addrs.len()]`. Plain
    /// addresses, so the clients never borrow the `Cluster` a fault
    /// injector needs to kill and restart replicas.
    pub addrs: Vec<String>,
    /// How many clients run at once, each with its own connection.
    pub clients: usize,
    /// The keys they share, ideally spread over the ring.
    pub keys: Vec<u32>,
    /// How long clients keep starting new operations.
    pub duration: Duration,
    /// Percentage of operations that are writes; the rest are gets.
    pub put_percent: u32,
    /// Percentage of writes that are deletes rather than puts.
    pub delete_percent: u32,
    /// The level of every put and get.
    pub level: Consistency,
    /// The level of gets, when it is not `level` (SERIAL, say).
    pub get_level: Option<Consistency>,
    /// Percentage of writes that are compare-and-sets from the value the
    /// client last saw for the key, rather than puts or deletes.
    pub cas_percent: u32,
    /// Keys written only by cas and read only at SERIAL, whatever the
    /// other knobs say: a history may hold registers of both kinds.
    pub cas_keys: Vec<u32>,
    /// How long a client waits for an answer before the op counts as
    /// indeterminate; longer than the replicas' own request timeouts.
    pub client_timeout: Duration,
    /// Seeds the clients' choices, so a run can be repeated.
    pub seed: u64,
}

impl Workload {
    /// The standard workload: 8 clients, 6 keys spread over the ring, half
    /// puts and half gets at QUORUM, for `run_length()`.
    pub fn new(addrs: Vec<String>) -> Workload {
        Workload {
            addrs,
            clients: 8,
            keys: vec![10, 70, 130, 200, 250, 63],
            duration: run_length(),
            put_percent: 50,
            delete_percent: 20,
            level: Consistency::Quorum,
            get_level: None,
            cas_percent: 0,
            cas_keys: Vec::new(),
            client_timeout: Duration::from_secs(4),
            seed: 1,
        }
    }
}

/// What a workload recorded: each key's operations, plus counts of what
/// was left out, for the summary line.
#[derive(Debug, Default)]
pub struct History {
    /// The history of each key, sorted by call time.
    pub ops_by_key: BTreeMap<u32, Vec<Op>>,
    /// Puts refused up front (nothing written), left out.
    pub refused_puts: usize,
    /// Gets that failed, left out: they observed nothing.
    pub failed_gets: usize,
}

impl History {
    /// Operations recorded, over all keys.
    pub fn len(&self) -> usize {
        self.ops_by_key.values().map(Vec::len).sum()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts that may or may not have been applied (timed out, connection lost).
    pub fn indeterminate(&self) -> usize {
        self.ops_by_key
            .values()
            .flatten()
            .filter(|op| op.ret.is_none())
            .count()
    }

    /// One line for the test output: totals and per-key counts.
    pub fn summary(&self) -> String {
        let per_key: Vec<String> = self
            .ops_by_key
            .iter()
            .map(|(key, ops)| format!("{key}:{}", ops.len()))
            .collect();
        format!(
            "{} ops recorded, {} indeterminate, {} refused puts and {} failed gets left out; per key {}",
            self.len(),
            self.indeterminate(),
            self.refused_puts,
            self.failed_gets,
            per_key.join(" ")
        )
    }
}

/// Runs the workload with no faults and returns its history.
pub fn record(workload: &Workload) -> History {
    record_with_faults(workload, |_| {})
}

/// Runs the workload while `faults` runs on its own thread; `faults` gets a
/// flag that turns true when the clients have finished, and should return
/// soon after (leaving every replica running). It may borrow the `Cluster`
/// mutably, since the clients only use `workload.addrs`.
pub fn record_with_faults<F>(workload: &Workload, faults: F) -> History
where
    F: FnOnce(&AtomicBool) + Send,
{
    assert!(!workload.addrs.is_empty(), "a workload needs coordinators");
    assert!(!workload.keys.is_empty(), "a workload needs keys");
    let origin = Instant::now();
    let done = AtomicBool::new(false);
    let outcomes: Vec<ClientOutcome> = std::thread::scope(|scope| {
        let injector = scope.spawn(|| faults(&done));
        let clients =
            (0..workload.clients).map(|id| rt::spawn(run_client(workload.clone(), id, origin)));
        let handles: Vec<_> = clients.collect();
        let outcomes = rt::block_on(async {
            let mut outcomes = Vec::with_capacity(handles.len());
            for handle in handles {
                outcomes.push(handle.await);
            }
            outcomes
        });
        done.store(true, Ordering::SeqCst);
        injector.join().expect("fault injector panicked");
        outcomes
    });
    let mut history = History::default();
    for outcome in outcomes {
        history.refused_puts += outcome.refused_puts;
        history.failed_gets += outcome.failed_gets;
        for (key, op) in outcome.ops {
            history.ops_by_key.entry(key).or_default().push(op);
        }
    }
    for ops in history.ops_by_key.values_mut() {
        ops.sort_by_key(|op| (op.call, op.client));
    }
    history
}

/// One client's share of the history.
struct ClientOutcome {
    ops: Vec<(u32, Op)>,
    refused_puts: usize,
    failed_gets: usize,
}

/// One client: operations back to back until the run is over, each
/// classified by what its outcome proves.
async fn run_client(workload: Workload, id: usize, origin: Instant) -> ClientOutcome {
    let addr = workload.addrs[id % workload.addrs.len()].clone();
    let client = Client::new(addr).with_timeout(workload.client_timeout);
    let mut random = XorShift::new(workload.seed.wrapping_mul(1000).wrapping_add(id as u64));
    let mut outcome = ClientOutcome {
        ops: Vec::new(),
        refused_puts: 0,
        failed_gets: 0,
    };
    let micros = || origin.elapsed().as_micros() as u64;
    let mut puts = 0u64;
    // The value this client last saw for each key: what its cas expects.
    let mut last_seen: std::collections::HashMap<u32, Option<String>> =
        std::collections::HashMap::new();
    while origin.elapsed() < workload.duration {
        let key = workload.keys[random.below(workload.keys.len() as u64) as usize];
        let writing = random.below(100) < u64::from(workload.put_percent);
        let cas_key = workload.cas_keys.contains(&key);
        if writing && (cas_key || random.below(100) < u64::from(workload.cas_percent)) {
            puts += 1;
            let value = format!("c{id}-{puts}");
            let expected = last_seen.get(&key).cloned().flatten();
            let call = micros();
            let result = client.cas(key, expected.as_deref(), &value).await;
            let ret = micros();
            let (ret, kind) = match result {
                Ok(reply) if reply.applied => {
                    last_seen.insert(key, Some(value.clone()));
                    (Some(ret), OpKind::Cas(expected, value))
                }
                Ok(reply) => {
                    let current = reply.current.map(|v| v.value);
                    last_seen.insert(key, current.clone());
                    (Some(ret), OpKind::Get(current))
                }
                Err(e) if e.kind == ErrorKind::Unavailable => {
                    outcome.refused_puts += 1;
                    rt::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                // The outcome is unknown (or nothing was written): either way
                // the checker may place it anywhere after its call, or never.
                Err(_) => (None, OpKind::Cas(expected, value)),
            };
            outcome.ops.push((
                key,
                Op {
                    client: id,
                    call,
                    ret,
                    kind,
                    stamp: None,
                },
            ));
            if ret.is_none() {
                rt::sleep(Duration::from_millis(20)).await;
            }
            continue;
        }
        let failed = if writing {
            puts += 1;
            let value = format!("c{id}-{puts}");
            let deleting = random.below(100) < u64::from(workload.delete_percent);
            let call = micros();
            let result = if deleting {
                client.delete(key, workload.level).await
            } else {
                client.put(key, &value, workload.level).await
            };
            let ret = micros();
            // The coordinator is replica `id % addrs.len()`: the put's
            // stamp names it.
            let coordinator = (id % workload.addrs.len()) as u32;
            let (ret, stamp) = match result {
                Ok(timestamp) => (Some(ret), Some((timestamp, coordinator))),
                // Refused before anything was sent or written.
                Err(e) if e.kind == ErrorKind::Unavailable => {
                    outcome.refused_puts += 1;
                    rt::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                // Timed out, lost connection, refused by some replicas but
                // not others, internal fault: it may have been applied.
                Err(_) => (None, None),
            };
            let kind = if deleting {
                OpKind::Delete
            } else {
                OpKind::Put(value)
            };
            outcome.ops.push((
                key,
                Op {
                    client: id,
                    call,
                    ret,
                    kind,
                    stamp,
                },
            ));
            ret.is_none()
        } else {
            let call = micros();
            let level = if cas_key {
                Consistency::Serial
            } else {
                workload.get_level.unwrap_or(workload.level)
            };
            let result = client.get(key, level).await;
            let ret = micros();
            match result {
                Ok(found) => {
                    let stamp = found
                        .as_ref()
                        .map(|v| (v.timestamp_micros, v.coordinator_id));
                    let found = found.map(|v| v.value);
                    last_seen.insert(key, found.clone());
                    let kind = OpKind::Get(found);
                    let op = Op {
                        client: id,
                        call,
                        ret: Some(ret),
                        kind,
                        stamp,
                    };
                    outcome.ops.push((key, op));
                    false
                }
                Err(_) => {
                    outcome.failed_gets += 1;
                    true
                }
            }
        };
        if failed {
            // Do not spin against a coordinator that is down.
            rt::sleep(Duration::from_millis(20)).await;
        }
    }
    outcome
}

/// A tiny deterministic generator for the clients' choices, so no crate is
/// needed and a run's choices repeat.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // splitmix64 of the seed, so nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
