//! Finding, checking and loading plugin files, and registering them.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use abi_stable::library::{LibraryError, RootModuleError, lib_header_from_path};
use abi_stable::std_types::{RErr, ROk, RStr};
use claudette_core::{
    BackendError, BackendSettings, BuildFn, Origin, Registry, RegistryError, SharedBackend,
};
use sha2::{Digest, Sha256};

use super::adapter::{PluginAdapter, Source};
use super::error::PluginError;
use super::fsck;
use crate::abi::ClaudettePlugin_Ref;
use crate::wire::{AdapterConfig, PANIC_CODE, decode_error};
use crate::{ABI_VERSION, PluginDescriptor, SCHEMA_VERSION};

/// File extensions of plugin libraries, on every platform (a directory is scanned for all).
pub const PLUGIN_EXTENSIONS: [&str; 3] = ["so", "dylib", "dll"];

/// How plugins are loaded. The default checks ownership, permissions and symlinks but has no
/// allow-list and loads files in place.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// File name (`libclaudette_openai.so`) → lowercase hex SHA-256. When set, any other file is
    /// refused, and so is a listed file whose content hash differs, both before the library is
    /// opened (its initialisers never run).
    pub allow_list: Option<HashMap<String, String>>,
    /// A private directory (created `0700` if missing; refused if anyone else can enter it) into
    /// which each plugin is copied before it is hashed and loaded, so the bytes that were
    /// checked are the bytes that run: nobody can swap the file between the check and the load.
    /// Without it the original file is hashed and then opened by path, which leaves that window
    /// open to whoever can write the plugin directory (only the service user or root, given the
    /// permission checks).
    pub copy_to: Option<PathBuf>,
}

impl LoadOptions {
    /// Adds an allow-list entry.
    pub fn allow(mut self, file_name: impl Into<String>, sha256_hex: impl Into<String>) -> Self {
        self.allow_list.get_or_insert_with(HashMap::new).insert(file_name.into(), sha256_hex.into());
        self
    }

    /// Loads copies from this private runtime directory.
    pub fn copy_to(mut self, dir: impl Into<PathBuf>) -> Self {
        self.copy_to = Some(dir.into());
        self
    }
}

/// A plugin library that passed every check and is loaded (for good: libraries are never
/// unloaded, see the crate docs). Cheap to clone.
#[derive(Clone)]
pub struct LoadedPlugin {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    sha256: String,
    descriptor: PluginDescriptor,
    module: ClaudettePlugin_Ref,
    source: Arc<Source>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.inner.path)
            .field("name", &self.inner.descriptor.name)
            .field("version", &self.inner.descriptor.plugin_version)
            .field("sha256", &self.inner.sha256)
            .finish()
    }
}

impl LoadedPlugin {
    /// The provider name this plugin registers.
    pub fn name(&self) -> &str {
        &self.inner.descriptor.name
    }

    pub fn descriptor(&self) -> &PluginDescriptor {
        &self.inner.descriptor
    }

    /// The file as named in the plugin directory (not the private copy that was loaded).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Lowercase hex SHA-256 of the loaded bytes.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The registry origin of this plugin's provider.
    pub fn origin(&self) -> Origin {
        Origin::Plugin(self.inner.path.display().to_string())
    }

    /// Builds this provider's adapter for `settings`. The settings cross without the key (see
    /// [`BackendSettings::to_plugin_json`]); the plugin learns only whether one is set.
    pub fn new_adapter(&self, settings: &BackendSettings) -> Result<PluginAdapter, PluginError> {
        let inner = &self.inner;
        let config = AdapterConfig {
            settings: settings.to_plugin_json(),
            has_api_key: settings.api_key.as_ref().is_some_and(|k| !k.is_empty()),
        };
        let config = serde_json::to_string(&config).map_err(|e| PluginError::ConstructorFailed {
            path: inner.path.clone(),
            provider: inner.descriptor.name.clone(),
            error: BackendError::internal(format!("encode settings for the plugin: {e}")),
        })?;
        let new_adapter = inner.module.new_adapter();
        match new_adapter(RStr::from(config.as_str())) {
            ROk(ffi) => PluginAdapter::new(ffi, Arc::clone(&inner.source)).map_err(|error| {
                PluginError::ConstructorFailed {
                    path: inner.path.clone(),
                    provider: inner.descriptor.name.clone(),
                    error,
                }
            }),
            RErr(e) => {
                let error = decode_error(&e);
                if error.code.as_deref() == Some(PANIC_CODE) {
                    Err(PluginError::ConstructorPanicked {
                        path: inner.path.clone(),
                        provider: inner.descriptor.name.clone(),
                        message: error.message,
                    })
                } else {
                    Err(PluginError::ConstructorFailed {
                        path: inner.path.clone(),
                        provider: inner.descriptor.name.clone(),
                        error,
                    })
                }
            }
        }
    }

    /// A backend of this provider: the plugin's adapter driven by `claudette_http::HttpBackend`,
    /// the same I/O path as a linked provider (the host attaches the key).
    pub fn backend(&self, settings: &BackendSettings) -> Result<SharedBackend, BackendError> {
        let adapter =
            self.new_adapter(settings).map_err(|e| e.into_backend_error().with_backend(&settings.name))?;
        Ok(claudette_http::HttpBackend::new(adapter, settings)?.shared())
    }

    /// The registry factory of this provider.
    pub fn build_fn(&self) -> BuildFn {
        let plugin = self.clone();
        Arc::new(move |settings: &BackendSettings| plugin.backend(settings))
    }

    /// Registers this provider. A name that is taken (by a linked provider or another plugin)
    /// is refused with both origins named.
    pub fn register_into(&self, registry: &mut Registry) -> Result<(), PluginError> {
        let description = format!(
            "{} (plugin {} v{})",
            self.inner.descriptor.description,
            self.inner.path.display(),
            self.inner.descriptor.plugin_version
        );
        registry.add_dynamic(self.name(), description, self.build_fn(), self.origin()).map_err(|e| match e {
            RegistryError::Duplicate { name, first, .. } => {
                PluginError::DuplicateName { path: self.inner.path.clone(), name, first, identical_to: None }
            }
            other => PluginError::BadDescriptor { path: self.inner.path.clone(), reason: other.to_string() },
        })
    }
}

/// What [`load_dir_into`] did: the providers it registered, and every file it refused.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Provider names registered, in file-name order.
    pub loaded: Vec<String>,
    /// One error per refused file (or one for the directory itself).
    pub errors: Vec<PluginError>,
}

/// Loads one plugin file after the checks of [`LoadOptions`] and reliability-spec S-13:
/// the file and every directory above it are owned by this process's user or root and not
/// writable by group or others (a root-owned sticky directory such as `/tmp` is accepted above
/// the plugin directory), neither the file nor its directory is a symlink, and the allow-list
/// (if any) names the file with its hash. Only then is the library opened, its abi_stable
/// header and root-module layout compared with this host's, its [`ABI_VERSION`] and
/// [`SCHEMA_VERSION`] checked and its descriptor read.
pub fn load_file(path: impl AsRef<Path>, options: &LoadOptions) -> Result<LoadedPlugin, PluginError> {
    let path = path.as_ref();
    fsck::check_dir_chain(&parent_dir(path), path)?;
    load_checked(path, options, None)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Loads every `.so`/`.dylib`/`.dll` in `dir` (sorted by name; other files and directories are
/// ignored). Each file is checked and loaded on its own: a bad file is reported in the second
/// vector and the others still load. A directory that fails the checks loads nothing.
///
/// Two files of the same provider name are not refused here (see [`register_all`]).
pub fn load_dir(dir: impl AsRef<Path>, options: &LoadOptions) -> (Vec<LoadedPlugin>, Vec<PluginError>) {
    let (files, mut errors) = plugin_files(dir.as_ref());
    let mut loaded = Vec::new();
    for file in files {
        match load_checked(&file, options, None) {
            Ok(plugin) => loaded.push(plugin),
            Err(e) => errors.push(e),
        }
    }
    (loaded, errors)
}

/// The plugin files of `dir`, sorted by name, once the directory passed its checks; and the
/// errors met on the way (a directory that fails its checks gives no file and one error).
fn plugin_files(dir: &Path) -> (Vec<PathBuf>, Vec<PluginError>) {
    if let Err(e) = fsck::check_dir_chain(dir, dir) {
        return (Vec::new(), vec![e]);
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => return (Vec::new(), vec![PluginError::Io { path: dir.to_path_buf(), source }]),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let p = entry.path();
                let is_plugin = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| PLUGIN_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
                if is_plugin {
                    files.push(p);
                }
            }
            Err(source) => errors.push(PluginError::Io { path: dir.to_path_buf(), source }),
        }
    }
    files.sort();
    (files, errors)
}

/// Registers every plugin; a duplicate name is an error for that plugin only.
pub fn register_all(registry: &mut Registry, plugins: &[LoadedPlugin]) -> (Vec<String>, Vec<PluginError>) {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for plugin in plugins {
        match plugin.register_into(registry) {
            Ok(()) => names.push(plugin.name().to_owned()),
            Err(e) => errors.push(e),
        }
    }
    (names, errors)
}

/// Loads every plugin in `dir` (in file-name order) and registers its provider: what a host
/// calls for each configured plugin directory (`server.plugin_dirs`). Never fails as a whole:
/// each refusal is logged at `warn` and listed in the report, and the host goes on with what
/// loaded.
///
/// A provider name already in `registry` (linked, registered in code, or from a file loaded
/// earlier) is refused as soon as the plugin's descriptor names it, before anything of the
/// plugin is built; a file byte-for-byte identical to one that already declared a taken name
/// is refused before it is even opened (see [`PluginError::DuplicateName`]).
pub fn load_dir_into(registry: &mut Registry, dir: impl AsRef<Path>, options: &LoadOptions) -> LoadReport {
    let (files, mut errors) = plugin_files(dir.as_ref());
    let mut loaded = Vec::new();
    for file in files {
        match load_checked(&file, options, Some(registry)).and_then(|p| p.register_into(registry).map(|()| p))
        {
            Ok(p) => {
                tracing::info!(
                    plugin = %p.path().display(),
                    provider = %p.name(),
                    version = %p.descriptor().plugin_version,
                    sha256 = %p.sha256(),
                    "plugin loaded"
                );
                loaded.push(p.name().to_owned());
            }
            Err(e) => errors.push(e),
        }
    }
    for e in &errors {
        tracing::warn!(plugin = %e.path().display(), "plugin refused: {e}");
    }
    LoadReport { loaded, errors }
}

/// `Registry::load_dir(…)` / `Registry::load_file(…)` spelling of the loader.
pub trait RegistryPluginExt {
    /// See [`load_dir_into`].
    fn load_dir(&mut self, dir: impl AsRef<Path>, options: &LoadOptions) -> LoadReport;
    /// Loads one plugin file (see [`load_file`]) and registers its provider; returns its name.
    fn load_file(&mut self, path: impl AsRef<Path>, options: &LoadOptions) -> Result<String, PluginError>;
}

impl RegistryPluginExt for Registry {
    fn load_dir(&mut self, dir: impl AsRef<Path>, options: &LoadOptions) -> LoadReport {
        load_dir_into(self, dir, options)
    }

    fn load_file(&mut self, path: impl AsRef<Path>, options: &LoadOptions) -> Result<String, PluginError> {
        let path = path.as_ref();
        fsck::check_dir_chain(&parent_dir(path), path)?;
        let plugin = load_checked(path, options, Some(self))?;
        plugin.register_into(self)?;
        Ok(plugin.name().to_owned())
    }
}

/// Provider names declared by plugin files this process has read a descriptor from, by the
/// files' SHA-256: lets a byte-identical copy be refused as a duplicate before it is opened.
static DECLARED: Mutex<Option<HashMap<String, (PathBuf, String)>>> = Mutex::new(None);

fn declared_by_identical_file(sha256: &str) -> Option<(PathBuf, String)> {
    DECLARED.lock().ok()?.as_ref()?.get(sha256).cloned()
}

fn remember_declaration(sha256: &str, path: &Path, name: &str) {
    if let Ok(mut declared) = DECLARED.lock() {
        declared
            .get_or_insert_with(HashMap::new)
            .entry(sha256.to_owned())
            .or_insert_with(|| (path.to_path_buf(), name.to_owned()));
    }
}

/// `name` is taken in `registry`: the refusal naming both origins.
fn taken(
    registry: Option<&Registry>,
    path: &Path,
    name: &str,
    identical_to: Option<PathBuf>,
) -> Result<(), PluginError> {
    match registry.and_then(|r| r.get(name)) {
        Some(first) => Err(PluginError::DuplicateName {
            path: path.to_path_buf(),
            name: name.to_owned(),
            first: first.origin().clone(),
            identical_to,
        }),
        None => Ok(()),
    }
}

/// Per-file checks, hashing, copying and loading; the directory chain is already checked.
/// With `registry`, a provider name it already holds is refused as early as it can be known:
/// from an identical file's earlier descriptor before opening, else right after this file's
/// descriptor is read.
fn load_checked(
    path: &Path,
    options: &LoadOptions,
    registry: Option<&Registry>,
) -> Result<LoadedPlugin, PluginError> {
    let file_meta = fsck::check_file(path)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let expected_hash = match &options.allow_list {
        None => None,
        Some(list) => match file_name.as_deref().and_then(|n| list.get(n)) {
            Some(hash) => Some(hash.trim().to_ascii_lowercase()),
            None => return Err(PluginError::NotAllowListed { path: path.to_path_buf() }),
        },
    };
    let bytes = read_same_file(path, &file_meta)?;
    let (load_path, sha256, copy) = match &options.copy_to {
        Some(runtime_dir) => {
            let copy =
                fsck::private_copy(runtime_dir, path, file_name.as_deref().unwrap_or("plugin"), &bytes)?;
            let hash = sha256_file(copy.path())
                .map_err(|source| PluginError::Io { path: copy.path().into(), source })?;
            (copy.path().to_path_buf(), hash, Some(copy))
        }
        None => (path.to_path_buf(), hex::encode(Sha256::digest(&bytes)), None),
    };
    drop(bytes);
    if let Some(expected) = expected_hash {
        if expected != sha256 {
            return Err(PluginError::HashMismatch { path: path.to_path_buf(), expected, found: sha256 });
        }
    }
    if let Some((twin, name)) = declared_by_identical_file(&sha256) {
        taken(registry, path, &name, Some(twin))?;
    }
    let result = open_module(path, &load_path);
    // The mapping outlives the file: the copy is removed whether or not the load worked.
    drop(copy);
    let module = result?;
    let descriptor = read_descriptor(path, module)?;
    remember_declaration(&sha256, path, &descriptor.name);
    taken(registry, path, &descriptor.name, None)?;
    let source = Arc::new(Source { path: path.to_path_buf(), provider: descriptor.name.clone() });
    Ok(LoadedPlugin {
        inner: Arc::new(Inner { path: path.to_path_buf(), sha256, descriptor, module, source }),
    })
}

/// Reads the file, making sure the file read is the one whose metadata was checked (it was
/// not replaced, e.g. by a symlink, in between).
fn read_same_file(path: &Path, checked: &fs::Metadata) -> Result<Vec<u8>, PluginError> {
    let io = |source| PluginError::Io { path: path.to_path_buf(), source };
    let mut file = fs::File::open(path).map_err(io)?;
    let opened = file.metadata().map_err(io)?;
    if !fsck::same_file(checked, &opened) {
        return Err(PluginError::Symlink { path: path.to_path_buf(), link: path.to_path_buf() });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Lowercase hex SHA-256 of a file, as an allow-list wants it.
pub fn sha256_hex(path: impl AsRef<Path>) -> std::io::Result<String> {
    sha256_file(path.as_ref())
}

/// Longest library-error text kept (an ABI mismatch report lists whole type layouts).
const MAX_REASON: usize = 4096;

/// abi_stable's error text, on one line (it spans many, with blank ones) and bounded, led by
/// the mismatches it found: a layout report prints whole type layouts first and the mismatch
/// itself last, which the bound would cut off (a plugin of the previous schema, whose adapter
/// vtable is shorter, got 4 KiB of layouts and no word of what differs).
fn reason(e: &LibraryError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mismatches = layout_mismatches(&lines);
    let mut s = if mismatches.is_empty() {
        String::new()
    } else {
        format!("{}; abi_stable's report: ", mismatches.join("; "))
    };
    s.push_str(&lines.join(" "));
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" …");
    }
    s
}

/// The mismatches of abi_stable's layout report, each as `what (expected X, found Y) in A › B`,
/// A › B being the types from the root module down to the one that differs. Read from the
/// report's text, which is all abi_stable offers (the typed errors are private to its
/// checker); a report in another shape only loses the summary, never the report.
fn layout_mismatches(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut path: Vec<&str> = Vec::new();
    let mut in_path = false;
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with("error(s)inside:") {
            path.clear();
            in_path = true;
        } else if line.starts_with("Layout of expected type:") {
            in_path = false;
        } else if in_path {
            if let Some(ty) = line.strip_prefix("type:") {
                if path.last() != Some(&ty) {
                    path.push(ty);
                }
            }
        } else if let Some(what) = line.strip_prefix("Error:") {
            let value =
                |label: &str, at: usize| lines.get(at).filter(|l| **l == label).and(lines.get(at + 1));
            let mut mismatch = what.trim().to_owned();
            if let (Some(expected), Some(found)) = (value("Expected:", i + 1), value("Found:", i + 3)) {
                mismatch.push_str(&format!(" (expected {expected}, found {found})"));
            }
            if !path.is_empty() {
                mismatch.push_str(&format!(" in {}", path.join(" › ")));
            }
            out.push(mismatch);
        }
    }
    out
}

/// Opens the library and checks abi_stable's header, the interface version and the layout of
/// the root module, then runs the module constructor and checks [`ABI_VERSION`].
fn open_module(path: &Path, load_path: &Path) -> Result<ClaudettePlugin_Ref, PluginError> {
    let p = || path.to_path_buf();
    let header = lib_header_from_path(load_path).map_err(|e| match &e {
        LibraryError::OpenError { .. } => PluginError::NotALibrary { path: p(), reason: reason(&e) },
        LibraryError::GetSymbolError { .. } => PluginError::NoRootModule { path: p(), reason: reason(&e) },
        _ => PluginError::IncompatibleInterface { path: p(), reason: reason(&e) },
    })?;
    let module = header.init_root_module::<ClaudettePlugin_Ref>().map_err(|e| match &e {
        LibraryError::RootModule { err: RootModuleError::Unwound, .. } => {
            PluginError::Panicked { path: p(), during: "the root module constructor", message: reason(&e) }
        }
        _ => PluginError::IncompatibleInterface { path: p(), reason: reason(&e) },
    })?;
    #[allow(clippy::useless_conversion)] // u64 under the layout-change test feature
    let found = u64::from(module.abi_version());
    if found != u64::from(ABI_VERSION) {
        return Err(PluginError::AbiVersion { path: p(), found, expected: ABI_VERSION });
    }
    Ok(module)
}

fn read_descriptor(path: &Path, module: ClaudettePlugin_Ref) -> Result<PluginDescriptor, PluginError> {
    let p = || path.to_path_buf();
    let descriptor = module.descriptor();
    let text = match descriptor() {
        ROk(text) => text,
        RErr(message) => {
            let message = message.into_string();
            let panic_prefix = format!("{} descriptor: ", crate::guest::PANIC_PREFIX);
            return Err(if let Some(message) = message.strip_prefix(&panic_prefix) {
                PluginError::Panicked { path: p(), during: "descriptor", message: message.to_owned() }
            } else {
                PluginError::BadDescriptor { path: p(), reason: message }
            });
        }
    };
    // The schema version is read first and alone, so a descriptor of another schema whose
    // other fields changed still gets the precise error.
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let version: Version = serde_json::from_str(&text)
        .map_err(|e| PluginError::BadDescriptor { path: p(), reason: format!("{e}: {text}") })?;
    if version.schema_version != SCHEMA_VERSION {
        return Err(PluginError::SchemaVersion {
            path: p(),
            found: version.schema_version,
            expected: SCHEMA_VERSION,
        });
    }
    let descriptor: PluginDescriptor = serde_json::from_str(&text)
        .map_err(|e| PluginError::BadDescriptor { path: p(), reason: format!("{e}: {text}") })?;
    let name_ok = !descriptor.name.is_empty()
        && descriptor.name.len() <= 64
        && descriptor.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(PluginError::BadDescriptor {
            path: p(),
            reason: format!("provider name `{}` must be 1-64 of [A-Za-z0-9_-]", descriptor.name),
        });
    }
    Ok(descriptor)
}

/// Unique names for private copies within this process.
pub(crate) static COPY_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn next_copy_id() -> u64 {
    COPY_COUNTER.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of abi_stable's report on a plugin of schema 5 (its adapter vtable two methods
    /// short), cut down to the lines the summary reads; the whole report was 28 KiB.
    #[test]
    fn a_layout_report_is_summed_up_by_its_mismatch_and_where_it_is() {
        let report = "Compared <this>:\n--- Type Layout ---\ntype:PrefixRef<'a, ClaudettePlugin>\n\n0 error(s).\n\
            1 error(s)inside:\n    <other>\n    field_name:0\n    type:ClaudettePlugin\n    field_name:new_adapter\n\
            type:AFunctionPointer\n    field_name:field_0\n    type:FfiAdapter_TO<'lt>\n    field_name:vtable\n\
            type:PrefixRef<'a, VTable>\n    field_name:0\n    type:VTable\nLayout of expected type:\n\
            --- Type Layout ---\n    type:VTable\n    field_name:observe\n    type:AFunctionPointer\n\n\n\
            Error:too many fields\nExpected:\n    17\nFound:\n    15\n";
        let lines: Vec<&str> = report.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(
            layout_mismatches(&lines),
            ["too many fields (expected 17, found 15) in ClaudettePlugin › AFunctionPointer › \
                 FfiAdapter_TO<'lt> › PrefixRef<'a, VTable> › VTable"]
        );
        // Another shape: no summary, nothing lost or invented.
        assert!(layout_mismatches(&["Error", "Expected:", "17"]).is_empty());
        assert_eq!(layout_mismatches(&["Error:odd", "Expected:"]), ["odd"]);
    }
}
