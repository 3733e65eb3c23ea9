//! What one token may do, and the checks a request's grant answers: may
//! it evaluate this policy, for this service; may it approve for it.

use super::glob::Names;
use crate::server::ApiError;

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
    /// May run backtests (`POST /v1/backtests`).
    pub backtest: bool,
    /// May record approvals and attestations.
    pub approve: bool,
    /// The services it may approve for.
    pub approve_services: Names,
    /// Who holds the token (`as:`), for approvals; the id when unnamed.
    pub identity: String,
    /// The holder's groups (`group:`), for approvals.
    pub groups: Vec<String>,
    /// Whether `identity` was given with `as:`.
    pub(super) named: bool,
}

/// The id of [`Grant::open`], which no token's id can be (`tok_…`).
const ANONYMOUS: &str = "anonymous";

/// A name from a request, shortened and escaped for an error message
/// ([`crate::base::text::shown`]).
pub(in crate::server) fn shown(name: &str) -> String {
    crate::base::text::shown(name)
}

impl Grant {
    /// Everything, for a server without auth (its evaluate and read
    /// endpoints; admin stays closed, see [`super::Tokens::has_admin`]).
    pub(in crate::server) fn open() -> Self {
        Self {
            id: ANONYMOUS.into(),
            evaluate: vec![EvaluateScope {
                policies: Names::All,
                services: Names::All,
            }],
            read: true,
            admin: false,
            // A backtest reads only what `read` may; its CPU is bounded by
            // the server's backtest share.
            backtest: true,
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
    pub(in crate::server) fn is_anonymous(&self) -> bool {
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
