//! `claudette serve`: configuration → router → gateway, until SIGTERM or Ctrl-C.

use std::io::Write;
use std::sync::Arc;

use clap::Args;
use claudette_config::{Config, ProcessEnv};
use claudette_gateway::{Gateway, GatewayOptions, KeyEntry};
use claudette_ledger::{Ledger, LedgerOptions};

use crate::ConfigArg;
use crate::common::{CliError, build_router_with_plugins, describe_backend, note, termination_signal};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Address to listen on, e.g. 127.0.0.1:9000 (port 0: any free port). Wins over
    /// CLAUDETTE__SERVER__LISTEN, then CLAUDETTE_LISTEN, then the file's server.listen; a
    /// non-loopback address still needs [[server.keys]].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// The gateway's options from `[server]`. Keys cross over as hashes (the plain keys were
/// dropped when the configuration was loaded), each with its own limits.
pub(crate) fn gateway_options(config: &Config) -> GatewayOptions {
    let s = &config.server;
    GatewayOptions {
        listen: s.listen,
        api_keys: s
            .keys
            .iter()
            .map(|k| KeyEntry {
                name: k.name.clone(),
                sha256: k.sha256,
                rpm: k.rpm,
                max_concurrent: k.max_concurrent,
            })
            .collect(),
        allow_unauthenticated_non_loopback: s.allow_unauthenticated_non_loopback,
        max_body_bytes: s.max_body_bytes,
        max_concurrency: s.max_concurrency,
        max_messages: s.max_messages,
        max_output_tokens: s.max_output_tokens.map(std::num::NonZeroU32::get),
        shutdown_grace: s.shutdown_grace,
        header_read_timeout: s.header_read_timeout,
        count_tokens_timeout: s.count_tokens_timeout,
        admin_from_any: s.admin_from_any,
        workers: s.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        cost_source: None,
    }
}

/// Opens `[ledger]` when configured. A ledger that cannot be opened stops start-up: serving
/// without it would lose exactly the spend the operator asked to keep.
fn open_ledger(config: &Config) -> Result<Option<Arc<Ledger>>, CliError> {
    let Some(l) = &config.ledger else { return Ok(None) };
    let options = LedgerOptions { retention: l.retention(), ..LedgerOptions::default() };
    let ledger = Ledger::open(&l.path, options).map_err(|e| CliError::failure(e.to_string()))?;
    Ok(Some(Arc::new(ledger)))
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    let config =
        Config::load_with_listen(args.config.config.as_deref(), &ProcessEnv, args.listen.as_deref())?;
    let (router, plugins) = build_router_with_plugins(&config)?;
    let ledger = open_ledger(&config)?;
    let mut options = gateway_options(&config);
    if let Some(l) = &ledger {
        router
            .set_usage_sink(l.clone())
            .map_err(|e| CliError::failure(format!("cannot attach the usage ledger: {e}")))?;
        options.cost_source = Some(l.clone());
    }
    let gateway = Gateway::new(router.clone(), options)
        .map_err(|e| CliError::failure(format!("cannot start the gateway: {e}")))?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on {}: {e}", config.server.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::failure(format!("cannot read the bound address: {e}")))?;

    note!("claudette {} — config: {}", env!("CARGO_PKG_VERSION"), config.source);
    for name in router.backend_names() {
        if let Some(b) = router.backend(&name) {
            let (name, provider, model) = describe_backend(&*b);
            let state = if b.info().enabled { "" } else { " (disabled)" };
            note!("  backend {name}: {provider}, model {model}{state}");
        }
    }
    if !plugins.loaded.is_empty() {
        note!("  plugin providers: {}", plugins.loaded.join(", "));
    }
    for refused in &plugins.refused {
        note!("  plugin refused: {refused}");
    }
    match config.server.keys.len() {
        0 => note!("  no gateway keys: open to anyone who can reach {local}"),
        n => note!(
            "  {n} gateway key(s): {}",
            config.server.keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
    match &config.ledger {
        Some(l) => note!("  usage ledger: {} (kept {} days)", l.path.display(), l.retention_days),
        None => note!("  no [ledger]: spend is kept in memory only, until exit"),
    }
    // The facade's build_router attached the cache `[cache]` asks for.
    match (router.has_response_cache(), &config.cache) {
        (true, c) => note!(
            "  response cache: identical requests of one gateway key answered from memory for {} s (up to {} MiB)",
            c.ttl_secs,
            c.max_mib
        ),
        (false, _) => note!("  no response cache ([cache] enabled = true turns it on)"),
    }
    if !config.overrides.is_empty() {
        note!("  overridden by environment: {}", config.overrides.join(", "));
    }
    // The one line scripts and tests read: the real address, also when the port was 0.
    // Written, not `println!`: nobody reading it (stdout closed) is no reason to stop serving.
    let signalled = termination_signal();
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on http://{local}").and_then(|()| out.flush());

    let grace = config.server.shutdown_grace;
    let shutdown = async move {
        signalled.await;
        note!("claudette: shutting down; in-flight requests have {} ms to finish", grace.as_millis());
    };
    let served = gateway.serve(listener, shutdown).await;
    // After the server: requests that finished during the grace period are booked too.
    if let Some(l) = &ledger {
        l.close();
        let s = l.stats();
        note!(
            "claudette: usage ledger closed ({} records written, {} dropped, {} failed)",
            s.written,
            s.dropped,
            s.failed
        );
    }
    served.map_err(|e| CliError::failure(format!("gateway stopped: {e}")))?;
    note!("claudette: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn key_limits_and_request_caps_reach_the_gateway() {
        let env: HashMap<String, String> = HashMap::new();
        let config = Config::from_toml_str(
            "[server]\nmax_messages = 20\nmax_output_tokens = 512\n\
             [[server.keys]]\nname = \"metered\"\nrpm = 60\nmax_concurrent = 2\n\
             sha256 = \"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"\n\
             [[server.keys]]\nname = \"open\"\n\
             sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n\
             [[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n",
            &env,
        )
        .unwrap();
        let o = gateway_options(&config);
        assert_eq!((o.max_messages, o.max_output_tokens), (20, Some(512)));
        let metered = &o.api_keys[0];
        assert_eq!(metered.name, "metered");
        assert_eq!(
            (metered.rpm.map(|n| n.get()), metered.max_concurrent.map(|n| n.get())),
            (Some(60), Some(2))
        );
        assert_eq!((o.api_keys[1].rpm, o.api_keys[1].max_concurrent), (None, None));

        let defaults = gateway_options(
            &Config::from_toml_str("[[backends]]\nprovider = \"ollama\"\nmodel = \"m\"\n", &env).unwrap(),
        );
        assert_eq!((defaults.max_messages, defaults.max_output_tokens), (1000, None));
    }
}
