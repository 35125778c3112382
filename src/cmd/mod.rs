//! One module per `ringkv` subcommand: its flags and its `run`.

pub mod client;
pub mod replica;
pub mod status;
