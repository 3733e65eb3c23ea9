//! Reading requests: bodies (bounded in size and time, JSON only), JSON
//! with the path of the first problem and no key twice, durations,
//! snapshots and where they come from.

mod body;
mod compat;
mod evaluate;
mod json;
mod query;
mod shown;
mod snapshot;
mod snapshot_file;
mod source;
mod times;

pub(super) use self::body::{BodyReadTimeout, RawBody};
pub(super) use self::compat::compat_input;
pub(super) use self::evaluate::{EvaluateBody, idempotency_key, parse_schedule};
pub(super) use self::json::parse_json;
pub(super) use self::query::unique_query;
pub(super) use self::shown::{shown_message, shown_path};
pub(super) use self::snapshot_file::Scope;
pub(super) use self::source::{SourceFields, source_fields};
pub(super) use self::times::{duration_problem, parse_elapsed};

/// `field` under `prefix`, as a JSON path: `prefix.field`, or `field` at
/// the top.
fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}
