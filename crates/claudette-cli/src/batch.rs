//! `claudette batch in.jsonl -o out.jsonl`: many prompts, bounded concurrency, results in input
//! order, per-line errors, resumable.
//!
//! Resume works on the output file itself: a line already present there with `"ok": true` and
//! the same input fingerprint (SHA-256 of the input line) is copied, not re-sent. Results are
//! written to `OUT.partial` in input order as they complete and renamed over `OUT` at the end,
//! so an earlier complete output is never lost to a crash half-way; on Ctrl-C everything
//! answered so far is kept before exiting. After a crash that left no chance to rename (kill
//! -9, power loss), `OUT.partial` is read too, so its answers are not paid for twice; its last
//! line may be cut short, and is then simply sent again.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use claudette::{BackendRouter, ChatRequest, ChatResponse, Message, RouteError};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::common::{CliError, build_router, load_config, note, termination_signal};

#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// Input file, one JSON object per line.
    pub input: PathBuf,
    /// Output file, one JSON object per input line, in input order. Existing successful lines
    /// for the same input are kept and not re-sent.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Requests in flight at once.
    #[arg(long, short = 'j', default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Configuration file (default: $CLAUDETTE_CONFIG, then ./claudette.toml, then discovery).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// One non-empty input line.
struct Item {
    /// 1-based line number in the input file.
    line: usize,
    id: Option<Value>,
    fingerprint: String,
    request: Result<ChatRequest, String>,
}

pub(crate) async fn run(args: BatchArgs) -> Result<(), CliError> {
    if args.concurrency == 0 {
        return Err(CliError::usage("--concurrency must be at least 1"));
    }
    let partial = partial_path(&args.output);
    check_output_path(&args.input, &args.output, &partial)?;
    let bytes = std::fs::read(&args.input)
        .map_err(|e| CliError::failure(format!("cannot read {}: {e}", args.input.display())))?;
    let items = parse_input(&bytes);
    if items.is_empty() {
        return Err(CliError::usage(format!("{} has no input lines", args.input.display())));
    }
    let config = load_config(args.config.as_deref())?;
    let router = build_router(&config)?;

    // Lines already answered by an earlier run of the same input: the last complete output,
    // then what a crashed run had written since (newer, so it wins).
    let mut done = previous_successes(&args.output)?;
    done.extend(previous_successes(&partial)?);
    let mut results: BTreeMap<usize, String> = BTreeMap::new();
    let mut todo = Vec::new();
    for (idx, item) in items.iter().enumerate() {
        match done.get(&item.line) {
            Some((fp, raw)) if *fp == item.fingerprint => {
                results.insert(idx, raw.clone());
            }
            _ => todo.push(idx),
        }
    }
    let resumed = results.len();

    let file = std::fs::File::create(&partial)
        .map_err(|e| CliError::failure(format!("cannot write {}: {e}", partial.display())))?;
    let mut writer = OrderedWriter { out: std::io::BufWriter::new(file), next: 0, total: items.len() };
    writer.flush_ready(&mut results).map_err(|e| write_error(&partial, &e))?;

    let progress = ProgressBar::new(todo.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} lines  {msg}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    if resumed > 0 {
        progress.println(format!("resuming: {resumed} line(s) already done in {}", args.output.display()));
    }

    let mut failed = 0usize;
    let mut interrupted = false;
    {
        let items = &items;
        let router: &Arc<BackendRouter> = &router;
        let mut running = futures::stream::iter(todo.iter().copied())
            .map(|idx| async move {
                let item = &items[idx];
                let line = match &item.request {
                    Ok(req) => result_line(item, router.route_request(req).await),
                    Err(why) => error_line(item, &json!({"kind": "invalid_input", "message": why}), 0),
                };
                (idx, line)
            })
            .buffer_unordered(args.concurrency);
        let stop = termination_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                next = running.next() => match next {
                    Some((idx, (line, ok))) => {
                        if !ok {
                            failed += 1;
                            progress.set_message(format!("{failed} failed"));
                        }
                        results.insert(idx, line);
                        progress.inc(1);
                        writer.flush_ready(&mut results).map_err(|e| write_error(&partial, &e))?;
                    }
                    None => break,
                },
                () = &mut stop => {
                    interrupted = true;
                    break;
                }
            }
        }
    }
    progress.finish_and_clear();

    // Whatever is known but not yet written (after a gap left by an interruption) goes out now,
    // still in input order.
    writer.flush_all(&mut results).map_err(|e| write_error(&partial, &e))?;
    writer.out.flush().map_err(|e| write_error(&partial, &e))?;
    drop(writer);
    std::fs::rename(&partial, &args.output).map_err(|e| {
        CliError::failure(format!("cannot move {} to {}: {e}", partial.display(), args.output.display()))
    })?;

    let sent = todo.len();
    let summary = format!(
        "{} line(s): {} answered now, {} resumed, {failed} failed → {}",
        items.len(),
        sent.saturating_sub(failed),
        resumed,
        args.output.display()
    );
    if interrupted {
        return Err(CliError::interrupted(format!(
            "interrupted; answers so far are in {}; re-run to resume",
            args.output.display()
        )));
    }
    note!("{summary}");
    if failed > 0 {
        return Err(CliError::failure(format!(
            "{failed} of {} line(s) failed (see \"ok\": false in {}); re-run to retry them",
            items.len(),
            args.output.display()
        )));
    }
    Ok(())
}

fn write_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::failure(format!("cannot write {}: {e}", path.display()))
}

/// Refuses, before anything is sent, an output path that would destroy the input (the final
/// rename replaces `OUT`, and creating `OUT.partial` truncates it) or that cannot take the
/// final rename (a directory), which would otherwise only fail after every line was paid for.
fn check_output_path(input: &Path, output: &Path, partial: &Path) -> Result<(), CliError> {
    if output.is_dir() {
        return Err(CliError::usage(format!("-o {} is a directory; name a file", output.display())));
    }
    for target in [output, partial] {
        if same_file(input, target) {
            return Err(CliError::usage(format!(
                "-o {} would overwrite the input file {}; choose another output file",
                output.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// Whether both paths name one existing file, also through symlinks, `./` or hard links.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// Splits the input into its non-blank lines. Works on bytes so that one line with invalid
/// UTF-8 is recorded as that line's error instead of refusing the whole file; a UTF-8 byte
/// order mark (Windows editors write one) is not part of the first line's JSON; `\r\n` endings
/// are accepted.
fn parse_input(bytes: &[u8]) -> Vec<Item> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            match std::str::from_utf8(raw) {
                Ok(text) if text.trim().is_empty() => None,
                Ok(text) => Some(parse_line(i + 1, text)),
                Err(e) => Some(Item {
                    line: i + 1,
                    id: None,
                    fingerprint: fingerprint(raw.trim_ascii()),
                    request: Err(format!("not UTF-8: invalid byte at column {}", e.valid_up_to() + 1)),
                }),
            }
        })
        .collect()
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Writes results in input order: index `next` goes out as soon as it is known.
struct OrderedWriter {
    out: std::io::BufWriter<std::fs::File>,
    next: usize,
    total: usize,
}

impl OrderedWriter {
    fn flush_ready(&mut self, results: &mut BTreeMap<usize, String>) -> std::io::Result<()> {
        let mut wrote = false;
        while let Some(line) = results.remove(&self.next) {
            writeln!(self.out, "{line}")?;
            self.next += 1;
            wrote = true;
        }
        if wrote {
            // Each completed prefix reaches the disk, so `tail -f OUT.partial` shows progress.
            self.out.flush()?;
        }
        Ok(())
    }

    fn flush_all(&mut self, results: &mut BTreeMap<usize, String>) -> std::io::Result<()> {
        while self.next < self.total {
            if let Some(line) = results.remove(&self.next) {
                writeln!(self.out, "{line}")?;
            }
            self.next += 1;
        }
        Ok(())
    }
}

/// First 16 bytes of the SHA-256 of the (trimmed) input line, hex.
fn fingerprint(line: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(line).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn parse_line(line: usize, text: &str) -> Item {
    let fingerprint = fingerprint(text.trim().as_bytes());
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Item { line, id: None, fingerprint, request: Err(format!("not JSON: {e}")) },
    };
    let Value::Object(mut map) = value else {
        return Item { line, id: None, fingerprint, request: Err("expected a JSON object".into()) };
    };
    let id = map.remove("id");
    let request = if let Some(prompt) = map.remove("prompt") {
        prompt_request(prompt, map)
    } else if map.contains_key("messages") {
        serde_json::from_value::<ChatRequest>(Value::Object(map)).map_err(|e| format!("invalid request: {e}"))
    } else {
        Err("expected \"prompt\" or \"messages\"".into())
    };
    let request = request.and_then(|r| {
        if r.messages.is_empty() { Err("the request has no messages".to_owned()) } else { Ok(r) }
    });
    Item { line, id, fingerprint, request }
}

/// `{"prompt": "…", "system"?, "max_tokens"?, "temperature"?, "model"?, "backend"?}`.
fn prompt_request(prompt: Value, mut rest: serde_json::Map<String, Value>) -> Result<ChatRequest, String> {
    let Value::String(prompt) = prompt else { return Err("\"prompt\" must be a string".into()) };
    let mut messages = Vec::new();
    match rest.remove("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(Message::system(s)),
        Some(_) => return Err("\"system\" must be a string".into()),
    }
    messages.push(Message::user(prompt));
    rest.insert("messages".into(), serde_json::to_value(messages).map_err(|e| e.to_string())?);
    serde_json::from_value::<ChatRequest>(Value::Object(rest)).map_err(|e| format!("invalid request: {e}"))
}

fn with_id(mut obj: serde_json::Map<String, Value>, item: &Item) -> String {
    if let Some(id) = &item.id {
        obj.insert("id".into(), id.clone());
    }
    Value::Object(obj).to_string()
}

/// The output line and whether it is a success.
fn result_line(item: &Item, result: Result<ChatResponse, RouteError>) -> (String, bool) {
    match result {
        Ok(resp) => {
            let mut obj = serde_json::Map::new();
            obj.insert("line".into(), json!(item.line));
            obj.insert("input_sha256".into(), json!(item.fingerprint));
            obj.insert("ok".into(), json!(true));
            obj.insert("response".into(), serde_json::to_value(&resp).unwrap_or(Value::Null));
            (with_id(obj, item), true)
        }
        Err(e) => {
            let attempts = e.attempts();
            let error =
                serde_json::to_value(&e.error).unwrap_or_else(|_| json!({"message": e.error.to_string()}));
            error_line(item, &error, attempts)
        }
    }
}

fn error_line(item: &Item, error: &Value, attempts: usize) -> (String, bool) {
    let mut error = error.clone();
    if let Value::Object(m) = &mut error {
        m.insert("attempts".into(), json!(attempts));
    }
    let mut obj = serde_json::Map::new();
    obj.insert("line".into(), json!(item.line));
    obj.insert("input_sha256".into(), json!(item.fingerprint));
    obj.insert("ok".into(), json!(false));
    obj.insert("error".into(), error);
    (with_id(obj, item), false)
}

/// `line → (fingerprint, raw output line)` for every successful line of an earlier output.
/// Read as bytes: a crash can cut the last line inside a multi-byte character, and that must
/// cost only that line, not the whole file.
fn previous_successes(path: &Path) -> Result<HashMap<usize, (String, String)>, CliError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(CliError::failure(format!("cannot read {}: {e}", path.display()))),
    };
    let mut done = HashMap::new();
    for raw in bytes.split(|b| *b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(raw) = std::str::from_utf8(raw) else { continue };
        let Ok(v) = serde_json::from_str::<Value>(raw) else { continue };
        let ok = v.get("ok").and_then(Value::as_bool) == Some(true);
        let line = v.get("line").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
        let fp = v.get("input_sha256").and_then(Value::as_str);
        if let (true, Some(line), Some(fp)) = (ok, line, fp) {
            done.insert(line, (fp.to_owned(), raw.to_owned()));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_as_prompts_or_requests() {
        let i = parse_line(3, r#"{"id": "a", "prompt": "hi", "system": "be brief", "max_tokens": 5}"#);
        let r = i.request.unwrap();
        assert_eq!(i.id, Some(json!("a")));
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.max_tokens, Some(5));
        let i = parse_line(4, r#"{"messages": [{"role": "user", "content": "x"}], "temperature": 0.5}"#);
        assert_eq!(i.request.unwrap().temperature, Some(0.5));
        assert!(parse_line(5, "nope").request.unwrap_err().starts_with("not JSON"));
        assert!(parse_line(6, r#"{"id": 1}"#).request.is_err());
        assert!(parse_line(7, r#"{"prompt": 5}"#).request.is_err());
        assert_eq!(
            parse_line(8, " {\"prompt\": \"x\"} ").fingerprint,
            parse_line(9, "{\"prompt\": \"x\"}").fingerprint
        );
    }

    #[test]
    fn partial_sits_next_to_output() {
        assert_eq!(partial_path(Path::new("/tmp/out.jsonl")), Path::new("/tmp/out.jsonl.partial"));
    }
}
