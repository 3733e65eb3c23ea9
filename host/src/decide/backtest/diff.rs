//! What differs between two decisions over the same snapshot: each gate
//! that counts, observes or is judged against another threshold, and each
//! trigger that fires otherwise.

use std::collections::{BTreeSet, HashMap};

use super::FindingDiff;
use crate::evaluate::decision::{Counted, Decision};

fn counted(c: Counted) -> String {
    c.as_str().to_string()
}

/// The gates and triggers of `before` and `after` that differ.
pub(super) fn diffs(before: &Decision, after: &Decision) -> (Vec<FindingDiff>, Vec<FindingDiff>) {
    let mut gates = Vec::new();
    let names: BTreeSet<&str> = before
        .gates
        .iter()
        .chain(&after.gates)
        .map(|g| g.name.as_str())
        .collect();
    let gates_before: HashMap<&str, _> =
        before.gates.iter().map(|g| (g.name.as_str(), g)).collect();
    let gates_after: HashMap<&str, _> = after.gates.iter().map(|g| (g.name.as_str(), g)).collect();
    for name in names {
        let b = gates_before.get(name).copied();
        let a = gates_after.get(name).copied();
        let differ = match (b, a) {
            (Some(b), Some(a)) => {
                b.counted_as != a.counted_as
                    || b.observed != a.observed
                    || b.threshold != a.threshold
            }
            _ => true,
        };
        if differ {
            gates.push(FindingDiff {
                name: name.to_string(),
                before: b.map(|g| counted(g.counted_as)),
                after: a.map(|g| counted(g.counted_as)),
                observed_before: b.and_then(|g| g.observed),
                observed_after: a.and_then(|g| g.observed),
                threshold_before: b.and_then(|g| g.threshold),
                threshold_after: a.and_then(|g| g.threshold),
            });
        }
    }
    let mut triggers = Vec::new();
    let names: BTreeSet<&str> = before
        .triggers
        .iter()
        .chain(&after.triggers)
        .map(|t| t.name.as_str())
        .collect();
    let triggers_before: HashMap<&str, _> = before
        .triggers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let triggers_after: HashMap<&str, _> = after
        .triggers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for name in names {
        let b = triggers_before.get(name).copied();
        let a = triggers_after.get(name).copied();
        if b.map(|t| t.fire) != a.map(|t| t.fire) {
            triggers.push(FindingDiff {
                name: name.to_string(),
                before: b.map(|t| t.fire.as_str().to_string()),
                after: a.map(|t| t.fire.as_str().to_string()),
                observed_before: b.and_then(|t| t.observed),
                observed_after: a.and_then(|t| t.observed),
                threshold_before: b.and_then(|t| t.threshold),
                threshold_after: a.and_then(|t| t.threshold),
            });
        }
    }
    (gates, triggers)
}
