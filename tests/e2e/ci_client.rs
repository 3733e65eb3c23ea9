//! `tollgate eval --server URL`: the same command lines a pipeline runs
//! locally, answered by a running server with the same output and exit
//! codes.

use std::process::Command;

use crate::support::{Server, repo, write};

const TOKEN: &str = "ci-client-token-0123456789";

fn eval(args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("eval")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("TOLLGATE_TOKEN");
    if let Some(t) = token {
        cmd.env("TOLLGATE_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_pipeline_gets_the_same_decision_locally_and_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(
        dir.path(),
        "tokens",
        format!("{TOKEN} evaluate:canary,ci-quality-gates\n").as_bytes(),
    );
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    let url = format!("http://{}", server.addr);
    let policy = repo("policies/canary.yaml");
    for (fixture, code) in [("canary-steady.json", 0), ("canary-error-spike.json", 1)] {
        let snap = repo(&format!("tests/fixtures/{fixture}"));
        let common = [
            "--policy",
            policy.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--stage",
            "initial-canary",
            "--elapsed",
            "20m",
            "--format",
            "json",
        ];
        let (local_code, local, _) = eval(&common, None);
        let mut remote_args = common.to_vec();
        remote_args.extend(["--server", &url]);
        let (remote_code, remote, err) = eval(&remote_args, Some(TOKEN));
        assert_eq!((local_code, remote_code), (code, code), "{fixture}: {err}");
        let (l, r): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&local).unwrap(),
            serde_json::from_str(&remote).unwrap(),
        );
        for key in [
            "decision",
            "summary",
            "stage_result",
            "score",
            "policy",
            "stage",
        ] {
            assert_eq!(l[key], r[key], "{fixture}: `{key}`");
        }
        assert!(
            r["decision_id"].is_string(),
            "the server gave the decision an id"
        );
    }
    // The table and JUnit come out the same way too.
    let snap = repo("tests/fixtures/canary-error-spike.json");
    let args = [
        "--policy",
        "canary",
        "--snapshot",
        snap.to_str().unwrap(),
        "--stage",
        "initial-canary",
        "--elapsed",
        "20m",
        "--format",
        "junit",
        "--server",
        &url,
    ];
    let (code, junit, err) = eval(&args, Some(TOKEN));
    assert_eq!(code, 1, "{err}");
    assert!(
        junit.contains("<testsuite name=\"canary/initial-canary\""),
        "{junit}"
    );
}

#[test]
fn server_errors_and_network_errors_exit_2_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{TOKEN}\n").as_bytes());
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    let url = format!("http://{}", server.addr);
    let snap = repo("tests/fixtures/canary-steady.json");
    let args = [
        "--policy",
        "canary",
        "--snapshot",
        snap.to_str().unwrap(),
        "--server",
        &url,
    ];
    let (code, _, err) = eval(&args, None);
    assert_eq!(code, 2);
    assert!(err.contains("401") && err.contains(&url), "{err}");
    // Without a token, the error says where the token goes.
    assert!(
        err.contains("no token was sent: set `TOLLGATE_TOKEN`"),
        "{err}"
    );
    let (_, _, err) = eval(&args, Some("not-a-token-0123456789"));
    assert!(
        err.contains("the server does not know the token in `TOLLGATE_TOKEN`"),
        "{err}"
    );
    let (code, _, err) = eval(
        &[
            "--policy",
            "nope",
            "--snapshot",
            snap.to_str().unwrap(),
            "--server",
            &url,
        ],
        Some(TOKEN),
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown policy `nope`"), "{err}");
    // The server names its policies, and the closest to a typo, itself.
    assert!(
        err.contains("; policies: canary, ci-pipeline, ci-quality-gates"),
        "{err}"
    );
    let (code, _, err) = eval(
        &[
            "--policy",
            "canry",
            "--snapshot",
            snap.to_str().unwrap(),
            "--server",
            &url,
        ],
        Some(TOKEN),
    );
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `canary`?"), "{err}");
    let (code, _, err) = eval(
        &[
            "--policy",
            "canary",
            "--snapshot",
            snap.to_str().unwrap(),
            "--server",
            "http://127.0.0.1:1",
        ],
        Some(TOKEN),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot reach tollgate at http://127.0.0.1:1/v1/evaluate"),
        "{err}"
    );
}
