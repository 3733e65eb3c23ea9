//! `mann_whitney_u` against reference values computed once with scipy
//! (`gen_mann_whitney.py` beside this file).
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use tollgate_sdk::stats::mann_whitney_u;

#[test]
fn matches_scipy_reference_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/mann_whitney_vectors.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let floats = |k: &str| -> Vec<f64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let (x, y) = (floats("x"), floats("y"));
        let got = mann_whitney_u(&x, &y).unwrap();
        let (u, p) = (case["u"].as_f64().unwrap(), case["p"].as_f64().unwrap());
        let name = case["name"].as_str().unwrap();
        assert_eq!(got.u, u, "{name}: U");
        assert!(
            (got.p_value - p).abs() <= 1e-12 + 1e-9 * p,
            "{name}: p {} vs scipy {p}",
            got.p_value
        );
    }
}

#[test]
fn empty_samples_have_no_test() {
    assert!(mann_whitney_u(&[], &[1.0]).is_none());
    assert!(mann_whitney_u(&[1.0], &[]).is_none());
}
