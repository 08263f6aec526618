//! The async backend contract the router drives.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;

use crate::error::{BackendError, ErrorKind};
use crate::settings::BackendInfo;
use crate::types::{ChatRequest, ChatResponse, StreamEvent};

/// A stream of events ending in exactly one `Done` or `Error` (see [`StreamEvent`]).
pub type EventStream = Pin<Box<dyn Stream<Item = StreamEvent> + Send + 'static>>;

/// A backend: one (provider, base_url, model, credential). Object-safe so a router can hold
/// `Arc<dyn Backend>` of any provider, linked or loaded from a plugin.
///
/// Most providers never implement this by hand: they write a sans-IO
/// [`ProviderAdapter`](crate::adapter::ProviderAdapter) and `claudette-http`'s `HttpBackend`
/// implements `Backend` for it. Implement it directly only for an exotic transport.
///
/// Backends do not retry. The router owns the single retry loop (reliability-spec RT-1).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Unique name in a router.
    fn name(&self) -> &str {
        &self.info().name
    }

    fn info(&self) -> &BackendInfo;

    /// One complete answer.
    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError>;

    /// A streamed answer. `Err` means nothing was received (connect failure, non-2xx status);
    /// a failure after the headers arrives as the stream's terminal `Error` event.
    async fn send_stream(&self, request: &ChatRequest) -> Result<EventStream, BackendError>;

    /// A zero-cost liveness check (a model list, never a completion).
    async fn health_check(&self) -> Result<(), BackendError>;

    /// Models this backend can serve, as the provider lists them.
    async fn available_models(&self) -> Result<Vec<String>, BackendError>;

    /// The provider's own count of the input tokens `request` would cost, without generating
    /// anything: what a client needs to know before it sends a long conversation (Claude Code
    /// compacts on it). Counting is free at the providers that offer it and is not a
    /// completion, so it books no cost, and its failures say nothing about whether the backend
    /// serves messages (callers keep them away from circuit breakers).
    ///
    /// The default is [`ErrorKind::Unsupported`]: most providers have no such call, and the
    /// caller then estimates locally.
    async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, BackendError> {
        let _ = request;
        Err(BackendError::new(ErrorKind::Unsupported, "this backend offers no token count")
            .with_backend(self.name()))
    }

    /// Estimated cost of a request before it is sent.
    fn estimate_cost(&self, request: &ChatRequest) -> f64 {
        let input = request.estimated_input_tokens();
        let output = request.max_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
        self.info().pricing.estimate(input, output)
    }

    /// Checks settings without sending a completion.
    fn validate_config(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Output tokens assumed when a request sets no `max_tokens`, for cost estimates only.
pub const DEFAULT_OUTPUT_ESTIMATE: u32 = 256;

/// Shared handle to any backend.
pub type SharedBackend = Arc<dyn Backend>;

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.name())
    }
}
