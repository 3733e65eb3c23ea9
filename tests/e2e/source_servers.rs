//! Real telemetry backends for the first-party source plugins, each on a
//! free loopback port with all its state in a temporary directory, loaded
//! with the demo telemetry of `scripts/prometheus-demo.py` in the
//! backend's own form:
//!
//! | backend | binary | data |
//! |---|---|---|
//! | InfluxDB 1.x | `influxd` (Debian's `influxdb`) | measurement `requests` in database `telemetry`: fields `error_rate`, `p95_ms`, `conversion_rate` (already computed), tags `service` and `track`, written with `/write` |
//! | VictoriaMetrics | `victoria-metrics` (Debian's) | the very counters and histogram Prometheus gets, through `/api/v1/import/prometheus`, so `policies/canary.yaml`'s PromQL runs unchanged |
//! | Graphite | `carbon-cache` and graphite-web (Debian's `graphite-carbon`, `graphite-web`) | dotted paths `demo.<service>.<track>.<error_rate, p95_ms or conversion_rate>` sent to carbon's plaintext port, stored at 15 s |
//! | Grafana Loki | `loki` (not Debian's `loki`, an unrelated genetics program) | log lines pushed to `/loki/api/v1/push` under tenant [`LOKI_TENANT`]: a line per request (`job="demo-http"`, `status`, `level`, `duration_ms=` in the line) and per checkout session and conversion (`job="demo-checkout"`, `event`) |
//!
//! The services are the demo's: `checkout` healthy, `payments-spike` with
//! 5% errors in the canary's last 10 minutes, `search-slow` with a canary
//! p95 of about 2.5 s, `cart-drop` with canary conversion 20% below the
//! primary's, and `ghost` with no data; tracks `canary` and `primary`; 40
//! minutes of 15-second points ending now. The data goes stale within
//! minutes (queries look back from now), so a test loads and queries at
//! once.
//!
//! No backend phones home: InfluxDB's usage reporting is off
//! (`reporting-enabled = false`, Debian's name for upstream's
//! `reporting-disabled`), Loki's (from 2.5) too (`analytics:
//! reporting_enabled: false`), and VictoriaMetrics has none.
//!
//! A missing binary is reported as a skip: by [`crate::support::need`], or
//! with the same words through [`crate::support::skip`] where `TOOL
//! --version` fails on an installed tool (`influxd` takes `influxd
//! version`, `carbon-cache` has no version flag). A `loki` that is not
//! Grafana Loki is a skip that says so: Debian's `loki` package is
//! "MCMC linkage analysis on general pedigrees", and Grafana Loki is not
//! packaged by Debian.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::{free_port, http, repo, write};

/// Seconds between two demo points.
pub const STEP: i64 = 15;
/// How far back the demo data reaches.
pub const MINUTES: i64 = 40;
/// The services with data; `ghost` has none.
pub const SERVICES: [&str; 4] = ["checkout", "payments-spike", "search-slow", "cart-drop"];
pub const TRACKS: [&str; 2] = ["canary", "primary"];
/// The InfluxDB database the demo is written to.
pub const INFLUX_DATABASE: &str = "telemetry";
/// The Loki tenant the demo is pushed as (Loki runs with `auth_enabled`).
pub const LOKI_TENANT: &str = "tollgate-demo";

/// Upper bounds of the latency histogram's buckets, seconds.
const BUCKETS: [f64; 7] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, f64::INFINITY];
/// Cumulative shares of requests under each bound: a fast service.
const FAST: [f64; 7] = [0.5, 0.9, 0.97, 0.995, 0.999, 1.0, 1.0];
/// A slow one (`search-slow`'s canary).
const SLOW: [f64; 7] = [0.01, 0.02, 0.05, 0.1, 0.3, 0.97, 1.0];
/// A healthy service's error share, as in the demo script.
const HEALTHY_ERRORS: f64 = 0.00005;

/// What one service track does at one time.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub error_share: f64,
    pub latency: &'static [f64; 7],
    pub conversion: f64,
}

/// The demo's behaviour of `service` on `track` at `t`, for data ending at `end`.
pub fn profile(service: &str, track: &str, t: i64, end: i64) -> Profile {
    let canary = track == "canary";
    Profile {
        error_share: if canary && service == "payments-spike" && t > end - 600 {
            0.05
        } else {
            HEALTHY_ERRORS
        },
        latency: if canary && service == "search-slow" {
            &SLOW
        } else {
            &FAST
        },
        conversion: if canary && service == "cart-drop" {
            0.24
        } else {
            0.3
        },
    }
}

/// The `q` quantile (seconds) of a latency profile, interpolated within
/// its bucket as PromQL's `histogram_quantile` does; the +Inf bucket
/// answers its lower bound's double.
fn quantile(cumulative: &[f64; 7], q: f64) -> f64 {
    let mut below = 0.0;
    let mut lower = 0.0;
    for (i, share) in cumulative.iter().enumerate() {
        if *share >= q {
            let upper = if BUCKETS[i].is_finite() {
                BUCKETS[i]
            } else {
                lower * 2.0
            };
            let width = share - below;
            let into = if width > 0.0 {
                (q - below) / width
            } else {
                1.0
            };
            return lower + (upper - lower) * into;
        }
        below = *share;
        lower = BUCKETS[i];
    }
    lower
}

/// The demo's times: 40 minutes of 15-second points ending at `end`.
pub fn times(end: i64) -> Vec<i64> {
    (0..=MINUTES * 60 / STEP)
        .map(|i| end - MINUTES * 60 + i * STEP)
        .collect()
}

/// Now, rounded down to a step: where the demo data ends.
pub fn demo_end() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now - now % STEP
}

/// A backend process, killed when dropped.
pub struct Backend {
    pub url: String,
    /// Where the demo data ends (unix seconds).
    pub end: i64,
    /// The server's process; none for one served in this process.
    child: Option<Child>,
    /// Processes the backend needs besides the one serving `url`
    /// (graphite-web's carbon-cache), stopped with it.
    helpers: Vec<Child>,
    log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Backend {
    /// `host:port`, for [`crate::support::http`].
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// What the process wrote.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request to the backend, answered.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> crate::support::HttpResponse {
        http(self.addr(), method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        for child in self.child.iter_mut().chain(&mut self.helpers) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `tool args` runs and succeeds.
fn runs(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `program` with `args` inside `dir` (its working directory, so
/// any relative path it writes stays there), logging to `dir/name.log`.
fn spawn(program: &str, args: &[String], dir: tempfile::TempDir, port: u16) -> Backend {
    let (child, log) = start_in(dir.path(), program, args, &[]);
    Backend {
        url: format!("http://127.0.0.1:{port}"),
        end: demo_end(),
        child: Some(child),
        helpers: Vec::new(),
        log,
        dir,
    }
}

/// Starts `program` in `dir` with `env` added, its output in
/// `dir/<program name>.log`.
fn start_in(
    dir: &Path,
    program: &str,
    args: &[String],
    env: &[(&str, String)],
) -> (Child, PathBuf) {
    let name = Path::new(program).file_name().unwrap().to_string_lossy();
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    (child, log)
}

/// Waits until `GET path` answers `status`, failing with the log when the
/// process exits or a minute passes.
fn wait_ready(backend: &mut Backend, path: &str, status: u16) {
    let started = Instant::now();
    loop {
        if let Ok(r) = http(backend.addr(), "GET", path, &[], b"")
            && r.status == status
        {
            return;
        }
        if let Some(child) = backend.child.as_mut()
            && let Ok(Some(exit)) = child.try_wait()
        {
            panic!("{} exited ({exit}):\n{}", backend.url, backend.log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} was not ready within a minute:\n{}",
            backend.url,
            backend.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(what: &str, r: &crate::support::HttpResponse, backend: &Backend) {
    assert!(
        (200..300).contains(&r.status),
        "{what}: HTTP {} {}\n{}",
        r.status,
        r.text(),
        backend.log()
    );
}

// ---------------------------------------------------------------- InfluxDB

/// InfluxDB 1.x (`influxd`) holding the demo in `telemetry`.`requests`.
pub fn influxdb() -> Option<Backend> {
    // `influxd --version` fails (it takes `influxd version`), so
    // `support::need` would call an installed InfluxDB missing.
    if !runs("influxd", &["version"]) {
        crate::support::skip("no `influxd`");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, rpc) = (free_port(), free_port());
    let root = dir.path().display().to_string();
    let config = format!(
        r#"reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  pprof-enabled = false
[continuous_queries]
  enabled = false
"#
    );
    let config = write(dir.path(), "influxdb.conf", config.as_bytes());
    let args = vec![
        "run".to_string(),
        "-config".to_string(),
        config.display().to_string(),
    ];
    let mut backend = spawn("influxd", &args, dir, port);
    wait_ready(&mut backend, "/ping", 204);
    let create = backend.request(
        "POST",
        &format!("/query?q=CREATE+DATABASE+{INFLUX_DATABASE}"),
        &[],
        b"",
    );
    check("CREATE DATABASE", &create, &backend);
    let written = backend.request(
        "POST",
        &format!("/write?db={INFLUX_DATABASE}&precision=s"),
        &[("content-type", "text/plain")],
        influx_lines(backend.end).as_bytes(),
    );
    check("/write", &written, &backend);
    Some(backend)
}

/// The demo as InfluxDB line protocol: a point per service, track and time.
pub fn influx_lines(end: i64) -> String {
    let mut out = String::new();
    for t in times(end) {
        for service in SERVICES {
            for track in TRACKS {
                let p = profile(service, track, t, end);
                out.push_str(&format!(
                    "requests,service={service},track={track} error_rate={},p95_ms={},conversion_rate={} {t}\n",
                    p.error_share,
                    1000.0 * quantile(p.latency, 0.95),
                    p.conversion
                ));
            }
        }
    }
    out
}

// --------------------------------------------------------- VictoriaMetrics

/// VictoriaMetrics holding the counters Prometheus gets from the demo.
pub fn victoria_metrics() -> Option<Backend> {
    if !crate::support::need("victoria-metrics") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let args = vec![
        format!("-storageDataPath={}", data.display()),
        format!("-httpListenAddr=127.0.0.1:{port}"),
        // Answer the newest points as Prometheus does: by default the
        // last minute is held back as possibly incomplete.
        "-search.latencyOffset=0s".to_string(),
        "-search.disableCache".to_string(),
        "-loggerLevel=WARN".to_string(),
    ];
    let mut backend = spawn("victoria-metrics", &args, dir, port);
    wait_ready(&mut backend, "/health", 200);
    let text = prometheus_text(backend.dir.path(), backend.end);
    let imported = backend.request(
        "POST",
        "/api/v1/import/prometheus",
        &[("content-type", "text/plain")],
        text.as_bytes(),
    );
    check("/api/v1/import/prometheus", &imported, &backend);
    // Make the imported samples searchable now, not within a second.
    let flushed = backend.request("GET", "/internal/force_flush", &[], b"");
    check("/internal/force_flush", &flushed, &backend);
    Some(backend)
}

/// `scripts/prometheus-demo.py`'s OpenMetrics ending at `end`, as the
/// Prometheus text format VictoriaMetrics imports: timestamps in
/// milliseconds, no `# EOF`.
pub fn prometheus_text(dir: &Path, end: i64) -> String {
    let file = dir.join("demo.om");
    let status = Command::new("python3")
        .arg(repo("scripts/prometheus-demo.py"))
        .arg("--out")
        .arg(&file)
        .arg("--end")
        .arg(end.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let mut out = String::new();
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (sample, seconds) = line.rsplit_once(' ').unwrap();
        let seconds: i64 = seconds.parse().unwrap();
        out.push_str(&format!("{sample} {}\n", seconds * 1000));
    }
    out
}

// ---------------------------------------------------------------- Graphite

/// Debian's Python, which has graphite-web's Django (a `python3` earlier
/// on the path may be another one).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// graphite-web 1.1 over carbon-cache (Debian's `graphite-web` and
/// `graphite-carbon`), holding the demo as dotted paths
/// `demo.<service>.<track>.<error_rate|p95_ms|conversion_rate>` at a 15 s
/// resolution. Django's development server serves graphite-web: Debian
/// ships no other server for it without Apache. Tags are off (carbon would
/// post them to a graphite-web at port 80 otherwise).
pub fn graphite() -> Option<Backend> {
    if !runs("carbon-cache", &["--help"]) {
        crate::support::skip("no `carbon-cache` (Debian `graphite-carbon`)");
        return None;
    }
    if !runs(DEBIAN_PYTHON, &["-c", "import graphite.settings, django"]) {
        crate::support::skip("no graphite-web for /usr/bin/python3 (Debian `graphite-web`)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let (web_port, line_port, pickle_port, cache_port) =
        (free_port(), free_port(), free_port(), free_port());
    for sub in ["conf", "storage/whisper", "log", "run", "web"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    write(
        &dir.path().join("conf"),
        "carbon.conf",
        format!(
            "[cache]\nSTORAGE_DIR = {root}/storage/\nLOCAL_DATA_DIR = {root}/storage/whisper/\nWHITELISTS_DIR = {root}/storage/lists/\nCONF_DIR = {root}/conf/\nLOG_DIR = {root}/log/\nPID_DIR = {root}/run/\nDATABASE = whisper\nENABLE_LOGROTATION = False\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = 5000\nMAX_CREATES_PER_MINUTE = inf\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line_port}\nENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle_port}\nCACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {cache_port}\nENABLE_TAGS = False\nCARBON_METRIC_INTERVAL = 0\n"
        )
        .as_bytes(),
    );
    write(
        &dir.path().join("conf"),
        "storage-schemas.conf",
        b"[demo]\npattern = .*\nretentions = 15s:1d\n",
    );
    write(
        &dir.path().join("web"),
        "tollgate_graphite_settings.py",
        format!(
            "SECRET_KEY = 'tollgate-test-only'\nSTORAGE_DIR = '{root}/storage'\nWHISPER_DIR = '{root}/storage/whisper'\nLOG_DIR = '{root}/log'\nINDEX_FILE = '{root}/storage/index'\nCONF_DIR = '{root}/web'\nCARBONLINK_HOSTS = ['127.0.0.1:{cache_port}']\nDATABASES = {{'default': {{'NAME': '{root}/storage/graphite.db', 'ENGINE': 'django.db.backends.sqlite3'}}}}\nLOG_ROTATION = False\nDEFAULT_XFILES_FACTOR = 0\nFUNCTION_PLUGINS = []\n"
        )
        .as_bytes(),
    );
    let env = [
        ("PYTHONPATH", format!("{root}/web")),
        (
            "GRAPHITE_SETTINGS_MODULE",
            "tollgate_graphite_settings".to_string(),
        ),
        ("DJANGO_SETTINGS_MODULE", "graphite.settings".to_string()),
        // No bytecode caches beside Debian's modules: nothing is written
        // outside the temporary directory.
        ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
    ];
    let migrate = Command::new(DEBIAN_PYTHON)
        .args(["-m", "django", "migrate", "--run-syncdb"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "graphite-web's database: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let carbon_args = vec![
        format!("--config={root}/conf/carbon.conf"),
        format!("--pidfile={root}/run/carbon-cache.pid"),
        format!("--logdir={root}/log"),
        "--nodaemon".to_string(),
        "start".to_string(),
    ];
    let (carbon, _) = start_in(dir.path(), "carbon-cache", &carbon_args, &[]);
    let web_args = ["-m", "django", "runserver", "--noreload"]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("127.0.0.1:{web_port}")])
        .collect::<Vec<_>>();
    let (web, log) = start_in(dir.path(), DEBIAN_PYTHON, &web_args, &env);
    let mut backend = Backend {
        url: format!("http://127.0.0.1:{web_port}"),
        end: demo_end(),
        child: Some(web),
        helpers: vec![carbon],
        log,
        dir,
    };
    wait_ready(&mut backend, "/render?target=demo.none&format=json", 200);
    // carbon-cache listens once twistd has started.
    let started = Instant::now();
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", line_port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "carbon-cache did not listen: {e}\n{}",
                    std::fs::read_to_string(backend.dir.path().join("carbon-cache.log"))
                        .unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    use std::io::Write as _;
    stream
        .write_all(graphite_lines(backend.end).as_bytes())
        .unwrap();
    drop(stream);
    // Written points are answered (from carbon's cache or whisper) once
    // carbon has read them: wait for the last one of every path.
    let started = Instant::now();
    loop {
        let path = format!(
            "/render?target=demo.*.*.*&from={}&until={}&format=json",
            backend.end - 15,
            backend.end
        );
        let answer = backend.request("GET", &path, &[], b"");
        let series = answer.json();
        let complete = series.as_array().is_some_and(|list| {
            list.len() == SERVICES.len() * TRACKS.len() * 3
                && list.iter().all(|s| {
                    s["datapoints"]
                        .as_array()
                        .and_then(|p| p.last())
                        .is_some_and(|p| p[0].is_number())
                })
        });
        if complete {
            return Some(backend);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "carbon did not store the demo: {series}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The demo as Graphite's plaintext protocol: `path value time` lines.
pub fn graphite_lines(end: i64) -> String {
    let mut out = String::new();
    for t in times(end) {
        for service in SERVICES {
            for track in TRACKS {
                let p = profile(service, track, t, end);
                let base = format!("demo.{service}.{track}");
                out.push_str(&format!("{base}.error_rate {} {t}\n", p.error_share));
                out.push_str(&format!(
                    "{base}.p95_ms {} {t}\n",
                    1000.0 * quantile(p.latency, 0.95)
                ));
                out.push_str(&format!("{base}.conversion_rate {} {t}\n", p.conversion));
            }
        }
    }
    out
}

// -------------------------------------------------------------------- Loki

/// A Loki that answers `/loki/api/v1/query_range` as Loki's HTTP API
/// documents it (a `matrix` of `[unix seconds, "value"]` pairs; a 400 with
/// Loki's plain-text `parse error …`; a 401 `no org id` without a tenant),
/// with the demo's values for the canary policy's three LogQL queries.
///
/// Grafana Loki cannot run here: Debian packages no Grafana Loki (its
/// `loki` package is "MCMC linkage analysis on general pedigrees"), and no
/// registry this machine reaches carries its binary. So the Loki source is
/// checked against the documented contract, not a server.
pub fn documented_loki() -> Backend {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("loki.log");
    std::fs::write(&log, b"").unwrap();
    let end = demo_end();
    let sink = log.clone();
    std::thread::spawn(move || {
        use std::io::{BufRead as _, Write as _};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&sink) {
                let _ = writeln!(f, "{target}");
            }
            let tenant = head.lines().any(|l| {
                l.trim_end().to_ascii_lowercase() == format!("x-scope-orgid: {LOKI_TENANT}")
            });
            let (status, kind, body) = loki_answer(&target, tenant, end);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Backend {
        url: format!("http://127.0.0.1:{port}"),
        end,
        child: None,
        helpers: Vec::new(),
        log,
        dir,
    }
}

/// What the documented Loki answers `target`.
fn loki_answer(target: &str, tenant: bool, end: i64) -> (&'static str, &'static str, String) {
    let text = "text/plain; charset=utf-8";
    if !tenant {
        return ("401 Unauthorized", text, "no org id\n".into());
    }
    let Some(query) = target.strip_prefix("/loki/api/v1/query_range?") else {
        return ("404 Not Found", text, "404 page not found\n".into());
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let logql = get("query");
    if logql.matches('{').count() != logql.matches('}').count() {
        return (
            "400 Bad Request",
            text,
            "parse error at line 1, col 31: syntax error: unexpected [, expecting } or ,\n".into(),
        );
    }
    // Loki reads a plain integer as nanoseconds, a decimal as seconds.
    let seconds = |v: String| -> Option<i64> {
        if v.contains('.') {
            v.parse::<f64>().ok().map(|f| f as i64)
        } else {
            v.parse::<i64>().ok().map(|n| n / 1_000_000_000)
        }
    };
    let (Some(start), Some(stop), Some(step)) = (
        seconds(get("start")),
        seconds(get("end")),
        get("step").trim_end_matches('s').parse::<i64>().ok(),
    ) else {
        return (
            "400 Bad Request",
            text,
            "invalid parameter: start, end and step are required\n".into(),
        );
    };
    let label = |name: &str| {
        logql
            .split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    let (service, track) = (label("service"), label("track"));
    let mut result = Vec::new();
    if SERVICES.contains(&service.as_str()) {
        let value = |t: i64| {
            let p = profile(&service, &track, t, end);
            if logql.contains("quantile_over_time") {
                1000.0 * quantile(p.latency, 0.95)
            } else if logql.contains("conversion") {
                p.conversion
            } else {
                p.error_share
            }
        };
        let values: Vec<Value> = (0..)
            .map(|i| start + i * step.max(1))
            .take_while(|t| *t <= stop)
            .filter(|t| *t > end - MINUTES * 60 && *t <= end)
            .map(|t| json!([t, value(t).to_string()]))
            .collect();
        if !values.is_empty() {
            result.push(json!({"metric": {"service": service}, "values": values}));
        }
    }
    let body = json!({
        "status": "success",
        "data": {"resultType": "matrix", "result": result, "stats": {"summary": {"bytesProcessedPerSecond": 0}}},
    });
    ("200 OK", "application/json", body.to_string())
}

#[test]
fn the_demo_profiles_give_the_demo_quantiles() {
    // What Prometheus's histogram_quantile gives over the demo's buckets.
    assert!((1000.0 * quantile(&FAST, 0.95) - 207.142).abs() < 0.01);
    assert!((1000.0 * quantile(&SLOW, 0.95) - 2455.224).abs() < 0.01);
    let end = 1_796_571_315;
    assert_eq!(times(end).len(), 161);
    let lines = influx_lines(end);
    assert_eq!(lines.lines().count(), 161 * 8);
    let spike = lines
        .lines()
        .find(|l| {
            l.starts_with("requests,service=payments-spike,track=canary ")
                && l.ends_with(&format!(" {end}"))
        })
        .unwrap();
    assert!(spike.contains(" error_rate=0.05,p95_ms=207.14"), "{spike}");
    assert!(spike.contains(",conversion_rate=0.3 "), "{spike}");
}
