//! Every console and curl example of the README, run as written, so the
//! README cannot drift from what tollgate does.
//!
//! Console blocks run in order in one scratch directory that sees the
//! repository's `policies/`, `tests/` and `scripts/`, with this build's
//! `tollgate` first on `PATH`. A `$ ` line is a command (continued by a
//! trailing `\`); the lines after it are its expected output, in order,
//! where `…` (or `...`) alone skips lines and `…` inside a line matches any
//! text. A command exits 0 unless its expected output opens with `error:`
//! (exit 1 or 2) or a `HOLD`/`ROLLBACK` verdict (exit 1).

use std::process::{Command, Stdio};

use crate::support::repo;

/// One `$ ` command and the output the README shows for it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The fenced blocks of `lang`, with the README line each starts on.
fn blocks(readme: &str, lang: &str) -> Vec<(usize, String)> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = readme;
    let mut offset = 0;
    while let Some(at) = rest.find(&fence) {
        let body_start = at + fence.len();
        let Some(len) = rest[body_start..].find("\n```") else {
            break;
        };
        let line = readme[..offset + at].lines().count() + 2;
        out.push((line, rest[body_start..body_start + len].to_string()));
        offset += body_start + len;
        rest = &rest[body_start + len..];
    }
    out
}

fn steps(block: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut continued = false;
    for line in block.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
            });
            continued = command.ends_with('\\');
        } else if continued && let Some(step) = steps.last_mut() {
            step.command.push('\n');
            step.command.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(step) = steps.last_mut()
            && !line.trim().is_empty()
        {
            step.expected.push(line.trim_end().to_string());
        }
    }
    steps
}

/// Does `actual` match `pattern`, where `…` matches any text?
fn line_matches(pattern: &str, actual: &str) -> bool {
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The expected lines, in order, within the actual output.
fn output_matches(expected: &[String], actual: &str) -> Result<(), String> {
    let lines: Vec<&str> = actual
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let mut at = 0;
    // What a tool prints before the lines shown (cargo's progress) is not
    // part of the example.
    let mut skipping = true;
    for want in expected {
        if want == "…" || want == "..." {
            skipping = true;
            continue;
        }
        let found = if skipping {
            lines[at..].iter().position(|l| line_matches(want, l))
        } else {
            lines.get(at).filter(|l| line_matches(want, l)).map(|_| 0)
        };
        match found {
            Some(i) => at += i + 1,
            None => return Err(format!("expected line `{want}` not found after line {at}")),
        }
        skipping = false;
    }
    Ok(())
}

/// The exit codes the step may end with.
fn expected_codes(step: &Step) -> &'static [i32] {
    match step.expected.first().map(String::as_str) {
        // `validate` exits 1 for an invalid policy, the others 2.
        Some(l) if l.starts_with("error:") => &[1, 2],
        Some(l) if l.starts_with("HOLD") || l.starts_with("ROLLBACK") => &[1],
        _ => &[0],
    }
}

fn program(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or_default()
}

fn on_path(program: &str, path: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .env("PATH", path)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A scratch directory that looks like the repository's root, with this
/// build's `tollgate` on `PATH`.
struct Scratch {
    dir: tempfile::TempDir,
    path: String,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for linked in ["policies", "tests", "scripts"] {
            std::os::unix::fs::symlink(repo(linked), dir.path().join(linked)).unwrap();
        }
        let bin = dir.path().join(".bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tollgate"), bin.join("tollgate")).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Self { dir, path }
    }

    fn bash(&self, script: &str) -> std::process::Output {
        Command::new("bash")
            .args(["-c", script])
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .env("NO_COLOR", "1")
            .env("TOLLGATE_CACHE_DIR", crate::support::cache_dir())
            .env("CARGO_TARGET_DIR", crate::support::plugin_projects_target())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap()
    }
}

/// Blocks another test runs in an equivalent form, by their first command.
const EQUIVALENTS: &[(&str, &str)] = &[(
    "coverage run",
    "reports::* run pytest, coverage and ruff on tests/fixtures/pyproject and evaluate their reports with ci-reports",
)];

/// Runs one console block's steps as one bash script, so `$?` and
/// background jobs carry from step to step.
fn run_block(scratch: &Scratch, file: &str, line: usize, steps: &[Step]) -> Vec<String> {
    let prom_port = crate::support::free_port();
    let api_port = crate::support::free_port();
    let influx_port = crate::support::free_port();
    let influx_rpc_port = crate::support::free_port();
    let vm_port = crate::support::free_port();
    let mut script = String::from("trap 'kill $(jobs -p) 2>/dev/null' EXIT\n");
    for (i, step) in steps.iter().enumerate() {
        let mut command = step
            .command
            .replace("./target/release/tollgate", "tollgate")
            .replace("127.0.0.1:9090", &format!("127.0.0.1:{prom_port}"))
            .replace("127.0.0.1:9100", &format!("127.0.0.1:{api_port}"))
            .replace("--port 9100", &format!("--port {api_port}"))
            .replace("127.0.0.1:8086", &format!("127.0.0.1:{influx_port}"))
            .replace("127.0.0.1:8088", &format!("127.0.0.1:{influx_rpc_port}"))
            .replace("127.0.0.1:8428", &format!("127.0.0.1:{vm_port}"));
        if command.starts_with("cargo build") || command.starts_with("rustup ") {
            // This build stands for the release build; its toolchain and
            // targets are installed.
            command = "true".into();
        }
        if command.trim_end().ends_with('&') {
            let body = command.trim_end().trim_end_matches('&');
            command = format!("{body} >/dev/null 2>&1 &");
        }
        script.push_str(&format!(
            "echo '@@@BEGIN {i}'\n{{ {command}\n}} 2>&1\n__rc=$?\necho \"@@@END {i} $__rc\"\n(exit $__rc)\n"
        ));
    }
    let out = scratch.bash(&script);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut problems = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let begin = format!("@@@BEGIN {i}\n");
        let section = text
            .split_once(&begin)
            .and_then(|(_, rest)| rest.split_once(&format!("@@@END {i} ")));
        let Some((output, rest)) = section else {
            problems.push(format!("{file}:{line}: `{}` did not run", step.command));
            continue;
        };
        let code: i32 = rest.lines().next().unwrap_or("").parse().unwrap_or(-1);
        if !expected_codes(step).contains(&code) {
            problems.push(format!(
                "{file}:{line}: `{}` exited {code}, expected {:?}:\n{output}",
                step.command,
                expected_codes(step)
            ));
        }
        if let Err(e) = output_matches(&step.expected, output) {
            problems.push(format!(
                "{file}:{line}: `{}`: {e}; it printed:\n{output}",
                step.command
            ));
        }
    }
    problems
}

/// Runs every console block of the markdown file `file` (relative to the
/// repository) in one scratch directory; returns how many ran and the
/// problems found.
fn run_console_blocks(file: &str) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(repo(file)).unwrap();
    let scratch = Scratch::new();
    let mut problems = Vec::new();
    let mut ran = 0;
    for (line, block) in blocks(&text, "console") {
        let steps = steps(&block);
        if let Some((_, why)) = EQUIVALENTS
            .iter()
            .find(|(first, _)| steps.first().is_some_and(|s| s.command.starts_with(first)))
        {
            eprintln!("{file}:{line}: run in equivalent form: {why}");
            continue;
        }
        if let Some(missing) = steps
            .iter()
            .map(|s| program(&s.command))
            .find(|p| !p.starts_with("./") && !p.contains('=') && !on_path(p, &scratch.path))
        {
            crate::support::skip(&format!("{file}:{line}: no `{missing}`"));
            continue;
        }
        problems.extend(run_block(&scratch, file, line, &steps));
        ran += 1;
    }
    (ran, problems)
}

#[test]
fn every_readme_console_example_runs_as_written() {
    let (ran, problems) = run_console_blocks("README.md");
    assert!(ran >= 4, "only {ran} console blocks ran");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The plugin tutorial, in Rust, Python and JavaScript, as written.
#[test]
fn the_plugin_tutorial_runs_as_written() {
    let (ran, problems) = run_console_blocks("docs/writing-plugins.md");
    assert!(ran >= 3, "only {ran} console blocks ran");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The HTTP API's `sh` block: the server started as it says, with the
/// README's token file, then every curl command; each must succeed, and a
/// trailing `# {json}` comment is the answer it must give.
#[test]
fn every_readme_curl_example_runs_as_written() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let (line, block) = blocks(&readme, "sh")
        .into_iter()
        .find(|(_, b)| b.contains("curl -s localhost:8080/healthz"))
        .expect("the README's curl block");
    let tokens = blocks(&readme, "text")
        .into_iter()
        .map(|(_, b)| b)
        .find(|b| b.contains("ops-token-"))
        .expect("the README's token file");
    let scratch = Scratch::new();
    std::fs::write(scratch.dir.path().join("tokens.txt"), tokens).unwrap();
    let port = crate::support::free_port();
    let mut commands: Vec<String> = Vec::new();
    let mut continued = false;
    for l in block.lines() {
        if continued && let Some(last) = commands.last_mut() {
            last.push('\n');
            last.push_str(l);
        } else if !l.trim_start().starts_with('#') && !l.trim().is_empty() {
            commands.push(l.to_string());
        }
        continued = l.ends_with('\\');
    }
    let serve = commands.remove(0);
    assert!(serve.starts_with("tollgate serve "), "{serve}");
    let serve = serve
        .split(" # ")
        .next()
        .unwrap()
        .trim_end()
        .trim_end_matches('&')
        .to_string();
    let mut script = format!(
        "{serve} --addr 127.0.0.1:{port} >serve.log 2>&1 &\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n\
         curl -s --retry 60 --retry-connrefused --retry-delay 1 -o /dev/null 127.0.0.1:{port}/healthz\n"
    );
    for (i, command) in commands.iter().enumerate() {
        if !command.contains("curl") {
            script.push_str(command);
            script.push('\n');
            continue;
        }
        let (command, answer) = match command.split_once(" # ") {
            Some((c, a)) => (c, Some(a)),
            None => (command.as_str(), None),
        };
        let command = command
            .replace("localhost:8080", &format!("127.0.0.1:{port}"))
            .replacen("curl -s", "curl -s -o out.json -w '%{http_code}'", 1);
        script.push_str(&format!(
            "echo \"@@@ {i} $({command})\"\necho; cat out.json; echo\necho '@@@END'\n"
        ));
        if let Some(answer) = answer {
            let json = answer.split("  ").next().unwrap().trim();
            script.push_str(&format!("echo '@@@ANSWER {i} {json}'\n"));
        }
    }
    let out = scratch.bash(&script);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut problems = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        if !command.contains("curl") {
            continue;
        }
        let Some((_, rest)) = text.split_once(&format!("@@@ {i} ")) else {
            problems.push(format!("README.md:{line}: `{command}` did not run"));
            continue;
        };
        let status = rest.get(..3).unwrap_or("");
        let body = rest[3..].split("@@@END").next().unwrap_or("").trim();
        if status != "200" {
            problems.push(format!(
                "README.md:{line}: `{command}` answered {status}: {body}"
            ));
        }
        if let Some((_, answer)) = text.split_once(&format!("@@@ANSWER {i} ")) {
            let want: serde_json::Value =
                serde_json::from_str(answer.lines().next().unwrap()).unwrap();
            let got: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            if want != got {
                problems.push(format!(
                    "README.md:{line}: `{command}` answered {got}, the README says {want}"
                ));
            }
        }
    }
    let log = std::fs::read_to_string(scratch.dir.path().join("serve.log")).unwrap_or_default();
    assert!(
        problems.is_empty(),
        "{}\nserver log:\n{log}",
        problems.join("\n")
    );
}

/// The README's "Deploying on Kubernetes": every kustomization its `kubectl
/// apply -k` lines name renders, and `scripts/deploy-check.sh` validates
/// all of `deploy/` offline (Kubernetes and CRD schemas, checkov, the CI
/// schemas, the README's excerpts). Its tools are what `scripts/test`
/// installs with `scripts/deploy-check.sh --install`.
#[test]
fn the_readme_deploy_section_renders_and_validates_offline() {
    let kubectl = repo("target/deploy-check/venv/bin/kubectl");
    if !kubectl.exists() || !repo("tests/deploy/node_modules/.installed-lock.json").exists() {
        crate::support::skip("no deploy-check tools (scripts/deploy-check.sh --install)");
        return;
    }
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let start = readme
        .find("## Deploying on Kubernetes")
        .expect("README has a Deploying on Kubernetes section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let dirs: Vec<&str> = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("kubectl apply -k "))
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect();
    assert!(dirs.len() >= 3, "{dirs:?}");
    for dir in dirs {
        let out = Command::new(&kubectl)
            .args(["kustomize", dir])
            .current_dir(repo(""))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("kind: "));
    }
    let out = Command::new(repo("scripts/deploy-check.sh"))
        .current_dir(repo(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": 0 failed"), "{stdout}");
}
