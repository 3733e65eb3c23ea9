//! The README's integration examples, checked against what the integrated
//! tools accept.

use serde_json::Value;

use crate::support::repo;

/// The YAML blocks of the README whose `kind` is `kind`.
fn yaml_blocks(kind: &str) -> Vec<Value> {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
        .filter(|block| block.contains(&format!("kind: {kind}\n")))
        .map(|block| tollgate::policy::yaml::parse(block).unwrap().to_json())
        .collect()
}

/// Every key of `value` must be in `allowed`; returns the strays.
fn strays(value: &Value, allowed: &[&str], at: &str) -> Vec<String> {
    value
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !allowed.contains(&k.as_str()))
                .map(|k| format!("{at}.{k}"))
                .collect()
        })
        .unwrap_or_default()
}

// Field names as argo-rollouts' manifests/crds/analysis-template-crd.yaml
// defines them (openAPIV3Schema, read from the project's own repository).
const SPEC: &[&str] = &[
    "args",
    "dryRun",
    "measurementRetention",
    "metrics",
    "templates",
];
const ARG: &[&str] = &["name", "value", "valueFrom"];
const VALUE_FROM: &[&str] = &["fieldRef", "secretKeyRef"];
const SECRET_KEY_REF: &[&str] = &["key", "name"];
const METRIC: &[&str] = &[
    "consecutiveErrorLimit",
    "consecutiveSuccessLimit",
    "count",
    "failureCondition",
    "failureLimit",
    "inconclusiveLimit",
    "initialDelay",
    "interval",
    "name",
    "provider",
    "successCondition",
];
const WEB: &[&str] = &[
    "authentication",
    "body",
    "headers",
    "insecure",
    "jsonBody",
    "jsonPath",
    "method",
    "timeoutSeconds",
    "url",
];
const HEADER: &[&str] = &["key", "value"];

#[test]
fn the_readme_analysis_templates_use_only_crd_fields() {
    let templates = yaml_blocks("AnalysisTemplate");
    assert_eq!(templates.len(), 2, "the step and the background template");
    for t in &templates {
        let name = t["metadata"]["name"].as_str().unwrap();
        assert_eq!(t["apiVersion"], "argoproj.io/v1alpha1");
        let spec = &t["spec"];
        let mut bad = strays(spec, SPEC, name);
        let mut declared = Vec::new();
        for a in spec["args"].as_array().unwrap() {
            bad.extend(strays(a, ARG, "args[]"));
            declared.push(a["name"].as_str().unwrap().to_string());
            if let Some(from) = a.get("valueFrom") {
                bad.extend(strays(from, VALUE_FROM, "valueFrom"));
                bad.extend(strays(
                    &from["secretKeyRef"],
                    SECRET_KEY_REF,
                    "secretKeyRef",
                ));
            }
        }
        for m in spec["metrics"].as_array().unwrap() {
            bad.extend(strays(m, METRIC, "metrics[]"));
            let web = &m["provider"]["web"];
            bad.extend(strays(web, WEB, "web"));
            for h in web["headers"].as_array().into_iter().flatten() {
                bad.extend(strays(h, HEADER, "headers[]"));
            }
            if let Some(method) = web["method"].as_str() {
                assert!(["GET", "POST", "PUT"].contains(&method), "{method}");
            }
            if web.get("jsonBody").is_some() {
                assert!(
                    matches!(web["method"].as_str(), Some("POST" | "PUT")),
                    "jsonBody needs POST or PUT"
                );
            }
            assert_eq!(web["jsonPath"], "{$.decision}");
            // Every `{{args.X}}` the metric uses is declared under spec.args.
            let text = m.to_string();
            for used in text.split("{{args.").skip(1) {
                let arg = used.split("}}").next().unwrap();
                assert!(
                    declared.iter().any(|d| d == arg),
                    "{name} uses undeclared arg `{arg}`"
                );
            }
        }
        assert!(
            bad.is_empty(),
            "{name}: fields the CRD does not define: {bad:?}"
        );
    }
}

#[test]
fn the_readme_flagger_canary_points_each_hook_at_its_own_route() {
    let canaries = yaml_blocks("Canary");
    assert_eq!(canaries.len(), 1);
    for hook in canaries[0]["spec"]["analysis"]["webhooks"]
        .as_array()
        .unwrap()
    {
        let kind = hook["type"].as_str().unwrap();
        let url = hook["url"].as_str().unwrap();
        assert!(url.ends_with(&format!("/{kind}")), "{kind} → {url}");
        assert!(
            hook["metadata"]["token"].is_string(),
            "Flagger sends no headers"
        );
    }
}
