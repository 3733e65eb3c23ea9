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

// Field names as flagger's artifacts/flagger/crd.yaml defines them for
// `Canary` v1beta1 (openAPIV3Schema, read from the project's own
// repository), and what it requires.
const CANARY_SPEC: &[&str] = &[
    "analysis",
    "autoscalerRef",
    "ingressRef",
    "metricsServer",
    "progressDeadlineSeconds",
    "provider",
    "revertOnDeletion",
    "routeRef",
    "service",
    "skipAnalysis",
    "suspend",
    "targetRef",
    "upstreamRef",
];
const CANARY_SPEC_REQUIRED: &[&str] = &["targetRef", "analysis"];
const TARGET_REF: &[&str] = &["apiVersion", "kind", "name"];
const TARGET_KINDS: &[&str] = &["DaemonSet", "Deployment", "Service"];
const CANARY_SERVICE: &[&str] = &[
    "apex",
    "appProtocol",
    "backendTimeout",
    "backends",
    "canary",
    "corsPolicy",
    "delegation",
    "gatewayRefs",
    "gateways",
    "headers",
    "headless",
    "hosts",
    "match",
    "meshName",
    "mirror",
    "name",
    "port",
    "portDiscovery",
    "portName",
    "primary",
    "retries",
    "rewrite",
    "targetPort",
    "timeout",
    "trafficDistribution",
    "trafficPolicy",
    "unmanagedMetadata",
];
const ANALYSIS: &[&str] = &[
    "alerts",
    "canaryReadyThreshold",
    "interval",
    "iterations",
    "match",
    "maxWeight",
    "metrics",
    "mirror",
    "mirrorWeight",
    "primaryReadyThreshold",
    "sessionAffinity",
    "stepWeight",
    "stepWeightPromotion",
    "stepWeights",
    "threshold",
    "webhooks",
];
const WEBHOOK: &[&str] = &[
    "disableTLS",
    "metadata",
    "muteAlert",
    "name",
    "retries",
    "timeout",
    "type",
    "url",
];

/// The README's Canary is one `kubectl apply` accepts: every field the CRD
/// requires, no field it does not define, and values of the types it
/// declares (webhook metadata is a map of strings).
#[test]
fn the_readme_flagger_canary_is_complete_and_uses_only_crd_fields() {
    let canaries = yaml_blocks("Canary");
    assert_eq!(canaries.len(), 1);
    let c = &canaries[0];
    assert_eq!(c["apiVersion"], "flagger.app/v1beta1");
    let spec = &c["spec"];
    let mut bad = strays(spec, CANARY_SPEC, "spec");
    for required in CANARY_SPEC_REQUIRED {
        assert!(spec.get(required).is_some(), "spec.{required} is required");
    }
    let target = &spec["targetRef"];
    bad.extend(strays(target, TARGET_REF, "spec.targetRef"));
    for field in TARGET_REF {
        assert!(
            target[field].is_string(),
            "spec.targetRef.{field}: {target}"
        );
    }
    assert!(
        TARGET_KINDS.contains(&target["kind"].as_str().unwrap()),
        "{target}"
    );
    // Flagger creates the Services from `service.port`: without it the
    // controller refuses the Canary.
    let service = &spec["service"];
    bad.extend(strays(service, CANARY_SERVICE, "spec.service"));
    assert!(service["port"].is_number(), "spec.service.port: {service}");
    bad.extend(strays(&spec["analysis"], ANALYSIS, "spec.analysis"));
    for hook in spec["analysis"]["webhooks"].as_array().unwrap() {
        bad.extend(strays(hook, WEBHOOK, "webhooks[]"));
        for (k, v) in hook["metadata"].as_object().unwrap() {
            assert!(v.is_string(), "metadata.{k} must be a string: {v}");
        }
        assert!(
            hook["metadata"]["version"].is_string(),
            "every hook names the version, so no decision is logged without one"
        );
    }
    assert!(bad.is_empty(), "fields the CRD does not define: {bad:?}");
}

// Field names as argo-rollouts' manifests/crds/rollout-crd.yaml defines
// them for a canary step's and a background analysis.
const STEP: &[&str] = &[
    "analysis",
    "experiment",
    "pause",
    "plugin",
    "setCanaryScale",
    "setHeaderRoute",
    "setMirrorRoute",
    "setWeight",
];
const ROLLOUT_ANALYSIS: &[&str] = &[
    "analysisRunMetadata",
    "args",
    "dryRun",
    "measurementRetention",
    "startingStep",
    "templates",
];
const ROLLOUT_ARG_FROM: &[&str] = &["fieldRef", "podTemplateHashValue"];

/// The README's Rollout uses only fields its CRD defines, and passes every
/// argument each template it names declares without a value of its own
/// (`version` among them, so decisions are logged with one).
#[test]
fn the_readme_rollout_passes_every_template_argument() {
    let templates = yaml_blocks("AnalysisTemplate");
    let rollouts = yaml_blocks("Rollout");
    assert_eq!(rollouts.len(), 1);
    let canary = &rollouts[0]["spec"]["strategy"]["canary"];
    let mut analyses = vec![&canary["analysis"]];
    let mut bad = Vec::new();
    for step in canary["steps"].as_array().unwrap() {
        bad.extend(strays(step, STEP, "steps[]"));
        if let Some(a) = step.get("analysis") {
            analyses.push(a);
        }
    }
    for a in analyses {
        bad.extend(strays(a, ROLLOUT_ANALYSIS, "analysis"));
        let passed: Vec<&str> = a["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|arg| {
                bad.extend(strays(arg, ARG, "args[]"));
                if let Some(from) = arg.get("valueFrom") {
                    bad.extend(strays(from, ROLLOUT_ARG_FROM, "valueFrom"));
                }
                arg["name"].as_str().unwrap()
            })
            .collect();
        assert!(passed.contains(&"version"), "{a}");
        for t in a["templates"].as_array().unwrap() {
            let name = t["templateName"].as_str().unwrap();
            let template = templates
                .iter()
                .find(|x| x["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("no template `{name}` in the README"));
            for arg in template["spec"]["args"].as_array().unwrap() {
                let arg_name = arg["name"].as_str().unwrap();
                if arg.get("value").is_none() && arg.get("valueFrom").is_none() {
                    assert!(passed.contains(&arg_name), "{name} needs `{arg_name}`");
                }
            }
        }
    }
    assert!(bad.is_empty(), "fields the CRD does not define: {bad:?}");
}
