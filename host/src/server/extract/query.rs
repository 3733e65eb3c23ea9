//! Query strings, each parameter given once.

use std::collections::BTreeMap;

use super::join;
use super::shown::shown_path;
use crate::server::ApiError;

/// The parameters of a query string, by name; a name given twice is a 400
/// naming it (`prefix.name`), since which value counts would be a guess.
pub(in crate::server) fn unique_query(
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
                    crate::base::text::shown(&k)
                ),
            )
            .field(shown_path(&join(prefix, &k))));
        }
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
}
