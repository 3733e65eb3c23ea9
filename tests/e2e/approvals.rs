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

/// A server whose clock reads that Thursday; `None` (reported as a skip)
/// without libfaketime.
fn server(dir: &std::path::Path) -> Option<Server> {
    let tokens = write(
        dir,
        "tokens",
        format!(
            "{CI} evaluate read\n{ALICE} approve read as:alice group:release-managers\n{BOB} approve as:bob group:release-managers,sre\n{MALLORY} evaluate read as:mallory\n"
        )
        .as_bytes(),
    );
    // The server decides at its own clock: put it on that Thursday.
    Server::start_at(THURSDAY, &["--tokens-file", tokens.to_str().unwrap()])
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
    let Some(server) = server(dir.path()) else {
        return; // `server` reported the skip
    };

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
        "checkout 2.1.0: waiting for approval: approval 1 of 2 from release-managers, at most 1 day old"
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
    // By reference: an id and the digest of what was read, not a copy, so
    // long comments do not grow every decision that reads them.
    for read in d["approvals"].as_array().unwrap() {
        let keys: Vec<&str> = read
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["digest", "id"], "{read}");
        assert!(read["digest"].as_str().unwrap().starts_with("sha256:"));
    }

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
    let Some(server) = server(dir.path()) else {
        return; // `server` reported the skip
    };
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
        "checkout 2.1.0: waiting for approval: approval 1 of 2 from release-managers, at most 1 day old"
    );
}

/// One release holds at most 1,000 approvals: every evaluation reads them
/// all into its record, so a token cannot grow that without a bound.
#[test]
fn a_release_holds_a_bounded_number_of_approvals_and_an_approver_a_few() {
    let dir = tempfile::tempdir().unwrap();
    let token = |i: usize| format!("approver-{i:02}-token-0123456789");
    let lines: String = (0..21)
        .map(|i| {
            format!(
                "{} approve read as:user{i} group:release-managers\n",
                token(i)
            )
        })
        .collect();
    let tokens = write(dir.path(), "tokens", lines.as_bytes());
    let server = Server::start(&[
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--store",
        "memory",
    ]);
    for _ in 0..50 {
        assert_eq!(approve(&server, &token(0), None).status, 201);
    }
    let refused = approve(&server, &token(0), None);
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "too_many_approvals");
    assert!(
        refused.text().contains(
            "checkout 2.1.0 already has 50 approvals and attestations by user0, the most one approver on one release may hold"
        ),
        "{}",
        refused.text()
    );
    for i in 1..20 {
        for _ in 0..50 {
            assert_eq!(approve(&server, &token(i), None).status, 201);
        }
    }
    let refused = approve(&server, &token(20), None);
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains("checkout 2.1.0 already has 1000 approvals and attestations, the most one release may hold"),
        "{}",
        refused.text()
    );
    // Another release is not affected.
    let other = post(
        &server,
        &token(20),
        "/v1/approvals",
        &json!({"service": "checkout", "version": "2.1.1"}),
    );
    assert_eq!(other.status, 201);
}

/// The finding: 40 approvals posted at once at 990 stored made 1,029. The
/// cap is now counted in the inserting transaction, on both durable stores.
#[test]
fn concurrent_approvals_cannot_pass_the_cap_together() {
    let dir = tempfile::tempdir().unwrap();
    let token = |i: usize| format!("racer-{i:02}-token-0123456789ab");
    let lines: String = (0..40)
        .map(|i| format!("{} approve read as:racer{i}\n", token(i)))
        .collect();
    let tokens = write(dir.path(), "tokens", lines.as_bytes());
    let mut stores = vec![dir.path().join("log.db").display().to_string()];
    stores.extend(crate::decision_log::postgres());
    for store in stores {
        let server = Server::start(&["--tokens-file", tokens.to_str().unwrap(), "--store", &store]);
        // 990 approvals: 33 each from 30 racers.
        for i in 0..30 {
            for _ in 0..33 {
                assert_eq!(approve(&server, &token(i), None).status, 201);
            }
        }
        let created = std::thread::scope(|s| {
            let racers: Vec<_> = (0..40)
                .map(|i| {
                    let server = &server;
                    let token = token(i);
                    s.spawn(move || approve(server, &token, None).status)
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().unwrap())
                .filter(|status| *status == 201)
                .count()
        });
        assert_eq!(created, 10, "{store}: only room for 10 more");
        let auth = format!("Bearer {}", token(0));
        let listed = server.request(
            "GET",
            "/v1/approvals?service=checkout&version=2.1.0",
            &[("Authorization", auth.as_str())],
            b"",
        );
        assert_eq!(
            listed.json()["approvals"].as_array().unwrap().len(),
            1000,
            "{store}"
        );
    }
}

/// The finding: alice's own approval counted for a release whose `author`
/// was `ALICE`, `Alice` or absent. The comparison is trimmed and Unicode
/// case-folded, and `require_author: true` counts nobody for an anonymous
/// release.
#[test]
fn the_authors_own_approval_never_counts_however_the_author_is_spelt() {
    let home = tempfile::tempdir().unwrap();
    let Some(server) = server(home.path()) else {
        return; // `server` reported the skip
    };
    assert_eq!(approve(&server, ALICE, None).status, 201);
    assert_eq!(approve(&server, BOB, None).status, 201);
    for author in ["ALICE", "Alice", " alice ", "ａｌｉｃｅ"] {
        let body = json!({
            "policy": "scheduled-release",
            "stage": "go-no-go",
            "snapshot": {"service": "checkout", "version": "2.1.0", "taken_at": THURSDAY,
                         "attributes": {"author": author}, "metrics": []}
        });
        let d = post(&server, CI, "/v1/evaluate", &body).json();
        let gate = d["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "release-approval")
            .unwrap()
            .clone();
        assert_eq!(gate["verdict"], "inconclusive", "author {author:?}: {gate}");
        assert_eq!(
            gate["details"]["approval"], "bob",
            "author {author:?}: {gate}"
        );
        assert_eq!(gate["details"]["not counted"], "alice (the author)");
    }

    // A policy may require an author, so an anonymous release counts no one.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "strict.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: strict}\nstages:\n  - name: go\n    gates:\n      - name: approved\n        plugin: approval\n        key: true\n        with: { count: 1, require_author: true }\n",
    );
    let cases = write(
        dir.path(),
        "strict.test.yaml",
        b"policy: strict.yaml\ncases:\n  - name: an anonymous release counts no approval\n    snapshot: { service: s, version: '1', taken_at: 1764237600, metrics: [] }\n    approvals: [{ approver: alice }]\n    expect: { decision: hold, gates: { approved: inconclusive }, summary_contains: names no `author` }\n  - name: a named author lets another's approval count\n    snapshot: { service: s, version: '1', taken_at: 1764237600, attributes: { author: bob }, metrics: [] }\n    approvals: [{ approver: alice }]\n    expect: { decision: promote }\n  - name: the author's own approval never counts\n    snapshot: { service: s, version: '1', taken_at: 1764237600, attributes: { author: ALICE }, metrics: [] }\n    approvals: [{ approver: alice }]\n    expect: { decision: hold }\n",
    );
    let run = crate::support::tollgate(&["test", cases.to_str().unwrap()], "");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("3 passed, 0 failed"), "{}", run.stdout);
}

/// `tollgate approvals` lines its columns up, whatever the lengths of the
/// names, stages and groups in them.
#[test]
fn the_approvals_table_lines_up_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(
        dir.path(),
        "tokens",
        format!("{CI} evaluate read\n{ALICE} approve read as:alice group:release-managers\n{BOB} approve as:bob group:release-managers,sre\n")
            .as_bytes(),
    );
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    let url = format!("http://{}", server.addr);
    let run = |token: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("TOLLGATE_TOKEN", token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let release = [
        "--server",
        &url,
        "--service",
        "checkout",
        "--version",
        "2.1.0",
    ];
    for (token, extra) in [
        (ALICE, vec!["--comment", "CAB approved"]),
        (
            BOB,
            vec!["--stage", "go-no-go", "--item", "infrastructure-healthy"],
        ),
        (
            ALICE,
            vec!["--item", "communication-ready", "--comment", "sent"],
        ),
    ] {
        let mut args = vec!["approve"];
        args.extend(release);
        args.extend(extra);
        run(token, &args);
    }
    let mut args = vec!["approvals"];
    args.extend(release);
    let table = run(CI, &args);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header = lines[0];
    let starts: Vec<usize> = ["NAME", "STAGE", "BY (GROUPS)", "COMMENT"]
        .iter()
        .map(|h| header.find(h).unwrap())
        .collect();
    for row in &lines[1..] {
        let chars: Vec<char> = row.chars().collect();
        for &at in &starts {
            if at >= chars.len() {
                continue; // an empty last column
            }
            assert!(
                chars[at] != ' ' && chars[at - 1] == ' ' && chars[at - 2] == ' ',
                "a cell does not start under its header at {at}:\n{table}"
            );
        }
    }
    assert!(table.contains("bob (release-managers, sre)"), "{table}");
}
