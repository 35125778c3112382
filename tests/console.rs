//! The console as a user drives it: commands piped to `ringkv client` on
//! stdin, one answer line each on stdout, against a real cluster.

mod common;

use std::process::{Command, Stdio};

use common::{console, Cluster};

/// The expected output, as owned lines.
fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|s| s.to_string()).collect()
}

#[test]
fn put_get_and_not_found_answer_one_line_each_without_a_prompt() {
    let cluster = Cluster::start(4);
    let out = console(&cluster, 0, "put 10 hello world\nget 10\nget 11\n");
    assert_eq!(out, lines(&["OK", "hello world", "NOT FOUND"]));
    // Another coordinator sees the same value; blank lines answer nothing;
    // commands are case-insensitive and surrounding blanks are ignored.
    let out = console(&cluster, 3, "\n   \n  GET   10  \nget 11\n\n");
    assert_eq!(out, lines(&["hello world", "NOT FOUND"]));
    // A last line without a newline is still read.
    let out = console(&cluster, 1, "put 11 eleven\nget 11");
    assert_eq!(out, lines(&["OK", "eleven"]));
    // No input at all: no output at all (no banner, no prompt).
    assert_eq!(console(&cluster, 2, ""), Vec::<String>::new());
}

#[test]
fn quoted_values_keep_their_blanks_and_awkward_values_come_back_quoted() {
    let cluster = Cluster::start(4);
    let input = concat!(
        "put 12 \"  spaced  \"\n",
        "get 12\n",
        "put 13 \"two\\nlines\"\n",
        "get 13\n",
        "put 14 \"say \\\"hi\\\"\"\n",
        "get 14\n",
        "put 19 \"\\\"hi\\\" she said\"\n",
        "get 19\n",
        "put 15 \"tab\\there\"\n",
        "get 15\n",
        "put 16 unquoted   with inner  blanks   \n",
        "get 16\n",
        "put 17 \"\"\n",
        "get 17\n",
        "put 18 \"back\\\\slash\"\n",
        "get 18\n",
    );
    let out = console(&cluster, 1, input);
    assert_eq!(
        out,
        lines(&[
            "OK",
            "  spaced  ",
            "OK",
            "\"two\\nlines\"",
            "OK",
            "say \"hi\"",
            "OK",
            "\"\\\"hi\\\" she said\"",
            "OK",
            "\"tab\\there\"",
            "OK",
            "unquoted   with inner  blanks",
            "OK",
            "",
            "OK",
            "back\\slash",
        ])
    );
    // What was stored is the unescaped value, not the typed text.
    assert_eq!(
        cluster
            .get(0, 13, ringkv::protocol::proto::Consistency::All)
            .unwrap(),
        Some("two\nlines".to_string())
    );
    assert_eq!(
        cluster
            .get(0, 14, ringkv::protocol::proto::Consistency::All)
            .unwrap(),
        Some("say \"hi\"".to_string())
    );
}

#[test]
fn consistency_is_shown_set_and_refused_when_unknown() {
    let cluster = Cluster::start(4);
    let out = console(
        &cluster,
        2,
        "consistency\nconsistency ALL\nconsistency\nconsistency TWO\nconsistency\nconsistency one\nconsistency\n",
    );
    assert_eq!(out.len(), 7, "{out:?}");
    assert_eq!(out[0], "Current consistency level is QUORUM.");
    assert_eq!(out[1], "Consistency level set to ALL.");
    assert_eq!(out[2], "Current consistency level is ALL.");
    assert!(out[3].starts_with("ERROR INVALID:"), "{out:?}");
    assert!(out[3].contains("TWO"), "{out:?}");
    // The refused level left the level as it was.
    assert_eq!(out[4], "Current consistency level is ALL.");
    assert_eq!(out[5], "Consistency level set to ONE.");
    assert_eq!(out[6], "Current consistency level is ONE.");
}

#[test]
fn each_bad_line_gets_one_invalid_error_and_the_console_keeps_going() {
    let cluster = Cluster::start(4);
    let input = concat!(
        "get 300\n",
        "get abc\n",
        "frobnicate\n",
        "put 1\n",
        "get\n",
        "put 1 \"unterminated\n",
        "where 256\n",
        "put 1 works\n",
        "get 1\n",
    );
    let out = console(&cluster, 0, input);
    assert_eq!(out.len(), 9, "{out:?}");
    let expected_mentions = [
        "key 300 is out of range",
        "not a number",
        "unknown command 'frobnicate'",
        "value is missing",
        "usage: get KEY",
        "no closing",
        "key 256 is out of range",
    ];
    for (line, mention) in out.iter().zip(expected_mentions) {
        assert!(line.starts_with("ERROR INVALID: "), "{out:?}");
        assert!(
            line.contains(mention),
            "{line:?} should mention {mention:?}"
        );
    }
    assert_eq!(out[7..], lines(&["OK", "works"]));
    // None of the refused lines wrote anything: key 1 holds only "works".
    assert_eq!(
        cluster
            .get(3, 1, ringkv::protocol::proto::Consistency::All)
            .unwrap(),
        Some("works".to_string())
    );
}

#[test]
fn where_lists_each_replica_of_the_key_owner_first() {
    let cluster = Cluster::start(4);
    let out = console(
        &cluster,
        2,
        "consistency ALL\nput 200 x\nwhere 200\nwhere 201\n",
    );
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[..2], lines(&["Consistency level set to ALL.", "OK"]));
    let line = &out[2];
    assert!(line.starts_with("key 200: replica 3: \"x\""), "{line:?}");
    let parts: Vec<&str> = line["key 200: ".len()..].split(" | ").collect();
    assert_eq!(parts.len(), 3, "{line:?}");
    for (part, id) in parts.iter().zip([3, 0, 1]) {
        let prefix = format!("replica {id}: \"x\" ts=");
        assert!(part.starts_with(&prefix), "{part:?} in {line:?}");
        assert!(part.ends_with(" coordinator=2"), "{part:?} in {line:?}");
        let ts = &part[prefix.len()..part.len() - " coordinator=2".len()];
        assert!(
            !ts.is_empty() && ts.chars().all(|c| c.is_ascii_digit()),
            "{part:?}"
        );
    }
    // All three replicas hold the same version.
    let versions: Vec<&str> = parts
        .iter()
        .map(|p| p.split_once(": ").unwrap().1)
        .collect();
    assert!(versions.iter().all(|v| *v == versions[0]), "{line:?}");
    assert_eq!(
        out[3],
        "key 201: replica 3: NOT FOUND | replica 0: NOT FOUND | replica 1: NOT FOUND"
    );
}

#[test]
fn quit_and_exit_stop_reading() {
    let cluster = Cluster::start(4);
    assert_eq!(
        console(&cluster, 0, "get 10\nquit\nget 10\n"),
        lines(&["NOT FOUND"])
    );
    assert_eq!(
        console(&cluster, 0, "put 10 a\nexit\nput 10 b\n"),
        lines(&["OK"])
    );
    // The put after `exit` was never sent.
    assert_eq!(console(&cluster, 1, "get 10\nQUIT\n"), lines(&["a"]));
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

#[test]
fn with_two_of_a_keys_replicas_killed_quorum_is_unavailable_and_one_works() {
    let mut cluster = Cluster::start(4);
    // Key 10 lives on replicas 0, 1 and 2.
    cluster.kill(1);
    cluster.kill(2);
    cluster.wait_for_view(0, 1, false);
    cluster.wait_for_view(0, 2, false);
    let out = console(
        &cluster,
        0,
        "consistency QUORUM\nput 10 x\nget 10\nconsistency ONE\nget 10\nput 10 y\nget 10\n",
    );
    assert_eq!(out.len(), 7, "{out:?}");
    assert_eq!(out[0], "Consistency level set to QUORUM.");
    assert!(out[1].starts_with("ERROR UNAVAILABLE:"), "{out:?}");
    assert!(out[2].starts_with("ERROR UNAVAILABLE:"), "{out:?}");
    // The refused put wrote nothing, not even on the live replica.
    assert_eq!(
        out[3..],
        lines(&["Consistency level set to ONE.", "NOT FOUND", "OK", "y"])
    );
    // Key 200 lives on 3, 0 and 1: two of them are up, so QUORUM works.
    assert_eq!(
        console(&cluster, 0, "put 200 z\nget 200\n"),
        lines(&["OK", "z"])
    );
}

#[test]
fn a_console_whose_coordinator_is_down_says_unavailable_and_exits_cleanly() {
    let mut cluster = Cluster::start(4);
    cluster.kill(3);
    let output = Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .arg("client")
        .arg("--config")
        .arg(&cluster.config)
        .arg("--coordinator")
        .arg("3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"get 1\nconsistency\nget 2\n")?;
            child.wait_with_output()
        })
        .expect("run the console");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let out: Vec<&str> = stdout.lines().collect();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        out[0].starts_with("ERROR UNAVAILABLE: coordinator unreachable"),
        "{out:?}"
    );
    assert_eq!(out[1], "Current consistency level is QUORUM.");
    assert!(
        out[2].starts_with("ERROR UNAVAILABLE: coordinator unreachable"),
        "{out:?}"
    );
    assert!(output.status.success(), "console exit: {:?}", output.status);
    // The shared helper sees the same single line for a single command.
    let out = console(&cluster, 3, "get 1\n");
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].starts_with("ERROR UNAVAILABLE:"), "{out:?}");
}
