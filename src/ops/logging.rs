//! One readable line per notable event, on standard error:
//! `2026-11-28T14:35:00.123456Z replica 2 WARN peer 3 is down: ...`.
//!
//! Scripts redirect standard error to each replica's log file. There is no
//! level filter: only events worth a line are logged, never one per request.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

static PROCESS_TAG: OnceLock<String> = OnceLock::new();

/// Names the process in every line it logs, e.g. `replica 2`. Set once at
/// start; later calls are ignored.
pub fn set_process_tag(tag: String) {
    let _ = PROCESS_TAG.set(tag);
}

/// How much a line matters to the operator reading the log.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    /// Something happened as expected: start, replay, peer up.
    Info,
    /// Something is off but handled: a peer down, a bad frame, a torn tail.
    Warn,
    /// Something failed that an operator must look at.
    Error,
}

/// Writes one line. Use the `info!`, `warn!` and `error!` macros.
pub fn write_line(level: Level, message: fmt::Arguments<'_>) {
    let level = match level {
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    };
    let tag = PROCESS_TAG.get().map(String::as_str).unwrap_or("ringkv");
    let line = format!(
        "{} {tag} {level} {message}\n",
        utc_timestamp(system_micros())
    );
    // Logging must never take a replica down, so a failed write is dropped.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Logs an expected event.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::ops::logging::write_line($crate::ops::logging::Level::Info, format_args!($($arg)*)) };
}

/// Logs a handled problem.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::ops::logging::write_line($crate::ops::logging::Level::Warn, format_args!($($arg)*)) };
}

/// Logs a failure an operator must look at.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::ops::logging::write_line($crate::ops::logging::Level::Error, format_args!($($arg)*)) };
}

/// The system clock, in microseconds since the epoch: log lines carry the
/// machine's time, never the write clock's (nor a test's pretended offset).
fn system_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Formats microseconds since the epoch as RFC 3339 UTC with microseconds.
pub fn utc_timestamp(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        micros % 1_000_000
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) date in the
/// proleptic Gregorian calendar (Howard Hinnant's well-known algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            utc_timestamp(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            utc_timestamp(1_795_876_500_250_000),
            "2026-11-28T14:35:00.250000Z"
        );
    }
}
