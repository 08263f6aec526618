//! [`ConfigError`]: every way a configuration can be wrong, each naming where.

use std::path::PathBuf;

/// A configuration that cannot be used.
///
/// Every variant says *where* the problem is: a file position for TOML syntax, a key path such
/// as `backends[1].pricing.input_per_1k` for a bad value, an environment variable for an
/// override. Messages never contain a secret: keys are read from the environment and hashed or
/// wrapped at once, and a value is only quoted when it is not one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: invalid TOML: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    /// A value is missing, has the wrong type, or is not allowed. `key` is a path into the
    /// configuration (`router.failover_chain[2]`); `origin` names what set it when that was not
    /// the file: `environment variable CLAUDETTE__ROUTER__COST_WEIGHT`, or a flag (`--listen`).
    #[error("{key}: {reason}{}", origin.as_ref().map(|o| format!(" (set by {o})")).unwrap_or_default())]
    Invalid { key: String, reason: String, origin: Option<String> },
    /// An override variable (`CLAUDETTE__…`) that cannot be applied.
    #[error("environment variable {var}: {reason}")]
    Override { var: String, reason: String },
    /// Nothing to route to.
    #[error("no backends configured: {hint}")]
    NoBackends { hint: String },
}

impl ConfigError {
    /// A bad value at `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), reason: reason.into(), origin: None }
    }

    /// The key path of an [`Invalid`](Self::Invalid) error.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}
