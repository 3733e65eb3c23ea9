//! Approvals and attestations: who said a release may go ahead. They are
//! recorded through the API with the approver taken from the token, kept in
//! the store (never in the snapshot, which the caller writes), copied into
//! every decision that read them, and handed back to a replay.
//!
//! Two host gates read them. They run in the host, not in the sandbox,
//! because their input is the store, which no plugin may reach:
//!
//! - `approval`: at least `count` distinct approvers from `groups`, given
//!   for this service and version (and this stage, when an approval names
//!   one), not older than `max_age` at the snapshot's `taken_at`, and not
//!   the change's author (the snapshot attribute `author`);
//! - `checklist`: every named attestation in `items` is present (the
//!   go/no-go checklist), under the same age and group rules.
//!
//! A missing approval is inconclusive, so the stage holds until it comes.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decision::Verdict;
use crate::engine::{ConfigValue, PluginConfig, Scalar};
use crate::snapshot::Snapshot;

/// The gates the host evaluates itself.
pub const HOST_GATES: [&str; 2] = ["approval", "checklist"];

/// Whether `plugin` names a host gate.
pub fn is_host_gate(plugin: &str) -> bool {
    HOST_GATES.contains(&plugin)
}

/// The name an approval carries when it is not a checklist item.
pub const APPROVAL: &str = "approval";

/// Approvals and attestations one release may hold. Every evaluation of a
/// policy with approval gates reads them all and copies them into its
/// record, so they are bounded; a real release has a handful.
pub const MAX_PER_RELEASE: usize = 1000;

/// One recorded approval or attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// A UUIDv7.
    pub id: String,
    pub service: String,
    pub version: String,
    /// The stage it approves; `None` approves every stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// `approval`, or the checklist item it attests.
    pub name: String,
    /// Who: the token's identity, never the caller's say-so.
    pub approver: String,
    /// The approver's groups, from the token.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub comment: String,
    /// When it was recorded, unix milliseconds.
    pub at_ms: i64,
}

/// Checks an approval or item name: what policies and URLs can carry.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a name: 1 to 64 letters, digits, `-`, `_` or `.`",
            crate::text::escape_control(name)
        ))
    }
}

/// A host gate's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The attestations required: `[approval]` for the approval gate, the
    /// items for a checklist.
    items: Vec<String>,
    /// Distinct approvers each item needs.
    count: usize,
    /// Accepted groups; empty accepts anyone.
    groups: Vec<String>,
    max_age: Option<Duration>,
    allow_author: bool,
}

/// Reads a scalar or list of texts.
fn texts(key: &str, v: &ConfigValue) -> Result<Vec<String>, String> {
    match v {
        ConfigValue::Text(t) => Ok(vec![t.clone()]),
        ConfigValue::List(items) => items
            .iter()
            .map(|i| match i {
                Scalar::Text(t) => Ok(t.clone()),
                _ => Err(format!("`{key}` must be a list of text")),
            })
            .collect(),
        _ => Err(format!("`{key}` must be text or a list of text")),
    }
}

impl Rule {
    /// Parses the settings of host gate `plugin`; unknown keys are refused.
    pub fn parse(plugin: &str, config: &PluginConfig) -> Result<Self, String> {
        let checklist = plugin == "checklist";
        let mut rule = Self {
            items: if checklist {
                Vec::new()
            } else {
                vec![APPROVAL.to_string()]
            },
            count: 1,
            groups: Vec::new(),
            max_age: None,
            allow_author: false,
        };
        for (key, value) in config {
            match (key.as_str(), value) {
                ("items", v) if checklist => rule.items = texts(key, v)?,
                ("count", ConfigValue::Integer(n)) if !checklist => {
                    rule.count = usize::try_from(*n)
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or("`count` must be 1 to 100")?;
                }
                ("count", _) if !checklist => return Err("`count` must be a whole number".into()),
                ("groups", v) => rule.groups = texts(key, v)?,
                ("max_age", ConfigValue::Text(t)) => {
                    rule.max_age = Some(
                        humantime::parse_duration(t)
                            .map_err(|e| format!("`max_age` `{t}`: {e}"))?,
                    );
                }
                ("max_age", _) => return Err("`max_age` must be a duration such as 24h".into()),
                ("allow_author", ConfigValue::Boolean(b)) => rule.allow_author = *b,
                ("allow_author", _) => return Err("`allow_author` must be true or false".into()),
                (other, _) => {
                    let known = if checklist {
                        "items, groups, max_age, allow_author"
                    } else {
                        "count, groups, max_age, allow_author"
                    };
                    return Err(format!("unknown setting `{other}`; expected {known}"));
                }
            }
        }
        if rule.items.is_empty() {
            return Err("`items` must name at least one checklist item".into());
        }
        for item in &rule.items {
            check_name(item).map_err(|e| format!("`items`: {e}"))?;
        }
        for group in &rule.groups {
            check_name(group).map_err(|e| format!("`groups`: {e}"))?;
        }
        Ok(rule)
    }

    /// Judges the approvals on record for the snapshot's release at
    /// `stage`: a verdict, a reason, how many were found and required.
    pub fn judge(
        &self,
        approvals: &[Approval],
        snapshot: &Snapshot,
        stage: &str,
    ) -> (Verdict, String, Vec<(String, String)>) {
        let author = snapshot.attributes.get("author").map(String::as_str);
        let now_ms = snapshot.taken_at.saturating_mul(1000);
        let oldest_ms = self
            .max_age
            .map(|a| now_ms.saturating_sub(i64::try_from(a.as_millis()).unwrap_or(i64::MAX)));
        let mut details = Vec::new();
        let mut missing = Vec::new();
        let mut set_aside = BTreeSet::new();
        for item in &self.items {
            let mut who = BTreeSet::new();
            for a in approvals {
                if a.name != *item
                    || a.service != snapshot.service
                    || a.version != snapshot.version
                    || a.stage.as_deref().is_some_and(|s| s != stage)
                {
                    continue;
                }
                if oldest_ms.is_some_and(|o| a.at_ms < o) {
                    set_aside.insert(format!("{} (too old)", a.approver));
                } else if !self.allow_author && author == Some(a.approver.as_str()) {
                    set_aside.insert(format!("{} (the author)", a.approver));
                } else if !self.groups.is_empty()
                    && !a.groups.iter().any(|g| self.groups.contains(g))
                {
                    set_aside.insert(format!(
                        "{} (not in {})",
                        a.approver,
                        self.groups.join(", ")
                    ));
                } else {
                    who.insert(a.approver.clone());
                }
            }
            details.push((
                item.clone(),
                who.iter().cloned().collect::<Vec<_>>().join(", "),
            ));
            if who.len() < self.count {
                missing.push(format!("{item} {} of {}", who.len(), self.count));
            }
        }
        if !set_aside.is_empty() {
            details.push((
                "not counted".into(),
                set_aside.into_iter().collect::<Vec<_>>().join(", "),
            ));
        }
        let from = if self.groups.is_empty() {
            String::new()
        } else {
            format!(" from {}", self.groups.join(" or "))
        };
        let age = self
            .max_age
            .map(|a| format!(", at most {} old", humantime::format_duration(a)))
            .unwrap_or_default();
        let release = format!("{} {}", snapshot.service, snapshot.version);
        if missing.is_empty() {
            let what = if self.items == [APPROVAL] {
                format!("{} approval(s){from}", self.count)
            } else {
                format!("every checklist item ({})", self.items.join(", "))
            };
            (Verdict::Pass, format!("{release} has {what}{age}"), details)
        } else {
            let what = if self.items == [APPROVAL] {
                format!("waiting for approval: {}", missing.join("; "))
            } else {
                format!("checklist incomplete: {}", missing.join("; "))
            };
            (
                Verdict::Inconclusive,
                format!("{release}: {what}{from}{age}"),
                details,
            )
        }
    }

    /// How many approvals in all the rule requires.
    pub fn required(&self) -> usize {
        self.items.len() * self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(approver: &str, groups: &[&str], at_ms: i64) -> Approval {
        Approval {
            id: format!("id-{approver}-{at_ms}"),
            service: "checkout".into(),
            version: "2.1.0".into(),
            stage: None,
            name: APPROVAL.into(),
            approver: approver.into(),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
            comment: String::new(),
            at_ms,
        }
    }

    fn snapshot(author: Option<&str>) -> Snapshot {
        let mut text =
            r#"{"service":"checkout","version":"2.1.0","taken_at":1764000000,"metrics":[]"#
                .to_string();
        if let Some(a) = author {
            text.push_str(&format!(r#","attributes":{{"author":"{a}"}}"#));
        }
        text.push('}');
        Snapshot::from_json(text.as_bytes()).unwrap()
    }

    fn config(entries: &[(&str, ConfigValue)]) -> PluginConfig {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn two_distinct_approvers_from_the_group_and_not_the_author() {
        let rule = Rule::parse(
            "approval",
            &config(&[
                ("count", ConfigValue::Integer(2)),
                (
                    "groups",
                    ConfigValue::List(vec![Scalar::Text("release-managers".into())]),
                ),
                ("max_age", ConfigValue::Text("24h".into())),
            ]),
        )
        .unwrap();
        let now = 1_764_000_000_000;
        let rm = ["release-managers"];
        let approvals = vec![
            approval("alice", &rm, now - 3_600_000),
            approval("alice", &rm, now - 1_800_000),
            approval("bob", &["dev"], now - 60_000),
            approval("carol", &rm, now - 2 * 86_400_000),
            approval("dave", &rm, now - 60_000),
        ];
        let (v, reason, _) = rule.judge(&approvals, &snapshot(Some("dave")), "prod");
        assert_eq!(v, Verdict::Inconclusive);
        assert_eq!(
            reason,
            "checkout 2.1.0: waiting for approval: approval 1 of 2 from release-managers, at most 1day old"
        );
        let (v, reason, details) = rule.judge(&approvals, &snapshot(Some("erin")), "prod");
        assert_eq!(v, Verdict::Pass, "{reason}");
        assert_eq!(
            details[0],
            ("approval".to_string(), "alice, dave".to_string())
        );
        assert_eq!(
            details[1].1,
            "bob (not in release-managers), carol (too old)"
        );
    }

    #[test]
    fn a_checklist_needs_every_item_and_settings_are_checked() {
        let rule = Rule::parse(
            "checklist",
            &config(&[(
                "items",
                ConfigValue::List(vec![
                    Scalar::Text("rollback-plan-tested".into()),
                    Scalar::Text("monitoring-ready".into()),
                ]),
            )]),
        )
        .unwrap();
        let mut a = approval("sre1", &[], 0);
        a.name = "monitoring-ready".into();
        let (v, reason, _) = rule.judge(&[a], &snapshot(None), "prod");
        assert_eq!(v, Verdict::Inconclusive);
        assert_eq!(
            reason,
            "checkout 2.1.0: checklist incomplete: rollback-plan-tested 0 of 1"
        );
        assert_eq!(
            Rule::parse("approval", &config(&[("cuont", ConfigValue::Integer(2))])).unwrap_err(),
            "unknown setting `cuont`; expected count, groups, max_age, allow_author"
        );
        assert_eq!(
            Rule::parse("checklist", &config(&[])).unwrap_err(),
            "`items` must name at least one checklist item"
        );
        assert!(Rule::parse("approval", &config(&[("count", ConfigValue::Integer(0))])).is_err());
    }
}
