//! The `circuit-breaker` trigger: the release process's circuit breaker
//! (failureThreshold 5, timeout 60 s, resetTimeout 30 s, half-open with a 5%
//! canary), with its state held by the host between checks.
//!
//! Each check reads the points of `metric` newer than the last check (the
//! first check reads them all), oldest first. A point is a *failure* when
//! `value op threshold` holds.
//!
//! - **closed**: consecutive failures are counted; a healthy point clears the
//!   count, and so does a gap longer than `timeout` between one failure and
//!   the next. At `failure_threshold` consecutive failures the circuit opens.
//! - **open**: traffic belongs on the previous version: fires
//!   `immediate-rollback`. Points within `reset_timeout` of the opening are
//!   ignored; the first point after it is a half-open trial (below). With no
//!   such point yet, a check at least `reset_timeout` after the opening
//!   (measured at `taken_at`) leaves the circuit half-open.
//! - **half-open**: a trial with `half_open_percent` of traffic: fires
//!   `alert`. The first point after that decides: a failure reopens the
//!   circuit, a healthy point closes it.

use std::time::Duration;

use tollgate_sdk::config::Settings;
use tollgate_sdk::rule::{TriggerRule, View};
use tollgate_sdk::stats::{Op, short};
use tollgate_sdk::trigger::{Detail, Fire, Query, Track, TriggerResult};

pub struct Rule {
    metric: String,
    op: Op,
    threshold: f64,
    failure_threshold: usize,
    timeout: i64,
    reset_timeout: i64,
    half_open_percent: i64,
    selector: Vec<(String, String)>,
}

/// The breaker's state, as stored by the host between checks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Closed { failures: Vec<i64> },
    Open { opened_at: i64 },
    HalfOpen { since: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    state: State,
    /// Points at or before this timestamp were already seen.
    last_seen: Option<i64>,
}

impl Stored {
    /// `closed last_seen=T failures=t1,t2`, `open last_seen=T opened_at=T`,
    /// `half-open last_seen=T since=T`: text, so a state file can be read.
    fn encode(&self) -> Vec<u8> {
        let seen = self
            .last_seen
            .map(|t| format!(" last_seen={t}"))
            .unwrap_or_default();
        match &self.state {
            State::Closed { failures } => {
                let list: Vec<String> = failures.iter().map(i64::to_string).collect();
                format!("closed{seen} failures={}", list.join(","))
            }
            State::Open { opened_at } => format!("open{seen} opened_at={opened_at}"),
            State::HalfOpen { since } => format!("half-open{seen} since={since}"),
        }
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(Self {
                state: State::Closed {
                    failures: Vec::new(),
                },
                last_seen: None,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "state is not text".to_string())?;
        let mut words = text.split_whitespace();
        let kind = words.next().ok_or("state is empty")?;
        let mut last_seen = None;
        let mut fields = std::collections::BTreeMap::new();
        for word in words {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| format!("malformed state field `{word}`"))?;
            if k == "last_seen" {
                last_seen = Some(
                    v.parse::<i64>()
                        .map_err(|_| format!("malformed `{word}`"))?,
                );
            } else {
                fields.insert(k, v);
            }
        }
        let time = |key: &str| -> Result<i64, String> {
            fields
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("state `{kind}` lacks `{key}`"))
        };
        let state = match kind {
            "closed" => State::Closed {
                failures: fields
                    .get("failures")
                    .map(|v| {
                        v.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::parse)
                            .collect::<Result<Vec<i64>, _>>()
                    })
                    .transpose()
                    .map_err(|_| "malformed failures".to_string())?
                    .unwrap_or_default(),
            },
            "open" => State::Open {
                opened_at: time("opened_at")?,
            },
            "half-open" => State::HalfOpen {
                since: time("since")?,
            },
            other => return Err(format!("unknown state `{other}`")),
        };
        Ok(Self { state, last_seen })
    }
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let metric = s.text("metric")?.to_string();
        let op: Op = s.opt_text("op")?.unwrap_or(">").parse()?;
        let threshold = s.number("threshold")?;
        let failure_threshold = s.opt_integer("failure_threshold")?.unwrap_or(5);
        let timeout = s
            .opt_duration("timeout")?
            .unwrap_or(Duration::from_secs(60));
        let reset_timeout = s
            .opt_duration("reset_timeout")?
            .unwrap_or(Duration::from_secs(30));
        let half_open_percent = s.opt_integer("half_open_percent")?.unwrap_or(5);
        let selector = s.text_map("selector")?;
        if !(1..=1000).contains(&failure_threshold) {
            return Err("`failure_threshold` must be between 1 and 1000".into());
        }
        if timeout.is_zero() || reset_timeout.is_zero() {
            return Err("`timeout` and `reset_timeout` must be longer than zero".into());
        }
        if !(0..=100).contains(&half_open_percent) {
            return Err("`half_open_percent` must be between 0 and 100".into());
        }
        if !threshold.is_finite() {
            return Err("`threshold` must be a finite number".into());
        }
        Ok(Self {
            metric,
            op,
            threshold,
            failure_threshold: failure_threshold as usize,
            timeout: timeout.as_secs() as i64,
            reset_timeout: reset_timeout.as_secs() as i64,
            half_open_percent,
            selector,
        })
    }

    /// Moves the breaker through the points since the last check.
    fn step(&self, mut stored: Stored, snapshot: &dyn View) -> (Stored, String) {
        let now = snapshot.taken_at();
        let since = stored.last_seen.unwrap_or(i64::MIN);
        let points = snapshot.points(&Query {
            metric: self.metric.clone(),
            selector: self.selector.clone(),
            window_seconds: None,
            track: Track::Current,
        });
        let fresh = points
            .iter()
            .filter(|p| p.timestamp > since && p.timestamp <= now);
        let mut note = String::new();
        for p in fresh {
            let failed = self.op.holds(p.value, self.threshold);
            stored.state = match stored.state {
                State::Closed { mut failures } => {
                    if failed {
                        if failures
                            .last()
                            .is_some_and(|last| p.timestamp.saturating_sub(*last) > self.timeout)
                        {
                            failures.clear();
                        }
                        failures.push(p.timestamp);
                    } else {
                        failures.clear();
                    }
                    if failures.len() >= self.failure_threshold {
                        note = format!("{} consecutive failures", failures.len());
                        State::Open {
                            opened_at: p.timestamp,
                        }
                    } else {
                        State::Closed { failures }
                    }
                }
                // Points while open are ignored, until `reset_timeout` has
                // passed: the first point after that is the half-open trial.
                State::Open { opened_at }
                    if p.timestamp < opened_at.saturating_add(self.reset_timeout) =>
                {
                    State::Open { opened_at }
                }
                State::Open { .. } | State::HalfOpen { .. } if failed => {
                    note = format!("trial failed: `{}` = {}", self.metric, short(p.value));
                    State::Open {
                        opened_at: p.timestamp,
                    }
                }
                State::Open { .. } | State::HalfOpen { .. } => {
                    note = format!("trial succeeded: `{}` = {}", self.metric, short(p.value));
                    State::Closed {
                        failures: Vec::new(),
                    }
                }
            };
        }
        if let State::Open { opened_at } = stored.state
            && now >= opened_at.saturating_add(self.reset_timeout)
        {
            note = format!(
                "{}s since the circuit opened",
                now.saturating_sub(opened_at)
            );
            stored.state = State::HalfOpen { since: now };
        }
        stored.last_seen = Some(stored.last_seen.map_or(now, |t| t.max(now)));
        (stored, note)
    }

    fn check(&self, snapshot: &dyn View, state: &[u8]) -> TriggerResult {
        let (stored, warning) = match Stored::decode(state) {
            Ok(s) => (s, None),
            Err(e) => (
                Stored {
                    state: State::Closed {
                        failures: Vec::new(),
                    },
                    last_seen: None,
                },
                Some(format!("stored state unreadable ({e}); starting closed")),
            ),
        };
        let before = stored.state.clone();
        let (stored, note) = self.step(stored, snapshot);
        let changed = std::mem::discriminant(&before) != std::mem::discriminant(&stored.state);
        let condition = format!("`{}` {} {}", self.metric, self.op, short(self.threshold));
        let (fire, name, traffic, mut reason) = match &stored.state {
            State::Closed { failures } => (
                Fire::None,
                "closed",
                None,
                format!(
                    "circuit closed: {} of {} consecutive failures ({condition})",
                    failures.len(),
                    self.failure_threshold
                ),
            ),
            State::Open { opened_at } => (
                Fire::ImmediateRollback,
                "open",
                Some(0),
                format!(
                    "circuit open since {opened_at}: route traffic to the previous version; half-open after {}s",
                    self.reset_timeout
                ),
            ),
            State::HalfOpen { .. } => (
                Fire::Alert,
                "half-open",
                Some(self.half_open_percent),
                format!(
                    "circuit half-open: trial with {}% canary traffic",
                    self.half_open_percent
                ),
            ),
        };
        if changed && !note.is_empty() {
            reason = format!("{reason} ({note})");
        }
        if let Some(w) = warning {
            reason = format!("{w}; {reason}");
        }
        let mut details = vec![
            Detail {
                key: "state".into(),
                value: name.into(),
            },
            Detail {
                key: "transition".into(),
                value: if changed {
                    format!("{} -> {name}", state_name(&before))
                } else {
                    "none".into()
                },
            },
        ];
        if let Some(t) = traffic {
            details.push(Detail {
                key: "allowed_traffic_percent".into(),
                value: t.to_string(),
            });
        }
        TriggerResult {
            fire,
            reason,
            observed: None,
            threshold: Some(self.threshold),
            details,
            state: stored.encode(),
        }
    }
}

fn state_name(s: &State) -> &'static str {
    match s {
        State::Closed { .. } => "closed",
        State::Open { .. } => "open",
        State::HalfOpen { .. } => "half-open",
    }
}

/// The trigger: a [`Rule`] applied to the state the host kept.
pub struct CircuitBreaker;

impl TriggerRule for CircuitBreaker {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn check(rule: &Rule, snapshot: &dyn View, state: &[u8]) -> TriggerResult {
        rule.check(snapshot, state)
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_trigger_rule!(CircuitBreaker);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_text_form() {
        for s in [
            Stored {
                state: State::Closed {
                    failures: vec![1, 2],
                },
                last_seen: Some(3),
            },
            Stored {
                state: State::Closed { failures: vec![] },
                last_seen: None,
            },
            Stored {
                state: State::Open { opened_at: 10 },
                last_seen: Some(10),
            },
            Stored {
                state: State::HalfOpen { since: 40 },
                last_seen: Some(40),
            },
        ] {
            assert_eq!(Stored::decode(&s.encode()), Ok(s));
        }
        assert!(Stored::decode(b"sideways").is_err());
        assert!(Stored::decode(b"open").is_err());
    }
}
