//! The checks every side makes of values from the wire, each failing with
//! a typed INVALID error: a key present and within 0..=255, a value within
//! the limit, a consistency level that is set and known (on the wire, or
//! typed in a console).

use std::str::FromStr;

use crate::protocol::error::KvError;
use crate::protocol::proto::{Consistency, MAX_KEY};

/// Checks a key field from the wire: present and within 0..=255.
pub fn checked_key(key: Option<u32>) -> Result<u8, KvError> {
    match key {
        None => Err(KvError::invalid("the request has no key")),
        Some(k) => u8::try_from(k).map_err(|_| {
            KvError::invalid(format!("key {k} is out of range: keys are 0-{MAX_KEY}"))
        }),
    }
}

/// Checks a value against the replica's size limit.
pub fn checked_value(value: &str, max_value_bytes: usize) -> Result<(), KvError> {
    if value.len() > max_value_bytes {
        return Err(KvError::invalid(format!(
            "value is {} bytes; the limit is {max_value_bytes} bytes",
            value.len()
        )));
    }
    Ok(())
}

impl Consistency {
    /// Reads a level from the wire, refusing unset and unknown values.
    pub fn from_wire(value: i32) -> Result<Self, KvError> {
        match Consistency::try_from(value) {
            Ok(Consistency::Unspecified) => Err(KvError::invalid(
                "the request names no consistency level (ONE, QUORUM, ALL, or SERIAL for gets)",
            )),
            Ok(level) => Ok(level),
            Err(_) => Err(KvError::invalid(format!(
                "unknown consistency level {value}: expected ONE, QUORUM, ALL or SERIAL"
            ))),
        }
    }
}

impl FromStr for Consistency {
    type Err = KvError;

    /// Parses ONE, QUORUM, ALL or SERIAL, in any case.
    fn from_str(text: &str) -> Result<Self, KvError> {
        match text.to_ascii_uppercase().as_str() {
            "ONE" => Ok(Consistency::One),
            "QUORUM" => Ok(Consistency::Quorum),
            "ALL" => Ok(Consistency::All),
            "SERIAL" => Ok(Consistency::Serial),
            _ => Err(KvError::invalid(format!(
                "unknown consistency level '{text}': expected ONE, QUORUM, ALL or SERIAL"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_count() {
        assert_eq!("quorum".parse::<Consistency>(), Ok(Consistency::Quorum));
        assert!("TWO".parse::<Consistency>().is_err());
        assert_eq!(Consistency::One.required_acks(3), 1);
        assert_eq!(Consistency::Quorum.required_acks(3), 2);
        assert_eq!(Consistency::All.required_acks(3), 3);
        assert!(Consistency::from_wire(0).is_err());
        assert!(Consistency::from_wire(9).is_err());
        assert_eq!(Consistency::from_wire(2), Ok(Consistency::Quorum));
    }

    #[test]
    fn keys_outside_the_ring_are_refused() {
        assert_eq!(checked_key(Some(255)), Ok(255));
        assert!(checked_key(Some(256)).is_err());
        assert!(checked_key(None).is_err());
    }
}
