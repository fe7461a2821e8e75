//! Checking files before they are sent (DESIGN decision 9): each must exist, be a regular
//! file, and be no larger than `imessage.mediaMaxMb`. The one part of `outbound` that looks
//! at the disk; the planning itself stays pure.

use std::path::Path;

/// Why a file cannot be sent, in words for a log line and a notice in the chat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {why}")]
pub struct FileRefused {
    pub path: String,
    pub why: String,
}

/// The file's size when it may be sent; `max_mb` 0 means no limit.
pub fn check(path: &str, max_mb: u64) -> Result<u64, FileRefused> {
    let refuse = |why: String| FileRefused {
        path: path.to_string(),
        why,
    };
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(refuse("not an absolute path".into()));
    }
    let meta = std::fs::metadata(p).map_err(|e| {
        refuse(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => format!("cannot be read ({e})"),
        })
    })?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let max = max_mb.saturating_mul(1024 * 1024);
    if max > 0 && meta.len() > max {
        return Err(refuse(format!(
            "{} bytes, larger than imessage.mediaMaxMb ({max_mb} MB)",
            meta.len()
        )));
    }
    Ok(meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directories_oversized_and_relative_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("a.txt");
        std::fs::write(&ok, b"hello").unwrap();
        assert_eq!(check(ok.to_str().unwrap(), 16), Ok(5));
        let big = dir.path().join("big.bin");
        std::fs::write(&big, vec![0u8; 1024 * 1024 + 1]).unwrap();
        let e = check(big.to_str().unwrap(), 1).unwrap_err();
        assert!(
            e.why
                .contains("1048577 bytes, larger than imessage.mediaMaxMb (1 MB)"),
            "{e}"
        );
        assert_eq!(check(big.to_str().unwrap(), 0), Ok(1024 * 1024 + 1));
        let e = check(dir.path().join("nope").to_str().unwrap(), 16).unwrap_err();
        assert_eq!(e.why, "no such file");
        let e = check(dir.path().to_str().unwrap(), 16).unwrap_err();
        assert_eq!(e.why, "not a regular file");
        assert_eq!(check("a.txt", 16).unwrap_err().why, "not an absolute path");
    }
}
