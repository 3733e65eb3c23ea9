//! One line of a token file: the token, then the words that say what it
//! may do and who holds it (the format is in [`super`]'s doc).

use super::glob::{Names, Pattern};
use super::grant::EvaluateScope;

/// The scope words a token file accepts, for an unknown one's error.
const EXPECTED: &str = "expected evaluate, evaluate:POLICY,…, evaluate:POLICY,…@SERVICE,…, read, approve, approve@SERVICE,…, backtest, admin, as:NAME or group:A,B";

/// Why a token file line cannot be used; the file and line are added by
/// [`super::TokenError::Invalid`].
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("tokens must be at least 16 characters")]
    ShortToken,
    /// A scope's list of names is empty (`evaluate:`, `approve@`).
    #[error("{what} needs names, e.g. `{example}`")]
    NeedsNames {
        what: &'static str,
        example: &'static str,
    },
    #[error("unknown scope `{scope}`; {expected}", expected = EXPECTED)]
    UnknownScope { scope: String },
    /// An `as:` or `group:` value that is not a name.
    #[error("`{word}`: {message}")]
    NotAName { word: &'static str, message: String },
}

/// A token file line that holds a token.
pub(super) struct Line<'a> {
    pub(super) token: &'a str,
    pub(super) scopes: Scopes,
}

/// What a token file line says beside the token.
pub(super) struct Scopes {
    pub(super) evaluate: Vec<EvaluateScope>,
    pub(super) read: bool,
    pub(super) admin: bool,
    pub(super) backtest: bool,
    pub(super) approve: Option<Names>,
    pub(super) identity: Option<String>,
    pub(super) groups: Vec<String>,
}

/// Parses one line of a token file: `None` for a blank line or a comment.
/// A word starting with `#` after the token starts a comment.
pub(super) fn parse(line: &str) -> Result<Option<Line<'_>>, LineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if let Some(at) = words.iter().skip(1).position(|w| w.starts_with('#')) {
        words.truncate(at + 1);
    }
    let token = words.first().copied().unwrap_or_default();
    if token.len() < 16 {
        return Err(LineError::ShortToken);
    }
    let scopes = scopes(&words[1..])?;
    Ok(Some(Line { token, scopes }))
}

/// A comma-separated list: `*` alone is every name. `what` names the
/// list in errors.
fn names(list: &str, what: &'static str, example: &'static str) -> Result<Names, LineError> {
    let names: Vec<&str> = list.split(',').filter(|n| !n.is_empty()).collect();
    if names.is_empty() {
        return Err(LineError::NeedsNames { what, example });
    }
    if names.contains(&"*") {
        return Ok(Names::All);
    }
    Ok(Names::Only(names.into_iter().map(Pattern::new).collect()))
}

/// Parses `evaluate[:POLICIES][@SERVICES]` (after `evaluate`).
fn evaluate_scope(rest: &str) -> Result<EvaluateScope, LineError> {
    let (policies, services) = match rest.split_once('@') {
        Some((p, s)) => (p, Some(s)),
        None => (rest, None),
    };
    let policies = match policies.strip_prefix(':') {
        Some(list) => names(list, "`evaluate:`", "evaluate:canary,hotfix")?,
        None if policies.is_empty() => Names::All,
        None => {
            return Err(LineError::UnknownScope {
                scope: format!("evaluate{rest}"),
            });
        }
    };
    let services = match services {
        Some(list) => names(
            list,
            "`@` after `evaluate`",
            "evaluate:canary@checkout,cart",
        )?,
        None => Names::All,
    };
    Ok(EvaluateScope { policies, services })
}

/// Checks an `as:` or `group:` value (`word`) is a name.
fn check_name(name: &str, word: &'static str) -> Result<(), LineError> {
    crate::policy::approvals::check_name(name).map_err(|e| LineError::NotAName {
        word,
        message: e.to_string(),
    })
}

/// Parses a line's scopes (after the token).
fn scopes(words: &[&str]) -> Result<Scopes, LineError> {
    let (mut evaluate, mut read, mut admin, mut approve) = (Vec::new(), false, false, None);
    let mut backtest = false;
    let (mut identity, mut groups) = (None, Vec::new());
    let mut scoped = false;
    for w in words {
        if let Some(name) = w.strip_prefix("as:") {
            check_name(name, "as:")?;
            identity = Some(name.to_string());
            continue;
        }
        if let Some(list) = w.strip_prefix("group:") {
            for g in list.split(',').filter(|g| !g.is_empty()) {
                check_name(g, "group:")?;
                groups.push(g.to_string());
            }
            continue;
        }
        scoped = true;
        match *w {
            "admin" => admin = true,
            "read" => read = true,
            "backtest" => backtest = true,
            w if w.starts_with("evaluate") => {
                evaluate.push(evaluate_scope(&w["evaluate".len()..])?);
            }
            w if w == "approve" || w.starts_with("approve@") => {
                let services = match w.strip_prefix("approve@") {
                    Some(list) => names(list, "`approve@`", "approve@checkout,cart")?,
                    None => Names::All,
                };
                approve = Some(match approve {
                    Some(old) => Names::union(old, services),
                    None => services,
                });
            }
            other => {
                return Err(LineError::UnknownScope {
                    scope: other.to_string(),
                });
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
        backtest = true;
        approve = Some(Names::All);
    }
    Ok(Scopes {
        evaluate,
        read,
        admin,
        backtest,
        approve,
        identity,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(line: &str) -> String {
        parse(line).err().unwrap().to_string()
    }

    #[test]
    fn each_problem_is_worded_as_before() {
        assert!(parse("  # a comment").unwrap().is_none());
        assert!(parse("").unwrap().is_none());
        assert_eq!(problem("short"), "tokens must be at least 16 characters");
        assert_eq!(
            problem("long-enough-token-0123 evaluate:"),
            "`evaluate:` needs names, e.g. `evaluate:canary,hotfix`"
        );
        assert_eq!(
            problem("long-enough-token-0123 evaluate:canary@"),
            "`@` after `evaluate` needs names, e.g. `evaluate:canary@checkout,cart`"
        );
        assert_eq!(
            problem("long-enough-token-0123 approve@,"),
            "`approve@` needs names, e.g. `approve@checkout,cart`"
        );
        assert_eq!(
            problem("long-enough-token-0123 evaluatex"),
            format!("unknown scope `evaluatex`; {EXPECTED}")
        );
        assert_eq!(
            problem("long-enough-token-0123 write"),
            format!("unknown scope `write`; {EXPECTED}")
        );
        assert!(
            problem("long-enough-token-0123 group:ok,b/ad")
                .starts_with("`group:`: `b/ad` is not a name")
        );
    }
}
