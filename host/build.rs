//! Builds the first-party plugins from source and embeds them in the binary.
//!
//! Each plugin crate under `plugins/` is compiled once by a nested cargo
//! build with its own target directory. Most target `wasm32-unknown-unknown`
//! and are turned into a component with `wit-component`, importing only the
//! tollgate interfaces. A crate whose `[package.metadata.tollgate]` says
//! `target = "wasm32-wasip2"` (a gate that reads granted files with the
//! standard library) is built for that target, whose linker already emits a
//! component. The generated `builtin_plugins.rs` lists every component with
//! its bytes, and `bundled_policies.rs` every policy of `policies/` with its
//! text.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The engine settings the runtime compiles under, shared with it so the
/// artifacts written here are ones it loads.
#[cfg(feature = "precompiled")]
#[path = "src/engine/config.rs"]
mod engine_config;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// The target of plugins that use WASI through the standard library.
const WASI_TARGET: &str = "wasm32-wasip2";

/// A first-party plugin: its policy name, crate and Wasm target.
struct Plugin {
    name: String,
    krate: String,
    target: String,
    /// A telemetry source (its crate lives under `plugins/sources/`).
    source: bool,
}

/// Crates named `tollgate-plugin-<name>` are first-party plugins; policies
/// know each by `<name>`.
const PLUGIN_PREFIX: &str = "tollgate-plugin-";

/// The first-party plugins, read from the workspace's members so the list
/// is never written twice.
fn workspace_plugins(root: &Path) -> Result<Vec<Plugin>> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .context("running `cargo metadata`")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading `cargo metadata` output")?;
    let mut plugins = Vec::new();
    for package in meta["packages"]
        .as_array()
        .context("`cargo metadata` lists no packages")?
    {
        let Some(krate) = package["name"].as_str() else {
            continue;
        };
        let Some(name) = krate.strip_prefix(PLUGIN_PREFIX) else {
            continue;
        };
        let target = package["metadata"]["tollgate"]["target"]
            .as_str()
            .unwrap_or(WASM_TARGET);
        if ![WASM_TARGET, WASI_TARGET].contains(&target) {
            bail!(
                "plugin crate `{krate}` asks for target `{target}`; expected {WASM_TARGET} or {WASI_TARGET}"
            );
        }
        let source = package["manifest_path"]
            .as_str()
            .is_some_and(|p| p.contains("/plugins/sources/"));
        plugins.push(Plugin {
            name: name.to_string(),
            krate: krate.to_string(),
            target: target.to_string(),
            source,
        });
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    if plugins.is_empty() {
        bail!("the workspace has no `{PLUGIN_PREFIX}*` crates");
    }
    Ok(plugins)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .context("host crate has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    for watched in ["wit", "plugins", "policies", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    // A toolchain for the guests other than the one building the host: the
    // fuzz build runs on nightly, which may lack the wasm target.
    println!("cargo:rerun-if-env-changed=TOLLGATE_PLUGIN_TOOLCHAIN");
    let toolchain = env::var("TOLLGATE_PLUGIN_TOOLCHAIN").ok();
    let plugins = workspace_plugins(&root)?;
    let mut targets: Vec<&str> = plugins.iter().map(|p| p.target.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    if toolchain.is_none() {
        for target in &targets {
            ensure_wasm_target(target)?;
        }
    }

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");
    for target in &targets {
        let crates: Vec<&str> = plugins
            .iter()
            .filter(|p| p.target == *target)
            .map(|p| p.krate.as_str())
            .collect();
        build_plugins(&root, &target_dir, target, &crates, toolchain.as_deref())?;
    }

    let mut components = Vec::new();
    let mut listing = String::from(
        "/// First-party plugins embedded at build time: `(name, component bytes)`.\n\
         pub(crate) const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for Plugin {
        name,
        krate,
        target,
        ..
    } in &plugins
    {
        let module_path = target_dir
            .join(target)
            .join("release")
            .join(format!("{}.wasm", krate.replace('-', "_")));
        let module =
            fs::read(&module_path).with_context(|| format!("reading {}", module_path.display()))?;
        let component = if target == WASI_TARGET {
            module
        } else {
            wit_component::ComponentEncoder::default()
                .module(&module)
                .with_context(|| format!("reading the component metadata of plugin `{name}`"))?
                .validate(true)
                .encode()
                .with_context(|| format!("componentizing plugin `{name}`"))?
        };
        let dest = out_dir.join(format!("{name}.wasm"));
        fs::write(&dest, &component)?;
        writeln!(
            listing,
            "    ({name:?}, include_bytes!({:?})),",
            dest.display().to_string()
        )?;
        components.push((name.as_str(), component));
    }
    fs::write(
        out_dir.join("precompiled.rs"),
        precompiled(&out_dir, &components)?,
    )?;
    listing.push_str("];\n");
    listing.push_str(
        "/// The first-party plugins that are telemetry sources, not gates, triggers or actions.\n\
         pub(crate) const BUILTIN_SOURCES: &[&str] = &[\n",
    );
    for p in plugins.iter().filter(|p| p.source) {
        writeln!(listing, "    {:?},", p.name)?;
    }
    listing.push_str("];\n");
    fs::write(out_dir.join("builtin_plugins.rs"), listing)?;
    fs::write(
        out_dir.join("bundled_policies.rs"),
        bundled_policies(&root.join("policies"))?,
    )?;
    Ok(())
}

/// The listing of the first-party plugins compiled to native code for the
/// engine's settings and this machine's CPU, by the SHA-256 of each
/// component, or an empty one without the `precompiled` feature.
fn precompiled(out_dir: &Path, components: &[(&str, Vec<u8>)]) -> Result<String> {
    let mut listing = String::from(
        "/// Native code compiled at build time: `(SHA-256 of the component, artifact)`.\n\
         const PRECOMPILED: &[([u8; 32], &[u8])] = &[\n",
    );
    #[cfg(feature = "precompiled")]
    match precompile(out_dir, components) {
        Ok(entries) => listing.push_str(&entries),
        // Precompiling only saves time at start, so a build machine where
        // Cranelift cannot run still builds a binary that compiles at start.
        Err(e) => println!("cargo:warning=first-party plugins not precompiled: {e:#}"),
    }
    #[cfg(not(feature = "precompiled"))]
    let _ = (out_dir, components);
    listing.push_str("];\n");
    Ok(listing)
}

/// The entries of the precompiled listing: each component compiled, written
/// beside it, and named by its digest.
#[cfg(feature = "precompiled")]
fn precompile(out_dir: &Path, components: &[(&str, Vec<u8>)]) -> Result<String> {
    use sha2::Digest as _;
    let mut config = engine_config::base_config();
    // Native code for the build machine's CPU, unless the binary is for
    // another target: then for that target's baseline, so the code is
    // either right for it or (another architecture, whose Cranelift
    // backend is not built in) not made at all.
    let (host, target) = (env::var("HOST")?, env::var("TARGET")?);
    if host != target {
        config
            .target(&target)
            .map_err(|e| anyhow::anyhow!("target `{target}`: {e:#}"))?;
    }
    let engine =
        wasmtime::Engine::new(&config).map_err(|e| anyhow::anyhow!("starting wasmtime: {e:#}"))?;
    let mut entries = String::new();
    for (name, component) in components {
        let artifact = engine
            .precompile_component(component)
            .map_err(|e| anyhow::anyhow!("compiling plugin `{name}`: {e:#}"))?;
        let dest = out_dir.join(format!("{name}.cwasm"));
        fs::write(&dest, artifact)?;
        let digest: [u8; 32] = sha2::Sha256::digest(component).into();
        writeln!(
            entries,
            "    ({digest:?}, include_bytes!({:?})),",
            dest.display().to_string()
        )?;
    }
    Ok(entries)
}

/// The listing of the bundled policies: every `policies/*.yaml` but the
/// `*.test.yaml` files, by file name, so a policy added to the directory
/// is bundled without being named twice.
fn bundled_policies(dir: &Path) -> Result<String> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| {
        let name = p.to_string_lossy();
        name.ends_with(".yaml") && !name.ends_with(".test.yaml")
    });
    files.sort();
    let mut listing = String::from(
        "/// The bundled policies, embedded at build time: `(file name, text)`.\n\
         pub const BUNDLED_POLICIES: &[(&str, &str)] = &[\n",
    );
    for file in files {
        let name = file
            .file_name()
            .context("a policy file without a name")?
            .to_string_lossy()
            .into_owned();
        writeln!(
            listing,
            "    ({name:?}, include_str!({:?})),",
            file.display().to_string()
        )?;
    }
    listing.push_str("];\n");
    Ok(listing)
}

/// Makes sure the Wasm target's standard library is installed for the active
/// toolchain; rustup does not add targets listed in `rust-toolchain.toml` to a
/// toolchain that is already installed.
fn ensure_wasm_target(target: &str) -> Result<()> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("running `{rustc} --print sysroot`"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if has_target(&sysroot, target) {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status();
    match status {
        Ok(s) if s.success() && has_target(&sysroot, target) => Ok(()),
        _ => bail!(
            "the `{target}` target is missing and could not be installed; run \
             `rustup target add {target}` (or `rustup toolchain install` in the repository) and build again"
        ),
    }
}

fn has_target(sysroot: &Path, target: &str) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

fn build_plugins(
    root: &Path,
    target_dir: &Path,
    target: &str,
    crates: &[&str],
    toolchain: Option<&str>,
) -> Result<()> {
    let mut cmd = match toolchain {
        // rustup's `cargo` proxy, pinned to the named toolchain.
        Some(t) => {
            let mut c = Command::new("cargo");
            c.env("RUSTUP_TOOLCHAIN", t)
                .env_remove("RUSTC")
                .env_remove("CARGO");
            c
        }
        None => Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
    };
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for krate in crates {
        cmd.arg("-p").arg(krate);
    }
    // Self-contained guests: optimised for speed (against `s`, 20 % fewer
    // instructions per W1 evaluation for 3 % more bytes), no unwinding, no
    // symbols.
    cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    // What the outer build set for the host must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CLIPPY_ARGS",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .context("running cargo to build the first-party plugins")?;
    if !status.success() {
        bail!("building the first-party plugins failed ({status})");
    }
    Ok(())
}
