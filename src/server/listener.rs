//! The accept loop: one task per connection, at most `max_connections`
//! client connections and `max_peer_connections` peer connections at once
//! (`slots.rs`). Clients and peers share the port. On a stop (`shutdown.rs`) it
//! stops accepting and waits, up to the grace period, for every connection
//! to finish its requests and close: the end of the last connection is a
//! channel closing, not something polled for.

use std::sync::Arc;
use std::time::Instant;

use crate::ops::rt;
use crate::ops::shutdown::GRACE;
use crate::server::connection::serve_connection;
use crate::server::Node;

/// Accepts connections until a stop is requested, then closes the port and
/// returns once every connection has finished (or the grace period ends).
/// Connections over the limit are closed at once (and logged) so that the
/// ones being served keep their share.
pub async fn serve(node: Arc<Node>, listener: rt::TcpListener) {
    let slots = node.connections.clone();
    // Every connection's task holds a clone of `open`; once the listener
    // drops its own, `all_closed` ends with the last connection.
    let (open, all_closed) = rt::bounded::<()>(1);
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
        let Some(slot) = slots.admit() else {
            crate::warn!(
                "refusing connection from {remote}: already serving {} client and {} peer connections",
                node.max_connections,
                node.max_peer_connections
            );
            continue;
        };
        let (node, open) = (node.clone(), open.clone());
        rt::spawn(async move {
            serve_connection(node, stream, remote, slot).await;
            drop(open);
        });
    }
    drop(listener);
    let stopping = Instant::now();
    drop(open);
    let _ = rt::timeout(GRACE, all_closed.recv()).await;
    let left = slots.open();
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
