//! Starting real clusters for the integration tests: the built `ringkv`
//! binary, one process per replica, on free loopback ports, each with its
//! own data directory and log file. Replicas are stopped with SIGKILL, never
//! politely, because that is the failure the store must survive.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ringkv::client::Client;
use ringkv::ops::rt;
use ringkv::protocol::error::KvError;
use ringkv::protocol::proto::{replica_holding, Consistency, Versioned};

/// Replica flags that leave only reads to repair replicas: no hints kept,
/// no background read repair, no anti-entropy rounds.
pub const ONLY_READS_REPAIR: [&str; 6] = [
    "--repair",
    "hinted-handoff",
    "--max-hints-per-replica",
    "0",
    "--anti-entropy-secs",
    "0",
];

/// How long a cluster may take to start or a view to settle before the test fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// A cluster of replica processes that lives as long as the test.
pub struct Cluster {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub addrs: Vec<String>,
    replicas: Vec<Option<Child>>,
    extra_args: Vec<String>,
    /// Flags for one replica only, on top of `extra_args`, kept across
    /// restarts (a replica whose clock is off stays off).
    replica_args: Vec<Vec<String>>,
    /// The secret of `--secret-file`, if the replicas were given one: the
    /// cluster's own clients authenticate with it.
    pub secret: Option<Vec<u8>>,
}

impl Cluster {
    /// Starts `n` replicas and waits until each sees all the others up.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// Starts `n` replicas with extra `ringkv replica` flags.
    pub fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::launch(n, extra_args);
        cluster.wait_until_all_see_each_other();
        cluster
    }

    /// Starts `n` replicas, replica `id` with `--test-clock-offset-ms MS`
    /// for each `(id, MS)` in `offsets`, and waits until each sees all the
    /// others up.
    pub fn start_with_clock_offsets(n: usize, offsets: &[(usize, i64)]) -> Cluster {
        let mut replica_args = vec![Vec::new(); n];
        for &(id, ms) in offsets {
            replica_args[id] = vec!["--test-clock-offset-ms".to_string(), ms.to_string()];
        }
        let mut cluster = Cluster::launch_each(n, &[], replica_args);
        cluster.wait_until_all_see_each_other();
        cluster
    }

    /// Starts `n` replicas at once and returns without waiting for anything.
    pub fn launch(n: usize, extra_args: &[&str]) -> Cluster {
        Cluster::launch_each(n, extra_args, vec![Vec::new(); n])
    }

    /// `launch`, with flags of its own for each replica.
    pub fn launch_each(n: usize, extra_args: &[&str], replica_args: Vec<Vec<String>>) -> Cluster {
        let dir = unique_dir();
        let addrs = free_ports(n);
        let config = dir.join("cluster.conf");
        let text: String = addrs
            .iter()
            .enumerate()
            .map(|(id, addr)| format!("{id} {addr}\n"))
            .collect();
        fs::write(&config, text).expect("write cluster file");
        let mut cluster = Cluster {
            dir,
            config,
            addrs,
            replicas: (0..n).map(|_| None).collect(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            replica_args,
            secret: extra_args
                .iter()
                .position(|arg| *arg == "--secret-file")
                .and_then(|i| extra_args.get(i + 1))
                .map(|path| ringkv::ops::secret::load(Path::new(path)).expect("the secret file")),
        };
        for id in 0..n {
            cluster.spawn(id);
        }
        cluster
    }

    /// The hello replica `id` says (from its data directory's identity),
    /// for a fake replica in a test that stands in for it once it is killed.
    pub fn hello_of(&self, id: usize) -> ringkv::protocol::proto::Hello {
        let ring = ringkv::cluster::ring::Ring::load(&self.config).expect("cluster file");
        let identity = ringkv::cluster::identity::Identity::read(&self.data_dir(id))
            .expect("identity")
            .expect("replica started once");
        ringkv::protocol::proto::Hello {
            cluster: ring.name().to_string(),
            members_digest: ring.members_digest(),
            replica_id: id as u32,
            incarnation: identity.incarnation,
            state: ringkv::protocol::proto::DataState::Settled as i32,
            ..Default::default()
        }
    }

    /// Waits until replica `id`'s port accepts a TCP connection, and
    /// nothing more: what a user's start script can see.
    pub fn wait_for_port(&self, id: usize) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while std::net::TcpStream::connect(&self.addrs[id]).is_err() {
            assert!(
                Instant::now() < deadline,
                "replica {id} never opened its port"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The replica's data directory.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.join(format!("data-{id}"))
    }

    /// The replica's log file (stderr of every run, appended).
    pub fn log_path(&self, id: usize) -> PathBuf {
        self.dir.join(format!("replica-{id}.log"))
    }

    /// Everything the replica has logged.
    pub fn log(&self, id: usize) -> String {
        fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// Starts replica `id` (again) without waiting for it.
    pub fn spawn(&mut self, id: usize) {
        self.spawn_with(id, &[]);
    }

    /// Starts replica `id` with extra flags on top of the cluster's, and
    /// does not wait for it: for starts that are expected to fail.
    pub fn spawn_with(&mut self, id: usize, more_args: &[&str]) {
        let (config, data) = (self.config.clone(), self.data_dir(id));
        let mut args = self.extra_args.clone();
        args.extend(self.replica_args[id].iter().cloned());
        args.extend(more_args.iter().map(|arg| arg.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn_as(id, &config, &data, &args);
    }

    /// Starts the process of replica `id` with this cluster file, data
    /// directory and flags alone (none of the cluster's own), without
    /// waiting: for a replica started the wrong way on purpose.
    pub fn spawn_as(&mut self, id: usize, config: &Path, data: &Path, args: &[&str]) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("open log");
        let child = Command::new(env!("CARGO_BIN_EXE_ringkv"))
            .arg("replica")
            .arg("--config")
            .arg(config)
            .arg("--id")
            .arg(id.to_string())
            .arg("--data")
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start replica");
        self.replicas[id] = Some(child);
    }

    /// The replica's process id, while it runs.
    pub fn pid(&self, id: usize) -> u32 {
        self.replicas[id].as_ref().expect("replica is running").id()
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the replica's process.
    pub fn signal(&self, id: usize, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid(id).to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} replica {id}");
    }

    /// SIGKILLs the replica and waits for it to be gone.
    pub fn kill(&mut self, id: usize) {
        if let Some(mut child) = self.replicas[id].take() {
            child.kill().expect("SIGKILL replica");
            child.wait().expect("reap replica");
        }
    }

    /// Starts a killed replica again on the same data and port, and waits
    /// until it and every running replica see each other up.
    pub fn restart(&mut self, id: usize) {
        assert!(self.replicas[id].is_none(), "replica {id} is still running");
        self.spawn(id);
        self.wait_until_all_see_each_other();
    }

    /// Whether the replica's process is running (it may have exited on its own).
    pub fn is_running(&mut self, id: usize) -> bool {
        match self.replicas[id].as_mut() {
            Some(child) => child.try_wait().expect("poll replica").is_none(),
            None => false,
        }
    }

    /// Waits for a started replica to exit on its own (a refused start) and
    /// returns whether it exited successfully.
    pub fn wait_for_exit(&mut self, id: usize) -> bool {
        let mut child = self.replicas[id].take().expect("replica was started");
        child.wait().expect("wait for replica").success()
    }

    /// A client whose coordinator is replica `id` (authenticated, if the
    /// cluster requires it).
    pub fn client(&self, id: usize) -> Client {
        Client::new(self.addrs[id].clone()).with_secret(self.secret.clone())
    }

    /// delete through coordinator `id`.
    pub fn delete(&self, id: usize, key: u32, level: Consistency) -> Result<u64, KvError> {
        rt::block_on(self.client(id).delete(key, level))
    }

    /// What replica `id` holds for `key` (asked through coordinator `via`,
    /// without repair): `None` if it did not answer.
    pub fn held(&self, via: usize, id: usize, key: u32) -> Option<Option<Versioned>> {
        self.holdings(via, key)
            .into_iter()
            .find(|(replica, _)| *replica as usize == id)
            .and_then(|(_, held)| held)
    }

    /// Runs `ringkv` with these arguments and returns its output.
    pub fn run_command(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_ringkv"))
            .args(args)
            .output()
            .expect("run ringkv")
    }

    /// put through coordinator `id`.
    pub fn put(
        &self,
        id: usize,
        key: u32,
        value: &str,
        level: Consistency,
    ) -> Result<u64, KvError> {
        rt::block_on(self.client(id).put(key, value, level))
    }

    /// get through coordinator `id`; the value only.
    pub fn get(&self, id: usize, key: u32, level: Consistency) -> Result<Option<String>, KvError> {
        rt::block_on(self.client(id).get(key, level)).map(|found| found.map(|v| v.value))
    }

    /// What each replica of `key` holds locally, asked through coordinator
    /// `via`: (replica id, Some(holding) if it answered).
    pub fn holdings(&self, via: usize, key: u32) -> Vec<(u32, Option<Option<Versioned>>)> {
        let reply = rt::block_on(self.client(via).inspect(key)).expect("inspect");
        reply
            .replicas
            .into_iter()
            .map(|r| {
                let held = match r.outcome {
                    Some(replica_holding::Outcome::Holding(h)) => Some(h.found),
                    _ => None,
                };
                (r.replica_id, held)
            })
            .collect()
    }

    /// Waits until replica `observer` believes replica `subject` is `up` (or not).
    pub fn wait_for_view(&self, observer: usize, subject: usize, up: bool) {
        let client = self.client(observer);
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            if let Ok(status) = rt::block_on(client.status()) {
                if status
                    .peers
                    .iter()
                    .any(|p| p.replica_id as usize == subject && p.up == up)
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "replica {observer} never saw replica {subject} {}; the end of {subject}'s log:\n{}",
                if up { "up" } else { "down" },
                log_tail(&self.log(subject), 8)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running replica answers and sees every other
    /// running replica up.
    pub fn wait_until_all_see_each_other(&mut self) {
        let running: Vec<usize> = (0..self.replicas.len())
            .filter(|&id| self.is_running(id))
            .collect();
        for &observer in &running {
            for &subject in &running {
                if observer != subject {
                    self.wait_for_view(observer, subject, true);
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 0..self.replicas.len() {
            self.kill(id);
        }
        if std::thread::panicking() {
            eprintln!("cluster data and logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The last `lines` lines of a log, for a failure message.
fn log_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A fresh directory under the system temp dir, unique to this test.
pub fn unique_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringkv-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// `n` loopback addresses that were free a moment ago. All are held open
/// together while choosing, so the same port is never handed out twice.
///
/// They are taken from below the kernel's ephemeral range: a port the
/// kernel hands out for `bind(0)` is also one it may give any outgoing
/// connection as its source port, and with clusters of other tests
/// connecting all the time, one of them could take the port between this
/// choice and the replica's own bind, and the replica would fail to start.
pub fn free_ports(n: usize) -> Vec<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOWEST);
    if span < 1_000 {
        // No room below the ephemeral range: the kernel's choice it is.
        return (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
            .collect::<Vec<_>>()
            .iter()
            .map(|l| l.local_addr().expect("local addr").to_string())
            .collect();
    }
    // Test processes run side by side (one per test binary, or per test
    // under nextest): each starts at its own place in the range.
    let start = std::process::id().wrapping_mul(7_919) % span;
    let mut held = Vec::with_capacity(n);
    for _ in 0..span {
        if held.len() == n {
            break;
        }
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOWEST + (start + step) % span;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port as u16)) {
            held.push(listener);
        }
    }
    assert_eq!(held.len(), n, "no {n} free ports below {ephemeral_low}");
    held.iter()
        .map(|l| l.local_addr().expect("local addr").to_string())
        .collect()
}

/// Runs the console against coordinator `id` with `input` on stdin and
/// returns its stdout lines.
pub fn console(cluster: &Cluster, id: usize, input: &str) -> Vec<String> {
    console_with(&cluster.config, id, input, &[])
}

/// Runs the console with extra flags.
pub fn console_with(config: &Path, id: usize, input: &str, extra: &[&str]) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringkv"));
    command
        .arg("client")
        .arg("--config")
        .arg(config)
        .arg("--coordinator")
        .arg(id.to_string())
        .args(extra);
    let output = run_with_stdin(&mut command, input);
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs a command with `input` on its stdin and collects what it printed.
pub fn run_with_stdin(command: &mut Command, input: impl AsRef<[u8]>) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start command");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_ref())
        .expect("write command input");
    child.wait_with_output().expect("command output")
}

/// Judging recorded histories: one linearizable register per key.
pub mod linearizability;

/// Recording concurrent client histories against a running cluster.
pub mod history;

/// A terminal screen's model, to read what a program drew on a pty.
pub mod screen;
