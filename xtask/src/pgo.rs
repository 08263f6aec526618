//! `cargo xtask pgo`: the release build of the `claudette` binary (and of the gateway
//! benchmark, which serves with the same code) optimised with a profile of the gateway's own
//! request path.
//!
//! Why: on the 2-core development machine the gateway spends its time in code spread over
//! hyper, tokio, serde and its own crates, and ran at about a third of an instruction per cycle
//! (50k instructions per JSON request under callgrind, 55–65 µs of CPU). A profile-guided
//! build lays the hot path out together and inlines along it; measured interleaved against the
//! plain release build (same upstream, same load), it cut the gateway's CPU per request by
//! about 40 % for JSON and SSE. The plain build stays what `cargo build --release` makes.
//!
//! Steps, each in its own target directory so neither invalidates the everyday `target/`:
//! 1. an instrumented build (`-Cprofile-generate`) in `target/pgo-gen`;
//! 2. training: `bench_gateway pgo-train` runs the instrumented gateway in front of the plain
//!    build's fake upstream under the benchmark's JSON and SSE load;
//! 3. `llvm-profdata merge` (from `rustup component add llvm-tools`, or on `PATH`);
//! 4. the optimised build (`-Cprofile-use`) in `target/pgo`. The profile's file name carries a
//!    hash of its contents, so a new profile changes the flags and cargo rebuilds (it does not
//!    track the contents of a file named in `RUSTFLAGS`);
//! 5. when `llvm-bolt` is installed, a BOLT layout pass over both binaries, each trained again
//!    on its own (`bolt.rs`), into `target/pgo/bolt/`. Step 4 then links with
//!    `--emit-relocs`, which BOLT needs to move functions.
//!
//! `--target <host>` is passed so the flags reach only the binaries, not build scripts and
//! proc macros (which would otherwise run instrumented during the build and add to the
//! profile).

use std::hash::{DefaultHasher, Hasher};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{bolt, cargo, root};

/// What the profile-guided build produced.
pub struct Built {
    pub bench_gateway: PathBuf,
    pub claudette: PathBuf,
    /// What was applied: "PGO", or "PGO + BOLT".
    pub passes: &'static str,
}

/// The packages and targets built in one invocation, so both binaries resolve the same
/// features and share every crate (a profile matches functions by their symbols).
const TARGETS: [&str; 8] =
    ["-p", "claudette-gateway", "--example", "bench_gateway", "-p", "claudette-cli", "--bin", "claudette"];

pub fn pgo() -> Result<()> {
    let built = build(true)?;
    println!(
        "optimised builds ({}):\n  {}\n  {}",
        built.passes,
        built.claudette.display(),
        built.bench_gateway.display()
    );
    Ok(())
}

/// Runs the steps (BOLT's only if `with_bolt` and it is installed); the plain release build of
/// `bench_gateway` is made if missing (it is the training's upstream and load generator).
pub fn build(with_bolt: bool) -> Result<Built> {
    let root = root();
    let host = host()?;
    let profdata = llvm_profdata(&host)?;
    let bolt = if with_bolt { bolt::find() } else { None };
    if with_bolt && bolt.is_none() {
        println!("llvm-bolt not found (Debian: `apt-get install bolt-16`): no BOLT pass");
    }
    let plain = root.join("target/release/examples/bench_gateway");
    if !plain.exists() {
        cargo(&["build", "--release", "-p", "claudette-gateway", "--example", "bench_gateway"], &[])?;
    }

    let gen_dir = root.join("target/pgo-gen");
    let raw = gen_dir.join("profiles");
    if raw.exists() {
        std::fs::remove_dir_all(&raw).with_context(|| format!("clearing {}", raw.display()))?;
    }
    let flags = format!("-Cprofile-generate={}", raw.display());
    let mut args = vec!["build", "--release", "--target", host.as_str()];
    args.extend(TARGETS);
    cargo(&args, &[("CARGO_TARGET_DIR", gen_dir.as_os_str()), ("RUSTFLAGS", flags.as_ref())])?;

    let instrumented = gen_dir.join(&host).join("release/examples/bench_gateway");
    println!("$ {} pgo-train {}", plain.display(), instrumented.display());
    let status = Command::new(&plain)
        .arg("pgo-train")
        .arg(&instrumented)
        .status()
        .context("running the training load")?;
    if !status.success() {
        bail!("the training run failed ({status})");
    }

    let merged_tmp = gen_dir.join("merged.profdata");
    let status = Command::new(&profdata)
        .arg("merge")
        .arg("-o")
        .arg(&merged_tmp)
        .arg(&raw)
        .status()
        .with_context(|| format!("running {}", profdata.display()))?;
    if !status.success() {
        bail!("{} merge failed ({status})", profdata.display());
    }
    let bytes = std::fs::read(&merged_tmp).with_context(|| format!("reading {}", merged_tmp.display()))?;
    let mut hasher = DefaultHasher::new();
    hasher.write(&bytes);
    let use_dir = root.join("target/pgo");
    std::fs::create_dir_all(&use_dir).with_context(|| format!("creating {}", use_dir.display()))?;
    let merged = use_dir.join(format!("claudette-{:016x}.profdata", hasher.finish()));
    std::fs::write(&merged, &bytes).with_context(|| format!("writing {}", merged.display()))?;

    let mut flags = format!("-Cprofile-use={}", merged.display());
    if bolt.is_some() {
        flags.push_str(" -Clink-arg=-Wl,--emit-relocs");
    }
    cargo(&args, &[("CARGO_TARGET_DIR", use_dir.as_os_str()), ("RUSTFLAGS", flags.as_ref())])?;
    let out = use_dir.join(&host).join("release");
    let pgo = Built {
        bench_gateway: out.join("examples/bench_gateway"),
        claudette: out.join("claudette"),
        passes: "PGO",
    };
    let Some(bolt) = bolt else { return Ok(pgo) };

    let bolt_dir = use_dir.join("bolt");
    std::fs::create_dir_all(&bolt_dir).with_context(|| format!("creating {}", bolt_dir.display()))?;
    let optimised = Built {
        bench_gateway: bolt_dir.join("bench_gateway"),
        claudette: bolt_dir.join("claudette"),
        passes: "PGO + BOLT",
    };
    bolt::optimise(&bolt, &pgo.bench_gateway, &optimised.bench_gateway, &plain, "pgo-train")?;
    bolt::optimise(&bolt, &pgo.claudette, &optimised.claudette, &plain, "pgo-train-serve")?;
    Ok(optimised)
}

/// The host triple, from `rustc -vV`.
fn host() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output().context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host triple")
}

/// `llvm-profdata` of the toolchain's own LLVM (the profile format follows the LLVM version),
/// else one on `PATH`.
fn llvm_profdata(host: &str) -> Result<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot =
        Command::new(rustc).args(["--print", "sysroot"]).output().context("running rustc --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let own = sysroot.join("lib/rustlib").join(host).join("bin/llvm-profdata");
    if own.exists() {
        return Ok(own);
    }
    if let Some(found) = on_path("llvm-profdata") {
        return Ok(found);
    }
    bail!("llvm-profdata not found: install it with `rustup component add llvm-tools`")
}

pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_triple_is_read_from_rustc() {
        let host = super::host().unwrap();
        assert!(host.starts_with(std::env::consts::ARCH), "{host}");
        assert!(host.contains(std::env::consts::OS), "{host}");
    }

    /// Either a real `llvm-profdata` is found, or the error says how to install one.
    #[test]
    fn llvm_profdata_is_found_or_the_error_says_how_to_get_it() {
        match super::llvm_profdata(&super::host().unwrap()) {
            Ok(path) => assert!(path.is_file(), "{}", path.display()),
            Err(e) => assert!(e.to_string().contains("rustup component add llvm-tools"), "{e:#}"),
        }
    }
}
