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

/// `tollgate eval --format json` of `policy` over `snapshot`, given on
/// stdin, with the stage clock left to the caller (`--schedule caller`):
/// these tests are about gates and triggers, not stage durations.
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
        "--schedule",
        "caller",
    ];
    if let Some(s) = stage {
        args.extend(["--stage", s]);
    }
    tollgate(&args, &snapshot.to_string())
}

/// `tollgate eval` of the `policy` file over the `snapshot` file, with
/// any `extra` arguments (a format, a stage).
pub fn eval_files(policy: &Path, snapshot: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "eval",
        "--policy",
        policy.to_str().unwrap(),
        "--snapshot",
        snapshot.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tollgate(&args, "")
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

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `tool --version` runs.
pub fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `tool` is installed; when it is not, the test is reported as
/// skipped by name (see [`skip`]).
pub fn need(tool: &str) -> bool {
    installed(tool) || {
        skip(&format!("no `{tool}`"));
        false
    }
}

/// Reports the running test as skipped because `why` (a missing tool):
/// `SKIPPED <test> (<why>)` goes to stderr past the harness's capture, so a
/// green `cargo test` still says what it did not check, and a line is added
/// to the file named by `TOLLGATE_SKIP_LOG` for the run's count. Under
/// `TOLLGATE_REQUIRE_ALL=1` (the README's test command and CI) the test
/// fails instead: a check that did not run is not a pass.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("(unnamed test)");
    let line = format!("SKIPPED {test} ({why})");
    // Written to the real stderr: `eprintln!` would be captured and hidden
    // for a test that passes.
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(log) = std::env::var_os("TOLLGATE_SKIP_LOG") {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "{line}");
        }
    }
    if std::env::var("TOLLGATE_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{line}: TOLLGATE_REQUIRE_ALL=1 requires every tool (scripts/test installs them)");
    }
}

/// The environment that starts a process with its real-time clock at
/// `unix` seconds, running on from there (libfaketime, Debian's
/// `faketime`): how a test puts a whole server on a given day, since the
/// server judges windows, freezes and approval ages at its own clock.
/// Monotonic clocks and CPU-time clocks stay real. `None` (the test is
/// reported skipped) without libfaketime.
pub fn clock_at(unix: i64) -> Option<Vec<(&'static str, String)>> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let Some(lib) = lib else {
        skip("no libfaketime (Debian `faketime`)");
        return None;
    };
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    let start = format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Some(vec![
        ("LD_PRELOAD", lib.to_string()),
        ("FAKETIME", format!("@{start}")),
        ("TZ", "UTC".to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ("FAKETIME_DONT_RESET", "1".to_string()),
    ])
}

/// The cargo target directory every plugin project the tests build shares,
/// so the SDK compiles once.
pub fn plugin_projects_target() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-projects")
}

/// A compiled-plugin cache shared by the tests, so each plugin compiles once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // The server may answer (413) before reading a large body; ignore a reset.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    }) {
        body = dechunk(&body);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// A running `tollgate serve`, killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub addr: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// The decision log's directory, unless the test chose `--store`.
    pub _store_dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the binary on a free loopback port and waits until it listens.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// [`Server::start`] with the real-time clock at `unix` seconds (see
    /// [`clock_at`]); `None` when that cannot be done, reported as a skip.
    pub fn start_at(unix: i64, args: &[&str]) -> Option<Server> {
        let env = clock_at(unix)?;
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Some(Self::start_with_env(args, &env))
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let store_dir = (!args.contains(&"--store")).then(|| tempfile::tempdir().unwrap());
        let store: Vec<String> = store_dir
            .iter()
            .flat_map(|d| {
                [
                    "--store".to_string(),
                    d.path().join("log.db").display().to_string(),
                ]
            })
            .collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("serve")
            .args(["--addr", "127.0.0.1:0"])
            .args(&store)
            .args(args)
            .env("TOLLGATE_CACHE_DIR", cache_dir())
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line
                    .strip_prefix("tollgate listening on http://")
                    .or_else(|| line.strip_prefix("tollgate listening on https://"))
                {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        Server {
            child,
            addr,
            stderr: log,
            _store_dir: store_dir,
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        http(&self.addr, method, path, headers, body).unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The problems of `value` against `schema`, for the subset of JSON Schema
/// this project's schemas and OpenAPI document use; `root` resolves
/// `#/$defs/…` and `#/components/schemas/…` references.
pub fn schema_errors(root: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    errors(root, schema, value, "$", &mut out);
    out
}

fn errors(root: &Value, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if schema == &Value::Bool(true) {
        return;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let target = match r.strip_prefix("#/$defs/") {
            Some(name) => &root["$defs"][name],
            None => &root["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        };
        return errors(root, target, value, path, out);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let passing = options
                .iter()
                .filter(|o| {
                    let mut e = Vec::new();
                    errors(root, o, value, path, &mut e);
                    e.is_empty()
                })
                .count();
            let ok = if key == "oneOf" {
                passing == 1
            } else {
                passing >= 1
            };
            if !ok {
                out.push(format!("{path}: {passing} of {key} match {value}"));
            }
        }
    }
    let type_ok = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    };
    match &schema["type"] {
        Value::String(t) if !type_ok(t) => out.push(format!("{path}: expected {t}, got {value}")),
        Value::Array(ts) if !ts.iter().any(|t| type_ok(t.as_str().unwrap_or(""))) => {
            out.push(format!("{path}: expected {ts:?}, got {value}"));
        }
        _ => {}
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        out.push(format!("{path}: {value} not in {options:?}"));
    }
    if let (Some(min), Some(v)) = (schema["minimum"].as_f64(), value.as_f64())
        && v < min
    {
        out.push(format!("{path}: {v} < {min}"));
    }
    if let (Some(max), Some(v)) = (schema["maximum"].as_f64(), value.as_f64())
        && v > max
    {
        out.push(format!("{path}: {v} > {max}"));
    }
    if let Some(obj) = value.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap_or("")) {
                out.push(format!("{path}: missing `{r}`"));
            }
        }
        for (k, v) in obj {
            match schema["properties"].get(k) {
                Some(s) => errors(root, s, v, &format!("{path}.{k}"), out),
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => out.push(format!("{path}: unexpected `{k}`")),
                    s @ Value::Object(_) => errors(root, s, v, &format!("{path}.{k}"), out),
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(n) = schema["minItems"].as_u64()
            && (items.len() as u64) < n
        {
            out.push(format!("{path}: fewer than {n} items"));
        }
        if let Some(n) = schema["maxItems"].as_u64()
            && (items.len() as u64) > n
        {
            out.push(format!("{path}: more than {n} items"));
        }
        let prefix = schema["prefixItems"].as_array();
        for (i, v) in items.iter().enumerate() {
            let item_schema = prefix
                .and_then(|p| p.get(i))
                .or_else(|| schema.get("items"));
            if let Some(s) = item_schema {
                errors(root, s, v, &format!("{path}[{i}]"), out);
            }
        }
    }
}
