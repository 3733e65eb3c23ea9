//! The server's own Prometheus metrics, in the text exposition format, and
//! what its decisions judged: each gate's last observed value and threshold,
//! and the last decision per policy and service, so dashboards and alerts
//! can show "how close to failing" beside "what was decided".
//!
//! Services are the caller's to name, so only the first
//! `metrics_max_services` get labels of their own; later ones are counted,
//! never added, and the exposition stays bounded.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Services given labels of their own by default.
pub const DEFAULT_MAX_SERVICES: usize = 100;

/// A gate of a policy's stage, for one service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct GateLabels {
    pub(super) policy: String,
    pub(super) stage: String,
    pub(super) gate: String,
    pub(super) service: String,
}

/// A policy's last decision for one service, one series per outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LastLabels {
    pub(super) policy: String,
    pub(super) service: String,
    pub(super) decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReleaseLabels {
    pub(super) policy: String,
    pub(super) service: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// What became of a notification.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NotificationLabels {
    pub(super) result: &'static str,
}

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
    pub(super) gate_observed: Family<GateLabels, FloatGauge>,
    pub(super) gate_threshold: Family<GateLabels, FloatGauge>,
    pub(super) gate_passing: Family<GateLabels, Gauge>,
    pub(super) last_decision: Family<LastLabels, Gauge>,
    pub(super) last_decision_time: Family<ReleaseLabels, Gauge>,
    pub(super) last_score: Family<ReleaseLabels, FloatGauge>,
    pub(super) over_cap: Counter,
    pub(super) notifications: Family<NotificationLabels, Counter>,
    /// Services with labels of their own, at most `max_services`.
    services: Mutex<HashSet<String>>,
    max_services: usize,
}

impl Metrics {
    pub(super) fn new(max_services: usize) -> Self {
        let mut registry = Registry::with_prefix("tollgate");
        let gate_observed = Family::<GateLabels, FloatGauge>::default();
        registry.register(
            "gate_observed",
            "The value each gate last observed, by policy, stage, gate and service (NaN when it had no data)",
            gate_observed.clone(),
        );
        let gate_threshold = Family::<GateLabels, FloatGauge>::default();
        registry.register(
            "gate_threshold",
            "The threshold each gate last judged against, by policy, stage, gate and service (NaN when it gave none)",
            gate_threshold.clone(),
        );
        let gate_passing = Family::<GateLabels, Gauge>::default();
        registry.register(
            "gate_passing",
            "1 when the gate last counted as pass, 0 otherwise",
            gate_passing.clone(),
        );
        let last_decision = Family::<LastLabels, Gauge>::default();
        registry.register(
            "last_decision",
            "1 for the outcome of the last decision per policy and service, 0 for the other outcomes",
            last_decision.clone(),
        );
        let last_decision_time = Family::<ReleaseLabels, Gauge>::default();
        registry.register(
            "last_decision_timestamp_seconds",
            "When the last decision per policy and service was made (unix seconds, the server's clock)",
            last_decision_time.clone(),
        );
        let last_score = Family::<ReleaseLabels, FloatGauge>::default();
        registry.register(
            "last_decision_score_percent",
            "The weighted score of the last decision per policy and service (NaN when no gate counted)",
            last_score.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Decision webhooks by result: sent, failed (after every retry) or dropped (queue full)",
            notifications.clone(),
        );
        let over_cap = Counter::default();
        registry.register(
            "metrics_services_over_cap",
            "Decisions whose service got no labels of its own because metrics_max_services services already had them",
            over_cap.clone(),
        );
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
            gate_observed,
            gate_threshold,
            gate_passing,
            last_decision,
            last_decision_time,
            last_score,
            over_cap,
            notifications,
            services: Mutex::new(HashSet::new()),
            max_services,
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

    /// Whether `service` has (or may now take) labels of its own.
    fn labelled(&self, service: &str) -> bool {
        let mut services = self
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if services.contains(service) {
            return true;
        }
        if services.len() >= self.max_services {
            return false;
        }
        services.insert(service.to_string());
        true
    }

    /// Sets the judged values of `decision`: every gate of every stage it
    /// evaluated, and the last decision of its policy for its service.
    pub(super) fn judged(&self, d: &crate::evaluate::decision::Decision) {
        use crate::evaluate::decision::{Counted, Outcome};
        if !self.labelled(&d.service) {
            self.over_cap.inc();
            return;
        }
        let stages: Vec<(&str, &[crate::evaluate::decision::GateResult])> = if d.pipeline.is_empty()
        {
            vec![(d.stage.as_str(), d.gates.as_slice())]
        } else {
            d.pipeline
                .iter()
                .map(|r| (r.stage.as_str(), r.gates.as_slice()))
                .collect()
        };
        for (stage, gates) in stages {
            for g in gates {
                let labels = GateLabels {
                    policy: d.policy.clone(),
                    stage: stage.to_string(),
                    gate: g.name.clone(),
                    service: d.service.clone(),
                };
                self.gate_observed
                    .get_or_create(&labels)
                    .set(g.observed.unwrap_or(f64::NAN));
                self.gate_threshold
                    .get_or_create(&labels)
                    .set(g.threshold.unwrap_or(f64::NAN));
                self.gate_passing
                    .get_or_create(&labels)
                    .set(i64::from(g.counted_as == Counted::Pass));
            }
        }
        for o in [Outcome::Promote, Outcome::Hold, Outcome::Rollback] {
            self.last_decision
                .get_or_create(&LastLabels {
                    policy: d.policy.clone(),
                    service: d.service.clone(),
                    decision: o.as_str().into(),
                })
                .set(i64::from(o == d.decision));
        }
        let release = ReleaseLabels {
            policy: d.policy.clone(),
            service: d.service.clone(),
        };
        self.last_decision_time
            .get_or_create(&release)
            .set(d.decided_at.unwrap_or(d.taken_at));
        self.last_score
            .get_or_create(&release)
            .set(d.score.unwrap_or(f64::NAN));
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
