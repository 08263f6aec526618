//! Backends from the usual environment variables, for a machine with no config file.
//!
//! Discovery produces the same raw tree a file would (`api_key_env` references, not keys), so
//! discovered backends go through exactly the same validation and overrides as written ones.

use serde_json::{Value, json};

use crate::env::EnvSource;

/// The variables discovery looks at, in the order backends are created.
pub const DISCOVERY_VARS: &[&str] =
    &["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OLLAMA_HOST"];

/// Model of a discovered Ollama backend when `OLLAMA_MODEL` is not set.
pub const DEFAULT_OLLAMA_MODEL: &str = "llama3.2";

/// Raw `[[backends]]` tables for every provider whose variable is set.
pub(crate) fn backends(env: &dyn EnvSource) -> Vec<Value> {
    let mut out = Vec::new();
    if env.var("OPENAI_API_KEY").is_some() {
        out.push(json!({"name": "openai", "provider": "openai", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"}));
    }
    if env.var("ANTHROPIC_API_KEY").is_some() {
        out.push(json!({"name": "anthropic", "provider": "anthropic", "api_key_env": "ANTHROPIC_API_KEY"}));
    }
    // Google's SDKs accept either name; GEMINI_API_KEY wins when both are set, as in theirs.
    let gemini_var = ["GEMINI_API_KEY", "GOOGLE_API_KEY"].into_iter().find(|v| env.var(v).is_some());
    if let Some(var) = gemini_var {
        out.push(
            json!({"name": "gemini", "provider": "gemini", "model": "gemini-2.5-flash", "api_key_env": var}),
        );
    }
    if let Some(host) = env.var("OLLAMA_HOST") {
        let model = env.var("OLLAMA_MODEL").unwrap_or_else(|| DEFAULT_OLLAMA_MODEL.to_owned());
        out.push(
            json!({"name": "ollama", "provider": "ollama", "model": model, "base_url": ollama_url(&host)}),
        );
    }
    out
}

/// `OLLAMA_HOST` as Ollama itself reads it: `host`, `host:port` or a URL; the default port is
/// 11434 and a bind-all address means this machine.
pub(crate) fn ollama_url(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let (scheme, rest) = match host.split_once("://") {
        Some((s, r)) => (s.to_owned(), r.to_owned()),
        None => ("http".to_owned(), host.to_owned()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest, String::new()),
    };
    let has_port =
        if authority.starts_with('[') { authority.contains("]:") } else { authority.contains(':') };
    let authority = if authority.is_empty() {
        "127.0.0.1".to_owned()
    } else if authority.starts_with(':') {
        // `:11434`, as a server is told to listen: no host means this machine, as for Ollama.
        format!("127.0.0.1{authority}")
    } else if authority.starts_with("0.0.0.0") {
        authority.replacen("0.0.0.0", "127.0.0.1", 1)
    } else {
        authority
    };
    let port = if has_port {
        ""
    } else if scheme == "https" {
        ":443"
    } else {
        ":11434"
    };
    format!("{scheme}://{authority}{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_forms() {
        assert_eq!(ollama_url("127.0.0.1"), "http://127.0.0.1:11434");
        assert_eq!(ollama_url("gpu-box:8080"), "http://gpu-box:8080");
        assert_eq!(ollama_url("http://gpu-box:11434/"), "http://gpu-box:11434");
        assert_eq!(ollama_url("0.0.0.0"), "http://127.0.0.1:11434");
        assert_eq!(ollama_url("https://ollama.example.com"), "https://ollama.example.com:443");
        assert_eq!(ollama_url("[::1]"), "http://[::1]:11434");
        assert_eq!(ollama_url(":11500"), "http://127.0.0.1:11500");
        assert_eq!(ollama_url("http://:11500/"), "http://127.0.0.1:11500");
    }
}
