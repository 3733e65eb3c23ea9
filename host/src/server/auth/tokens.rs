//! The tokens a server accepts: read from a token file (and read again on
//! reload), kept only as SHA-256 hashes, and looked up in constant time.

use std::path::{Path, PathBuf};

use hmac::Mac as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::glob::Names;
use super::grant::{EvaluateScope, Grant};
use super::token_line::{self, LineError};

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
    #[error("token file `{path}` line {line}: {problem}")]
    Invalid {
        path: String,
        line: usize,
        problem: LineError,
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
                        backtest: *admin,
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

    /// Reads a token file (format in [`super`]'s doc). Blank lines and `#`
    /// comments are ignored; tokens must be at least 16 characters.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let text = crate::base::files::read_text(path).map_err(|e| TokenError::Read {
            path: shown.clone(),
            cause: e.to_string(),
        })?;
        let key = crate::store::new_token_key();
        let mut grants = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let parsed = token_line::parse(line).map_err(|problem| TokenError::Invalid {
                path: shown.clone(),
                line: i + 1,
                problem,
            })?;
            let Some(token_line::Line { token, scopes: s }) = parsed else {
                continue;
            };
            let h = hash(token);
            let id = token_id(&key, &h);
            grants.push((
                h,
                Grant {
                    evaluate: s.evaluate,
                    read: s.read,
                    admin: s.admin,
                    backtest: s.backtest,
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
    pub(super) fn for_header(&self, header: Option<&str>) -> Option<Grant> {
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
