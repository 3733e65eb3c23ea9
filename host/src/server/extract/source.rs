//! Where an evaluate request's snapshot comes from, in the JSON fields of
//! its body: sent whole, a file in the snapshot directory, or queried for
//! `service` and `version`; what is given beside a snapshot must be its
//! own.

use serde_json::Value;

use super::join;
use super::snapshot::{SnapshotFrom, parse_snapshot};
use super::snapshot_file::{Scope, snapshot_file};
use super::times::parse_at;
use crate::server::service::Input;
use crate::server::{ApiError, AppState};
use crate::snapshot::Snapshot;

/// Where a request's snapshot comes from: sent whole (as JSON, or as JSON
/// text, which is what an Argo argument templated into a body becomes), a
/// file in the snapshot directory, or queried for `service` and `version`.
pub(in crate::server) struct SourceFields {
    pub(in crate::server) snapshot: Option<Box<serde_json::value::RawValue>>,
    pub(in crate::server) snapshot_file: Option<String>,
    pub(in crate::server) service: Option<String>,
    pub(in crate::server) version: Option<String>,
    /// End of the query window: unix seconds or RFC 3339.
    pub(in crate::server) at: Option<Value>,
}

/// Moves the snapshot-source fields of a request body into a
/// [`SourceFields`].
macro_rules! source_fields {
    ($body:expr) => {
        $crate::server::extract::SourceFields {
            snapshot: $body.snapshot,
            snapshot_file: $body.snapshot_file,
            service: $body.service,
            version: $body.version,
            at: $body.at,
        }
    };
}

/// 422 when a request gives both `snapshot` and `snapshot_file`: which
/// one counts would be a guess.
pub(super) fn one_snapshot(both: bool, prefix: &str) -> Result<(), ApiError> {
    if both {
        return Err(ApiError::unprocessable(
            "ambiguous_snapshot",
            format!(
                "give `{}` or `{}`, not both",
                join(prefix, "snapshot"),
                join(prefix, "snapshot_file")
            ),
        )
        .field(join(prefix, "snapshot_file")));
    }
    Ok(())
}

/// `service`, `version` and `at` given beside a snapshot.
pub(super) struct Beside<'a> {
    pub(super) service: Option<&'a str>,
    pub(super) version: Option<&'a str>,
    pub(super) at: Option<i64>,
}

/// 422 `ambiguous_snapshot` when a value given beside a snapshot is not the
/// snapshot's own: the snapshot decides, so a different one would be
/// silently set aside. A `version` fills a snapshot that has none (as
/// Flagger's `metadata.version` always has). Neither value is quoted: a
/// file's are not the caller's to see.
pub(super) fn agree(
    snapshot: &mut Snapshot,
    beside: &Beside<'_>,
    prefix: &str,
) -> Result<(), ApiError> {
    let differs = |what: &str, field: &str| {
        Err(ApiError::unprocessable(
            "ambiguous_snapshot",
            format!(
                "`{field}` is not the snapshot's `{what}`: give the snapshot alone, or the {what} it names"
            ),
        )
        .field(field.to_string()))
    };
    if let Some(service) = beside.service
        && service != snapshot.service
    {
        return differs("service", &join(prefix, "service"));
    }
    if let Some(version) = beside.version {
        if snapshot.version.is_empty() {
            snapshot.version = version.to_string();
        } else if version != snapshot.version {
            return differs("version", &join(prefix, "version"));
        }
    }
    if let Some(at) = beside.at
        && at != snapshot.taken_at
    {
        return differs("taken_at", &join(prefix, "at"));
    }
    Ok(())
}

impl SourceFields {
    /// The job input these fields describe; `prefix` is where they sit in
    /// the request, for error fields. `service`, `version` and `at` beside
    /// a snapshot must be its own ([`agree`]).
    pub(in crate::server) async fn input(
        self,
        state: &AppState,
        prefix: &str,
        scope: Scope<'_>,
    ) -> Result<Input, ApiError> {
        let at_field = join(prefix, "at");
        one_snapshot(
            self.snapshot.is_some() && self.snapshot_file.is_some(),
            prefix,
        )?;
        let at = self
            .at
            .as_ref()
            .map(|v| parse_at(v, &at_field))
            .transpose()?;
        let given = if let Some(raw) = self.snapshot {
            let field = join(prefix, "snapshot");
            // JSON text inside a string: parse what the string holds.
            let text: Option<String> = serde_json::from_str::<String>(raw.get()).ok();
            let bytes = text.as_deref().unwrap_or(raw.get()).as_bytes();
            Some(parse_snapshot(bytes, &field, SnapshotFrom::Request)?)
        } else if let Some(file) = self.snapshot_file {
            Some(snapshot_file(state, &file, &join(prefix, "snapshot_file"), scope).await?)
        } else {
            None
        };
        if let Some(mut snapshot) = given {
            let beside = Beside {
                service: self.service.as_deref(),
                version: self.version.as_deref(),
                at,
            };
            agree(&mut snapshot, &beside, prefix)?;
            return Ok(Input::Given(snapshot));
        }
        Ok(Input::Query {
            service: self.service.unwrap_or_default(),
            version: self.version.unwrap_or_default(),
            at,
            field: if prefix.is_empty() {
                "service"
            } else {
                "metadata.service"
            },
        })
    }
}

pub(in crate::server) use source_fields;
