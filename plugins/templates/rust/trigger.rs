//! `{{name}}`: a tollgate rollback trigger. It fires when the newest value
//! of a metric is above `max`; `state` is carried by the host between checks.

use tollgate_sdk::config::Settings;
use tollgate_sdk::trigger::{Config, Fire, Guest, Query, Snapshot, Track, TriggerResult, invalid_config};

struct Trigger;

fn settings(config: &Config) -> Result<(String, f64), String> {
    let s = Settings::new(config);
    let metric = s.opt_text("metric")?.unwrap_or("error_rate").to_string();
    let max = s.number("max")?;
    s.finish()?;
    Ok((metric, max))
}

impl Guest for Trigger {
    fn validate_config(config: Config) -> Result<(), String> {
        settings(&config).map(drop)
    }

    fn check(config: Config, snapshot: &Snapshot, state: Vec<u8>) -> TriggerResult {
        let (metric, max) = match settings(&config) {
            Ok(s) => s,
            Err(e) => return invalid_config(e, state),
        };
        let query = Query { metric: metric.clone(), selector: vec![], window_seconds: None, track: Track::Current };
        let last = snapshot.points(&query).last().map(|p| p.value);
        let (fire, reason) = match last {
            Some(v) if v > max => (Fire::ImmediateRollback, format!("`{metric}` = {v} is above {max}")),
            Some(v) => (Fire::None, format!("`{metric}` = {v} is within {max}")),
            None => (Fire::None, format!("no `{metric}` in the snapshot")),
        };
        TriggerResult { fire, reason, observed: last, threshold: Some(max), details: vec![], state }
    }
}

tollgate_sdk::trigger::export_trigger!(Trigger);
