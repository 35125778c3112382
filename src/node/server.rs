//! The accept loop: one task per connection, at most `max_connections` at
//! once. Clients and peers share the port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::node::connection::serve_connection;
use crate::node::Node;
use crate::rt;

/// Accepts connections forever. Connections over the limit are closed at
/// once (and logged) so that the ones being served keep their share.
pub async fn serve(node: Arc<Node>, listener: rt::TcpListener) {
    let open_connections = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
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
}
