//! Provider registration: link-time (`inventory`), explicit, and (later) plugin-loaded
//! factories, merged in one [`Registry`] that builds backends by provider name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::backend::SharedBackend;
use crate::error::BackendError;
use crate::settings::BackendSettings;

/// A provider, as a plain descriptor (the sqlx `AnyDriver` shape): its name and a constructor
/// from settings. Provider crates submit one at link time:
///
/// ```ignore
/// inventory::submit! { claudette_core::ProviderFactory::new("openai", "OpenAI chat completions", build) }
/// ```
///
/// A crate that is only listed in Cargo.toml is not linked, so its submission is invisible;
/// the `claudette` facade force-links the providers its features enable.
#[derive(Clone, Copy)]
pub struct ProviderFactory {
    pub name: &'static str,
    pub description: &'static str,
    pub build: fn(&BackendSettings) -> Result<SharedBackend, BackendError>,
}

impl ProviderFactory {
    pub const fn new(
        name: &'static str,
        description: &'static str,
        build: fn(&BackendSettings) -> Result<SharedBackend, BackendError>,
    ) -> Self {
        Self { name, description, build }
    }
}

impl fmt::Debug for ProviderFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderFactory").field("name", &self.name).finish_non_exhaustive()
    }
}

inventory::collect!(ProviderFactory);

/// Where a factory came from, for duplicate-name errors that name both origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Linked,
    Explicit,
    Plugin(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Linked => f.write_str("linked crate"),
            Self::Explicit => f.write_str("registered in code"),
            Self::Plugin(p) => write!(f, "plugin {p}"),
        }
    }
}

/// Errors of the registry layer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown provider `{name}` (known: {known})")]
    UnknownProvider { name: String, known: String },
    #[error("provider `{name}` registered twice: by {first} and by {second}")]
    Duplicate { name: String, first: Origin, second: Origin },
    #[error("backend settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Builds a backend from settings; a plain `fn` for linked providers, a closure over the
/// loaded library for run-time plugins.
pub type BuildFn = Arc<dyn Fn(&BackendSettings) -> Result<SharedBackend, BackendError> + Send + Sync>;

/// One provider known to a [`Registry`].
#[derive(Clone)]
pub struct RegisteredProvider {
    name: String,
    description: String,
    origin: Origin,
    build: BuildFn,
}

impl RegisteredProvider {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

impl fmt::Debug for RegisteredProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredProvider").field("name", &self.name).field("origin", &self.origin).finish()
    }
}

/// The providers this process knows, by name: linked crates, explicit registrations, and
/// plugins loaded at run time (`claudette-plugin` adds those through [`Registry::add_dynamic`]).
#[derive(Debug, Default, Clone)]
pub struct Registry {
    providers: BTreeMap<String, RegisteredProvider>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every provider linked into this binary.
    pub fn linked() -> Result<Self, RegistryError> {
        let mut r = Self::empty();
        for f in inventory::iter::<ProviderFactory> {
            r.add(*f, Origin::Linked)?;
        }
        Ok(r)
    }

    pub fn register(&mut self, factory: ProviderFactory) -> Result<(), RegistryError> {
        self.add(factory, Origin::Explicit)
    }

    pub fn add(&mut self, factory: ProviderFactory, origin: Origin) -> Result<(), RegistryError> {
        let build = factory.build;
        self.add_dynamic(factory.name, factory.description, Arc::new(build), origin)
    }

    /// Adds a provider whose constructor is a closure (run-time plugins).
    pub fn add_dynamic(
        &mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        build: BuildFn,
        origin: Origin,
    ) -> Result<(), RegistryError> {
        let name = name.into();
        if let Some(first) = self.providers.get(&name) {
            return Err(RegistryError::Duplicate { name, first: first.origin.clone(), second: origin });
        }
        let description = description.into();
        self.providers.insert(name.clone(), RegisteredProvider { name, description, origin, build });
        Ok(())
    }

    /// Known providers, sorted by name.
    pub fn providers(&self) -> impl Iterator<Item = &RegisteredProvider> {
        self.providers.values()
    }

    pub fn get(&self, provider: &str) -> Option<&RegisteredProvider> {
        self.providers.get(provider)
    }

    /// Builds a backend of `provider`. The backend validates its settings before it is returned.
    pub fn build(&self, provider: &str, settings: &BackendSettings) -> Result<SharedBackend, RegistryError> {
        let f = self.get(provider).ok_or_else(|| RegistryError::UnknownProvider {
            name: provider.to_owned(),
            known: self.providers.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let backend = (f.build)(settings)?;
        backend.validate_config()?;
        Ok(backend)
    }

    /// Builds a backend from a table such as `{ provider = "openai", name = "gpt", model = … }`.
    pub fn build_from_value(&self, value: serde_json::Value) -> Result<SharedBackend, RegistryError> {
        let mut map = match value {
            serde_json::Value::Object(m) => m,
            other => return Err(RegistryError::Settings(format!("expected a table, got {other}"))),
        };
        let provider = match map.remove("provider") {
            Some(serde_json::Value::String(p)) => p,
            Some(_) => return Err(RegistryError::Settings("`provider` must be a string".into())),
            None => return Err(RegistryError::Settings("missing `provider`".into())),
        };
        let settings: BackendSettings = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| RegistryError::Settings(format!("provider `{provider}`: {e}")))?;
        self.build(&provider, &settings)
    }
}
