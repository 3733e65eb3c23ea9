//! Reading a snapshot file a request names: only a regular file beneath
//! the server's snapshot directory, of bounded size, off the async
//! threads, and only for a token that may evaluate its service.

use super::snapshot::{SnapshotFrom, parse_snapshot};
use crate::server::auth::Grant;
use crate::server::{ApiError, AppState};
use crate::snapshot::Snapshot;

/// Who asks to evaluate which policy: a snapshot file's service is checked
/// against it as soon as the file is read, before anything else is said of
/// the file.
#[derive(Clone, Copy)]
pub(in crate::server) struct Scope<'a> {
    pub(in crate::server) grant: &'a Grant,
    pub(in crate::server) policy: &'a str,
}

/// Why a snapshot file was not read.
enum FileRefusal {
    Missing,
    /// It leads outside the directory (`..`, an absolute or escaping
    /// symlink), or may not be read.
    Outside,
    NotAFile,
    TooLarge(u64),
    Unreadable,
}

/// Reads `name` beneath `dir` through a capability on the directory
/// (cap-std: no `..`, no absolute path, no symlink leading out, checked by
/// the kernel where `openat2` exists), non-blocking so a FIFO cannot hold
/// the open, and only a regular file of at most `max` bytes. Blocking: call
/// it off the async threads.
fn read_beneath(dir: &std::path::Path, name: &str, max: u64) -> Result<Vec<u8>, FileRefusal> {
    use cap_std::fs::OpenOptionsExt as _;
    use std::io::Read as _;
    let refusal = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => FileRefusal::Missing,
        std::io::ErrorKind::PermissionDenied => FileRefusal::Outside,
        _ => FileRefusal::Unreadable,
    };
    let dir = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
        .map_err(|_| FileRefusal::Unreadable)?;
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true).custom_flags(libc::O_NONBLOCK);
    let file = dir.open_with(name, &options).map_err(refusal)?;
    let meta = file.metadata().map_err(|_| FileRefusal::Unreadable)?;
    if !meta.is_file() {
        return Err(FileRefusal::NotAFile);
    }
    if meta.len() > max {
        return Err(FileRefusal::TooLarge(max));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow between the stat and the read.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| FileRefusal::Unreadable)?;
    if bytes.len() as u64 > max {
        return Err(FileRefusal::TooLarge(max));
    }
    Ok(bytes)
}

/// Reads and parses `file` from the server's snapshot directory, off the
/// async threads. Only a regular file beneath the directory is read, of at
/// most the body limit; an error names the file as asked and quotes
/// nothing of the file: not a value, not a key it does not know, not the
/// service of a file `scope` may not evaluate (a 403 that names only the
/// file). A token held to some services gets that same 403 for a file that
/// does not exist, so it cannot tell which files exist for other services.
pub(super) async fn snapshot_file(
    state: &AppState,
    file: &str,
    field: &str,
    scope: Scope<'_>,
) -> Result<Snapshot, ApiError> {
    let Some(dir) = &state.inner.config.snapshot_dir else {
        return Err(ApiError::unprocessable(
            "snapshot_files_disabled",
            "this server has no snapshot directory; send `snapshot` inline",
        )
        .field(field.to_string()));
    };
    let name = std::path::Path::new(file);
    let plain = name
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain || file.is_empty() || file.len() > 1024 {
        return Err(ApiError::unprocessable(
            "invalid_snapshot_file",
            "`snapshot_file` must be a relative path inside the snapshot directory",
        )
        .field(field.to_string()));
    }
    let shown = crate::base::text::shown(file);
    let not_allowed = || {
        ApiError::forbidden(format!(
            "this token may not evaluate policy `{}` with snapshot file `{shown}`",
            crate::base::text::shown(scope.policy)
        ))
        .field(field.to_string())
    };
    let every_service = scope.grant.may_evaluate_every_service(scope.policy);
    let max = u64::try_from(state.inner.config.body_limit).unwrap_or(u64::MAX);
    let (dir, name, owned_field, file_shown) = (
        dir.clone(),
        file.to_string(),
        field.to_string(),
        shown.clone(),
    );
    let read = tokio::task::spawn_blocking(move || {
        let field = owned_field;
        let refused = |why: String| {
            ApiError::unprocessable(
                "snapshot_file_refused",
                format!("snapshot file `{file_shown}` {why}"),
            )
            .field(field.clone())
        };
        let bytes = read_beneath(&dir, &name, max).map_err(|r| match r {
            FileRefusal::Missing => Err(ApiError::not_found(
                "unknown_snapshot_file",
                format!("no snapshot file `{file_shown}`"),
            )
            .field(field.clone())),
            FileRefusal::Outside => Ok(refused(
                "leads outside the snapshot directory, or may not be read: only files beneath it are read".into(),
            )),
            FileRefusal::NotAFile => Ok(refused("is not a regular file".into())),
            FileRefusal::TooLarge(max) => Ok(refused(format!(
                "is larger than the {} limit",
                crate::engine::human_bytes(usize::try_from(max).unwrap_or(usize::MAX))
            ))),
            FileRefusal::Unreadable => Ok(refused("cannot be read".into())),
        });
        match bytes {
            Ok(bytes) => Ok(parse_snapshot(&bytes, &field, SnapshotFrom::File(&file_shown))),
            Err(refusal) => Err(refusal),
        }
    })
    .await
    .map_err(ApiError::internal)?;
    let snapshot = match read {
        Ok(parsed) => parsed?,
        // A missing file: a 404 only for a token that may see every file.
        Err(Err(missing)) if every_service => return Err(missing),
        Err(Err(_)) => return Err(not_allowed()),
        Err(Ok(refused)) => return Err(refused),
    };
    if !scope
        .grant
        .may_evaluate_service(scope.policy, &snapshot.service)
    {
        return Err(not_allowed());
    }
    Ok(snapshot)
}
