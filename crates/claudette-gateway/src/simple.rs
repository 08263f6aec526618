//! `POST /api/chat`: the seeds' Express integration, `{"message": "…"}` → `{"response": "…"}`.

use axum::extract::{Request, State};
use axum::response::Response;
use claudette_core::ChatRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::{Fault, fault};
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

/// The field at fault in a body that failed to parse. serde's own message names neither the
/// field nor, for `message` sent together with its alias `prompt`, the alias: "invalid type:
/// integer `42`, expected a string at line 1 column 13" leaves a client guessing which field.
fn locate(v: &Value) -> Option<Fault> {
    let obj = v.as_object()?;
    if obj.contains_key("message") && obj.contains_key("prompt") {
        let both = <serde_json::Error as serde::de::Error>::custom(
            "send `message` or `prompt` (the same field), not both",
        );
        return Some(("message".into(), both));
    }
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let top = |k: &'static str| -> Option<Fault> {
        let v = field(k)?;
        match k {
            "max_tokens" => fault::<u32>(k.into(), v),
            "temperature" => fault::<f32>(k.into(), v),
            _ => fault::<String>(k.into(), v),
        }
    };
    ["message", "prompt", "model", "backend", "max_tokens", "temperature"].into_iter().find_map(top)
}

/// The 400 for a JSON body that is not a [`SimpleRequest`]: the field at fault when one can be
/// told, so a client sees what to change rather than a line and column.
fn refusal(value: &Value) -> ApiError {
    match locate(value) {
        Some((path, inner)) => ApiError::invalid(format!("`{path}`: {inner}")).with_param(path),
        None => {
            let reason = SimpleRequest::deserialize(value)
                .err()
                .map_or_else(|| "unexpected shape".to_owned(), |e| e.to_string());
            ApiError::invalid(format!("request body is not valid JSON for this endpoint: {reason}"))
        }
    }
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
        let parsed: SimpleRequest = match serde_json::from_slice(bytes) {
            Ok(parsed) => parsed,
            Err(_) => {
                // Not JSON at all: `parse_json` words that. JSON of the wrong shape: say where.
                let value: Value = respond::parse_json(EP, bytes)?;
                return Err(respond::local_error(EP, refusal(&value)));
            }
        };
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
