//! The shared secret of `--secret-file`: reading it, and comparing it in
//! constant time, so that how long a refusal takes says nothing about how
//! much of a guess was right.

use std::path::Path;

/// The largest secret file accepted.
const MAX_SECRET_BYTES: usize = 4096;

/// The secret of an optional `--secret-file` flag: `None` when the flag
/// was not given, every subcommand's way of reading it.
pub fn load_given(path: Option<&Path>) -> Result<Option<Vec<u8>>, String> {
    path.map(load).transpose()
}

/// Reads a secret file: its contents without trailing whitespace (a final
/// newline from an editor is not part of the secret). Refuses an empty,
/// unreadable or oversized file with a message naming it.
pub fn load(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "the secret file {} holds {} bytes; at most {MAX_SECRET_BYTES} are accepted",
            path.display(),
            bytes.len()
        ));
    }
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    if end == 0 {
        return Err(format!("the secret file {} is empty", path.display()));
    }
    Ok(bytes[..end].to_vec())
}

/// Whether `offered` equals `secret`, taking the same time whatever the
/// first differing byte (the length of the secret is not hidden).
pub fn matches(secret: &[u8], offered: &[u8]) -> bool {
    let mut difference = u8::from(secret.len() != offered.len());
    for (i, &byte) in secret.iter().enumerate() {
        difference |= byte ^ offered.get(i).copied().unwrap_or(!byte);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_matches() {
        assert!(matches(b"s3cret", b"s3cret"));
        assert!(!matches(b"s3cret", b"s3creT"));
        assert!(!matches(b"s3cret", b"s3cre"));
        assert!(!matches(b"s3cret", b"s3crets"));
        assert!(!matches(b"s3cret", b""));
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("ringkv-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("secret");
        std::fs::write(&file, "correct horse\n").expect("write");
        assert_eq!(load(&file).expect("load"), b"correct horse");
        std::fs::write(&file, " \n").expect("write");
        assert!(load(&file).expect_err("empty").contains("is empty"));
        assert!(load(&dir.join("missing"))
            .expect_err("missing")
            .contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
