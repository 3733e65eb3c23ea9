//! Metrics a candidate reads that the logged snapshots do not carry,
//! queried again from Prometheus over the window each logged decision's
//! `taken_at` ends, and merged into its snapshot. Queries of one decision
//! run a few at a time, each range within Prometheus's resolution limit,
//! and answers are kept by metric, release, stage and window, so a
//! decision asked again (a retried hook, a stage re-evaluated at the same
//! time) costs no query.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::{LoadedPolicy, MetricSource};
use crate::snapshot::{Series, Snapshot};
use crate::sources::Sources;
use crate::sources::StageWindow;
use crate::sources::prometheus::Prometheus;
use crate::store::Record;

/// Queries in flight at once for one decision.
const CONCURRENCY: usize = 4;

/// Points kept in answers; past it the cache starts again (each answer is
/// itself bounded by the client's series and point limits).
const CACHED_POINTS: usize = 2_000_000;

/// A query's identity: metric, service, version, stage and window end.
type Key = (String, String, String, String, i64);

/// Current and baseline series of one metric.
type Found = Arc<(Vec<Series>, Vec<Series>)>;

/// Re-queries missing metrics, with a cache of answers.
pub struct Requery {
    sources: Sources,
    cache: HashMap<Key, Found>,
    /// Points held in `cache`.
    points: usize,
}

impl Requery {
    pub fn new(prom: Prometheus) -> Self {
        Self {
            sources: Sources::prometheus(Some(prom)),
            cache: HashMap::new(),
            points: 0,
        }
    }

    /// The snapshot with the candidate's metrics that `snapshot` lacks
    /// queried and added, and their names; `None` when it lacks none.
    pub async fn missing(
        &mut self,
        candidate: &LoadedPolicy,
        record: &Record,
        snapshot: &Snapshot,
    ) -> Result<Option<(Snapshot, Vec<String>)>, String> {
        let has = |set: &[Series], name: &str| set.iter().any(|s| s.name == name);
        let lacking: Vec<&MetricSource> = candidate
            .policy
            .metrics
            .iter()
            .filter(|m| {
                // Only Prometheus is re-queried; a source plugin's metric
                // the log lacks stays inconclusive.
                m.source.is_none()
                    && (!has(&snapshot.metrics, &m.name)
                        || (m.uses_track && !has(&snapshot.baseline, &m.name)))
            })
            .collect();
        if lacking.is_empty() {
            return Ok(None);
        }
        let d = &record.decision;
        let stage = candidate.policy.stage(Some(&d.stage));
        let window = StageWindow {
            name: &d.stage,
            duration: stage.and_then(|s| s.duration),
        };
        let end = snapshot.taken_at;
        let key = |m: &MetricSource| {
            (
                m.name.clone(),
                d.service.clone(),
                d.version.clone(),
                d.stage.clone(),
                end,
            )
        };
        let asked: Vec<&MetricSource> = lacking
            .iter()
            .copied()
            .filter(|m| !self.cache.contains_key(&key(m)))
            .collect();
        for chunk in asked.chunks(CONCURRENCY) {
            let mut queries = Vec::with_capacity(chunk.len());
            for m in chunk {
                queries.push(crate::sources::query_source(
                    &self.sources,
                    &candidate.policy,
                    m,
                    window,
                    &d.service,
                    &d.version,
                    end,
                ));
            }
            let answers = futures_util::future::join_all(queries).await;
            for (m, found) in chunk.iter().zip(answers) {
                let (current, baseline, _) = found.map_err(|e| e.to_string())?;
                let points: usize = current
                    .iter()
                    .chain(&baseline)
                    .map(|s| s.points.len().max(1))
                    .sum();
                if self.points.saturating_add(points) > CACHED_POINTS {
                    self.cache.clear();
                    self.points = 0;
                }
                self.points += points;
                self.cache.insert(key(m), Arc::new((current, baseline)));
            }
        }
        let mut merged = snapshot.clone();
        let mut names = Vec::new();
        for m in lacking {
            let Some(found) = self.cache.get(&key(m)) else {
                continue;
            };
            if !has(&snapshot.metrics, &m.name) {
                merged.metrics.extend(found.0.iter().cloned());
            }
            if m.uses_track && !has(&snapshot.baseline, &m.name) {
                merged.baseline.extend(found.1.iter().cloned());
            }
            names.push(m.name.clone());
        }
        Ok(Some((merged, names)))
    }
}
