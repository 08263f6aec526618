//! # claudette-core
//!
//! The contract every Claudette provider implements and the policy that routes between them:
//! provider-neutral types ([`ChatRequest`], [`ChatResponse`], [`StreamEvent`], [`Usage`]), one
//! error type whose kind tells the router what it may do ([`BackendError`]), the sans-IO
//! [`ProviderAdapter`] and the async [`Backend`] trait, the circuit breaker, the router, metrics,
//! the provider registry, and the seams the router hands storage to (a usage sink, a response
//! cache).
//!
//! There is no I/O and no provider code here: `claudette-http` performs provider calls and
//! each `claudette-<provider>` crate supplies an adapter.

pub mod adapter;
pub mod backend;
pub mod base_url;
pub mod breaker;
#[cfg(feature = "router")]
pub mod budget;
#[cfg(feature = "router")]
pub mod cache;
pub mod clock;
pub mod costs;
pub mod decision;
pub mod error;
pub mod metrics;
pub mod registry;
#[cfg(feature = "router")]
pub mod router;
pub mod settings;
pub mod tokens;
pub mod turn;
pub mod types;

pub use adapter::{
    AuthScheme, Frame, Framer, Framing, HttpRequest, HttpResponse, Method, Observation, ProviderAdapter,
    StreamDecoder, StreamParser,
};
pub use backend::{Backend, EventStream, SharedBackend};
pub use breaker::{
    BreakerConfig, BreakerCounters, BreakerSnapshot, BreakerState, CircuitBreaker, Permit, RejectReason,
    Rejection,
};
#[cfg(feature = "router")]
pub use cache::{CacheKey, CacheMode, ResponseCache};
pub use clock::{Clock, FakeClock, SystemClock};
pub use costs::{CostAnalysis, CostLine, GroupBy, parse_timeframe};
pub use costs::{CostSource, CostSourceError, UsageOutcome, UsageRecord, UsageSink};
pub use decision::{
    Attempt, AttemptOutcome, CacheStatus, CandidateScore, RoutingDecision, SkipReason, Skipped,
};
pub use error::{BackendError, ErrorKind, Outcome, Phase, RetryAction};
pub use metrics::{BackendMetrics, HealthStatus, LatencySummary, PerformanceMetrics};
pub use registry::{BuildFn, Origin, ProviderFactory, RegisteredProvider, Registry, RegistryError};
#[cfg(feature = "router")]
pub use router::{
    BackendRouter, OptimizationTarget, RetryPolicy, RouteError, RouteOverrides, RoutedStream, RouterOptions,
    Selection, Weights,
};
pub use settings::{ApiKey, BackendInfo, BackendSettings, BackendType, LongContext, Pricing, Timeouts};
pub use types::{
    Block, BlockKind, BlockOrder, CacheAt, CacheBreakpoint, CacheTtl, ChatRequest, ChatResponse,
    DOCUMENT_MEDIA_TYPE, DOCUMENT_PAGE_TOKEN_ESTIMATE, DOCUMENT_URL_PAGES, Dialect, Document, DocumentSource,
    FinishReason, IMAGE_MEDIA_TYPES, IMAGE_TOKEN_ESTIMATE, Image, ImageSource, MAX_CACHE_BREAKPOINTS,
    Message, NativeBlock, NativeField, NativeFlag, NativeTool, ReasoningEffort, ResponseFormat, Role,
    Segment, ServiceTier, StreamBlockOrder, StreamEnd, StreamEvent, TextCitations, Thinking, ThinkingBlock,
    ThinkingSeal, ToolCall, ToolCallDelta, ToolCallSlot, ToolCallSlots, ToolChoice, ToolSpec, Usage,
    UsageSource,
};
