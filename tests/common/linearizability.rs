//! A linearizability checker for histories of one register per key, so the
//! tests can judge what many concurrent clients saw instead of a handful of
//! hand-picked outcomes.
//!
//! Wing & Gong's search, with Lowe's memoization: the history becomes a list
//! of call and return events in time order; the search linearizes any op
//! whose call comes before the first pending return, and backtracks when a
//! return is reached whose op could not be placed. A configuration (set of
//! linearized ops, register state) that was already explored is never
//! explored again, which keeps realistic histories close to linear time.
//!
//! An indeterminate put or delete (`ret == None`) may take effect at any
//! point after its call, or never: its return is placed after every other
//! event, and the search succeeds as soon as every determinate op is placed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// What one client operation on the register did, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Wrote a value.
    Put(String),
    /// Removed the value: later reads find nothing.
    Delete,
    /// Read; `None` means the key was absent.
    Get(Option<String>),
    /// A compare-and-set that applied (or may have, if it never answered):
    /// the register held the first (None: nothing), and now holds the
    /// second. A cas that did not apply read the current value: a `Get`.
    Cas(Option<String>, String),
}

/// One operation of a history: who ran it, when, and with what outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The client that ran it; one client's ops never overlap.
    pub client: usize,
    /// When it was sent, in microseconds since the history's origin.
    pub call: u64,
    /// When its answer arrived; `None` if it never came (a put or delete
    /// that may or may not have taken effect).
    pub ret: Option<u64>,
    /// What it did.
    pub kind: OpKind,
    /// The version's stamp (timestamp, coordinator) as the store reported
    /// it, where it did: the stamp an acknowledged put or delete was
    /// given, or that of the version a get returned. Never used by the
    /// check; shown in its explanation, where one value read with two
    /// stamps, or with another stamp than its put was given, says which
    /// versions the replicas held.
    pub stamp: Option<(u64, u32)>,
}

/// Checks every key on its own (linearizability is compositional), and
/// returns the explanation of every key that has no linearization.
pub fn check_history(ops_by_key: &BTreeMap<u32, Vec<Op>>) -> Result<(), String> {
    let failures: Vec<String> = ops_by_key
        .iter()
        .filter_map(|(key, ops)| check_register(ops).err().map(|e| format!("key {key}: {e}")))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Register states as small integers: 0 is absent, i + 1 is value i.
type State = u32;

/// One end of an op's interval in the event list.
struct Event {
    op: usize,
    is_call: bool,
}

/// Checks that one register's history has a linearization; the error names
/// the op the search could not get past and prints the ops around it.
pub fn check_register(ops: &[Op]) -> Result<(), String> {
    if let Some(op) = ops.iter().find(|op| op.ret.is_some_and(|r| r < op.call)) {
        return Err(format!("op returns before it is called: {}", describe(op)));
    }
    // Every value a get returned; an indeterminate write of anything else
    // can always be placed at the very end, so it constrains nothing.
    let read: HashSet<Option<&str>> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Get(v) => Some(v.as_deref()),
            _ => None,
        })
        .collect();
    let mut kept: Vec<usize> = (0..ops.len())
        .filter(|&i| match (&ops[i].kind, ops[i].ret) {
            (_, Some(_)) => true,
            // A get that never answered tells nothing.
            (OpKind::Get(_), None) => false,
            (OpKind::Put(v) | OpKind::Cas(_, v), None) => read.contains(&Some(v.as_str())),
            (OpKind::Delete, None) => read.contains(&None),
        })
        .collect();
    kept.sort_by_key(|&i| ops[i].call);
    let mut values: HashMap<&str, State> = HashMap::new();
    fn encode<'a>(v: &'a str, values: &mut HashMap<&'a str, State>) -> State {
        let next = values.len() as State + 1;
        *values.entry(v).or_insert(next)
    }
    // (state a get requires or None for a write, state the op leaves or None for a get)
    let steps: Vec<(Option<State>, Option<State>)> = kept
        .iter()
        .map(|&i| match &ops[i].kind {
            OpKind::Put(v) => (None, Some(encode(v, &mut values))),
            OpKind::Delete => (None, Some(0)),
            OpKind::Get(v) => (
                Some(v.as_deref().map_or(0, |v| encode(v, &mut values))),
                None,
            ),
            OpKind::Cas(old, new) => (
                Some(old.as_deref().map_or(0, |v| encode(v, &mut values))),
                Some(encode(new, &mut values)),
            ),
        })
        .collect();

    // Events in time order; at equal times calls come first, so ops that
    // touch at a microsecond count as concurrent (the lenient reading).
    let mut events: Vec<Event> = Vec::with_capacity(2 * kept.len());
    for k in 0..kept.len() {
        events.push(Event {
            op: k,
            is_call: true,
        });
        events.push(Event {
            op: k,
            is_call: false,
        });
    }
    let time = |e: &Event| {
        let op = &ops[kept[e.op]];
        if e.is_call {
            (op.call, 0)
        } else {
            (op.ret.unwrap_or(u64::MAX), 1)
        }
    };
    events.sort_by_key(|e| time(e));
    // A doubly linked list over the events: node 0 is the head, node
    // events.len() + 1 the tail, event j is node j + 1.
    let tail = events.len() + 1;
    let mut next: Vec<usize> = (1..=tail).chain([tail]).collect();
    let mut prev: Vec<usize> = [0].into_iter().chain(0..=events.len()).collect();
    let mut return_node = vec![0; kept.len()];
    for (j, e) in events.iter().enumerate() {
        if !e.is_call {
            return_node[e.op] = j + 1;
        }
    }
    let unlink = |n: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        next[prev[n]] = next[n];
        prev[next[n]] = prev[n];
    };
    let relink = |n: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        next[prev[n]] = n;
        prev[next[n]] = n;
    };

    let mut pending_determinate = kept.iter().filter(|&&i| ops[i].ret.is_some()).count();
    let mut linearized = OpSet::new(kept.len());
    let mut seen: HashSet<(usize, Vec<u64>, State)> = HashSet::new();
    // (call node of a linearized op, state before it)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state: State = 0;
    // The deepest dead end: (ops placed, state, op that could not be placed, last placed ops).
    let mut deepest: Option<(usize, State, usize, Vec<usize>)> = None;
    let mut node = next[0];
    while pending_determinate > 0 {
        if node == tail {
            return Err("internal: ran off the event list".to_string());
        }
        let event = &events[node - 1];
        let k = event.op;
        if event.is_call {
            let (needs, leaves) = steps[k];
            if needs.is_none_or(|s| s == state) {
                let after = leaves.unwrap_or(state);
                linearized.insert(k);
                let (full, rest) = linearized.memo_key();
                if seen.insert((full, rest.to_vec(), after)) {
                    stack.push((node, state));
                    state = after;
                    unlink(node, &mut next, &mut prev);
                    unlink(return_node[k], &mut next, &mut prev);
                    if ops[kept[k]].ret.is_some() {
                        pending_determinate -= 1;
                    }
                    node = next[0];
                    continue;
                }
                linearized.remove(k);
            }
            node = next[node];
        } else {
            // The first pending return: its op cannot be placed here.
            if deepest.as_ref().is_none_or(|d| stack.len() > d.0) {
                let tail_ops = stack[stack.len().saturating_sub(8)..]
                    .iter()
                    .map(|&(n, _)| kept[events[n - 1].op])
                    .collect();
                deepest = Some((stack.len(), state, kept[k], tail_ops));
            }
            let Some((call, before)) = stack.pop() else {
                break;
            };
            let k = events[call - 1].op;
            state = before;
            linearized.remove(k);
            relink(return_node[k], &mut next, &mut prev);
            relink(call, &mut next, &mut prev);
            if ops[kept[k]].ret.is_some() {
                pending_determinate += 1;
            }
            node = next[call];
        }
    }
    if pending_determinate == 0 {
        return Ok(());
    }
    let (placed, state, stuck, last) =
        deepest.ok_or_else(|| "internal: failed without a dead end".to_string())?;
    let decode: HashMap<State, &str> = values.iter().map(|(v, s)| (*s, *v)).collect();
    let held = decode
        .get(&state)
        .map_or("nothing".to_string(), |v| format!("{v:?}"));
    Err(report(ops, placed, &held, stuck, &last))
}

/// The set of linearized ops as a bitset that the memo can store compactly.
/// Ops are numbered in call order and the search only places ops called
/// before the first pending return, so the set is a run of full words and a
/// few words after it, even in a history of tens of thousands of ops (whole
/// bitsets would take hundreds of megabytes per key, and time to hash).
struct OpSet {
    words: Vec<u64>,
    /// No word below this one has a zero bit.
    full: usize,
    /// No word above this one has a set bit.
    high: usize,
}

impl OpSet {
    fn new(ops: usize) -> OpSet {
        let words = vec![0; ops.div_ceil(64)];
        OpSet {
            words,
            full: 0,
            high: 0,
        }
    }

    fn insert(&mut self, k: usize) {
        self.words[k / 64] |= 1 << (k % 64);
        self.high = self.high.max(k / 64);
    }

    fn remove(&mut self, k: usize) {
        self.words[k / 64] &= !(1 << (k % 64));
        self.full = self.full.min(k / 64);
    }

    /// How many leading words are full, and the words from there to the
    /// last non-zero one: exactly the set, in a few words.
    fn memo_key(&mut self) -> (usize, &[u64]) {
        while self.words.get(self.full) == Some(&u64::MAX) {
            self.full += 1;
        }
        while self.high > self.full && self.words[self.high] == 0 {
            self.high -= 1;
        }
        let mut end = (self.high + 1).min(self.words.len()).max(self.full);
        if end > self.full && self.words[end - 1] == 0 {
            end -= 1; // only the word at `full` can be zero here
        }
        (self.full, &self.words[self.full..end])
    }
}

/// The explanation of a failed check: the stuck op, the best partial
/// linearization's end, and the ops around the stuck one by call time.
fn report(ops: &[Op], placed: usize, held: &str, stuck: usize, last: &[usize]) -> String {
    let op = &ops[stuck];
    let mut out = format!(
        "not linearizable ({} ops): no order explains {}\n  longest explained prefix: {placed} ops, \
         after which the register held {held}; it ended with:\n",
        ops.len(),
        describe(op)
    );
    for &i in last {
        let _ = writeln!(out, "    {}", describe(&ops[i]));
    }
    if let OpKind::Get(Some(v)) = &op.kind {
        match ops.iter().find(|w| w.kind == OpKind::Put(v.clone())) {
            Some(w) => {
                let _ = writeln!(out, "  the value read was written by {}", describe(w));
            }
            None => out.push_str("  no put in the history wrote the value read\n"),
        }
        // The stamps that value was seen with: more than one means the
        // store wrote the value under several stamps.
        let mut seen: Vec<(u64, u32)> = ops
            .iter()
            .filter(|o| o.kind == OpKind::Get(Some(v.clone())) || o.kind == OpKind::Put(v.clone()))
            .filter_map(|o| o.stamp)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() > 1 {
            let _ = writeln!(
                out,
                "  that value was read or acknowledged with {} different stamps: {seen:?}",
                seen.len()
            );
        }
    }
    // The ops overlapping the stuck one, and a few that came just before.
    let mut by_call: Vec<usize> = (0..ops.len()).collect();
    by_call.sort_by_key(|&i| (ops[i].call, i));
    let end = op.ret.unwrap_or(u64::MAX);
    let position = by_call.iter().position(|&i| i == stuck).unwrap_or(0);
    let first = position.saturating_sub(12);
    let _ = writeln!(out, "  ops around it by call time (>> marks it):");
    for &i in by_call[first..]
        .iter()
        .take_while(|&&i| ops[i].call <= end)
        .take(40)
    {
        let mark = if i == stuck { ">>" } else { "  " };
        let _ = writeln!(out, "  {mark}{}", describe(&ops[i]));
    }
    out
}

/// One op on one line: client, interval in ms, and what it did.
fn describe(op: &Op) -> String {
    let ms = |t: u64| format!("{}.{:03}", t / 1000, t % 1000);
    let ret = op.ret.map_or("?".to_string(), ms);
    let what = match &op.kind {
        OpKind::Put(v) => format!("put {v:?}"),
        OpKind::Delete => "delete".to_string(),
        OpKind::Get(Some(v)) => format!("get -> {v:?}"),
        OpKind::Get(None) => "get -> nothing".to_string(),
        OpKind::Cas(old, new) => format!("cas {old:?} -> {new:?} applied"),
    };
    let stamp = op
        .stamp
        .map_or(String::new(), |(at, by)| format!(" (stamp {at} by {by})"));
    format!(
        "c{} [{} .. {} ms] {what}{stamp}",
        op.client,
        ms(op.call),
        ret
    )
}
