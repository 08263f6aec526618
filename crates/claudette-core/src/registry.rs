//! Provider registration: link-time (`inventory`), explicit, and (later) plugin-loaded
//! factories, merged in one [`Registry`] that builds backends by provider name.

use std::collections::BTreeMap;
use std::fmt;

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

/// The providers this process knows, by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, (ProviderFactory, Origin)>,
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
        if let Some((_, first)) = self.factories.get(factory.name) {
            return Err(RegistryError::Duplicate { name: factory.name.to_owned(), first: first.clone(), second: origin });
        }
        self.factories.insert(factory.name, (factory, origin));
        Ok(())
    }

    pub fn providers(&self) -> impl Iterator<Item = &ProviderFactory> {
        self.factories.values().map(|(f, _)| f)
    }

    pub fn get(&self, provider: &str) -> Option<&ProviderFactory> {
        self.factories.get(provider).map(|(f, _)| f)
    }

    /// Builds a backend of `provider`. The backend validates its settings before it is returned.
    pub fn build(&self, provider: &str, settings: &BackendSettings) -> Result<SharedBackend, RegistryError> {
        let f = self.get(provider).ok_or_else(|| RegistryError::UnknownProvider {
            name: provider.to_owned(),
            known: self.factories.keys().copied().collect::<Vec<_>>().join(", "),
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
