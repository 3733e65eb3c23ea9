//! How an operator configures source plugins: a base URL, the plugin, its
//! settings and the credentials the host adds. The same shape serves the
//! server's `telemetry.sources` and the CLI's `--sources FILE`; secrets are
//! read from files (or, for AWS, the standard environment variables), never
//! written inline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::exchange::{Credentials, Endpoint, Sender};
use super::plugin_source::PluginSource;
use super::sigv4::{AwsCredentials, SigV4};
use crate::engine::{ConfigValue, PluginConfig, Runtime, Scalar};

/// One configured source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Base URL; the plugin's requests may not leave it.
    pub url: String,
    /// A first-party source plugin's name, or a `.wasm` file (relative to
    /// the file that configures it); the source's own name by default.
    #[serde(default)]
    pub plugin: Option<String>,
    /// The plugin's settings, checked by its `validate-config`.
    #[serde(default)]
    pub with: serde_json::Map<String, Value>,
    /// A file holding a bearer token.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Basic authentication: a user and a file holding the password.
    #[serde(default)]
    pub basic: Option<BasicSpec>,
    /// API-key headers, each read from a file (`DD-API-KEY: dd.key`).
    #[serde(default)]
    pub api_keys: BTreeMap<String, PathBuf>,
    /// AWS Signature Version 4.
    #[serde(default)]
    pub sigv4: Option<SigV4Spec>,
    /// Non-secret headers on every request (`X-Scope-OrgID: team-a`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per attempt (10s).
    #[serde(default)]
    pub timeout: Option<Value>,
    /// Attempts after the first, for failures that may pass (2).
    #[serde(default)]
    pub retries: Option<u32>,
    /// PEM CAs to trust for an `https` URL.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The operations the plugin may ask for (`GET /query`, `POST /
    /// X-AMZ-TARGET`); a first-party source's own by default, any request
    /// under `url` for another plugin.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// How long one query may take in all, rounds and retries included (60s).
    #[serde(default)]
    pub deadline: Option<Value>,
}

/// The operations each first-party source sends, and so all it may send
/// unless its configuration says otherwise: reads, never writes (InfluxDB
/// 1.x runs `DROP …` only over POST, so `GET /query` cannot).
fn first_party_allow(plugin: &str) -> Option<&'static [&'static str]> {
    Some(match plugin {
        "prometheus" => &["POST /api/v1/query_range", "GET /api/v1/query_range"],
        "influxdb" => &["GET /query"],
        "graphite" => &["GET /render"],
        "loki" => &["GET /loki/api/v1/query_range"],
        "datadog" => &["GET /api/v1/query", "POST /api/v2/query/scalar"],
        "newrelic" => &["POST /graphql"],
        "cloudwatch" => &["POST / GraniteServiceVersion20100801.GetMetricData"],
        _ => return None,
    })
}

/// The operations `spec` allows its plugin `plugin_ref`, parsed.
fn allowed(
    spec: &SourceSpec,
    plugin_ref: &str,
) -> Result<Option<Vec<super::operation::Operation>>, String> {
    let listed: Option<Vec<String>> = match &spec.allow {
        Some(list) => Some(list.clone()),
        None => first_party_allow(plugin_ref)
            .filter(|_| !is_file(plugin_ref))
            .map(|ops| ops.iter().map(|s| (*s).to_string()).collect()),
    };
    listed
        .map(|list| {
            list.iter()
                .map(|op| op.parse().map_err(|e| format!("`allow`: {e}")))
                .collect()
        })
        .transpose()
}

/// Whether a `plugin:` names a file rather than a first-party source.
fn is_file(plugin_ref: &str) -> bool {
    plugin_ref.ends_with(".wasm") || plugin_ref.contains('/')
}

/// `basic:` of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSpec {
    pub user: String,
    pub password_file: PathBuf,
}

/// `sigv4:` of a source. Without key files, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Spec {
    pub region: String,
    /// The signing name, e.g. `monitoring` for CloudWatch.
    pub service: String,
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
}

/// A sources file: `sources: { NAME: SPEC, … }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesFile {
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSpec>,
}

/// Most sources one configuration may name.
pub const MAX_SOURCES: usize = 64;

/// Reads a sources file (YAML or JSON); every error names the file.
pub fn read_file(path: &Path) -> Result<SourcesFile, String> {
    let text = crate::base::files::read_text(path)
        .map_err(|e| format!("cannot read sources file `{}`: {e}", path.display()))?;
    let node = crate::policy::yaml::parse(&text)
        .map_err(|e| format!("sources file `{}`: {e}", path.display()))?;
    let json = match node.to_json() {
        Value::Null => Value::Object(serde_json::Map::new()),
        other => other,
    };
    serde_path_to_error::deserialize(json)
        .map_err(|e| format!("sources file `{}`: {e}", path.display()))
}

/// A spec for a first-party plugin of the same name at `url`, with no
/// settings and no credentials: what `--source NAME=URL` means alone.
pub fn plain(url: &str) -> SourceSpec {
    SourceSpec {
        url: url.to_string(),
        plugin: None,
        with: serde_json::Map::new(),
        bearer_token_file: None,
        basic: None,
        api_keys: BTreeMap::new(),
        sigv4: None,
        headers: BTreeMap::new(),
        timeout: None,
        retries: None,
        ca_file: None,
        allow: None,
        deadline: None,
    }
}

/// What a configured source lets its plugin reach, for `audit`: the base
/// URL, the credentials the host adds (by kind and header name, never their
/// values) and the operator's headers.
pub fn reach(spec: &SourceSpec, name: &str) -> Vec<String> {
    let mut url = spec.url.clone();
    if let Ok(mut parsed) = url.parse::<reqwest::Url>() {
        let _ = parsed.set_password(None);
        url = parsed.to_string();
    }
    let mut out = vec![format!(
        "reach: {url} (paths under it only; redirects not followed)"
    )];
    let plugin_ref = spec.plugin.as_deref().unwrap_or(name);
    match allowed(spec, plugin_ref) {
        Ok(Some(ops)) => out.push(format!(
            "operations: {}",
            ops.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Ok(None) => out.push("operations: any request under the URL (no `allow:`)".into()),
        Err(e) => out.push(e),
    }
    let mut added = Vec::new();
    if spec.bearer_token_file.is_some() {
        added.push("Authorization: Bearer".to_string());
    }
    if let Some(b) = &spec.basic {
        added.push(format!("Authorization: Basic (user `{}`)", b.user));
    }
    for header in spec.api_keys.keys() {
        added.push(format!("{header} (API key)"));
    }
    if let Some(s) = &spec.sigv4 {
        added.push(format!("AWS SigV4 ({}, {})", s.region, s.service));
    }
    if !added.is_empty() {
        out.push(format!(
            "credentials added by the host, unseen by the plugin: {}",
            added.join(", ")
        ));
    }
    if !spec.headers.is_empty() {
        let names: Vec<&str> = spec.headers.keys().map(String::as_str).collect();
        out.push(format!("headers set by the operator: {}", names.join(", ")));
    }
    out
}

/// Parses `NAME=URL` for `--source`.
pub fn parse_source_arg(arg: &str) -> Result<(String, String), String> {
    let (name, url) = arg.split_once('=').ok_or_else(|| {
        format!("`{arg}`: expected NAME=URL, e.g. influxdb=http://127.0.0.1:8086")
    })?;
    check_name(name)?;
    Ok((name.to_string(), url.to_string()))
}

fn check_name(name: &str) -> Result<(), String> {
    name.parse::<crate::policy::Name>()
        .map(|_| ())
        .map_err(|_| format!("`{name}` is not a source name: use 1 to 64 lowercase letters, digits, `-`, `_` or `.`"))
}

fn secret(path: &Path, what: &str) -> Result<String, String> {
    crate::base::files::read_text(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("cannot read {what} `{}`: {e}", path.display()))
}

/// Loads every source: each plugin compiled (or taken from the runtime's
/// cache), its settings validated, its credentials read. `base` resolves
/// relative file names.
pub fn build(
    runtime: &Runtime,
    specs: &BTreeMap<String, SourceSpec>,
    base: &Path,
) -> Result<BTreeMap<String, PluginSource>, String> {
    if specs.len() > MAX_SOURCES {
        return Err(format!(
            "{} sources exceed the limit of {MAX_SOURCES}",
            specs.len()
        ));
    }
    specs
        .iter()
        .map(|(name, spec)| {
            build_one(runtime, name, spec, base)
                .map(|s| (name.clone(), s))
                .map_err(|e| format!("source `{name}`: {e}"))
        })
        .collect()
}

fn build_one(
    runtime: &Runtime,
    name: &str,
    spec: &SourceSpec,
    base: &Path,
) -> Result<PluginSource, String> {
    check_name(name)?;
    let url: reqwest::Url = spec
        .url
        .parse()
        .map_err(|e| format!("`url`: `{}` is not a URL: {e}", spec.url))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`url`: `{}` is not an http(s) URL", spec.url));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`url`: `{}` carries a query or fragment; give the base URL only",
            spec.url
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "`url` carries a user or password; give credentials with `basic:` and a password file"
                .into(),
        );
    }
    let resolve = |p: &Path| base.join(p);
    let plugin_ref = spec.plugin.as_deref().unwrap_or(name);
    let plugin = if is_file(plugin_ref) {
        let path = resolve(Path::new(plugin_ref));
        let bytes = crate::base::files::read_limited(&path, crate::base::files::MAX_PLUGIN_BYTES)
            .map_err(|e| format!("cannot read plugin `{}`: {e}", path.display()))?;
        runtime
            .load(plugin_ref, &bytes)
            .map_err(|e| e.to_string())?
    } else {
        let bytes = crate::policy::builtin::plugin(plugin_ref).ok_or_else(|| {
            format!(
                "`{plugin_ref}` is no first-party source; give `plugin:` a first-party source or a `.wasm` file"
            )
        })?;
        runtime.load(plugin_ref, bytes).map_err(|e| e.to_string())?
    };
    let mut endpoint = Endpoint::new(url);
    if let Some(t) = &spec.timeout {
        endpoint.timeout =
            duration("timeout", t)?.clamp(Duration::from_millis(100), Duration::from_secs(300));
    }
    if let Some(r) = spec.retries {
        endpoint.retries = r.min(10);
    }
    endpoint.ca_file = spec.ca_file.as_deref().map(resolve);
    for (header, value) in &spec.headers {
        if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(format!("`headers`: `{header}` is not a valid HTTP header"));
        }
        if ["authorization", "proxy-authorization", "cookie"]
            .contains(&header.to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "`headers`: `{header}` carries a secret; give it with `bearer_token_file`, `basic` or `api_keys` (a file), never inline"
            ));
        }
        endpoint.headers.push((header.clone(), value.clone()));
    }
    endpoint.credentials = credentials(spec, &resolve)?;
    endpoint.allow = allowed(spec, plugin_ref)?;
    let deadline = match &spec.deadline {
        Some(d) => {
            duration("deadline", d)?.clamp(Duration::from_secs(1), Duration::from_secs(3600))
        }
        None => super::plugin_source::DEFAULT_QUERY_DEADLINE,
    };
    let sender = Sender::new(endpoint).map_err(|e| e.to_string())?;
    let source = PluginSource::new(plugin, config(&spec.with)?, sender).map_err(|e| {
        if spec.with.is_empty() {
            format!("{e}; a source's settings go under `with:` in a sources file (--sources)")
        } else {
            e
        }
    })?;
    Ok(source.with_deadline(deadline))
}

/// A duration as written in a sources file: `10s`, `1m30s`.
fn duration(field: &str, value: &Value) -> Result<Duration, String> {
    let text = value.as_str().ok_or_else(|| {
        format!("`{field}`: `{value}` is not a duration; write one such as `10s` or `1m`")
    })?;
    humantime::parse_duration(text).map_err(|e| format!("`{field}`: `{text}`: {e}"))
}

fn credentials(
    spec: &SourceSpec,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Credentials, String> {
    let mut c = Credentials::default();
    let schemes = usize::from(spec.bearer_token_file.is_some())
        + usize::from(spec.basic.is_some())
        + usize::from(spec.sigv4.is_some());
    let authorization = spec
        .api_keys
        .keys()
        .any(|h| h.eq_ignore_ascii_case("authorization"));
    if schemes > 1 || (schemes == 1 && authorization) {
        return Err(
            "give one of `bearer_token_file`, `basic`, `sigv4` and an `Authorization` API key: each sets `Authorization`"
                .into(),
        );
    }
    if let Some(p) = &spec.bearer_token_file {
        let token = secret(&resolve(p), "bearer token file")?;
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(format!(
                "bearer token file `{}` must hold one line of printable text",
                p.display()
            ));
        }
        c.bearer = Some(token);
    }
    if let Some(b) = &spec.basic {
        c.basic = Some((
            b.user.clone(),
            secret(&resolve(&b.password_file), "password file")?,
        ));
    }
    for (header, file) in &spec.api_keys {
        let value = secret(&resolve(file), "API key file")?;
        if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(&value).is_err()
        {
            return Err(format!(
                "`api_keys`: `{header}` is not a valid HTTP header, or its file holds more than one line"
            ));
        }
        c.api_keys.push((header.clone(), value));
    }
    if let Some(s) = &spec.sigv4 {
        let from =
            |file: &Option<PathBuf>, var: &str, what: &str| -> Result<Option<String>, String> {
                match file {
                    Some(p) => secret(&resolve(p), what).map(Some),
                    None => Ok(std::env::var(var).ok().filter(|v| !v.is_empty())),
                }
            };
        let id = from(
            &s.access_key_id_file,
            "AWS_ACCESS_KEY_ID",
            "access key id file",
        )?;
        let key = from(
            &s.secret_access_key_file,
            "AWS_SECRET_ACCESS_KEY",
            "secret access key file",
        )?;
        let (Some(access_key_id), Some(secret_access_key)) = (id, key) else {
            return Err("`sigv4` needs `access_key_id_file` and `secret_access_key_file`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into());
        };
        c.sigv4 = Some(SigV4 {
            region: s.region.clone(),
            service: s.service.clone(),
            credentials: AwsCredentials {
                access_key_id,
                secret_access_key,
                session_token: from(
                    &s.session_token_file,
                    "AWS_SESSION_TOKEN",
                    "session token file",
                )?,
            },
        });
    }
    Ok(c)
}

/// `with:` flattened as a gate's is: dotted keys, lists of scalars kept
/// whole, lists of mappings indexed.
fn config(with: &serde_json::Map<String, Value>) -> Result<PluginConfig, String> {
    let mut out = Vec::new();
    for (k, v) in with {
        flatten(k.clone(), v, &mut out)?;
    }
    Ok(out)
}

fn scalar(v: &Value) -> Option<Scalar> {
    Some(match v {
        Value::Bool(b) => Scalar::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Scalar::Integer(i),
            None => Scalar::Number(n.as_f64().filter(|f| f.is_finite())?),
        },
        Value::String(s) => Scalar::Text(s.clone()),
        _ => return None,
    })
}

fn flatten(key: String, v: &Value, out: &mut PluginConfig) -> Result<(), String> {
    let value = match v {
        Value::Null => return Err(format!("`with.{key}` is empty")),
        Value::Object(m) => {
            for (k, v) in m {
                flatten(format!("{key}.{k}"), v, out)?;
            }
            return Ok(());
        }
        Value::Array(items) => match items.iter().map(scalar).collect::<Option<Vec<_>>>() {
            Some(list) => ConfigValue::List(list),
            None => {
                for (i, item) in items.iter().enumerate() {
                    flatten(format!("{key}.{i}"), item, out)?;
                }
                return Ok(());
            }
        },
        other => match scalar(other) {
            Some(Scalar::Boolean(b)) => ConfigValue::Boolean(b),
            Some(Scalar::Integer(i)) => ConfigValue::Integer(i),
            Some(Scalar::Number(f)) => ConfigValue::Number(f),
            Some(Scalar::Text(t)) => ConfigValue::Text(t),
            None => return Err(format!("`with.{key}` is not a finite number")),
        },
    };
    out.push((key, value));
    Ok(())
}
