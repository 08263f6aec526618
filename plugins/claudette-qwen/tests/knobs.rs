//! `top_k` reaches a Qwen server wherever it lives: vLLM, llama.cpp and SGLang take it, and a
//! Qwen backend is self-hosted unless configured otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{BackendSettings, ChatRequest, ProviderAdapter};
use claudette_qwen::QwenAdapter;
use serde_json::Value;

fn body_for(extra: Option<&str>) -> Value {
    let mut settings = BackendSettings::new("qwen").base_url("https://qwen.example.com/v1").model("m");
    if let Some(kind) = extra {
        settings = settings.extra("backend_type", kind);
    }
    let adapter = QwenAdapter::new(&settings).unwrap();
    let request = ChatRequest { top_k: Some(20), seed: Some(3), ..ChatRequest::prompt("hi") };
    let http = adapter.build_request(&request, false).unwrap();
    serde_json::from_slice(http.body.as_deref().unwrap()).unwrap()
}

#[test]
fn top_k_goes_to_a_qwen_box_at_a_public_name() {
    let body = body_for(None);
    assert_eq!((body["top_k"].as_u64(), body["seed"].as_i64()), (Some(20), Some(3)), "{body}");
    // A hosted Qwen API configured as cloud is not risked with it.
    let cloud = body_for(Some("cloud"));
    assert!(cloud.get("top_k").is_none(), "{cloud}");
    assert_eq!(cloud["seed"], 3);
}

/// The default Qwen model reads text only, so a Qwen backend takes no images unless its
/// settings say `images = true` (a Qwen-VL model); the OpenAI adapter takes them unless told
/// otherwise. A value that is not a boolean is a configuration error naming the key.
#[test]
fn images_are_taken_where_the_settings_say_so() {
    use claudette_openai::OpenAiAdapter;
    let base = || BackendSettings::new("b").base_url("http://127.0.0.1:9/v1").model("m");
    assert!(!QwenAdapter::new(&base()).unwrap().info().supports_images);
    assert!(QwenAdapter::new(&base().extra("images", true)).unwrap().info().supports_images);
    assert!(OpenAiAdapter::new(&base()).unwrap().info().supports_images);
    assert!(!OpenAiAdapter::new(&base().extra("images", false)).unwrap().info().supports_images);
    let e = QwenAdapter::new(&base().extra("images", "yes")).unwrap_err();
    assert!(e.to_string().contains("images"), "{e}");
}
