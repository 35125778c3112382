//! `ringkv bench` against a real cluster: a counted run reports exactly the
//! requests it made, split by operation, over the time they really took,
//! with the CPU every replica spent; failed requests make the exit code 1
//! unless `--allow-errors`; both ways of driving connections (a serial
//! connection per worker, or a shared multiplexed client with
//! `--pipeline`) prove the cluster's secret, and a serial connection opens
//! again after its coordinator restarts.

mod common;

use common::Cluster;

/// The number right after `"name": ` at or after `from` in `json`.
fn number_after(json: &str, from: &str, name: &str) -> f64 {
    let start = json
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} in {json}"));
    let tail = &json[start..];
    let key = format!("\"{name}\": ");
    let at = tail
        .find(&key)
        .unwrap_or_else(|| panic!("no {key:?} after {from:?} in {json}"))
        + key.len();
    let digits: String = tail[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{name} after {from:?} is not a number in {json}"))
}

fn bench(cluster: &Cluster, more: &[&str]) -> std::process::Output {
    let config = cluster.config.display().to_string();
    let mut args = vec![
        "bench",
        "--config",
        &config,
        "--warmup-seconds",
        "0",
        "--json",
    ];
    args.extend_from_slice(more);
    cluster.run_command(&args)
}

#[test]
fn a_counted_run_reports_its_requests_by_operation_with_their_cpu() {
    let cluster = Cluster::start(4);
    let output = bench(
        &cluster,
        &[
            "--requests",
            "2000",
            "--reads",
            "0.5",
            "--cas",
            "0.1",
            "--connections",
            "8",
        ],
    );
    let json = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed: {json}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        json.contains("\"seconds\": null, \"requests\": 2000"),
        "{json}"
    );
    assert_eq!(
        number_after(&json, "\"duration_s\"", "requests"),
        2000.0,
        "{json}"
    );
    let gets = number_after(&json, "\"get\": {", "requests");
    let puts = number_after(&json, "\"put\": {", "requests");
    let cas = number_after(&json, "\"cas\": {", "requests");
    assert_eq!(gets + puts + cas, 2000.0, "{json}");
    assert!(
        gets > 800.0 && cas > 100.0 && puts > 500.0,
        "shares far off: {json}"
    );
    // The duration is the time the requests took, not a whole second.
    let seconds = number_after(&json, "{", "duration_s");
    let rate = number_after(&json, "\"duration_s\"", "ops_per_sec");
    assert!(seconds > 0.0 && seconds < 30.0, "{json}");
    assert!(
        (rate * seconds - 2000.0).abs() < 20.0,
        "rate and time disagree: {json}"
    );
    for id in 0..4 {
        assert!(
            json.contains(&format!("\"{id}\": {{\"user_s\"")),
            "no CPU of replica {id}: {json}"
        );
    }
    assert!(
        number_after(&json, "\"cluster\"", "us_per_request") > 0.0,
        "{json}"
    );
    assert!(json.contains("\"unread\": []"), "{json}");
    assert!(json.contains("\"errors\": {}"), "{json}");
}

#[test]
fn failed_requests_make_the_exit_code_one_unless_allowed() {
    let mut cluster = Cluster::start(4);
    cluster.kill(1);
    cluster.kill(2);
    // With replicas 1 and 2 down, the keys they both hold have one replica
    // left of three: QUORUM puts of them fail.
    let coordinators = ["--coordinators", "0,3", "--reads", "0", "--requests", "300"];
    let output = bench(&cluster, &coordinators);
    let json = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{json}\n{stderr}");
    assert!(json.contains("\"UNAVAILABLE\": "), "{json}");
    assert!(
        stderr.contains("requests failed") && stderr.contains("--allow-errors"),
        "{stderr}"
    );
    assert!(json.contains("\"unread\": [1, 2]"), "{json}");

    let mut allowed = coordinators.to_vec();
    allowed.push("--allow-errors");
    let output = bench(&cluster, &allowed);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn both_ways_of_driving_requests_prove_the_secret_and_only_with_it() {
    let dir = common::unique_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = dir.join("secret");
    std::fs::write(&secret, "open sesame\n").expect("write the secret");
    let secret = secret.display().to_string();
    let cluster = Cluster::start_with(4, &["--secret-file", &secret]);
    // One request in flight per connection: a serial connection each;
    // more: workers sharing a multiplexed client.
    for pipeline in ["1", "4"] {
        let run = [
            "--requests",
            "400",
            "--pipeline",
            pipeline,
            "--secret-file",
            &secret,
        ];
        let output = bench(&cluster, &run);
        let json = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "pipeline {pipeline}: {json}");
        assert!(
            json.contains("\"errors\": {}"),
            "pipeline {pipeline}: {json}"
        );
        let output = bench(&cluster, &run[..4]);
        let json = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(output.status.code(), Some(1), "pipeline {pipeline}: {json}");
        assert!(
            json.contains("\"UNAUTHENTICATED\": 400"),
            "pipeline {pipeline}: {json}"
        );
    }
}

#[test]
fn a_serial_connection_opens_again_once_its_coordinator_is_back() {
    let mut cluster = Cluster::start(4);
    let config = cluster.config.display().to_string();
    let args = [
        "bench",
        "--config",
        &config,
        "--coordinators",
        "3",
        "--connections",
        "4",
        "--warmup-seconds",
        "0",
        "--seconds",
        "5",
        "--reads",
        "1",
        "--consistency",
        "ONE",
        "--allow-errors",
    ];
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv"));
    command
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let running = command.spawn().expect("bench");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    cluster.kill(3);
    std::thread::sleep(std::time::Duration::from_millis(300));
    cluster.restart(3);
    let output = running.wait_with_output().expect("bench");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    // Progress lines: "   4 s:     1234 ops/s, 56 errors so far". Errors
    // came while replica 3 was down, then stopped: the connections were
    // opened again.
    let errors: Vec<u64> = stderr
        .lines()
        .filter_map(|line| line.split(", ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(errors.len() >= 4, "{stderr}");
    assert!(
        errors[errors.len() - 1] > 0,
        "the kill cost requests: {stderr}"
    );
    assert_eq!(
        errors[errors.len() - 1],
        errors[errors.len() - 2],
        "no errors in the last second: {stderr}"
    );
}
