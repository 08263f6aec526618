//! Web search for OpenAI-format clients, served by Claude's web search.
//!
//! OpenAI's clients ask for a searched answer in their own terms: Chat Completions'
//! `web_search_options`, the Responses API's `web_search` tool. Of the providers behind the
//! router, Anthropic runs a web search for any of its current models (its server tool
//! `web_search_20250305`), where OpenAI's Chat Completions searches only with its dedicated
//! search models. So such a request becomes a request carrying Claude's tool, which the router
//! sends to Anthropic backends only (the tool's dialect), bills per search
//! (`Pricing::web_search_per_1k`) and never caches; the answer's citations of search results
//! become OpenAI's `url_citation` annotations, whose offsets count characters (Unicode scalar
//! values) of the answer's text.
//!
//! Both OpenAI endpoints use this module, each for its own wire shapes.

use claudette_core::{BackendRouter, Block, ChatRequest, ChatResponse, Dialect, ErrorKind, NativeTool};
use serde_json::{Map, Value};

use crate::content::invalid_value;
use crate::error::ApiError;
use crate::routing;

/// The type of Claude's web search tool, the version every current Claude model takes.
const CLAUDE_WEB_SEARCH: &str = "web_search_20250305";

/// A user's approximate location, which both APIs share field for field (OpenAI's
/// `user_location.approximate`, Anthropic's `user_location`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Location {
    pub city: Option<String>,
    pub region: Option<String>,
    /// Two-letter ISO country code.
    pub country: Option<String>,
    /// IANA time zone.
    pub timezone: Option<String>,
}

impl Location {
    /// The location's fields from the object at `path`, each a string or null; a mistake is
    /// named by its path (read loosely, a misspelt location would quietly search from
    /// nowhere). Other keys are left alone, as unknown fields are elsewhere.
    pub(crate) fn read(path: &str, fields: &Map<String, Value>) -> Result<Location, ApiError> {
        let text = |key: &str| match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid_value(format!("{path}.{key}"), &"expected a string")),
        };
        Ok(Location {
            city: text("city")?,
            region: text("region")?,
            country: text("country")?,
            timezone: text("timezone")?,
        })
    }
}

/// What the client asked of the search, in neither API's terms.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Search {
    pub location: Option<Location>,
    /// Only these domains are searched (the Responses API's `filters.allowed_domains`).
    pub allowed_domains: Vec<String>,
}

impl Search {
    /// Claude's web search tool for this search, standing at `at` among the request's tools.
    /// OpenAI's `search_context_size` has no counterpart (Claude decides how much to read) and
    /// is not passed on; neither API limits the number of searches unless asked, so no
    /// `max_uses` is set.
    pub(crate) fn claude_tool(&self, at: usize) -> NativeTool {
        let mut spec = Map::new();
        spec.insert("type".into(), CLAUDE_WEB_SEARCH.into());
        spec.insert("name".into(), "web_search".into());
        if let Some(l) = self.location.as_ref().filter(|l| **l != Location::default()) {
            let mut loc = Map::new();
            loc.insert("type".into(), "approximate".into());
            for (key, value) in
                [("city", &l.city), ("region", &l.region), ("country", &l.country), ("timezone", &l.timezone)]
            {
                if let Some(v) = value {
                    loc.insert(key.into(), v.as_str().into());
                }
            }
            spec.insert("user_location".into(), loc.into());
        }
        if !self.allowed_domains.is_empty() {
            spec.insert("allowed_domains".into(), self.allowed_domains.clone().into());
        }
        NativeTool {
            dialect: Dialect::Anthropic,
            at: u32::try_from(at).unwrap_or(u32::MAX),
            spec: spec.into(),
        }
    }
}

/// Refuses, in the client's terms, a searching `request` that no backend it may go to can
/// run: the router's own refusal speaks of "Anthropic's own tools", which an OpenAI client
/// never sent. `asked` names what the client sent (`` `web_search_options` ``, the tool at
/// `tools[2]`), `param` is where. The router itself is asked which backend it would pick, so
/// what makes a backend a candidate (the model the client named, the failover chain, a
/// disabled backend) is decided in one place; only a refusal the search causes is answered
/// here, and a candidate that is down is left to the routing that follows.
pub(crate) fn refuse_unservable(
    router: &BackendRouter,
    model: Option<&str>,
    request: &mut ChatRequest,
    asked: &str,
    param: String,
) -> Result<(), ApiError> {
    // The same resolution `respond::prepare` makes next; a model that names nothing is
    // refused there.
    if routing::resolve_model(router, model, request).is_err() {
        return Ok(());
    }
    let refused = |request: &ChatRequest| {
        router.select_backend(request, &[]).is_err_and(|e| e.kind == ErrorKind::InvalidRequest)
    };
    if !refused(request) {
        return Ok(());
    }
    // The search is the cause only when the request without it is not refused.
    let search = std::mem::take(&mut request.native_tools);
    let without = refused(request);
    request.native_tools = search;
    if without {
        return Ok(());
    }
    let provider = Dialect::Anthropic.provider();
    let why = match request.backend.as_deref() {
        Some(name) => {
            let theirs = router.backend(name).map(|b| b.info().provider.clone()).unwrap_or_default();
            format!(
                "the model `{}` names the backend `{name}`, of provider `{theirs}`: ask for `auto` or a \
                 Claude model, or leave the search out",
                model.unwrap_or_default()
            )
        }
        None => "no backend this request may go to is one".to_owned(),
    };
    Err(ApiError::invalid(format!(
        "{asked} is served by Claude's web search, which runs only on a backend of provider `{provider}`, and \
         {why}"
    ))
    .with_param(param))
}

/// A cited search result, located in the answer's text: OpenAI's `url_citation`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UrlCitation {
    /// Characters into the answer's text where the cited passage starts.
    pub start: usize,
    /// Characters into the answer's text where it ends.
    pub end: usize,
    pub url: String,
    pub title: String,
}

/// The search result a citation names, when it names one (Anthropic's
/// `web_search_result_location`); citations of a document have no URL and are left out.
fn cited_source(citation: &Value) -> Option<(String, String)> {
    if citation.get("type").and_then(Value::as_str) != Some("web_search_result_location") {
        return None;
    }
    let url = citation.get("url").and_then(Value::as_str)?.to_owned();
    let title = citation.get("title").and_then(Value::as_str).unwrap_or_default().to_owned();
    Some((url, title))
}

/// The answer's citations of search results, in the order of its text.
pub(crate) fn url_citations(resp: &ChatResponse) -> Vec<UrlCitation> {
    if resp.citations.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // Character offsets, counted once over the text as the blocks go by.
    let (mut bytes, mut chars) = (0, 0);
    for block in resp.blocks_for_client() {
        let Block::Text { text, start } = block else { continue };
        chars += resp.content.get(bytes..start).map_or(0, |s| s.chars().count());
        let from = chars;
        chars += text.chars().count();
        bytes = start + text.len();
        for (url, title) in resp.citations_at(bytes).iter().filter_map(cited_source) {
            out.push(UrlCitation { start: from, end: chars, url, title });
        }
    }
    out
}

/// The same citations from a stream, as its events go by: a citation belongs to the text
/// block the next text extends, or to the last one when no text follows it (see
/// `StreamEvent::Citation`).
#[derive(Debug, Default)]
pub(crate) struct StreamCitations {
    /// Characters of answer text so far.
    chars: usize,
    /// Where the open text block started, once it has text.
    block_start: Option<usize>,
    /// Where the last closed block started and ended, for citations after the last text.
    last_block: Option<(usize, usize)>,
    pending: Vec<(String, String)>,
    done: Vec<UrlCitation>,
}

impl StreamCitations {
    /// A piece of answer text.
    pub(crate) fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.block_start.get_or_insert(self.chars);
        self.chars += text.chars().count();
    }

    /// A citation event.
    pub(crate) fn citation(&mut self, citation: &Value) {
        if let Some(source) = cited_source(citation) {
            self.pending.push(source);
        }
    }

    /// The open text block ends.
    pub(crate) fn text_end(&mut self) {
        if let Some(start) = self.block_start.take() {
            self.last_block = Some((start, self.chars));
            self.place(start, self.chars);
        }
    }

    fn place(&mut self, start: usize, end: usize) {
        let placed = self.pending.drain(..).map(|(url, title)| UrlCitation { start, end, url, title });
        self.done.extend(placed);
    }

    /// The stream's end: every citation, in the order of the text.
    pub(crate) fn finish(&mut self) -> Vec<UrlCitation> {
        self.text_end();
        if let Some((start, end)) = self.last_block {
            self.place(start, end);
        }
        self.pending.clear();
        std::mem::take(&mut self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudette_core::{BlockKind, NativeBlock, TextCitations};
    use serde_json::json;

    fn cite(url: &str) -> Value {
        json!({"type": "web_search_result_location", "url": url, "title": format!("T {url}"),
               "encrypted_index": "e", "cited_text": "c"})
    }

    #[test]
    fn the_tool_carries_location_and_domains_only_when_given() {
        let plain = Search::default().claude_tool(2);
        assert_eq!(plain.at, 2);
        assert_eq!(plain.spec, json!({"type": "web_search_20250305", "name": "web_search"}));
        let search = Search {
            location: Some(Location {
                city: Some("Paris".into()),
                country: Some("FR".into()),
                ..Location::default()
            }),
            allowed_domains: vec!["example.com".into()],
        };
        assert_eq!(
            search.claude_tool(0).spec,
            json!({"type": "web_search_20250305", "name": "web_search",
                   "user_location": {"type": "approximate", "city": "Paris", "country": "FR"},
                   "allowed_domains": ["example.com"]})
        );
    }

    #[test]
    fn citations_are_placed_on_their_block_in_characters() {
        // "Café " (5 chars, 6 bytes), then a cited sentence, then an uncited tail.
        let mut resp = ChatResponse::empty("b", "m");
        // Blocks: "Café " | "is open." | " Until 9.", ending at bytes 6, 14 and 23.
        resp.content = ["Café ", "is open.", " Until 9."].concat();
        let search =
            NativeBlock::anthropic(json!({"type": "server_tool_use", "id": "s", "name": "web_search"}));
        resp.native = vec![search];
        resp.order = vec![BlockKind::Native, BlockKind::Text(6), BlockKind::Text(14), BlockKind::Text(23)];
        resp.citations = vec![
            TextCitations { end: 6, citations: vec![] },
            TextCitations { end: 14, citations: vec![cite("https://a"), json!({"type": "char_location"})] },
        ];
        let got = url_citations(&resp);
        assert_eq!(
            got,
            vec![UrlCitation { start: 5, end: 13, url: "https://a".into(), title: "T https://a".into() }],
            "{:?}",
            resp.blocks()
        );
    }

    #[test]
    fn a_stream_places_citations_as_a_json_answer_does() {
        let mut s = StreamCitations::default();
        s.text("Café ");
        s.text_end();
        s.citation(&cite("https://a"));
        s.citation(&cite("https://b"));
        s.text("is ");
        s.text("open.");
        s.text_end();
        s.text(" Until 9.");
        s.text_end();
        s.citation(&cite("https://late"));
        let got = s.finish();
        let at =
            |url: &str, start, end| UrlCitation { start, end, url: url.into(), title: format!("T {url}") };
        assert_eq!(got, vec![at("https://a", 5, 13), at("https://b", 5, 13), at("https://late", 13, 22)]);
    }
}
