//! Host gate rules, judged over recorded approvals.

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
        r#"{"service":"checkout","version":"2.1.0","taken_at":1764000000,"metrics":[]"#.to_string();
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
        HostGate::Approval,
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
    let judged = rule.judge(&approvals, &snapshot(Some("dave")), "prod", at);
    assert!(!judged.met());
    assert_eq!(
        judged.to_string(),
        "checkout 2.1.0: waiting for approval: approval 1 of 2 from release-managers, at most 1 day old"
    );
    let judged = rule.judge(&approvals, &snapshot(Some("erin")), "prod", at);
    assert!(judged.met(), "{judged}");
    assert_eq!((judged.counted(), judged.required()), (2, 2));
    assert_eq!(judged.tallies[0].who, ["alice", "dave"]);
    assert_eq!(
        judged.details()["not counted"],
        "bob (not in release-managers), carol (too old)"
    );
    assert_eq!(
        judged.set_aside.iter().map(|a| a.why).collect::<Vec<_>>(),
        [Why::NotInGroups, Why::TooOld]
    );
}

#[test]
fn a_checklist_needs_every_item_and_settings_are_checked() {
    let rule = Rule::parse(
        HostGate::Checklist,
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
    let judged = rule.judge(&[a], &snapshot(None), "prod", 1_764_000_000);
    assert!(!judged.met());
    assert_eq!(
        judged.to_string(),
        "checkout 2.1.0: checklist incomplete: rollback-plan-tested 0 of 1"
    );
    assert_eq!((judged.counted(), judged.required()), (1, 2));
    assert_eq!(
        Rule::parse(
            HostGate::Approval,
            &config(&[("cuont", ConfigValue::Integer(2))])
        )
        .unwrap_err()
        .to_string(),
        "unknown setting `cuont`; expected count, groups, max_age, allow_author, require_author"
    );
    assert_eq!(
        Rule::parse(HostGate::Checklist, &config(&[]))
            .unwrap_err()
            .to_string(),
        "`items` must name at least one checklist item"
    );
    assert!(
        Rule::parse(
            HostGate::Approval,
            &config(&[("count", ConfigValue::Integer(0))])
        )
        .is_err()
    );
}

#[test]
fn the_author_is_compared_trimmed_and_case_folded_and_can_be_required() {
    let rule = Rule::parse(HostGate::Approval, &config(&[])).unwrap();
    let at = 1_764_000_000;
    let alice = [approval("alice", &[], at * 1000 - 1)];
    for author in ["ALICE", "Alice", " alice ", "ａｌｉｃｅ"] {
        let judged = rule.judge(&alice, &snapshot(Some(author)), "prod", at);
        assert!(!judged.met(), "author {author:?}");
        assert_eq!(judged.details()["not counted"], "alice (the author)");
    }
    assert!(
        rule.judge(&alice, &snapshot(None), "prod", at).met(),
        "no author, nothing required"
    );
    let strict = Rule::parse(
        HostGate::Approval,
        &config(&[("require_author", ConfigValue::Boolean(true))]),
    )
    .unwrap();
    let judged = strict.judge(&alice, &snapshot(None), "prod", at);
    assert!(!judged.met() && judged.no_author);
    assert!(judged.details().is_empty() && judged.counted() == 0);
    assert!(judged.to_string().contains("names no `author`"), "{judged}");
    assert!(
        strict
            .judge(&alice, &snapshot(Some("bob")), "prod", at)
            .met()
    );
}

#[test]
fn approvals_are_judged_at_the_decision_time_not_the_snapshot_time() {
    let rule = Rule::parse(
        HostGate::Approval,
        &config(&[("max_age", ConfigValue::Text("1h".into()))]),
    )
    .unwrap();
    let decided = 1_764_000_000;
    let fresh = [approval("bob", &[], decided * 1000 - 60_000)];
    // The snapshot's taken_at (1_764_000_000) plays no part: one hour
    // later the same approval is stale.
    assert!(rule.judge(&fresh, &snapshot(None), "p", decided).met());
    let judged = rule.judge(&fresh, &snapshot(None), "p", decided + 3600);
    assert!(!judged.met());
    assert_eq!(judged.details()["not counted"], "bob (too old)");
    // An approval recorded after the decision did not exist then.
    let judged = rule.judge(&fresh, &snapshot(None), "p", decided - 120);
    assert!(!judged.met());
    assert_eq!(
        judged.details()["not counted"],
        "bob (recorded after the decision)"
    );
}
