//! JSON read one way only: the typed reader's errors name the JSON path of
//! the first problem, and a key given twice, or anything after the value,
//! is refused.

use std::cell::RefCell;
use std::collections::HashSet;

use super::join;
use super::shown::{shown_message, shown_path};
use crate::server::ApiError;

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
pub(super) enum Walk {
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
pub(super) fn walk_keys(bytes: &[u8], prefix: &str) -> Walk {
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
            crate::base::text::shown(key),
            shown_path(w)
        ),
        None => format!(
            "duplicate key `{}`: give each key once",
            crate::base::text::shown(key)
        ),
    };
    Walk::Duplicate(ApiError::bad_request("duplicate_key", message).field(shown_path(&path)))
}

/// 400 for a body whose keys could not all be checked, though a typed
/// reader (which skips what it ignores without a depth limit) read it: what
/// was not checked is refused, never passed.
pub(super) fn unchecked(e: &serde_json::Error) -> ApiError {
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

/// Parses JSON, naming the JSON path of the first problem. A key given
/// twice in one object is a 400, and so is anything after the value
/// (`{…}{"policy":"hotfix"}`) and a body whose keys could not all be
/// checked: a body is read one way only.
pub(in crate::server) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, ApiError> {
    let bytes = crate::base::files::without_bom(bytes);
    // Every body here is an object.
    if let Some(kind) = crate::base::files::json_not_an_object(bytes) {
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
