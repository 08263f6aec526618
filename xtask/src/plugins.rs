//! `cargo xtask plugins [--release] [--out DIR]`: builds every provider crate and the example
//! plugin as a run-time plugin (`cdylib`) into one directory (default `target/plugins/`) and
//! prints what it built.
//!
//! Each provider is built on its own, *without* default features and with `plugin`, so the
//! `.so` holds the sans-IO adapter and the plugin ABI but no HTTP client: the host does all I/O
//! (a cdylib's own tokio cannot use the host's reactor). Before building, the dependency graph
//! of each plugin build is checked for reqwest and hyper, and the build fails if they crept in.
//!
//! The default profile is `dev` (it shares the test build's cache, which is what CI wants);
//! ship `--release` builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::root;

/// Crates built as plugins, and the feature that makes each export its adapter (`None`: the
/// crate is a plugin as it is).
pub const PLUGIN_CRATES: [(&str, Option<&str>); 6] = [
    ("claudette-openai", Some("plugin")),
    ("claudette-anthropic", Some("plugin")),
    ("claudette-ollama", Some("plugin")),
    ("claudette-gemini", Some("plugin")),
    ("claudette-qwen", Some("plugin")),
    ("claudette-custom-backend", None),
];

/// Crates that must never be linked into a plugin.
const FORBIDDEN_IN_PLUGINS: [&str; 2] = ["reqwest", "hyper"];

fn cargo_cmd() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// The workspace's target directory (honours `CARGO_TARGET_DIR` and config).
fn target_dir() -> Result<PathBuf> {
    let out = cargo_cmd()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("reading cargo metadata")?;
    meta["target_directory"].as_str().map(PathBuf::from).context("cargo metadata has no target_directory")
}

/// Fails if the plugin build of `package` would link a forbidden crate.
fn check_graph(package: &str, feature: Option<&str>) -> Result<()> {
    let mut cmd = cargo_cmd();
    cmd.args(["tree", "-p", package, "-e", "normal", "--prefix", "none"]);
    if let Some(f) = feature {
        cmd.args(["--no-default-features", "--features", f]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().context("running cargo tree")?;
    if !out.status.success() {
        bail!("cargo tree -p {package} failed ({})", out.status);
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if FORBIDDEN_IN_PLUGINS.contains(&name) {
            bail!("the plugin build of {package} links `{name}`: plugins must stay sans-IO");
        }
    }
    Ok(())
}

/// Builds `package`'s library as a cdylib and returns the path cargo reports for it.
pub fn build_cdylib(package: &str, feature: Option<&str>, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo_cmd();
    cmd.args([
        "rustc",
        "-p",
        package,
        "--lib",
        "--crate-type",
        "cdylib",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    if let Some(f) = feature {
        cmd.args(["--no-default-features", "--features", f]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().context("running cargo rustc")?;
    if !out.status.success() {
        bail!("building {package} as a plugin failed ({})", out.status);
    }
    let suffix = std::env::consts::DLL_SUFFIX;
    for line in out.stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        // Dependencies (proc macros are `.so` files too) are reported as well: only the
        // package's own cdylib counts.
        let own =
            msg["target"]["name"].as_str().is_some_and(|n| n.replace('-', "_") == package.replace('-', "_"));
        let cdylib = msg["target"]["crate_types"].as_array().is_some_and(|t| t.iter().any(|k| k == "cdylib"));
        if msg["reason"] != "compiler-artifact" || !own || !cdylib {
            continue;
        }
        let files = msg["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str());
        for file in files {
            if file.ends_with(suffix) {
                return Ok(PathBuf::from(file));
            }
        }
    }
    bail!("cargo built {package} but reported no {suffix} file")
}

fn sha256_hex(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

pub fn plugins(args: &[String]) -> Result<()> {
    let mut release = false;
    let mut out: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--release" => release = true,
            "--out" => out = Some(PathBuf::from(it.next().context("--out needs a directory")?)),
            other => bail!("unknown argument `{other}` (usage: cargo xtask plugins [--release] [--out DIR])"),
        }
    }
    let out = match out {
        Some(dir) => dir,
        None => target_dir()?.join("plugins"),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut built = Vec::new();
    for (package, feature) in PLUGIN_CRATES {
        check_graph(package, feature)?;
        let artifact = build_cdylib(package, feature, release)?;
        let name = artifact.file_name().context("artifact without a file name")?;
        let dest = out.join(name);
        // A new file (new inode), never an overwrite: a running host may have the old one mapped.
        let _ = std::fs::remove_file(&dest);
        std::fs::copy(&artifact, &dest)
            .with_context(|| format!("copying {} to {}", artifact.display(), dest.display()))?;
        let size = std::fs::metadata(&dest)?.len();
        built.push((package, dest, size, sha256_hex(&artifact)?));
    }
    println!("\nplugins in {} ({} profile):", out.display(), if release { "release" } else { "dev" });
    for (package, path, size, sha) in &built {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        println!("  {package:<26} {file:<36} {:>8.1} KiB  sha256 {sha}", *size as f64 / 1024.0);
    }
    Ok(())
}
