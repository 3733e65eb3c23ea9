//! `tollgate plugin new|build`: a plugin project from a template, and the
//! component built from it with the language's own tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::Exit;

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
    /// The `tollgate-sdk` crate to depend on: a path to its directory, or a
    /// git URL (`https://…`, with `#TAG` to pin a tag). Default: the SDK of
    /// the tollgate source tree this binary was built from.
    #[arg(long)]
    sdk: Option<String>,
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

pub(crate) fn run(args: PluginArgs) -> anyhow::Result<Exit> {
    match args.command {
        PluginCommand::New(args) => new(args),
        PluginCommand::Build(args) => build(&args.dir),
    }
}

/// The Rust templates, one source, policy and test file per kind.
mod rust {
    pub const CARGO: &str = include_str!("../../../plugins/templates/rust/Cargo.toml.tmpl");
    pub const GATE: [&str; 3] = [
        include_str!("../../../plugins/templates/rust/gate.rs"),
        include_str!("../../../plugins/templates/rust/gate.policy.yaml"),
        include_str!("../../../plugins/templates/rust/gate.test.yaml"),
    ];
    pub const TRIGGER: [&str; 3] = [
        include_str!("../../../plugins/templates/rust/trigger.rs"),
        include_str!("../../../plugins/templates/rust/trigger.policy.yaml"),
        include_str!("../../../plugins/templates/rust/trigger.test.yaml"),
    ];
    pub const ACTION: [&str; 3] = [
        include_str!("../../../plugins/templates/rust/action.rs"),
        include_str!("../../../plugins/templates/rust/action.policy.yaml"),
        include_str!("../../../plugins/templates/rust/action.test.yaml"),
    ];
}

/// The Python templates, one per kind, over the SDK module and the WIT.
mod python {
    pub const GATE: &str = include_str!("../../../plugins/templates/python/gate.py");
    pub const TRIGGER: &str = include_str!("../../../plugins/templates/python/trigger.py");
    pub const ACTION: &str = include_str!("../../../plugins/templates/python/action.py");
    pub const SDK: &str = include_str!("../../../plugins/sdk-python/tollgate_sdk.py");
    pub const PYPROJECT: &str = "# A tollgate plugin; `tollgate plugin build` reads `name` and\n# `world` and runs componentize-py over app.py.\n[project]\nname = \"{{name}}\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\n[tool.tollgate]\nworld = \"{{world}}\"\n";
}

/// The JavaScript templates, one per kind, over the SDK module.
mod js {
    pub const GATE: &str = include_str!("../../../plugins/templates/js/gate.js");
    pub const TRIGGER: &str = include_str!("../../../plugins/templates/js/trigger.js");
    pub const ACTION: &str = include_str!("../../../plugins/templates/js/action.js");
    pub const SDK: &str = include_str!("../../../plugins/sdk-js/tollgate_sdk.js");
    pub const PACKAGE: &str = "{\n  \"name\": \"{{name}}\",\n  \"version\": \"0.1.0\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"tollgate\": { \"world\": \"{{world}}\", \"source\": \"index.js\" }\n}\n";
}

/// What Python and JavaScript projects share.
mod interpreted {
    /// The gate's policy, with the memory an interpreter needs.
    pub const GATE_POLICY: &str =
        include_str!("../../../plugins/templates/python/gate.policy.yaml");
}

/// Gives the plugin's trigger or action entry in a Rust template's policy
/// the memory and time an interpreted component needs.
fn interpreted_limits(policy: &str, name: &str) -> String {
    policy.replace(
        &format!("    plugin: {name}\n"),
        &format!("    plugin: {name}\n    # A Python or JavaScript component needs more than the 16 MiB default.\n    memory: 256MiB\n    deadline: 2s\n"),
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
            crate::text::escape_control(name)
        );
    }
    Ok(())
}

/// The `[dependencies]` line for the SDK.
fn sdk_dependency(sdk: Option<&str>) -> anyhow::Result<String> {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    match sdk {
        Some(url) if url.starts_with("https://") || url.starts_with("git@") => {
            Ok(match url.split_once('#') {
                Some((repo, tag)) => format!(
                    "tollgate-sdk = {{ git = {}, tag = {} }}",
                    quote(repo),
                    quote(tag)
                ),
                None => format!("tollgate-sdk = {{ git = {} }}", quote(url)),
            })
        }
        Some(path) => {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("the SDK directory `{path}`"))?;
            Ok(format!(
                "tollgate-sdk = {{ path = {} }}",
                quote(&path.to_string_lossy())
            ))
        }
        None => {
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
            match std::fs::canonicalize(&source) {
                Ok(path) if path.join("Cargo.toml").is_file() => Ok(format!(
                    "tollgate-sdk = {{ path = {} }}",
                    quote(&path.to_string_lossy())
                )),
                _ => bail!(
                    "this tollgate was built without its source tree beside it; say where the SDK is with --sdk PATH or --sdk https://…/tollgate#vX.Y.Z"
                ),
            }
        }
    }
}

fn new(args: NewArgs) -> anyhow::Result<Exit> {
    check_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
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
    };
    let files: Vec<(&str, String)> = match args.lang {
        Lang::Rust => {
            let [source, policy, test] = match args.kind {
                Kind::Gate => rust::GATE,
                Kind::Trigger => rust::TRIGGER,
                Kind::Action => rust::ACTION,
            };
            let sdk = sdk_dependency(args.sdk.as_deref())?;
            let fill = |t: &str| t.replace("{{name}}", &args.name).replace("{{sdk}}", &sdk);
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
            };
            let mut files = if args.lang == Lang::Js {
                let source = match args.kind {
                    Kind::Gate => js::GATE,
                    Kind::Trigger => js::TRIGGER,
                    Kind::Action => js::ACTION,
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
                ("policy.test.yaml", test),
            ]);
            files
        }
    };
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating `{}`", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
    }
    println!(
        "created {world} plugin `{name}` in {dir}\nnext: tollgate plugin build {dir} && tollgate test {dir}",
        name = args.name,
        dir = dir.display()
    );
    Ok(Exit::Success)
}

/// Builds a Rust project's `cdylib` for `wasm32-unknown-unknown`, wraps the
/// module into a component next to `Cargo.toml`, and reports it.
fn build(dir: &Path) -> anyhow::Result<Exit> {
    let manifest = dir.join("Cargo.toml");
    if dir.join("pyproject.toml").is_file() && dir.join("app.py").is_file() {
        return build_python(dir);
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
    let text =
        crate::files::read_text(&path).with_context(|| format!("reading `{}`", path.display()))?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .with_context(|| format!("`{}` has no `{key} = \"…\"`", path.display()))
}

/// Runs componentize-py over the project's `app.py` for its world.
fn build_python(dir: &Path) -> anyhow::Result<Exit> {
    let name = pyproject(dir, "name")?;
    check_name(&name)?;
    let world = pyproject(dir, "world").unwrap_or_else(|_| "gate".into());
    // The SDK module this host ships is on the path after the project, so
    // a project's own copy (as `plugin new` writes it) wins.
    let sdk = tempfile::tempdir().context("creating a directory for the SDK module")?;
    std::fs::write(sdk.path().join("tollgate_sdk.py"), python::SDK)
        .context("writing the SDK module")?;
    let status = Command::new("componentize-py")
        .args(["-d", "wit", "-w", &world, "componentize", "app", "-p", "."])
        .arg("-p")
        .arg(sdk.path())
        .arg("-o")
        .arg(format!("{name}.wasm"))
        .current_dir(dir)
        .status()
        .context("running componentize-py (pip install componentize-py)")?;
    if !status.success() {
        bail!("componentize-py failed ({status})");
    }
    let out = dir.join(format!("{name}.wasm"));
    let component = std::fs::read(&out).with_context(|| format!("reading `{}`", out.display()))?;
    report_built(&name, &out, &component)
}

/// Runs componentize-js over the source `package.json` names
/// (`"tollgate": {"world": "gate", "source": "index.js"}`), with the
/// HTTP features StarlingMonkey would otherwise import left out.
fn build_js(dir: &Path) -> anyhow::Result<Exit> {
    let path = dir.join("package.json");
    let text =
        crate::files::read_text(&path).with_context(|| format!("reading `{}`", path.display()))?;
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
        Ok(plugin) => crate::audit::PluginReport::accepted(name, &shown, &plugin),
        Err(e) => crate::audit::PluginReport::refused(name, &shown, Some(component), e.to_string()),
    };
    println!("built {} ({} bytes)", out.display(), component.len());
    println!("digest: {}", crate::digest::Digest::of(component));
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(Exit::failed_if(
        report.verdict == crate::audit::Acceptance::Refused,
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
