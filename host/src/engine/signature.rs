//! Signed plugins: OpenSSH signatures (`ssh-keygen -Y sign -n
//! tollgate-plugin`) checked against an `allowed_signers` file, the format
//! teams already use to sign git commits.
//!
//! A plugin `gate.wasm` is signed by `gate.wasm.sig` beside it. A policy
//! (`require_signature: true`, `allowed_signers: FILE`) or the server's
//! config can demand a signature; then an unsigned plugin, a signature
//! that does not verify, or one by a key the file does not list refuses
//! the load, naming the plugin and the key.

use std::path::{Path, PathBuf};

use serde::Serialize;
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The signature namespace of tollgate plugins (`ssh-keygen -n`).
pub const NAMESPACE: &str = "tollgate-plugin";

/// One line of an `allowed_signers` file.
#[derive(Debug, Clone)]
struct Signer {
    principals: Vec<String>,
    /// `namespaces="…"` patterns; empty allows every namespace.
    namespaces: Vec<String>,
    key: PublicKey,
}

/// The keys allowed to sign plugins, read from an `allowed_signers` file
/// (ssh-keygen(1), "ALLOWED SIGNERS").
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    path: PathBuf,
    signers: Vec<Signer>,
}

/// Who signed a plugin, as audits show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signed {
    /// The signing key's SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub key: String,
    /// The principals `allowed_signers` lists for the key; empty when no
    /// allowed-signers file was consulted.
    pub principals: Vec<String>,
    /// Whether the signature was checked against an allowed-signers file.
    pub trusted: bool,
}

/// Why a signature is refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("allowed signers file `{path}`: {message}")]
    Signers { path: String, message: String },
    #[error(
        "plugin `{plugin}` is not signed: no `{sig}` (sign it with `ssh-keygen -Y sign -n {NAMESPACE} -f KEY {file}`)"
    )]
    Unsigned {
        plugin: String,
        sig: String,
        file: String,
    },
    #[error("plugin `{plugin}`: signature `{sig}` cannot be read: {message}")]
    Unreadable {
        plugin: String,
        sig: String,
        message: String,
    },
    #[error(
        "plugin `{plugin}` is signed for namespace `{namespace}`, not `{NAMESPACE}` (sign with `-n {NAMESPACE}`)"
    )]
    Namespace { plugin: String, namespace: String },
    #[error("plugin `{plugin}`: the signature by key {key} does not match the plugin's bytes")]
    Invalid { plugin: String, key: String },
    #[error(
        "plugin `{plugin}` is signed by key {key}, which `{signers}` does not allow to sign plugins"
    )]
    UnknownKey {
        plugin: String,
        key: String,
        signers: String,
    },
}

/// The signature file of a plugin file.
pub fn sig_path(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Splits a line into words, keeping `"…"` quoted spans (with their quotes
/// removed) inside one word.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if !word.is_empty() {
        out.push(word);
    }
    Ok(out)
}

/// An OpenSSH pattern: `*` and `?` wildcards.
fn matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Whether a word starts a key: `ssh-ed25519`, `ecdsa-sha2-…`, `sk-…`.
fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-") || word.starts_with("sk-")
}

impl AllowedSigners {
    /// Reads an `allowed_signers` file. Certificate authorities and
    /// validity windows are refused rather than ignored: a rule that is
    /// not enforced must not look as if it were.
    pub fn read(path: &Path) -> Result<Self, SignatureError> {
        let shown = path.display().to_string();
        let fail = |line: usize, message: String| SignatureError::Signers {
            path: shown.clone(),
            message: if line > 0 {
                format!("line {line}: {message}")
            } else {
                message
            },
        };
        let text = crate::base::files::read_text(path).map_err(|e| fail(0, e.to_string()))?;
        let mut signers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let w = words(line).map_err(|e| fail(i + 1, e))?;
            let (principals, rest) = w
                .split_first()
                .ok_or_else(|| fail(i + 1, "empty line".into()))?;
            let (options, rest) = match rest.first() {
                Some(k) if is_key_type(k) => (None, rest),
                Some(o) => (Some(o.as_str()), &rest[1..]),
                None => return Err(fail(i + 1, "no key".into())),
            };
            let mut namespaces = Vec::new();
            for option in options.map(|o| o.split(',')).into_iter().flatten() {
                let (name, value) = option.split_once('=').unwrap_or((option, ""));
                match name.to_ascii_lowercase().as_str() {
                    "namespaces" => namespaces.extend(value.split(',').map(str::to_string)),
                    "cert-authority" => {
                        return Err(fail(
                            i + 1,
                            "`cert-authority` is not supported; list the signing keys themselves"
                                .into(),
                        ));
                    }
                    "valid-after" | "valid-before" => {
                        return Err(fail(
                            i + 1,
                            format!(
                                "`{name}` is not supported: signatures are checked at load, not by date"
                            ),
                        ));
                    }
                    other => return Err(fail(i + 1, format!("unknown option `{other}`"))),
                }
            }
            let [kind, base64, ..] = rest else {
                return Err(fail(i + 1, "expected a key type and its base64".into()));
            };
            let key = PublicKey::from_openssh(&format!("{kind} {base64}"))
                .map_err(|e| fail(i + 1, format!("invalid key: {e}")))?;
            signers.push(Signer {
                principals: principals.split(',').map(str::to_string).collect(),
                namespaces,
                key,
            });
        }
        if signers.is_empty() {
            return Err(fail(0, "lists no keys".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            signers,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn fingerprint(key: &ssh_key::public::KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks the signature beside the plugin file `file` over `bytes`:
/// against `allowed` when given (the key must be listed for the
/// namespace), else only that it verifies with the key it names. `Ok(None)`
/// when there is no signature and none is required.
pub fn check(
    plugin: &str,
    file: &Path,
    bytes: &[u8],
    allowed: Option<&AllowedSigners>,
    required: bool,
) -> Result<Option<Signed>, SignatureError> {
    let sig = sig_path(file);
    // Bounded like every file the host reads; a signature is a few hundred bytes.
    let text = match crate::base::files::read_text(&sig) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            if required {
                return Err(SignatureError::Unsigned {
                    plugin: plugin.to_string(),
                    sig: sig.display().to_string(),
                    file: file.display().to_string(),
                });
            }
            return Ok(None);
        }
        Err(e) => {
            return Err(SignatureError::Unreadable {
                plugin: plugin.to_string(),
                sig: sig.display().to_string(),
                message: e.to_string(),
            });
        }
    };
    let signature: SshSig =
        text.parse()
            .map_err(|e: ssh_key::Error| SignatureError::Unreadable {
                plugin: plugin.to_string(),
                sig: sig.display().to_string(),
                message: e.to_string(),
            })?;
    let key = fingerprint(signature.public_key());
    if signature.namespace() != NAMESPACE {
        return Err(SignatureError::Namespace {
            plugin: plugin.to_string(),
            namespace: signature.namespace().to_string(),
        });
    }
    let public = PublicKey::from(signature.public_key().clone());
    public
        .verify(NAMESPACE, bytes, &signature)
        .map_err(|_| SignatureError::Invalid {
            plugin: plugin.to_string(),
            key: key.clone(),
        })?;
    let Some(allowed) = allowed else {
        if required {
            // Required without a list of signers: nothing can be trusted.
            return Err(SignatureError::UnknownKey {
                plugin: plugin.to_string(),
                key,
                signers: "(no allowed_signers file)".into(),
            });
        }
        return Ok(Some(Signed {
            key,
            principals: Vec::new(),
            trusted: false,
        }));
    };
    let signer = allowed.signers.iter().find(|s| {
        s.key.key_data() == signature.public_key()
            && (s.namespaces.is_empty() || s.namespaces.iter().any(|n| matches(n, NAMESPACE)))
    });
    match signer {
        Some(s) => Ok(Some(Signed {
            key,
            principals: s.principals.clone(),
            trusted: true,
        })),
        None => Err(SignatureError::UnknownKey {
            plugin: plugin.to_string(),
            key,
            signers: allowed.path.display().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quoted_options_whole() {
        assert_eq!(
            words(r#"alice@x namespaces="git,tollgate-plugin" ssh-ed25519 AAAA c"#).unwrap(),
            [
                "alice@x",
                "namespaces=git,tollgate-plugin",
                "ssh-ed25519",
                "AAAA",
                "c"
            ]
        );
        assert!(words(r#"a "b"#).is_err());
    }

    #[test]
    fn patterns_match_as_openssh_does() {
        assert!(matches("tollgate-*", "tollgate-plugin"));
        assert!(matches("*", "anything"));
        assert!(matches("t?llgate-plugin", "tollgate-plugin"));
        assert!(!matches("git", "tollgate-plugin"));
    }
}
