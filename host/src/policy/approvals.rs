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

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{ConfigValue, PluginConfig, Scalar};
use crate::snapshot::Snapshot;

/// A gate the host evaluates itself, from the store's approvals, rather
/// than a plugin in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostGate {
    /// `approval`: enough distinct approvers.
    Approval,
    /// `checklist`: every named attestation.
    Checklist,
}

impl HostGate {
    /// Every host gate.
    pub const ALL: [Self; 2] = [Self::Approval, Self::Checklist];

    /// The name a policy's `plugin:` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approval => "approval",
            Self::Checklist => "checklist",
        }
    }

    /// The host gate called `name`, if one is.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == name)
    }
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
            digest: crate::base::digest::Digest::of(&self.canonical()),
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
        digest: crate::base::digest::Digest,
    },
    Copy(Box<Approval>),
}

/// A name that policies and URLs cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a name: 1 to 64 letters, digits, `-`, `_` or `.`")]
pub struct NotAName(String);

/// Checks an approval or item name: what policies and URLs can carry.
pub fn check_name(name: &str) -> Result<(), NotAName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(NotAName(
            crate::base::text::escape_control(name).into_owned(),
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

/// A host gate's settings that do not make a rule; reported at load as a
/// problem on the gate's line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("`{key}` must be a list of text")]
    NotAListOfText { key: String },
    #[error("`{key}` must be text or a list of text")]
    NotText { key: String },
    #[error("`count` must be 1 to 100")]
    CountOutOfRange,
    #[error("`count` must be a whole number")]
    CountNotWhole,
    #[error("`max_age` `{text}`: {cause}")]
    MaxAge {
        text: String,
        cause: humantime::DurationError,
    },
    #[error("`max_age` must be a duration such as 24h")]
    MaxAgeNotText,
    #[error("`{key}` must be true or false")]
    NotABoolean { key: &'static str },
    #[error("unknown setting `{key}`; expected {known}")]
    Unknown { key: String, known: &'static str },
    #[error("`items` must name at least one checklist item")]
    NoItems,
    #[error("`{field}`: {name}")]
    Name { field: &'static str, name: NotAName },
}

/// Reads a scalar or list of texts.
fn texts(key: &str, v: &ConfigValue) -> Result<Vec<String>, RuleError> {
    match v {
        ConfigValue::Text(t) => Ok(vec![t.clone()]),
        ConfigValue::List(items) => items
            .iter()
            .map(|i| match i {
                Scalar::Text(t) => Ok(t.clone()),
                _ => Err(RuleError::NotAListOfText {
                    key: key.to_string(),
                }),
            })
            .collect(),
        _ => Err(RuleError::NotText {
            key: key.to_string(),
        }),
    }
}

impl Rule {
    /// Parses the settings of host gate `host`; unknown keys are refused.
    pub fn parse(host: HostGate, config: &PluginConfig) -> Result<Self, RuleError> {
        let checklist = host == HostGate::Checklist;
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
                        .ok_or(RuleError::CountOutOfRange)?;
                }
                ("count", _) if !checklist => return Err(RuleError::CountNotWhole),
                ("groups", v) => rule.groups = texts(key, v)?,
                ("max_age", ConfigValue::Text(t)) => {
                    rule.max_age =
                        Some(
                            humantime::parse_duration(t).map_err(|cause| RuleError::MaxAge {
                                text: t.clone(),
                                cause,
                            })?,
                        );
                }
                ("max_age", _) => return Err(RuleError::MaxAgeNotText),
                ("allow_author", ConfigValue::Boolean(b)) => rule.allow_author = *b,
                ("allow_author", _) => {
                    return Err(RuleError::NotABoolean {
                        key: "allow_author",
                    });
                }
                ("require_author", ConfigValue::Boolean(b)) => rule.require_author = *b,
                ("require_author", _) => {
                    return Err(RuleError::NotABoolean {
                        key: "require_author",
                    });
                }
                (other, _) => {
                    let known = if checklist {
                        "items, groups, max_age, allow_author, require_author"
                    } else {
                        "count, groups, max_age, allow_author, require_author"
                    };
                    return Err(RuleError::Unknown {
                        key: other.to_string(),
                        known,
                    });
                }
            }
        }
        if rule.items.is_empty() {
            return Err(RuleError::NoItems);
        }
        for item in &rule.items {
            check_name(item).map_err(|name| RuleError::Name {
                field: "items",
                name,
            })?;
        }
        for group in &rule.groups {
            check_name(group).map_err(|name| RuleError::Name {
                field: "groups",
                name,
            })?;
        }
        Ok(rule)
    }

    /// Judges the approvals on record for the snapshot's release at
    /// `stage`, as at `decided_at` (unix seconds): who counted for each
    /// item, and who did not and why. Approvals recorded after `decided_at`
    /// do not exist yet, and `max_age` is measured back from it.
    pub fn judge(
        &self,
        approvals: &[Approval],
        snapshot: &Snapshot,
        stage: &str,
        decided_at: i64,
    ) -> Judgement<'_> {
        let mut judged = Judgement {
            rule: self,
            release: format!("{} {}", snapshot.service, snapshot.version),
            no_author: false,
            tallies: Vec::new(),
            set_aside: Vec::new(),
        };
        let author = snapshot
            .attributes
            .get("author")
            .map(|a| identity_key(a))
            .filter(|a| !a.is_empty());
        if self.require_author && author.is_none() && !self.allow_author {
            judged.no_author = true;
            return judged;
        }
        let now_ms = decided_at.saturating_mul(1000);
        // Everything recorded within the decision's second existed then.
        let latest_ms = decided_at.saturating_add(1).saturating_mul(1000);
        let oldest_ms = self
            .max_age
            .map(|a| now_ms.saturating_sub(i64::try_from(a.as_millis()).unwrap_or(i64::MAX)));
        // Shown in the order of their text, each once.
        let mut set_aside = BTreeMap::new();
        for item in &self.items {
            // One person counts once, however they spell their name.
            let mut who = BTreeMap::new();
            for a in approvals {
                if a.name != *item
                    || a.service != snapshot.service
                    || a.version != snapshot.version
                    || a.stage.as_deref().is_some_and(|s| s != stage)
                {
                    continue;
                }
                let why = if a.at_ms >= latest_ms {
                    Some(Why::AfterDecision)
                } else if oldest_ms.is_some_and(|o| a.at_ms < o) {
                    Some(Why::TooOld)
                } else if !self.allow_author
                    && author.as_deref() == Some(identity_key(&a.approver).as_str())
                {
                    Some(Why::Author)
                } else if !self.groups.is_empty()
                    && !a.groups.iter().any(|g| self.groups.contains(g))
                {
                    Some(Why::NotInGroups)
                } else {
                    None
                };
                match why {
                    Some(why) => {
                        let aside = SetAside {
                            approver: a.approver.clone(),
                            why,
                        };
                        set_aside.insert(self.shown(&aside), aside);
                    }
                    None => {
                        who.entry(identity_key(&a.approver))
                            .or_insert_with(|| a.approver.clone());
                    }
                }
            }
            judged.tallies.push(Tally {
                item: item.clone(),
                who: who.into_values().collect(),
            });
        }
        judged.set_aside = set_aside.into_values().collect();
        judged
    }

    /// How many approvals in all the rule requires.
    pub fn required(&self) -> usize {
        self.items.len() * self.count
    }

    /// An approval set aside, as the gate's details show it.
    fn shown(&self, aside: &SetAside) -> String {
        let why = match aside.why {
            Why::AfterDecision => "recorded after the decision".to_string(),
            Why::TooOld => "too old".to_string(),
            Why::Author => "the author".to_string(),
            Why::NotInGroups => format!("not in {}", self.groups.join(", ")),
        };
        format!("{} ({why})", aside.approver)
    }
}

/// What a host gate found, as data: who counted for each required item,
/// and who did not and why. Its `Display` is the gate's reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement<'r> {
    rule: &'r Rule,
    /// The release judged, `service version`.
    release: String,
    /// The rule requires an author and the release names none, so nobody
    /// was counted.
    pub no_author: bool,
    /// Who counted for each required item, in the rule's order.
    pub tallies: Vec<Tally>,
    /// The approvals on record that did not count, in the order shown.
    pub set_aside: Vec<SetAside>,
}

/// The people who counted for one required item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// `approval`, or the checklist item.
    pub item: String,
    /// One name per person, as they first spelt it.
    pub who: Vec<String>,
}

/// An approval on record that did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub approver: String,
    pub why: Why,
}

/// Why an approval did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Recorded after the decision time: it did not exist yet.
    AfterDecision,
    /// Older than `max_age` at the decision time.
    TooOld,
    /// Given by the change's author.
    Author,
    /// The approver is in none of the rule's groups.
    NotInGroups,
}

impl Judgement<'_> {
    /// Whether every item has enough approvers: the gate passes; otherwise
    /// it is inconclusive until they come.
    pub fn met(&self) -> bool {
        !self.no_author && self.missing().next().is_none()
    }

    /// How many approvers counted, over every item.
    pub fn counted(&self) -> usize {
        self.tallies.iter().map(|t| t.who.len()).sum()
    }

    /// How many approvals in all the rule requires.
    pub fn required(&self) -> usize {
        self.rule.required()
    }

    /// Who counted for each item, and who did not (`not counted`).
    pub fn details(&self) -> BTreeMap<String, String> {
        let mut details: BTreeMap<String, String> = self
            .tallies
            .iter()
            .map(|t| (t.item.clone(), t.who.join(", ")))
            .collect();
        if !self.set_aside.is_empty() {
            let shown: Vec<String> = self.set_aside.iter().map(|a| self.rule.shown(a)).collect();
            details.insert("not counted".into(), shown.join(", "));
        }
        details
    }

    /// The items short of approvers.
    fn missing(&self) -> impl Iterator<Item = &Tally> {
        self.tallies
            .iter()
            .filter(|t| t.who.len() < self.rule.count)
    }
}

impl fmt::Display for Judgement<'_> {
    /// The reason: what the release has, or what it still waits for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rule, release) = (self.rule, &self.release);
        if self.no_author {
            return write!(
                f,
                "{release} names no `author` (a snapshot attribute), which this gate requires so that nobody approves their own change"
            );
        }
        let from = if rule.groups.is_empty() {
            String::new()
        } else {
            format!(" from {}", rule.groups.join(" or "))
        };
        let age = rule
            .max_age
            .map(|a| format!(", at most {} old", crate::base::text::duration(a)))
            .unwrap_or_default();
        let approval = rule.items == [APPROVAL];
        if self.met() {
            return if approval {
                write!(f, "{release} has {} approval(s){from}{age}", rule.count)
            } else {
                write!(
                    f,
                    "{release} has every checklist item ({}){from}{age}",
                    rule.items.join(", ")
                )
            };
        }
        let missing: Vec<String> = self
            .missing()
            .map(|t| format!("{} {} of {}", t.item, t.who.len(), rule.count))
            .collect();
        let missing = missing.join("; ");
        if approval {
            write!(f, "{release}: waiting for approval: {missing}{from}{age}")
        } else {
            // The groups and the age bind every item, not the last one.
            let each = if from.is_empty() && age.is_empty() {
                ""
            } else {
                "; each attested"
            };
            write!(
                f,
                "{release}: checklist incomplete: {missing}{each}{from}{age}"
            )
        }
    }
}

#[cfg(test)]
mod tests;
