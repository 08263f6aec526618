//! Where environment variables come from, and the `CLAUDETTE__SECTION__KEY` overlay.
//!
//! Reading goes through [`EnvSource`] rather than `std::env` directly so that tests (and
//! embedders) can hand in a map: setting process variables from tests is `unsafe` in Rust 2024
//! and races with every other test thread.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::error::ConfigError;

/// Prefix of the generic override variables: `CLAUDETTE__ROUTER__COST_WEIGHT=0.7`.
pub const OVERRIDE_PREFIX: &str = "CLAUDETTE__";
/// Overrides `server.listen`.
pub const LISTEN_VAR: &str = "CLAUDETTE_LISTEN";
/// Path of the configuration file.
pub const CONFIG_VAR: &str = "CLAUDETTE_CONFIG";

/// A source of environment variables.
pub trait EnvSource {
    /// The value of `name`, if set and valid UTF-8. Empty values count as unset: an exported but
    /// empty `OPENAI_API_KEY=` is a mistake, not a key.
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable whose name starts with `prefix`, sorted by name.
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(prefix)).collect();
        v.sort();
        v
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            self.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort();
        v
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// What set a configuration value on top of the file.
#[derive(Debug, Clone)]
pub(crate) enum Setter {
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, e.g. `--listen`.
    Flag(&'static str),
}

/// Which configuration paths an environment variable or a flag set, so an error about such a
/// value can say where it came from.
#[derive(Debug, Default, Clone)]
pub(crate) struct Origins {
    /// `(key path, setter)`, e.g. `("router.cost_weight", Env("CLAUDETTE__ROUTER__COST_WEIGHT"))`.
    set: Vec<(String, Setter)>,
}

impl Origins {
    /// Records that `setter` set `path`. Whatever set `path` or a key inside it before is
    /// forgotten: its value is gone, so it is neither blamed for an error nor listed among the
    /// overrides that took effect.
    pub(crate) fn record(&mut self, path: String, setter: Setter) {
        self.set.retain(|(p, _)| !is_within(p, &path));
        self.set.push((path, setter));
    }

    /// What set `key` or one of its parents, as an error message names it
    /// (`environment variable CLAUDETTE_LISTEN`, `--listen`).
    pub(crate) fn of(&self, key: &str) -> Option<String> {
        self.set.iter().rev().find(|(p, _)| is_within(key, p)).map(|(_, setter)| match setter {
            Setter::Env(var) => format!("environment variable {var}"),
            Setter::Flag(flag) => (*flag).to_owned(),
        })
    }

    /// Names of the environment variables whose values took effect.
    pub(crate) fn vars(&self) -> Vec<String> {
        self.set
            .iter()
            .filter_map(|(_, setter)| match setter {
                Setter::Env(var) => Some(var.clone()),
                Setter::Flag(_) => None,
            })
            .collect()
    }
}

/// `key` is `path` or a key inside it (`router.retry.base_backoff_ms` in `router.retry`).
fn is_within(key: &str, path: &str) -> bool {
    key == path || key.strip_prefix(path).is_some_and(|rest| rest.starts_with(['.', '[']))
}

/// The flag that sets `server.listen` (`claudette serve --listen`).
pub(crate) const LISTEN_FLAG: &str = "--listen";

/// Applies, each over the one before, `CLAUDETTE_LISTEN`, every `CLAUDETTE__A__B…` variable,
/// and `listen` (the value of `claudette serve --listen`) to the raw tree.
///
/// So the listen address is, first to last, `--listen`, `CLAUDETTE__SERVER__LISTEN`,
/// `CLAUDETTE_LISTEN`, the file's `[server] listen`: the flag is typed for this one run, and a
/// variable naming the full key path is more specific than the shorthand. Only what took
/// effect is recorded (see [`Origins::record`]).
///
/// Segments are lower-cased (`COST_WEIGHT` → `cost_weight`). Under `BACKENDS` the next segment
/// picks a backend by its `name` (compared case-insensitively with `-` read as `_`, so
/// `CLAUDETTE__BACKENDS__OPENAI_MINI__MODEL` reaches `name = "openai-mini"`) or by its index.
/// Overrides change existing backends; they never create one.
///
/// The value is typed by what it replaces: a string stays a string (`MODEL=1` is the model
/// "1"), as do keys that are always strings; otherwise it is read as a TOML value (`0.7`, `true`, `["a", "b"]`), and as a plain
/// string when it is not one (`127.0.0.1:9000`).
pub(crate) fn apply_overrides(
    root: &mut Value,
    env: &dyn EnvSource,
    listen: Option<&str>,
) -> Result<Origins, ConfigError> {
    let mut origins = Origins::default();
    let listen_path = ["server".to_owned(), "listen".to_owned()];
    if let Some(value) = env.var(LISTEN_VAR) {
        set_path(root, &listen_path, value, Setter::Env(LISTEN_VAR.into()), &mut origins)?;
    }
    for (var, value) in env.vars_with_prefix(OVERRIDE_PREFIX) {
        // Empty counts as unset, as for every variable here: `export CLAUDETTE__X__Y=` in a
        // template clears an override, it does not set the key to "".
        if value.is_empty() {
            continue;
        }
        let rest = &var[OVERRIDE_PREFIX.len()..];
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) || segments.len() < 2 {
            return Err(ConfigError::Override {
                var,
                reason: "expected CLAUDETTE__<SECTION>__<KEY>, e.g. CLAUDETTE__ROUTER__COST_WEIGHT".into(),
            });
        }
        set_path(root, &segments, value, Setter::Env(var), &mut origins)?;
    }
    if let Some(value) = listen {
        set_path(root, &listen_path, value.to_owned(), Setter::Flag(LISTEN_FLAG), &mut origins)?;
    }
    Ok(origins)
}

fn set_path(
    root: &mut Value,
    segments: &[String],
    raw: String,
    setter: Setter,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    let err = |reason: String| match &setter {
        Setter::Env(var) => ConfigError::Override { var: var.clone(), reason },
        Setter::Flag(flag) => {
            ConfigError::Invalid { key: segments.join("."), reason, origin: Some((*flag).to_owned()) }
        }
    };
    let mut node = root;
    let mut path = String::new();
    let last = segments.len() - 1;
    let mut i = 0;
    while i < last {
        let seg = &segments[i];
        if seg == "backends" && path.is_empty() {
            let selector = &segments[i + 1];
            if i + 1 == last {
                return Err(err(
                    "name a key inside the backend, e.g. CLAUDETTE__BACKENDS__OPENAI__MODEL".into()
                ));
            }
            let list = node
                .as_object_mut()
                .and_then(|m| m.get_mut("backends"))
                .and_then(Value::as_array_mut)
                .ok_or_else(|| err("there are no [[backends]] to override".into()))?;
            let index = find_backend(list, selector).map_err(err)?;
            path = format!("backends[{index}]");
            node = &mut list[index];
            i += 2;
            continue;
        }
        let map = node.as_object_mut().ok_or_else(|| err(format!("`{path}` is not a table")))?;
        node = map.entry(seg.clone()).or_insert_with(|| Value::Object(serde_json::Map::new()));
        path = if path.is_empty() { seg.clone() } else { format!("{path}.{seg}") };
        i += 1;
    }
    let key = &segments[last];
    let map = node.as_object_mut().ok_or_else(|| err(format!("`{path}` is not a table")))?;
    let typed = match map.get(key.as_str()) {
        Some(Value::String(_)) => Value::String(raw),
        None if STRING_KEYS.contains(&key.as_str()) => Value::String(raw),
        _ => parse_scalar(raw),
    };
    map.insert(key.clone(), typed);
    origins.record(if path.is_empty() { key.clone() } else { format!("{path}.{key}") }, setter);
    Ok(())
}

/// Keys that always hold strings, so an override of an unset one is not read as a number.
const STRING_KEYS: &[&str] = &[
    "name",
    "provider",
    "model",
    "base_url",
    "region",
    "api_key_env",
    "key_env",
    "listen",
    "optimize_for",
    "path",
];

/// The backend a `CLAUDETTE__BACKENDS__<SELECTOR>__…` variable means.
///
/// Variable names cannot tell `A` from `a` or `-` from `_`: when several backends match that
/// way the variable is refused, rather than applied to whichever happens to come first.
fn find_backend(list: &[Value], selector: &str) -> Result<usize, String> {
    fn name_of(b: &Value) -> Option<&str> {
        b.get("name").and_then(Value::as_str).or_else(|| b.get("provider").and_then(Value::as_str))
    }
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let matches: Vec<usize> =
        (0..list.len()).filter(|&i| name_of(&list[i]).map(norm) == Some(norm(selector))).collect();
    match matches[..] {
        [i] => return Ok(i),
        [] => {}
        _ => {
            let which: Vec<String> = matches.iter().map(|i| format!("backends[{i}]")).collect();
            return Err(format!(
                "`{selector}` matches {} (names are compared ignoring case and '-' versus '_'); \
                 select the backend by its number instead",
                which.join(" and ")
            ));
        }
    }
    selector
        .parse::<usize>()
        .ok()
        .filter(|i| *i < list.len())
        .ok_or_else(|| format!("no backend named or numbered `{selector}`"))
}

/// `0.7` → number, `true` → bool, `["a"]` → array, anything else → the string itself.
///
/// `nan` and `inf` stay strings: JSON has no such numbers, so they would become `null`, which
/// an optional key reads as "not set", and the override would be silently dropped. As strings
/// they fail with "expected a number", naming the variable.
fn parse_scalar(raw: String) -> Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => match t.remove("v").filter(all_finite).map(serde_json::to_value) {
            Some(Ok(v)) => v,
            _ => Value::String(raw),
        },
        Err(_) => Value::String(raw),
    }
}

fn all_finite(value: &toml::Value) -> bool {
    match value {
        toml::Value::Float(f) => f.is_finite(),
        toml::Value::Array(items) => items.iter().all(all_finite),
        toml::Value::Table(t) => t.values().all(all_finite),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_typed() {
        assert_eq!(parse_scalar("0.7".into()), serde_json::json!(0.7));
        assert_eq!(parse_scalar("true".into()), serde_json::json!(true));
        assert_eq!(parse_scalar("127.0.0.1:9000".into()), serde_json::json!("127.0.0.1:9000"));
        assert_eq!(parse_scalar(r#"["a", "b"]"#.into()), serde_json::json!(["a", "b"]));
        assert_eq!(parse_scalar("nan".into()), serde_json::json!("nan"));
        assert_eq!(parse_scalar("-inf".into()), serde_json::json!("-inf"));
        assert_eq!(parse_scalar("[1.0, inf]".into()), serde_json::json!("[1.0, inf]"));
    }

    #[test]
    fn origins_match_children() {
        let mut o = Origins::default();
        o.record("router.retry".into(), Setter::Env("V".into()));
        assert_eq!(o.of("router.retry.base_backoff_ms").as_deref(), Some("environment variable V"));
        assert_eq!(o.of("router.retry_x"), None);
    }

    /// A value set again is blamed on, and listed as, only what set it last.
    #[test]
    fn origins_keep_only_what_took_effect() {
        let mut o = Origins::default();
        o.record("server.listen".into(), Setter::Env("A".into()));
        o.record("router.retry.base_backoff_ms".into(), Setter::Env("B".into()));
        o.record("server.listen_x".into(), Setter::Env("C".into()));
        o.record("server.listen".into(), Setter::Flag(LISTEN_FLAG));
        o.record("router.retry".into(), Setter::Env("D".into()));
        assert_eq!(o.of("server.listen").as_deref(), Some("--listen"));
        assert_eq!(o.vars(), vec!["C".to_owned(), "D".to_owned()]);
    }
}
