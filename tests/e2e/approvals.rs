//! Approvals and the go/no-go checklist through a real server: recorded as
//! the token's holder, stored, judged by the `approval` and `checklist`
//! gates of the bundled scheduled-release policy, kept in the record and
//! replayed exactly.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Server, write};

const CI: &str = "ci-token-0123456789abcdef";
const ALICE: &str = "alice-token-0123456789ab";
const BOB: &str = "bob-token-0123456789abcd";
const MALLORY: &str = "mallory-token-012345678";

/// Thursday 2025-11-27 10:00 UTC: inside the policy's release window.
const THURSDAY: i64 = 1_764_237_600;

fn server(dir: &std::path::Path) -> Server {
    let tokens = write(
        dir,
        "tokens",
        format!(
            "{CI} evaluate read\n{ALICE} approve read as:alice group:release-managers\n{BOB} approve as:bob group:release-managers,sre\n{MALLORY} evaluate read as:mallory\n"
        )
        .as_bytes(),
    );
    Server::start(&["--tokens-file", tokens.to_str().unwrap()])
}

fn post(server: &Server, token: &str, path: &str, body: &Value) -> crate::support::HttpResponse {
    let auth = format!("Bearer {token}");
    server.request(
        "POST",
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn go_no_go(server: &Server) -> Value {
    let body = json!({
        "policy": "scheduled-release",
        "stage": "go-no-go",
        "snapshot": {"service": "checkout", "version": "2.1.0", "taken_at": THURSDAY,
                     "attributes": {"author": "erin"}, "metrics": []}
    });
    let r = post(server, CI, "/v1/evaluate", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn approve(server: &Server, token: &str, item: Option<&str>) -> crate::support::HttpResponse {
    let mut body = json!({"service": "checkout", "version": "2.1.0", "comment": "CAB"});
    if let Some(i) = item {
        body["item"] = json!(i);
    }
    post(server, token, "/v1/approvals", &body)
}

#[test]
fn approvals_are_the_token_holders_and_gate_the_release_until_complete() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());

    // Only an approve token may record, and no body names the approver.
    assert_eq!(approve(&server, MALLORY, None).status, 403);
    let forged = post(
        &server,
        ALICE,
        "/v1/approvals",
        &json!({"service": "checkout", "version": "2.1.0", "approver": "bob"}),
    );
    assert_eq!(forged.status, 422, "{}", forged.text());
    assert!(forged.text().contains("approver"), "{}", forged.text());

    let first = approve(&server, ALICE, None);
    assert_eq!(first.status, 201, "{}", first.text());
    let a = first.json();
    assert_eq!(a["approver"], "alice");
    assert_eq!(a["groups"], json!(["release-managers"]));
    assert_eq!(a["name"], "approval");

    let d = go_no_go(&server);
    assert_eq!(d["decision"], "hold", "{d}");
    let gate = |d: &Value, name: &str| {
        d["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap()
            .clone()
    };
    let approval = gate(&d, "release-approval");
    assert_eq!(approval["verdict"], "inconclusive");
    assert_eq!(
        approval["reason"],
        "checkout 2.1.0: waiting for approval: approval 1 of 2 from release-managers, at most 1day old"
    );

    assert_eq!(approve(&server, BOB, None).status, 201);
    for item in [
        "infrastructure-healthy",
        "team-available",
        "rollback-tested",
        "monitoring-ready",
        "communication-ready",
    ] {
        assert_eq!(approve(&server, BOB, Some(item)).status, 201);
    }
    let d = go_no_go(&server);
    assert_eq!(d["decision"], "promote", "{d}");
    assert_eq!(
        gate(&d, "release-approval")["details"]["approval"],
        "alice, bob"
    );
    assert_eq!(
        d["approvals"].as_array().unwrap().len(),
        7,
        "the record keeps what it judged"
    );

    // A later approval changes nothing in the replay of this decision.
    assert_eq!(approve(&server, ALICE, Some("team-available")).status, 201);
    let id = d["decision_id"].as_str().unwrap();
    let auth = format!("Bearer {CI}");
    let replay = server.request(
        "POST",
        &format!("/v1/decisions/{id}/replay"),
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!(replay.status, 200, "{}", replay.text());
    assert_eq!(replay.json()["identical"], true, "{}", replay.text());

    let listed = server.request(
        "GET",
        "/v1/approvals?service=checkout&version=2.1.0",
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()["approvals"].as_array().unwrap().len(), 8);
}

#[test]
fn the_cli_records_and_lists_approvals_through_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = format!("http://{}", server.addr);
    let run = |token: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("TOLLGATE_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let release = [
        "--server",
        &url,
        "--service",
        "checkout",
        "--version",
        "2.1.0",
    ];
    let mut args = vec!["approve"];
    args.extend(release);
    args.extend(["--stage", "go-no-go", "--comment", "CAB 2025-11-27"]);
    let (code, out, err) = run(ALICE, &args);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("recorded approval `approval` of checkout 2.1.0 for stage `go-no-go` by alice [release-managers] ("),
        "{out}"
    );
    let (code, _, err) = run(MALLORY, &args);
    assert_eq!(code, 2);
    assert!(
        err.contains("403") && err.contains("may not approve"),
        "{err}"
    );
    // `audit` says what the approval gate is, rather than only "not found".
    let audit = crate::support::tollgate(&["audit", "approval"], "");
    assert!(
        audit
            .stdout
            .contains("`approval` is a gate the host evaluates from recorded approvals"),
        "{}",
        audit.stdout
    );
    let mut args = vec!["approvals"];
    args.extend(release);
    let (code, out, err) = run(CI, &args);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("approval")
            && out.contains("go-no-go")
            && out.contains("alice (release-managers)")
            && out.contains("CAB 2025-11-27"),
        "{out}"
    );
}

/// Two replicas on one PostgreSQL: an approval recorded on one is judged by
/// the other, and a server restarted on SQLite still has its approvals.
#[test]
fn approvals_are_durable_and_shared_by_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let tokens = write(
        dir.path(),
        "tokens",
        format!("{CI} evaluate read\n{ALICE} approve read as:alice group:release-managers\n")
            .as_bytes(),
    );
    let listed = |server: &Server| {
        let auth = format!("Bearer {CI}");
        let r = server.request(
            "GET",
            "/v1/approvals?service=checkout&version=2.1.0",
            &[("Authorization", auth.as_str())],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["approvals"].as_array().unwrap().len()
    };
    let args = |store: &str| {
        vec![
            "--tokens-file".to_string(),
            tokens.display().to_string(),
            "--store".into(),
            store.to_string(),
        ]
    };
    let sqlite = args(db.to_str().unwrap());
    let sqlite: Vec<&str> = sqlite.iter().map(String::as_str).collect();
    {
        let server = Server::start(&sqlite);
        assert_eq!(approve(&server, ALICE, None).status, 201);
    }
    let server = Server::start(&sqlite);
    assert_eq!(listed(&server), 1, "kept across a restart");

    let Some(pg) = crate::decision_log::postgres() else {
        return;
    };
    let pg = args(&pg);
    let pg: Vec<&str> = pg.iter().map(String::as_str).collect();
    let (one, two) = (Server::start(&pg), Server::start(&pg));
    assert_eq!(approve(&one, ALICE, None).status, 201);
    assert_eq!(listed(&two), 1);
    let d = go_no_go(&two);
    assert_eq!(
        d["gates"][0]["reason"],
        "checkout 2.1.0: waiting for approval: approval 1 of 2 from release-managers, at most 1day old"
    );
}

/// One release holds at most 1,000 approvals: every evaluation reads them
/// all into its record, so a token cannot grow that without a bound.
#[test]
fn a_release_holds_a_bounded_number_of_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(
        dir.path(),
        "tokens",
        format!("{ALICE} approve read as:alice group:release-managers\n").as_bytes(),
    );
    let server = Server::start(&[
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--store",
        "memory",
    ]);
    for _ in 0..1000 {
        assert_eq!(approve(&server, ALICE, None).status, 201);
    }
    let refused = approve(&server, ALICE, None);
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "too_many_approvals");
    assert!(
        refused
            .text()
            .contains("checkout 2.1.0 already has 1000 approvals and attestations"),
        "{}",
        refused.text()
    );
    // Another release is not affected.
    let other = post(
        &server,
        ALICE,
        "/v1/approvals",
        &json!({"service": "checkout", "version": "2.1.1"}),
    );
    assert_eq!(other.status, 201);
}
