//! The console as a user drives it, where a transcript cannot show it.
//!
//! Sessions typed one line at a time, with their expected answers, are
//! scenarios in `tests/transcripts/` (run by `tests/transcripts.rs`): the
//! commands, quoted values and escapes, levels, errors, `where` around a
//! killed and restarted replica, `quit`, and a coordinator that is down.
//! What stays here is what a sequential transcript cannot say: consoles
//! running at the same time.

mod common;

use common::{console, Cluster};

/// The expected output, as owned lines.
fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|s| s.to_string()).collect()
}

#[test]
fn two_consoles_on_different_coordinators_at_once_both_get_their_answers() {
    let cluster = Cluster::start(4);
    let script = |base: u32| {
        let mut input = String::new();
        for k in 0..40 {
            input.push_str(&format!("put {} value-{}-{k}\n", base + k, base + k));
        }
        for k in 0..40 {
            input.push_str(&format!("get {}\n", base + k));
        }
        input
    };
    let expected = |base: u32| {
        let mut out = vec!["OK".to_string(); 40];
        out.extend((0..40).map(|k| format!("value-{}-{k}", base + k)));
        out
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| console(&cluster, 0, &script(0)));
        let b = s.spawn(|| console(&cluster, 3, &script(128)));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, expected(0));
    assert_eq!(b, expected(128));
    // Each sees the other's writes afterwards.
    assert_eq!(
        console(&cluster, 3, "get 0\nget 39\n"),
        lines(&["value-0-0", "value-39-39"])
    );
    assert_eq!(
        console(&cluster, 0, "get 128\nget 167\n"),
        lines(&["value-128-0", "value-167-39"])
    );
}
