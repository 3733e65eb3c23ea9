//! What the access log says of a request beyond the request itself: the
//! auth layers and the handlers note it on the response, and the request
//! layer that writes the access log reads it from there.

use axum::response::Response;

/// What an access log line says beyond the request itself; layers and
/// handlers add to it on the way out.
#[derive(Debug, Clone, Default)]
pub(super) struct AccessFacts {
    pub(super) token: Option<String>,
    pub(super) decision_id: Option<String>,
}

impl AccessFacts {
    /// Records `f` on `response`'s facts.
    pub(super) fn note(response: &mut Response, f: impl FnOnce(&mut AccessFacts)) {
        let ext = response.extensions_mut();
        if ext.get::<AccessFacts>().is_none() {
            ext.insert(AccessFacts::default());
        }
        if let Some(facts) = ext.get_mut::<AccessFacts>() {
            f(facts);
        }
    }
}
