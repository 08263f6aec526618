//! Builds the real plugin files the integration tests load.
//!
//! The provider plugins come from `cargo xtask plugins` itself (run once per test binary), so
//! the tests load exactly what the xtask ships. The misbehaving fixture plugins
//! (`tests/fixture-plugin`, one build per feature set) are built the same way, with
//! `cargo rustc --crate-type cdylib`. Both go to the workspace's normal target directory and
//! share its cache; `cargo test` does not hold the build lock while tests run.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// One build at a time per test binary (they share output paths).
static BUILD: Mutex<()> = Mutex::new(());

/// A directory that lives as long as the test binary.
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The provider plugins and the example plugin, built by `cargo xtask plugins`: a directory
/// holding `libclaudette_{openai,anthropic,ollama,gemini,qwen,custom_backend}.so`.
pub fn xtask_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let out = scratch().join("xtask-plugins");
        let status = cargo()
            .args(["run", "--quiet", "-p", "xtask", "--", "plugins", "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("running cargo xtask plugins");
        assert!(status.success(), "cargo xtask plugins failed: {status}");
        out
    })
}

/// The path of one provider's plugin file, e.g. `plugin_file("openai")`.
pub fn plugin_file(crate_suffix: &str) -> PathBuf {
    let name =
        format!("{}claudette_{crate_suffix}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let path = xtask_plugins().join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Builds the fixture plugin with `features` (comma-separated, may be empty) and returns a copy
/// that stays put while other variants are built.
pub fn fixture(features: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(p) = built.lock().unwrap().get(features) {
        return p.clone();
    }
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.lock().unwrap().get(features) {
        return p.clone();
    }
    let mut cmd = cargo();
    cmd.args([
        "rustc",
        "--quiet",
        "-p",
        "claudette-plugin-fixture",
        "--lib",
        "--crate-type",
        "cdylib",
        "--message-format=json-render-diagnostics",
    ]);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("running cargo rustc");
    assert!(out.status.success(), "building the fixture plugin with `{features}` failed");
    let artifact = out
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "claudette_plugin_fixture")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|f| f.to_string_lossy().ends_with(std::env::consts::DLL_SUFFIX))
        .expect("cargo reported no fixture library");
    let name = if features.is_empty() { "default".to_owned() } else { features.replace(',', "+") };
    let dir = scratch().join("fixtures").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(artifact.file_name().unwrap());
    std::fs::copy(&artifact, &copy).unwrap();
    built.lock().unwrap().insert(features.to_owned(), copy.clone());
    copy
}

/// A fresh private plugin directory (`0700`, in the system temp dir).
pub fn plugin_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("claudette-plugins-").tempdir().unwrap()
}

/// Copies `file` into `dir` under `name`, readable and executable by its owner only.
pub fn install(file: &Path, dir: &Path, name: &str) -> PathBuf {
    let dest = dir.join(name);
    std::fs::copy(file, &dest).unwrap();
    set_mode(&dest, 0o700);
    dest
}

#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
pub fn set_mode(_path: &Path, _mode: u32) {}

/// Whether the library at `path` is mapped into this process (Linux: `/proc/self/maps`; always
/// `false` elsewhere), to prove a refused file was never opened.
pub fn is_mapped(path: &Path) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.contains(path.to_str().unwrap())
}
