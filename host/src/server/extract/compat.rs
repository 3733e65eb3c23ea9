//! Where a Flagger or Argo request's snapshot comes from, in string
//! fields: a Flagger hook's `metadata`, an Argo GET's query.

use std::collections::BTreeMap;

use serde_json::Value;

use super::snapshot::{SnapshotFrom, parse_snapshot};
use super::snapshot_file::{Scope, snapshot_file};
use super::source::{Beside, agree, one_snapshot};
use super::times::parse_at;
use crate::server::service::Input;
use crate::server::{ApiError, AppState};

/// The snapshot a compatibility request names in string fields
/// (`metadata` of a Flagger hook, the query of an Argo GET): inline JSON
/// text under `snapshot`, a file under `snapshot_file`, or none, and then
/// it is queried for `service` (Flagger's canary `name` when absent) and
/// `version`. `service`, `version` and `at` beside a snapshot must be its
/// own ([`agree`]); the canary's `name` is no such value.
pub(in crate::server) async fn compat_input(
    state: &AppState,
    meta: &BTreeMap<String, String>,
    field: &str,
    default_service: Option<&str>,
    scope: Scope<'_>,
) -> Result<Input, ApiError> {
    one_snapshot(
        meta.contains_key("snapshot") && meta.contains_key("snapshot_file"),
        field,
    )?;
    let at = meta
        .get("at")
        .map(|a| parse_at(&Value::String(a.clone()), &format!("{field}.at")))
        .transpose()?;
    let given = if let Some(inline) = meta.get("snapshot") {
        Some(parse_snapshot(
            inline.as_bytes(),
            &format!("{field}.snapshot"),
            SnapshotFrom::Request,
        )?)
    } else if let Some(file) = meta.get("snapshot_file") {
        Some(snapshot_file(state, file, &format!("{field}.snapshot_file"), scope).await?)
    } else {
        None
    };
    if let Some(mut snapshot) = given {
        let beside = Beside {
            service: meta.get("service").map(String::as_str),
            version: meta.get("version").map(String::as_str),
            at,
        };
        agree(&mut snapshot, &beside, field)?;
        return Ok(Input::Given(snapshot));
    }
    Ok(Input::Query {
        service: meta
            .get("service")
            .map(String::as_str)
            .or(default_service)
            .unwrap_or_default()
            .to_string(),
        version: meta.get("version").cloned().unwrap_or_default(),
        at,
        field: if field == "metadata" {
            "metadata.service"
        } else {
            "query.service"
        },
    })
}
