//! The four DORA figures, derived from the decision log, beside the
//! release process's targets and its "high performers" benchmarks.
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
    /// Its industry benchmark, as it writes it.
    pub benchmark: &'static str,
    /// Whether the value meets the target (`None` without a value).
    pub meets_target: Option<bool>,
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
    let days = ((until - since) as f64 / 86_400.0).max(f64::MIN_POSITIVE);
    let per_day =
        (!deployments.is_empty() || until > since).then(|| deployments.len() as f64 / days);
    let leads: Vec<f64> = deployments
        .iter()
        .filter_map(|d| d.oldest_commit.map(|c| (d.taken_at - c) as f64 / 3600.0))
        .collect();
    let restores: Vec<f64> = rollbacks
        .iter()
        .filter_map(|r| {
            deployments
                .iter()
                .find(|d| d.taken_at > r.taken_at)
                .map(|d| (d.taken_at - r.taken_at) as f64 / 60.0)
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
            Figure {
                name: "deployment_frequency",
                value: per_day,
                unit: "deployments/day",
                samples: deployments.len(),
                target: "Daily",
                benchmark: "Weekly (High Performers: Daily)",
                meets_target: per_day.map(|v| v >= 1.0),
            },
            Figure {
                name: "lead_time_for_changes",
                value: lead,
                unit: "hours (median)",
                samples: lead_samples,
                target: "<1 day",
                benchmark: "1-7 days (High Performers: <1 day)",
                meets_target: lead.map(|v| v < 24.0),
            },
            Figure {
                name: "change_failure_rate",
                value: failure_rate,
                unit: "%",
                samples: deployments.len(),
                target: "<5%",
                benchmark: "0-15% (High Performers: 0-5%)",
                meets_target: failure_rate.map(|v| v < 5.0),
            },
            Figure {
                name: "time_to_restore",
                value: restore,
                unit: "minutes (median)",
                samples: restore_samples,
                target: "<1 hour",
                benchmark: "<1 hour (High Performers)",
                meets_target: restore.map(|v| v < 60.0),
            },
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
    }

    #[test]
    fn an_empty_window_has_no_figures_to_claim() {
        let r = compute("svc", 0, 86_400, &[]);
        let f = |n: &str| r.figures.iter().find(|f| f.name == n).unwrap().clone();
        assert_eq!(f("deployment_frequency").value, Some(0.0));
        assert_eq!(f("change_failure_rate").value, None);
        assert_eq!(f("time_to_restore").meets_target, None);
    }
}
