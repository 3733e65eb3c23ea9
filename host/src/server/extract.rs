//! Reading requests: bodies (bounded in size and time, JSON only), JSON
//! with the path of the first problem and no key twice, durations,
//! snapshots and where they come from.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::Value;

use super::service::Input;
use super::{ApiError, AppState};
use crate::snapshot::Snapshot;

/// How long a handler waits for a request body, set per request by
/// [`track_request`] from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyReadTimeout(pub(super) Duration);

/// A body read as bytes, with an over-limit body answered as 413 and a body
/// that does not arrive in time as 408, in the common error shape.
pub(super) struct RawBody(pub(super) Bytes);

/// Whether one `Content-Type` value is JSON: `application/json` or
/// `application/*+json` (RFC 6839), in any case, with parameters; a
/// `charset`, when given, is UTF-8, the only one JSON has (RFC 8259).
pub(super) fn is_json_media_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let subtype = subtype.to_ascii_lowercase();
    let json = subtype == "json"
        || subtype
            .strip_suffix("+json")
            .is_some_and(|prefix| token(prefix) && prefix != "*");
    if !kind.eq_ignore_ascii_case("application") || !token(&subtype) || !json {
        return false;
    }
    parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let v = value.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        Some((name, _)) => token(name.trim()),
        None => param.trim().is_empty(),
    })
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Exactly one JSON content type: none, two, or another type (even
        // one that starts like it, `application/json-evil`) is 415.
        let mut types = req.headers().get_all(header::CONTENT_TYPE).iter();
        let is_json = match (types.next(), types.next()) {
            (Some(v), None) => v.to_str().is_ok_and(is_json_media_type),
            _ => false,
        };
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send `Content-Type: application/json` (or `application/*+json`) with a JSON body",
            )
            .field("Content-Type"));
        }
        let limit = req
            .extensions()
            .get::<BodyReadTimeout>()
            .map_or(Duration::from_secs(30), |t| t.0);
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {}",
                        humantime::format_duration(limit)
                    ),
                )
            })?;
        read.map(RawBody).map_err(|e| {
            if caused_by::<super::limits::BudgetFull>(&e) {
                ApiError::busy(super::limits::BudgetFull.to_string())
            } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE
                || caused_by::<http_body_util::LengthLimitError>(&e)
            {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "request body exceeds the size limit",
                )
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })
    }
}

/// Whether `E` is somewhere in `error`'s chain of causes.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Where a JSON value sits, built only when a duplicate is found.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn path(&self) -> String {
        match self {
            Self::Root => String::new(),
            Self::Key(parent, key) => match parent.path() {
                p if p.is_empty() => (*key).to_string(),
                p => format!("{p}.{key}"),
            },
            Self::Index(parent, i) => format!("{}[{i}]", parent.path()),
        }
    }
}

/// Walks a JSON value, failing at the first object key seen twice and
/// noting its path in `found`.
struct NoDuplicates<'a> {
    at: &'a At<'a>,
    found: &'a RefCell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let at = At::Index(self.at, i);
            let item = NoDuplicates {
                at: &at,
                found: self.found,
            };
            if seq.next_element_seed(item)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = At::Key(self.at, &key);
            if seen.contains(&key) {
                *self.found.borrow_mut() = Some(at.path());
                return Err(serde::de::Error::custom("duplicate key"));
            }
            map.next_value_seed(NoDuplicates {
                at: &at,
                found: self.found,
            })?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// What walking a JSON text for keys given twice found.
enum Walk {
    /// Every object of the text was walked: no key twice.
    Clean,
    /// 400 naming the first key given twice.
    Duplicate(ApiError),
    /// The walk stopped before the end (not JSON, or nested deeper than
    /// serde_json's 128 levels), so keys past that point were not checked.
    Stopped(serde_json::Error),
}

/// Walks `bytes` for the first object key that appears twice (its path
/// under `prefix`): a reader that takes the first and one that takes the
/// last (serde takes the last) would act on different requests.
fn walk_keys(bytes: &[u8], prefix: &str) -> Walk {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = serde::de::DeserializeSeed::deserialize(
        NoDuplicates {
            at: &At::Root,
            found: &found,
        },
        &mut de,
    );
    let Some(path) = found.into_inner() else {
        return match walked {
            Ok(()) => Walk::Clean,
            Err(e) => Walk::Stopped(e),
        };
    };
    let path = join(prefix, &path);
    let (within, key) = match path.rsplit_once('.') {
        Some((within, key)) if !key.contains('[') => (Some(within), key),
        _ => (None, path.as_str()),
    };
    let message = match within {
        Some(w) => format!(
            "duplicate key `{}` in `{}`: give each key once",
            crate::text::shown(key),
            shown_path(w)
        ),
        None => format!(
            "duplicate key `{}`: give each key once",
            crate::text::shown(key)
        ),
    };
    Walk::Duplicate(ApiError::bad_request("duplicate_key", message).field(shown_path(&path)))
}

/// 400 for a body whose keys could not all be checked, though a typed
/// reader (which skips what it ignores without a depth limit) read it: what
/// was not checked is refused, never passed.
fn unchecked(e: &serde_json::Error) -> ApiError {
    let message = if e.to_string().starts_with("recursion limit exceeded") {
        format!(
            "malformed JSON: nested more than 128 levels deep at line {} column {}",
            e.line(),
            e.column()
        )
    } else {
        format!("malformed JSON: {}", shown_message(&e.to_string()))
    };
    ApiError::bad_request("malformed_json", message)
}

/// Characters of a JSON path an error names at most.
const SHOWN_PATH_CHARS: usize = 256;

/// A JSON path built from request keys, as an error's `field` or message
/// names it: escaped, and cut to [`SHOWN_PATH_CHARS`] characters.
pub(super) fn shown_path(path: &str) -> String {
    let mut chars = path.chars();
    let short: String = chars.by_ref().take(SHOWN_PATH_CHARS).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    format!("{}{cut}", crate::text::escape_control(&short))
}

/// Characters of a parser's message an error quotes at most.
const SHOWN_MESSAGE_CHARS: usize = 1024;

/// A parser's message (serde's `unknown field `…``, `invalid type: string
/// "…"`) as an error quotes it: each run of request text it quotes, between
/// backquotes or double quotes, cut to [`crate::text::SHOWN_CHARS`]
/// characters, control characters escaped, and the whole bounded.
pub(super) fn shown_message(message: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let (mut run, mut backslash) = (0, false);
    for c in message.chars().take(SHOWN_MESSAGE_CHARS * 64) {
        match quote {
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    quote = Some(c);
                    (run, backslash) = (0, false);
                }
            }
            Some(q) => {
                if c == q && !backslash {
                    out.push(c);
                    quote = None;
                    continue;
                }
                // Only a double-quoted run (Rust's `{:?}`) has escapes.
                backslash = q == '"' && c == '\\' && !backslash;
                run += 1;
                if run <= crate::text::SHOWN_CHARS {
                    out.push(c);
                } else if run == crate::text::SHOWN_CHARS + 1 {
                    out.push('…');
                }
            }
        }
        if out.len() > SHOWN_MESSAGE_CHARS * 4 {
            break;
        }
    }
    let escaped = crate::text::escape_control(&out);
    let mut chars = escaped.chars();
    let short: String = chars.by_ref().take(SHOWN_MESSAGE_CHARS).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    format!("{short}{cut}")
}

/// Parses JSON, naming the JSON path of the first problem. A key given
/// twice in one object is a 400, and so is anything after the value
/// (`{…}{"policy":"hotfix"}`) and a body whose keys could not all be
/// checked: a body is read one way only.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = crate::files::without_bom(bytes);
    // Every body here is an object.
    if let Some(kind) = crate::files::json_not_an_object(bytes) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!("the body is {kind}; send a JSON object"),
        ));
    }
    let walk = walk_keys(bytes, "");
    if let Walk::Duplicate(e) = walk {
        return Err(e);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let parsed: T = serde_path_to_error::deserialize(&mut *de)
        .map_err(|e| typed_error(&e.path().to_string(), &e.into_inner()))?;
    de.end().map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!(
                "malformed JSON: {}; send one JSON object and nothing after it",
                shown_message(&e.to_string())
            ),
        )
    })?;
    match walk {
        Walk::Stopped(e) => Err(unchecked(&e)),
        Walk::Clean | Walk::Duplicate(_) => Ok(parsed),
    }
}

/// The error for a body the typed reader refused at `path`.
fn typed_error(path: &str, inner: &serde_json::Error) -> ApiError {
    // A syntax error before any key has no path; serde_path_to_error
    // shows that as `?`.
    let path = if path == "?" { "." } else { path };
    // A missing field has no path of its own; name it from the message.
    let message = inner.to_string();
    let path = match message
        .strip_prefix("missing field `")
        .and_then(|m| m.split_once('`'))
    {
        Some((field, _)) if path == "." => field.to_string(),
        Some((field, _)) => format!("{path}.{field}"),
        None => path.to_string(),
    };
    let err = if inner.is_syntax() || inner.is_eof() {
        ApiError::bad_request(
            "malformed_json",
            format!("malformed JSON: {}", shown_message(&message)),
        )
    } else {
        ApiError::unprocessable("invalid_request", shown_message(&message))
    };
    if path == "." {
        err
    } else {
        err.field(shown_path(&path))
    }
}

pub(super) fn parse_elapsed(elapsed: Option<&str>) -> Result<Option<Duration>, ApiError> {
    elapsed
        .map(|e| {
            humantime::parse_duration(e).map_err(|err| {
                ApiError::unprocessable(
                    "invalid_request",
                    format!(
                        "`{}` is not a duration: {}",
                        crate::text::shown(e),
                        duration_problem(&err)
                    ),
                )
                .field("elapsed")
            })
        })
        .transpose()
}

/// Why humantime refused a duration, quoting at most a bounded piece of
/// it (its own message quotes an unknown unit whole).
pub(super) fn duration_problem(err: &humantime::DurationError) -> String {
    match err {
        humantime::DurationError::UnknownUnit { unit, .. } => format!(
            "unknown unit `{}`; use ms, s, m, h or d, e.g. `20m`",
            crate::text::shown(unit)
        ),
        other => shown_message(&other.to_string()),
    }
}

/// Where a snapshot being parsed came from, for its errors.
#[derive(Clone, Copy)]
pub(super) enum SnapshotFrom<'a> {
    /// The request: its errors may quote what the caller sent.
    Request,
    /// A file in the snapshot directory, named as asked: its errors name
    /// the path of the problem, never a value (or unknown key) of the file.
    File(&'a str),
}

pub(super) fn parse_snapshot(
    bytes: &[u8],
    prefix: &str,
    from: SnapshotFrom<'_>,
) -> Result<Snapshot, ApiError> {
    let walk = walk_keys(crate::files::without_bom(bytes), prefix);
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

/// Where a request's snapshot comes from: sent whole (as JSON, or as JSON
/// text, which is what an Argo argument templated into a body becomes), a
/// file in the snapshot directory, or queried for `service` and `version`.
pub(super) struct SourceFields {
    pub(super) snapshot: Option<Box<serde_json::value::RawValue>>,
    pub(super) snapshot_file: Option<String>,
    pub(super) service: Option<String>,
    pub(super) version: Option<String>,
    /// End of the query window: unix seconds or RFC 3339.
    pub(super) at: Option<serde_json::Value>,
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

pub(super) fn parse_at(v: &serde_json::Value, field: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::unprocessable("invalid_request", "`at` must be unix seconds or RFC 3339")
            .field(field.to_string())
    };
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(bad),
        Value::String(s) => s.parse::<i64>().or_else(|_| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| bad())
        }),
        _ => Err(bad()),
    }
}

/// 422 when a request gives both `snapshot` and `snapshot_file`: which
/// one counts would be a guess.
fn one_snapshot(both: bool, prefix: &str) -> Result<(), ApiError> {
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

/// Who asks to evaluate which policy: a snapshot file's service is checked
/// against it as soon as the file is read, before anything else is said of
/// the file.
#[derive(Clone, Copy)]
pub(super) struct Scope<'a> {
    pub(super) grant: &'a super::auth::Grant,
    pub(super) policy: &'a str,
}

/// `service`, `version` and `at` given beside a snapshot.
struct Beside<'a> {
    service: Option<&'a str>,
    version: Option<&'a str>,
    at: Option<i64>,
}

/// 422 `ambiguous_snapshot` when a value given beside a snapshot is not the
/// snapshot's own: the snapshot decides, so a different one would be
/// silently set aside. A `version` fills a snapshot that has none (as
/// Flagger's `metadata.version` always has). Neither value is quoted: a
/// file's are not the caller's to see.
fn agree(snapshot: &mut Snapshot, beside: &Beside<'_>, prefix: &str) -> Result<(), ApiError> {
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
    pub(super) async fn input(
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

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// The snapshot a compatibility request names in string fields
/// (`metadata` of a Flagger hook, the query of an Argo GET): inline JSON
/// text under `snapshot`, a file under `snapshot_file`, or none, and then
/// it is queried for `service` (Flagger's canary `name` when absent) and
/// `version`. `service`, `version` and `at` beside a snapshot must be its
/// own ([`agree`]); the canary's `name` is no such value.
pub(super) async fn compat_input(
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

/// The parameters of a query string, by name; a name given twice is a 400
/// naming it (`prefix.name`), since which value counts would be a guess.
pub(super) fn unique_query(
    query: Option<&str>,
    prefix: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if out.contains_key(k.as_ref()) {
            return Err(ApiError::bad_request(
                "duplicate_key",
                format!(
                    "query parameter `{}` is given twice: give each parameter once",
                    crate::text::shown(&k)
                ),
            )
            .field(shown_path(&join(prefix, &k))));
        }
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
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
    let shown = crate::text::shown(file);
    let not_allowed = || {
        ApiError::forbidden(format!(
            "this token may not evaluate policy `{}` with snapshot file `{shown}`",
            crate::text::shown(scope.policy)
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

pub(super) use source_fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsers_message_quotes_bounded_escaped_text() {
        let long = format!("\u{1b}[2J{}", "a".repeat(10_000));
        let message = format!("unknown field `{long}`, expected `policy` or `stage`");
        let shown = shown_message(&message);
        assert!(shown.starts_with("unknown field `\\x1b[2Jaaa"), "{shown}");
        assert!(
            shown.ends_with("…`, expected `policy` or `stage`"),
            "{shown}"
        );
        assert!(shown.chars().count() < 150, "{shown}");
        // Rust's `{:?}` escapes a quote inside a double-quoted run.
        let typed = format!("invalid type: string \"a\\\"{long}\", expected a number");
        let shown = shown_message(&typed);
        assert!(shown.ends_with("…\", expected a number"), "{shown}");
        // A quote never closed still ends within the bound.
        assert!(shown_message(&format!("`{long}")).chars().count() < 150);
        assert!(shown_message(&"x".repeat(100_000)).chars().count() <= SHOWN_MESSAGE_CHARS + 1);
        assert_eq!(
            shown_path(&"k.".repeat(1000)).chars().count(),
            SHOWN_PATH_CHARS + 1
        );
    }
}
