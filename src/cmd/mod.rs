//! One module per `ringkv` subcommand: its flags and its `run`.

pub mod bench;
pub mod client;
pub mod dump;
pub mod encode;
pub mod repair;
pub mod replica;
pub mod status;

/// The longest timeout any subcommand's flags accept: an hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Refuses a timeout flag outside 1 ms to an hour, naming the flag.
fn checked_timeout_ms(flag: &str, value: u64) -> Result<u64, String> {
    if (1..=MAX_TIMEOUT_MS).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{flag} must be between 1 and {MAX_TIMEOUT_MS}"))
    }
}
