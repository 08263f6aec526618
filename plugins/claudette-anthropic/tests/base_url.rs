//! A base URL with a query string (a proxy's tenant selector), over real HTTP on 127.0.0.1
//! against `claudette-testkit`'s fake server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use claudette_core::{Backend, BackendSettings, ChatRequest};
use claudette_testkit::{FakeServer, Reply};

#[tokio::test]
async fn a_base_url_query_string_is_kept() {
    let server = FakeServer::start().await;
    server.push(Reply::anthropic_text("ok"));
    server.push(Reply::anthropic_text("ok"));
    for base in [format!("{}/v1?tenant=a", server.url()), format!("{}/?tenant=a", server.url())] {
        let settings = BackendSettings::new("claude").base_url(base).model("claude-fake").api_key("sk-ant-x");
        let backend = claudette_anthropic::backend(&settings).unwrap();
        assert_eq!(backend.send(&ChatRequest::prompt("hi")).await.unwrap().content, "ok");
    }
    for r in server.received() {
        assert_eq!((r.path.as_str(), r.query.as_deref()), ("/v1/messages", Some("tenant=a")));
    }
    assert_eq!(server.received().len(), 2);
}
