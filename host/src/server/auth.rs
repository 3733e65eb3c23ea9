//! Bearer-token auth with scopes. Only SHA-256 hashes of the tokens are
//! kept, and a presented token is compared with every stored hash in
//! constant time.
//!
//! A token file has one token per line, then its scopes:
//!
//! ```text
//! # CI may evaluate any policy and read the catalog:
//! ci-token-0123456789abcdef
//! # Flagger may evaluate only the canary policy:
//! flagger-token-0123456789 evaluate:canary
//! # dashboards may only read:
//! grafana-token-0123456789 read
//! ops-token-0123456789abcdef admin   # reload, and everything else
//! ```
//!
//! `#` starts a comment, on a line of its own or after the scopes.
//!
//! A line with no scope keeps its old meaning, `evaluate read`; `admin`
//! alone keeps its old meaning too, everything. Scopes: `evaluate` (every
//! policy) or `evaluate:a,b` (those policies), `read` (policies, plugins,
//! metrics, OpenAPI), `approve` (record approvals and checklist
//! attestations), `admin` (reload; implies the others). Two more words say
//! who holds the token, for approvals: `as:NAME` (the approver's name;
//! default the token's id) and `group:a,b` (the approver's groups):
//!
//! ```text
//! alice-token-0123456789abcdef approve read as:alice group:release-managers
//! ```

use std::collections::BTreeSet;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// Which policies a token may evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyScope {
    All,
    Only(BTreeSet<String>),
}

/// What one token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A short id for logs and records: never the token.
    pub id: String,
    pub evaluate: Option<PolicyScope>,
    pub read: bool,
    pub admin: bool,
    /// May record approvals and attestations.
    pub approve: bool,
    /// Who holds the token (`as:`), for approvals; the id when unnamed.
    pub identity: String,
    /// The holder's groups (`group:`), for approvals.
    pub groups: Vec<String>,
}

impl Grant {
    /// Everything, for a server without auth (its evaluate and read
    /// endpoints; admin stays closed, see [`Tokens::admin`]).
    fn open() -> Self {
        Self {
            id: "anonymous".into(),
            evaluate: Some(PolicyScope::All),
            read: true,
            admin: false,
            // An approval needs someone to have given it.
            approve: false,
            identity: "anonymous".into(),
            groups: Vec::new(),
        }
    }

    /// Whether this token may evaluate `policy`.
    pub fn may_evaluate(&self, policy: &str) -> bool {
        match &self.evaluate {
            Some(PolicyScope::All) => true,
            Some(PolicyScope::Only(names)) => names.contains(policy),
            None => false,
        }
    }

    /// 403 unless this token may evaluate `policy`.
    pub fn check_evaluate(&self, policy: &str) -> Result<(), ApiError> {
        if self.may_evaluate(policy) {
            Ok(())
        } else {
            Err(
                ApiError::forbidden(format!("this token may not evaluate policy `{policy}`"))
                    .field("policy"),
            )
        }
    }
}

/// Which tokens are accepted, and what each may do.
#[derive(Clone, Default)]
pub struct Tokens {
    grants: Vec<([u8; 32], Grant)>,
    /// `--insecure-no-auth`: evaluate and read need no token.
    open: bool,
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file `{path}`: {cause}")]
    Read { path: String, cause: String },
    #[error("token file `{path}` line {line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
    #[error("token file `{path}` holds no tokens: write one per line, at least 16 characters each")]
    Empty { path: String },
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn token_id(h: &[u8; 32]) -> String {
    format!("tok_{}", hex::encode(&h[..4]))
}

/// What a token file line says beside the token.
struct Scopes {
    evaluate: Option<PolicyScope>,
    read: bool,
    admin: bool,
    approve: bool,
    identity: Option<String>,
    groups: Vec<String>,
}

/// Parses a line's scopes (after the token).
fn scopes(words: &[&str]) -> Result<Scopes, String> {
    let (mut evaluate, mut read, mut admin, mut approve) = (None, false, false, false);
    let (mut identity, mut groups) = (None, Vec::new());
    let mut scoped = false;
    for w in words {
        if let Some(name) = w.strip_prefix("as:") {
            crate::approvals::check_name(name).map_err(|e| format!("`as:`: {e}"))?;
            identity = Some(name.to_string());
            continue;
        }
        if let Some(list) = w.strip_prefix("group:") {
            for g in list.split(',').filter(|g| !g.is_empty()) {
                crate::approvals::check_name(g).map_err(|e| format!("`group:`: {e}"))?;
                groups.push(g.to_string());
            }
            continue;
        }
        scoped = true;
        match *w {
            "admin" => admin = true,
            "read" => read = true,
            "approve" => approve = true,
            "evaluate" => evaluate = Some(PolicyScope::All),
            w if w.starts_with("evaluate:") => {
                let names: BTreeSet<String> = w["evaluate:".len()..]
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect();
                if names.is_empty() {
                    return Err(
                        "`evaluate:` needs policy names, e.g. `evaluate:canary,hotfix`".into(),
                    );
                }
                evaluate = match evaluate {
                    Some(PolicyScope::All) => Some(PolicyScope::All),
                    Some(PolicyScope::Only(mut old)) => {
                        old.extend(names);
                        Some(PolicyScope::Only(old))
                    }
                    None => Some(PolicyScope::Only(names)),
                };
            }
            other => {
                return Err(format!(
                    "unknown scope `{other}`; expected evaluate, evaluate:POLICY,…, read, approve, admin, as:NAME or group:A,B"
                ));
            }
        }
    }
    if !scoped {
        evaluate = Some(PolicyScope::All);
        read = true;
    }
    if admin {
        evaluate = Some(PolicyScope::All);
        read = true;
        approve = true;
    }
    Ok(Scopes {
        evaluate,
        read,
        admin,
        approve,
        identity,
        groups,
    })
}

impl Tokens {
    /// Evaluate and read need no token. Only for local use; the server
    /// warns. Admin endpoints stay closed.
    pub fn disabled() -> Self {
        Self {
            grants: Vec::new(),
            open: true,
        }
    }

    /// Like [`Tokens::disabled`], but the admin tokens of `self` still open
    /// the admin endpoints.
    #[must_use]
    pub fn opened(mut self) -> Self {
        self.open = true;
        self
    }

    /// Accepts exactly these tokens; `admin` ones may do everything, the
    /// others evaluate and read.
    pub fn from_plain(tokens: &[(String, bool)]) -> Self {
        Self {
            grants: tokens
                .iter()
                .map(|(t, admin)| {
                    let h = hash(t);
                    let grant = Grant {
                        id: token_id(&h),
                        evaluate: Some(PolicyScope::All),
                        read: true,
                        admin: *admin,
                        approve: *admin,
                        identity: token_id(&h),
                        groups: Vec::new(),
                    };
                    (h, grant)
                })
                .collect(),
            open: false,
        }
    }

    /// Reads a token file (format in the module doc). Blank lines and `#`
    /// comments are ignored; tokens must be at least 16 characters.
    pub fn from_file(path: &std::path::Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let text = crate::files::read_text(path).map_err(|e| TokenError::Read {
            path: shown.clone(),
            cause: e.to_string(),
        })?;
        let mut grants = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // A word starting with `#` after the token starts a comment.
            let mut words: Vec<&str> = line.split_whitespace().collect();
            if let Some(at) = words.iter().skip(1).position(|w| w.starts_with('#')) {
                words.truncate(at + 1);
            }
            let token = words.first().copied().unwrap_or_default();
            let invalid = |message: String| TokenError::Invalid {
                path: shown.clone(),
                line: i + 1,
                message,
            };
            if token.len() < 16 {
                return Err(invalid("tokens must be at least 16 characters".into()));
            }
            let s = scopes(&words[1..]).map_err(invalid)?;
            let h = hash(token);
            grants.push((
                h,
                Grant {
                    id: token_id(&h),
                    evaluate: s.evaluate,
                    read: s.read,
                    admin: s.admin,
                    approve: s.approve,
                    identity: s.identity.unwrap_or_else(|| token_id(&h)),
                    groups: s.groups,
                },
            ));
        }
        if grants.is_empty() {
            return Err(TokenError::Empty { path: shown });
        }
        Ok(Self {
            grants,
            open: false,
        })
    }

    /// The grant of a presented token, compared with every stored hash in
    /// constant time so timing does not reveal which matched.
    pub fn lookup(&self, token: &str) -> Option<Grant> {
        let presented = hash(token.trim());
        let mut found = None;
        for (h, grant) in &self.grants {
            if bool::from(h.ct_eq(&presented)) {
                found = Some(grant);
            }
        }
        found.cloned()
    }

    /// The grant for an `Authorization` header: `Bearer <token>`, the
    /// scheme matched case-insensitively (RFC 9110 §11.1).
    fn for_header(&self, header: Option<&str>) -> Option<Grant> {
        let (scheme, token) = header?.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.lookup(token)
    }

    /// Whether evaluate and read need no token.
    pub fn is_disabled(&self) -> bool {
        self.open
    }

    /// Whether any token may administer.
    pub fn has_admin(&self) -> bool {
        self.grants.iter().any(|(_, g)| g.admin)
    }
}

fn authorization(req: &Request) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION)?.to_str().ok()
}

/// Who is asking, once a route's check passed; handlers read it to check a
/// policy scope and to name the token in logs.
#[derive(Debug, Clone)]
pub(super) enum Caller {
    Token(Grant),
    /// No `Authorization` header on a route that may carry its token in
    /// the body (Flagger's metadata `token`).
    Unauthenticated,
}

/// Requires a token that may evaluate (the policy is checked by the
/// handler, which knows it).
pub(super) async fn require_evaluate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let tokens = &state.inner.tokens;
    let caller = match (authorization(&req), tokens.open) {
        (None, true) => Caller::Token(Grant::open()),
        (None, false) if req.uri().path().starts_with("/v1/compat/flagger/") => {
            Caller::Unauthenticated
        }
        (header, _) => match tokens.for_header(header) {
            Some(g) if g.evaluate.is_some() => Caller::Token(g),
            Some(_) => {
                return ApiError::forbidden("this token may not evaluate").into_response();
            }
            None if tokens.open && header.is_some() => Caller::Token(Grant::open()),
            None => return ApiError::unauthorized().into_response(),
        },
    };
    let token = match &caller {
        Caller::Token(g) => Some(g.id.clone()),
        Caller::Unauthenticated => None,
    };
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    super::service::AccessFacts::note(&mut response, |f| f.token = token);
    response
}

/// Requires a token that may read the catalog.
pub(super) async fn require_read(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let tokens = &state.inner.tokens;
    if tokens.open {
        return next.run(req).await;
    }
    match tokens.for_header(authorization(&req)) {
        Some(g) if g.read => {
            let mut response = next.run(req).await;
            super::service::AccessFacts::note(&mut response, |f| f.token = Some(g.id));
            response
        }
        Some(_) => ApiError::forbidden("this token may not read").into_response(),
        None => ApiError::unauthorized().into_response(),
    }
}

/// Requires a token with the `approve` scope, even on a server without
/// auth: an approval is worth only who gave it. The token's holder is the
/// approver.
pub(super) async fn require_approve(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    match state.inner.tokens.for_header(authorization(&req)) {
        Some(g) if g.approve => {
            let id = g.id.clone();
            req.extensions_mut().insert(super::approvals::Approver(g));
            let mut response = next.run(req).await;
            super::service::AccessFacts::note(&mut response, |f| f.token = Some(id));
            response
        }
        Some(_) => ApiError::forbidden(
            "this token may not approve: give it the `approve` scope (and `as:NAME`, `group:…`) in the token file",
        )
        .into_response(),
        None => ApiError::unauthorized().into_response(),
    }
}

/// Requires an admin token; admin endpoints are off when no token may
/// administer.
pub(super) async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let tokens = &state.inner.tokens;
    if !tokens.has_admin() {
        return ApiError::forbidden("admin endpoints are off: no admin token is configured")
            .into_response();
    }
    match tokens.for_header(authorization(&req)) {
        Some(g) if g.admin => {
            let mut response = next.run(req).await;
            super::service::AccessFacts::note(&mut response, |f| f.token = Some(g.id));
            response
        }
        Some(_) => ApiError::forbidden("not an admin token").into_response(),
        None => ApiError::unauthorized().into_response(),
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
        let reader = t
            .for_header(Some("Bearer reader-token-0123456789"))
            .unwrap();
        assert!(!reader.admin && reader.read && reader.may_evaluate("any"));
        assert!(
            t.for_header(Some("Bearer admin-token-0123456789"))
                .unwrap()
                .admin
        );
        assert_eq!(t.for_header(Some("Bearer nope")), None);
        assert_eq!(t.for_header(Some("reader-token-0123456789")), None);
        assert_eq!(t.for_header(None), None);
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let t = Tokens::from_plain(&[("reader-token-0123456789".into(), false)]);
        for h in [
            "bearer reader-token-0123456789",
            "BEARER reader-token-0123456789",
            "Bearer   reader-token-0123456789",
        ] {
            assert!(t.for_header(Some(h)).is_some(), "{h}");
        }
        assert!(
            t.for_header(Some("Basic reader-token-0123456789"))
                .is_none()
        );
    }

    #[test]
    fn a_token_file_with_only_comments_is_refused_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# readers\n\n").unwrap();
        let e = Tokens::from_file(&path).err().unwrap().to_string();
        assert!(
            e.ends_with("holds no tokens: write one per line, at least 16 characters each"),
            "{e}"
        );
    }

    #[test]
    fn token_files_carry_scopes_and_stay_backward_compatible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# ci\nci-token-0123456789abcdef\nops-token-0123456789abcdef admin\nflagger-token-0123456789 evaluate:canary,hotfix\ngrafana-token-0123456789 read\n",
        )
        .unwrap();
        let t = Tokens::from_file(&path).unwrap();
        let g = |tok: &str| t.lookup(tok).unwrap();
        let ci = g("ci-token-0123456789abcdef");
        assert!(ci.read && ci.may_evaluate("x") && !ci.admin);
        let ops = g("ops-token-0123456789abcdef");
        assert!(ops.admin && ops.read && ops.may_evaluate("x"));
        let flagger = g("flagger-token-0123456789");
        assert!(flagger.may_evaluate("canary") && !flagger.may_evaluate("ci-quality-gates"));
        assert!(!flagger.read && !flagger.admin);
        let grafana = g("grafana-token-0123456789");
        assert!(grafana.read && !grafana.may_evaluate("canary"));
        assert!(ci.id.starts_with("tok_") && ci.id != ops.id);
        std::fs::write(&path, "short\n").unwrap();
        assert!(Tokens::from_file(&path).is_err());
        std::fs::write(&path, "long-enough-token-0123 evaluate:\n").unwrap();
        assert!(Tokens::from_file(&path).is_err());
        std::fs::write(&path, "long-enough-token-0123 write\n").unwrap();
        let e = Tokens::from_file(&path).err().unwrap().to_string();
        assert!(e.contains("unknown scope `write`"), "{e}");
    }

    #[test]
    fn approvers_carry_their_name_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "alice-token-0123456789ab approve as:alice group:release-managers,sre\nnamed-token-0123456789ab as:ci-bot\nops-token-0123456789abcdef admin\n",
        )
        .unwrap();
        let t = Tokens::from_file(&path).unwrap();
        let alice = t.lookup("alice-token-0123456789ab").unwrap();
        assert!(alice.approve && !alice.read && alice.evaluate.is_none());
        assert_eq!(alice.identity, "alice");
        assert_eq!(alice.groups, ["release-managers", "sre"]);
        // A name alone is no scope: the old default, and no approving.
        let bot = t.lookup("named-token-0123456789ab").unwrap();
        assert!(bot.read && bot.may_evaluate("x") && !bot.approve);
        assert_eq!(bot.identity, "ci-bot");
        let ops = t.lookup("ops-token-0123456789abcdef").unwrap();
        assert!(ops.approve && ops.identity.starts_with("tok_"));
        std::fs::write(&path, "alice-token-0123456789ab approve as:al/ice\n").unwrap();
        let e = Tokens::from_file(&path).err().unwrap().to_string();
        assert!(e.contains("`as:`: `al/ice` is not a name"), "{e}");
    }

    #[test]
    fn a_trailing_comment_is_not_a_scope() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "ci-token-0123456789abcdef   # no scope\ngrafana-token-0123456789 read #admin\n",
        )
        .unwrap();
        let t = Tokens::from_file(&path).unwrap();
        let ci = t.lookup("ci-token-0123456789abcdef").unwrap();
        assert!(ci.read && ci.may_evaluate("x") && !ci.admin);
        let grafana = t.lookup("grafana-token-0123456789").unwrap();
        assert!(grafana.read && !grafana.admin && !grafana.may_evaluate("x"));
    }
}
