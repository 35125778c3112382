//! How `ringkv bench` reports a run, as text or as one JSON object: the
//! settings, the measured time, throughput and latency per operation (one
//! unit, microseconds, and one set of labels everywhere: mean, p50, p90,
//! p95, p99, p999, max), errors by kind, and the CPU each replica and the
//! load generator spent per request.

use std::fmt::Write as _;
use std::time::Duration;

use super::cost::CpuSpent;
use super::worker::{Load, Operation, OperationReport, WorkerReport};
use crate::metrics::histogram::Histogram;
use crate::ops::process::CpuTime;
use crate::protocol::describe::json_string;

/// Everything a finished run reports.
pub struct RunReport<'a> {
    /// What was asked for.
    pub settings: Settings<'a>,
    /// What the workers recorded.
    pub results: &'a WorkerReport,
    /// From the start of the measured phase to the last measured answer.
    pub elapsed: Duration,
    /// CPU spent over the measured phase.
    pub cpu: &'a CpuSpent,
}

/// The run's settings, echoed in the report so that a JSON line can be
/// read on its own.
pub struct Settings<'a> {
    /// Levels, shares, value size and key choice.
    pub load: Load,
    /// Addresses the connections were spread over.
    pub coordinators: &'a [String],
    /// Client connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Executor threads of the load generator.
    pub threads: usize,
    /// `--seconds`, if the run was timed.
    pub seconds: Option<u64>,
    /// `--requests`, if the run was counted.
    pub requests: Option<u64>,
    /// Warm-up before measuring.
    pub warmup_seconds: u64,
}

/// Labels and quantiles of the percentiles reported (after the mean).
const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p999", 0.999),
];

/// `(label, microseconds)` for mean, the percentiles and max.
fn latency_figures(histogram: &Histogram) -> Vec<(&'static str, u64)> {
    let mut figures = vec![(
        "mean",
        histogram.sum().checked_div(histogram.count()).unwrap_or(0),
    )];
    figures.extend(
        PERCENTILES
            .iter()
            .map(|(label, q)| (*label, histogram.percentile(*q))),
    );
    figures.push(("max", histogram.max()));
    figures
}

/// Microseconds of CPU per request (0 when nothing was measured).
fn per_request(cpu_us: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        cpu_us as f64 / requests as f64
    }
}

impl RunReport<'_> {
    fn total(&self) -> OperationReport {
        self.results.all()
    }

    fn rate(&self, requests: u64) -> f64 {
        requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Operations that ran at all, in report order.
    fn operations(&self) -> impl Iterator<Item = (Operation, &OperationReport)> {
        Operation::ALL
            .into_iter()
            .map(|op| (op, self.results.of(op)))
            .filter(|(_, report)| report.latency_us.count() > 0)
    }

    /// The report as lines of text.
    pub fn text(&self) -> String {
        let total = self.total();
        let requests = total.latency_us.count();
        let s = &self.settings;
        let mut out = format!(
            "{} {} x{} conns x{} pipeline, reads {:.0}%, cas {:.0}%, {} B values: {:.0} ops/s over {:.2} s ({requests} requests)\n",
            s.load.consistency,
            s.load.keys.name(),
            s.connections,
            s.pipeline,
            s.load.reads * 100.0,
            s.load.cas * 100.0,
            s.load.value_bytes,
            self.rate(requests),
            self.elapsed.as_secs_f64(),
        );
        for (op, report) in self.operations() {
            let _ = writeln!(out, "{}", self.text_line(op.name(), report));
        }
        if self.operations().count() > 1 {
            let _ = writeln!(out, "{}", self.text_line("all", &total));
        }
        let _ = writeln!(out, "{}", self.cpu_text(requests));
        out
    }

    fn text_line(&self, name: &str, report: &OperationReport) -> String {
        let count = report.latency_us.count();
        let latency: Vec<String> = latency_figures(&report.latency_us)
            .iter()
            .map(|(label, us)| format!("{label} {us}"))
            .collect();
        let errors = if report.errors.is_empty() {
            "none".to_string()
        } else {
            let kinds: Vec<String> = report
                .errors
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            kinds.join(", ")
        };
        format!(
            "{name}: {count} requests, {:.0} ops/s; latency us: {}; errors: {errors}",
            self.rate(count),
            latency.join(", ")
        )
    }

    fn cpu_text(&self, requests: u64) -> String {
        let cluster = self.cpu.cluster();
        let mut line = format!(
            "cpu us per request: cluster {:.1} (user {:.1}, system {:.1})",
            per_request(cluster.total_us(), requests),
            per_request(cluster.user_us, requests),
            per_request(cluster.system_us, requests),
        );
        let replicas: Vec<String> = self
            .cpu
            .replicas
            .iter()
            .map(|(id, cpu)| format!("{id} {:.1}", per_request(cpu.total_us(), requests)))
            .collect();
        let _ = write!(line, "; replicas {}", replicas.join(", "));
        if !self.cpu.unread.is_empty() {
            let unread: Vec<String> = self.cpu.unread.iter().map(u32::to_string).collect();
            let _ = write!(line, " (not read: {})", unread.join(", "));
        }
        let _ = write!(
            line,
            "; bench {:.1}",
            per_request(self.cpu.bench.total_us(), requests)
        );
        line
    }

    /// The report as one JSON object on one line.
    pub fn json(&self) -> String {
        let total = self.total();
        let requests = total.latency_us.count();
        let mut operations = Vec::new();
        for (op, report) in self.operations() {
            operations.push(format!(
                "{}: {}",
                json_string(op.name()),
                self.json_operation(report)
            ));
        }
        format!(
            "{{\"settings\": {}, \"duration_s\": {:.3}, {}, \"operations\": {{{}}}, \"cpu\": {}}}",
            self.json_settings(),
            self.elapsed.as_secs_f64(),
            self.json_figures(&total),
            operations.join(", "),
            self.json_cpu(requests)
        )
    }

    /// `"requests": N, "ops_per_sec": X, "errors": {...}, "latency_us": {...}`
    fn json_figures(&self, report: &OperationReport) -> String {
        let count = report.latency_us.count();
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(|(kind, n)| format!("{}: {n}", json_string(kind)))
            .collect();
        let latency: Vec<String> = latency_figures(&report.latency_us)
            .iter()
            .map(|(label, us)| format!("\"{label}\": {us}"))
            .collect();
        format!(
            "\"requests\": {count}, \"ops_per_sec\": {:.1}, \"errors\": {{{}}}, \"latency_us\": {{{}}}",
            self.rate(count),
            errors.join(", "),
            latency.join(", ")
        )
    }

    fn json_operation(&self, report: &OperationReport) -> String {
        format!("{{{}}}", self.json_figures(report))
    }

    fn json_settings(&self) -> String {
        let s = &self.settings;
        let optional = |n: Option<u64>| n.map_or("null".to_string(), |n| n.to_string());
        let coordinators: Vec<String> = s.coordinators.iter().map(|a| json_string(a)).collect();
        format!(
            "{{\"consistency\": {}, \"reads\": {}, \"cas\": {}, \"value_bytes\": {}, \"keys\": {}, \"connections\": {}, \"pipeline\": {}, \"threads\": {}, \"seconds\": {}, \"requests\": {}, \"warmup_seconds\": {}, \"coordinators\": [{}]}}",
            json_string(&s.load.consistency.to_string()),
            s.load.reads,
            s.load.cas,
            s.load.value_bytes,
            json_string(s.load.keys.name()),
            s.connections,
            s.pipeline,
            s.threads,
            optional(s.seconds),
            optional(s.requests),
            s.warmup_seconds,
            coordinators.join(", ")
        )
    }

    fn json_cpu(&self, requests: u64) -> String {
        let figures = |cpu: &CpuTime| {
            format!(
                "{{\"user_s\": {:.3}, \"system_s\": {:.3}, \"us_per_request\": {:.2}}}",
                cpu.user_us as f64 / 1e6,
                cpu.system_us as f64 / 1e6,
                per_request(cpu.total_us(), requests)
            )
        };
        let replicas: Vec<String> = self
            .cpu
            .replicas
            .iter()
            .map(|(id, cpu)| format!("\"{id}\": {}", figures(cpu)))
            .collect();
        let unread: Vec<String> = self.cpu.unread.iter().map(u32::to_string).collect();
        format!(
            "{{\"cluster\": {}, \"replicas\": {{{}}}, \"unread\": [{}], \"bench\": {}}}",
            figures(&self.cpu.cluster()),
            replicas.join(", "),
            unread.join(", "),
            figures(&self.cpu.bench)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::bench::worker::KeyChoice;
    use crate::protocol::proto::Consistency;
    use std::collections::BTreeMap;

    fn sample() -> (WorkerReport, CpuSpent) {
        let mut results = WorkerReport::default();
        for us in 1..=100 {
            results.operations[Operation::Get as usize]
                .latency_us
                .record(us);
        }
        results.operations[Operation::Put as usize]
            .latency_us
            .record(1000);
        results.operations[Operation::Put as usize]
            .errors
            .insert("TIMEOUT".into(), 1);
        let cpu = CpuSpent {
            replicas: BTreeMap::from([
                (
                    0,
                    CpuTime {
                        user_us: 1010,
                        system_us: 0,
                    },
                ),
                (
                    1,
                    CpuTime {
                        user_us: 0,
                        system_us: 101,
                    },
                ),
            ]),
            unread: vec![3],
            bench: CpuTime {
                user_us: 202,
                system_us: 0,
            },
        };
        (results, cpu)
    }

    fn report<'a>(results: &'a WorkerReport, cpu: &'a CpuSpent) -> RunReport<'a> {
        RunReport {
            settings: Settings {
                load: Load {
                    consistency: Consistency::Quorum,
                    reads: 0.5,
                    cas: 0.0,
                    value_bytes: 16,
                    keys: KeyChoice::Uniform,
                },
                coordinators: &[],
                connections: 2,
                pipeline: 1,
                threads: 1,
                seconds: None,
                requests: Some(101),
                warmup_seconds: 0,
            },
            results,
            elapsed: Duration::from_millis(500),
            cpu,
        }
    }

    #[test]
    fn text_splits_by_operation_and_counts_cpu_per_request() {
        let (results, cpu) = sample();
        let text = report(&results, &cpu).text();
        assert!(
            text.contains("202 ops/s over 0.50 s (101 requests)"),
            "{text}"
        );
        assert!(
            text.contains("get: 100 requests, 200 ops/s; latency us: mean 50, p50 50"),
            "{text}"
        );
        assert!(
            text.contains("p95 95, p99 99, p999 100, max 100; errors: none"),
            "{text}"
        );
        assert!(
            text.contains("put: 1 requests, 2 ops/s; latency us: mean 1000"),
            "{text}"
        );
        assert!(text.contains("errors: TIMEOUT 1"), "{text}");
        assert!(text.contains("all: 101 requests"), "{text}");
        assert!(text.contains("cluster 11.0 (user 10.0, system 1.0); replicas 0 10.0, 1 1.0 (not read: 3); bench 2.0"), "{text}");
    }

    #[test]
    fn json_carries_settings_duration_operations_and_cpu() {
        let (results, cpu) = sample();
        let json = report(&results, &cpu).json();
        for part in [
            "\"settings\": {\"consistency\": \"QUORUM\", \"reads\": 0.5",
            "\"seconds\": null, \"requests\": 101",
            "\"duration_s\": 0.500, \"requests\": 101, \"ops_per_sec\": 202.0, \"errors\": {\"TIMEOUT\": 1}",
            "\"operations\": {\"get\": {\"requests\": 100",
            "\"put\": {\"requests\": 1, ",
            "\"cluster\": {\"user_s\": 0.001, \"system_s\": 0.000, \"us_per_request\": 11.00}",
            "\"unread\": [3]",
            "\"bench\": {\"user_s\": 0.000, \"system_s\": 0.000, \"us_per_request\": 2.00}",
        ] {
            assert!(json.contains(part), "no {part:?} in {json}");
        }
        assert!(!json.contains("\"cas\": {\"requests\""), "{json}");
    }
}
