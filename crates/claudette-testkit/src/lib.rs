//! Fake LLM providers on `127.0.0.1`, speaking the real wire formats, with scriptable faults.
//!
//! Claudette's reliability features (retries, failover, circuit breakers, honest streaming,
//! usage accounting) are only worth something if they hold against what providers really
//! send, including the failures. This crate lets every other crate's tests, and the demo,
//! run against real HTTP on a random local port instead of mocking a client trait:
//!
//! - [`FakeServer`] answers each request from a FIFO script of [`Reply`] values, counts and
//!   records every request, and serves model lists for GETs.
//! - [`Reply`] builds real provider bodies (OpenAI Chat Completions and its SSE chunks,
//!   Anthropic Messages and its named events, Ollama `/api/chat` NDJSON, Gemini
//!   `generateContent`) and layers faults on them: a slow first byte ([`Reply::delay`]),
//!   a stalled stream ([`Reply::gap`]), a connection cut mid-body ([`Reply::cut_after`]), a
//!   request that is never answered ([`Reply::hang`]), errors inside a 200 stream.
//! - [`closed_port_url`], [`HoldServer`] and [`ResetServer`] produce transport faults below
//!   HTTP: refused, accepted-but-silent, and reset before the response.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use claudette_testkit::{FakeServer, Reply};
//! let server = FakeServer::start().await;
//! server.push(Reply::openai_error(429, "requests", Some("rate_limit_exceeded"), "slow down").header("retry-after", "2"));
//! server.push(Reply::openai_stream(&["Hel", "lo"]));
//! let client = reqwest::Client::new();
//! let url = format!("{}/chat/completions", server.v1_url());
//! let first = client.post(&url).body(r#"{"model":"m"}"#).send().await.unwrap();
//! assert_eq!((first.status().as_u16(), first.headers()["retry-after"].to_str().unwrap()), (429, "2"));
//! let second = client.post(&url).body(r#"{"model":"m"}"#).send().await.unwrap().text().await.unwrap();
//! assert!(second.contains(r#""content":"Hel""#) && second.ends_with("data: [DONE]\n\n"));
//! assert_eq!((server.post_requests(), server.last_json().unwrap()["model"].as_str()), (2, Some("m")));
//! # }
//! ```
//!
//! Every server runs on the tokio runtime it was started in and stops when dropped. Token
//! counts in the shapes are predictable (see [`shapes`]) so usage and cost tests can assert
//! exact numbers.

pub mod events;
mod faults;
mod reply;
mod server;
pub mod shapes;

pub use faults::{HoldServer, ResetServer, closed_port_url};
pub use reply::Reply;
pub use server::{FakeServer, Received};
