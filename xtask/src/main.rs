//! `cargo xtask <task>`: project automation that is not a test.
//!
//! - `bench [core]`: the criterion/divan benchmarks (selection, breaker). Never part of CI's
//!   test run: speed is measured on demand, not asserted.
//! - `bench gateway [--no-pgo] [--no-bolt]`: gateway overhead against a direct baseline
//!   (throughput, added latency, CPU per request, RSS), JSON and SSE, on loopback; the gateway
//!   is the profile-guided (and, with `llvm-bolt` installed, BOLT-optimised) build, measured
//!   beside the plain one.
//! - `pgo`: the profile-guided release build of the `claudette` binary (`pgo.rs`), then its
//!   BOLT pass when `llvm-bolt` is installed (`bolt.rs`).
//! - `bench plugins`: per-call overhead of a run-time plugin adapter against the linked one.
//! - `plugins [--release] [--out DIR]`: builds every provider (and the example plugin) as a
//!   run-time plugin `.so` into `target/plugins/` and prints name, size and SHA-256.
//! - `conformance`: starts the real third-party servers of `../shared/testbed/` (if installed),
//!   runs the provider conformance tests against them, and stops what it started.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod bolt;
mod pgo;
mod plugins;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench(args.get(1).map(String::as_str), args.get(2..).unwrap_or_default()),
        Some("conformance") => conformance(),
        Some("pgo") => pgo::pgo(),
        Some("plugins") => plugins::plugins(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <bench [core|gateway [--no-pgo] [--no-bolt]|plugins]|pgo|plugins|conformance>"
            );
            bail!("unknown or missing task")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs cargo in the workspace root, with `env` added (and printed) for this call only.
fn cargo(args: &[&str], env: &[(&str, &OsStr)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={} ", v.to_string_lossy())).collect();
    println!("$ {}cargo {}", shown.concat(), args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn bench(which: Option<&str>, rest: &[String]) -> Result<()> {
    match which {
        None | Some("core") => cargo(&["bench", "-p", "claudette-core", "--bench", "core"], &[]),
        Some("gateway") => {
            bench_gateway(rest.iter().any(|a| a == "--no-pgo"), rest.iter().any(|a| a == "--no-bolt"))
        }
        Some("plugins") => cargo(&["bench", "-p", "claudette-plugin", "--bench", "ffi"], &[]),
        Some(other) => bail!("unknown bench `{other}` (known: core, gateway, plugins)"),
    }
}

/// The gateway benchmark measures the gateway as it is shipped, from the profile-guided
/// build (see `pgo.rs`), beside the plain release build of the same code; the upstream, the
/// floor proxy and the load generator are the plain build. `--no-pgo` (or a toolchain without
/// `llvm-profdata`) measures the plain build only; `--no-bolt` skips the BOLT pass.
fn bench_gateway(no_pgo: bool, no_bolt: bool) -> Result<()> {
    cargo(&["build", "--release", "-p", "claudette-gateway", "--example", "bench_gateway"], &[])?;
    let mut run = Command::new(root().join("target/release/examples/bench_gateway"));
    if !no_pgo {
        match pgo::build(!no_bolt) {
            Ok(built) => {
                run.env("BENCH_GATEWAY_BIN", built.bench_gateway).env("BENCH_GATEWAY_BUILD", built.passes);
            }
            Err(e) => println!("no profile-guided build ({e:#}); measuring the plain release build only"),
        }
    }
    let status = run.status().context("running bench_gateway")?;
    if !status.success() {
        bail!("bench_gateway failed ({status})");
    }
    Ok(())
}

/// Ports and readiness paths of the testbed servers (see ../shared/testbed/README.md).
const SERVERS: [(&str, u16, &str); 3] =
    [("llama", 39180, "/health"), ("lcp", 39181, "/v1/models"), ("ollama", 39183, "/health")];

fn up(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1.") && &buf[9..10] == b"2")
}

fn conformance() -> Result<()> {
    let testbed = root().join("../shared/testbed");
    let mut started = false;
    if SERVERS.iter().all(|(_, p, path)| up(*p, path)) {
        println!("testbed servers already running");
    } else if Path::new("/opt/claudette-testbed/llama-build/bin/llama-server").exists() {
        let names: Vec<&str> =
            SERVERS.iter().filter(|(_, p, path)| !up(*p, path)).map(|(n, _, _)| *n).collect();
        println!("starting testbed servers: {}", names.join(" "));
        let status = Command::new("bash")
            .arg(testbed.join("start.sh"))
            .args(&names)
            .status()
            .context("running testbed start.sh")?;
        if !status.success() {
            bail!("testbed start.sh failed ({status})");
        }
        started = true;
    } else {
        println!(
            "testbed not installed (run {}/setup.sh, ~15 min); conformance tests will print why they skip",
            testbed.display()
        );
    }
    let result = cargo(
        &[
            "test",
            "-p",
            "claudette-openai",
            "-p",
            "claudette-anthropic",
            "-p",
            "claudette-ollama",
            "-p",
            "claudette-qwen",
            "--test",
            "testbed",
            "--",
            "--nocapture",
        ],
        &[],
    );
    if started {
        let _ = Command::new("bash").arg(testbed.join("stop.sh")).status();
    }
    result
}
