//! A replica's metrics in the Prometheus text exposition format (version
//! 0.0.4), for `--metrics-addr`: counters of requests, errors, the WAL,
//! hints and repairs; latency histograms with cumulative buckets; and
//! gauges of hints waiting, connections, the memory budget and CPU time.
//! Everything `status --metrics` shows, in the form operators scrape.

use std::fmt::Write;

use crate::metrics::histogram::Histogram;
use crate::metrics::Op;
use crate::protocol::proto::{Consistency, ErrorKind, MetricsReply};

/// Upper bounds of the latency buckets, in microseconds: 100 µs to 10 s.
const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Process-wide figures read as the scrape is answered.
pub struct ProcessGauges {
    /// Client and peer connections open now.
    pub connections: u64,
    /// Bytes of the memory budget reserved now.
    pub budget_used_bytes: u64,
    /// The memory budget's size in bytes.
    pub budget_limit_bytes: u64,
    /// CPU time used by the process so far, in seconds (user + system).
    pub cpu_seconds: f64,
    /// Resident memory in bytes.
    pub resident_bytes: u64,
}

/// The whole exposition: one `# HELP`, one `# TYPE` and the samples of each
/// metric, every sample labelled with the replica's id.
pub fn exposition(
    reply: &MetricsReply,
    latencies: &[(Op, Histogram)],
    process: &ProcessGauges,
) -> String {
    let replica = reply.replica_id;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{replica=\"{replica}\"{labels}}} {value}");
        }
    };
    let plain = |value: u64| vec![(String::new(), value.to_string())];

    let requests: Vec<(String, String)> = reply
        .requests
        .iter()
        .map(|r| {
            let level = Consistency::try_from(r.consistency)
                .map(|c| c.as_str_name().trim_start_matches("CONSISTENCY_"))
                .unwrap_or("UNSPECIFIED");
            (
                format!(",operation=\"{}\",consistency=\"{level}\"", r.operation),
                r.count.to_string(),
            )
        })
        .collect();
    family(
        "ringkv_requests_total",
        "counter",
        "Client requests this replica coordinated, by operation and consistency level.",
        &requests,
    );
    let errors: Vec<(String, String)> = reply
        .errors
        .iter()
        .map(|e| {
            let kind = ErrorKind::try_from(e.kind)
                .map(|k| k.as_str_name().trim_start_matches("ERROR_KIND_"))
                .unwrap_or("UNKNOWN");
            (format!(",kind=\"{kind}\""), e.count.to_string())
        })
        .collect();
    family(
        "ringkv_request_errors_total",
        "counter",
        "Client requests answered with an error, by kind.",
        &errors,
    );
    let counters: [(&str, &str, u64); 10] = [
        (
            "ringkv_wal_batches_total",
            "Group commits of the write-ahead log (one write and one fdatasync each).",
            reply.wal_batches,
        ),
        (
            "ringkv_wal_records_total",
            "Records written to the write-ahead log.",
            reply.wal_records,
        ),
        (
            "ringkv_wal_checkpoints_total",
            "Checkpoints the write-ahead log wrote.",
            reply.wal_checkpoints,
        ),
        (
            "ringkv_read_repairs_sent_total",
            "Read-repair writes sent as a coordinator.",
            reply.repairs_sent,
        ),
        (
            "ringkv_hints_stored_total",
            "Hints made durable for a replica that missed a write.",
            reply.hints_stored,
        ),
        (
            "ringkv_hints_delivered_total",
            "Hints acknowledged by their replica.",
            reply.hints_delivered,
        ),
        (
            "ringkv_hints_dropped_total",
            "Hints dropped: past the window or bound, or refused as invalid.",
            reply.hints_dropped,
        ),
        (
            "ringkv_anti_entropy_rounds_total",
            "Anti-entropy rounds completed.",
            reply.anti_entropy_rounds,
        ),
        (
            "ringkv_anti_entropy_fixes_total",
            "Versions anti-entropy sent or took.",
            reply.anti_entropy_fixes,
        ),
        (
            "ringkv_stale_write_retries_total",
            "Writes stamped above a newer version a replica held than the coordinator's clock gave.",
            reply.stale_write_retries,
        ),
    ];
    for (name, help, value) in counters {
        family(name, "counter", help, &plain(value));
    }
    let gauges: [(&str, &str, u64); 5] = [
        (
            "ringkv_hints_pending",
            "Hints waiting for any peer now.",
            reply.hints_pending,
        ),
        (
            "ringkv_connections",
            "Client and peer connections open now.",
            process.connections,
        ),
        (
            "ringkv_memory_budget_used_bytes",
            "Bytes of the memory budget reserved by requests in flight.",
            process.budget_used_bytes,
        ),
        (
            "ringkv_memory_budget_limit_bytes",
            "The memory budget's size.",
            process.budget_limit_bytes,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory of the replica process.",
            process.resident_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        family(name, "gauge", help, &plain(value));
    }
    family(
        "process_cpu_seconds_total",
        "counter",
        "CPU time the replica process used (user and system).",
        &[(String::new(), format!("{:.3}", process.cpu_seconds))],
    );

    let mut latency = Vec::new();
    for (op, histogram) in latencies {
        let op = format!(",operation=\"{}\"", op.name());
        let counts = histogram.cumulative_counts(&BUCKETS_US);
        for (bound, count) in BUCKETS_US.iter().zip(counts) {
            let le = *bound as f64 / 1_000_000.0;
            latency.push((format!("{op},le=\"{le}\""), count.to_string()));
        }
        latency.push((format!("{op},le=\"+Inf\""), histogram.count().to_string()));
    }
    // Histogram samples carry suffixes, so they are written by hand.
    let name = "ringkv_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Coordinator latency from a request's arrival to its answer (requests refused as invalid excluded)."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, value) in &latency {
        let _ = writeln!(
            out,
            "{name}_bucket{{replica=\"{replica}\"{labels}}} {value}"
        );
    }
    for (op, histogram) in latencies {
        let op = op.name();
        let sum = histogram.sum() as f64 / 1_000_000.0;
        let _ = writeln!(
            out,
            "{name}_sum{{replica=\"{replica}\",operation=\"{op}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "{name}_count{{replica=\"{replica}\",operation=\"{op}\"}} {}",
            histogram.count()
        );
    }
    out
}
