//! The `window` gate: allows or denies promotion by calendar, at the
//! decision time the host gives (`decided_at`: the server's clock, never the
//! snapshot's `taken_at`, so a back-dated snapshot cannot slip out of a
//! freeze; a replay reuses the logged time and gives the same answer).
//!
//! ```yaml
//! - name: release-window
//!   plugin: window
//!   key: true
//!   with:
//!     timezone: Europe/Berlin
//!     windows:
//!       - { name: business-hours, kind: allow, schedule: "0 9 * * mon-thu", duration: 8h }
//!       - { name: friday-evening, kind: deny, schedule: "0 17 * * fri", duration: 64h }
//!     freezes:
//!       - { name: year-end, from: "2026-12-18", until: "2027-01-04" }
//! ```
//!
//! Windows work as Argo CD's sync windows: a window opens at each minute
//! its five-field cron `schedule` matches (minute, hour, day of month,
//! month, day of week, in `timezone`) and stays open for `duration`. Any
//! open `deny` window or any `freezes` period (`from` inclusive, `until`
//! exclusive; local dates or times, or RFC 3339 instants) denies. Otherwise,
//! if there are `allow` windows, one must be open. A denial is
//! `inconclusive`, so the stage holds — a freeze postpones a promotion, it
//! does not roll a release back — and its reason says when it lifts.

mod cron;

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use tollgate_sdk::config::Settings;
use tollgate_sdk::gate::{Detail, Finding, Verdict};
use tollgate_sdk::rule::{GateRule, View};

use crate::cron::Schedule;

/// The longest window: a month. Longer ones are typos, and each check
/// walks back over the duration minute by minute.
const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);
/// How far ahead the next opening of an allow window is looked for.
const LOOK_AHEAD_MINUTES: i64 = 14 * 24 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Allow,
    Deny,
}

struct Window {
    name: String,
    kind: Kind,
    text: String,
    schedule: Schedule,
    minutes: i64,
}

struct Freeze {
    name: String,
    from: Timestamp,
    until: Timestamp,
}

/// The gate's settings.
pub struct Rule {
    zone_name: String,
    zone: TimeZone,
    windows: Vec<Window>,
    freezes: Vec<Freeze>,
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let zone_name = s.opt_text("timezone")?.unwrap_or("UTC").to_string();
        let zone = TimeZone::get(&zone_name).map_err(|_| {
            format!("unknown time zone `{zone_name}` (an IANA name such as Europe/Berlin)")
        })?;
        let mut windows = Vec::new();
        for i in 0..s.indexed_len("windows") {
            let key = |k: &str| format!("windows.{i}.{k}");
            let name = s
                .opt_text(&key("name"))?
                .map_or_else(|| format!("windows[{i}]"), str::to_string);
            let kind = match s.text(&key("kind"))? {
                "allow" => Kind::Allow,
                "deny" => Kind::Deny,
                other => {
                    return Err(format!(
                        "`{}` is `{other}`; expected allow or deny",
                        key("kind")
                    ));
                }
            };
            let text = s.text(&key("schedule"))?.to_string();
            let schedule: Schedule = text
                .parse()
                .map_err(|e| format!("`{}`: {e}", key("schedule")))?;
            let duration = s
                .opt_duration(&key("duration"))?
                .ok_or_else(|| format!("`{}` is required", key("duration")))?;
            if duration < Duration::from_secs(60) || duration > MAX_WINDOW {
                return Err(format!("`{}` must be from 1m to 31 days", key("duration")));
            }
            windows.push(Window {
                name,
                kind,
                text,
                schedule,
                minutes: i64::try_from(duration.as_secs() / 60).unwrap_or(i64::MAX),
            });
        }
        let mut freezes = Vec::new();
        for i in 0..s.indexed_len("freezes") {
            let key = |k: &str| format!("freezes.{i}.{k}");
            let name = s
                .opt_text(&key("name"))?
                .map_or_else(|| format!("freezes[{i}]"), str::to_string);
            let from = instant(s.text(&key("from"))?, &zone)
                .map_err(|e| format!("`{}`: {e}", key("from")))?;
            let until = instant(s.text(&key("until"))?, &zone)
                .map_err(|e| format!("`{}`: {e}", key("until")))?;
            if until <= from {
                return Err(format!(
                    "`{}` must be after `{}`",
                    key("until"),
                    key("from")
                ));
            }
            freezes.push(Freeze { name, from, until });
        }
        if windows.is_empty() && freezes.is_empty() {
            return Err("give at least one of `windows` or `freezes`".into());
        }
        Ok(Self {
            zone_name,
            zone,
            windows,
            freezes,
        })
    }

    /// The local time `at` in the rule's zone, as reasons print it.
    fn local(&self, at: Timestamp) -> String {
        at.to_zoned(self.zone.clone())
            .strftime("%Y-%m-%d %H:%M (%a) %Z")
            .to_string()
    }

    /// The latest opening of `w` that is still open at `at`, if any.
    fn open_since(&self, w: &Window, at: Timestamp) -> Option<Timestamp> {
        let minute = at.as_second().div_euclid(60) * 60;
        (0..w.minutes)
            .map(|back| minute - back * 60)
            .filter_map(|s| Timestamp::from_second(s).ok())
            .find(|s| w.schedule.matches(&s.to_zoned(self.zone.clone())))
    }

    fn evaluate(&self, taken_at: i64) -> Finding {
        let Ok(at) = Timestamp::from_second(taken_at) else {
            return finding(
                Verdict::Inconclusive,
                format!("taken_at {taken_at} is out of range"),
                Vec::new(),
            );
        };
        let now = self.local(at);
        if let Some(f) = self.freezes.iter().find(|f| f.from <= at && at < f.until) {
            return finding(
                Verdict::Inconclusive,
                format!(
                    "frozen: {now} is within freeze `{}` ({} to {}); promotion resumes at {}",
                    f.name,
                    self.local(f.from),
                    self.local(f.until),
                    self.local(f.until)
                ),
                vec![
                    detail("allowed", "false"),
                    detail("until", self.local(f.until)),
                ],
            );
        }
        let denied = self
            .windows
            .iter()
            .filter(|w| w.kind == Kind::Deny)
            .filter_map(|w| self.open_since(w, at).map(|s| (w, s)))
            .max_by_key(|(w, s)| s.as_second() + w.minutes * 60);
        if let Some((w, since)) = denied {
            let ends = Timestamp::from_second(since.as_second() + w.minutes * 60).unwrap_or(at);
            return finding(
                Verdict::Inconclusive,
                format!(
                    "frozen: {now} is inside deny window `{}` (`{}` for {}), which ends at {}",
                    w.name,
                    w.text,
                    human(w.minutes),
                    self.local(ends)
                ),
                vec![
                    detail("allowed", "false"),
                    detail("until", self.local(ends)),
                ],
            );
        }
        let allows: Vec<&Window> = self
            .windows
            .iter()
            .filter(|w| w.kind == Kind::Allow)
            .collect();
        if allows.is_empty() {
            return finding(
                Verdict::Pass,
                format!("{now} is outside every freeze and deny window"),
                vec![detail("allowed", "true")],
            );
        }
        if let Some((w, _)) = allows
            .iter()
            .find_map(|w| self.open_since(w, at).map(|s| (w, s)))
        {
            return finding(
                Verdict::Pass,
                format!(
                    "{now} is inside allow window `{}` (`{}` for {})",
                    w.name,
                    w.text,
                    human(w.minutes)
                ),
                vec![detail("allowed", "true")],
            );
        }
        let next = self.next_opening(&allows, at);
        let when = next.map_or_else(
            || "none opens in the next 14 days".to_string(),
            |(w, t)| format!("the next, `{}`, opens at {}", w.name, self.local(t)),
        );
        finding(
            Verdict::Inconclusive,
            format!("outside every allow window at {now}; {when}"),
            vec![detail("allowed", "false")],
        )
    }

    /// The first minute after `at` at which one of `allows` opens.
    fn next_opening<'a>(
        &self,
        allows: &[&'a Window],
        at: Timestamp,
    ) -> Option<(&'a Window, Timestamp)> {
        let minute = at.as_second().div_euclid(60) * 60;
        (1..=LOOK_AHEAD_MINUTES)
            .filter_map(|ahead| Timestamp::from_second(minute + ahead * 60).ok())
            .find_map(|t| {
                let local = t.to_zoned(self.zone.clone());
                allows
                    .iter()
                    .find(|w| w.schedule.matches(&local))
                    .map(|w| (*w, t))
            })
    }
}

/// An instant from a policy: RFC 3339 with an offset, or a local date or
/// date and time in `zone`.
fn instant(text: &str, zone: &TimeZone) -> Result<Timestamp, String> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let civil = match text.parse::<DateTime>() {
        Ok(dt) => dt,
        Err(_) => text
            .parse::<Date>()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|_| {
                format!("`{text}` is not a date (2026-12-18), a local time (2026-12-18T17:00) or an RFC 3339 instant")
            })?,
    };
    zone.to_ambiguous_zoned(civil)
        .compatible()
        .map(|z: Zoned| z.timestamp())
        .map_err(|e| format!("`{text}`: {e}"))
}

fn human(minutes: i64) -> String {
    tollgate_sdk::human_duration(Duration::from_secs(
        u64::try_from(minutes).unwrap_or(0) * 60,
    ))
}

fn detail(key: &str, value: impl Into<String>) -> Detail {
    Detail {
        key: key.into(),
        value: value.into(),
    }
}

/// A finding with details and no observed value or threshold.
fn finding(verdict: Verdict, reason: String, details: Vec<Detail>) -> Finding {
    Finding {
        details,
        ..tollgate_sdk::rule::finding(verdict, reason, None, None)
    }
}

/// The gate: a pure function of the settings and the decision time.
pub struct ReleaseWindow;

impl GateRule for ReleaseWindow {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn judge(rule: &Rule, snapshot: &dyn View) -> Finding {
        let mut found = rule.evaluate(snapshot.now());
        found
            .details
            .push(detail("timezone", rule.zone_name.clone()));
        found
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_gate_rule!(ReleaseWindow);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::gate::ConfigValue;
    use tollgate_sdk::rule::{MemorySnapshot, judge};

    fn at(text: &str) -> MemorySnapshot {
        MemorySnapshot::new(text.parse::<Timestamp>().unwrap().as_second())
    }

    fn berlin() -> Vec<(&'static str, ConfigValue)> {
        vec![
            ("timezone", "Europe/Berlin".into()),
            ("windows.0.name", "business-hours".into()),
            ("windows.0.kind", "allow".into()),
            ("windows.0.schedule", "0 9 * * mon-thu".into()),
            ("windows.0.duration", "8h".into()),
            ("windows.1.name", "friday-evening".into()),
            ("windows.1.kind", "deny".into()),
            ("windows.1.schedule", "0 17 * * fri".into()),
            ("windows.1.duration", "64h".into()),
            ("freezes.0.name", "year-end".into()),
            ("freezes.0.from", "2026-12-18".into()),
            ("freezes.0.until", "2027-01-04".into()),
        ]
    }

    #[test]
    fn an_allow_window_opens_in_local_time() {
        // 10:30 in Berlin (CET, UTC+1) on Wednesday 2026-11-25.
        let f = judge::<ReleaseWindow>(&berlin(), &at("2026-11-25T09:30:00Z")).unwrap();
        assert_eq!(f.verdict, Verdict::Pass, "{}", f.reason);
        assert_eq!(
            f.reason,
            "2026-11-25 10:30 (Wed) CET is inside allow window `business-hours` (`0 9 * * mon-thu` for 8h)"
        );
        // 17:00 local is after the 8 hours from 09:00.
        let f = judge::<ReleaseWindow>(&berlin(), &at("2026-11-25T16:00:00Z")).unwrap();
        assert_eq!(f.verdict, Verdict::Inconclusive);
        assert_eq!(
            f.reason,
            "outside every allow window at 2026-11-25 17:00 (Wed) CET; the next, `business-hours`, opens at 2026-11-26 09:00 (Thu) CET"
        );
    }

    #[test]
    fn a_deny_window_outranks_and_says_when_it_ends() {
        let mut with = berlin();
        // An allow window open all Friday too, to show deny wins.
        with.push(("windows.2.kind", "allow".into()));
        with.push(("windows.2.schedule", "0 0 * * fri".into()));
        with.push(("windows.2.duration", "24h".into()));
        let f = judge::<ReleaseWindow>(&with, &at("2026-11-27T18:00:00Z")).unwrap();
        assert_eq!(f.verdict, Verdict::Inconclusive);
        assert_eq!(
            f.reason,
            "frozen: 2026-11-27 19:00 (Fri) CET is inside deny window `friday-evening` (`0 17 * * fri` for 2 days 16h), which ends at 2026-11-30 09:00 (Mon) CET"
        );
    }

    #[test]
    fn a_freeze_period_holds_until_it_lifts() {
        let f = judge::<ReleaseWindow>(&berlin(), &at("2026-12-21T09:00:00Z")).unwrap();
        assert_eq!(f.verdict, Verdict::Inconclusive);
        assert!(
            f.reason
                .starts_with("frozen: 2026-12-21 10:00 (Mon) CET is within freeze `year-end`"),
            "{}",
            f.reason
        );
        assert!(
            f.reason
                .ends_with("promotion resumes at 2027-01-04 00:00 (Mon) CET"),
            "{}",
            f.reason
        );
        // `until` is exclusive: at midnight on Monday the 4th the freeze has
        // lifted and the weekend's deny window (Friday 17:00 + 64h) rules.
        let f = judge::<ReleaseWindow>(&berlin(), &at("2027-01-03T23:00:00Z")).unwrap();
        assert!(
            f.reason.starts_with(
                "frozen: 2027-01-04 00:00 (Mon) CET is inside deny window `friday-evening`"
            ),
            "{}",
            f.reason
        );
    }

    #[test]
    fn daylight_saving_time_is_followed() {
        // 09:30 in Berlin on Thursday 2026-07-02 is 07:30 UTC (CEST).
        let f = judge::<ReleaseWindow>(&berlin(), &at("2026-07-02T07:30:00Z")).unwrap();
        assert_eq!(f.verdict, Verdict::Pass, "{}", f.reason);
        assert!(
            f.reason.starts_with("2026-07-02 09:30 (Thu) CEST"),
            "{}",
            f.reason
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let s = at("2026-11-25T09:30:00Z");
        let check = |with: &[(&str, ConfigValue)], expected: &str| {
            let e = judge::<ReleaseWindow>(with, &s).unwrap_err();
            assert!(e.contains(expected), "{e}");
        };
        check(
            &[
                ("timezone", "Mars/Olympus".into()),
                ("freezes.0.from", "2026-01-01".into()),
                ("freezes.0.until", "2026-01-02".into()),
            ],
            "unknown time zone `Mars/Olympus`",
        );
        check(
            &[
                ("windows.0.kind", "allow".into()),
                ("windows.0.schedule", "0 9 * *".into()),
                ("windows.0.duration", "1h".into()),
            ],
            "`windows.0.schedule`: expected five fields",
        );
        check(
            &[
                ("windows.0.kind", "maybe".into()),
                ("windows.0.schedule", "0 9 * * *".into()),
                ("windows.0.duration", "1h".into()),
            ],
            "`windows.0.kind` is `maybe`",
        );
        check(
            &[
                ("windows.0.kind", "deny".into()),
                ("windows.0.schedule", "0 9 * * *".into()),
                ("windows.0.duration", "40d".into()),
            ],
            "must be from 1m to 31 days",
        );
        check(
            &[
                ("freezes.0.from", "2026-02-01".into()),
                ("freezes.0.until", "2026-01-01".into()),
            ],
            "`freezes.0.until` must be after",
        );
        check(
            &[
                ("freezes.0.from", "next week".into()),
                ("freezes.0.until", "2026-01-01".into()),
            ],
            "is not a date",
        );
        check(&[], "give at least one of `windows` or `freezes`");
    }
}
