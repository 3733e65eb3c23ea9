//! Plain Rust: the same gates, hand-written, with no plugin, no sandbox and
//! no policy file. What the threshold plugin and the stage rule compute,
//! and nothing else.

use serde::Deserialize;

use crate::verdicts::{self, Verdicts};

/// How a window of values becomes one number.
#[derive(Debug, Clone, Copy)]
pub enum Aggregate {
    /// The value at the newest timestamp; ties keep the later entry.
    Last,
    Max,
    /// A running mean, as the plugin SDK computes it.
    Avg,
}

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Lt,
    Ge,
    Eq,
}

impl Op {
    fn holds(self, observed: f64, threshold: f64) -> bool {
        match self {
            Self::Lt => observed < threshold,
            Self::Ge => observed >= threshold,
            Self::Eq => observed == threshold,
        }
    }
}

/// A threshold gate, as the policy's `with:` gives it.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub name: &'static str,
    pub metric: &'static str,
    pub aggregate: Aggregate,
    /// Seconds; `None` keeps every point.
    pub window: Option<i64>,
    pub op: Op,
    pub threshold: f64,
}

/// `policies/ci-quality-gates.yaml`.
pub const W1: [Gate; 6] = [
    Gate {
        name: "test-coverage",
        metric: "test_coverage_percent",
        aggregate: Aggregate::Last,
        window: None,
        op: Op::Ge,
        threshold: 80.0,
    },
    Gate {
        name: "lint-errors",
        metric: "lint_errors",
        aggregate: Aggregate::Last,
        window: None,
        op: Op::Eq,
        threshold: 0.0,
    },
    Gate {
        name: "critical-vulnerabilities",
        metric: "vulnerabilities_critical",
        aggregate: Aggregate::Last,
        window: None,
        op: Op::Eq,
        threshold: 0.0,
    },
    Gate {
        name: "performance-regression",
        metric: "performance_regression_percent",
        aggregate: Aggregate::Last,
        window: None,
        op: Op::Lt,
        threshold: 5.0,
    },
    Gate {
        name: "api-response-time",
        metric: "response_time_p95_ms",
        aggregate: Aggregate::Max,
        window: None,
        op: Op::Lt,
        threshold: 200.0,
    },
    Gate {
        name: "compliance-score",
        metric: "compliance_score_percent",
        aggregate: Aggregate::Last,
        window: None,
        op: Op::Ge,
        threshold: 95.0,
    },
];

/// The gates of stage `initial-canary` of `policies/canary.yaml`.
pub const W2: [Gate; 2] = [
    Gate {
        name: "error-rate",
        metric: "error_rate",
        aggregate: Aggregate::Avg,
        window: Some(15 * 60),
        op: Op::Lt,
        threshold: 0.001,
    },
    Gate {
        name: "response-time-p95",
        metric: "response_time_p95_ms",
        aggregate: Aggregate::Max,
        window: Some(15 * 60),
        op: Op::Lt,
        threshold: 500.0,
    },
];

/// The series a gate reads, whoever parsed them.
pub trait View {
    fn taken_at(&self) -> i64;
    /// Calls `f` with every `(timestamp, value)` of every current series
    /// named `metric`, series in document order.
    fn each_point(&self, metric: &str, f: &mut dyn FnMut(i64, f64));
}

/// The snapshot tollgate parsed: W1 and W2 read the same one it evaluates.
impl View for tollgate::snapshot::Snapshot {
    fn taken_at(&self) -> i64 {
        self.taken_at
    }
    fn each_point(&self, metric: &str, f: &mut dyn FnMut(i64, f64)) {
        for s in self.metrics.iter().filter(|s| s.name == metric) {
            for p in &s.points {
                f(p.timestamp, p.value);
            }
        }
    }
}

/// Snapshot JSON v1 read with serde_json into only what the gates need
/// (labels, attributes and commits are skipped), for W3's end to end.
#[derive(Debug, Deserialize)]
pub struct Snapshot {
    taken_at: i64,
    metrics: Vec<Series>,
}

#[derive(Debug, Deserialize)]
struct Series {
    name: String,
    #[serde(default)]
    points: Option<Vec<(i64, f64)>>,
    #[serde(default)]
    value: Option<f64>,
}

impl View for Snapshot {
    fn taken_at(&self) -> i64 {
        self.taken_at
    }
    fn each_point(&self, metric: &str, f: &mut dyn FnMut(i64, f64)) {
        for s in self.metrics.iter().filter(|s| s.name == metric) {
            match (&s.points, s.value) {
                (Some(points), _) => points.iter().for_each(|&(t, v)| f(t, v)),
                (None, Some(v)) => f(self.taken_at, v),
                (None, None) => {}
            }
        }
    }
}

pub fn parse(bytes: &[u8]) -> Result<Snapshot, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Promote,
    Hold,
    Rollback,
}

/// One evaluation's answer: the outcome and each gate's verdict and value.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    pub gates: Vec<(&'static str, Verdict, Option<f64>)>,
}

fn observe(view: &dyn View, gate: &Gate) -> Option<f64> {
    let taken_at = view.taken_at();
    let start = gate.window.map(|w| taken_at.saturating_sub(w));
    let in_window = |t: i64| start.is_none_or(|s| t > s && t <= taken_at);
    let mut n = 0usize;
    let mut acc = match gate.aggregate {
        Aggregate::Max => f64::NEG_INFINITY,
        Aggregate::Avg | Aggregate::Last => 0.0,
    };
    let mut newest = i64::MIN;
    view.each_point(gate.metric, &mut |t, v| {
        if !in_window(t) {
            return;
        }
        n += 1;
        match gate.aggregate {
            Aggregate::Max => acc = acc.max(v),
            Aggregate::Avg => acc += (v - acc) / n as f64,
            Aggregate::Last => {
                if t >= newest {
                    newest = t;
                    acc = v;
                }
            }
        }
    });
    (n > 0).then_some(acc)
}

/// Every gate, then the stage rule: a failed key gate rolls back (all of
/// these are key gates), an inconclusive one holds, otherwise promote.
pub fn evaluate(view: &dyn View, gates: &[Gate]) -> Decision {
    let gates: Vec<_> = gates
        .iter()
        .map(|g| {
            let observed = observe(view, g);
            let verdict = match observed {
                None => Verdict::Inconclusive,
                Some(v) if g.op.holds(v, g.threshold) => Verdict::Pass,
                Some(_) => Verdict::Fail,
            };
            (g.name, verdict, observed)
        })
        .collect();
    let outcome = if gates.iter().any(|g| g.1 == Verdict::Fail) {
        Outcome::Rollback
    } else if gates.iter().any(|g| g.1 == Verdict::Inconclusive) {
        Outcome::Hold
    } else {
        Outcome::Promote
    };
    Decision { outcome, gates }
}

impl Decision {
    pub fn verdicts(&self) -> Verdicts {
        Verdicts {
            decision: match self.outcome {
                Outcome::Promote => "promote",
                Outcome::Hold => "hold",
                Outcome::Rollback => "rollback",
            }
            .into(),
            gates: self
                .gates
                .iter()
                .map(|&(name, verdict, observed)| verdicts::Gate {
                    name: name.into(),
                    verdict: match verdict {
                        Verdict::Pass => "pass",
                        Verdict::Fail => "fail",
                        Verdict::Inconclusive => "inconclusive",
                    }
                    .into(),
                    observed,
                })
                .collect(),
        }
    }
}
