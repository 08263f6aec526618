//! Settings of one backend, prices, timeouts, and the metadata a backend reports about itself.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::base_url::redact_url;
use crate::error::BackendError;
use crate::types::{ServiceTier, Usage};

/// An API key. Its `Debug` prints `[REDACTED]`, it has no `Display` and no `Serialize`, and its
/// memory is zeroed on drop, so it cannot end up in logs, error text or a config dump by
/// accident (reliability-spec S-01). Reading it takes an explicit [`ApiKey::expose`].
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(SecretString);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(SecretString::from(key.into()))
    }
    /// The key itself. Call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

impl From<&str> for ApiKey {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}
impl From<String> for ApiKey {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// Prices per 1,000 tokens, in one currency (the built-in tables are USD).
///
/// The seeds had one `cost_per_token`; real providers bill input, output, cache reads and
/// cache writes at different rates, and getting cache pricing wrong is the most reported cost
/// bug of other gateways (wire-protocols (c) #2). Cache rates default to the input rate.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pricing {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_per_1k: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_1k: Option<f64>,
    /// Per 1,000 web searches the provider ran for an answer ([`Usage::web_search_requests`]),
    /// billed on top of the tokens (Anthropic: 10). `None`: searches cost nothing here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search_per_1k: Option<f64>,
    /// Higher rates for a long prompt (Anthropic's long-context pricing). `None`: one rate
    /// whatever the prompt's length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContext>,
    /// Factor on every token rate for an answer served in the provider's fast lane
    /// ([`ServiceTier::Fast`]: Anthropic's fast mode, billed at 6×). `None`: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_factor: Option<f64>,
}

/// Factors on a price's token rates for a prompt of more than `above_input_tokens` (cache
/// reads and writes counted in). Anthropic bills such a prompt, which only the million-token
/// context allows, at 2× every input rate and 1.5× the output rate, for the whole request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LongContext {
    pub above_input_tokens: u32,
    pub input_factor: f64,
    pub output_factor: f64,
}

impl Pricing {
    pub const FREE: Pricing = Pricing::new(0.0, 0.0);

    pub const fn new(input_per_1k: f64, output_per_1k: f64) -> Self {
        Self {
            input_per_1k,
            output_per_1k,
            cache_read_per_1k: None,
            cache_write_per_1k: None,
            web_search_per_1k: None,
            long_context: None,
            fast_factor: None,
        }
    }
    pub const fn with_cache(mut self, read_per_1k: f64, write_per_1k: f64) -> Self {
        self.cache_read_per_1k = Some(read_per_1k);
        self.cache_write_per_1k = Some(write_per_1k);
        self
    }
    pub const fn with_web_search(mut self, per_1k: f64) -> Self {
        self.web_search_per_1k = Some(per_1k);
        self
    }
    pub const fn with_long_context(mut self, long: LongContext) -> Self {
        self.long_context = Some(long);
        self
    }
    pub const fn with_fast_factor(mut self, factor: f64) -> Self {
        self.fast_factor = Some(factor);
        self
    }

    /// Cost of `usage`: each token class at its own rate, never counted twice, scaled for a
    /// long prompt and for the tier that served it (the two stack, as Anthropic bills them),
    /// and the web searches at theirs.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per = |count: u32, rate: f64| f64::from(count) * rate / 1000.0;
        let (long_in, long_out) = self
            .long_context
            .filter(|l| usage.input_tokens > l.above_input_tokens)
            .map_or((1.0, 1.0), |l| (l.input_factor, l.output_factor));
        let tier = match usage.tier {
            ServiceTier::Standard => 1.0,
            ServiceTier::Fast => self.fast_factor.unwrap_or(1.0),
        };
        let input = per(usage.uncached_input_tokens(), self.input_per_1k)
            + per(usage.cache_read_tokens, self.cache_read_per_1k.unwrap_or(self.input_per_1k))
            + per(usage.cache_write_tokens, self.cache_write_per_1k.unwrap_or(self.input_per_1k));
        let output = per(usage.output_tokens, self.output_per_1k);
        (input * long_in + output * long_out) * tier
            + per(usage.web_search_requests, self.web_search_per_1k.unwrap_or(0.0))
    }

    /// Cost of a request estimated before it is sent.
    pub fn estimate(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        (f64::from(input_tokens) * self.input_per_1k + f64::from(output_tokens) * self.output_per_1k) / 1000.0
    }

    pub fn is_free(&self) -> bool {
        self.input_per_1k == 0.0 && self.output_per_1k == 0.0
    }
}

/// Per-backend timeouts (all enforced by the I/O layer, none by providers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeouts {
    #[serde(with = "crate::types::duration_ms", rename = "connect_ms")]
    pub connect: Duration,
    /// From request sent to response headers (and, for streams, to the first event).
    #[serde(with = "crate::types::duration_ms", rename = "first_byte_ms")]
    pub first_byte: Duration,
    /// Longest silence between two stream events.
    #[serde(with = "crate::types::duration_ms", rename = "idle_ms")]
    pub idle: Duration,
    /// Whole-request deadline.
    #[serde(with = "crate::types::duration_ms", rename = "total_ms")]
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(600),
        }
    }
}

/// Whether a backend runs in someone's cloud or on our own hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendType {
    #[default]
    Cloud,
    SelfHosted,
}

/// Settings of one backend: what the seeds called `BackendSettings`, made explicit.
///
/// Deserialises from a TOML/JSON table. Provider-specific keys go to `extra` and are read by
/// the provider (e.g. `stream_include_usage` for OpenAI-compatible servers). Unknown keys in
/// the common part are rejected so a typo does not silently fall back to a default.
#[derive(Clone, Deserialize)]
pub struct BackendSettings {
    /// Unique name of the backend in a router (e.g. `openai-mini`).
    pub name: String,
    /// The key. Prefer `api_key_env` in files.
    #[serde(default)]
    pub api_key: Option<ApiKey>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Overrides the provider's built-in price table.
    #[serde(default)]
    pub pricing: Option<Pricing>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Lower is preferred when scores tie.
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// 0..1, higher is better; the router's quality factor. Default 0.5.
    #[serde(default)]
    pub quality: Option<f64>,
    /// Provider-specific settings.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `base_url` redacted: some proxies take their key in the URL, and settings get logged.
impl fmt::Debug for BackendSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendSettings")
            .field("name", &self.name)
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("base_url", &self.base_url.as_deref().map(redact_url))
            .field("pricing", &self.pricing)
            .field("timeouts", &self.timeouts)
            .field("priority", &self.priority)
            .field("enabled", &self.enabled)
            .field("region", &self.region)
            .field("tags", &self.tags)
            .field("quality", &self.quality)
            .field("extra", &self.extra)
            .finish()
    }
}

fn yes() -> bool {
    true
}

impl BackendSettings {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            api_key: None,
            model: None,
            base_url: None,
            pricing: None,
            timeouts: Timeouts::default(),
            priority: 0,
            enabled: true,
            region: None,
            tags: Vec::new(),
            quality: None,
            extra: serde_json::Map::new(),
        }
    }
    pub fn api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    pub fn pricing(mut self, p: Pricing) -> Self {
        self.pricing = Some(p);
        self
    }
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }
    pub fn priority(mut self, p: i32) -> Self {
        self.priority = p;
        self
    }
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
    pub fn quality(mut self, q: f64) -> Self {
        self.quality = Some(q);
        self
    }
    /// Sets a provider-specific key.
    pub fn extra(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Every setting except `api_key`, as the JSON object [`BackendSettings`] deserialises from.
    ///
    /// This is what crosses into a run-time plugin (`claudette-plugin`): the key stays in the
    /// host, whose I/O layer attaches it to each request the plugin's adapter describes, so a
    /// plugin never holds a secret it could log or send elsewhere. Whether a key is configured
    /// travels separately, for adapters whose validation depends on it.
    pub fn to_plugin_json(&self) -> serde_json::Value {
        let mut map = self.extra.clone();
        let mut put = |key: &str, value: serde_json::Value| {
            map.insert(key.to_owned(), value);
        };
        put("name", self.name.clone().into());
        if let Some(model) = &self.model {
            put("model", model.clone().into());
        }
        if let Some(url) = &self.base_url {
            put("base_url", url.clone().into());
        }
        if let Some(pricing) = &self.pricing {
            put("pricing", serde_json::to_value(pricing).unwrap_or(serde_json::Value::Null));
        }
        put("timeouts", serde_json::to_value(self.timeouts).unwrap_or(serde_json::Value::Null));
        put("priority", self.priority.into());
        put("enabled", self.enabled.into());
        if let Some(region) = &self.region {
            put("region", region.clone().into());
        }
        put("tags", self.tags.clone().into());
        if let Some(quality) = self.quality {
            put("quality", quality.into());
        }
        serde_json::Value::Object(map)
    }

    /// Reads a provider-specific key, with a typed error naming the key.
    pub fn extra_as<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, BackendError> {
        match self.extra.get(key) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| BackendError::config(format!("backend `{}`: setting `{key}`: {e}", self.name))),
        }
    }

    /// Rejects `extra` keys the provider does not know (typos are errors, not defaults).
    pub fn reject_unknown_extra(&self, known: &[&str]) -> Result<(), BackendError> {
        for k in self.extra.keys() {
            if !known.contains(&k.as_str()) {
                return Err(BackendError::config(format!(
                    "backend `{}`: unknown setting `{k}` (known here: {})",
                    self.name,
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                )));
            }
        }
        Ok(())
    }

    /// Parses and checks `base_url`: http or https, a host, no credentials in it.
    pub fn parsed_base_url(&self, default: &str) -> Result<url::Url, BackendError> {
        let raw = self.base_url.as_deref().unwrap_or(default);
        let url = url::Url::parse(raw).map_err(|e| {
            BackendError::config(format!("backend `{}`: base_url `{}`: {e}", self.name, redact_url(raw)))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BackendError::config(format!(
                "backend `{}`: base_url must be http or https, got `{}`",
                self.name,
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BackendError::config(format!(
                "backend `{}`: base_url must not carry credentials; use api_key",
                self.name
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(BackendError::config(format!("backend `{}`: base_url has no host", self.name)));
        }
        Ok(url)
    }
}

/// What a backend says about itself (the seeds' `BackendInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub name: String,
    /// Provider kind, e.g. `openai`.
    pub provider: String,
    #[serde(rename = "type")]
    pub backend_type: BackendType,
    pub model: String,
    pub priority: i32,
    pub pricing: Pricing,
    /// 0..1, higher is better.
    pub quality: f64,
    pub supports_streaming: bool,
    pub supports_tools: bool,
    /// Whether the backend takes images in user messages ([`Message::images`](crate::Message::images)).
    /// A backend without it is skipped for a request with images rather than sent one it would
    /// answer without seeing them. Defaults to `false`: a provider says it can.
    #[serde(default)]
    pub supports_images: bool,
    /// Largest prompt+output the model takes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_never_prints() {
        let s = BackendSettings::new("a").api_key("sk-canary-0123456789");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("canary"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }

    #[test]
    fn settings_parse_with_extra_and_defaults() {
        let s: BackendSettings = serde_json::from_value(serde_json::json!({
            "name": "x", "api_key": "sk-1", "model": "m", "stream_include_usage": false,
            "timeouts": {"connect_ms": 500}
        }))
        .unwrap();
        assert!(s.enabled);
        assert_eq!(s.timeouts.connect, Duration::from_millis(500));
        assert_eq!(s.timeouts.total, Duration::from_secs(600));
        assert_eq!(s.extra_as::<bool>("stream_include_usage").unwrap(), Some(false));
        assert!(s.reject_unknown_extra(&[]).is_err());
    }

    #[test]
    fn plugin_json_round_trips_everything_but_the_key() {
        let s = BackendSettings::new("a")
            .api_key("sk-canary-0123456789")
            .model("m")
            .base_url("http://127.0.0.1:9/v1")
            .pricing(Pricing::new(0.15, 0.6).with_cache(0.075, 0.1875))
            .timeouts(Timeouts { connect: Duration::from_millis(250), ..Timeouts::default() })
            .priority(3)
            .tags(["fast", "cheap"])
            .quality(0.8)
            .extra("stream_include_usage", false);
        let json = s.to_plugin_json();
        assert!(!json.to_string().contains("canary"), "{json}");
        assert!(json.get("api_key").is_none());
        let back: BackendSettings = serde_json::from_value(json).unwrap();
        assert!(back.api_key.is_none());
        assert_eq!(back.name, "a");
        assert_eq!(back.model.as_deref(), Some("m"));
        assert_eq!(back.base_url, s.base_url);
        assert_eq!(back.pricing, s.pricing);
        assert_eq!(back.timeouts, s.timeouts);
        assert_eq!((back.priority, back.enabled, back.quality), (3, true, Some(0.8)));
        assert_eq!(back.tags, s.tags);
        assert_eq!(back.extra, s.extra);
    }

    #[test]
    fn base_url_secrets_stay_out_of_debug_and_errors() {
        let s = BackendSettings::new("a").base_url("https://proxy.example/v1?api-key=hunter2");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && shown.contains("proxy.example/v1?api-key=***"), "{shown}");
        // A password holding `/` makes the URL unparsable; the error still hides it.
        let bad = BackendSettings::new("a").base_url("https://u:pa/ss@host:99999/v1");
        let err = bad.parsed_base_url("").unwrap_err().to_string();
        assert!(!err.contains("pa/ss") && err.contains("base_url"), "{err}");
    }

    #[test]
    fn base_url_rules() {
        assert!(BackendSettings::new("a").base_url("ftp://x").parsed_base_url("").is_err());
        assert!(BackendSettings::new("a").base_url("http://u:p@x").parsed_base_url("").is_err());
        assert!(BackendSettings::new("a").parsed_base_url("https://api.openai.com/v1").is_ok());
    }

    #[test]
    fn cache_tokens_priced_at_their_rate() {
        let p = Pricing::new(1.0, 2.0).with_cache(0.1, 1.25);
        let u = Usage { cache_read_tokens: 1000, cache_write_tokens: 1000, ..Usage::reported(3000, 1000) };
        let c = p.cost(&u);
        assert!((c - (1.0 + 0.1 + 1.25 + 2.0)).abs() < 1e-9, "{c}");
        // Searches are billed apart, at their own rate, and free without one.
        let searched = Usage { web_search_requests: 3, ..u };
        assert!((p.cost(&searched) - c).abs() < 1e-12);
        let c = p.with_web_search(10.0).cost(&searched);
        assert!((c - (1.0 + 0.1 + 1.25 + 2.0 + 0.03)).abs() < 1e-9, "{c}");
    }

    /// Anthropic's own example rates: Opus 4.6 at $5/$25 per million is $30/$150 in fast
    /// mode, $10/$37.50 over 200K input tokens, and $60/$225 with both.
    #[test]
    fn long_prompts_and_fast_mode_scale_the_token_rates_and_stack() {
        let long = LongContext { above_input_tokens: 200_000, input_factor: 2.0, output_factor: 1.5 };
        let p =
            Pricing::new(0.005, 0.025).with_long_context(long).with_fast_factor(6.0).with_web_search(10.0);
        let per_million = |input: u32, fast: bool| {
            let tier = if fast { ServiceTier::Fast } else { ServiceTier::Standard };
            let u = Usage { tier, ..Usage::reported(input, 1_000_000) };
            let input_cost = p.cost(&Usage { output_tokens: 0, ..u }) * 1e6 / f64::from(input);
            (input_cost, p.cost(&Usage { input_tokens: 0, ..u }), p.cost(&u))
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let (i, o, _) = per_million(200_000, false);
        assert!(close(i, 5.0) && close(o, 25.0), "{i} {o}: at the threshold, the plain rates");
        let (i, _, both) = per_million(200_001, false);
        assert!(close(i, 10.0) && close(both, 200_001.0 * 10.0 / 1e6 + 37.5), "{i} {both}");
        let (i, o, _) = per_million(1000, true);
        assert!(close(i, 30.0) && close(o, 150.0), "{i} {o}");
        let (i, _, both) = per_million(400_000, true);
        assert!(close(i, 60.0) && close(both, 400_000.0 * 60.0 / 1e6 + 225.0), "{i} {both}");
        // Cache tokens count toward the threshold and scale with the input rate; searches
        // keep their own price.
        let cached =
            Usage { cache_read_tokens: 150_000, web_search_requests: 2, ..Usage::reported(250_000, 0) };
        let c = p.cost(&cached);
        assert!(close(c, (100_000.0 * 0.005 + 150_000.0 * 0.005) * 2.0 / 1000.0 + 0.02), "{c}");
        // Without the settings, neither changes a price.
        let plain = Pricing::new(0.005, 0.025);
        let fast = Usage { tier: ServiceTier::Fast, ..Usage::reported(400_000, 1000) };
        assert!(close(plain.cost(&fast), 400_000.0 * 0.005 / 1000.0 + 0.025));
    }
}
