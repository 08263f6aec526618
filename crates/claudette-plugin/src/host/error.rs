//! Why a plugin was refused.

use std::path::PathBuf;

use claudette_core::{BackendError, Origin};

/// A plugin that was not loaded, or whose adapter could not be built. Every variant names the
/// file; the host logs it and goes on without that plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The file (or the plugin directory) could not be read.
    #[error("plugin {}: cannot read it: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The dynamic loader refused the file (not a shared library, wrong architecture...).
    #[error("plugin {}: not a loadable library: {reason}", path.display())]
    NotALibrary { path: PathBuf, reason: String },

    /// A library, but it exports no Claudette root module.
    #[error("plugin {}: not a Claudette plugin (no root module exported): {reason}", path.display())]
    NoRootModule { path: PathBuf, reason: String },

    /// abi_stable refused the library: another abi_stable ABI, another release of
    /// `claudette-plugin`, or a root module whose type layout differs (reliability-spec F-33),
    /// as a plugin of an earlier schema has (schema 6 added two adapter methods). The message
    /// says what to do, since the reason is abi_stable's, in terms of type layouts.
    #[error(
        "plugin {}: built against an incompatible plugin interface (rebuild it against this host's claudette-plugin): {reason}",
        path.display()
    )]
    IncompatibleInterface { path: PathBuf, reason: String },

    /// The plugin reports another [`ABI_VERSION`](crate::ABI_VERSION) (F-33).
    #[error("plugin {}: plugin ABI version {found}, this host speaks version {expected}", path.display())]
    AbiVersion { path: PathBuf, found: u64, expected: u32 },

    /// The plugin was built against another [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) of the
    /// data model (F-33).
    #[error(
        "plugin {}: built against claudette-core schema version {found}, this host uses version {expected}",
        path.display()
    )]
    SchemaVersion { path: PathBuf, found: u32, expected: u32 },

    /// The descriptor could not be read or is not acceptable.
    #[error("plugin {}: bad descriptor: {reason}", path.display())]
    BadDescriptor { path: PathBuf, reason: String },

    /// Plugin code panicked (caught inside the plugin; the host is unaffected).
    #[error("plugin {}: panicked in {during}: {message}", path.display())]
    Panicked { path: PathBuf, during: &'static str, message: String },

    /// The provider's constructor returned an error (bad settings, typically).
    #[error("plugin {} (provider `{provider}`): constructor failed: {error}", path.display())]
    ConstructorFailed { path: PathBuf, provider: String, error: BackendError },

    /// The provider's constructor panicked (caught inside the plugin).
    #[error("plugin {} (provider `{provider}`): constructor panicked: {message}", path.display())]
    ConstructorPanicked { path: PathBuf, provider: String, message: String },

    /// Another provider with this name is registered already. The name comes from the
    /// plugin's own descriptor, which only runs once the library is opened, so the refusal
    /// usually follows the opening (before anything of the plugin is built or registered).
    /// The exception: a file byte-for-byte identical to one that already declared the name
    /// (`identical_to`) is refused from that declaration, before it is opened.
    #[error(
        "plugin {}: provider `{name}` is already provided by {first}{}",
        path.display(),
        identical_note(path, identical_to.as_deref())
    )]
    DuplicateName { path: PathBuf, name: String, first: Origin, identical_to: Option<PathBuf> },

    /// An allow-list is configured and does not name this file (F-34).
    #[error("plugin {}: not in the plugin allow-list; refused before opening it", path.display())]
    NotAllowListed { path: PathBuf },

    /// The file's SHA-256 is not the allow-listed one (F-34).
    #[error(
        "plugin {}: SHA-256 {found} does not match the allow-listed {expected}; refused before opening it",
        path.display()
    )]
    HashMismatch { path: PathBuf, expected: String, found: String },

    /// The file, its directory or a parent directory can be written by other users (F-34,
    /// reliability-spec S-13).
    #[error(
        "plugin {}: {what} {} is group- or world-writable (mode {mode:o}); refused before opening the plugin",
        path.display(),
        offender.display()
    )]
    Writable { path: PathBuf, what: &'static str, offender: PathBuf, mode: u32 },

    /// The file or the plugin directory is a symbolic link (F-34).
    #[error("plugin {}: {} is a symbolic link; refused before opening the plugin", path.display(), link.display())]
    Symlink { path: PathBuf, link: PathBuf },

    /// The file or a directory on its path belongs to another user than the service user or
    /// root (S-13).
    #[error(
        "plugin {}: {what} {} is owned by uid {owner}, not by this process's user ({expected}) or root",
        path.display(),
        offender.display()
    )]
    Owner { path: PathBuf, what: &'static str, offender: PathBuf, owner: u32, expected: u32 },

    /// Not a regular file (a directory or a device named `*.so`).
    #[error("plugin {}: not a regular file", path.display())]
    NotAFile { path: PathBuf },

    /// The private runtime directory plugins are copied to is unusable.
    #[error("plugin runtime directory {}: {reason}", dir.display())]
    RuntimeDir { dir: PathBuf, reason: String },
}

/// The end of a [`PluginError::DuplicateName`] message refused before opening.
fn identical_note(path: &std::path::Path, twin: Option<&std::path::Path>) -> String {
    match twin {
        None => String::new(),
        Some(twin) if twin == path => {
            " (this file declared that name when it was loaded before; refused before opening it again)"
                .into()
        }
        Some(twin) => {
            format!(
                " (this file is identical to {}, which declared that name; refused before opening it)",
                twin.display()
            )
        }
    }
}

impl PluginError {
    /// The plugin file this error is about (the runtime directory for
    /// [`PluginError::RuntimeDir`]).
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Io { path, .. }
            | Self::NotALibrary { path, .. }
            | Self::NoRootModule { path, .. }
            | Self::IncompatibleInterface { path, .. }
            | Self::AbiVersion { path, .. }
            | Self::SchemaVersion { path, .. }
            | Self::BadDescriptor { path, .. }
            | Self::Panicked { path, .. }
            | Self::ConstructorFailed { path, .. }
            | Self::ConstructorPanicked { path, .. }
            | Self::DuplicateName { path, .. }
            | Self::NotAllowListed { path }
            | Self::HashMismatch { path, .. }
            | Self::Writable { path, .. }
            | Self::Symlink { path, .. }
            | Self::Owner { path, .. }
            | Self::NotAFile { path } => path,
            Self::RuntimeDir { dir, .. } => dir,
        }
    }

    /// This error as a [`BackendError`], for a registry factory: a constructor error keeps its
    /// kind (usually `Config`) and gains the plugin's name; anything else is `Internal`.
    pub fn into_backend_error(self) -> BackendError {
        match self {
            Self::ConstructorFailed { path, provider, mut error } => {
                error.message =
                    format!("plugin {} (provider `{provider}`): {}", path.display(), error.message);
                error
            }
            other => {
                let panicked = matches!(other, Self::ConstructorPanicked { .. } | Self::Panicked { .. });
                let e = BackendError::internal(other.to_string());
                if panicked { e.with_code(crate::PANIC_CODE) } else { e }
            }
        }
    }
}
