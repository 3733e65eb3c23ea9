//! Trigger state kept by the host between checks, so triggers stay pure
//! functions and any replica can serve the next check.
//!
//! State is keyed by policy, service and trigger. [`TriggerState`] is the seam
//! for other backends (a database for the server); [`StateFile`] backs the
//! CLI's `--state FILE`, and [`EphemeralState`] serves one-off evaluations.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Which trigger of which policy, for which service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    pub policy: String,
    pub service: String,
    pub trigger: String,
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.policy, self.service, self.trigger)
    }
}

/// State could not be read or written. The evaluation does not proceed:
/// a trigger must never run on silently lost state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write state file `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file `{path}` is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// Where trigger state lives between checks.
pub trait TriggerState {
    /// The state the trigger's last check returned, if any.
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError>;
    /// Records the state for the trigger's next check, durably.
    fn put(&mut self, key: &StateKey, state: Vec<u8>) -> Result<(), StateError>;
}

/// State held in memory, gone with the process.
#[derive(Debug, Default)]
pub struct EphemeralState(BTreeMap<String, Vec<u8>>);

impl TriggerState for EphemeralState {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.get(&key.to_string()).cloned())
    }

    fn put(&mut self, key: &StateKey, state: Vec<u8>) -> Result<(), StateError> {
        self.0.insert(key.to_string(), state);
        Ok(())
    }
}

/// State in a JSON file, rewritten atomically (temporary file, fsync,
/// rename) on every change, so a crash leaves either the old or the new file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    entries: BTreeMap<String, Vec<u8>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    triggers: BTreeMap<String, Entry>,
}

/// Text state is stored as text, so a person can read it; anything else as hex.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Entry {
    Text(String),
    Hex(String),
}

impl StateFile {
    /// Opens `path`; a missing file is an empty store.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let entries =
            match crate::base::files::read_limited(path, crate::base::files::MAX_SNAPSHOT_BYTES) {
                Err(e) if e.is_not_found() => BTreeMap::new(),
                Err(e) => {
                    return Err(StateError::Read {
                        path: path.to_path_buf(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
                Ok(bytes) => {
                    let corrupt = |message: String| StateError::Corrupt {
                        path: path.to_path_buf(),
                        message,
                    };
                    let file: FileFormat =
                        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                    if file.version != 1 {
                        return Err(corrupt(format!("unsupported version {}", file.version)));
                    }
                    file.triggers
                        .into_iter()
                        .map(|(k, v)| {
                            let bytes = match v {
                                Entry::Text(t) => t.into_bytes(),
                                Entry::Hex(h) => {
                                    hex::decode(&h).map_err(|e| corrupt(format!("`{k}`: {e}")))?
                                }
                            };
                            Ok((k, bytes))
                        })
                        .collect::<Result<_, StateError>>()?
                }
            };
        Ok(Self {
            path: path.to_path_buf(),
            entries,
        })
    }

    fn save(&self) -> Result<(), StateError> {
        let file = FileFormat {
            version: 1,
            triggers: self
                .entries
                .iter()
                .map(|(k, v)| {
                    let entry = match std::str::from_utf8(v) {
                        Ok(t) => Entry::Text(t.to_string()),
                        Err(_) => Entry::Hex(hex::encode(v)),
                    };
                    (k.clone(), entry)
                })
                .collect(),
        };
        let write = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        let mut text =
            serde_json::to_vec_pretty(&file).map_err(|e| write(std::io::Error::other(e)))?;
        text.push(b'\n');
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write)?;
        tmp.write_all(&text).map_err(write)?;
        tmp.as_file().sync_all().map_err(write)?;
        tmp.persist(&self.path).map_err(|e| write(e.error))?;
        Ok(())
    }
}

impl TriggerState for StateFile {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.entries.get(&key.to_string()).cloned())
    }

    fn put(&mut self, key: &StateKey, state: Vec<u8>) -> Result<(), StateError> {
        let k = key.to_string();
        if self.entries.get(&k) == Some(&state) {
            return Ok(());
        }
        self.entries.insert(k, state);
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str) -> StateKey {
        StateKey {
            policy: "p".into(),
            service: "s".into(),
            trigger: t.into(),
        }
    }

    #[test]
    fn file_store_round_trips_text_and_binary_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut store = StateFile::open(&path).unwrap();
        assert_eq!(store.get(&key("a")).unwrap(), None);
        store.put(&key("a"), b"open opened_at=5".to_vec()).unwrap();
        store.put(&key("b"), vec![0xff, 0x00]).unwrap();
        let reopened = StateFile::open(&path).unwrap();
        assert_eq!(
            reopened.get(&key("a")).unwrap(),
            Some(b"open opened_at=5".to_vec())
        );
        assert_eq!(reopened.get(&key("b")).unwrap(), Some(vec![0xff, 0x00]));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"p/s/a\": {\n      \"text\": \"open opened_at=5\""),
            "{text}"
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            StateFile::open(&path),
            Err(StateError::Corrupt { .. })
        ));
    }
}
