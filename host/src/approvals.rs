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
//!   one), recorded at or before the decision time (`decided_at`, the
//!   server's clock, never the caller's `taken_at`), not older than
//!   `max_age` then, and not the change's author (the snapshot attribute
//!   `author`, compared trimmed and Unicode case-folded; with
//!   `require_author: true` a release that names no author counts nobody);
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

/// Approvals and attestations one approver may record on one release: every
/// checklist item a few times over, and no more, so one token cannot fill a
/// release's record on its own.
pub const MAX_PER_APPROVER: usize = 50;

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

impl Approval {
    /// Its canonical JSON, as the log stores it (content-addressed).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// How a decision refers to it: id and the digest of its JSON.
    pub fn reference(&self) -> ApprovalRead {
        ApprovalRead::Ref {
            id: self.id.clone(),
            digest: crate::digest::Digest::of(&self.canonical()),
        }
    }
}

/// An approval or attestation a decision judged. A decision refers to it
/// by id and digest, and the log keeps its JSON once under that digest, so
/// a release's approvals are not copied into every decision and answer
/// that reads them; a replay judges exactly the bytes that were read.
/// Records written before references held a copy, which still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApprovalRead {
    Ref {
        id: String,
        digest: crate::digest::Digest,
    },
    Copy(Box<Approval>),
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
    /// A release with no `author` attribute counts no approval, so an
    /// anonymous release can never count its own author's vote.
    require_author: bool,
}

/// An identity as compared: trimmed, in Unicode compatibility caseless form
/// (NFKD and full case folding), so `ALICE`, ` alice` and `ａｌｉｃｅ` are one
/// person.
pub fn identity_key(name: &str) -> String {
    use caseless::Caseless as _;
    use unicode_normalization::UnicodeNormalization as _;
    name.trim()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkd()
        .collect()
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
            require_author: false,
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
                ("require_author", ConfigValue::Boolean(b)) => rule.require_author = *b,
                ("require_author", _) => {
                    return Err("`require_author` must be true or false".into());
                }
                (other, _) => {
                    let known = if checklist {
                        "items, groups, max_age, allow_author, require_author"
                    } else {
                        "count, groups, max_age, allow_author, require_author"
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
    /// `stage`, as at `decided_at` (unix seconds): a verdict, a reason, and
    /// who counted for each item. Approvals recorded after `decided_at` do
    /// not exist yet, and `max_age` is measured back from it.
    pub fn judge(
        &self,
        approvals: &[Approval],
        snapshot: &Snapshot,
        stage: &str,
        decided_at: i64,
    ) -> (Verdict, String, Vec<(String, String)>) {
        let author = snapshot
            .attributes
            .get("author")
            .map(|a| identity_key(a))
            .filter(|a| !a.is_empty());
        let release = format!("{} {}", snapshot.service, snapshot.version);
        if self.require_author && author.is_none() && !self.allow_author {
            return (
                Verdict::Inconclusive,
                format!(
                    "{release} names no `author` (a snapshot attribute), which this gate requires so that nobody approves their own change"
                ),
                Vec::new(),
            );
        }
        let now_ms = decided_at.saturating_mul(1000);
        // Everything recorded within the decision's second existed then.
        let latest_ms = decided_at.saturating_add(1).saturating_mul(1000);
        let oldest_ms = self
            .max_age
            .map(|a| now_ms.saturating_sub(i64::try_from(a.as_millis()).unwrap_or(i64::MAX)));
        let mut details = Vec::new();
        let mut missing = Vec::new();
        let mut set_aside = BTreeSet::new();
        for item in &self.items {
            // One person counts once, however they spell their name.
            let mut who = std::collections::BTreeMap::new();
            for a in approvals {
                if a.name != *item
                    || a.service != snapshot.service
                    || a.version != snapshot.version
                    || a.stage.as_deref().is_some_and(|s| s != stage)
                {
                    continue;
                }
                if a.at_ms >= latest_ms {
                    set_aside.insert(format!("{} (recorded after the decision)", a.approver));
                } else if oldest_ms.is_some_and(|o| a.at_ms < o) {
                    set_aside.insert(format!("{} (too old)", a.approver));
                } else if !self.allow_author
                    && author.as_deref() == Some(identity_key(&a.approver).as_str())
                {
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
                    who.entry(identity_key(&a.approver))
                        .or_insert_with(|| a.approver.clone());
                }
            }
            details.push((
                item.clone(),
                who.values().cloned().collect::<Vec<_>>().join(", "),
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
            .map(|a| format!(", at most {} old", crate::text::duration(a)))
            .unwrap_or_default();
        if missing.is_empty() {
            let what = if self.items == [APPROVAL] {
                format!("{} approval(s){from}", self.count)
            } else {
                format!("every checklist item ({}){from}", self.items.join(", "))
            };
            (Verdict::Pass, format!("{release} has {what}{age}"), details)
        } else {
            let what = if self.items == [APPROVAL] {
                format!("waiting for approval: {}", missing.join("; "))
            } else {
                // The groups and the age bind every item, not the last one.
                let each = if from.is_empty() && age.is_empty() {
                    ""
                } else {
                    "; each attested"
                };
                format!("checklist incomplete: {}{each}", missing.join("; "))
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
        let at = now / 1000;
        let (v, reason, _) = rule.judge(&approvals, &snapshot(Some("dave")), "prod", at);
        assert_eq!(v, Verdict::Inconclusive);
        assert_eq!(
            reason,
            "checkout 2.1.0: waiting for approval: approval 1 of 2 from release-managers, at most 1 day old"
        );
        let (v, reason, details) = rule.judge(&approvals, &snapshot(Some("erin")), "prod", at);
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
        let (v, reason, _) = rule.judge(&[a], &snapshot(None), "prod", 1_764_000_000);
        assert_eq!(v, Verdict::Inconclusive);
        assert_eq!(
            reason,
            "checkout 2.1.0: checklist incomplete: rollback-plan-tested 0 of 1"
        );
        assert_eq!(
            Rule::parse("approval", &config(&[("cuont", ConfigValue::Integer(2))])).unwrap_err(),
            "unknown setting `cuont`; expected count, groups, max_age, allow_author, require_author"
        );
        assert_eq!(
            Rule::parse("checklist", &config(&[])).unwrap_err(),
            "`items` must name at least one checklist item"
        );
        assert!(Rule::parse("approval", &config(&[("count", ConfigValue::Integer(0))])).is_err());
    }

    #[test]
    fn the_author_is_compared_trimmed_and_case_folded_and_can_be_required() {
        let rule = Rule::parse("approval", &config(&[])).unwrap();
        let at = 1_764_000_000;
        let alice = [approval("alice", &[], at * 1000 - 1)];
        for author in ["ALICE", "Alice", " alice ", "ａｌｉｃｅ"] {
            let (v, _, details) = rule.judge(&alice, &snapshot(Some(author)), "prod", at);
            assert_eq!(v, Verdict::Inconclusive, "author {author:?}");
            assert_eq!(details[1].1, "alice (the author)");
        }
        let (v, _, _) = rule.judge(&alice, &snapshot(None), "prod", at);
        assert_eq!(v, Verdict::Pass, "no author, nothing required");
        let strict = Rule::parse(
            "approval",
            &config(&[("require_author", ConfigValue::Boolean(true))]),
        )
        .unwrap();
        let (v, reason, _) = strict.judge(&alice, &snapshot(None), "prod", at);
        assert_eq!(v, Verdict::Inconclusive);
        assert!(reason.contains("names no `author`"), "{reason}");
        let (v, _, _) = strict.judge(&alice, &snapshot(Some("bob")), "prod", at);
        assert_eq!(v, Verdict::Pass);
    }

    #[test]
    fn approvals_are_judged_at_the_decision_time_not_the_snapshot_time() {
        let rule = Rule::parse(
            "approval",
            &config(&[("max_age", ConfigValue::Text("1h".into()))]),
        )
        .unwrap();
        let decided = 1_764_000_000;
        let fresh = [approval("bob", &[], decided * 1000 - 60_000)];
        // The snapshot's taken_at (1_764_000_000) plays no part: one hour
        // later the same approval is stale.
        assert_eq!(
            rule.judge(&fresh, &snapshot(None), "p", decided).0,
            Verdict::Pass
        );
        let (v, _, details) = rule.judge(&fresh, &snapshot(None), "p", decided + 3600);
        assert_eq!(v, Verdict::Inconclusive);
        assert_eq!(details[1].1, "bob (too old)");
        // An approval recorded after the decision did not exist then.
        let (v, _, details) = rule.judge(&fresh, &snapshot(None), "p", decided - 120);
        assert_eq!(v, Verdict::Inconclusive);
        assert_eq!(details[1].1, "bob (recorded after the decision)");
    }
}
