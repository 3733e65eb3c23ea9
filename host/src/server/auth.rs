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
//! or `approve@checkout,cart` (for those services only); `backtest` (with
//! `read`: run backtests over the decision log, `POST /v1/backtests`); `admin` (reload;
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

mod glob;
mod grant;
mod middleware;
mod token_line;
mod tokens;

pub(super) use self::grant::{Grant, shown};
pub(super) use self::middleware::{
    Approver, Caller, require_admin, require_approve, require_backtest, require_evaluate,
    require_read,
};
pub use self::tokens::Tokens;
