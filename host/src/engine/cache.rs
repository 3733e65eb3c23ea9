//! Compiled plugins cached on disk, trusted only when no one else could have
//! written them.
//!
//! A cached artifact is native code that wasmtime maps and runs, so a file
//! planted in the cache runs as the tollgate user. The cache is therefore
//! used only when its directory and the versioned subdirectory belong to the
//! current user and no one else may write to them (OpenSSH's StrictModes
//! rule), artifacts are opened without following symlinks, and each artifact
//! carries an HMAC-SHA256 tag under a key that only this user can read: a
//! file this host did not write is never deserialized.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::base::digest::Digest;

type Tag = Hmac<Sha256>;

/// Bytes of the HMAC tag in front of every artifact.
const TAG_BYTES: usize = 32;
/// Key bytes: SHA-256's block size, so the key is used as is.
const KEY_BYTES: usize = 64;
/// Largest artifact read back; a compiled plugin is a few MiB at most.
const MAX_ARTIFACT_BYTES: u64 = 256 << 20;

/// The wasmtime release compiled in, so caches of other releases are kept
/// apart. Artifacts also carry wasmtime's own compatibility check.
const WASMTIME_SERIES: &str = "wasmtime-48";

/// A cache directory that passed the ownership checks, and its key.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    key: [u8; KEY_BYTES],
}

/// Why a cache directory is not used; said once, then plugins compile.
#[derive(Debug, thiserror::Error)]
#[error("compile cache `{path}` not used: {why}")]
pub struct CacheSkipped {
    pub path: PathBuf,
    pub why: CacheError,
}

/// What is wrong with a cache directory or its key. Each names the path; an
/// I/O cause is part of the message, not a `source()`, so it prints once.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("`{}`: {error}", dir.display())]
    Stat { dir: PathBuf, error: std::io::Error },
    #[error("`{}` is a symbolic link", .0.display())]
    Symlink(PathBuf),
    #[error("`{}` is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("`{}` is owned by uid {owner}, not by this user (uid {user})", dir.display())]
    NotOwned { dir: PathBuf, owner: u32, user: u32 },
    #[error("`{}` has mode {mode:o}: group or others may write to it", dir.display())]
    Writable { dir: PathBuf, mode: u32 },
    #[error("cannot create `{}`: {error}", dir.display())]
    Create { dir: PathBuf, error: std::io::Error },
    #[error("{0}")]
    KeyMetadata(std::io::Error),
    #[error("key `{}` has mode {mode:o}: others may read it", path.display())]
    KeyReadable { path: PathBuf, mode: u32 },
    #[error("key `{}`: {error}", path.display())]
    Key {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("key `{}` could not be read", .0.display())]
    KeyUnread(PathBuf),
}

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks that `dir` is a real directory (not a symlink), owned by this
/// user, and writable by no one else.
fn check_private(dir: &Path) -> Result<(), CacheError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|error| CacheError::Stat {
        dir: dir.to_path_buf(),
        error,
    })?;
    if meta.file_type().is_symlink() {
        return Err(CacheError::Symlink(dir.to_path_buf()));
    }
    if !meta.is_dir() {
        return Err(CacheError::NotADirectory(dir.to_path_buf()));
    }
    if meta.uid() != uid() {
        return Err(CacheError::NotOwned {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
            user: uid(),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CacheError::Writable {
            dir: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

fn create_private(dir: &Path) -> Result<(), CacheError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| CacheError::Create {
            dir: dir.to_path_buf(),
            error,
        })
}

/// Opens a regular file owned by this user without following a symlink.
fn open_own_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc_nofollow())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != uid() {
        return Err(std::io::Error::other(
            "not a regular file owned by this user",
        ));
    }
    Ok(file)
}

fn libc_nofollow() -> i32 {
    i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0)
}

impl Cache {
    /// Opens (creating, owner-only) `root/wasmtime-48` and its key. Fails
    /// with the reason when either directory could be written by someone
    /// else, or the key is unreadable or shared.
    pub(crate) fn open(root: &Path) -> Result<Self, CacheSkipped> {
        let skipped = |why: CacheError| CacheSkipped {
            path: root.to_path_buf(),
            why,
        };
        create_private(root).map_err(skipped)?;
        check_private(root).map_err(skipped)?;
        let dir = root.join(WASMTIME_SERIES);
        create_private(&dir).map_err(skipped)?;
        check_private(&dir).map_err(skipped)?;
        let key = Self::key(&dir).map_err(skipped)?;
        Ok(Self { dir, key })
    }

    /// Reads the cache key, or creates it (mode 0600, exclusive create, so
    /// two processes starting together agree on one key).
    fn key(dir: &Path) -> Result<[u8; KEY_BYTES], CacheError> {
        let path = dir.join("key");
        let key_error = |error| CacheError::Key {
            path: path.clone(),
            error,
        };
        for _ in 0..2 {
            match open_own_file(&path) {
                Ok(mut f) => {
                    let meta = f.metadata().map_err(CacheError::KeyMetadata)?;
                    if meta.mode() & 0o077 != 0 {
                        return Err(CacheError::KeyReadable {
                            path: path.clone(),
                            mode: meta.mode() & 0o7777,
                        });
                    }
                    let mut key = [0u8; KEY_BYTES];
                    f.read_exact(&mut key).map_err(key_error)?;
                    return Ok(key);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut key = [0u8; KEY_BYTES];
                    for chunk in key.chunks_mut(16) {
                        chunk.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                    }
                    match OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc_nofollow())
                        .open(&path)
                    {
                        Ok(mut f) => {
                            f.write_all(&key)
                                .and_then(|()| f.sync_all())
                                .map_err(key_error)?;
                            return Ok(key);
                        }
                        // Another process created it first: read theirs.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(key_error(e)),
                    }
                }
                Err(e) => return Err(key_error(e)),
            }
        }
        Err(CacheError::KeyUnread(path))
    }

    fn path(&self, digest: Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.hex()))
    }

    fn tag(&self, digest: Digest, artifact: &[u8]) -> Tag {
        let mut mac = <Tag as hmac::digest::KeyInit>::new(&self.key.into());
        mac.update(digest.hex().as_bytes());
        mac.update(artifact);
        mac
    }

    /// The artifact this host stored for `digest`, if present and its tag
    /// verifies; anything else (missing, foreign, truncated) is `None`.
    pub(crate) fn load(&self, digest: Digest) -> Option<Vec<u8>> {
        let file = open_own_file(&self.path(digest)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_ARTIFACT_BYTES + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() < TAG_BYTES || bytes.len() as u64 > MAX_ARTIFACT_BYTES {
            return None;
        }
        let artifact = bytes.split_off(TAG_BYTES);
        self.tag(digest, &artifact).verify_slice(&bytes).ok()?;
        Some(artifact)
    }

    /// Stores `artifact` for `digest`, atomically. Best effort: a cache that
    /// cannot be written only costs speed.
    pub(crate) fn store(&self, digest: Digest, artifact: &[u8]) {
        let tag = self.tag(digest, artifact).finalize().into_bytes();
        let _ = tempfile::NamedTempFile::new_in(&self.dir).and_then(|mut tmp| {
            tmp.write_all(&tag)?;
            tmp.write_all(artifact)?;
            tmp.persist(self.path(digest))
                .map(|_| ())
                .map_err(|e| e.error)
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn root() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn a_stored_artifact_loads_back() {
        let dir = root();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let d = Digest::of(b"plugin");
        cache.store(d, b"native code");
        assert_eq!(cache.load(d).as_deref(), Some(&b"native code"[..]));
    }

    #[test]
    fn a_world_writable_cache_dir_is_not_used() {
        let dir = root();
        let c = dir.path().join("c");
        std::fs::create_dir(&c).unwrap();
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Cache::open(&c).unwrap_err();
        assert!(
            err.to_string().contains("group or others may write"),
            "{err}"
        );
    }

    #[test]
    fn a_group_writable_versioned_dir_is_not_used() {
        let dir = root();
        let c = dir.path().join("c");
        std::fs::create_dir_all(c.join(WASMTIME_SERIES)).unwrap();
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(
            c.join(WASMTIME_SERIES),
            std::fs::Permissions::from_mode(0o770),
        )
        .unwrap();
        assert!(Cache::open(&c).is_err());
    }

    #[test]
    fn a_symlinked_cache_dir_is_not_used() {
        let dir = root();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = Cache::open(&link).unwrap_err();
        assert!(matches!(err.why, CacheError::Symlink(_)), "{err}");
        assert!(err.to_string().ends_with("is a symbolic link"), "{err}");
    }

    #[test]
    fn a_planted_artifact_is_never_loaded() {
        let dir = root();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let d = Digest::of(b"plugin");
        // Someone with write access plants a file with a made-up tag.
        let mut planted = vec![0u8; TAG_BYTES];
        planted.extend_from_slice(b"evil native code");
        std::fs::write(cache.path(d), planted).unwrap();
        assert_eq!(cache.load(d), None);
    }

    #[test]
    fn a_symlinked_artifact_is_not_followed() {
        let dir = root();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let d = Digest::of(b"plugin");
        let other = Digest::of(b"other");
        cache.store(other, b"code");
        std::os::unix::fs::symlink(cache.path(other), cache.path(d)).unwrap();
        assert_eq!(cache.load(d), None);
    }

    #[test]
    fn an_artifact_stored_under_another_digest_does_not_verify() {
        let dir = root();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        cache.store(a, b"code for a");
        std::fs::copy(cache.path(a), cache.path(b)).unwrap();
        assert_eq!(cache.load(b), None);
    }
}
