//! What every command shares: loading the configuration, building the router, errors and exit
//! codes, logging.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use claudette::{BackendRouter, PluginReport};
use claudette_config::{Config, ConfigError, ProcessEnv};

/// A command's failure: one line for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Exit 1: the command ran and failed.
    pub fn failure(message: impl Into<String>) -> Self {
        Self { code: 1, message: message.into() }
    }
    /// Exit 2: the command was called wrongly.
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: 2, message: message.into() }
    }
    /// Exit 130: stopped by Ctrl-C / SIGTERM before finishing.
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self { code: 130, message: message.into() }
    }

    /// Exit 0 without a word: the reader of stdout went away (`claudette chat … | head -c1`).
    /// Stopping is what it asked for, so it is neither a failure nor worth a message.
    pub fn stdout_closed() -> Self {
        Self { code: 0, message: String::new() }
    }

    pub fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            // One line, whatever the message holds. `eprintln!` would panic on a closed stderr.
            let line = self.message.replace('\n', " ");
            let _ = writeln!(std::io::stderr(), "claudette: error: {line}");
        }
        ExitCode::from(self.code)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::failure(format!("invalid configuration: {e}"))
    }
}

/// What a failed write to stdout means for the command: a closed pipe ends it quietly; any
/// other error (a full disk behind `> file`) is a failure, because the answer did not arrive.
pub(crate) fn stdout_error(e: &std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::stdout_closed()
    } else {
        CliError::failure(format!("cannot write to stdout: {e}"))
    }
}

/// Writes and flushes `text` to stdout. Used instead of `print!`, which panics when the reader
/// has gone away.
pub(crate) fn print_out(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| stdout_error(&e))
}

/// `println!` that returns a [`CliError`] instead of panicking on a closed or full stdout.
macro_rules! outln {
    () => {
        $crate::common::print_out("\n")
    };
    ($($arg:tt)*) => {
        $crate::common::print_out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `eprintln!` that never panics: stderr carries progress and summaries, and a daemon started
/// with it closed (`claudette serve 2>&-`) must keep serving rather than die on a log line.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use note;

/// Loads the configuration the usual way (see `CONFIG_HELP`).
pub(crate) fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    Ok(Config::load(path, &ProcessEnv)?)
}

/// Builds the router with every provider this binary links, plus the plugins of
/// `server.plugin_dirs`.
pub(crate) fn build_router(config: &Config) -> Result<Arc<BackendRouter>, CliError> {
    build_router_with_plugins(config).map(|(router, _)| router)
}

/// Like [`build_router`], also saying which plugins loaded and which were refused. The facade's
/// [`claudette::build_router`] does the work, so the binary and `Claudette::from_config` load
/// the same plugins: a refused plugin does not stop the others or the linked providers (a
/// backend that needs its provider then fails with "unknown provider", naming the key).
pub(crate) fn build_router_with_plugins(
    config: &Config,
) -> Result<(Arc<BackendRouter>, PluginReport), CliError> {
    Ok(claudette::build_router(config)?)
}

/// Logs go to stderr. `serve` logs requests at info; other commands only warnings, so their
/// stdout and stderr stay readable. `CLAUDETTE_LOG` (or `RUST_LOG`) overrides, e.g.
/// `CLAUDETTE_LOG=debug`.
pub(crate) fn init_logging(serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = std::env::var("CLAUDETTE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // On a failed write the formatter reports it with `eprintln!`, which panics when
        // stderr is closed: a daemon must not die of its own log line.
        .log_internal_errors(false)
        .try_init();
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed by this call, not when
/// the future is first polled: `serve` announces its address before its server polls the
/// shutdown future, and a SIGTERM sent in between (a supervisor, a test) must still drain and
/// exit 0 rather than kill the process with the signal's default action.
pub(crate) fn termination_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                    one.recv().await;
                }
                (Err(_), Err(_)) => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `$0.000123` with enough digits for the tiny amounts one request costs.
pub(crate) fn money(x: f64) -> String {
    if x == 0.0 {
        "$0".into()
    } else if x.abs() >= 1.0 {
        format!("${x:.2}")
    } else if x.abs() >= 0.01 {
        format!("${x:.4}")
    } else {
        format!("${x:.6}")
    }
}

/// A short, safe description of a backend for logs and tables: never the key.
pub(crate) fn describe_backend(b: &dyn claudette::Backend) -> (String, String, String) {
    let info = b.info();
    (info.name.clone(), info.provider.clone(), info.model.clone())
}
