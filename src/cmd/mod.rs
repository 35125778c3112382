//! One module per `ringkv` subcommand: its flags and its `run`.

pub mod bench;
pub mod client;
pub mod dump;
pub mod encode;
pub mod repair;
pub mod replica;
pub mod status;
