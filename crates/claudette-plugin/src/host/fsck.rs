//! File-system checks done before a plugin is opened (reliability-spec S-13, F-34).
//!
//! Opening a library runs its initialisers, so everything that decides whether a file may be
//! loaded happens here, on metadata and bytes only. On non-Unix platforms the ownership and
//! mode checks do not exist (there is no portable equivalent); the symlink, allow-list and
//! hash checks still apply.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::PluginError;

#[cfg(unix)]
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Ownership and mode of one path. `sticky_ok`: a root-owned directory with the sticky bit
/// (`/tmp`) may be world-writable, because then nobody else can rename or remove what we own
/// inside it; accepted only above the plugin directory.
#[cfg(unix)]
fn check_meta(
    plugin: &Path,
    offender: &Path,
    what: &'static str,
    meta: &fs::Metadata,
    sticky_ok: bool,
) -> Result<(), PluginError> {
    use std::os::unix::fs::MetadataExt;
    let me = euid();
    let owner = meta.uid();
    if owner != me && owner != 0 {
        return Err(PluginError::Owner {
            path: plugin.to_path_buf(),
            what,
            offender: offender.to_path_buf(),
            owner,
            expected: me,
        });
    }
    let mode = meta.mode() & 0o7777;
    let sticky_root_dir = sticky_ok && meta.is_dir() && owner == 0 && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky_root_dir {
        return Err(PluginError::Writable {
            path: plugin.to_path_buf(),
            what,
            offender: offender.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_meta(
    _plugin: &Path,
    _offender: &Path,
    _what: &'static str,
    _meta: &fs::Metadata,
    _sticky_ok: bool,
) -> Result<(), PluginError> {
    Ok(())
}

fn io(plugin: &Path) -> impl Fn(std::io::Error) -> PluginError + '_ {
    move |source| PluginError::Io { path: plugin.to_path_buf(), source }
}

/// Checks the plugin directory (not a symlink, a directory, owned by us or root, not
/// group/world-writable) and every directory above it (owned by us or root, not writable by
/// others unless root-owned and sticky). `plugin` names the file errors are reported for.
pub(crate) fn check_dir_chain(dir: &Path, plugin: &Path) -> Result<(), PluginError> {
    let meta = fs::symlink_metadata(dir).map_err(io(plugin))?;
    if meta.file_type().is_symlink() {
        return Err(PluginError::Symlink { path: plugin.to_path_buf(), link: dir.to_path_buf() });
    }
    if !meta.is_dir() {
        return Err(PluginError::Io {
            path: plugin.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ),
        });
    }
    check_meta(plugin, dir, "plugin directory", &meta, false)?;
    let canonical = fs::canonicalize(dir).map_err(io(plugin))?;
    for parent in canonical.ancestors().skip(1) {
        let meta = fs::metadata(parent).map_err(io(plugin))?;
        check_meta(plugin, parent, "parent directory", &meta, true)?;
    }
    Ok(())
}

/// Checks the plugin file itself (a regular file, not a symlink, owned by us or root, not
/// group/world-writable) and returns its metadata.
pub(crate) fn check_file(path: &Path) -> Result<fs::Metadata, PluginError> {
    let meta = fs::symlink_metadata(path).map_err(io(path))?;
    if meta.file_type().is_symlink() {
        return Err(PluginError::Symlink { path: path.to_path_buf(), link: path.to_path_buf() });
    }
    if !meta.is_file() {
        return Err(PluginError::NotAFile { path: path.to_path_buf() });
    }
    check_meta(path, path, "file", &meta, false)?;
    Ok(meta)
}

/// Whether two metadata describe the same file (device and inode on Unix).
#[cfg(unix)]
pub(crate) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
pub(crate) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// A private copy of a plugin, removed when dropped (a loaded library stays mapped).
#[derive(Debug)]
pub(crate) struct PrivateCopy {
    path: PathBuf,
}

impl PrivateCopy {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Creates (`0700`) or checks the runtime directory: ours, a real directory, closed to
/// everyone else.
fn prepare_runtime_dir(dir: &Path) -> Result<(), PluginError> {
    let refuse = |reason: String| PluginError::RuntimeDir { dir: dir.to_path_buf(), reason };
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| refuse(format!("cannot create it: {e}")))?;
        }
        Err(e) => return Err(refuse(format!("cannot read it: {e}"))),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse("is not a directory (or is a symbolic link)".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != euid() {
            return Err(refuse(format!(
                "is owned by uid {}, not by this process's user ({})",
                meta.uid(),
                euid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(refuse(format!(
                "mode {:o} lets other users in; it must be 0700",
                meta.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

/// Writes `bytes` to a new file (`0600`, never an existing one) in the private runtime dir.
pub(crate) fn private_copy(
    runtime_dir: &Path,
    plugin: &Path,
    file_name: &str,
    bytes: &[u8],
) -> Result<PrivateCopy, PluginError> {
    prepare_runtime_dir(runtime_dir)?;
    let name = format!("{}-{}-{file_name}", std::process::id(), super::loader::next_copy_id());
    let path = runtime_dir.join(name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| PluginError::RuntimeDir {
        dir: runtime_dir.to_path_buf(),
        reason: format!("cannot create the copy of {}: {e}", plugin.display()),
    })?;
    let copy = PrivateCopy { path };
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| PluginError::RuntimeDir {
        dir: runtime_dir.to_path_buf(),
        reason: format!("cannot write the copy of {}: {e}", plugin.display()),
    })?;
    Ok(copy)
}
