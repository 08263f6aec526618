//! The host side: loading plugin files and using their adapters.

mod adapter;
mod error;
mod fsck;
mod loader;

pub use adapter::PluginAdapter;
pub use error::PluginError;
pub use loader::{
    LoadOptions, LoadReport, LoadedPlugin, PLUGIN_EXTENSIONS, RegistryPluginExt, load_dir, load_dir_into,
    load_file, register_all, sha256_hex,
};
