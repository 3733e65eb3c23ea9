//! Parsing a snapshot from a request or a snapshot file, errors naming
//! where the problem is and, for a file, never what the file says.

use super::json::{Walk, unchecked, walk_keys};
use super::shown::{shown_message, shown_path};
use crate::server::ApiError;
use crate::snapshot::Snapshot;

/// Where a snapshot being parsed came from, for its errors.
#[derive(Clone, Copy)]
pub(super) enum SnapshotFrom<'a> {
    /// The request: its errors may quote what the caller sent.
    Request,
    /// A file in the snapshot directory, named as asked: its errors name
    /// the path of the problem, never a value (or unknown key) of the file.
    File(&'a str),
}

/// Parses a snapshot at `prefix` of the request, refusing a key given
/// twice; `from` says what its errors may quote.
pub(super) fn parse_snapshot(
    bytes: &[u8],
    prefix: &str,
    from: SnapshotFrom<'_>,
) -> Result<Snapshot, ApiError> {
    let walk = walk_keys(crate::base::files::without_bom(bytes), prefix);
    if let Walk::Duplicate(e) = walk {
        return Err(e);
    }
    let snapshot = Snapshot::from_json(bytes).map_err(|e| {
        let (path, message) = match from {
            SnapshotFrom::Request => (e.path.as_str(), shown_message(&e.message)),
            SnapshotFrom::File(name) => {
                // An unknown field's path ends with its name, the file's
                // text: name where it sits, not what it is.
                let unknown = e.message.starts_with("unknown field");
                let path = if unknown {
                    e.path.rsplit_once('.').map_or("", |(parent, _)| parent)
                } else {
                    e.path.as_str()
                };
                let what = if unknown {
                    "has a field a snapshot does not have"
                } else {
                    "is not a valid snapshot"
                };
                let message = if path.is_empty() {
                    format!("snapshot file `{name}` {what}")
                } else {
                    format!("snapshot file `{name}` {what} at `{}`", shown_path(path))
                };
                (path, message)
            }
        };
        let field = if path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        ApiError::unprocessable("invalid_snapshot", message).field(shown_path(&field))
    })?;
    match walk {
        Walk::Stopped(e) => {
            let message = match from {
                SnapshotFrom::Request => unchecked(&e).message,
                SnapshotFrom::File(name) => {
                    format!("snapshot file `{name}` is not a valid snapshot")
                }
            };
            Err(ApiError::unprocessable("invalid_snapshot", message).field(prefix.to_string()))
        }
        Walk::Clean | Walk::Duplicate(_) => Ok(snapshot),
    }
}
