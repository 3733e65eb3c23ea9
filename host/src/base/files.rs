//! Reading files whose size someone else controls.
//!
//! A policy can name any path as a plugin (`/dev/zero`, a FIFO, a 40 GiB
//! file); a request can name a snapshot file. Every such read goes through
//! [`read_limited`]: regular files only, and never more than a stated bound.

use std::io::Read as _;
use std::path::Path;

/// Largest plugin component read: first-party plugins are a few hundred KiB,
/// interpreted ones (Python, JavaScript) tens of MiB.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;
/// Largest snapshot read from a file or stdin.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;
/// Largest policy, test case, token or configuration file read.
pub const MAX_TEXT_BYTES: u64 = 4 << 20;

/// Why a bounded read failed; the path is named by the caller.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than the {} limit", crate::base::text::human_bytes(usize::try_from(*.0).unwrap_or(usize::MAX)))]
    TooLarge(u64),
    #[error("not UTF-8 text")]
    NotText,
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads a regular file of at most `max` bytes.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge(max));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow between the stat and the read.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(max));
    }
    Ok(bytes)
}

/// Reads a UTF-8 text file of at most [`MAX_TEXT_BYTES`], without the
/// byte-order mark some Windows editors put first: it is not content, and
/// left in it becomes part of the first key or line.
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    let text =
        String::from_utf8(read_limited(path, MAX_TEXT_BYTES)?).map_err(|_| ReadError::NotText)?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// `bytes` without a leading UTF-8 byte-order mark.
pub fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// What JSON text holds when it is a value other than an object, from its
/// first byte: `an array`, `a string`, … . serde reads a struct from an
/// array too, and names the Rust type when it meets a scalar, so readers of
/// objects ask this first. `None` for an object, nothing, or text that is
/// not JSON (left to the parser's own syntax error).
pub fn json_not_an_object(bytes: &[u8]) -> Option<&'static str> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => Some("an array"),
        b'"' => Some("a string"),
        b'-' | b'0'..=b'9' => Some("a number"),
        b't' | b'f' => Some("a boolean"),
        b'n' => Some("null"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_loses_a_leading_byte_order_mark_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.yaml");
        std::fs::write(&p, "\u{feff}a: \u{feff}1\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "a: \u{feff}1\n");
    }

    #[test]
    fn json_values_other_than_objects_are_named() {
        assert_eq!(json_not_an_object(b" [1]"), Some("an array"));
        assert_eq!(json_not_an_object(b"-5"), Some("a number"));
        assert_eq!(json_not_an_object(b"null"), Some("null"));
        assert_eq!(json_not_an_object(b"{}"), None);
        assert_eq!(json_not_an_object(b""), None);
        assert_eq!(json_not_an_object(b"x"), None);
    }

    #[test]
    fn devices_are_refused_without_reading() {
        let err = read_limited(Path::new("/dev/zero"), MAX_PLUGIN_BYTES).unwrap_err();
        assert_eq!(err.to_string(), "not a regular file");
    }

    #[test]
    fn files_over_the_bound_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![0u8; 2048]).unwrap();
        assert_eq!(
            read_limited(&p, 1024).unwrap_err().to_string(),
            "larger than the 1 KiB limit"
        );
        assert_eq!(read_limited(&p, 2048).unwrap().len(), 2048);
    }

    #[test]
    fn directories_are_refused() {
        assert!(matches!(
            read_limited(Path::new("/"), 10),
            Err(ReadError::NotAFile) | Err(ReadError::Io(_))
        ));
    }
}
