//! `{{name}}`: a tollgate gate. Its settings come from the policy's `with:`.

use tollgate_sdk::config::Settings;
use tollgate_sdk::gate::{Config, Finding, Guest, Query, Snapshot, Track, Verdict, invalid_config};

struct Gate;

/// Reads the settings one way for validation and for evaluation.
fn settings(config: &Config) -> Result<(String, f64), String> {
    let s = Settings::new(config);
    let metric = s.opt_text("metric")?.unwrap_or("test_coverage_percent").to_string();
    let min = s.number("min")?;
    s.finish()?; // refuses unknown keys
    Ok((metric, min))
}

impl Guest for Gate {
    fn validate_config(config: Config) -> Result<(), String> {
        settings(&config).map(drop)
    }

    fn evaluate(config: Config, snapshot: &Snapshot) -> Finding {
        let (metric, min) = match settings(&config) {
            Ok(s) => s,
            Err(e) => return invalid_config(e),
        };
        let query = Query { metric: metric.clone(), selector: vec![], window_seconds: None, track: Track::Current };
        let Some(last) = snapshot.points(&query).last().map(|p| p.value) else {
            let reason = format!("no `{metric}` in the snapshot");
            return Finding { verdict: Verdict::Inconclusive, reason, observed: None, threshold: Some(min), details: vec![] };
        };
        let (verdict, word) = if last >= min { (Verdict::Pass, "pass") } else { (Verdict::Fail, "fail") };
        let reason = format!("`{metric}` = {last}, required >= {min}: {word}");
        Finding { verdict, reason, observed: Some(last), threshold: Some(min), details: vec![] }
    }
}

tollgate_sdk::gate::export_gate!(Gate);
