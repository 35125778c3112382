//! The Prometheus endpoint (`--metrics-addr`): a minimal HTTP/1.1 server
//! that answers `GET /metrics` with the exposition and anything else with
//! 404 or 405, one request per connection. It reads at most a request
//! head of `MAX_HEAD_BYTES` within `HEAD_TIMEOUT`, so a slow or hostile
//! scraper costs one small task, never the replica's memory or its port.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::prometheus::{exposition, ProcessGauges};
use crate::ops::process;
use crate::ops::rt::{self, ReadExt, WriteExt};
use crate::server::Node;

/// The longest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// How long a connection has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Scrapes answered at once; a connection beyond them is closed at once.
const MAX_SCRAPES: usize = 16;

/// Accepts scrapes until the process ends.
pub async fn serve(node: Arc<Node>, listener: rt::TcpListener) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            rt::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if open.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= MAX_SCRAPES {
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            continue;
        }
        let (node, open) = (node.clone(), open.clone());
        rt::spawn(async move {
            let _ = rt::timeout(HEAD_TIMEOUT * 2, answer(&node, stream)).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
}

/// Reads one request head and writes one response.
async fn answer(node: &Node, mut stream: rt::TcpStream) -> std::io::Result<()> {
    let Some(head) = rt::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await else {
        return Ok(());
    };
    let head = head?;
    let request_line = head.lines().next().unwrap_or("");
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", scrape(node)),
        (_, "/metrics") => ("405 Method Not Allowed", "only GET\n".to_string()),
        _ => ("404 Not Found", "the metrics are at /metrics\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

/// The request head, up to its blank line; at most `MAX_HEAD_BYTES`.
async fn read_head(stream: &mut rt::TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_HEAD_BYTES {
            break;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The exposition as of now.
fn scrape(node: &Node) -> String {
    let process = ProcessGauges {
        connections: node.connections.open() as u64,
        budget_used_bytes: node.budget.used() as u64,
        budget_limit_bytes: node.budget.limit() as u64,
        cpu_seconds: process::cpu_time().total_us() as f64 / 1e6,
        resident_bytes: process::resident_bytes(),
    };
    exposition(&node.metrics_reply(), &node.metrics.latencies(), &process)
}
