//! The four DORA figures, derived from the decision log, beside the
//! release process's targets and where each stands among DORA's bands
//! (elite, high, medium, low).
//!
//! Times are the decisions' `taken_at` (the snapshot's clock), so a report
//! over the same log is the same wherever it is computed.
//! - **Deployment frequency**: promotions of a policy's final stage.
//! - **Lead time for changes**: from the oldest commit in the promoted
//!   snapshot to that promotion (median).
//! - **Change failure rate**: rollbacks over deployments.
//! - **Time to restore**: from a rollback to the next final-stage promotion
//!   of the service (median).

use serde::Serialize;

use crate::store::Summary;

/// Where a figure stands among DORA's performance clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Elite,
    High,
    Medium,
    Low,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Elite => "elite",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// A metric's bands, best first: each band's upper (or, where more is
/// better, lower) bound in the figure's unit, and how it reads. The bounds
/// follow the clusters of DORA's State of DevOps reports: deploying daily
/// or on demand, lead times and restores under a day or an hour, and few
/// changes failing are elite.
struct Bands {
    /// Whether a larger value is better (deployments per day).
    larger_is_better: bool,
    /// `(band, bound, words)`; the last band has no bound.
    bands: [(Band, f64, &'static str); 4],
}

impl Bands {
    /// The band `value` falls in.
    fn of(&self, value: f64) -> Band {
        self.bands
            .iter()
            .find(|(_, bound, _)| {
                if self.larger_is_better {
                    value >= *bound
                } else {
                    value < *bound
                }
            })
            .map_or(Band::Low, |(band, _, _)| *band)
    }

    fn words(&self, band: Band) -> &'static str {
        self.bands
            .iter()
            .find(|(b, _, _)| *b == band)
            .map_or("", |(_, _, w)| w)
    }

    /// Where the figure stands, and what the band above would take:
    /// `high: weekly to daily; elite: daily or more`.
    fn benchmark(&self, band: Option<Band>) -> String {
        let elite = format!("elite: {}", self.words(Band::Elite));
        match band {
            Some(Band::Elite) => elite,
            Some(b) => format!("{}: {}; {elite}", b.as_str(), self.words(b)),
            None => elite,
        }
    }
}

const DEPLOYMENT_FREQUENCY: Bands = Bands {
    larger_is_better: true,
    bands: [
        (Band::Elite, 1.0, "daily or more (on demand)"),
        (Band::High, 1.0 / 7.0, "weekly to daily"),
        (Band::Medium, 1.0 / 30.0, "monthly to weekly"),
        (Band::Low, 0.0, "less than monthly"),
    ],
};

const LEAD_TIME_HOURS: Bands = Bands {
    larger_is_better: false,
    bands: [
        (Band::Elite, 24.0, "under a day"),
        (Band::High, 7.0 * 24.0, "a day to a week"),
        (Band::Medium, 30.0 * 24.0, "a week to a month"),
        (Band::Low, f64::INFINITY, "more than a month"),
    ],
};

const CHANGE_FAILURE_PERCENT: Bands = Bands {
    larger_is_better: false,
    bands: [
        (Band::Elite, 5.0, "under 5%"),
        (Band::High, 15.0, "5-15%"),
        (Band::Medium, 30.0, "15-30%"),
        (Band::Low, f64::INFINITY, "30% or more"),
    ],
};

const RESTORE_MINUTES: Bands = Bands {
    larger_is_better: false,
    bands: [
        (Band::Elite, 60.0, "under an hour"),
        (Band::High, 24.0 * 60.0, "an hour to a day"),
        (Band::Medium, 7.0 * 24.0 * 60.0, "a day to a week"),
        (Band::Low, f64::INFINITY, "more than a week"),
    ],
};

/// One figure with what it is measured against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: &'static str,
    /// The value, in `unit`; `None` when the log holds no event to measure.
    pub value: Option<f64>,
    pub unit: &'static str,
    /// How many events the figure is computed from.
    pub samples: usize,
    /// The release process's target, as it writes it.
    pub target: &'static str,
    /// Where the value stands among DORA's bands (`None` without a value).
    pub band: Option<Band>,
    /// The band in words, and what the elite band takes.
    pub benchmark: String,
    /// Whether the value meets the target (`None` without a value).
    pub meets_target: Option<bool>,
}

impl Figure {
    fn new(
        name: &'static str,
        value: Option<f64>,
        unit: &'static str,
        samples: usize,
        (target, meets): (&'static str, fn(f64) -> bool),
        bands: &Bands,
    ) -> Self {
        let band = value.map(|v| bands.of(v));
        Self {
            name,
            value,
            unit,
            samples,
            target,
            band,
            benchmark: bands.benchmark(band),
            meets_target: value.map(meets),
        }
    }
}

/// The report for one service over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoraReport {
    pub service: String,
    /// Unix seconds, inclusive.
    pub since: i64,
    /// Unix seconds, exclusive.
    pub until: i64,
    pub deployments: usize,
    pub rollbacks: usize,
    pub figures: Vec<Figure>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        f64::midpoint(v[mid - 1], v[mid])
    } else {
        v[mid]
    })
}

/// Computes the report from `events` (any order) of `service` in
/// `[since, until)`.
pub fn compute(service: &str, since: i64, until: i64, events: &[Summary]) -> DoraReport {
    let mut events: Vec<&Summary> = events
        .iter()
        .filter(|e| e.service == service && e.taken_at >= since && e.taken_at < until)
        .collect();
    events.sort_by(|a, b| (a.taken_at, &a.decision_id).cmp(&(b.taken_at, &b.decision_id)));
    let deployments: Vec<&&Summary> = events
        .iter()
        .filter(|e| e.final_stage && e.decision == "promote")
        .collect();
    let rollbacks: Vec<&&Summary> = events.iter().filter(|e| e.decision == "rollback").collect();
    let days = (until.saturating_sub(since) as f64 / 86_400.0).max(f64::MIN_POSITIVE);
    let per_day =
        (!deployments.is_empty() || until > since).then(|| deployments.len() as f64 / days);
    let leads: Vec<f64> = deployments
        .iter()
        .filter_map(|d| {
            d.oldest_commit
                .map(|c| d.taken_at.saturating_sub(c) as f64 / 3600.0)
        })
        .collect();
    let restores: Vec<f64> = rollbacks
        .iter()
        .filter_map(|r| {
            deployments
                .iter()
                .find(|d| d.taken_at > r.taken_at)
                .map(|d| d.taken_at.saturating_sub(r.taken_at) as f64 / 60.0)
        })
        .collect();
    let failure_rate = (!deployments.is_empty())
        .then(|| 100.0 * rollbacks.len() as f64 / deployments.len() as f64);
    let lead_samples = leads.len();
    let restore_samples = restores.len();
    let lead = median(leads);
    let restore = median(restores);
    DoraReport {
        service: service.to_string(),
        since,
        until,
        deployments: deployments.len(),
        rollbacks: rollbacks.len(),
        figures: vec![
            Figure::new(
                "deployment_frequency",
                per_day,
                "deployments/day",
                deployments.len(),
                ("Daily", |v| v >= 1.0),
                &DEPLOYMENT_FREQUENCY,
            ),
            Figure::new(
                "lead_time_for_changes",
                lead,
                "hours (median)",
                lead_samples,
                ("<1 day", |v| v < 24.0),
                &LEAD_TIME_HOURS,
            ),
            Figure::new(
                "change_failure_rate",
                failure_rate,
                "%",
                deployments.len(),
                ("<5%", |v| v < 5.0),
                &CHANGE_FAILURE_PERCENT,
            ),
            Figure::new(
                "time_to_restore",
                restore,
                "minutes (median)",
                restore_samples,
                ("<1 hour", |v| v < 60.0),
                &RESTORE_MINUTES,
            ),
        ],
    }
}

/// Reads every decision of `service` in `[since, until)` from `store` and
/// computes the report.
pub async fn from_store(
    store: &dyn crate::store::Store,
    service: &str,
    since: i64,
    until: i64,
) -> Result<DoraReport, crate::store::StoreError> {
    let filter = crate::store::Filter {
        service: Some(service.to_string()),
        since: Some(since),
        until: Some(until),
        ..crate::store::Filter::default()
    };
    let events = crate::store::all(store, &filter).await?;
    Ok(compute(service, since, until, &events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(t: i64, decision: &str, final_stage: bool, commit: Option<i64>) -> Summary {
        Summary {
            decision_id: format!("{t:010}"),
            recorded_at_ms: t * 1000,
            taken_at: t,
            service: "svc".into(),
            version: "1".into(),
            policy: "canary".into(),
            stage: if final_stage { "full" } else { "canary" }.into(),
            final_stage,
            decision: decision.into(),
            summary: String::new(),
            oldest_commit: commit,
        }
    }

    #[test]
    fn figures_from_a_known_log() {
        const H: i64 = 3600;
        let events = vec![
            event(10 * H, "promote", true, Some(4 * H)),   // lead 6 h
            event(20 * H, "promote", false, Some(19 * H)), // not final: not a deployment
            event(30 * H, "rollback", false, None),
            event(30 * H + 1800, "promote", true, Some(28 * H)), // lead 2.5 h; restores in 30 min
            event(50 * H, "promote", true, Some(40 * H)),        // lead 10 h
            event(60 * H, "hold", true, None),
        ];
        let r = compute("svc", 0, 4 * 24 * H, &events);
        assert_eq!((r.deployments, r.rollbacks), (3, 1));
        let f = |n: &str| r.figures.iter().find(|f| f.name == n).unwrap().clone();
        assert_eq!(f("deployment_frequency").value, Some(0.75));
        assert_eq!(f("deployment_frequency").meets_target, Some(false));
        assert_eq!(f("lead_time_for_changes").value, Some(6.0));
        assert_eq!(f("lead_time_for_changes").meets_target, Some(true));
        let cfr = f("change_failure_rate").value.unwrap();
        assert!((cfr - 100.0 / 3.0).abs() < 1e-9, "{cfr}");
        assert_eq!(f("time_to_restore").value, Some(30.0));
        assert_eq!(f("time_to_restore").meets_target, Some(true));
        // Where each figure stands, not one fixed text.
        assert_eq!(f("deployment_frequency").band, Some(Band::High));
        assert_eq!(
            f("deployment_frequency").benchmark,
            "high: weekly to daily; elite: daily or more (on demand)"
        );
        assert_eq!(f("lead_time_for_changes").band, Some(Band::Elite));
        assert_eq!(f("lead_time_for_changes").benchmark, "elite: under a day");
        assert_eq!(f("change_failure_rate").band, Some(Band::Low));
        assert_eq!(f("time_to_restore").band, Some(Band::Elite));
    }

    #[test]
    fn bands_have_inclusive_bounds_on_the_better_side() {
        assert_eq!(DEPLOYMENT_FREQUENCY.of(1.0), Band::Elite);
        assert_eq!(DEPLOYMENT_FREQUENCY.of(0.99), Band::High);
        assert_eq!(DEPLOYMENT_FREQUENCY.of(1.0 / 7.0), Band::High);
        assert_eq!(DEPLOYMENT_FREQUENCY.of(0.1), Band::Medium);
        assert_eq!(DEPLOYMENT_FREQUENCY.of(0.0), Band::Low);
        assert_eq!(LEAD_TIME_HOURS.of(23.9), Band::Elite);
        assert_eq!(LEAD_TIME_HOURS.of(24.0), Band::High);
        assert_eq!(LEAD_TIME_HOURS.of(800.0), Band::Low);
        assert_eq!(CHANGE_FAILURE_PERCENT.of(4.9), Band::Elite);
        assert_eq!(CHANGE_FAILURE_PERCENT.of(20.0), Band::Medium);
        assert_eq!(RESTORE_MINUTES.of(90.0), Band::High);
    }

    #[test]
    fn an_empty_window_has_no_figures_to_claim() {
        let r = compute("svc", 0, 86_400, &[]);
        let f = |n: &str| r.figures.iter().find(|f| f.name == n).unwrap().clone();
        assert_eq!(f("deployment_frequency").value, Some(0.0));
        assert_eq!(f("change_failure_rate").value, None);
        assert_eq!(f("change_failure_rate").band, None);
        assert_eq!(f("time_to_restore").meets_target, None);
        assert_eq!(f("deployment_frequency").band, Some(Band::Low));
    }
}
