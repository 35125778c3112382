//! `ringkv replica --metrics-addr`: the Prometheus endpoint of a real
//! replica, scraped over HTTP while clients write through it, and parsed
//! as a Prometheus server would read it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use ringkv::protocol::proto::Consistency;

/// One HTTP request; the status line and the body.
fn http(addr: &str, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Every sample of the exposition, by its name with labels; checks that
/// each line is a comment or `name{labels} number`, and each family has
/// HELP and TYPE before its samples.
fn parse(body: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            typed.push(words.next().expect("a name").to_string());
            assert!(
                matches!(words.next(), Some("counter" | "gauge" | "histogram")),
                "{line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        let name = series.split('{').next().expect("name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| typed.iter().any(|t| t == base))
            .unwrap_or(name);
        assert!(typed.iter().any(|t| t == family), "no TYPE before {line}");
        assert!(series.contains("replica=\"0\""), "{line}");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "twice: {line}"
        );
    }
    samples
}

#[test]
fn the_metrics_endpoint_serves_prometheus_text_that_counts_the_load() {
    let addr = common::free_ports(1).remove(0);
    let mut replica_args = vec![Vec::new(); 4];
    replica_args[0] = vec!["--metrics-addr".to_string(), addr.clone()];
    let mut cluster = Cluster::launch_each(4, &[], replica_args);
    cluster.wait_until_all_see_each_other();
    let cluster = Arc::new(cluster);

    // Writers load replica 0 while it is scraped.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cluster, stop) = (cluster.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut puts = 0u64;
            while !stop.load(Ordering::Relaxed) {
                cluster
                    .put(0, (puts % 256) as u32, "loaded", Consistency::Quorum)
                    .expect("put");
                puts += 1;
            }
            puts
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let scrape = "GET /metrics HTTP/1.1\r\nHost: ringkv\r\n\r\n";
    let (status, first) = http(&addr, scrape);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let first = parse(&first);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let puts = writer.join().expect("writer");
    let (_, second) = http(&addr, scrape);
    let second = parse(&second);

    let quorum_puts =
        "ringkv_requests_total{replica=\"0\",operation=\"put\",consistency=\"QUORUM\"}";
    assert!(first[quorum_puts] > 0.0, "puts under way are counted");
    assert_eq!(second[quorum_puts], puts as f64, "every put, once");
    // Replica 0 holds three keys in four, so it logged most of the puts.
    let logged = second["ringkv_wal_records_total{replica=\"0\"}"];
    assert!(
        logged >= puts as f64 / 2.0,
        "{logged} records for {puts} puts"
    );
    assert!(second["ringkv_wal_batches_total{replica=\"0\"}"] > 0.0);
    assert!(second["process_cpu_seconds_total{replica=\"0\"}"] > 0.0);
    assert!(second["process_resident_memory_bytes{replica=\"0\"}"] > 0.0);
    assert!(
        second["ringkv_connections{replica=\"0\"}"] >= 3.0,
        "the peers' at least"
    );
    assert!(second["ringkv_memory_budget_limit_bytes{replica=\"0\"}"] > 0.0);

    // The put latency histogram: cumulative buckets ending in +Inf, which
    // equals the count; the sum is the total of the latencies.
    let bucket = |le: &str| {
        second[&format!(
            "ringkv_request_duration_seconds_bucket{{replica=\"0\",operation=\"put\",le=\"{le}\"}}"
        )]
    };
    let count = second["ringkv_request_duration_seconds_count{replica=\"0\",operation=\"put\"}"];
    assert_eq!(count, puts as f64);
    assert_eq!(bucket("+Inf"), count);
    let mut previous = 0.0;
    for le in ["0.0001", "0.001", "0.01", "0.1", "1", "10"] {
        assert!(bucket(le) >= previous, "buckets are cumulative at {le}");
        previous = bucket(le);
    }
    assert!(bucket("10") > 0.0 && bucket("10") <= count);
    let sum = second["ringkv_request_duration_seconds_sum{replica=\"0\",operation=\"put\"}"];
    assert!(sum > 0.0 && sum < count * 10.0, "sum {sum} of {count} puts");

    // Nothing else is served.
    let (status, _) = http(&addr, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(&addr, "POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    // A scraper that sends garbage and never ends its head is cut off; the
    // endpoint still answers the next one.
    let mut garbage = TcpStream::connect(&addr).expect("connect");
    garbage.write_all(&[0xff; 20_000]).ok();
    let (status, _) = http(&addr, scrape);
    assert_eq!(status, "HTTP/1.1 200 OK");
}
