//! Backtests over HTTP as background jobs owned by their token, a release
//! labelled bad by a later stage under another policy, and a job that never
//! starves live evaluations of workers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backtest::{TOKEN, backtest, candidate, ci, evaluate, history, now};
use crate::support::{HttpResponse, Server, repo, write};

const ONE: &str = "backtest-one-0123456789abcdef";
const TWO: &str = "backtest-two-0123456789abcdef";
const ADMIN: &str = "backtest-admin-0123456789abcd";
const ONLY: &str = "backtest-only-0123456789abcde";

fn server(dir: &std::path::Path, extra: &[&str]) -> Server {
    let tokens = write(
        dir,
        "tokens",
        format!(
            "{TOKEN}\n{ONE} backtest read\n{TWO} backtest read\n{ONLY} backtest\n{ADMIN} admin\n"
        )
        .as_bytes(),
    );
    let log = dir.join("log.db").display().to_string();
    let mut args = vec!["--tokens-file", tokens.to_str().unwrap(), "--store", &log];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn call(server: &Server, method: &str, path: &str, token: &str, body: &Value) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    server.request(
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

/// Polls a job until it is no longer queued or running.
fn finished(server: &Server, token: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let r = call(
            server,
            "GET",
            &format!("/v1/backtests/{id}"),
            token,
            &Value::Null,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let job = r.json();
        if !matches!(job["status"].as_str(), Some("queued" | "running")) {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the backtest did not finish: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_later_stage_that_rolls_a_release_back_labels_it_bad() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = crate::backtest::server(dir.path());
    history(&server);
    // 1.2.0 passed CI, then its canary failed and rolled back.
    let at = now() - 10 * 86_400 + 2 * 7200 + 600;
    let canary = json!({"policy": "canary", "stage": "initial-canary", "elapsed": "20m", "snapshot": {
        "service": "payments", "version": "1.2.0", "taken_at": at,
        "metrics": [
            {"name": "error_rate", "points": [[at, 0.02]]},
            {"name": "response_time_p95_ms", "points": [[at, 200]]}]}});
    assert_eq!(evaluate(&server, &canary)["decision"], "rollback");
    let stricter = candidate(dir.path(), "stricter.yaml", 90);
    let report = backtest(&["--policy", &stricter, "--log", &log]);
    let release = report["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == "1.2.0")
        .unwrap();
    assert_eq!(release["label"], "bad", "{report:#}");
    assert_eq!(release["because"], "failed canary initial-canary");
    // The candidate stops it (coverage 88 < 90): one more bad release
    // stopped, one fewer good one stopped, than without the canary.
    assert_eq!(
        report["confusion_after"],
        json!({"stopped_bad": 3, "stopped_good": 1, "passed_bad": 0, "passed_good": 1, "unlabelled": 0})
    );
}

#[test]
fn backtest_jobs_run_over_http_and_belong_to_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), &[]);
    history(&server);
    let stricter = std::fs::read_to_string(candidate(dir.path(), "stricter.yaml", 90)).unwrap();
    let body = json!({"policy": stricter});
    // A token without the scope may not; no token is a 401.
    let r = call(&server, "POST", "/v1/backtests", TOKEN, &body);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("`backtest` and `read` scopes"),
        "{}",
        r.text()
    );
    // A report shows what the log holds: `backtest` alone is not enough.
    let r = call(&server, "POST", "/v1/backtests", ONLY, &body);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = server.request("POST", "/v1/backtests", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 401);

    let r = call(&server, "POST", "/v1/backtests", ONE, &body);
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/backtests/{id}").as_str())
    );
    assert_eq!(job["policy"], "ci-quality-gates");
    let done = finished(&server, ONE, &id);
    assert_eq!(done["status"], "done", "{done:#}");
    assert_eq!(done["progress"], json!({"done": 5, "total": 5}));
    // The same report as the CLI's.
    let report = &done["report"];
    assert_eq!(report["changed"], 3, "{report:#}");
    assert_eq!(report["transitions"], json!({"promote → rollback": 3}));
    assert_eq!(
        report["confusion_after"],
        json!({"stopped_bad": 2, "stopped_good": 2, "passed_bad": 0, "passed_good": 1, "unlabelled": 0})
    );

    // Every answer is what the OpenAPI document says.
    let doc = call(&server, "GET", "/openapi.json", ADMIN, &Value::Null).json();
    let conforms = |path: &str, method: &str, status: u16, body: &Value| {
        let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
            ["schema"];
        assert!(
            !schema.is_null(),
            "{method} {path} {status} is not documented"
        );
        let errors = crate::support::schema_errors(&doc, schema, body);
        assert!(errors.is_empty(), "{method} {path} {status}: {errors:#?}");
    };
    conforms("/v1/backtests/{id}", "get", 200, &done);
    conforms("/v1/backtests", "post", 202, &job);
    conforms(
        "/v1/backtests",
        "post",
        403,
        &call(&server, "POST", "/v1/backtests", TOKEN, &body).json(),
    );
    // Another token cannot tell the job exists; an admin can see it.
    let path = format!("/v1/backtests/{id}");
    let r = call(&server, "GET", &path, TWO, &Value::Null);
    assert_eq!(r.status, 404, "{}", r.text());
    conforms("/v1/backtests/{id}", "get", 404, &r.json());
    let r = call(&server, "DELETE", &path, TWO, &Value::Null);
    assert_eq!(r.status, 404);
    assert_eq!(call(&server, "GET", &path, ADMIN, &Value::Null).status, 200);
    let mine = call(&server, "GET", "/v1/backtests", ONE, &Value::Null).json();
    assert_eq!(mine["backtests"].as_array().unwrap().len(), 1);
    assert!(mine["backtests"][0].get("report").is_none());
    conforms("/v1/backtests", "get", 200, &mine);
    let theirs = call(&server, "GET", "/v1/backtests", TWO, &Value::Null).json();
    assert_eq!(theirs["backtests"], json!([]));

    // Options a request gives are checked, each naming its field.
    for (body, field, says) in [
        (
            json!({"policy": stricter, "since": "soon"}),
            "since",
            "neither unix seconds nor RFC 3339",
        ),
        (
            json!({"policy": stricter, "prometheus": true}),
            "prometheus",
            "no Prometheus",
        ),
        (
            json!({"policy": stricter, "against": "tomorrow"}),
            "against",
            "`logged` or `served`",
        ),
        (
            json!({"policy": stricter, "rows": 0}),
            "rows",
            "from 1 to 2000",
        ),
        (
            json!({"policy": "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: x}\nplugins:\n  evil: {path: /etc/passwd}\nstages:\n  - name: s\n    gates:\n      - {name: g, plugin: evil}\n"}),
            "policy",
            "may not declare plugin files",
        ),
        (
            json!({"policy": "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: x}\nallowed_signers: /etc/ssh/keys\nstages:\n  - name: s\n    gates:\n      - {name: g, plugin: threshold, with: {metric: m, op: '<', threshold: 1}}\n"}),
            "policy",
            "may not name files on the server",
        ),
        (
            json!({"policy": "not: [a policy"}),
            "policy",
            "invalid candidate policy",
        ),
        (
            // A host gate's grant is resolved against the server's files
            // too: refused before anything is looked up.
            json!({"policy": "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: x}\nstages:\n  - name: s\n    gates:\n      - {name: a, plugin: approval, with: {count: 1}, grants: {files: [{host: /root/.ssh, guest: /g}]}}\n"}),
            "policy",
            "may not grant directories",
        ),
    ] {
        let r = call(&server, "POST", "/v1/backtests", ONE, &body);
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        let e = r.json();
        conforms("/v1/backtests", "post", 422, &e);
        assert_eq!(e["error"]["field"], field, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(says),
            "{e}"
        );
    }
    let r = call(
        &server,
        "POST",
        "/v1/backtests",
        ONE,
        &json!({"policy": stricter, "surprise": 1}),
    );
    assert!(r.status == 400 || r.status == 422, "{}", r.text());
    // The same job against the policy this server serves (the bundled CI
    // policy, threshold 80): the same three flips.
    let r = call(
        &server,
        "POST",
        "/v1/backtests",
        TWO,
        &json!({"policy": stricter, "against": "served", "since": "30d"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let job = finished(&server, TWO, r.json()["id"].as_str().unwrap());
    assert_eq!(job["report"]["against"], "ci-quality-gates");
    assert_eq!(job["report"]["changed"], 3, "{job:#}");
}

/// The bundled CI policy with one more gate that spins through its whole
/// CPU deadline: a backtest of it holds a worker for `deadline` per
/// decision.
fn spinning_candidate(deadline: &str) -> String {
    let text = std::fs::read_to_string(repo("policies/ci-quality-gates.yaml")).unwrap();
    let gate = "    gates:\n";
    let at = text.find(gate).expect("the CI policy has gates");
    let spin = format!(
        "    gates:\n      - name: spin\n        plugin: spin\n        deadline: {deadline}\n"
    );
    format!("{}{}{}", &text[..at], spin, &text[at + gate.len()..])
}

#[test]
fn backtest_jobs_never_starve_live_evaluations_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    write(
        &plugins,
        "spin.wasm",
        &crate::hostile::component_for("infinite-loop", &repo("wit")),
    );
    // Two workers, one of them the backtests' share; a live evaluation
    // that waits a second for a worker is refused (503). Two jobs whose
    // every evaluation holds a worker for 3 s of CPU would take both
    // workers without the share, and refuse live evaluations.
    let server = server(
        dir.path(),
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--workers",
            "2",
            "--backtest-workers",
            "1",
            "--request-timeout",
            "1s",
        ],
    );
    let t = now() - 86_400;
    for i in 0..6 {
        evaluate(
            &server,
            &ci("payments", &format!("1.{i}.0"), t + 60 * i, 85.0),
        );
    }
    let body = json!({"policy": spinning_candidate("3s")});
    let mut jobs = Vec::new();
    for token in [ONE, TWO] {
        let r = call(&server, "POST", "/v1/backtests", token, &body);
        assert_eq!(r.status, 202, "{}", r.text());
        jobs.push((token, r.json()["id"].as_str().unwrap().to_string()));
    }
    // A third open job of one token is refused.
    let r = call(&server, "POST", "/v1/backtests", ONE, &body);
    assert_eq!(r.status, 202, "{}", r.text());
    let third = r.json()["id"].as_str().unwrap().to_string();
    let r = call(&server, "POST", "/v1/backtests", ONE, &body);
    assert_eq!(r.status, 429, "{}", r.text());
    let r = call(
        &server,
        "DELETE",
        &format!("/v1/backtests/{third}"),
        ONE,
        &Value::Null,
    );
    assert_eq!(r.json()["status"], "cancelled");
    // Live evaluations while both jobs run: every one is answered.
    for i in 0..12 {
        let r = call(
            &server,
            "POST",
            "/v1/evaluate",
            TOKEN,
            &ci("cart", &format!("2.{i}.0"), now() - 5, 90.0),
        );
        assert_eq!(r.status, 200, "live evaluation {i}: {}", r.text());
    }
    // ... while the jobs were still at it.
    for (token, id) in &jobs {
        let path = format!("/v1/backtests/{id}");
        let job = call(&server, "GET", &path, token, &Value::Null).json();
        assert_eq!(job["status"], "running", "{job:#}");
        assert!(
            job["progress"]["done"].as_u64().unwrap() < 6,
            "the job finished before the live evaluations: {job:#}"
        );
        let r = call(&server, "DELETE", &path, token, &Value::Null);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "cancelled");
    }
}

/// 520 CI decisions of three services, every other one at 85 % coverage,
/// through a server on `store`; then a backtest at a 90 % threshold.
fn paged(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{TOKEN}\n").as_bytes());
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap(), "--store", store]);
    let t = now() - 30 * 86_400;
    for i in 0..520 {
        let service = ["a", "b", "c"][i % 3];
        let coverage = if i % 2 == 0 { 85.0 } else { 95.0 };
        evaluate(
            &server,
            &ci(service, &format!("1.{i}.0"), t + 60 * i as i64, coverage),
        );
    }
    let stricter = candidate(dir.path(), "stricter.yaml", 90);
    let report = backtest(&["--policy", &stricter, "--store", store]);
    assert_eq!(report["decisions"], 520, "{store}");
    assert_eq!(report["changed"], 260);
    let times: Vec<i64> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["taken_at"].as_i64().unwrap())
        .collect();
    assert_eq!(times.len(), 260);
    assert!(times.is_sorted(), "rows are oldest first across pages");
    assert_eq!(times[0], t);
    // A range bounds the count as much as the rows.
    let since = (t + 60 * 500).to_string();
    let report = backtest(&["--policy", &stricter, "--store", store, "--since", &since]);
    assert_eq!(report["decisions"], 20);
}

#[test]
fn a_backtest_reads_a_sqlite_log_oldest_first_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    paged(&dir.path().join("log.db").display().to_string());
}

#[test]
fn a_backtest_reads_a_postgres_log_oldest_first_a_page_at_a_time() {
    let Some(url) = crate::decision_log::postgres() else {
        return; // `postgres` reported the skip
    };
    paged(&url);
}
