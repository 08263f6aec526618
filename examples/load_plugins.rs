//! Loads provider plugins from a directory and routes a real request through one of them.
//!
//! ```sh
//! cargo xtask plugins                                  # builds target/plugins/*.so
//! cargo run -p claudette-examples --example load_plugins [-- PLUGIN_DIR]
//! ```
//!
//! The directory holds the provider crates built as plugins and `examples/custom-backend`,
//! a third-party-style plugin for the seeds' `CustomBackend` API (`POST /generate {prompt}` →
//! `{content}`). This host links the usual providers too, so their plugin copies are refused
//! as duplicates (each refusal names the file and the reason, and loading goes on); the
//! `custom` provider exists only in its `.so`. A fake server on 127.0.0.1 (from the test kit)
//! plays the custom API, and the request goes through a `BackendRouter`, the plugin's adapter
//! and the host's own HTTP client, as any linked provider's would.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use claudette::{BackendRouter, BackendSettings, ChatRequest, RouterOptions, StreamEvent};
use claudette_plugin::{LoadOptions, load_dir_into};
use claudette_testkit::{FakeServer, Reply};
use futures::StreamExt;
use serde_json::json;

fn default_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("plugins")
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(default_dir);
    let dir = dir.canonicalize().unwrap_or(dir);
    if !dir.is_dir() {
        bail!(
            "no plugin directory at {} (run `cargo xtask plugins` first, or pass a directory)",
            dir.display()
        );
    }

    // The providers linked into this binary, then the plugins. Plugins are loaded from private
    // copies, so the bytes that were checked are the bytes that run.
    let mut registry = claudette::registry()?;
    let runtime = std::env::temp_dir().join(format!("claudette-plugins-{}", std::process::id()));
    let options = LoadOptions::default().copy_to(&runtime);
    let report = load_dir_into(&mut registry, &dir, &options);
    let _ = std::fs::remove_dir(&runtime);
    println!("plugins from {}:", dir.display());
    for name in &report.loaded {
        println!("  loaded   {name}");
    }
    for refused in &report.errors {
        println!("  refused  {refused}");
    }
    if !report.loaded.iter().any(|n| n == "custom") {
        bail!("the `custom` plugin (libclaudette_custom_backend) did not load");
    }

    // The seeds' custom API, played by a fake server on 127.0.0.1.
    let server = FakeServer::start().await;
    server.push(Reply::json(
        200,
        json!({"content": "Plugins are shared libraries loaded at run time.", "tokensInput": 11, "tokensOutput": 8}),
    ));
    server.push(Reply::ndjson(vec![
        json!({"delta": "Loaded "}),
        json!({"delta": "from a "}),
        json!({"delta": ".so, streamed by the host."}),
        json!({"done": true, "tokensInput": 9, "tokensOutput": 7}),
    ]));

    let settings = BackendSettings::new("in-house").base_url(server.url()).api_key("sk-in-house-demo-key");
    let backend = registry.build("custom", &settings).context("building the plugin backend")?;
    let router = BackendRouter::new(RouterOptions::default());
    router.register_backend(backend)?;

    let answer = router.route_request(&ChatRequest::prompt("What is a plugin?")).await?;
    println!("\nanswer from `{}` (provider custom, via the plugin):", answer.backend);
    println!("  {}", answer.content);
    println!(
        "  usage: {} in / {} out ({:?})",
        answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.source
    );

    print!("\nstream: ");
    let mut stream = router.route_stream(&ChatRequest::prompt("And streaming?")).await?;
    while let Some(event) = stream.next().await {
        match event {
            StreamEvent::TextDelta { text } => print!("{text}"),
            StreamEvent::Done { end } => {
                println!("\n  done: {:?}, {} tokens out", end.finish_reason, end.usage.output_tokens)
            }
            StreamEvent::Error { error } => bail!("stream failed: {error}"),
            _ => {}
        }
    }

    let seen = server.received();
    let auth = seen.first().and_then(|r| r.header("authorization")).unwrap_or("none");
    println!(
        "\nthe fake server got {} requests to {}; auth header attached by the host: {}",
        seen.len(),
        seen.first().map(|r| r.path.as_str()).unwrap_or("?"),
        if auth.starts_with("Bearer sk-in-house") { "yes" } else { "no" }
    );
    Ok(())
}
