//! `POST /api/chat`: the seeds' Express integration, `{"message": "…"}` → `{"response": "…"}`.

use axum::extract::{Request, State};
use axum::response::Response;
use claudette_core::ChatRequest;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Flavor};
use crate::respond::{self, Endpoint, Shared};

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

pub(crate) async fn chat(State(st): State<Shared>, request: Request) -> Response {
    let prepared = respond::prepare(&st, EP, request, |bytes| {
        let parsed: SimpleRequest = respond::parse_json(EP, bytes)?;
        let Some(message) = parsed.message.filter(|m| !m.trim().is_empty()) else {
            return Err(respond::local_error(
                EP,
                ApiError::invalid("`message` is required").with_param("message"),
            ));
        };
        let mut request = ChatRequest::prompt(message);
        request.max_tokens = parsed.max_tokens;
        request.temperature = parsed.temperature;
        // `backend` names a backend explicitly; `model` resolves like the other endpoints.
        Ok((request, parsed.backend.or(parsed.model), ()))
    })
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    respond::answer_json(&st, EP, prepared, |resp| {
        serde_json::to_vec(&SimpleResponse {
            response: &resp.content,
            backend: &resp.backend,
            model: &resp.model,
            cost: resp.cost,
        })
        .unwrap_or_default()
    })
    .await
}
