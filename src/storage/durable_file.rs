//! Small files replaced whole, atomically and durably: the clock lease, the
//! data directory's identity, the incarnations a replica knows its peers
//! by. A crash at any point leaves either the old contents or the new,
//! never a mix, and a replacement that returned has reached the disk.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes `contents` to a temporary file beside `path`, syncs it, renames
/// it over `path`, and syncs the directory so the rename is durable too.
pub fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let temporary = path.with_extension("tmp");
    let mut file = fs::File::create(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    fs::File::open(dir)?.sync_all()
}

/// `text` with a last line `crc XXXXXXXX`: the CRC-32 of everything
/// before it, so a damaged or hand-edited file is noticed.
pub fn with_crc(mut text: String) -> String {
    let crc = crc32fast::hash(text.as_bytes());
    text.push_str(&format!("crc {crc:08x}\n"));
    text
}

/// The lines before the last `crc` line of `text`, if the CRC matches.
pub fn checked(text: &str) -> Result<&str, String> {
    let body_end = text.rfind("crc ").ok_or("it has no crc line")?;
    let (body, crc_line) = text.split_at(body_end);
    let recorded = u32::from_str_radix(crc_line["crc ".len()..].trim(), 16)
        .map_err(|_| "its crc line is not a hex number".to_string())?;
    if crc32fast::hash(body.as_bytes()) != recorded {
        return Err("its checksum does not match".to_string());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_leaves_only_the_new_contents() {
        let dir = std::env::temp_dir().join(format!("ringkv-durable-{}", std::process::id()));
        let path = dir.join("nested").join("file");
        replace(&path, b"one").expect("first");
        replace(&path, b"two").expect("second");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert!(!path.with_extension("tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checksummed_text_is_returned_whole_and_an_edit_is_noticed() {
        let text = with_crc("a 1\nb 2\n".to_string());
        assert_eq!(checked(&text), Ok("a 1\nb 2\n"));
        assert!(checked(&text.replace("b 2", "b 3")).is_err());
        assert!(checked("a 1\n").is_err());
    }
}
