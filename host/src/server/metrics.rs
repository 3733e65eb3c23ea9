//! The server's own Prometheus metrics, in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EvalLabels {
    pub(super) policy: String,
    pub(super) decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct VerdictLabels {
    pub(super) plugin: String,
    pub(super) verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TrapLabels {
    pub(super) cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) route: String,
    pub(super) status: u16,
}

/// Every metric the server exports.
pub(super) struct Metrics {
    registry: Registry,
    pub(super) evaluations: Family<EvalLabels, Counter>,
    pub(super) verdicts: Family<VerdictLabels, Counter>,
    pub(super) traps: Family<TrapLabels, Counter>,
    pub(super) latency: Histogram,
    pub(super) in_flight: Gauge,
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) reloads: Counter,
    pub(super) connections_refused: Counter,
}

impl Metrics {
    pub(super) fn new() -> Self {
        let mut registry = Registry::with_prefix("tollgate");
        let evaluations = Family::<EvalLabels, Counter>::default();
        registry.register(
            "evaluations",
            "Evaluations by policy and decision",
            evaluations.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "gate_verdicts",
            "Gate verdicts by plugin and verdict",
            verdicts.clone(),
        );
        let traps = Family::<TrapLabels, Counter>::default();
        registry.register(
            "plugin_traps",
            "Plugin calls that broke, by cause",
            traps.clone(),
        );
        // 50 µs to ~3.3 s.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.00005, 2.0, 17,
        ));
        registry.register(
            "evaluation_duration_seconds",
            "Evaluation latency",
            latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "HTTP requests being served",
            in_flight.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let reloads = Counter::default();
        registry.register(
            "policy_reloads",
            "Successful policy reloads",
            reloads.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on accept because the connection cap was reached",
            connections_refused.clone(),
        );
        Self {
            connections_refused,
            registry,
            evaluations,
            verdicts,
            traps,
            latency,
            in_flight,
            requests,
            reloads,
        }
    }

    /// The exposition text.
    pub(super) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
