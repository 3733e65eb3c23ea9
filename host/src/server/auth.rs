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
//! # team A's pipeline: any policy, only services named team-a-*:
//! team-a-token-0123456789 evaluate:*@team-a-*
//! # dashboards may only read:
//! grafana-token-0123456789 read
//! ops-token-0123456789abcdef admin   # reload, and everything else
//! ```
//!
//! `#` starts a comment, on a line of its own or after the scopes.
//!
//! A line with no scope keeps its old meaning, `evaluate read`; `admin`
//! alone keeps its old meaning too, everything. Scopes: `evaluate` (every
//! policy) or `evaluate:a,b` (those policies), either limited to services
//! with `@`: `evaluate:canary@checkout,cart`, `evaluate@checkout` (every
//! policy, one service); `read` (policies, plugins, metrics, OpenAPI, the
//! decision log); `approve` (record approvals and checklist attestations),
//! or `approve@checkout,cart` (for those services only); `admin` (reload;
//! implies the others, for every service). Policy and service names may
//! use `*` (any run of characters) and `?` (any one character):
//! `evaluate:*@team-a-*`. Several `evaluate` words on a line add up, each
//! with its own services. Two more words say who holds the token, for
//! approvals: `as:NAME` (the approver's name; default the token's id) and
//! `group:a,b` (the approver's groups):
//!
//! ```text
//! alice-token-0123456789abcdef approve read as:alice group:release-managers
//! ```
//!
//! A token's id (`tok_` and 16 hex digits), which logs and records carry,
//! is an HMAC-SHA256 of the token under a secret the store keeps, so
//! replicas sharing a store agree on it and an id cannot be checked
//! against a guessed token without the store.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::Mac as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// A policy or service name pattern from a token file: `*` matches any
/// run of characters, `?` any one, every other character itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let n: Vec<char> = name.chars().collect();
        let (mut pi, mut ni) = (0, 0);
        // Where the last `*` was, and the name position it matched up to.
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ni));
                    pi += 1;
                }
                Some(c) if *c == '?' || *c == n[ni] => {
                    pi += 1;
                    ni += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        pi = sp + 1;
                        ni = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

/// The names a scope covers: every one, or those matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    All,
    Only(Vec<Pattern>),
}

impl Names {
    /// Whether `name` is covered.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(patterns) => patterns.iter().any(|p| p.matches(name)),
        }
    }

    /// The union of two scopes.
    fn union(self, other: Self) -> Self {
        match (self, other) {
            (Self::Only(mut a), Self::Only(b)) => {
                a.extend(b);
                Self::Only(a)
            }
            _ => Self::All,
        }
    }

    /// A comma-separated list: `*` alone is every name. `what` names the
    /// list in errors.
    fn parse(list: &str, what: &str, example: &str) -> Result<Self, String> {
        let names: Vec<&str> = list.split(',').filter(|n| !n.is_empty()).collect();
        if names.is_empty() {
            return Err(format!("{what} needs names, e.g. `{example}`"));
        }
        if names.contains(&"*") {
            return Ok(Self::All);
        }
        Ok(Self::Only(
            names.into_iter().map(|n| Pattern(n.to_string())).collect(),
        ))
    }
}

/// One `evaluate` scope: these policies, for these services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluateScope {
    pub policies: Names,
    pub services: Names,
}

/// What one token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A short id for logs and records: never the token.
    pub id: String,
    /// What it may evaluate; empty, nothing.
    pub evaluate: Vec<EvaluateScope>,
    pub read: bool,
    pub admin: bool,
    /// May record approvals and attestations.
    pub approve: bool,
    /// The services it may approve for.
    pub approve_services: Names,
    /// Who holds the token (`as:`), for approvals; the id when unnamed.
    pub identity: String,
    /// The holder's groups (`group:`), for approvals.
    pub groups: Vec<String>,
    /// Whether `identity` was given with `as:`.
    named: bool,
}

/// The id of [`Grant::open`], which no token's id can be (`tok_…`).
const ANONYMOUS: &str = "anonymous";

/// A name from a request, shortened and escaped for an error message
/// ([`crate::text::shown`]).
pub(super) fn shown(name: &str) -> String {
    crate::text::shown(name)
}

impl Grant {
    /// Everything, for a server without auth (its evaluate and read
    /// endpoints; admin stays closed, see [`Tokens::has_admin`]).
    pub(super) fn open() -> Self {
        Self {
            id: ANONYMOUS.into(),
            evaluate: vec![EvaluateScope {
                policies: Names::All,
                services: Names::All,
            }],
            read: true,
            admin: false,
            // An approval needs someone to have given it.
            approve: false,
            approve_services: Names::All,
            identity: ANONYMOUS.into(),
            groups: Vec::new(),
            named: true,
        }
    }

    /// Whether this token may evaluate anything at all.
    pub fn may_evaluate_any(&self) -> bool {
        !self.evaluate.is_empty()
    }

    /// Whether this token may evaluate `policy` (for some service).
    pub fn may_evaluate(&self, policy: &str) -> bool {
        self.evaluate.iter().any(|s| s.policies.matches(policy))
    }

    /// Whether this token may evaluate `policy` for `service`.
    pub fn may_evaluate_service(&self, policy: &str, service: &str) -> bool {
        self.evaluate
            .iter()
            .any(|s| s.policies.matches(policy) && s.services.matches(service))
    }

    /// Whether this token may evaluate `policy` for every service: only
    /// then may it learn which snapshot files exist, whatever they name.
    pub fn may_evaluate_every_service(&self, policy: &str) -> bool {
        self.evaluate
            .iter()
            .any(|s| s.policies.matches(policy) && s.services == Names::All)
    }

    /// Whether this is the grant of a server without auth, which every
    /// caller shares: per-token bounds do not apply to it.
    pub(super) fn is_anonymous(&self) -> bool {
        self.id == ANONYMOUS
    }

    /// 403 unless this token may evaluate `policy`.
    pub fn check_evaluate(&self, policy: &str) -> Result<(), ApiError> {
        if self.may_evaluate(policy) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token may not evaluate policy `{}`",
                shown(policy)
            ))
            .field("policy"))
        }
    }

    /// 403 unless this token may evaluate `policy` for `service`; `field`
    /// is where the service came from.
    pub fn check_service(&self, policy: &str, service: &str, field: &str) -> Result<(), ApiError> {
        if self.may_evaluate_service(policy, service) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token may not evaluate policy `{}` for service `{}`",
                shown(policy),
                shown(service)
            ))
            .field(field.to_string()))
        }
    }

    /// 403 unless this token may approve for `service`.
    pub fn check_approve(&self, service: &str) -> Result<(), ApiError> {
        if self.approve && self.approve_services.matches(service) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token may not approve for service `{}`",
                shown(service)
            ))
            .field("service"))
        }
    }
}

/// Which tokens are accepted, and what each may do.
#[derive(Clone)]
pub struct Tokens {
    grants: Vec<([u8; 32], Grant)>,
    /// `--insecure-no-auth`: evaluate and read need no token.
    open: bool,
    /// The token file, read again on reload.
    source: Option<PathBuf>,
    /// The secret ids are keyed with; see [`Tokens::keyed`].
    key: [u8; crate::store::TOKEN_KEY_BYTES],
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

/// `tok_` and the first 8 bytes, in hex, of the HMAC-SHA256 of the token's
/// hash under `key`: stable for one store, and useless for checking a
/// guessed token without the store's secret.
fn token_id(key: &[u8; crate::store::TOKEN_KEY_BYTES], h: &[u8; 32]) -> String {
    // HMAC pads a key shorter than SHA-256's block with zeros, so this is
    // the HMAC under `key` itself.
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut mac = <hmac::Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into());
    mac.update(h);
    let tag = mac.finalize().into_bytes();
    format!("tok_{}", hex::encode(&tag[..8]))
}

/// What a token file line says beside the token.
struct Scopes {
    evaluate: Vec<EvaluateScope>,
    read: bool,
    admin: bool,
    approve: Option<Names>,
    identity: Option<String>,
    groups: Vec<String>,
}

const EXPECTED: &str = "expected evaluate, evaluate:POLICY,…, evaluate:POLICY,…@SERVICE,…, read, approve, approve@SERVICE,…, admin, as:NAME or group:A,B";

/// Parses `evaluate[:POLICIES][@SERVICES]` (after `evaluate`).
fn evaluate_scope(rest: &str) -> Result<EvaluateScope, String> {
    let (policies, services) = match rest.split_once('@') {
        Some((p, s)) => (p, Some(s)),
        None => (rest, None),
    };
    let policies = match policies.strip_prefix(':') {
        Some(list) => Names::parse(list, "`evaluate:`", "evaluate:canary,hotfix")?,
        None if policies.is_empty() => Names::All,
        None => return Err(format!("unknown scope `evaluate{rest}`; {EXPECTED}")),
    };
    let services = match services {
        Some(list) => Names::parse(
            list,
            "`@` after `evaluate`",
            "evaluate:canary@checkout,cart",
        )?,
        None => Names::All,
    };
    Ok(EvaluateScope { policies, services })
}

/// Parses a line's scopes (after the token).
fn scopes(words: &[&str]) -> Result<Scopes, String> {
    let (mut evaluate, mut read, mut admin, mut approve) = (Vec::new(), false, false, None);
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
            w if w.starts_with("evaluate") => {
                evaluate.push(evaluate_scope(&w["evaluate".len()..])?);
            }
            w if w == "approve" || w.starts_with("approve@") => {
                let services = match w.strip_prefix("approve@") {
                    Some(list) => Names::parse(list, "`approve@`", "approve@checkout,cart")?,
                    None => Names::All,
                };
                approve = Some(match approve {
                    Some(old) => Names::union(old, services),
                    None => services,
                });
            }
            other => {
                return Err(format!("unknown scope `{other}`; {EXPECTED}"));
            }
        }
    }
    let all = || EvaluateScope {
        policies: Names::All,
        services: Names::All,
    };
    if !scoped {
        evaluate = vec![all()];
        read = true;
    }
    if admin {
        evaluate = vec![all()];
        read = true;
        approve = Some(Names::All);
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
            source: None,
            key: crate::store::new_token_key(),
        }
    }

    /// Like [`Tokens::disabled`], but the admin tokens of `self` still open
    /// the admin endpoints.
    #[must_use]
    pub fn opened(mut self) -> Self {
        self.open = true;
        self
    }

    /// Names each token by an id keyed with `key` (the store's secret, see
    /// [`crate::store::Store::token_key`]); until then ids are keyed with a
    /// secret of this process.
    #[must_use]
    pub fn keyed(mut self, key: [u8; crate::store::TOKEN_KEY_BYTES]) -> Self {
        self.key = key;
        for (h, grant) in &mut self.grants {
            grant.id = token_id(&key, h);
            if !grant.named {
                grant.identity.clone_from(&grant.id);
            }
        }
        self
    }

    /// Accepts exactly these tokens; `admin` ones may do everything, the
    /// others evaluate and read.
    pub fn from_plain(tokens: &[(String, bool)]) -> Self {
        let key = crate::store::new_token_key();
        Self {
            grants: tokens
                .iter()
                .map(|(t, admin)| {
                    let h = hash(t);
                    let grant = Grant {
                        id: token_id(&key, &h),
                        evaluate: vec![EvaluateScope {
                            policies: Names::All,
                            services: Names::All,
                        }],
                        read: true,
                        admin: *admin,
                        approve: *admin,
                        approve_services: Names::All,
                        identity: token_id(&key, &h),
                        groups: Vec::new(),
                        named: false,
                    };
                    (h, grant)
                })
                .collect(),
            open: false,
            source: None,
            key,
        }
    }

    /// Reads a token file (format in the module doc). Blank lines and `#`
    /// comments are ignored; tokens must be at least 16 characters.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let text = crate::files::read_text(path).map_err(|e| TokenError::Read {
            path: shown.clone(),
            cause: e.to_string(),
        })?;
        let key = crate::store::new_token_key();
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
            let id = token_id(&key, &h);
            grants.push((
                h,
                Grant {
                    evaluate: s.evaluate,
                    read: s.read,
                    admin: s.admin,
                    approve: s.approve.is_some(),
                    approve_services: s.approve.unwrap_or(Names::All),
                    named: s.identity.is_some(),
                    identity: s.identity.unwrap_or_else(|| id.clone()),
                    groups: s.groups,
                    id,
                },
            ));
        }
        if grants.is_empty() {
            return Err(TokenError::Empty { path: shown });
        }
        Ok(Self {
            grants,
            open: false,
            source: Some(path.to_path_buf()),
            key,
        })
    }

    /// The tokens of the file these were read from, read again now, keyed
    /// and opened as these are; `None` when they came from no file.
    pub fn reread(&self) -> Option<Result<Self, TokenError>> {
        let path = self.source.as_deref()?;
        Some(Self::from_file(path).map(|t| Self {
            open: self.open,
            ..t.keyed(self.key)
        }))
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether no token is accepted (only [`Tokens::disabled`]).
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
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
/// handler, which knows it). A Flagger request without a header is let
/// through to find its token in the body, but its body is metered: at most
/// 1 MiB, and each chunk takes its bytes from the budget shared by requests
/// not yet authenticated as it arrives, so only bytes actually sent are
/// held (past the budget, after a short wait, 503).
pub(super) async fn require_evaluate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let tokens = state.tokens();
    let caller = match (authorization(&req), tokens.open) {
        (None, true) => Caller::Token(Grant::open()),
        (None, false) if req.uri().path().starts_with("/v1/compat/flagger/") => {
            Caller::Unauthenticated
        }
        (header, _) => match tokens.for_header(header) {
            Some(g) if g.may_evaluate_any() => Caller::Token(g),
            Some(g) => {
                let mut r = ApiError::forbidden("this token may not evaluate").into_response();
                super::service::AccessFacts::note(&mut r, |f| f.token = Some(g.id));
                return r;
            }
            None if tokens.open && header.is_some() => Caller::Token(Grant::open()),
            None => return ApiError::unauthorized().into_response(),
        },
    };
    drop(tokens);
    let token = match &caller {
        Caller::Token(g) => Some(g.id.clone()),
        Caller::Unauthenticated => None,
    };
    // The bytes a metered body took are held until the response is made,
    // with the body they paid for, and given back on every way out.
    let held = match &caller {
        Caller::Token(g) => {
            if let Err(e) = state.inner.limits.evaluate(&g.id) {
                let mut r = e.into_response();
                super::service::AccessFacts::note(&mut r, |f| f.token = Some(g.id.clone()));
                return r;
            }
            None
        }
        Caller::Unauthenticated => match state.inner.limits.unauthenticated(req) {
            Ok((held, metered)) => {
                req = metered;
                Some(held)
            }
            Err(e) => return e.into_response(),
        },
    };
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    drop(held);
    if token.is_some() {
        super::service::AccessFacts::note(&mut response, |f| f.token = token);
    }
    response
}

/// Requires a token that may read the catalog; handlers may read the
/// [`Caller`] (to rate-limit a replay by token).
pub(super) async fn require_read(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let tokens = state.tokens();
    let grant = if tokens.open {
        match tokens.for_header(authorization(&req)) {
            Some(g) if g.read => g,
            _ => Grant::open(),
        }
    } else {
        match tokens.for_header(authorization(&req)) {
            Some(g) if g.read => g,
            Some(g) => {
                let mut r = ApiError::forbidden("this token may not read").into_response();
                super::service::AccessFacts::note(&mut r, |f| f.token = Some(g.id));
                return r;
            }
            None => return ApiError::unauthorized().into_response(),
        }
    };
    drop(tokens);
    let id = grant.id.clone();
    req.extensions_mut().insert(Caller::Token(grant));
    let mut response = next.run(req).await;
    super::service::AccessFacts::note(&mut response, |f| f.token = Some(id));
    response
}

/// Requires a token with the `approve` scope, even on a server without
/// auth: an approval is worth only who gave it. The token's holder is the
/// approver.
pub(super) async fn require_approve(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let grant = state.tokens().for_header(authorization(&req));
    match grant {
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
    let tokens = state.tokens();
    if !tokens.has_admin() {
        return ApiError::forbidden("admin endpoints are off: no admin token is configured")
            .into_response();
    }
    let grant = tokens.for_header(authorization(&req));
    drop(tokens);
    match grant {
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
        assert!(alice.approve && !alice.read && alice.evaluate.is_empty());
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

    #[test]
    fn tokens_may_be_limited_to_services_with_globs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "checkout-token-0123456789 evaluate:canary@checkout,cart
team-token-0123456789ab evaluate:*@team-a-*
mixed-token-0123456789a evaluate:canary@svc-1 evaluate:hotfix@svc-?
svc-token-0123456789abc evaluate@checkout approve@checkout,cart as:bob
",
        )
        .unwrap();
        let t = Tokens::from_file(&path).unwrap();
        let checkout = t.lookup("checkout-token-0123456789").unwrap();
        assert!(checkout.may_evaluate_service("canary", "checkout"));
        assert!(checkout.may_evaluate_service("canary", "cart"));
        assert!(!checkout.may_evaluate_service("canary", "payments"));
        assert!(!checkout.may_evaluate("hotfix") && !checkout.read);
        let team = t.lookup("team-token-0123456789ab").unwrap();
        assert!(team.may_evaluate_service("hotfix", "team-a-web"));
        assert!(team.may_evaluate_service("canary", "team-a-"));
        assert!(!team.may_evaluate_service("canary", "team-b-web"));
        let mixed = t.lookup("mixed-token-0123456789a").unwrap();
        assert!(mixed.may_evaluate_service("canary", "svc-1"));
        assert!(mixed.may_evaluate_service("hotfix", "svc-2"));
        assert!(!mixed.may_evaluate_service("canary", "svc-2"));
        assert!(!mixed.may_evaluate_service("hotfix", "svc-22"));
        let svc = t.lookup("svc-token-0123456789abc").unwrap();
        assert!(svc.may_evaluate_service("anything", "checkout"));
        assert!(svc.check_approve("cart").is_ok() && svc.check_approve("payments").is_err());
        let e = svc
            .check_service("canary", "payments", "snapshot.service")
            .unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN);
        assert_eq!(
            e.message,
            "this token may not evaluate policy `canary` for service `payments`"
        );
        for bad in [
            "evaluate:canary@",
            "evaluate@",
            "approve@",
            "evaluatex",
            "read@svc",
        ] {
            std::fs::write(&path, format!("long-enough-token-0123 {bad}\n")).unwrap();
            assert!(Tokens::from_file(&path).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_whole_names() {
        let p = |s: &str| Pattern(s.into());
        assert!(p("team-a-*").matches("team-a-web"));
        assert!(!p("team-a-*").matches("xteam-a-web"));
        assert!(p("*-web").matches("team-a-web"));
        assert!(p("a*b*c").matches("aXbYc") && !p("a*b*c").matches("aXbY"));
        assert!(p("svc-?").matches("svc-1") && !p("svc-?").matches("svc-12"));
        assert!(p("*").matches("") && p("**").matches("x"));
        assert!(p("exact").matches("exact") && !p("exact").matches("exactly"));
    }

    #[test]
    fn token_ids_are_keyed_by_the_store_secret() {
        let t = Tokens::from_plain(&[("reader-token-0123456789".into(), false)]);
        let unkeyed = t.lookup("reader-token-0123456789").unwrap().id;
        let a = t.clone().keyed([1; 32]);
        let b = t.clone().keyed([1; 32]);
        let c = t.keyed([2; 32]);
        let id = |t: &Tokens| t.lookup("reader-token-0123456789").unwrap().id;
        assert_eq!(id(&a), id(&b), "one secret, one id: replicas agree");
        assert_ne!(id(&a), id(&c));
        assert_ne!(id(&a), unkeyed);
        // Not the old unsalted SHA-256 prefix, which anyone could compute.
        let plain = format!("tok_{}", hex::encode(&hash("reader-token-0123456789")[..4]));
        assert!(!id(&a).starts_with(&plain));
        assert_eq!(id(&a).len(), "tok_".len() + 16);
        // An unnamed holder is known by the keyed id.
        let g = a.lookup("reader-token-0123456789").unwrap();
        assert_eq!(g.identity, g.id);
    }
}
