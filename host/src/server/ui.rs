//! The web view at `/ui/`: releases, decisions with charts of what was
//! judged, policies, DORA figures and approvals, built from the same JSON
//! API a script uses and drawing nothing the API does not say.
//!
//! The page, its script and its style are embedded in the binary and served
//! without a token (they hold no data); every piece of data is fetched with
//! the token the user signs in with, which lives in the tab's session
//! storage and goes only in an `Authorization` header, never in a URL. The
//! Content-Security-Policy allows this origin's script and style only: no
//! inline script, no inline style, no other origin, no framing.

pub mod svg;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// What the view may load and do: its own script, style and data, nothing
/// inline, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");
const ICON: &str = include_str!("ui/icon.svg");

/// Bytes the view adds to the binary (and to memory): its embedded assets.
pub const ASSET_BYTES: usize = INDEX.len() + APP_JS.len() + APP_CSS.len() + ICON.len();

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The assets change only with the binary; `no-cache` revalidates, so an
    // upgraded server is never shown with a stale script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /ui`: to the view.
pub(super) async fn root() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/`: the page; the script routes within it by the URL fragment.
pub(super) async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/{asset}`: the script, the style sheet and the icon.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => page("text/javascript; charset=utf-8", APP_JS),
        "app.css" => page("text/css; charset=utf-8", APP_CSS),
        "icon.svg" => page("image/svg+xml", ICON),
        _ => {
            super::ApiError::not_found("not_found", "no such file in the web view").into_response()
        }
    }
}
