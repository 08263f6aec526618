//! The last step of `cargo xtask pgo`: a post-link layout pass with LLVM BOLT over the
//! profile-guided binaries, when `llvm-bolt` is installed (Debian: `apt-get install bolt-16`).
//!
//! Why: at the benchmark's fixed 400 req/s every request finds the machine idle and the
//! gateway's code cold, so it spent about 120 µs of CPU per request against about 31 µs under
//! saturation, while the syscalls were already minimal. That is instruction-cache and TLB
//! cost, which is what BOLT's block and function reordering addresses: it puts the request
//! path's hot code together (here about 0.5 MiB, on a 2 MiB-aligned boundary the kernel can
//! map with one huge page) and the rest out of the way. Measured interleaved against the
//! profile-guided binary at 400 req/s, it cut the gateway's user CPU per request by about 15 %.
//!
//! BOLT's profile is per binary (it matches functions and offsets in the linked file), so each
//! binary is instrumented and trained on its own: the benchmark's gateway through
//! `bench_gateway pgo-train`, the `claudette` binary through `bench_gateway pgo-train-serve`,
//! which serves it from a configuration naming the benchmark's upstream. The instrumented
//! binary writes its profile when it exits normally. The input must keep its relocations
//! (`--emit-relocs`, see `pgo.rs`) so BOLT may move functions, not just blocks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::pgo::on_path;

/// Options of the optimising pass (LLVM 15 and 16 accept all of them).
const OPTIMISE: [&str; 9] = [
    "-reorder-blocks=ext-tsp",
    "-reorder-functions=hfsort+",
    "-split-functions",
    "-split-all-cold",
    "-split-eh",
    "-icf=1",
    "-use-gnu-stack",
    "-peepholes=all",
    "-dyno-stats",
];

/// `llvm-bolt` on `PATH`, else the newest of Debian's versioned ones (`/usr/lib/llvm-N/bin`).
pub fn find() -> Option<PathBuf> {
    on_path("llvm-bolt").or_else(|| newest_versioned(Path::new("/usr/lib")))
}

/// The `llvm-N/bin/llvm-bolt` under `lib` with the highest N (numerically: 16 over 9).
fn newest_versioned(lib: &Path) -> Option<PathBuf> {
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version: u32 = name.strip_prefix("llvm-")?.parse().ok()?;
            let bolt = lib.join(&name).join("bin/llvm-bolt");
            bolt.is_file().then_some((version, bolt))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, path)| path)
}

/// Instruments `input`, runs `bench_gateway <train> <instrumented>` to profile it, and writes
/// the optimised binary to `output`.
pub fn optimise(bolt: &Path, input: &Path, output: &Path, bench_gateway: &Path, train: &str) -> Result<()> {
    let work = output.with_extension("bolt-work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let instrumented = work.join("instrumented");
    let profile = work.join("profile.fdata");
    if profile.exists() {
        std::fs::remove_file(&profile).with_context(|| format!("removing {}", profile.display()))?;
    }
    run(Command::new(bolt)
        .arg(input)
        .arg("-instrument")
        .arg(format!("-instrumentation-file={}", profile.display()))
        .arg("-o")
        .arg(&instrumented))?;
    run(Command::new(bench_gateway).arg(train).arg(&instrumented))?;
    if !profile.is_file() {
        bail!("the instrumented {} wrote no profile at {}", input.display(), profile.display());
    }
    run(Command::new(bolt)
        .arg(input)
        .arg("-o")
        .arg(output)
        .arg(format!("-data={}", profile.display()))
        .args(OPTIMISE))
}

/// Runs a command, showing it, and fails with its exit status. BOLT's own report (dyno stats:
/// taken branches before and after) goes to the terminal.
fn run(cmd: &mut Command) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let shown: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    println!("$ {program} {}", shown.join(" "));
    let status = cmd.status().with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", shown.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    /// The highest version wins numerically, directories without the binary and other
    /// `llvm-*` names are skipped, and an empty tree finds nothing.
    #[test]
    fn the_newest_versioned_llvm_bolt_is_chosen() {
        let lib = std::env::temp_dir().join(format!("xtask-bolt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&lib);
        std::fs::create_dir_all(&lib).unwrap();
        assert_eq!(super::newest_versioned(&lib), None);
        touch(&lib.join("llvm-9/bin/llvm-bolt"));
        touch(&lib.join("llvm-16/bin/llvm-bolt"));
        touch(&lib.join("llvm-15/bin/llvm-bolt"));
        std::fs::create_dir_all(lib.join("llvm-17/bin")).unwrap(); // no llvm-bolt in it
        touch(&lib.join("llvm-tools/bin/llvm-bolt"));
        assert_eq!(super::newest_versioned(&lib), Some(lib.join("llvm-16/bin/llvm-bolt")));
        std::fs::remove_dir_all(&lib).unwrap();
    }
}
