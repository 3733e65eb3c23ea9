//! Running the binary and building test inputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The gate called `name` in a JSON decision.
    pub fn gate(&self, name: &str) -> Value {
        let d = self.json();
        d["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("no gate `{name}` in {d}"))
            .clone()
    }
}

/// Runs `tollgate` with `args`, feeding `stdin`.
pub fn tollgate(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).ok();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `tollgate eval --format json` of `policy` over `snapshot`, given on stdin.
pub fn eval(policy: &Path, snapshot: &Value, stage: Option<&str>) -> Run {
    let policy = policy.to_str().unwrap();
    let mut args = vec![
        "eval",
        "--policy",
        policy,
        "--snapshot",
        "-",
        "--format",
        "json",
    ];
    if let Some(s) = stage {
        args.extend(["--stage", s]);
    }
    tollgate(&args, &snapshot.to_string())
}

pub const TAKEN_AT: i64 = 1_764_237_600;

/// A snapshot holding single-value metrics.
pub fn values(metrics: &[(&str, f64)]) -> Value {
    json!({
        "service": "checkout",
        "version": "2.1.0",
        "taken_at": TAKEN_AT,
        "metrics": metrics.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
    })
}

/// A snapshot holding one series per metric: a point a minute for the last
/// `minutes` minutes, every point with the same value.
pub fn steady(metrics: &[(&str, f64)], minutes: i64) -> Value {
    json!({
        "service": "checkout",
        "version": "2.1.0",
        "taken_at": TAKEN_AT,
        "metrics": metrics.iter().map(|(n, v)| json!({
            "name": n,
            "labels": {"track": "canary"},
            "points": (0..minutes).map(|i| json!([TAKEN_AT - 60 * i, v])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
