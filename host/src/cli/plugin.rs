//! `tollgate plugin new|build`: a plugin project from a template, and the
//! component built from it with the language's own tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::Exit;
use super::templates::{interpreted, js, python, rust};

#[derive(Debug, clap::Args)]
pub(crate) struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PluginCommand {
    /// Create a plugin project: the rule, its build file, a policy and policy tests.
    New(NewArgs),
    /// Build the component of a plugin project; print its digest and audit summary.
    Build(BuildArgs),
}

/// What a plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Gate,
    Trigger,
    Action,
    /// A telemetry source: describes HTTP requests, reads their answers.
    Source,
}

/// The language a project is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    Rust,
    /// Built with componentize-py.
    Python,
    /// Built with componentize-js.
    Js,
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-`.
    name: String,
    #[arg(long, value_enum, default_value_t = Kind::Gate)]
    kind: Kind,
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Where to create it (default: ./NAME). It must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The `tollgate-sdk` crate a Rust project depends on: a path (the
    /// crate, or a tollgate checkout holding it in `plugins/sdk`), or a git
    /// URL (`https://…`, with `#TAG` to pin a tag). Default: the SDK of the
    /// tollgate checkout the project is created in, else of the tree this
    /// binary was built from when it is on this machine.
    #[arg(long, env = "TOLLGATE_SDK")]
    sdk: Option<String>,
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Show the build tool's whole output when it fails (componentize-py's
    /// Python traceback and Rust backtrace), not only the error.
    #[arg(long, short = 'v')]
    verbose: bool,
}

pub(crate) fn run(args: PluginArgs) -> anyhow::Result<Exit> {
    match args.command {
        PluginCommand::New(args) => new(args),
        PluginCommand::Build(args) => build(&args.dir, args.verbose),
    }
}

/// Gives the plugin's trigger or action entry in a Rust template's policy
/// the memory and time an interpreted component needs.
fn interpreted_limits(policy: &str, name: &str) -> String {
    policy.replace(
        &format!("    plugin: {name}\n"),
        &format!("    plugin: {name}\n    # The interpreter's heap takes 9-13 MiB of this before the rule runs;\n    # 256 MiB leaves the rule room for its own data.\n    memory: 256MiB\n    deadline: 2s\n"),
    )
}

/// The WIT contract this host serves, written into non-Rust projects so
/// their bindings match it.
const WIT: &str = include_str!("../../../wit/tollgate.wit");

/// A plugin name must be a policy key, a crate name and a file name at once.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 64;
    if !ok {
        bail!(
            "plugin name `{}` must start with a lowercase letter and use only lowercase letters, digits and `-` (at most 64)",
            crate::base::text::escape_control(name)
        );
    }
    Ok(())
}

/// Whether `dir` is the `tollgate-sdk` crate.
fn is_sdk(dir: &Path) -> bool {
    crate::base::files::read_text(&dir.join("Cargo.toml")).is_ok_and(|manifest| {
        manifest
            .lines()
            .any(|l| l.replace(' ', "") == "name=\"tollgate-sdk\"")
    })
}

/// The SDK crate in `dir`: `dir` itself, or a tollgate checkout's
/// `plugins/sdk`.
fn sdk_in(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("plugins/sdk")]
        .into_iter()
        .find(|d| is_sdk(d))
        .and_then(|d| std::fs::canonicalize(d).ok())
}

/// The SDK of the tollgate checkout that holds `start` (or one of its
/// parents), if any.
fn sdk_above(start: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(start).ok()?;
    start.ancestors().find_map(sdk_in)
}

/// The `[dependencies]` line for the SDK, and where it comes from, in
/// words. `sdk` is a path (an SDK crate or a checkout) or a git URL with
/// an optional `#TAG`; without it, the SDK of the checkout the project is
/// created in (or the current directory is in), else of the tree this
/// binary was built from when that is still on this machine.
fn sdk_dependency(sdk: Option<&str>, project: &Path) -> anyhow::Result<(String, String)> {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let path_dependency = |path: &Path| {
        format!(
            "tollgate-sdk = {{ path = {} }}",
            quote(&path.to_string_lossy())
        )
    };
    match sdk {
        Some(url) if url.starts_with("https://") || url.starts_with("git@") => {
            let line = match url.split_once('#') {
                Some((repo, tag)) => format!(
                    "tollgate-sdk = {{ git = {}, tag = {} }}",
                    quote(repo),
                    quote(tag)
                ),
                None => format!("tollgate-sdk = {{ git = {} }}", quote(url)),
            };
            Ok((line, format!("git {url}")))
        }
        Some(path) => {
            let dir = Path::new(path);
            let found = sdk_in(dir).with_context(|| {
                format!(
                    "`{path}` is neither the tollgate-sdk crate nor a tollgate checkout (with plugins/sdk)"
                )
            })?;
            Ok((path_dependency(&found), found.display().to_string()))
        }
        None => {
            let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            let parent = project.parent().unwrap_or(Path::new("."));
            if let Some(found) = sdk_above(parent).or_else(|| sdk_above(&here)) {
                return Ok((
                    path_dependency(&found),
                    format!("{}, the tollgate checkout's here", found.display()),
                ));
            }
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
            match sdk_in(&built_from) {
                Some(found) => Ok((
                    path_dependency(&found),
                    format!(
                        "{}, of the tree this tollgate was built from (no tollgate checkout holds this directory)",
                        found.display()
                    ),
                )),
                None => bail!(
                    "no tollgate checkout holds this directory, and the tree this tollgate was built from is not on this machine; say where the SDK is: --sdk PATH (a checkout, or its plugins/sdk) or --sdk https://…/tollgate#vX.Y.Z (also TOLLGATE_SDK)"
                ),
            }
        }
    }
}

fn new(args: NewArgs) -> anyhow::Result<Exit> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading `{}`", dir.display()))?
            .next()
            .is_some()
    {
        bail!("`{}` exists and is not empty", dir.display());
    }
    let world = match args.kind {
        Kind::Gate => "gate",
        Kind::Trigger => "trigger",
        Kind::Action => "action",
        Kind::Source => "source",
    };
    let mut sdk_source = None;
    let files: Vec<(&str, String)> = match args.lang {
        Lang::Rust => {
            let (sdk, from) = sdk_dependency(args.sdk.as_deref(), &dir)?;
            sdk_source = Some(from);
            let fill = |t: &str| t.replace("{{name}}", &args.name).replace("{{sdk}}", &sdk);
            let [source, policy, test] = match args.kind {
                Kind::Gate => rust::GATE,
                Kind::Trigger => rust::TRIGGER,
                Kind::Action => rust::ACTION,
                Kind::Source => {
                    return write_project(
                        &args,
                        &dir,
                        world,
                        sdk_source,
                        &[
                            ("Cargo.toml", fill(rust::CARGO)),
                            ("src/lib.rs", fill(rust::SOURCE)),
                            ("policy.yaml", fill(rust::SOURCE_POLICY)),
                            ("sources.yaml", fill(rust::SOURCE_SOURCES)),
                        ],
                    );
                }
            };
            vec![
                ("Cargo.toml", fill(rust::CARGO)),
                ("src/lib.rs", fill(source)),
                ("policy.yaml", fill(policy)),
                ("policy.test.yaml", fill(test)),
            ]
        }
        Lang::Js | Lang::Python => {
            let fill = |t: &str| {
                t.replace("{{name}}", &args.name)
                    .replace("{{world}}", world)
            };
            let (policy, test) = match args.kind {
                Kind::Gate => (fill(interpreted::GATE_POLICY), fill(rust::GATE[2])),
                Kind::Trigger => (
                    interpreted_limits(&fill(rust::TRIGGER[1]), &args.name),
                    fill(rust::TRIGGER[2]),
                ),
                Kind::Action => (
                    interpreted_limits(&fill(rust::ACTION[1]), &args.name),
                    fill(rust::ACTION[2]),
                ),
                Kind::Source => (fill(rust::SOURCE_POLICY), String::new()),
            };
            let mut files = if args.lang == Lang::Js {
                let source = match args.kind {
                    Kind::Gate => js::GATE,
                    Kind::Trigger => js::TRIGGER,
                    Kind::Action => js::ACTION,
                    Kind::Source => js::SOURCE,
                };
                vec![
                    ("package.json", fill(js::PACKAGE)),
                    ("index.js", fill(source)),
                    ("tollgate_sdk.js", js::SDK.to_string()),
                ]
            } else {
                let source = match args.kind {
                    Kind::Gate => python::GATE,
                    Kind::Trigger => python::TRIGGER,
                    Kind::Action => python::ACTION,
                    Kind::Source => python::SOURCE,
                };
                vec![
                    ("pyproject.toml", fill(python::PYPROJECT)),
                    ("app.py", fill(source)),
                    ("tollgate_sdk.py", python::SDK.to_string()),
                ]
            };
            files.extend([
                ("wit/tollgate.wit", WIT.to_string()),
                ("policy.yaml", policy),
            ]);
            if args.kind == Kind::Source {
                files.push(("sources.yaml", fill(rust::SOURCE_SOURCES)));
            } else {
                files.push(("policy.test.yaml", test));
            }
            files
        }
    };
    write_project(&args, &dir, world, sdk_source, &files)
}

/// Writes a new project's files and says what to run next.
fn write_project(
    args: &NewArgs,
    dir: &Path,
    world: &str,
    sdk_source: Option<String>,
    files: &[(&str, String)],
) -> anyhow::Result<Exit> {
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating `{}`", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
    }
    let next = if args.kind == Kind::Source {
        format!(
            "tollgate plugin build {dir} && tollgate eval --policy {dir}/policy.yaml --sources {dir}/sources.yaml --service checkout",
            dir = dir.display()
        )
    } else {
        format!(
            "tollgate plugin build {dir} && tollgate test {dir}",
            dir = dir.display()
        )
    };
    println!(
        "created {world} plugin `{name}` in {dir}\nnext: {next}",
        name = args.name,
        dir = dir.display()
    );
    if let Some(from) = sdk_source {
        println!(
            "tollgate-sdk: {}; change it in {}",
            crate::base::text::escape_control(&from),
            dir.join("Cargo.toml").display()
        );
    }
    Ok(Exit::Success)
}

/// Builds a Rust project's `cdylib` for `wasm32-unknown-unknown`, wraps the
/// module into a component next to `Cargo.toml`, and reports it.
fn build(dir: &Path, verbose: bool) -> anyhow::Result<Exit> {
    let manifest = dir.join("Cargo.toml");
    if dir.join("pyproject.toml").is_file() && dir.join("app.py").is_file() {
        return build_python(dir, verbose);
    }
    if dir.join("package.json").is_file() {
        return build_js(dir);
    }
    if !manifest.is_file() {
        bail!(
            "`{}` has no Cargo.toml (Rust), pyproject.toml and app.py (Python) or package.json (JavaScript): not a plugin project (create one with `tollgate plugin new`)",
            dir.display()
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo (is Rust installed? https://rustup.rs)")?;
    if !output.status.success() {
        bail!("cargo build failed (missing target? `rustup target add wasm32-unknown-unknown`)");
    }
    let module = cdylib_artifact(&output.stdout)?;
    let bytes =
        std::fs::read(&module).with_context(|| format!("reading `{}`", module.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .context(
            "reading the module's component metadata (does it use tollgate-sdk's export macro?)",
        )?
        .validate(true)
        .encode()
        .context("wrapping the module into a component")?;
    let name = module.file_stem().map_or_else(
        || "plugin".into(),
        |s| s.to_string_lossy().replace('_', "-"),
    );
    let out = dir.join(format!("{name}.wasm"));
    std::fs::write(&out, &component).with_context(|| format!("writing `{}`", out.display()))?;
    report_built(&name, &out, &component)
}

/// A `key = "value"` of the project's `pyproject.toml`.
fn pyproject(dir: &Path, key: &str) -> anyhow::Result<String> {
    let path = dir.join("pyproject.toml");
    let text = crate::base::files::read_text(&path)
        .with_context(|| format!("reading `{}`", path.display()))?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .with_context(|| format!("`{}` has no `{key} = \"…\"`", path.display()))
}

/// Runs componentize-py over the project's `app.py` for its world. When it
/// fails, the Python error comes first, with its file and line; its whole
/// output (a wrapper traceback and a Rust backtrace) only with `verbose`.
fn build_python(dir: &Path, verbose: bool) -> anyhow::Result<Exit> {
    let name = pyproject(dir, "name")?;
    check_name(&name)?;
    let world = pyproject(dir, "world").unwrap_or_else(|_| "gate".into());
    // The SDK module this host ships is on the path after the project, so
    // a project's own copy (as `plugin new` writes it) wins.
    let sdk = tempfile::tempdir().context("creating a directory for the SDK module")?;
    std::fs::write(sdk.path().join("tollgate_sdk.py"), python::SDK)
        .context("writing the SDK module")?;
    let mut command = Command::new("componentize-py");
    command
        .args(["-d", "wit", "-w", &world, "componentize", "app", "-p", "."])
        .arg("-p")
        .arg(sdk.path())
        .arg("-o")
        .arg(format!("{name}.wasm"))
        .current_dir(dir)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::piped());
    if !verbose {
        // componentize-py reports through `anyhow`, which appends a Rust
        // backtrace whenever `RUST_BACKTRACE` is set.
        command.env("RUST_LIB_BACKTRACE", "0");
    }
    let output = command
        .output()
        .context("running componentize-py (pip install componentize-py)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if verbose {
            eprint!("{stderr}");
        }
        bail!(
            "{}\n(componentize-py failed ({}); `tollgate plugin build --verbose` shows its whole output)",
            python_error(&stderr, dir),
            output.status
        );
    }
    eprint!("{stderr}");
    let out = dir.join(format!("{name}.wasm"));
    let component = std::fs::read(&out).with_context(|| format!("reading `{}`", out.display()))?;
    report_built(&name, &out, &component)
}

/// The error in componentize-py's output, as a person reads it: the
/// exception with the project file and line first (`app.py:8:
/// SyntaxError: expected ':'`), then the lines that show where. The
/// wrapper around it (componentize-py's own traceback, `Caused by:`, a Rust
/// backtrace) is left out. Paths componentize-py mounts (`/0/` for the
/// project, `/1/` for the SDK module) are given back their names. The
/// caller prints it as an error, whose lines are escaped.
fn python_error(stderr: &str, dir: &Path) -> String {
    let text = stderr.split("\nStack backtrace:").next().unwrap_or(stderr);
    // The inner error follows the wrapper's `AssertionError: `.
    let inner = text.split_once("AssertionError: ").map_or(text, |(_, e)| e);
    let inner = inner.split("\n\nCaused by:").next().unwrap_or(inner);
    let project = format!("\"{}/", dir.display());
    let inner = inner
        .replace("\"/0/", &project)
        .replace("\"/1/", "\"(tollgate SDK)/");
    let lines: Vec<&str> = inner.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some((exception, before)) = lines.split_last() else {
        return "componentize-py failed without saying why".into();
    };
    // The innermost `File "…", line N` is where the error is.
    let place = before
        .iter()
        .rposition(|l| l.trim_start().starts_with("File \"") && l.contains("\", line "));
    let Some(at) = place else {
        return lines.join("\n");
    };
    let location = before[at].trim_start();
    let file = location
        .trim_start_matches("File \"")
        .split('"')
        .next()
        .unwrap_or_default();
    let line = location
        .split(", line ")
        .nth(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or(rest)
        })
        .unwrap_or_default();
    let mut out = format!("{file}:{line}: {}", exception.trim());
    // A syntax error shows the line and a caret; a traceback shows the calls.
    let context: Vec<&str> = if exception.contains("SyntaxError")
        || exception.contains("IndentationError")
        || exception.contains("TabError")
    {
        before[at + 1..].to_vec()
    } else {
        before
            .iter()
            .copied()
            .filter(|l| !l.starts_with("Traceback (most recent call last)"))
            .collect()
    };
    for l in context {
        out.push('\n');
        out.push_str(l);
    }
    out
}

/// Runs componentize-js over the source `package.json` names
/// (`"tollgate": {"world": "gate", "source": "index.js"}`), with the
/// HTTP features StarlingMonkey would otherwise import left out.
fn build_js(dir: &Path) -> anyhow::Result<Exit> {
    let path = dir.join("package.json");
    let text = crate::base::files::read_text(&path)
        .with_context(|| format!("reading `{}`", path.display()))?;
    let package: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
    let name = package["name"]
        .as_str()
        .with_context(|| format!("`{}` has no `name`", path.display()))?
        .to_string();
    check_name(&name)?;
    let world = package["tollgate"]["world"].as_str().unwrap_or("gate");
    let source = package["tollgate"]["source"].as_str().unwrap_or("index.js");
    let local = dir.join("node_modules/.bin/componentize-js");
    let tool = if local.is_file() {
        local.canonicalize()?
    } else {
        PathBuf::from("componentize-js")
    };
    let status = Command::new(&tool)
        .arg(source)
        .args([
            "--wit",
            "wit",
            "-n",
            world,
            "-d",
            "http",
            "fetch-event",
            "-o",
        ])
        .arg(format!("{name}.wasm"))
        .current_dir(dir)
        .status()
        .context("running componentize-js (npm install -g @bytecodealliance/componentize-js)")?;
    if !status.success() {
        bail!("componentize-js failed ({status})");
    }
    let out = dir.join(format!("{name}.wasm"));
    let component = std::fs::read(&out).with_context(|| format!("reading `{}`", out.display()))?;
    report_built(&name, &out, &component)
}

/// Prints where the component is, its digest and its audit report.
fn report_built(name: &str, out: &Path, component: &[u8]) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let shown = out.to_string_lossy();
    let report = match runtime.load(name, component) {
        Ok(plugin) => crate::engine::report::PluginReport::accepted(name, &shown, &plugin),
        Err(e) => crate::engine::report::PluginReport::refused(
            name,
            &shown,
            Some(component),
            e.to_string(),
        ),
    };
    println!("built {} ({} bytes)", out.display(), component.len());
    println!("digest: {}", crate::base::digest::Digest::of(component));
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(Exit::failed_if(
        report.verdict == crate::engine::report::Acceptance::Refused,
    ))
}

/// The `.wasm` file of the build's `cdylib`, from cargo's JSON messages.
fn cdylib_artifact(messages: &[u8]) -> anyhow::Result<PathBuf> {
    let mut found = None;
    for line in messages.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["crate_types"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if !is_cdylib {
            continue;
        }
        found = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
            .map(PathBuf::from);
    }
    found.context(
        "the build produced no `cdylib` .wasm: add `[lib] crate-type = [\"cdylib\"]` to Cargo.toml",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// componentize-py 0.25's output for a missing `:` with
    /// `RUST_BACKTRACE=1`, cut after the backtrace's first frames.
    const SYNTAX: &str = "Traceback (most recent call last):\n  File \"/root/.pyenv/versions/3.11.7/bin/componentize-py\", line 8, in <module>\n    sys.exit(script())\n             ^^^^^^^^\nAssertionError:   File \"/0/app.py\", line 8\n    def settings(config)\n                        ^\nSyntaxError: expected ':'\n\n\nCaused by:\n    SyntaxError: expected ':' (app.py, line 8)\n\nStack backtrace:\n   0: <anyhow::Error>::msg::<alloc::string::String>\n   1: anyhow::__private::format_err\n";

    const IMPORT: &str = "Traceback (most recent call last):\n  File \"/usr/bin/componentize-py\", line 8, in <module>\n    sys.exit(script())\n             ^^^^^^^^\nAssertionError: Traceback (most recent call last):\n  File \"/0/app.py\", line 1, in <module>\n    import nonexistent_module\nModuleNotFoundError: No module named 'nonexistent_module'\n\n\nCaused by:\n    ModuleNotFoundError: No module named 'nonexistent_module'\n";

    #[test]
    fn a_python_error_comes_first_with_its_file_and_line() {
        let shown = python_error(SYNTAX, Path::new("my-gate"));
        assert_eq!(
            shown,
            "my-gate/app.py:8: SyntaxError: expected ':'\n    def settings(config)\n                        ^"
        );
        let shown = python_error(IMPORT, Path::new("my-gate"));
        assert_eq!(
            shown,
            "my-gate/app.py:1: ModuleNotFoundError: No module named 'nonexistent_module'\n  File \"my-gate/app.py\", line 1, in <module>\n    import nonexistent_module"
        );
        let shown = python_error(
            "Traceback (most recent call last):\nAssertionError: failed to read path for WIT [wit]\n",
            Path::new("."),
        );
        assert_eq!(shown, "failed to read path for WIT [wit]");
    }
}
