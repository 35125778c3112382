//! Network partitions, not just crashes: what each consistency level
//! promises while links between running replicas are cut, healed and
//! slowed.
//!
//! `scripts/partition_test.sh` runs this. It puts each replica in a network
//! namespace of its own, starts the replicas, and passes the cluster file and
//! the names of the links in the environment; the tests are `#[ignore]`d in
//! the normal suite because they need root, namespaces and replicas the
//! script started, and they return at once (saying so) without that
//! environment.
//!
//! - `partitions`: one replica cut off while it keeps running, then a 2+2
//!   split, each while eight clients run a QUORUM history that must be
//!   linearizable, with explicit checks of every level on each side, and
//!   convergence of every key written once the links are healed.
//! - `slow_replica`: 100 ms of latency in front of replica 3, from a
//!   delaying TCP proxy in this process (the kernel has no netem): ONE and
//!   QUORUM through the other coordinators stay fast, ALL pays the delay.
//!
//! A cut moves a replica's veth from the main bridge to a second bridge. That
//! silently drops every packet between it and the replicas left behind, as a
//! real partition does: no reset, no refused connect, just silence until
//! timeouts notice. The root namespace, where this test runs, is on both
//! bridges, so it still reaches every coordinator and sees what each side
//! answers. It never forwards between the sides.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::history::{self, History, Workload};
use common::linearizability::check_history;
use ringkv::client::Client;
use ringkv::cluster::ring::Ring;
use ringkv::ops::rt;
use ringkv::protocol::error::{ErrorKind, KvError};
use ringkv::protocol::proto::{replica_holding, Consistency, Versioned};

/// How long a test client waits for a coordinator: longer than the
/// replicas' 2 s request timeouts, so a coordinator that answers at all
/// answers first, and one that does not answer is caught.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the replicas may take to see a cut or a heal.
const VIEW_TIMEOUT: Duration = Duration::from_secs(15);

/// Every replica must hold the same version of every key within this long
/// after a heal.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(15);

/// If hints and read repair have not converged the replicas by then, the
/// test runs `ringkv repair` (anti-entropy on demand) and waits for the rest
/// of `CONVERGENCE_TIMEOUT`.
const REPAIR_AFTER: Duration = Duration::from_secs(5);

/// How long each recorded history runs; the cut lands 1 s in and is healed
/// before the end, so the history spans the cut, the partition and the heal.
const HISTORY_LENGTH: Duration = Duration::from_secs(10);

/// The latency the proxy adds in front of the slow replica.
const PROXY_DELAY: Duration = Duration::from_millis(100);

/// The environment variable's value, if the script set it.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The script's cluster: the ring and its members' addresses.
fn cluster_from_env(test: &str) -> Option<(PathBuf, Ring, Vec<String>)> {
    let Some(config) = env("RINGKV_PARTITION_CONFIG") else {
        println!(
            "{test}: skipped: run it with scripts/partition_test.sh (needs root and ip netns)"
        );
        return None;
    };
    let config = PathBuf::from(config);
    let ring = Ring::load(&config).expect("the script's cluster file");
    let addrs = ring.members().iter().map(|m| m.addr.clone()).collect();
    Some((config, ring, addrs))
}

/// One line of the script's summary.
fn summary(line: &str) {
    println!("partition test: {line}");
}

/// The script's network: each replica's link into the main bridge, and the
/// second bridge a cut moves links to.
struct Net {
    /// The root-namespace end of replica i's veth.
    links: Vec<String>,
    /// Replica i's IP address.
    hosts: Vec<String>,
    main_bridge: String,
    cut_bridge: String,
    /// The root namespace's own address on the cut bridge.
    cut_addr: String,
    /// Replicas whose links are on the cut bridge now.
    cut: Vec<usize>,
}

impl Net {
    fn from_env(addrs: &[String]) -> Net {
        let var = |name: &str| env(name).unwrap_or_else(|| panic!("{name} is not set"));
        let links: Vec<String> = var("RINGKV_PARTITION_LINKS")
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(links.len(), addrs.len(), "one link per replica");
        Net {
            links,
            hosts: addrs
                .iter()
                .map(|a| a.rsplit_once(':').expect("HOST:PORT").0.to_string())
                .collect(),
            main_bridge: var("RINGKV_PARTITION_MAIN_BRIDGE"),
            cut_bridge: var("RINGKV_PARTITION_CUT_BRIDGE"),
            cut_addr: var("RINGKV_PARTITION_CUT_ADDR"),
            cut: Vec::new(),
        }
    }

    /// Moves these replicas' links to the cut bridge, together: they still
    /// reach each other, and nothing crosses to the replicas left behind.
    /// The root namespace gets a host route to each over the cut bridge, so
    /// the test still reaches them.
    fn cut(&mut self, ids: &[usize]) {
        for &id in ids {
            ip(&["link", "set", &self.links[id], "master", &self.cut_bridge]);
            let host = format!("{}/32", self.hosts[id]);
            ip(&[
                "route",
                "replace",
                &host,
                "dev",
                &self.cut_bridge,
                "src",
                &self.cut_addr,
            ]);
            self.cut.push(id);
        }
    }

    /// Puts every cut link back on the main bridge.
    fn heal(&mut self) {
        for id in std::mem::take(&mut self.cut) {
            ip(&["link", "set", &self.links[id], "master", &self.main_bridge]);
            ip(&["route", "del", &format!("{}/32", self.hosts[id])]);
        }
    }

    /// Whether replicas `a` and `b` can reach each other now.
    fn same_side(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&a) == self.cut.contains(&b)
    }
}

impl Drop for Net {
    /// A failing test leaves the network whole for the next step; the
    /// script deletes all of it at the end anyway.
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.cut) {
            let _ = Command::new("ip")
                .args(["link", "set", &self.links[id], "master", &self.main_bridge])
                .status();
            let _ = Command::new("ip")
                .args(["route", "del", &format!("{}/32", self.hosts[id])])
                .status();
        }
    }
}

/// Runs `ip` and fails the test if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// A fresh client of one coordinator: a new connection, so one that a cut
/// left hanging never stands in for the coordinator's answer.
fn client(addr: &str) -> Client {
    Client::new(addr).with_timeout(CLIENT_TIMEOUT)
}

fn put(addr: &str, key: u32, value: &str, level: Consistency) -> Result<u64, KvError> {
    rt::block_on(client(addr).put(key, value, level))
}

fn get(addr: &str, key: u32, level: Consistency) -> Result<Option<String>, KvError> {
    rt::block_on(client(addr).get(key, level)).map(|found| found.map(|v| v.value))
}

/// Whether the coordinator itself refused as the levels promise when too
/// few replicas are reachable: UNAVAILABLE (nothing written) or TIMEOUT
/// (maybe written), from the coordinator. An unreachable coordinator or one
/// that never answers is not that.
fn refused_by_coordinator(error: &KvError) -> bool {
    matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
        && !error.message.contains("coordinator unreachable")
        && !error.message.contains("the coordinator at")
}

/// Waits until every coordinator sees exactly the peers on its side of the
/// network up and the others down (`same_side(observer, subject)`);
/// returns how long that took.
fn wait_for_views(
    addrs: &[String],
    same_side: impl Fn(usize, usize) -> bool,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let mut wrong = Vec::new();
        for (observer, addr) in addrs.iter().enumerate() {
            match rt::block_on(client(addr).status()) {
                Ok(status) => {
                    for peer in &status.peers {
                        let subject = peer.replica_id as usize;
                        if peer.up != same_side(observer, subject) {
                            wrong.push(format!(
                                "{observer} sees {subject} {}",
                                if peer.up { "up" } else { "down" }
                            ));
                        }
                    }
                }
                Err(e) => wrong.push(format!("{observer} did not answer status: {e}")),
            }
        }
        if wrong.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > VIEW_TIMEOUT {
            return Err(format!(
                "views not settled after {VIEW_TIMEOUT:?}: {}",
                wrong.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The keys whose replicas do not all hold the same version now (or did not
/// all answer), each with what was seen.
fn divergent_keys(ring: &Ring, clients: &[Client], keys: &BTreeSet<u32>) -> Vec<String> {
    let mut divergent = Vec::new();
    for &key in keys {
        let via = &clients[key as usize % clients.len()];
        let reply = match rt::block_on(via.inspect(key)) {
            Ok(reply) => reply,
            Err(e) => {
                divergent.push(format!("{key}: inspect failed: {e}"));
                continue;
            }
        };
        let held: Vec<Option<Option<Versioned>>> = reply
            .replicas
            .into_iter()
            .map(|r| match r.outcome {
                Some(replica_holding::Outcome::Holding(h)) => Some(h.found),
                _ => None,
            })
            .collect();
        let agreed = held.len() == ring.replicas_for(key as u8).len()
            && held.iter().all(|h| h.is_some() && *h == held[0]);
        if !agreed {
            divergent.push(format!("{key}: {held:?}"));
        }
    }
    divergent
}

/// Waits until every replica of every key holds the same version (hints
/// and read repair should do it alone; `ringkv repair` runs if they have
/// not after `REPAIR_AFTER`). Returns how it converged. `inspect` asks each
/// replica for its local copy without repairing anything, so the check
/// itself changes nothing.
fn converge(
    config: &Path,
    ring: &Ring,
    addrs: &[String],
    keys: &BTreeSet<u32>,
    healed_at: Instant,
) -> Result<String, String> {
    // Clients write until the history ends, a few seconds after the heal;
    // the clock for "converged in time" starts once they have stopped.
    let started = Instant::now();
    let clients: Vec<Client> = addrs.iter().map(|a| client(a)).collect();
    let mut repaired = false;
    loop {
        let divergent = divergent_keys(ring, &clients, keys);
        if divergent.is_empty() {
            return Ok(format!(
                "{} keys identical on all their replicas {:.1} s after the heal ({:.1} s after the last write), {}",
                keys.len(),
                healed_at.elapsed().as_secs_f64(),
                started.elapsed().as_secs_f64(),
                if repaired {
                    "after `ringkv repair`"
                } else {
                    "by hints and read repair alone"
                }
            ));
        }
        if !repaired && started.elapsed() > REPAIR_AFTER {
            let output = Command::new(env!("CARGO_BIN_EXE_ringkv"))
                .arg("repair")
                .arg("--config")
                .arg(config)
                .output()
                .expect("run ringkv repair");
            assert!(
                output.status.success(),
                "ringkv repair: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            repaired = true;
        }
        if started.elapsed() > CONVERGENCE_TIMEOUT {
            return Err(format!(
                "{} of {} keys still differ {CONVERGENCE_TIMEOUT:?} after the heal:\n{}",
                divergent.len(),
                keys.len(),
                divergent.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sleeps until `until`, waking early when `done` turns true.
fn sleep_until(done: &AtomicBool, until: Instant) {
    while !done.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Judges a recorded history and gives its summary line.
fn judge(fault: &str, history: &History, problems: &mut Vec<String>) {
    let verdict = if history.is_empty() {
        Err("no operations recorded".to_string())
    } else {
        check_history(&history.ops_by_key)
    };
    summary(&format!(
        "QUORUM history across {fault}: {}; {}",
        history.summary(),
        if verdict.is_ok() {
            "linearizable"
        } else {
            "NOT linearizable"
        }
    ));
    if let Err(explanation) = verdict {
        problems.push(format!("history across {fault}: {explanation}"));
    }
}

/// A QUORUM write the coordinator acknowledged, to be read back later.
struct Acked {
    key: u32,
    value: String,
    coordinator: usize,
}

/// What the checks during one fault found.
#[derive(Default)]
struct Findings {
    /// QUORUM writes acknowledged during the fault.
    acked: Vec<Acked>,
    /// Checks that failed, each explained.
    problems: Vec<String>,
    /// One summary line per check.
    lines: Vec<String>,
    /// Every key the checks wrote (or tried to), for the convergence check.
    written: BTreeSet<u32>,
}

/// Fault 1 while the history runs: replica `isolated` is cut off and keeps
/// running. What the levels promise on each side:
/// - through the isolated replica, QUORUM answers UNAVAILABLE or TIMEOUT,
///   and if it ever acknowledged a write the majority must see it;
/// - ONE through it still works for the keys it holds (its own copy);
/// - QUORUM reads and writes through the other three all work.
fn check_one_cut_off(ring: &Ring, addrs: &[String], isolated: usize, findings: &mut Findings) {
    let majority: Vec<usize> = (0..addrs.len()).filter(|&id| id != isolated).collect();
    let holds = |key: u32| ring.replicas_for(key as u8).contains(&(isolated as u32));
    let mut timeouts = 0;
    let mut unavailable = 0;
    let started = Instant::now();
    // QUORUM through the isolated coordinator, at once: the first ones
    // meet a coordinator that still believes its peers are up (TIMEOUT), the
    // later ones one that knows better (UNAVAILABLE).
    let isolated_keys = [5, 69, 133, 197, 25, 89, 153, 217];
    for key in isolated_keys {
        let value = format!("isolated-{key}");
        findings.written.insert(key);
        match put(&addrs[isolated], key, &value, Consistency::Quorum) {
            Ok(_) => findings.acked.push(Acked {
                key,
                value,
                coordinator: isolated,
            }),
            Err(e) if refused_by_coordinator(&e) => {
                if e.kind == ErrorKind::Timeout {
                    timeouts += 1;
                } else {
                    unavailable += 1;
                }
            }
            Err(e) => findings
                .problems
                .push(format!("isolated QUORUM put {key}: unexpected {e}")),
        }
        match get(&addrs[isolated], key, Consistency::Quorum) {
            Ok(found) => findings.problems.push(format!(
                "isolated QUORUM get {key} answered {found:?} without a quorum"
            )),
            Err(e) if refused_by_coordinator(&e) => {}
            Err(e) => findings
                .problems
                .push(format!("isolated QUORUM get {key}: unexpected {e}")),
        }
    }
    let isolated_acked = findings.acked.len();
    findings.lines.push(format!(
        "replica {isolated} cut off: QUORUM through it: {} puts acknowledged, {timeouts} TIMEOUT, {unavailable} UNAVAILABLE; every get refused ({:.1} s)",
        isolated_acked,
        started.elapsed().as_secs_f64()
    ));
    // ONE through the isolated replica: its own keys work, others cannot.
    let mut one_ok = 0;
    let mut one_refused = 0;
    for key in [9u32, 73, 137, 201] {
        findings.written.insert(key);
        let result = put(
            &addrs[isolated],
            key,
            &format!("one-{key}"),
            Consistency::One,
        );
        match (holds(key), result) {
            (true, Ok(_)) => one_ok += 1,
            (false, Err(e)) if refused_by_coordinator(&e) => one_refused += 1,
            (expected, result) => findings.problems.push(format!(
                "isolated ONE put {key} (held there: {expected}): {result:?}"
            )),
        }
    }
    findings.lines.push(format!(
        "replica {isolated} cut off: ONE through it: {one_ok} puts of keys it holds acknowledged, {one_refused} of keys it does not hold refused"
    ));
    // QUORUM through the majority: every key has two replicas there.
    let mut majority_ok = 0;
    let majority_keys: Vec<u32> = (0..16).map(|j| 16 * j + 3).collect();
    for (j, &key) in majority_keys.iter().enumerate() {
        let writer = majority[j % majority.len()];
        let reader = majority[(j + 1) % majority.len()];
        let value = format!("majority-{key}");
        findings.written.insert(key);
        match put(&addrs[writer], key, &value, Consistency::Quorum) {
            Ok(_) => findings.acked.push(Acked {
                key,
                value: value.clone(),
                coordinator: writer,
            }),
            Err(e) => {
                findings
                    .problems
                    .push(format!("majority QUORUM put {key} via {writer}: {e}"));
                continue;
            }
        }
        match get(&addrs[reader], key, Consistency::Quorum) {
            Ok(Some(read)) if read == value => majority_ok += 1,
            other => findings.problems.push(format!(
                "majority QUORUM get {key} via {reader} after a put via {writer}: {other:?}"
            )),
        }
    }
    // Whatever the isolated coordinator acknowledged, the majority must see.
    for acked in &findings.acked[..isolated_acked] {
        let reader = majority[acked.key as usize % majority.len()];
        let read = get(&addrs[reader], acked.key, Consistency::Quorum);
        if read.as_ref().ok() != Some(&Some(acked.value.clone())) {
            findings.problems.push(format!(
                "the isolated replica acknowledged put {} = {:?} but the majority reads {read:?}",
                acked.key, acked.value
            ));
        }
    }
    findings.lines.push(format!(
        "replica {isolated} cut off: QUORUM through the other three: {majority_ok}/{} puts then gets through another coordinator worked",
        majority_keys.len()
    ));
}

/// Fault 2 while the history runs: the cluster split 2+2. Each key has
/// two replicas on one side and one on the other, so per the levels QUORUM
/// works through the side with two and is refused on the other, ONE works
/// on both sides, and ALL is refused everywhere.
fn check_split(ring: &Ring, addrs: &[String], net: &Net, findings: &mut Findings) {
    let n = addrs.len();
    let quorum_works = |coordinator: usize, key: u32| {
        ring.replicas_for(key as u8)
            .iter()
            .filter(|&&r| net.same_side(coordinator, r as usize))
            .count()
            >= 2
    };
    let (mut worked, mut refused) = (0, 0);
    let mut quorum_keys = Vec::new();
    for (coordinator, addr) in addrs.iter().enumerate() {
        for quarter in 0..4u32 {
            let key = 64 * quarter + 20 + coordinator as u32;
            quorum_keys.push((coordinator, key));
            let value = format!("split-{key}");
            findings.written.insert(key);
            let expected = quorum_works(coordinator, key);
            let wrote = put(addr, key, &value, Consistency::Quorum);
            let read = get(addr, key, Consistency::Quorum);
            match (expected, wrote, read) {
                (true, Ok(_), Ok(Some(read))) if read == value => {
                    worked += 1;
                    findings.acked.push(Acked {
                        key,
                        value,
                        coordinator,
                    });
                }
                (false, Err(w), Err(r)) if refused_by_coordinator(&w) && refused_by_coordinator(&r) => {
                    refused += 1
                }
                (expected, wrote, read) => findings.problems.push(format!(
                    "split: QUORUM put then get {key} via {coordinator} (two replicas on its side: {expected}): {wrote:?}, {read:?}"
                )),
            }
        }
    }
    findings.lines.push(format!(
        "2+2 split: QUORUM: {worked}/{} put+get pairs on the side with two replicas of the key worked, {refused}/{} on the side with one were refused",
        quorum_keys.len() / 2,
        quorum_keys.len() / 2
    ));
    let (mut one_ok, mut all_refused) = (0, 0);
    for (coordinator, addr) in addrs.iter().enumerate() {
        for quarter in 0..4u32 {
            let key = 64 * quarter + 40 + coordinator as u32;
            findings.written.insert(key);
            let wrote = put(addr, key, &format!("one-{key}"), Consistency::One);
            let read = get(addr, key, Consistency::One);
            match (wrote, read) {
                (Ok(_), Ok(_)) => one_ok += 1,
                (wrote, read) => findings.problems.push(format!(
                    "split: ONE put then get {key} via {coordinator}: {wrote:?}, {read:?}"
                )),
            }
        }
        let key = 64 * coordinator as u32 + 50;
        findings.written.insert(key);
        let wrote = put(addr, key, "all", Consistency::All);
        let read = get(addr, key, Consistency::All);
        match (wrote, read) {
            (Err(w), Err(r)) if refused_by_coordinator(&w) && refused_by_coordinator(&r) => {
                all_refused += 1
            }
            (wrote, read) => findings.problems.push(format!(
                "split: ALL put then get {key} via {coordinator}: {wrote:?}, {read:?}"
            )),
        }
    }
    findings.lines.push(format!(
        "2+2 split: ONE: {one_ok}/{} put+get pairs worked on both sides; ALL: {all_refused}/{n} put+get pairs refused",
        4 * n
    ));
}

/// After a heal: every QUORUM write acknowledged during the fault reads
/// back at QUORUM through every coordinator.
fn check_acked_after_heal(addrs: &[String], findings: &mut Findings) -> usize {
    let mut checked = 0;
    for acked in &findings.acked {
        for (reader, addr) in addrs.iter().enumerate() {
            match get(addr, acked.key, Consistency::Quorum) {
                Ok(Some(read)) if read == acked.value => checked += 1,
                other => findings.problems.push(format!(
                    "after the heal, QUORUM get {} via {reader} (acknowledged {:?} via {}): {other:?}",
                    acked.key, acked.value, acked.coordinator
                )),
            }
        }
    }
    checked
}

/// Records a QUORUM history while the replicas in `cut` are cut off from
/// the others (1 s in, healed 3 s before the history ends), running
/// `checks` during the cut; then judges the history,
/// waits for the views, reads back what was acknowledged and checks that
/// every key written so far converges.
#[allow(clippy::too_many_arguments)]
fn run_fault<F>(
    name: &str,
    keys: &[u32],
    cut: &[usize],
    net: &mut Net,
    config: &Path,
    ring: &Ring,
    addrs: &[String],
    written: &mut BTreeSet<u32>,
    problems: &mut Vec<String>,
    checks: F,
) where
    F: FnOnce(&Net, &mut Findings) + Send,
{
    // Fresh keys for each history: the checker starts every register
    // empty, and the clients' values repeat from one history to the next.
    assert!(
        keys.iter().all(|k| !written.contains(k)),
        "the history's keys must be fresh"
    );
    // The last two keys of each history are compare-and-set registers:
    // written only by cas and read at SERIAL.
    let workload = Workload {
        keys: keys.to_vec(),
        cas_keys: keys[keys.len() - 2..].to_vec(),
        duration: HISTORY_LENGTH,
        ..Workload::new(addrs.to_vec())
    };
    let mut findings = Findings::default();
    let mut settle = Err("not measured".to_string());
    let mut healed_at = Instant::now();
    let started = Instant::now();
    let history = history::record_with_faults(&workload, |done| {
        sleep_until(done, started + Duration::from_secs(1));
        net.cut(cut);
        checks(net, &mut findings);
        // Stay cut for most of the history, then heal while it still runs.
        sleep_until(done, started + HISTORY_LENGTH - Duration::from_secs(3));
        net.heal();
        healed_at = Instant::now();
        settle = wait_for_views(addrs, |a, b| net.same_side(a, b));
    });
    for line in &findings.lines {
        summary(line);
    }
    judge(name, &history, &mut findings.problems);
    match settle {
        Ok(took) => summary(&format!(
            "{name}: healed; every replica saw every other up within {:.1} s",
            took.as_secs_f64()
        )),
        Err(e) => findings
            .problems
            .push(format!("{name}: after the heal, {e}")),
    }
    let checked = check_acked_after_heal(addrs, &mut findings);
    summary(&format!(
        "{name}: after the heal, {} QUORUM writes acknowledged during the fault read back through every coordinator ({checked} reads)",
        findings.acked.len()
    ));
    written.extend(history.ops_by_key.keys());
    written.extend(&findings.written);
    match converge(config, ring, addrs, written, healed_at) {
        Ok(how) => summary(&format!("{name}: converged: {how}")),
        Err(e) => findings.problems.push(format!("{name}: {e}")),
    }
    problems.append(&mut findings.problems);
}

#[test]
#[ignore = "needs root and network namespaces: run scripts/partition_test.sh"]
fn partitions() {
    let Some((config, ring, addrs)) = cluster_from_env("partitions") else {
        return;
    };
    let mut net = Net::from_env(&addrs);
    if let Err(e) = wait_for_views(&addrs, |a, b| net.same_side(a, b)) {
        panic!("the cluster is not whole before the test: {e}");
    }
    let mut written = BTreeSet::new();
    let mut problems = Vec::new();

    let isolated = 1;
    run_fault(
        "replica 1 cut off",
        &[10, 70, 130, 200, 250, 63, 1, 129],
        &[isolated],
        &mut net,
        &config,
        &ring,
        &addrs,
        &mut written,
        &mut problems,
        |_, findings| check_one_cut_off(&ring, &addrs, isolated, findings),
    );
    run_fault(
        "a 2+2 split",
        &[12, 76, 140, 204, 252, 60, 6, 134],
        &[2, 3],
        &mut net,
        &config,
        &ring,
        &addrs,
        &mut written,
        &mut problems,
        |net, findings| {
            match wait_for_views(&addrs, |a, b| net.same_side(a, b)) {
                Ok(took) => findings.lines.push(format!(
                    "2+2 split: every replica saw the far side down within {:.1} s",
                    took.as_secs_f64()
                )),
                Err(e) => findings.problems.push(format!("split: {e}")),
            }
            check_split(&ring, &addrs, net, findings)
        },
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A TCP proxy in front of one replica that holds every chunk travelling
/// toward it for `delay` before passing it on; replies pass at once. The
/// chunks are held in a queue, not slept on one by one, so the link keeps its
/// throughput and only gains latency: what a slow network path looks like,
/// where tc netem is not available.
fn start_delay_proxy(listen: &str, target: String, delay: Duration) {
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("proxy bind {listen}: {e}"));
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let target = target.clone();
            std::thread::spawn(move || relay(inbound, &target, delay));
        }
    });
}

/// Relays one connection through the delaying proxy, until either side
/// closes it.
fn relay(inbound: TcpStream, target: &str, delay: Duration) {
    // Refusing the connection by dropping it is what the replica would see
    // if its peer were down.
    let Ok(outbound) = TcpStream::connect(target) else {
        return;
    };
    // Without this, Nagle's algorithm would add delays of its own.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (Ok(mut from_client), Ok(mut to_client)) = (inbound.try_clone(), inbound.try_clone())
    else {
        return;
    };
    let (Ok(mut to_target), Ok(mut from_target)) = (outbound.try_clone(), outbound.try_clone())
    else {
        return;
    };
    let (queue, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n) = from_client.read(&mut buffer) {
            if n == 0
                || queue
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (at, chunk) in due {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            if to_target.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to_target.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut from_target, &mut to_client);
    let _ = inbound.shutdown(Shutdown::Both);
    let _ = outbound.shutdown(Shutdown::Both);
}

/// Latency percentiles of one level's samples, sorted.
struct Latencies {
    p50: Duration,
    p90: Duration,
    min: Duration,
    max: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Latencies {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Latencies {
        p50: at(0.5),
        p90: at(0.9),
        min: samples[0],
        max: samples[samples.len() - 1],
    }
}

#[test]
#[ignore = "needs root and network namespaces: run scripts/partition_test.sh"]
fn slow_replica() {
    let Some((_, ring, addrs)) = cluster_from_env("slow_replica") else {
        return;
    };
    let proxy = env("RINGKV_PARTITION_PROXY").expect("RINGKV_PARTITION_PROXY is not set");
    let (listen, target) = proxy.split_once('=').expect("LISTEN=TARGET");
    let slow = 3;
    assert_eq!(
        addrs[slow], listen,
        "the cluster file sends replica 3's traffic to the proxy"
    );
    start_delay_proxy(listen, target.to_string(), PROXY_DELAY);
    // The test reaches the slow replica directly: only the other replicas
    // go through the proxy.
    let mut direct = addrs.clone();
    direct[slow] = env("RINGKV_PARTITION_DIRECT_3").expect("RINGKV_PARTITION_DIRECT_3 is not set");
    if let Err(e) = wait_for_views(&direct, |_, _| true) {
        panic!("the cluster is not whole before the test: {e}");
    }

    // Keys the slow replica holds, through coordinators that are not it:
    // ONE and QUORUM can be answered without it, ALL cannot.
    let coordinators: Vec<usize> = (0..addrs.len()).filter(|&id| id != slow).collect();
    let keys: Vec<u32> = [70u32, 130, 200]
        .into_iter()
        .filter(|&k| ring.replicas_for(k as u8).contains(&(slow as u32)))
        .collect();
    assert!(!keys.is_empty());
    let clients: Vec<Client> = coordinators.iter().map(|&c| client(&addrs[c])).collect();
    let mut problems = Vec::new();
    for level in [Consistency::One, Consistency::Quorum, Consistency::All] {
        let mut samples = Vec::new();
        for round in 0..12 {
            for (i, &key) in keys.iter().enumerate() {
                let via = &clients[(round + i) % clients.len()];
                let value = format!("slow-{round}");
                let started = Instant::now();
                let wrote = rt::block_on(via.put(key, &value, level));
                let put_took = started.elapsed();
                let started = Instant::now();
                let read = rt::block_on(via.get(key, level));
                let get_took = started.elapsed();
                if let Err(e) = wrote.as_ref().map(|_| ()).and(read.as_ref().map(|_| ())) {
                    problems.push(format!("{} put then get {key}: {e}", name(level)));
                }
                // The first round opens connections; leave it out.
                if round > 0 {
                    samples.push(put_took);
                    samples.push(get_took);
                }
            }
        }
        let l = percentiles(samples);
        summary(&format!(
            "100 ms in front of replica {slow}: {} through the other coordinators: p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
            name(level),
            ms(l.p50),
            ms(l.p90),
            ms(l.min),
            ms(l.max)
        ));
        let fast = level != Consistency::All;
        if fast && l.p50 >= Duration::from_millis(50) {
            problems.push(format!(
                "{} p50 {:.1} ms is not under 50 ms",
                name(level),
                ms(l.p50)
            ));
        }
        if !fast && l.p50 < PROXY_DELAY {
            problems.push(format!(
                "ALL p50 {:.1} ms does not include the {PROXY_DELAY:?} delay",
                ms(l.p50)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The level as the console names it.
fn name(level: Consistency) -> &'static str {
    level.as_str_name().trim_start_matches("CONSISTENCY_")
}
