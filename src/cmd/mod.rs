//! One module per `ringkv` subcommand: its flags and its `run`.

pub mod client;
pub mod repair;
pub mod replica;
pub mod status;
