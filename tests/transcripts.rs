//! Console transcripts: each file in `tests/transcripts/` is one scenario,
//! run against a fresh cluster of four real replica processes, with the
//! lines typed and the lines expected side by side.
//!
//! # The format
//!
//! ```text
//! # A comment. Comments and blank lines are kept as they are.
//! > put 10 hello
//! OK
//! > get 10
//! hello
//! ! kill 2
//! > where 10
//! key 10: replica 0: "hello" ts=<ts1> coordinator=0 | replica 1: ... | replica 2: DOWN (...)
//! ```
//!
//! - `> TEXT` types TEXT (exactly what follows `> `) into the open console;
//!   a lone `>` types an empty line.
//! - `! DIRECTIVE` is a step outside the console (below).
//! - The lines after a step, up to the next step, comment or blank line,
//!   are what that step must print, all of it and nothing else. A step
//!   followed directly by a comment, a blank line or another step must
//!   print nothing. An output line that is empty, or starts with `>`, `!`,
//!   `#` or `\`, is written with a `\` in front (an empty answer is a lone
//!   `\`).
//!
//! Directives:
//!
//! - `! start FLAG...` (only as the first step): start the cluster with
//!   these `ringkv replica` flags. Without it the cluster starts with none.
//! - `! coordinator N [FLAG...]`: later typed lines go to a console on
//!   replica N. Without flags, that is the console already open on N if it
//!   still runs; with flags (`--consistency ONE`), a new console started
//!   with them. Typed lines go to replica 0 until the first of these.
//!   Consoles on different replicas stay open side by side, each with its
//!   own consistency level.
//! - `! raw "TEXT"`: a new console on the current coordinator gets exactly
//!   TEXT on its standard input (`\n`, `\t`, `\"`, `\\` and `\xHH`
//!   escapes), then end of input; for input that typed lines cannot show,
//!   such as trailing blanks, a last line without a newline, bytes that
//!   are not UTF-8, or nothing at all.
//! - `! kill N`: SIGKILL replica N, then wait until every running replica
//!   sees it down.
//! - `! restart N`: start replica N again on its data, then wait until
//!   every running replica sees every other up.
//! - `! dump wal N`, `! dump hints N`, `! dump data N`: run `ringkv dump`
//!   on replica N's `wal` or `hints` directory, or its whole data directory.
//! - `! status`: run `ringkv status`; when it does not exit 0 (a replica
//!   did not answer), its exit status is a last line (`exit status: 1`).
//!
//! Every console must exit successfully once its input ends (or on
//! `quit`); a typed line after `quit` goes nowhere and prints nothing.
//!
//! # Normalisation
//!
//! Output that changes from run to run is replaced before comparing:
//! a 16-digit number (a timestamp in microseconds) by `<tsN>`, numbered in
//! order of first appearance in the file, so that the same timestamp in
//! two places reads the same; a UTC time (`2026-12-02T12:39:30.123456Z`)
//! by `<utc>`; replica N's address by `<addrN>`; the cluster's temporary
//! directory by `<dir>`; the 16 hexadecimal digits of an `incarnation=`,
//! `members_digest=` or `replaces=` field or after `incarnation ` by `<idN>`, numbered like
//! timestamps; and the 8 after `ringkv-` (the default cluster name, from
//! the members' ports) by `<digest>`; in `status`, the clock offsets a
//! replica measured by `clock offsets <offsets>`. So a typed 16-digit number reads
//! `<tsN>` too.
//!
//! # How typed lines are matched to answers
//!
//! After each typed line the runner types a line the console does not know
//! (`transcript-mark-N`), and takes everything before the console's error
//! naming it as the answer to the typed line. So a command that answers
//! several lines (`help`) or none (a blank line) needs no special case.
//!
//! # Blessing
//!
//! On a mismatch the test fails with a unified diff, expected (`-`) against
//! actual (`+`). `RINGKV_BLESS=1 cargo test --test transcripts` instead
//! rewrites each file with the actual output (comments, blank lines and
//! steps kept), so that a reviewer reads the change in `git diff`.
//!
//! Each file has its own test below, named after it, so that
//! `cargo test --test transcripts where_` runs one scenario; a test checks
//! that no file is left without one.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::Cluster;

/// How long one step may take before the transcript fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The replicas of every transcript's cluster.
const REPLICAS: usize = 4;

macro_rules! transcripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_transcript(stringify!($name));
            }
        )*

        /// Every scenario file has a test above, and every test a file.
        #[test]
        fn every_transcript_file_has_a_test() {
            let mut named = vec![$(stringify!($name).to_string()),*];
            named.sort();
            assert_eq!(scenario_names(), named, "tests/transcripts/*.txt and the tests in tests/transcripts.rs differ");
        }
    };
}

transcripts!(
    compare_and_set,
    console_commands,
    console_errors,
    consistency_levels,
    quit_and_input_edges,
    where_across_kill_and_restart,
    unavailable_with_replicas_down,
    dump_of_a_small_log,
    value_limit,
);

/// The directory of the scenario files.
fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts")
}

/// The names of the scenario files, without `.txt`, sorted.
fn scenario_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(scenario_dir())
        .expect("list tests/transcripts")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".txt").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Runs one scenario file and compares (or, blessing, rewrites) it.
fn run_transcript(name: &str) {
    let path = scenario_dir().join(format!("{name}.txt"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut items = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut run = Run::new(&items);
    for item in &mut items {
        if let Item::Step { line, actual, .. } = item {
            *actual = run.step(line);
        }
    }
    run.finish();
    let rendered = render(&items);
    if rendered == text {
        return;
    }
    if std::env::var_os("RINGKV_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered)
            .unwrap_or_else(|e| panic!("bless {}: {e}", path.display()));
        eprintln!("blessed {}", path.display());
        return;
    }
    panic!(
        "transcript {} differs (- expected, + actual); RINGKV_BLESS=1 rewrites it:\n{}",
        path.display(),
        unified_diff(&text, &rendered)
    );
}

/// One line of a scenario file, or one step with its expected output.
enum Item {
    /// A comment or a blank line, kept as it is.
    Verbatim(String),
    /// A typed line or a directive, what the file expects it to print, and
    /// (once run) what it printed.
    Step {
        line: String,
        expected: Vec<String>,
        actual: Vec<String>,
    },
}

fn parse(text: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            items.push(Item::Verbatim(line.to_string()));
        } else if line.starts_with('>') || line.starts_with('!') {
            items.push(Item::Step {
                line: line.to_string(),
                expected: Vec::new(),
                actual: Vec::new(),
            });
        } else {
            let output = line.strip_prefix('\\').unwrap_or(line).to_string();
            match items.last_mut() {
                Some(Item::Step { expected, .. }) => expected.push(output),
                _ => {
                    return Err(format!(
                        "line {}: an output line must follow a step (`> ...` or `! ...`): {line:?}",
                        number + 1
                    ))
                }
            }
        }
    }
    Ok(items)
}

/// The file's text with each step's actual output in place of the expected.
fn render(items: &[Item]) -> String {
    let mut text = String::new();
    for item in items {
        match item {
            Item::Verbatim(line) => text.push_str(line),
            Item::Step { line, actual, .. } => {
                text.push_str(line);
                for output in actual {
                    text.push('\n');
                    if output.is_empty() || output.starts_with(['>', '!', '#', '\\']) {
                        text.push('\\');
                    }
                    text.push_str(output);
                }
            }
        }
        text.push('\n');
    }
    text
}

/// A scenario being run: its cluster, its open consoles, its normaliser.
struct Run {
    /// The replica flags of `! start`, until the cluster is started.
    start_flags: Vec<String>,
    cluster: Option<Cluster>,
    /// Open consoles, by coordinator.
    consoles: HashMap<usize, Console>,
    coordinator: usize,
    marks: u64,
    normaliser: Normaliser,
}

impl Run {
    fn new(items: &[Item]) -> Run {
        let first_step = items.iter().find_map(|item| match item {
            Item::Step { line, .. } => Some(line.as_str()),
            Item::Verbatim(_) => None,
        });
        let start_flags = first_step
            .and_then(|line| line.strip_prefix("! start"))
            .map(|flags| flags.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        Run {
            start_flags,
            cluster: None,
            consoles: HashMap::new(),
            coordinator: 0,
            marks: 0,
            normaliser: Normaliser::default(),
        }
    }

    /// The cluster, started on first use.
    fn cluster(&mut self) -> &mut Cluster {
        let flags = &self.start_flags;
        self.cluster.get_or_insert_with(|| {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            Cluster::start_with(REPLICAS, &flags)
        })
    }

    /// Carries out one step and returns what it printed, normalised.
    fn step(&mut self, line: &str) -> Vec<String> {
        let raw = if let Some(typed) = line.strip_prefix('>') {
            let typed = typed.strip_prefix(' ').unwrap_or(typed);
            self.type_line(typed)
        } else {
            let directive = line.strip_prefix('!').unwrap_or(line).trim();
            self.directive(directive)
        };
        let cluster = self.cluster();
        let (dir, addrs) = (cluster.dir.clone(), cluster.addrs.clone());
        raw.iter()
            .map(|out| self.normaliser.normalise(out, &dir, &addrs))
            .collect()
    }

    fn type_line(&mut self, typed: &str) -> Vec<String> {
        self.marks += 1;
        let mark = format!("transcript-mark-{}", self.marks);
        let id = self.coordinator;
        if !self.consoles.contains_key(&id) {
            let console = Console::open(self.cluster(), id, &[]);
            self.consoles.insert(id, console);
        }
        let console = self.consoles.get_mut(&id).expect("opened above");
        console.ask(typed, &mark)
    }

    fn directive(&mut self, directive: &str) -> Vec<String> {
        let words: Vec<&str> = directive.split_whitespace().collect();
        let replica = |word: Option<&&str>| -> usize {
            word.and_then(|w| w.parse().ok())
                .filter(|&id| id < REPLICAS)
                .unwrap_or_else(|| panic!("`! {directive}`: which replica (0-{})?", REPLICAS - 1))
        };
        match words.as_slice() {
            ["start", ..] => {
                assert!(self.cluster.is_none(), "`! start` must be the first step");
                self.cluster();
                Vec::new()
            }
            ["coordinator", id, flags @ ..] => {
                let id = replica(Some(id));
                self.coordinator = id;
                let still_running = self.consoles.get_mut(&id).is_some_and(Console::is_running);
                if !flags.is_empty() || !still_running {
                    if let Some(old) = self.consoles.remove(&id) {
                        old.close();
                    }
                    let console = Console::open(self.cluster(), id, flags);
                    self.consoles.insert(id, console);
                }
                Vec::new()
            }
            ["raw", ..] => {
                let quoted = directive["raw".len()..].trim();
                let input = unescape(quoted)
                    .unwrap_or_else(|| panic!("`! {directive}`: give one \"quoted\" string"));
                let id = self.coordinator;
                let config = self.cluster().config.clone();
                let output = common::run_with_stdin(
                    Command::new(env!("CARGO_BIN_EXE_ringkv"))
                        .arg("client")
                        .arg("--config")
                        .arg(config)
                        .arg("--coordinator")
                        .arg(id.to_string()),
                    &input,
                );
                assert!(
                    output.status.success(),
                    "`! {directive}`: the console exited with {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
                lines_of(&output.stdout)
            }
            ["kill", id] => {
                let id = replica(Some(id));
                let cluster = self.cluster();
                cluster.kill(id);
                let running: Vec<usize> =
                    (0..REPLICAS).filter(|&o| cluster.is_running(o)).collect();
                for observer in running {
                    cluster.wait_for_view(observer, id, false);
                }
                Vec::new()
            }
            ["restart", id] => {
                let id = replica(Some(id));
                self.cluster().restart(id);
                Vec::new()
            }
            ["dump", what, id] => {
                let id = replica(Some(id));
                let data = self.cluster().data_dir(id);
                let path = match *what {
                    "wal" => data.join("wal"),
                    "hints" => data.join("hints"),
                    "data" => data,
                    _ => panic!("`! {directive}`: dump wal, hints or data"),
                };
                let output = self
                    .cluster()
                    .run_command(&["dump", path.to_str().expect("utf-8 path")]);
                assert!(
                    output.status.success(),
                    "`! {directive}` exited with {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
                lines_of(&output.stdout)
            }
            ["status"] => {
                let config = self.cluster().config.clone();
                let output = self.cluster().run_command(&[
                    "status",
                    "--config",
                    config.to_str().expect("utf-8 path"),
                ]);
                let mut out = lines_of(&output.stdout);
                if !output.status.success() {
                    out.push(format!("{}", output.status));
                }
                out
            }
            _ => panic!("unknown directive `! {directive}`"),
        }
    }

    /// Closes every console, each of which must exit successfully.
    fn finish(&mut self) {
        for (_, console) in self.consoles.drain() {
            console.close();
        }
    }
}

/// A console process kept open across steps.
struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines of its standard output, read by a thread; closed at its end.
    lines: Receiver<String>,
    /// Set once its output ended (after `quit`, say).
    ended: bool,
    coordinator: usize,
}

impl Console {
    fn open(cluster: &Cluster, id: usize, flags: &[&str]) -> Console {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringkv"))
            .arg("client")
            .arg("--config")
            .arg(&cluster.config)
            .arg("--coordinator")
            .arg(id.to_string())
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the console");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Console {
            stdin: child.stdin.take(),
            child,
            lines,
            ended: false,
            coordinator: id,
        }
    }

    /// Types `typed` and then `mark`, and returns what came before the
    /// console's answer to the mark (or before its end).
    fn ask(&mut self, typed: &str, mark: &str) -> Vec<String> {
        if self.ended {
            return Vec::new();
        }
        if let Some(stdin) = self.stdin.as_mut() {
            // The console may have left already (`quit`): then nothing
            // reads these lines, and the write fails; its output says so.
            let _ = stdin
                .write_all(format!("{typed}\n{mark}\n").as_bytes())
                .and_then(|()| stdin.flush());
        }
        let mut answer = Vec::new();
        loop {
            match self.lines.recv_timeout(STEP_TIMEOUT) {
                Ok(line) if line.contains(&format!("'{mark}'")) => return answer,
                Ok(line) => answer.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    return answer;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the console on replica {} printed {answer:?} after {typed:?} and then \
                     nothing for {STEP_TIMEOUT:?}; the runner waits for its error about \
                     the unknown command {mark:?}",
                    self.coordinator
                ),
            }
        }
    }

    fn is_running(&mut self) -> bool {
        !self.ended && self.child.try_wait().expect("poll the console").is_none()
    }

    /// Ends its input and checks that it exits successfully.
    fn close(mut self) {
        drop(self.stdin.take());
        let output = self.child.wait_with_output().expect("wait for the console");
        assert!(
            output.status.success(),
            "the console on replica {} exited with {}: {}",
            self.coordinator,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn lines_of(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The bytes of one `"quoted"` string with `\n`, `\t`, `\"`, `\\` and
/// `\xHH` escapes.
fn unescape(quoted: &str) -> Option<Vec<u8>> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut bytes = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut utf8 = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        }
        bytes.push(match chars.next()? {
            'n' => b'\n',
            't' => b'\t',
            '"' => b'"',
            '\\' => b'\\',
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                if hex.len() != 2 {
                    return None;
                }
                u8::from_str_radix(&hex, 16).ok()?
            }
            _ => return None,
        });
    }
    Some(bytes)
}

/// The fields whose 16 hexadecimal digits are an id that depends on the
/// run: the members digest hashes the replicas' ports.
const ID_FIELDS: [&str; 4] = [
    "incarnation=",
    "incarnation ",
    "members_digest=",
    "replaces=",
];

/// What `status` says before the clock offsets its replica measured, which
/// change from ping to ping.
const CLOCK_OFFSETS: &str = "clock offsets ";

/// Replaces what changes from run to run with stable placeholders.
#[derive(Default)]
struct Normaliser {
    timestamps: HashMap<String, usize>,
    ids: HashMap<String, usize>,
}

impl Normaliser {
    fn normalise(&mut self, line: &str, dir: &Path, addrs: &[String]) -> String {
        let mut line = line.replace(&dir.display().to_string(), "<dir>");
        if let Some(start) = line.find(CLOCK_OFFSETS) {
            let from = start + CLOCK_OFFSETS.len();
            let to = line[from..].find(", ").map_or(line.len(), |at| from + at);
            line.replace_range(from..to, "<offsets>");
        }
        for (id, addr) in addrs.iter().enumerate() {
            line = line.replace(addr.as_str(), &format!("<addr{id}>"));
        }
        let mut out = String::new();
        let mut rest = line.as_str();
        while let Some(c) = rest.chars().next() {
            let word_len = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let word = &rest[..word_len];
            let after_word = out
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric());
            if !after_word
                && word.len() == 16
                && word.chars().all(|c| c.is_ascii_digit())
                && !ID_FIELDS.iter().any(|field| out.ends_with(field))
            {
                let n = numbered(&mut self.timestamps, word);
                let _ = write!(out, "<ts{n}>");
                rest = &rest[16..];
            } else if word.len() == 16
                && word.chars().all(|c| c.is_ascii_hexdigit())
                && ID_FIELDS.iter().any(|field| out.ends_with(field))
            {
                let n = numbered(&mut self.ids, word);
                let _ = write!(out, "<id{n}>");
                rest = &rest[16..];
            } else if word.len() == 8
                && word.chars().all(|c| c.is_ascii_hexdigit())
                && out.ends_with("ringkv-")
            {
                out.push_str("<digest>");
                rest = &rest[8..];
            } else if let Some(len) = utc_time_len(rest).filter(|_| !after_word) {
                out.push_str("<utc>");
                rest = &rest[len..];
            } else if word_len > 0 {
                out.push_str(word);
                rest = &rest[word_len..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }
}

/// The number of `key` among the values seen so far, from 1 in order of
/// first appearance.
fn numbered(seen: &mut HashMap<String, usize>, key: &str) -> usize {
    let next = seen.len() + 1;
    *seen.entry(key.to_string()).or_insert(next)
}

/// The length of a UTC time (`2026-12-02T12:39:30.123456Z`, any number of
/// fraction digits) at the start of `text`, if there is one.
fn utc_time_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if bytes.len() < shape.len() {
        return None;
    }
    for (&b, &s) in bytes.iter().zip(shape) {
        let fits = if s == b'd' {
            b.is_ascii_digit()
        } else {
            b == s
        };
        if !fits {
            return None;
        }
    }
    let mut len = shape.len();
    if bytes.get(len) == Some(&b'.') {
        len += 1;
        while bytes.get(len).is_some_and(u8::is_ascii_digit) {
            len += 1;
        }
    }
    if bytes.get(len) == Some(&b'Z') {
        len += 1;
    }
    Some(len)
}

/// A unified diff of two texts, three lines of context around each change.
fn unified_diff(expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    // The longest common subsequence, by suffix: lcs[i][j] is its length
    // for old[i..] and new[j..].
    let mut lcs = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (tag, old line number, new line number, text).
    let mut script = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            script.push((' ', i, j, old[i]));
            i += 1;
            j += 1;
        } else if i < old.len() && (j == new.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            script.push(('-', i, j, old[i]));
            i += 1;
        } else {
            script.push(('+', i, j, new[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..script.len()).filter(|&k| script[k].0 != ' ').collect();
    let mut diff = String::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(script.len());
        let hunk = &script[start..end];
        let old_count = hunk.iter().filter(|e| e.0 != '+').count();
        let new_count = hunk.iter().filter(|e| e.0 != '-').count();
        let _ = writeln!(
            diff,
            "@@ -{},{old_count} +{},{new_count} @@",
            hunk[0].1 + 1,
            hunk[0].2 + 1
        );
        for (tag, _, _, text) in hunk {
            let _ = writeln!(diff, "{tag}{text}");
        }
    }
    diff
}

/// The runner's own pieces, without a cluster.
mod runner {
    use super::*;

    #[test]
    fn a_file_renders_back_as_it_was_read() {
        let text = "# comment\n\n> put 1 a\nOK\n> get 17\n\\\n> get 2\n\\# hash\n! kill 2\n";
        let mut items = parse(text).expect("parses");
        for item in &mut items {
            if let Item::Step {
                expected, actual, ..
            } = item
            {
                *actual = expected.clone();
            }
        }
        assert_eq!(render(&items), text);
        assert!(parse("OK\n").is_err(), "output before any step");
    }

    #[test]
    fn run_dependent_text_is_normalised_and_equal_values_read_the_same() {
        let mut normaliser = Normaliser::default();
        let dir = Path::new("/tmp/ringkv-test-1-2");
        let addrs = ["127.0.0.1:10001".to_string(), "127.0.0.1:10002".to_string()];
        assert_eq!(
            normaliser.normalise(
                "/tmp/ringkv-test-1-2/data-1 127.0.0.1:10002 ts=1764678000123456 \
                 (2025-12-02T12:20:00.123456Z) ts=1764678000999999 ts=1764678000123456",
                dir,
                &addrs
            ),
            "<dir>/data-1 <addr1> ts=<ts1> (<utc>) ts=<ts2> ts=<ts1>"
        );
        assert_eq!(
            normaliser.normalise(
                "cluster=\"ringkv-0a1b2c3d\" members_digest=0123456789abcdef incarnation 1111111111111111, clock offsets 1:+3ms 2:-1ms, settled",
                dir,
                &addrs
            ),
            "cluster=\"ringkv-<digest>\" members_digest=<id1> incarnation <id2>, clock offsets <offsets>, settled"
        );
        // Not a timestamp: too short, too long, or part of a word.
        assert_eq!(
            normaliser.normalise(
                "123456789012345 12345678901234567 x1234567890123456",
                dir,
                &addrs
            ),
            "123456789012345 12345678901234567 x1234567890123456"
        );
    }

    #[test]
    fn raw_input_takes_escapes_and_refuses_what_it_does_not_know() {
        assert_eq!(
            unescape(r#""a\n\t\"b\"\\""#).as_deref(),
            Some(&b"a\n\t\"b\"\\"[..])
        );
        assert_eq!(unescape(r#""""#).as_deref(), Some(&b""[..]));
        assert_eq!(
            unescape(r#""\xff\x0A""#).as_deref(),
            Some(&[0xff, b'\n'][..])
        );
        assert_eq!(unescape(r#""\xf""#), None);
        assert_eq!(unescape(r#""\xzz""#), None);
        assert_eq!(unescape(r#""\q""#), None);
        assert_eq!(unescape("no quotes"), None);
    }

    #[test]
    fn the_diff_shows_what_was_expected_and_what_came() {
        let diff = unified_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(diff, "@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n");
    }
}
