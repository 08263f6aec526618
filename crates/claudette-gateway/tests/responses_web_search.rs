//! The Responses API's hosted web search over real HTTP, served by Claude's web search in front
//! of test-kit fakes: the tool reaches Anthropic as Claude's, in its place among the function
//! tools with the location and domains asked for; each search comes back as a
//! `web_search_call` item and each citation of its results as a `url_citation` annotation
//! (offsets in characters), in JSON and in the stream alike; `web_search_call` items a client
//! sends back are accepted and not sent on; a fleet without an Anthropic backend refuses the
//! search, saying so, before any upstream call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use claudette_core::Pricing;
use claudette_testkit::{FakeServer, Reply as Fake};
use common::*;
use serde_json::{Value, json};

const PATH: &str = "/v1/responses";

fn function(name: &str) -> Value {
    json!({"type": "function", "name": name, "description": format!("{name} a file"),
           "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}})
}

/// OpenAI's web search tool with a location, domains and a context size.
fn web_search() -> Value {
    json!({"type": "web_search", "search_context_size": "high",
           "user_location": {"type": "approximate", "city": "Paris", "country": "FR",
                             "timezone": "Europe/Paris", "region": null},
           "filters": {"allowed_domains": ["news.example", "blog.example"]}})
}

/// What Anthropic must get for [`web_search`].
fn claude_web_search() -> Value {
    json!({"type": "web_search_20250305", "name": "web_search",
           "user_location": {"type": "approximate", "city": "Paris", "country": "FR",
                             "timezone": "Europe/Paris"},
           "allowed_domains": ["news.example", "blog.example"]})
}

fn results() -> Value {
    json!([
        {"type": "web_search_result", "url": "https://news.example/1", "title": "News 1",
         "encrypted_content": "ENC1", "page_age": "2 days ago"},
        {"type": "web_search_result", "url": "https://news.example/2", "title": "News 2",
         "encrypted_content": "ENC2"}])
}

/// The cited blocks' texts: characters, not bytes, are what the offsets count (`—` and `é`
/// are several bytes each).
const OPENING: &str = "I'll look that up — one moment.";
const FIRST: &str = "Rust 1.85 shipped the 2024 édition";
const SECOND: &str = " — in February 2025.";
const TAIL: &str = " Editions are opt-in per crate.";

/// A searched answer as Anthropic writes it: text, the search and its results (`content`),
/// then two cited blocks and an uncited one.
fn searched_blocks(content: Value) -> Value {
    json!([
        {"type": "text", "text": OPENING},
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "rust 2024 edition"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": content},
        {"type": "text", "text": FIRST, "citations": [web_cite(1)]},
        {"type": "text", "text": SECOND, "citations": [web_cite(2), web_cite(1)]},
        {"type": "text", "text": TAIL}
    ])
}

fn searched_answer(content: Value) -> Fake {
    Fake::json(
        200,
        json!({"id": "msg_search", "type": "message", "role": "assistant", "model": "claude-fake",
               "content": searched_blocks(content), "stop_reason": "end_turn", "stop_sequence": null,
               "usage": {"input_tokens": 120, "output_tokens": 60,
                         "server_tool_use": {"web_search_requests": 1}}}),
    )
}

fn search_error() -> Value {
    json!({"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"})
}

fn request(stream: bool) -> Value {
    json!({"model": "auto", "input": "What is new in Rust?", "stream": stream,
           "tools": [function("read"), web_search(), function("edit")]})
}

fn annotation(n: u32, end: usize) -> Value {
    json!({"type": "url_citation", "start_index": 0, "end_index": end,
           "url": format!("https://news.example/{n}"), "title": format!("News {n}")})
}

fn chars(s: &str) -> usize {
    let n = s.chars().count();
    assert_ne!(n, s.len(), "{s} must have multi-byte characters");
    n
}

fn message(text: &str, annotations: Value) -> Value {
    json!({"type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}]})
}

fn search_call(status: &str, action: Value) -> Value {
    json!({"type": "web_search_call", "id": "ws_srvtoolu_01", "status": status, "action": action})
}

fn search_action() -> Value {
    json!({"type": "search", "query": "rust 2024 edition"})
}

/// The output items of the searched answer, message ids left out (they are fresh each time).
fn expected_output(call: Value) -> Value {
    json!([
        message(OPENING, json!([])),
        call,
        message(FIRST, json!([annotation(1, chars(FIRST))])),
        message(SECOND, json!([annotation(2, chars(SECOND)), annotation(1, chars(SECOND))])),
        message(TAIL, json!([])),
    ])
}

/// `output` with the messages' ids checked and left out.
fn without_message_ids(output: &Value) -> Value {
    let mut output = output.clone();
    for item in output.as_array_mut().unwrap() {
        if item["type"] == "message" {
            let id = item.as_object_mut().unwrap().remove("id").unwrap();
            assert!(id.as_str().unwrap().starts_with("msg_"), "{id}");
        }
    }
    output
}

/// Claude's fake, priced with searches, and the gateway in front of it.
async fn claude(answers: impl IntoIterator<Item = Fake>) -> (FakeServer, Running) {
    let fake = FakeServer::start().await;
    for answer in answers {
        fake.push(answer);
    }
    let pricing = Pricing::new(3.0, 15.0).with_web_search(10.0);
    let gw = start(router(vec![anthropic(anthropic_settings("claude", &fake).pricing(pricing))])).await;
    (fake, gw)
}

/// A 400 in OpenAI's envelope: its `param` and message.
fn refused(r: &Reply) -> (String, String) {
    assert_eq!(r.status, 400, "{}", r.text);
    let e = &r.json()["error"];
    assert_eq!(e["type"], "invalid_request_error", "{}", r.text);
    (e["param"].as_str().unwrap_or_default().to_owned(), e["message"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_searched_answer_has_its_search_call_and_url_citations_and_bills_the_search() {
    let (fake, gw) = claude([searched_answer(results())]).await;
    let r = post(&gw.url, PATH, request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Claude's tool in the place the client gave its own, with its location and domains.
    let sent = fake.last_json().unwrap();
    let tools = sent["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["read", "web_search", "edit"], "{sent}");
    assert_eq!(tools[1], claude_web_search());

    let v = r.json();
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(without_message_ids(&v["output"]), expected_output(search_call("completed", search_action())));
    // The echo is the client's tool, as sent.
    assert_eq!(v["tools"][1], web_search());
    // Tokens and the search: 120 * 3/1k + 60 * 15/1k + 1 * 10/1k.
    assert_eq!(
        (v["usage"]["input_tokens"].clone(), v["usage"]["output_tokens"].clone()),
        (json!(120), json!(60))
    );
    let cost: f64 = r.header("x-claudette-cost").unwrap().parse().unwrap();
    assert!((cost - 1.27).abs() < 1e-9, "{cost}");
}

#[tokio::test]
async fn sources_come_when_included_and_a_failed_search_says_so() {
    let (_fake, gw) = claude([searched_answer(results()), searched_answer(search_error())]).await;
    let mut body = request(false);
    body["include"] = json!(["reasoning.encrypted_content", "web_search_call.action.sources"]);

    let r = post(&gw.url, PATH, body.clone()).await;
    let mut action = search_action();
    action["sources"] = json!([{"type": "url", "url": "https://news.example/1"}, {"type": "url", "url": "https://news.example/2"}]);
    assert_eq!(without_message_ids(&r.json()["output"]), expected_output(search_call("completed", action)));

    let r = post(&gw.url, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["output"][1], search_call("failed", search_action()), "{}", r.text);
}

#[tokio::test]
async fn a_streamed_search_has_openais_events_and_ends_as_the_json_answer() {
    let (_fake, gw) = claude([
        searched_answer(results()),
        Fake::anthropic_stream_blocks(&searched_blocks(results()), "end_turn"),
        Fake::anthropic_stream_blocks(&searched_blocks(search_error()), "end_turn"),
    ])
    .await;
    let json_answer = post(&gw.url, PATH, request(false)).await.json();

    let r = post(&gw.url, PATH, request(true)).await;
    let ev = responses_events(&r);
    let text_events = |annotations: usize| {
        let mut names =
            vec!["response.output_item.added", "response.content_part.added", "response.output_text.delta"];
        names.extend(std::iter::repeat_n("response.output_text.annotation.added", annotations));
        names.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
        ]);
        names
    };
    let search = |completed: bool| {
        let mut names = vec![
            "response.output_item.added",
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
        ];
        names.extend(completed.then_some("response.web_search_call.completed"));
        names.push("response.output_item.done");
        names
    };
    let sequence = |completed: bool| {
        let mut names = vec!["response.created", "response.in_progress"];
        names.extend(text_events(0));
        names.extend(search(completed));
        names.extend(text_events(1));
        names.extend(text_events(2));
        names.extend(text_events(0));
        names.push("response.completed");
        names
    };
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, sequence(true), "{}", r.text);

    // The search's events, all naming its item at output index 1.
    let at =
        |name: &str| ev.iter().filter(move |(n, _)| n == name).map(|(_, d)| d.clone()).collect::<Vec<_>>();
    let added = &at("response.output_item.added")[1];
    assert_eq!(added["item"], search_call("in_progress", search_action()), "{added}");
    assert_eq!(added["output_index"], 1);
    for name in [
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
    ] {
        let e = &at(name)[0];
        assert_eq!(
            (e["item_id"].as_str(), e["output_index"].as_u64()),
            (Some("ws_srvtoolu_01"), Some(1)),
            "{e}"
        );
        assert_eq!(e.as_object().unwrap().len(), 4, "{e}");
    }
    assert_eq!(at("response.output_item.done")[1]["item"], search_call("completed", search_action()));

    // Each citation as it is added, then in the part's and the item's `.done`.
    let annotations = at("response.output_text.annotation.added");
    let item_id = |index: usize| at("response.output_item.added")[index]["item"]["id"].clone();
    let expected = [
        (2, 0, annotation(1, chars(FIRST))),
        (3, 0, annotation(2, chars(SECOND))),
        (3, 1, annotation(1, chars(SECOND))),
    ];
    assert_eq!(annotations.len(), expected.len());
    for (got, (index, k, annotation)) in annotations.iter().zip(expected) {
        let mut want = json!({"type": "response.output_text.annotation.added", "item_id": item_id(index),
                              "output_index": index, "content_index": 0, "annotation_index": k,
                              "annotation": annotation});
        want["sequence_number"] = got["sequence_number"].clone();
        assert_eq!(*got, want);
    }
    let parts = at("response.content_part.done");
    assert_eq!(
        parts[2]["part"]["annotations"],
        json!([annotation(2, chars(SECOND)), annotation(1, chars(SECOND))])
    );
    assert_eq!(parts[1]["part"]["annotations"], json!([annotation(1, chars(FIRST))]));
    let done = at("response.output_item.done");
    assert_eq!(done[3]["item"]["content"], json!([parts[2]["part"]]));

    // The final response is the JSON answer's.
    let completed = &ev.last().unwrap().1["response"];
    assert_eq!(without_message_ids(&completed["output"]), without_message_ids(&json_answer["output"]));

    // A failed search: no `completed` event, and its status says it failed.
    let r = post(&gw.url, PATH, request(true)).await;
    let ev = responses_events(&r);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, sequence(false), "{}", r.text);
    let done: Vec<&Value> =
        ev.iter().filter(|(n, _)| n == "response.output_item.done").map(|(_, d)| d).collect();
    assert_eq!(done[1]["item"], search_call("failed", search_action()));
    assert_eq!(ev.last().unwrap().1["response"]["output"][1], search_call("failed", search_action()));
}

/// A stateless client's next turn: its earlier output sent back, search call and all.
#[tokio::test]
async fn search_calls_sent_back_are_accepted_and_not_sent_upstream() {
    let gpt = FakeServer::start().await;
    gpt.set_default(openai_answer(json!({"role": "assistant", "content": "Not yet known."}), "stop"));
    let gw = start(router(vec![openai(openai_settings("gpt", &gpt))])).await;
    let said = |text: &str| {
        json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                                   "content": [{"type": "output_text", "text": text, "annotations": [annotation(1, 3)]}]})
    };
    let mut with_sources = search_action();
    with_sources["sources"] = json!([{"type": "url", "url": "https://news.example/1"}]);
    let body = json!({"model": "auto", "input": [
        {"role": "user", "content": "What is new in Rust?"},
        said(OPENING),
        search_call("completed", with_sources),
        search_call("failed", search_action()),
        said(FIRST),
        {"role": "user", "content": "And 2027?"}
    ]});
    let r = post(&gw.url, PATH, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = gpt.last_json().unwrap();
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "What is new in Rust?"},
            {"role": "assistant", "content": format!("{OPENING}{FIRST}")},
            {"role": "user", "content": "And 2027?"}
        ]),
        "{sent}"
    );

    // Their shape is checked all the same.
    for (item, param) in [
        (json!({"type": "web_search_call", "status": "completed"}), "input[1].id"),
        (json!({"type": "web_search_call", "id": "ws_1"}), "input[1].status"),
        (
            json!({"type": "web_search_call", "id": "ws_1", "status": "completed", "action": "search"}),
            "input[1].action",
        ),
        (
            json!({"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {}}),
            "input[1].action",
        ),
        (json!({"type": "file_search_call", "id": "fs_1", "status": "completed"}), "input[1].type"),
    ] {
        let r = post(&gw.url, PATH, json!({"input": [{"role": "user", "content": "hi"}, item]})).await;
        assert_eq!(refused(&r).0, param, "{item}");
    }
    assert_eq!(gpt.post_requests(), 1);
}

#[tokio::test]
async fn a_search_goes_to_the_anthropic_backend_of_a_mixed_fleet_and_can_be_forced() {
    let (gpt, claude, gw) = openai_and_claude().await;
    let mut plain = request(false);
    plain["tools"] = json!([function("read")]);
    let r = post_with(&gw.url, PATH, plain, &BY_COST).await;
    assert_eq!(r.header("x-claudette-backend"), Some("gpt"), "{}", r.text);

    claude.push(searched_answer(results()));
    let mut forced = request(false);
    forced["tool_choice"] = json!({"type": "web_search_preview"});
    let r = post_with(&gw.url, PATH, forced, &BY_COST).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-claudette-backend"), Some("claude"));
    assert_eq!(r.json()["output"][1]["type"], "web_search_call", "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["tool_choice"], json!({"type": "tool", "name": "web_search"}), "{sent}");
    assert_eq!((gpt.post_requests(), claude.post_requests()), (1, 1));

    // The preview's tool type and a model naming the Anthropic backend.
    claude.push(Fake::anthropic_stream_blocks(&searched_blocks(results()), "end_turn"));
    let mut preview = request(true);
    preview["model"] = json!("claude");
    preview["tools"] =
        json!([{"type": "web_search_preview_2025_03_11", "user_location": {"type": "approximate"}}]);
    let r = post(&gw.url, PATH, preview).await;
    assert!(r.text.contains("response.web_search_call.searching"), "{}", r.text);
    let sent = claude.last_json().unwrap();
    assert_eq!(sent["tools"], json!([{"type": "web_search_20250305", "name": "web_search"}]), "{sent}");
}

#[tokio::test]
async fn a_search_no_backend_can_serve_is_refused_naming_why_before_any_upstream_call() {
    let gpt = FakeServer::start().await;
    gpt.set_default(openai_answer(json!({"role": "assistant", "content": "from gpt"}), "stop"));
    let gw = start(router(vec![openai(openai_settings("gpt", &gpt))])).await;
    for stream in [false, true] {
        let (param, message) = refused(&post(&gw.url, PATH, request(stream)).await);
        assert_eq!(param, "tools[1]");
        assert!(message.contains("web search") && message.contains("`anthropic`"), "{message}");
        assert!(message.contains("no backend this request may go to is one"), "{message}");
    }
    assert_eq!(gpt.post_requests(), 0);

    // A model naming the OpenAI backend of a mixed fleet.
    let (gpt, claude, gw) = openai_and_claude().await;
    let mut forced = request(false);
    forced["model"] = json!("gpt");
    let (param, message) = refused(&post(&gw.url, PATH, forced).await);
    assert_eq!(param, "tools[1]");
    assert!(message.contains("the model `gpt` names the backend `gpt`, of provider `openai`"), "{message}");
    assert_eq!((gpt.post_requests(), claude.post_requests()), (0, 0));
}

#[tokio::test]
async fn malformed_search_tools_are_refused_naming_the_field_and_other_hosted_tools_stay_refused() {
    let (fake, gw) = claude([]).await;
    let with = |key: &str, value: Value| {
        let mut tool = json!({"type": "web_search"});
        tool[key] = value;
        json!({"input": "x", "tools": [tool]})
    };
    let cases = [
        (with("user_location", json!("Paris")), "tools[0].user_location"),
        (with("user_location", json!({"type": "exact"})), "tools[0].user_location.type"),
        (with("user_location", json!({"type": "approximate", "city": 5})), "tools[0].user_location.city"),
        (with("filters", json!(["news.example"])), "tools[0].filters"),
        (with("filters", json!({"allowed_domains": "news.example"})), "tools[0].filters.allowed_domains"),
        (
            with("filters", json!({"allowed_domains": ["news.example", 3]})),
            "tools[0].filters.allowed_domains[1]",
        ),
        (with("search_context_size", json!("huge")), "tools[0].search_context_size"),
        (with("external_web_access", json!(false)), "tools[0].external_web_access"),
        (with("external_web_access", json!("yes")), "tools[0].external_web_access"),
        (json!({"input": "x", "tools": [web_search(), {"type": "web_search_preview"}]}), "tools[1].type"),
        (json!({"input": "x", "tools": [web_search(), function("web_search")]}), "tools[1].name"),
        (
            json!({"input": "x", "tools": [function("read")], "tool_choice": {"type": "web_search"}}),
            "tool_choice",
        ),
        (
            json!({"input": "x", "tools": [web_search()], "include": "web_search_call.action.sources"}),
            "include",
        ),
        // The platform's other hosted tools, and their calls and choices, as before.
        (
            json!({"input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}),
            "tools[0].type",
        ),
        (
            json!({"input": "x", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}),
            "tools[0].type",
        ),
        (json!({"input": "x", "tools": [{"type": "computer_use_preview"}]}), "tools[0].type"),
        (json!({"input": "x", "tools": [{"type": "image_generation"}]}), "tools[0].type"),
        (json!({"input": "x", "tools": [{"type": "mcp", "server_label": "x"}]}), "tools[0].type"),
        (
            json!({"input": "x", "tools": [web_search()], "tool_choice": {"type": "file_search"}}),
            "tool_choice.type",
        ),
        (json!({"input": [{"type": "code_interpreter_call", "id": "ci_1"}]}), "input[0].type"),
    ];
    for (body, param) in cases {
        let r = post(&gw.url, PATH, body.clone()).await;
        assert_eq!(refused(&r).0, param, "{body}: {}", r.text);
    }
    assert_eq!(fake.post_requests(), 0);
}
