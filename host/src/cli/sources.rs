//! The snapshot flags `eval` and `snapshot build` share: an explicit
//! snapshot, Prometheus, report files and ad-hoc values.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::files::MAX_SNAPSHOT_BYTES;
use crate::policy::Policy;
use crate::snapshot::Snapshot;
use crate::sources::prometheus::{Auth, Prometheus, PrometheusConfig};
use crate::sources::reports::ReportKind;
use crate::sources::{self, Evidence, Inputs, StageWindow};

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
    /// Prometheus base URL: query the policy's `metrics:` over the stage window.
    #[arg(long)]
    prometheus: Option<reqwest::Url>,
    /// File holding a bearer token for Prometheus.
    #[arg(long)]
    prometheus_token_file: Option<PathBuf>,
    /// PEM file of the CAs to trust for an `https` Prometheus.
    #[arg(long)]
    prometheus_ca_file: Option<PathBuf>,
    /// Per-query timeout [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    prometheus_timeout: Option<std::time::Duration>,
    /// End of the query window and the snapshot's `taken_at` (RFC 3339 or
    /// unix seconds) [default: the snapshot's `taken_at`, else now].
    #[arg(long, value_parser = parse_time)]
    at: Option<i64>,
    /// A CI report, `KIND=FILE`: coverage (lcov, Cobertura), tests (JUnit),
    /// lint or security (SARIF). Repeatable.
    #[arg(long = "report", value_parser = sources::parse_report)]
    reports: Vec<(ReportKind, PathBuf)>,
    /// An ad-hoc value, `NAME=VALUE`; wins over every other source. Repeatable.
    #[arg(long = "metric", value_parser = sources::parse_metric)]
    metrics: Vec<(String, f64)>,
}

use crate::sources::parse_time;

fn read_snapshot(source: &str) -> anyhow::Result<Snapshot> {
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
        crate::files::read_limited(Path::new(source), MAX_SNAPSHOT_BYTES)
            .with_context(|| format!("cannot read snapshot `{source}`"))?
    };
    Snapshot::from_json(&bytes).with_context(|| format!("invalid snapshot `{source}`"))
}

impl SourceArgs {
    /// `(service, version)` when they are all these flags give: a server
    /// can then query its own Prometheus for them.
    pub(crate) fn identity_only(&self) -> Option<(String, String)> {
        let nothing_else = self.snapshot.is_none()
            && self.prometheus.is_none()
            && self.reports.is_empty()
            && self.metrics.is_empty();
        let service = self.service.clone()?;
        nothing_else.then(|| (service, self.release_version.clone().unwrap_or_default()))
    }

    fn prometheus(&self) -> anyhow::Result<Option<Prometheus>> {
        let Some(url) = &self.prometheus else {
            return Ok(None);
        };
        let mut config = PrometheusConfig::new(url.clone());
        if let Some(t) = self.prometheus_timeout {
            config.timeout = t;
        }
        if let Some(path) = &self.prometheus_token_file {
            let token = crate::files::read_text(path)
                .with_context(|| format!("cannot read token file `{}`", path.display()))?;
            config.auth = Some(Auth::Bearer(token.trim().to_string()));
        }
        config.ca_file.clone_from(&self.prometheus_ca_file);
        Ok(Some(Prometheus::new(config)?))
    }

    /// Builds the snapshot these flags describe, for `stage` of `policy`
    /// when there is one, with the evidence of what was read (`None` for a
    /// snapshot given whole and nothing else).
    pub(crate) fn build(
        &self,
        policy: Option<&Policy>,
        stage: Option<&str>,
    ) -> anyhow::Result<(Snapshot, Option<Evidence>)> {
        let snapshot = self.snapshot.as_deref().map(read_snapshot).transpose()?;
        let prometheus = self.prometheus()?;
        if prometheus.is_none()
            && self.reports.is_empty()
            && self.metrics.is_empty()
            && let Some(s) = snapshot
        {
            return Ok((s, None));
        }
        let inputs = Inputs {
            snapshot,
            service: self.service.clone(),
            version: self.release_version.clone(),
            at: self.at,
            reports: self.reports.clone(),
            values: self.metrics.clone(),
        };
        if inputs.is_empty() && prometheus.is_none() {
            anyhow::bail!("no telemetry: give --snapshot, --prometheus, --report or --metric");
        }
        let at = sources::evaluation_time(&inputs);
        let mut evidence = Evidence {
            values: inputs.values.iter().cloned().collect(),
            ..Evidence::default()
        };
        let queried = match (&prometheus, policy) {
            (None, _) => (Vec::new(), Vec::new()),
            (Some(_), None) => {
                anyhow::bail!("--prometheus needs --policy, whose `metrics:` say what to query")
            }
            (Some(prom), Some(policy)) => {
                if policy.metrics.is_empty() {
                    anyhow::bail!(
                        "policy `{}` declares no `metrics:` to query from Prometheus",
                        policy.name
                    );
                }
                let service = inputs
                    .service
                    .clone()
                    .or_else(|| inputs.snapshot.as_ref().map(|s| s.service.clone()));
                let Some(service) = service.filter(|s| !s.is_empty()) else {
                    anyhow::bail!(
                        "--prometheus needs --service (the `${{service}}` of the queries)"
                    );
                };
                let version = inputs
                    .version
                    .clone()
                    .or_else(|| inputs.snapshot.as_ref().map(|s| s.version.clone()))
                    .unwrap_or_default();
                let found = policy.stage(stage);
                let window = StageWindow {
                    name: found.map_or(stage.unwrap_or_default(), |s| s.name.as_str()),
                    duration: found.and_then(|s| s.duration),
                };
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let (current, baseline, queries) = runtime.block_on(sources::query_policy(
                    prom, policy, window, &service, &version, at,
                ))?;
                evidence.prometheus = Some(prom.shown_url());
                evidence.queried_at = Some(at);
                evidence.queries = queries;
                (current, baseline)
            }
        };
        evidence.reports = sources::read_reports(&inputs.reports)?;
        let snapshot = sources::assemble(inputs, at, queried, &evidence.reports);
        Ok((snapshot, Some(evidence)))
    }
}
