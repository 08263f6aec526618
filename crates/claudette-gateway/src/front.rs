//! What each connection calls for each request: the three inference endpoints are dispatched
//! here, straight to their handlers; everything else goes through the axum app.
//!
//! Why: on the request path, the axum router and the tower layers around it (path matching,
//! the trace layer's span and response wrapper, the connect-info extension) cost 5-7 µs of
//! CPU per request out of about 32 µs of user time for a gateway answering from memory
//! (`bench_gateway stub-gateway`, measured with and without them). The inference endpoints
//! are where the traffic is, so they skip that stack; the admin and ops endpoints keep it.
//!
//! Both paths run the same code for what matters: [`auth::check_key`] (keys, per-address
//! lockout, per-key limits) when keys are configured, then the same handler. Request logs
//! keep their shape: a DEBUG `request` span with method and path only (no headers, no query
//! string: S-02) and a DEBUG event with status and latency at the end.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::response::Response;
use futures::future::Either;
use tracing::Instrument;

use crate::respond::Shared;
use crate::{anthropic, auth, openai, simple};

/// The inference endpoints, which the front dispatches itself.
#[derive(Debug, Clone, Copy)]
enum Inference {
    ChatCompletions,
    Messages,
    ApiChat,
}

impl Inference {
    fn of(request: &Request<hyper::body::Incoming>) -> Option<Inference> {
        if request.method() != Method::POST {
            return None;
        }
        match request.uri().path() {
            "/v1/chat/completions" => Some(Inference::ChatCompletions),
            "/v1/messages" => Some(Inference::Messages),
            "/api/chat" => Some(Inference::ApiChat),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Inference::ChatCompletions => "/v1/chat/completions",
            Inference::Messages => "/v1/messages",
            Inference::ApiChat => "/api/chat",
        }
    }

    async fn handle(self, st: Shared, request: Request) -> Response {
        match self {
            Inference::ChatCompletions => openai::chat_completions(State(st), request).await,
            Inference::Messages => anthropic::messages(State(st), request).await,
            Inference::ApiChat => simple::chat(State(st), request).await,
        }
    }
}

/// The per-connection request handler: the gateway's state, its axum app for everything
/// else, and the client's address.
#[derive(Clone)]
pub(crate) struct Front {
    st: Shared,
    app: Router,
}

impl Front {
    pub(crate) fn new(st: Shared, app: Router) -> Front {
        Front { st, app }
    }

    pub(crate) fn call(
        &self,
        mut request: Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Response, Infallible>> + Send + use<> {
        let Some(endpoint) = Inference::of(&request) else {
            request.extensions_mut().insert(ConnectInfo(peer));
            return Either::Right(tower::ServiceExt::oneshot(self.app.clone(), request));
        };
        let st = self.st.clone();
        let span = tracing::debug_span!("request", method = "POST", path = endpoint.path());
        Either::Left(
            async move {
                let started = Instant::now();
                let request = request.map(Body::new);
                let response = if st.keys.is_empty() {
                    endpoint.handle(st, request).await
                } else {
                    let next = st.clone();
                    auth::check_key(&st, Some(peer), request, |r| endpoint.handle(next, r)).await
                };
                tracing::debug!(
                    status = response.status().as_u16(),
                    latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "finished processing request"
                );
                Ok(response)
            }
            .instrument(span),
        )
    }
}
