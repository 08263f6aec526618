//! `POST /api/chat`: the seeds' Express integration, `{"message": "…"}` → `{"response": "…"}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use claudette_core::ChatRequest;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Flavor};
use crate::respond::{self, Endpoint, Shared};
use crate::{limits, routing};

const EP: Endpoint = Endpoint { label: "api_chat", flavor: Flavor::Simple };

#[derive(Debug, Deserialize)]
struct SimpleRequest {
    /// The seeds' Express example sends `message`; their Next.js one sends `prompt`.
    #[serde(default, alias = "prompt")]
    message: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
}

#[derive(Serialize)]
struct SimpleResponse<'a> {
    response: &'a str,
    backend: &'a str,
    model: &'a str,
    cost: f64,
}

pub(crate) async fn chat(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let admitted = match respond::admit(&st, EP, body).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let parsed: SimpleRequest = match respond::parse_json(EP, &admitted.body) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let Some(message) = parsed.message.filter(|m| !m.trim().is_empty()) else {
        return respond::local_error(EP, ApiError::invalid("`message` is required").with_param("message"));
    };
    let mut request = ChatRequest::prompt(message);
    request.max_tokens = parsed.max_tokens;
    request.temperature = parsed.temperature;
    if let Err(resp) = limits::check_request(&st, EP, &mut request) {
        return resp;
    }
    let overrides = match routing::overrides(&headers) {
        Ok(o) => o,
        Err(e) => return respond::local_error(EP, e),
    };
    // `backend` names a backend explicitly; `model` resolves like the other endpoints.
    let target = parsed.backend.or(parsed.model);
    if let Err(e) = routing::resolve_model(&st.router, target.as_deref(), &mut request) {
        return respond::local_error(EP, e);
    }
    match st.router.route_request_with(&request, overrides).await {
        Ok(resp) => {
            let body = serde_json::to_vec(&SimpleResponse {
                response: &resp.content,
                backend: &resp.backend,
                model: &resp.model,
                cost: resp.cost,
            })
            .unwrap_or_default();
            respond::json_ok(EP, admitted.started, body, &resp.backend, resp.cost, resp.decision.as_ref())
        }
        Err(e) => respond::routed_error(EP, admitted.started, &e),
    }
}
