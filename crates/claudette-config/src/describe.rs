//! Turns serde's messages into "key path: reason" a person can act on.

use crate::error::ConfigError;

/// Joins a key path prefix and a serde path (`"."` means the root).
pub(crate) fn join(prefix: &str, path: &str) -> String {
    let path = if path == "." { "" } else { path };
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Deserialises `value` into `T`, reporting the first problem as `prefix.path: reason`.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let (key, reason) = humanize(&join(prefix, &path), &message);
        ConfigError::invalid(key, reason)
    })
}

/// `(key, reason)` for one serde message found at `key`.
pub(crate) fn humanize(key: &str, message: &str) -> (String, String) {
    let child = |name: &str| if key.is_empty() { name.to_owned() } else { format!("{key}.{name}") };
    if let Some(field) = between(message, "missing field `", "`") {
        return (child(field), "is required".into());
    }
    if let Some(field) = between(message, "unknown field `", "`") {
        let known = message.split_once(", expected ").map(|(_, k)| k.replace('`', ""));
        let key = if key.rsplit(['.', '[']).next() == Some(field) { key.to_owned() } else { child(field) };
        let reason = match known {
            Some(k) if k.starts_with("one of ") => format!("unknown key (known: {})", &k[7..]),
            Some(k) => format!("unknown key (known: {k})"),
            None => "unknown key".to_owned(),
        };
        return (key, reason);
    }
    if let Some(variant) = between(message, "unknown variant `", "`") {
        let known = message.split_once(", expected ").map(|(_, k)| k.replace('`', "")).unwrap_or_default();
        let known = known.strip_prefix("one of ").unwrap_or(&known).to_owned();
        return (key.to_owned(), format!("unknown value \"{variant}\" (expected one of {known})"));
    }
    for lead in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(lead) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                return (key.to_owned(), format!("expected {}, found {}", expected_name(expected), found));
            }
        }
    }
    (key.to_owned(), message.to_owned())
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

fn expected_name(serde_name: &str) -> String {
    match serde_name {
        "f64" | "f32" => "a number".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number ≥ 0".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "a sequence" => "a list".into(),
        "a map" => "a table".into(),
        s if s.starts_with("struct ") => "a table".into(),
        s if s.starts_with("a boolean") || s.starts_with("a string") => s.to_owned(),
        s => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins() {
        assert_eq!(join("backends[1]", "pricing.input_per_1k"), "backends[1].pricing.input_per_1k");
        assert_eq!(join("", "router.max_attempts"), "router.max_attempts");
        assert_eq!(join("backends[1]", "."), "backends[1]");
        assert_eq!(join("router", "[2]"), "router[2]");
    }

    #[test]
    fn messages() {
        assert_eq!(
            humanize("a.b", "invalid type: string \"x\", expected f64"),
            ("a.b".into(), "expected a number, found string \"x\"".into())
        );
        assert_eq!(
            humanize("backends[0]", "missing field `provider`"),
            ("backends[0].provider".into(), "is required".into())
        );
        assert_eq!(
            humanize("router", "unknown field `cost_wieght`, expected one of `cost_weight`, `x`"),
            ("router.cost_wieght".into(), "unknown key (known: cost_weight, x)".into())
        );
    }
}
