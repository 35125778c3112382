//! The accept loop: one task per connection, at most `max_connections` at
//! once. Clients and peers share the port. On a stop (`shutdown.rs`) it
//! stops accepting and waits, up to the grace period, for every connection
//! to finish its requests and close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node::connection::serve_connection;
use crate::node::Node;
use crate::rt;
use crate::shutdown::GRACE;

/// Accepts connections until a stop is requested, then closes the port and
/// returns once every connection has finished (or the grace period ends).
/// Connections over the limit are closed at once (and logged) so that the
/// ones being served keep their share.
pub async fn serve(node: Arc<Node>, listener: rt::TcpListener) {
    let open_connections = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = rt::first_of(async { Some(listener.accept().await) }, async {
            node.shutdown.requested().await;
            None
        })
        .await;
        let (stream, remote) = match accepted {
            None => break,
            Some(Ok(accepted)) => accepted,
            Some(Err(error)) => {
                // Usually out of file descriptors: back off rather than spin.
                crate::warn!("accept failed: {error}");
                rt::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if open_connections.fetch_add(1, Ordering::Relaxed) >= node.max_connections {
            open_connections.fetch_sub(1, Ordering::Relaxed);
            crate::warn!(
                "refusing connection from {remote}: already serving {} connections",
                node.max_connections
            );
            continue;
        }
        let (node, open_connections) = (node.clone(), open_connections.clone());
        rt::spawn(async move {
            serve_connection(node, stream, remote).await;
            open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    let stopping = Instant::now();
    while open_connections.load(Ordering::Relaxed) > 0 && stopping.elapsed() < GRACE {
        rt::sleep(Duration::from_millis(5)).await;
    }
    let left = open_connections.load(Ordering::Relaxed);
    crate::info!(
        "stopped in {} ms: port closed, {}",
        stopping.elapsed().as_millis(),
        if left == 0 {
            "every connection finished its requests".to_string()
        } else {
            format!(
                "{left} connections still busy after {} ms were cut off",
                GRACE.as_millis()
            )
        }
    );
}
