//! Turning transport failures into [`BackendError`]s without leaking URLs or keys.

use std::fmt;

use claudette_core::{ApiKey, BackendError, ErrorKind, Phase};

use crate::transport::BodyError;

/// A failure while reading a response body after its headers arrived.
///
/// In a stream a lost connection is an interruption (the caller may already hold part of the
/// answer); in a plain response it is a transport failure in phase `Body`. A body whose
/// framing is broken is a malformed response either way. The texts are our own and the I/O
/// error's: no URL, no key.
pub(crate) fn body_error(e: &BodyError, streaming: bool) -> BackendError {
    match e {
        BodyError::Malformed(what) => {
            BackendError::malformed(format!("malformed response body: {what}")).with_phase(Phase::Body)
        }
        BodyError::Transport(cause) if streaming => {
            BackendError::interrupted(format!("connection lost mid-stream: {cause}"))
        }
        BodyError::Transport(cause) => BackendError::new(
            ErrorKind::Transport,
            format!("connection lost while reading the response body: {cause}"),
        )
        .with_phase(Phase::Body),
    }
}

/// The error for a 3xx answer. Redirects are never followed (S-09, F-27). The `Location` is
/// deliberately left out: it is attacker-controlled text and may carry credentials.
pub(crate) fn redirect_error(status: u16) -> BackendError {
    BackendError::new(
        ErrorKind::Transport,
        format!("upstream answered a redirect (HTTP {status}), which is never followed"),
    )
    .with_status(status)
    .with_phase(Phase::AwaitingResponse)
}

/// Removes this backend's own key from an error before it leaves the backend.
///
/// Adapters build messages from provider bodies, and providers echo the presented key
/// ("Incorrect API key provided: sk-…"). `BackendError::with_provider_body` scrubs key-like
/// tokens by shape; this is the exact-match second line of defence (S-03), and the only one
/// that catches a key with no recognisable shape (a self-hosted server's password).
#[derive(Clone)]
pub(crate) struct Redactor {
    key: Option<ApiKey>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor")
    }
}

impl Redactor {
    pub(crate) fn new(key: Option<ApiKey>) -> Self {
        Self { key: key.filter(|k| !k.is_empty()) }
    }

    pub(crate) fn error(&self, mut error: BackendError) -> BackendError {
        let Some(key) = &self.key else {
            return error;
        };
        let key = key.expose();
        let scrub = |s: &mut String| {
            if s.contains(key) {
                *s = s.replace(key, REDACTED);
            }
        };
        scrub(&mut error.message);
        if let Some(body) = error.provider_body.as_mut() {
            scrub(body);
        }
        if let Some(code) = error.code.as_mut() {
            scrub(code);
        }
        error
    }
}

const REDACTED: &str = "[REDACTED]";

/// `scheme://host[:port]/path` of a URL, for logs: no query string (Gemini-style `?key=`), no
/// userinfo, no fragment.
pub(crate) fn loggable_url(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_url_drops_query_and_userinfo() {
        let url = url::Url::parse("https://user:pw@example.com:8443/v1/models?key=AIzaSecret#x").unwrap();
        assert_eq!(loggable_url(&url), "https://example.com:8443/v1/models");
    }

    #[test]
    fn redactor_removes_the_exact_key_everywhere() {
        let key = "hunter2-local-password";
        let e = BackendError::new(ErrorKind::Auth, format!("bad key {key}"))
            .with_code(key)
            .with_provider_body(format!("{{\"error\":\"{key}\"}}").as_bytes());
        let e = Redactor::new(Some(ApiKey::new(key))).error(e);
        let shown = format!("{e} {:?} {:?}", e.provider_body, e.code);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(REDACTED));
        let untouched = Redactor::new(None).error(BackendError::new(ErrorKind::Auth, "x"));
        assert_eq!(untouched.message, "x");
    }

    #[test]
    fn redirect_error_is_transport_with_status() {
        let e = redirect_error(307);
        assert_eq!(e.kind, ErrorKind::Transport);
        assert_eq!(e.status, Some(307));
        assert!(e.message.contains("never followed"));
    }
}
