//! Bearer-token auth. Only SHA-256 hashes of the tokens are kept, and a
//! presented token is compared with every stored hash in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// Which tokens are accepted, and which of them may administer.
#[derive(Clone, Default)]
pub struct Tokens {
    /// `None` disables auth entirely (`--insecure-no-auth`).
    hashes: Option<Vec<([u8; 32], bool)>>,
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token file `{path}` line {line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Accepts any request. Only for local use; the server warns.
    pub fn disabled() -> Self {
        Self { hashes: None }
    }

    /// Accepts exactly these tokens; `admin` ones may also reload.
    pub fn from_plain(tokens: &[(String, bool)]) -> Self {
        Self {
            hashes: Some(tokens.iter().map(|(t, admin)| (hash(t), *admin)).collect()),
        }
    }

    /// Reads a token file: one token per line, optionally followed by
    /// ` admin`; blank lines and `#` comments are ignored. Tokens must be at
    /// least 16 characters.
    pub fn from_file(path: &std::path::Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let text = crate::files::read_text(path).map_err(|e| TokenError::Read {
            path: shown.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let token = words.next().unwrap_or_default();
            let admin = match words.next() {
                None => false,
                Some("admin") => true,
                Some(other) => {
                    return Err(TokenError::Invalid {
                        path: shown,
                        line: i + 1,
                        message: format!("unknown role `{other}`; expected `admin` or nothing"),
                    });
                }
            };
            if token.len() < 16 {
                return Err(TokenError::Invalid {
                    path: shown,
                    line: i + 1,
                    message: "tokens must be at least 16 characters".into(),
                });
            }
            tokens.push((token.to_string(), admin));
        }
        if tokens.is_empty() {
            return Err(TokenError::Invalid {
                path: shown,
                line: 0,
                message: "no tokens".into(),
            });
        }
        Ok(Self::from_plain(&tokens))
    }

    /// `Some(is_admin)` when the `Authorization` header carries a known token.
    fn check(&self, header: Option<&str>) -> Option<bool> {
        let Some(hashes) = &self.hashes else {
            return Some(true);
        };
        let presented = hash(header?.strip_prefix("Bearer ")?.trim());
        let mut found = None;
        // Compare against every hash so timing does not reveal which matched.
        for (h, admin) in hashes {
            if bool::from(h.ct_eq(&presented)) {
                found = Some(*admin);
            }
        }
        found
    }

    /// Whether auth is switched off.
    pub fn is_disabled(&self) -> bool {
        self.hashes.is_none()
    }
}

fn authorization(req: &Request) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION)?.to_str().ok()
}

/// Rejects requests without a valid token.
pub(super) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match state.inner.tokens.check(authorization(&req)) {
        Some(_) => next.run(req).await,
        None => ApiError::unauthorized().into_response(),
    }
}

/// Rejects requests without a valid admin token.
pub(super) async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match state.inner.tokens.check(authorization(&req)) {
        Some(true) => next.run(req).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_tokens_and_distinguishes_admins() {
        let t = Tokens::from_plain(&[
            ("reader-token-0123456789".into(), false),
            ("admin-token-0123456789".into(), true),
        ]);
        assert_eq!(t.check(Some("Bearer reader-token-0123456789")), Some(false));
        assert_eq!(t.check(Some("Bearer admin-token-0123456789")), Some(true));
        assert_eq!(t.check(Some("Bearer nope")), None);
        assert_eq!(t.check(Some("reader-token-0123456789")), None);
        assert_eq!(t.check(None), None);
        assert_eq!(Tokens::disabled().check(None), Some(true));
    }

    #[test]
    fn token_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# ci\nci-token-0123456789abcdef\nops-token-0123456789abcdef admin\n",
        )
        .unwrap();
        let t = Tokens::from_file(&path).unwrap();
        assert_eq!(
            t.check(Some("Bearer ops-token-0123456789abcdef")),
            Some(true)
        );
        std::fs::write(&path, "short\n").unwrap();
        assert!(Tokens::from_file(&path).is_err());
    }
}
