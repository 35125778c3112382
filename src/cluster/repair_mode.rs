//! Which of the two convergence mechanisms a replica runs: read repair,
//! hinted handoff, or both (`ringkv replica --repair MODE`).
//!
//! One thing does not follow the mode: the blocking repair of the replicas
//! that decided a QUORUM or ALL read. That repair is what makes quorum reads
//! monotonic (no read returns anything older than an earlier read at the
//! same level), so it runs in every mode. The mode decides the rest: the
//! background repair of late replicas after the reads that ask every
//! replica (their share is `--read-repair-chance`, whose default follows the
//! mode: see `read_plan`), and the hints a coordinator stores for replicas
//! that miss a write.

use std::fmt;
use std::str::FromStr;

/// How a replica helps the other replicas of a key catch up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairMode {
    /// Every read asks every replica and repairs each stale one it hears
    /// from (by default; `--read-repair-chance` can lower the share); no
    /// hints.
    ReadRepair,
    /// Coordinators keep hints for replicas that miss writes; reads repair
    /// only the replicas that decided them.
    HintedHandoff,
    /// Both of the above, with one read in ten asking every replica (by
    /// default): the default mode.
    Both,
}

impl RepairMode {
    /// Whether reads repair stale replicas in the background.
    pub fn background_read_repair(self) -> bool {
        matches!(self, RepairMode::ReadRepair | RepairMode::Both)
    }

    /// Whether coordinators store hints for replicas that miss writes.
    pub fn hinted_handoff(self) -> bool {
        matches!(self, RepairMode::HintedHandoff | RepairMode::Both)
    }

    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RepairMode::ReadRepair => "read-repair",
            RepairMode::HintedHandoff => "hinted-handoff",
            RepairMode::Both => "both",
        }
    }
}

impl fmt::Display for RepairMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RepairMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "read-repair" => Ok(RepairMode::ReadRepair),
            "hinted-handoff" => Ok(RepairMode::HintedHandoff),
            "both" => Ok(RepairMode::Both),
            other => Err(format!(
                "unknown repair mode '{other}': expected read-repair, hinted-handoff or both"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_say_what_they_run() {
        for mode in [
            RepairMode::ReadRepair,
            RepairMode::HintedHandoff,
            RepairMode::Both,
        ] {
            assert_eq!(mode.as_str().parse::<RepairMode>(), Ok(mode));
        }
        assert!("sometimes".parse::<RepairMode>().is_err());
        assert!(!RepairMode::ReadRepair.hinted_handoff());
        assert!(RepairMode::ReadRepair.background_read_repair());
        assert!(RepairMode::HintedHandoff.hinted_handoff());
        assert!(!RepairMode::HintedHandoff.background_read_repair());
        assert!(RepairMode::Both.hinted_handoff() && RepairMode::Both.background_read_repair());
    }
}
