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

/// The cluster file a subcommand uses: `--config`, else `$RINGKV_CONFIG`,
/// else `cluster.conf` in the current directory, else the repository's
/// `scripts/cluster.conf` (so commands run from a clone's root just work).
pub fn cluster_file(given: Option<&std::path::Path>) -> Result<std::path::PathBuf, String> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("RINGKV_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(path.into());
    }
    ["cluster.conf", "scripts/cluster.conf"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|path| path.is_file())
        .ok_or_else(|| {
            "no cluster file: give --config FILE, set RINGKV_CONFIG, or run where cluster.conf (or scripts/cluster.conf) is".to_string()
        })
}
