//! The replica's server side: the accept loop, one task per connection, and
//! the dispatch of each request to the coordinator or the local replica.

pub mod access;
pub mod connection;
pub mod handler;
pub mod listener;
pub mod slots;

pub use handler::Node;
pub use listener::serve;
