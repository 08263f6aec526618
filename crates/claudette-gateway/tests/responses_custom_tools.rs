//! `custom` tools on `POST /v1/responses` (GPT-5's free-text tools; Codex CLI's `apply_patch`)
//! over real HTTP, in front of OpenAI- and Anthropic-flavoured fakes: offered upstream as a
//! function with one string argument, `input`, whose call comes back as a `custom_tool_call`
//! item (JSON and stream), and sent back as an assistant tool call and its result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/responses";

const GRAMMAR: &str = "start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\n\
                       end_patch: \"*** End Patch\" LF?\nhunk: /[^\\n]*/ LF\n%import common.LF";

/// What the model writes: several lines, quotes and a backslash, so that its JSON encoding
/// differs from it.
const PATCH: &str =
    "*** Begin Patch\n*** Update File: a.txt\n@@\n-say \"hi\"\n+say \"bye\" \\ ok\n*** End Patch\n";

/// Codex's `apply_patch` as it offers it to GPT-5-family models (grammar shortened).
fn apply_patch() -> Value {
    json!({"type": "custom", "name": "apply_patch",
           "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool.",
           "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR}})
}

fn shell() -> Value {
    json!({"type": "function", "name": "shell", "description": "runs a command",
           "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}})
}

/// `PATCH` as the arguments of the function `apply_patch` is offered as.
fn patch_arguments() -> String {
    json!({"input": PATCH}).to_string()
}

/// Splits `text` into `n` pieces at char boundaries (mid-escape, mid-word: as a server would).
fn fragments(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(chars.len().div_ceil(n)).map(|c| c.iter().collect()).collect()
}

/// The OpenAI error envelope with status 400; returns `param`.
fn refused(r: &Reply) -> String {
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
    v["error"]["param"].as_str().unwrap_or_else(|| panic!("no param: {}", r.text)).to_owned()
}

/// Checks the description a custom tool is offered with: its own, then where its text goes
/// and the grammar whole.
fn check_description(description: &str) {
    assert!(description.starts_with("Use the `apply_patch` tool to edit files."), "{description}");
    assert!(description.contains("string argument `input`"), "{description}");
    assert!(description.contains("Lark grammar"), "{description}");
    assert!(description.ends_with(GRAMMAR), "{description}");
}

/// Checks a finished `custom_tool_call` item holding `input`.
fn check_custom_call(item: &Value, call_id: &str, input: &str) {
    assert_eq!(item["type"], "custom_tool_call", "{item}");
    assert!(item["id"].as_str().unwrap().starts_with("ctc_"), "{item}");
    assert_eq!(item["call_id"], call_id);
    assert_eq!(item["name"], "apply_patch");
    assert_eq!(item["input"], input);
    assert_eq!(item["status"], "completed");
    assert!(item.get("arguments").is_none(), "{item}");
}

/// Checks a stream that answered with one custom call: the item announced empty, its input
/// whole in one delta and in the done event, then in the item and the final response; no
/// function-call events.
fn check_custom_stream(ev: &[(String, Value)], call_id: &str, input: &str) {
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{ev:?}"
    );
    let added = &ev[2].1["item"];
    assert_eq!(added["type"], "custom_tool_call", "{added}");
    assert_eq!(added["input"], "");
    assert_eq!(added["status"], "in_progress");
    let item_id = added["id"].as_str().unwrap();
    for (_, event) in &ev[3..5] {
        assert_eq!(event["item_id"], item_id, "{event}");
        assert_eq!(event["output_index"], 0);
    }
    assert_eq!(ev[3].1["delta"], input);
    assert_eq!(ev[4].1["input"], input);
    check_custom_call(&ev[5].1["item"], call_id, input);
    let response = &ev[6].1["response"];
    assert_eq!(response["output"].as_array().unwrap().len(), 1, "{response}");
    check_custom_call(&response["output"][0], call_id, input);
}

#[tokio::test]
async fn a_custom_tool_is_offered_as_a_function_and_its_call_comes_back_as_a_custom_tool_call() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_tool_call("call_1", "apply_patch", &patch_arguments()));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let tools = json!([shell(), apply_patch()]);
    let body = json!({"model": "auto", "input": "fix a.txt", "tools": tools,
                      "tool_choice": {"type": "custom", "name": "apply_patch"}});
    let r = post(&gw.url, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["status"], "completed");
    assert_eq!(v["tools"], tools, "the echo is what the client sent");
    assert_eq!(v["tool_choice"], json!({"type": "custom", "name": "apply_patch"}));
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{v}");
    check_custom_call(&output[0], "call_1", PATCH);

    let up = fake.last_json().unwrap();
    assert_eq!(up["tools"][0]["function"]["name"], "shell", "{up}");
    let offered = &up["tools"][1]["function"];
    assert_eq!(offered["name"], "apply_patch", "{up}");
    assert_eq!(
        offered["parameters"],
        json!({"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]})
    );
    check_description(offered["description"].as_str().unwrap());
    assert_eq!(up["tool_choice"], json!({"type": "function", "function": {"name": "apply_patch"}}));
}

#[tokio::test]
async fn a_streamed_custom_call_sends_its_input_whole_as_custom_tool_call_input_events() {
    let fake = FakeServer::start().await;
    let pieces = fragments(&patch_arguments(), 5);
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    fake.push(Fake::openai_stream_tool_call("call_2", "apply_patch", &pieces));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let body = json!({"input": "fix a.txt", "tools": [shell(), apply_patch()], "stream": true});
    let r = post(&gw.url, PATH, body).await;
    check_custom_stream(&responses_events(&r), "call_2", PATCH);
}

#[tokio::test]
async fn behind_anthropic_a_custom_tool_is_a_tool_with_an_input_string_json_and_stream() {
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_tool_use("toolu_1", "apply_patch", json!({"input": PATCH})));
    let pieces = fragments(&patch_arguments(), 4);
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    claude.push(Fake::anthropic_stream_tool_use("toolu_2", "apply_patch", &pieces));
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &claude))])).await;

    let body = json!({"input": "fix a.txt", "tools": [apply_patch()]});
    let r = post(&gw.url, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["output"].as_array().unwrap().len(), 1, "{v}");
    check_custom_call(&v["output"][0], "toolu_1", PATCH);
    let up = claude.last_json().unwrap();
    let offered = &up["tools"][0];
    assert_eq!(offered["name"], "apply_patch", "{up}");
    assert_eq!(
        offered["input_schema"],
        json!({"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]})
    );
    check_description(offered["description"].as_str().unwrap());

    let body = json!({"input": "fix a.txt", "tools": [apply_patch()], "stream": true});
    let r = post(&gw.url, PATH, body).await;
    check_custom_stream(&responses_events(&r), "toolu_2", PATCH);
}

#[tokio::test]
async fn custom_calls_sent_back_are_assistant_tool_calls_and_their_outputs_tool_results() {
    let fake = FakeServer::start().await;
    fake.push(Fake::openai_tool_call("call_1", "apply_patch", &patch_arguments()));
    fake.push(Fake::openai_text("Patched."));
    let claude = FakeServer::start().await;
    claude.push(Fake::anthropic_text("Patched."));
    let gw = start(router(vec![
        openai(openai_settings("oa", &fake)),
        anthropic(anthropic_settings("claude", &claude)),
    ]))
    .await;
    let first = json!({"model": "oa", "input": "fix a.txt", "tools": [apply_patch()]});
    let call = post(&gw.url, PATH, first).await.json()["output"][0].clone();
    check_custom_call(&call, "call_1", PATCH);

    // The next turn as Codex builds it: the call item as it came, and the tool's output (a
    // string, or a list of text parts).
    for (backend, output) in
        [("oa", json!("Done!")), ("claude", json!([{"type": "input_text", "text": "Done!"}]))]
    {
        let second = json!({
            "model": backend,
            "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix a.txt"}]},
                call,
                {"type": "custom_tool_call_output", "call_id": "call_1", "output": output}
            ],
            "tools": [apply_patch()]
        });
        let r = post(&gw.url, PATH, second).await;
        assert_eq!(r.status, 200, "{backend}: {}", r.text);
        assert_eq!(r.json()["output"][0]["content"][0]["text"], "Patched.");
    }

    let up = fake.last_json().unwrap();
    let messages = up["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{up}");
    assert_eq!(messages[1]["role"], "assistant");
    let sent = &messages[1]["tool_calls"][0];
    assert_eq!(sent["id"], "call_1", "{up}");
    assert_eq!(sent["function"]["name"], "apply_patch");
    let arguments: Value = serde_json::from_str(sent["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"input": PATCH}));
    assert_eq!(messages[2], json!({"role": "tool", "tool_call_id": "call_1", "content": "Done!"}));

    let up = claude.last_json().unwrap();
    assert_eq!(
        up["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "apply_patch", "input": {"input": PATCH}}]}),
        "{up}"
    );
    let result = &up["messages"][2]["content"][0];
    assert_eq!(result["type"], "tool_result", "{up}");
    assert_eq!(result["tool_use_id"], "call_1");
}

#[tokio::test]
async fn arguments_that_ignore_the_schema_come_back_as_the_input_unchanged() {
    let fake = FakeServer::start().await;
    // Not JSON at all: the patch written straight into the arguments.
    fake.push(Fake::openai_tool_call("call_1", "apply_patch", PATCH));
    // JSON, but not an object with a string `input`.
    fake.push(Fake::openai_stream_tool_call("call_2", "apply_patch", &["{\"patch\":", "\"x\"}"]));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;

    let r = post(&gw.url, PATH, json!({"input": "fix", "tools": [apply_patch()]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    check_custom_call(&r.json()["output"][0], "call_1", PATCH);

    let body = json!({"input": "fix", "tools": [apply_patch()], "stream": true});
    let r = post(&gw.url, PATH, body).await;
    check_custom_stream(&responses_events(&r), "call_2", "{\"patch\":\"x\"}");
}

#[tokio::test]
async fn a_free_text_custom_tool_is_told_where_its_text_goes_and_nothing_else() {
    let fake = FakeServer::start().await;
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    for format in [json!({"type": "text"}), Value::Null] {
        let mut tool = json!({"type": "custom", "name": "note"});
        if !format.is_null() {
            tool["format"] = format;
        }
        fake.push(Fake::openai_tool_call("call_1", "note", r#"{"input":"remember milk"}"#));
        let r = post(&gw.url, PATH, json!({"input": "note it", "tools": [tool]})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["output"][0]["input"], "remember milk", "{}", r.text);
        let up = fake.last_json().unwrap();
        assert_eq!(
            up["tools"][0]["function"]["description"],
            "This tool takes free text: pass all of it as the string argument `input`.",
            "{up}"
        );
    }
}

#[tokio::test]
async fn name_clashes_bad_formats_and_other_platform_tools_are_refused_naming_the_field() {
    let fake = FakeServer::start().await;
    fake.set_default(Fake::openai_text("never"));
    let gw = start(router(vec![openai(openai_settings("oa", &fake))])).await;
    let as_function = json!({"type": "function", "name": "apply_patch", "parameters": {"type": "object"}});
    let grammar = |format: Value| json!([{"type": "custom", "name": "apply_patch", "format": format}]);
    let cases = [
        (json!([shell(), apply_patch(), as_function.clone()]), "tools[2].name"),
        (json!([as_function, apply_patch()]), "tools[1].name"),
        (json!([apply_patch(), apply_patch()]), "tools[1].name"),
        (grammar(json!({"type": "grammar", "syntax": "ebnf", "definition": "x"})), "tools[0].format.syntax"),
        (grammar(json!({"type": "grammar", "syntax": "lark"})), "tools[0].format.definition"),
        (grammar(json!({"type": "xml"})), "tools[0].format.type"),
        (json!([{"type": "custom"}]), "tools[0].name"),
        // The platform's own formats stay refused; `apply_patch` here is the hosted tool type.
        (json!([{"type": "apply_patch"}]), "tools[0].type"),
        (json!([{"type": "local_shell"}]), "tools[0].type"),
        (json!([{"type": "shell"}]), "tools[0].type"),
        (json!([{"type": "file_search", "vector_store_ids": ["vs_1"]}]), "tools[0].type"),
    ];
    for (tools, param) in cases {
        let r = post(&gw.url, PATH, json!({"input": "x", "tools": tools})).await;
        assert_eq!(refused(&r), param, "{tools}: {}", r.text);
    }
    let clash = post(&gw.url, PATH, json!({"input": "x", "tools": [shell(), apply_patch(), shell()]})).await;
    assert_eq!(clash.status, 200, "two functions of one name are as before: {}", clash.text);
    let r = post(
        &gw.url,
        PATH,
        json!({"input": "x", "tools": [apply_patch()],
                                       "tool_choice": {"type": "custom", "name": "nope"}}),
    )
    .await;
    assert_eq!(refused(&r), "tool_choice");
    let r = post(
        &gw.url,
        PATH,
        json!({"input": [
        {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch"}]}),
    )
    .await;
    assert_eq!(refused(&r), "input[0].input");
    assert_eq!(fake.post_requests(), 1, "only the two-functions request went upstream");
}
