//! The snapshot flags `eval` and `snapshot build` share: an explicit
//! snapshot, Prometheus, report files and ad-hoc values.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::base::files::MAX_SNAPSHOT_BYTES;
use crate::policy::Policy;
use crate::snapshot::Snapshot;
use crate::sources::prometheus::{Auth, Prometheus, PrometheusConfig};
use crate::sources::reports::ReportKind;
use crate::sources::{self, Evidence, Inputs, SourceError, Sources};

#[derive(Debug, clap::Args)]
pub(crate) struct SourceArgs {
    /// Snapshot JSON v1 file, or `-` for stdin. Its series win over queried
    /// and reported ones of the same name.
    #[arg(long, short = 's')]
    pub(crate) snapshot: Option<String>,
    /// The service under evaluation (`${service}` in queries).
    #[arg(long)]
    service: Option<String>,
    /// The version under evaluation (`${version}` in queries).
    #[arg(long = "version")]
    release_version: Option<String>,
    #[command(flatten)]
    prometheus: PrometheusArgs,
    /// A source plugin's base URL, `NAME=URL`: the first-party source NAME
    /// (prometheus, influxdb, loki, graphite, datadog, newrelic,
    /// cloudwatch) with no settings, or the URL of a source `--sources`
    /// configures. Queries the policy's `metrics:` that say `source: NAME`.
    /// Repeatable.
    #[arg(long = "source", value_name = "NAME=URL", value_parser = parse_source)]
    source_urls: Vec<(String, String)>,
    /// A sources file: `sources: {NAME: {url, plugin, with, credentials}}`
    /// (docs/sources.md).
    #[arg(long = "sources", value_name = "FILE")]
    sources_file: Option<PathBuf>,
    /// End of the query window and the snapshot's `taken_at` (RFC 3339 or
    /// unix seconds) [default: the snapshot's `taken_at`, else now].
    #[arg(long, value_parser = parse_time)]
    at: Option<i64>,
    /// A CI report, `KIND=FILE`, read into metrics. Repeatable. KIND is one
    /// of: coverage (lcov, Cobertura XML), tests (JUnit XML), lint (SARIF),
    /// security (SARIF, by `security-severity`), complexity (radon `cc -j`),
    /// maintainability (radon `mi -j`), duplication (jscpd JSON), secrets
    /// (detect-secrets or gitleaks JSON), dependencies (pip-audit JSON).
    #[arg(long = "report", value_name = "KIND=FILE", value_parser = sources::parse_report)]
    reports: Vec<(ReportKind, PathBuf)>,
    /// An ad-hoc value, `NAME=VALUE`; wins over every other source. Repeatable.
    #[arg(long = "metric", value_name = "NAME=VALUE", value_parser = sources::parse_metric)]
    metrics: Vec<(String, f64)>,
    /// A snapshot attribute, `KEY=VALUE` (e.g. `base_image=python:3.12`
    /// for `approved-registries`, `author=alice`); wins over the snapshot
    /// file's. Repeatable.
    #[arg(long = "attribute", value_name = "KEY=VALUE", value_parser = sources::parse_attribute)]
    attributes: Vec<(String, String)>,
}

use crate::sources::parse_time;

fn parse_source(arg: &str) -> Result<(String, String), String> {
    crate::sources::settings::parse_source_arg(arg)
}

/// Unix seconds now: the time of a snapshot that does not say.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads the `--snapshot` file; it may be partial (no `taken_at`, no
/// `service`, …), and then `taken_at` is `default_at`.
fn read_snapshot(source: &str, default_at: i64) -> anyhow::Result<Snapshot> {
    let bytes = if source == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_SNAPSHOT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the snapshot from stdin")?;
        if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
            anyhow::bail!(
                "the snapshot on stdin is larger than {} MiB",
                MAX_SNAPSHOT_BYTES >> 20
            );
        }
        bytes
    } else {
        crate::base::files::read_limited(Path::new(source), MAX_SNAPSHOT_BYTES)
            .with_context(|| format!("cannot read snapshot `{source}`"))?
    };
    Snapshot::from_partial_json(&bytes, default_at)
        .with_context(|| format!("invalid snapshot `{source}`"))
}

/// Where to query Prometheus, and how.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PrometheusArgs {
    /// Prometheus base URL: query the policy's `metrics:` over the stage window.
    #[arg(long = "prometheus")]
    url: Option<reqwest::Url>,
    /// File holding a bearer token for Prometheus.
    #[arg(long)]
    prometheus_token_file: Option<PathBuf>,
    /// PEM file of the CAs to trust for an `https` Prometheus.
    #[arg(long)]
    prometheus_ca_file: Option<PathBuf>,
    /// Per-query timeout [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    prometheus_timeout: Option<std::time::Duration>,
}

impl PrometheusArgs {
    /// The client these flags describe, or `None` without `--prometheus`.
    pub(crate) fn client(&self) -> anyhow::Result<Option<Prometheus>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut config = PrometheusConfig::new(url.clone());
        if let Some(t) = self.prometheus_timeout {
            config.timeout = t;
        }
        if let Some(path) = &self.prometheus_token_file {
            let token = crate::base::files::read_text(path)
                .with_context(|| format!("cannot read token file `{}`", path.display()))?;
            config.auth = Some(Auth::Bearer(token.trim().to_string()));
        }
        config.ca_file.clone_from(&self.prometheus_ca_file);
        Ok(Some(Prometheus::new(config)?))
    }
}

impl SourceArgs {
    /// `--at`, when given: the time the caller asks to evaluate as at.
    pub(crate) fn at(&self) -> Option<i64> {
        self.at
    }

    /// `(service, version)` when they are all these flags give: a server
    /// can then query its own Prometheus for them.
    pub(crate) fn identity_only(&self) -> Option<(String, String)> {
        let nothing_else = self.snapshot.is_none()
            && self.prometheus.url.is_none()
            && self.source_urls.is_empty()
            && self.sources_file.is_none()
            && self.reports.is_empty()
            && self.metrics.is_empty()
            && self.attributes.is_empty();
        let service = self.service.clone()?;
        nothing_else.then(|| (service, self.release_version.clone().unwrap_or_default()))
    }

    /// The sources these flags configure: Prometheus, and the source
    /// plugins of `--sources` and `--source`, loaded into `runtime` (or a
    /// runtime of their own when the caller has none).
    fn sources(&self, runtime: Option<&crate::engine::Runtime>) -> anyhow::Result<Sources> {
        let mut sources = Sources::prometheus(self.prometheus.client()?);
        if self.source_urls.is_empty() && self.sources_file.is_none() {
            return Ok(sources);
        }
        let (mut specs, base) = match &self.sources_file {
            Some(path) => (
                crate::sources::settings::read_file(path)
                    .map_err(anyhow::Error::msg)?
                    .sources,
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ),
            None => (Default::default(), PathBuf::new()),
        };
        let from_file = !specs.is_empty();
        for (name, url) in &self.source_urls {
            match specs.get_mut(name) {
                Some(spec) => spec.url.clone_from(url),
                None if crate::policy::builtin::is_source(name) || !from_file => {
                    specs.insert(name.clone(), crate::sources::settings::plain(url));
                }
                None => {
                    let configured: Vec<&str> = specs.keys().map(String::as_str).collect();
                    let hint = crate::base::suggest::closest(name, configured.iter().copied())
                        .map(|c| format!(" (did you mean `{c}`?)"))
                        .unwrap_or_default();
                    anyhow::bail!(
                        "`--source {name}=…`: the sources file configures {}, not `{name}`{hint}, and `{name}` is no first-party source",
                        configured.join(", ")
                    );
                }
            }
        }
        let own;
        let runtime = match runtime {
            Some(r) => r,
            None => {
                own = super::runtime()?;
                &own
            }
        };
        sources.plugins =
            crate::sources::settings::build(runtime, &specs, &base).map_err(anyhow::Error::msg)?;
        Ok(sources)
    }

    /// Builds the snapshot these flags describe, for `stage` of `policy`
    /// when there is one, with the evidence of what was read (`None` for a
    /// snapshot given whole and nothing else).
    pub(crate) fn build(
        &self,
        runtime: Option<&crate::engine::Runtime>,
        policy: Option<&Policy>,
        stage: Option<&str>,
    ) -> anyhow::Result<(Snapshot, Option<Evidence>)> {
        let default_at = self.at.unwrap_or_else(now);
        let snapshot = self
            .snapshot
            .as_deref()
            .map(|s| read_snapshot(s, default_at))
            .transpose()?;
        let sources = self.sources(runtime)?;
        let inputs = Inputs {
            snapshot,
            service: self.service.clone(),
            version: self.release_version.clone(),
            at: self.at,
            reports: self.reports.clone(),
            values: self.metrics.clone(),
            attributes: self.attributes.clone(),
        };
        if inputs.is_empty() && sources.is_empty() {
            anyhow::bail!(
                "no telemetry: give --snapshot, --prometheus, --source or --sources, --report, --metric or --attribute"
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        if sources.is_empty()
            && let Some(policy) = policy
        {
            // Not an error (a snapshot or `--metric` may carry the values),
            // but a gate left without data should not be a mystery.
            for m in policy.metrics.iter().filter(|m| m.source.is_some()) {
                let given = inputs
                    .snapshot
                    .as_ref()
                    .is_some_and(|s| s.metrics.iter().any(|x| x.name == m.name))
                    || inputs.values.iter().any(|(n, _)| *n == m.name);
                if !given {
                    let source =
                        crate::base::text::escape_control(m.source.as_deref().unwrap_or_default());
                    eprintln!(
                        "note: metric `{}` was not queried: its source `{source}` needs --sources FILE or --source {source}=URL",
                        crate::base::text::escape_control(&m.name),
                    );
                }
            }
        }
        let gathered = runtime.block_on(sources::gather(&sources, policy, stage, inputs));
        let flag = if sources.prometheus.is_some() {
            "--prometheus"
        } else {
            "--source"
        };
        gathered.map_err(|e| match e {
            SourceError::NoPolicy => {
                anyhow::anyhow!("{flag} needs --policy, whose `metrics:` say what to query")
            }
            SourceError::NoService => {
                anyhow::anyhow!("{flag} needs --service (the `${{service}}` of the queries)")
            }
            SourceError::NoMetrics { policy } => {
                anyhow::anyhow!("policy `{policy}` declares no `metrics:` to query")
            }
            other => other.into(),
        })
    }
}
