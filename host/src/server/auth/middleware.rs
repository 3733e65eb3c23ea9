//! The route layers that check a request's bearer token against the
//! route's scope, and what they leave for the handlers: the [`Caller`]
//! on evaluate and read routes, the [`Approver`] on the approve route.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::grant::Grant;
use crate::server::access::AccessFacts;
use crate::server::{ApiError, AppState};

/// The `Authorization` header, when there is one and it is text.
fn authorization(req: &Request) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION)?.to_str().ok()
}

/// Who is asking, once a route's check passed; handlers read it to check a
/// policy scope and to name the token in logs.
#[derive(Debug, Clone)]
pub(in crate::server) enum Caller {
    Token(Grant),
    /// No `Authorization` header on a route that may carry its token in
    /// the body (Flagger's metadata `token`).
    Unauthenticated,
}

impl Caller {
    /// 401/403 unless the caller's token may evaluate `policy`; returns what
    /// the token may do, for the service check once the service is known.
    pub(in crate::server) fn evaluate_grant(self, policy: &str) -> Result<Grant, ApiError> {
        match self {
            Self::Token(g) => {
                g.check_evaluate(policy)?;
                Ok(g)
            }
            Self::Unauthenticated => Err(ApiError::unauthorized()),
        }
    }
}

/// Who is approving, on the approve route: the token's holder.
#[derive(Debug, Clone)]
pub(in crate::server) struct Approver(pub(in crate::server) Grant);

/// Requires a token that may evaluate (the policy is checked by the
/// handler, which knows it). A Flagger request without a header is let
/// through to find its token in the body, but its body is metered: at most
/// 1 MiB, and each chunk takes its bytes from the budget shared by requests
/// not yet authenticated as it arrives, so only bytes actually sent are
/// held (past the budget, after a short wait, 503).
pub(in crate::server) async fn require_evaluate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let tokens = state.tokens();
    let caller = match (authorization(&req), tokens.is_disabled()) {
        (None, true) => Caller::Token(Grant::open()),
        (None, false) if req.uri().path().starts_with("/v1/compat/flagger/") => {
            Caller::Unauthenticated
        }
        (header, _) => match tokens.for_header(header) {
            Some(g) if g.may_evaluate_any() => Caller::Token(g),
            Some(g) => {
                let mut r = ApiError::forbidden("this token may not evaluate").into_response();
                AccessFacts::note(&mut r, |f| f.token = Some(g.id));
                return r;
            }
            None if tokens.is_disabled() && header.is_some() => Caller::Token(Grant::open()),
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
                AccessFacts::note(&mut r, |f| f.token = Some(g.id.clone()));
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
        AccessFacts::note(&mut response, |f| f.token = token);
    }
    response
}

/// Requires a token that may read the catalog; handlers may read the
/// [`Caller`] (to rate-limit a replay by token).
pub(in crate::server) async fn require_read(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    scoped(&state, req, next, |g| g.read, "this token may not read").await
}

/// Requires a token with the `backtest` and `read` scopes (or `admin`): a
/// report shows what the log holds. On a server without auth, any caller,
/// as for reading the log. The handlers read the [`Caller`], whose token
/// owns the jobs it starts.
pub(in crate::server) async fn require_backtest(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    scoped(
        &state,
        req,
        next,
        |g| g.backtest && g.read,
        "this token may not run backtests: give it the `backtest` and `read` scopes in the token file (a report shows what the log holds)",
    )
    .await
}

/// Lets a request through with its [`Caller`] when its token has the scope
/// `has` asks for (or, on a server without auth, whatever it sends); 403
/// with `refused` for a token without it, 401 for none.
async fn scoped(
    state: &AppState,
    mut req: Request,
    next: Next,
    has: fn(&Grant) -> bool,
    refused: &'static str,
) -> Response {
    let tokens = state.tokens();
    let grant = match tokens.for_header(authorization(&req)) {
        Some(g) if has(&g) => g,
        _ if tokens.is_disabled() => Grant::open(),
        Some(g) => {
            let mut r = ApiError::forbidden(refused).into_response();
            AccessFacts::note(&mut r, |f| f.token = Some(g.id));
            return r;
        }
        None => return ApiError::unauthorized().into_response(),
    };
    drop(tokens);
    let id = grant.id.clone();
    req.extensions_mut().insert(Caller::Token(grant));
    let mut response = next.run(req).await;
    AccessFacts::note(&mut response, |f| f.token = Some(id));
    response
}

/// Requires a token with the `approve` scope, even on a server without
/// auth: an approval is worth only who gave it. The token's holder is the
/// approver.
pub(in crate::server) async fn require_approve(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let grant = state.tokens().for_header(authorization(&req));
    match grant {
        Some(g) if g.approve => {
            let id = g.id.clone();
            req.extensions_mut().insert(Approver(g));
            let mut response = next.run(req).await;
            AccessFacts::note(&mut response, |f| f.token = Some(id));
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
pub(in crate::server) async fn require_admin(
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
            AccessFacts::note(&mut response, |f| f.token = Some(g.id));
            response
        }
        Some(_) => ApiError::forbidden("not an admin token").into_response(),
        None => ApiError::unauthorized().into_response(),
    }
}
