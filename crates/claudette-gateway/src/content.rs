//! What the client protocols' request parsing shares: fields sent as either a string or a
//! list (OpenAI's message `content` and `stop`, Anthropic's `system` and message `content`),
//! the tool-choice check, naming the field at fault in a body that does not parse, and the
//! OpenAI forms both OpenAI protocols (Chat Completions, Responses) use: tool-call arguments
//! as JSON text, the reasoning effort levels, and images and PDFs given as a URL (`data:` or
//! `http(s)`); and the checks every protocol's images and documents pass.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use claudette_core::{
    ChatRequest, DOCUMENT_MEDIA_TYPE, Document, DocumentSource, IMAGE_MEDIA_TYPES, Image, ImageSource,
    ReasoningEffort, Thinking,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::ApiError;

/// `"text"` or `[item, …]`.
///
/// A visitor rather than `#[serde(untagged)]`: an untagged enum buffers the whole value and
/// then retries it against each variant, which was a measurable share of parsing every
/// request. The error names both accepted shapes.
#[derive(Debug)]
pub(crate) enum TextOr<T> {
    Text(String),
    List(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = TextOr<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // The hint comes from the client: cap what it may make us reserve.
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TextOr::List(items))
            }
        }

        deserializer.deserialize_any(V(PhantomData))
    }
}

/// A 400 naming `tool_choice` when no backend could honour it (a tool that is not offered, a
/// forced call with no tools), before any backend is tried.
pub(crate) fn checked_tool_choice(request: &ChatRequest) -> Result<(), ApiError> {
    request
        .checked_tool_choice()
        .map(drop)
        .map_err(|e| ApiError::invalid(e.message).with_param("tool_choice"))
}

/// A field of a request body that failed to parse: its path, in the client protocol's
/// notation, and serde's reason.
pub(crate) type Fault = (String, serde_json::Error);

/// How a protocol writes the path of a list element: Anthropic `messages.2`, OpenAI
/// `messages[2]`. Errors name fields the way the client's own SDK documentation does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Paths {
    Dotted,
    Bracketed,
}

impl Paths {
    pub(crate) fn element(self, path: &str, i: usize) -> String {
        match self {
            Paths::Dotted => format!("{path}.{i}"),
            Paths::Bracketed => format!("{path}[{i}]"),
        }
    }
}

/// Parses a request body. Only when that fails on a body that is valid JSON is it read again,
/// by `locate`, to name the field at fault: serde's own message gives a line and column, which
/// tells a client that built the body as an object nothing. `located` words the error the way
/// the client's protocol does.
pub(crate) fn parse_located<T: DeserializeOwned>(
    bytes: &[u8],
    locate: impl Fn(&Value) -> Option<Fault>,
    located: impl Fn(String, serde_json::Error) -> ApiError,
) -> Result<T, ApiError> {
    let err = match serde_json::from_slice::<T>(bytes) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    let found = if err.is_data() {
        serde_json::from_slice::<Value>(bytes).ok().and_then(|v| locate(&v))
    } else {
        None
    };
    Err(match found {
        Some((path, inner)) => located(path, inner),
        None => ApiError::invalid(format!("request body is not valid JSON for this endpoint: {err}")),
    })
}

/// Why `v` is not a `T`, at `path`; `None` when it is one.
pub(crate) fn fault<'a, T: Deserialize<'a>>(path: String, v: &'a Value) -> Option<Fault> {
    T::deserialize(v).err().map(|e| (path, e))
}

/// The first element of the list `v` at fault by `item_fault`, named by its position: in a
/// long conversation the path must point at the one bad entry, not at the array.
pub(crate) fn list_fault(
    paths: Paths,
    path: &str,
    v: &Value,
    item_fault: impl Fn(String, &Value) -> Option<Fault>,
) -> Option<Fault> {
    match v.as_array() {
        Some(items) => {
            items.iter().enumerate().find_map(|(i, item)| item_fault(paths.element(path, i), item))
        }
        None => fault::<Vec<Value>>(path.to_owned(), v),
    }
}

/// [`list_fault`] for a list of `T`.
pub(crate) fn element_fault<T: for<'a> Deserialize<'a>>(
    paths: Paths,
    path: &str,
    v: &Value,
) -> Option<Fault> {
    list_fault(paths, path, v, |path, item| fault::<T>(path, item))
}

/// Tool-call arguments as OpenAI sends them: a JSON string. A string value is an adapter's
/// unparsed text and goes out verbatim.
pub(crate) fn arguments_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// Tool-call arguments a client sent as JSON text, as the object `ToolCall::arguments` holds;
/// blank text is `{}` (some clients send `""` for a call without parameters).
pub(crate) fn parse_arguments(raw: &str, param: impl FnOnce() -> String) -> Result<Value, ApiError> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(raw).map_err(|e| {
        ApiError::invalid(format!("tool call arguments are not valid JSON: {e}")).with_param(param())
    })
}

/// An OpenAI reasoning effort (`reasoning_effort`, the Responses API's `reasoning.effort`)
/// named at `param`: one of OpenAI's own levels, or a 400 listing them.
pub(crate) fn openai_effort(e: &str, param: &'static str) -> Result<Thinking, ApiError> {
    match ReasoningEffort::parse_openai(e) {
        Some(effort) => Ok(Thinking::Effort { effort }),
        None => Err(ApiError::invalid(format!(
            "unknown {param} `{e}`; expected `none`, `minimal`, `low`, `medium`, `high` or `xhigh`"
        ))
        .with_param(param)),
    }
}

/// A function tool's `strict` at `param`: `None` when absent or null (each endpoint has its
/// own default), else the flag, or a 400 naming `param` for anything but a boolean — read as
/// `false`, the client's strict tool would be offered as a loose one and its arguments
/// trusted to a schema nothing enforced.
pub(crate) fn tool_strict(
    v: Option<&Value>,
    param: impl FnOnce() -> String,
) -> Result<Option<bool>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            let param = param();
            Err(match fault::<bool>(param.clone(), other) {
                Some((path, inner)) => invalid_value(path, &inner),
                None => invalid_value(param, &"expected a boolean"),
            })
        }
    }
}

/// OpenAI's wording for a required field left out, naming it as the `param`.
pub(crate) fn missing(param: String) -> ApiError {
    ApiError::invalid(format!("Missing required parameter: '{param}'.")).with_param(param)
}

/// OpenAI's wording for a field of the wrong type or value, naming it as the `param`.
pub(crate) fn invalid_value(path: String, why: &dyn std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Invalid value for '{path}': {why}.")).with_param(path)
}

/// Why an image or a document a client sent cannot be carried. Each protocol words the error
/// and names the field itself; this says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaFault {
    /// An image media type not every vision provider takes ([`IMAGE_MEDIA_TYPES`]): sent on,
    /// it would fail on some backends and not others, so fail-over would decide the answer.
    ImageType(String),
    /// A document that is not a PDF ([`DOCUMENT_MEDIA_TYPE`]), the one type every provider
    /// that reads documents reads.
    DocumentType(String),
    /// Empty, or not standard base64.
    Data,
    /// A `data:` URL that does not read `data:<media type>;base64,<data>` (or, where only a
    /// `data:` URL is taken, something else): a percent-encoded one would have to be decoded
    /// and re-encoded, and no client sends media so.
    DataUrl,
    /// Not an `http(s)` URL (nor, where `data_url` says one may be, a `data:` URL). Other
    /// schemes (`file:`, `ftp:`, a bare path) name nothing a provider could fetch.
    Scheme { data_url: bool },
}

impl fmt::Display for MediaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaFault::ImageType(t) => write!(
                f,
                "unsupported image media type `{t}`; expected one of {}",
                IMAGE_MEDIA_TYPES.join(", ")
            ),
            MediaFault::DocumentType(t) => write!(
                f,
                "unsupported document media type `{t}`: only PDFs (`{DOCUMENT_MEDIA_TYPE}`) are taken"
            ),
            MediaFault::Data => f.write_str("the data is empty or not base64"),
            MediaFault::DataUrl => f.write_str("a data URL must read `data:<media type>;base64,<data>`"),
            MediaFault::Scheme { data_url: true } => {
                f.write_str("expected an `https://` (or `http://`) URL or a base64 `data:` URL")
            }
            MediaFault::Scheme { data_url: false } => {
                f.write_str("expected an `https://` (or `http://`) URL")
            }
        }
    }
}

/// The current end of `text`: where an image or a document stood among the client's text.
fn end_of(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

/// An image at the current end of `text`.
pub(crate) fn image_at(text: &str, source: ImageSource) -> Image {
    Image { at: end_of(text), source }
}

/// A document at the current end of `text`, with the file name or title the client gave.
pub(crate) fn document_at(text: &str, source: DocumentSource, title: Option<String>) -> Document {
    Document { at: end_of(text), source, title, citations: false }
}

/// An image given as a URL, as both OpenAI protocols give one (`image_url.url`, the Responses
/// API's `image_url`): a base64 `data:` URL is the bytes themselves, an `http(s)` URL one the
/// provider fetches (the gateway never does).
pub(crate) fn image_url(url: String) -> Result<ImageSource, MediaFault> {
    if is_data_url(&url) {
        let (media_type, data) = data_url(&url)?;
        return base64_image(media_type, data.to_owned());
    }
    fetched_url(url, true).map(|url| ImageSource::Url { url })
}

/// A PDF as both OpenAI protocols give a file, from the object holding its fields (`at`
/// names it): Chat Completions' `file` object, the Responses API's `input_file` part.
/// `file_data` is a `data:` URL; `file_url` (the Responses API's, `urls`) an `http(s)` URL the
/// provider fetches; `filename` is kept as the document's title. A `file_id` names a file
/// uploaded to OpenAI, which this gateway cannot read: it has no Files API and stores
/// nothing. Other fields (the Responses API's `detail`, which tunes OpenAI's own page
/// rendering) are dropped.
pub(crate) fn openai_file(
    file: &mut serde_json::Map<String, Value>,
    at: &str,
    urls: bool,
) -> Result<(DocumentSource, Option<String>), ApiError> {
    let field = |k: &str| format!("{at}.{k}");
    let mut take = |k: &str| match file.remove(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_value(field(k), &"expected a string")),
    };
    let (id, data, title) = (take("file_id")?, take("file_data")?, take("filename")?);
    let url = if urls { take("file_url")? } else { None };
    let inline = if urls {
        "`file_data` (a base64 `data:` URL) or `file_url`"
    } else {
        "`file_data` (a base64 `data:` URL)"
    };
    if id.is_some() {
        return Err(ApiError::invalid(format!(
            "`{}` names a file uploaded to OpenAI, and this gateway has no Files API and stores \
             nothing: it can read no uploaded files. Send the PDF as {inline}.",
            field("file_id")
        ))
        .with_param(field("file_id")));
    }
    let source = match (data, url) {
        (Some(_), Some(_)) => {
            return Err(invalid_value(field("file_url"), &"give `file_data` or `file_url`, not both"));
        }
        (Some(data), None) => pdf_data_url(&data).map_err(|why| invalid_value(field("file_data"), &why))?,
        (None, Some(url)) => DocumentSource::Url {
            url: fetched_url(url, false).map_err(|why| invalid_value(field("file_url"), &why))?,
        },
        (None, None) => return Err(missing(field("file_data"))),
    };
    Ok((source, title))
}

/// A PDF given as a `data:` URL, as both OpenAI protocols give one inline (`file.file_data`,
/// the Responses API's `file_data`).
pub(crate) fn pdf_data_url(url: &str) -> Result<DocumentSource, MediaFault> {
    if !is_data_url(url) {
        return Err(MediaFault::DataUrl);
    }
    let (media_type, data) = data_url(url)?;
    base64_pdf(media_type, data.to_owned())
}

fn is_data_url(url: &str) -> bool {
    url.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"))
}

/// A URL the provider fetches (Anthropic's `url` sources, the Responses API's `file_url`),
/// checked to be `http(s)`; `data_url` says whether the field also takes `data:` URLs, for
/// the error's wording.
pub(crate) fn fetched_url(url: String, data_url: bool) -> Result<String, MediaFault> {
    let rest = ["https://", "http://"]
        .into_iter()
        .find_map(|p| url.get(..p.len()).filter(|s| s.eq_ignore_ascii_case(p)).map(|_| &url[p.len()..]));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(url),
        _ => Err(MediaFault::Scheme { data_url }),
    }
}

/// `data:<media type>;base64,<data>` as its media type and its data.
fn data_url(url: &str) -> Result<(&str, &str), MediaFault> {
    let (header, data) = url[5..].split_once(',').ok_or(MediaFault::DataUrl)?;
    let (media_type, encoding) = header.rsplit_once(';').ok_or(MediaFault::DataUrl)?;
    if !encoding.eq_ignore_ascii_case("base64") {
        return Err(MediaFault::DataUrl);
    }
    // Parameters (`;charset=…`, `;name=…`) say nothing about the bytes.
    Ok((media_type.split(';').next().unwrap_or_default(), data))
}

/// Base64 image bytes of `media_type`, checked: a supported type (case aside; `image/jpg`,
/// which clients build from file extensions, is `image/jpeg`) and data that is base64 at all,
/// so a bad image is the client's 400 here rather than an upstream's refusal after fail-over.
pub(crate) fn base64_image(media_type: &str, data: String) -> Result<ImageSource, MediaFault> {
    let lower = media_type.trim().to_ascii_lowercase();
    let canonical = if lower == "image/jpg" { "image/jpeg" } else { lower.as_str() };
    let Some(media_type) = IMAGE_MEDIA_TYPES.iter().find(|t| **t == canonical) else {
        return Err(MediaFault::ImageType(media_type.to_owned()));
    };
    let data = base64_data(data)?;
    Ok(ImageSource::Base64 { media_type: (*media_type).to_owned(), data })
}

/// Base64 PDF bytes, checked as [`base64_image`]'s: a PDF (case aside) and base64 data.
pub(crate) fn base64_pdf(media_type: &str, data: String) -> Result<DocumentSource, MediaFault> {
    if !media_type.trim().eq_ignore_ascii_case(DOCUMENT_MEDIA_TYPE) {
        return Err(MediaFault::DocumentType(media_type.to_owned()));
    }
    Ok(DocumentSource::Base64 { data: base64_data(data)? })
}

/// `data` if it is standard base64 and not empty. The bytes are not decoded: images and PDFs
/// run to megabytes and no provider needs them decoded.
fn base64_data(data: String) -> Result<String, MediaFault> {
    let body = data.trim_end_matches('=');
    let padding = data.len() - body.len();
    if body.is_empty()
        || padding > 2
        || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(MediaFault::Data);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use claudette_core::{DocumentSource, ImageSource};

    use super::{MediaFault, TextOr, base64_pdf, image_url, pdf_data_url};

    #[test]
    fn a_string_or_a_list_and_nothing_else() {
        let t: TextOr<String> = serde_json::from_str(r#""a\nb""#).unwrap();
        assert!(matches!(t, TextOr::Text(s) if s == "a\nb"));
        let l: TextOr<String> = serde_json::from_str(r#"["x","y"]"#).unwrap();
        assert!(matches!(l, TextOr::List(v) if v == ["x", "y"]));
        let empty: TextOr<String> = serde_json::from_str("[]").unwrap();
        assert!(matches!(empty, TextOr::List(v) if v.is_empty()));
        for bad in ["1", "{}", "null", "true", r#"[1]"#] {
            let err = serde_json::from_str::<TextOr<String>>(bad).unwrap_err().to_string();
            assert!(err.contains("string"), "{bad}: {err}");
        }
    }

    #[test]
    fn image_urls_are_base64_data_or_fetched() {
        let b64 = |media_type: &str, data: &str| {
            Ok(ImageSource::Base64 { media_type: media_type.into(), data: data.into() })
        };
        assert_eq!(image_url("data:image/png;base64,iVBORw0KGgo=".into()), b64("image/png", "iVBORw0KGgo="));
        assert_eq!(image_url("DATA:Image/JPG;BASE64,/9j/4A".into()), b64("image/jpeg", "/9j/4A"));
        assert_eq!(image_url("data:image/webp;name=x.webp;base64,UklG".into()), b64("image/webp", "UklG"));
        for url in ["https://example.com/cat.png", "HTTP://example.com/a?b=c"] {
            assert_eq!(image_url(url.into()), Ok(ImageSource::Url { url: url.into() }));
        }
        let cases = [
            ("data:image/png,iVBORw0KGgo", MediaFault::DataUrl),
            ("data:image/png;base64", MediaFault::DataUrl),
            ("data:;base64,AAAA", MediaFault::ImageType(String::new())),
            ("data:image/svg+xml;base64,PHN2Zz4=", MediaFault::ImageType("image/svg+xml".into())),
            ("data:image/png;base64,", MediaFault::Data),
            ("data:image/png;base64,%20AAAA", MediaFault::Data),
            ("data:image/png;base64,AA===", MediaFault::Data),
            ("file:///etc/passwd", MediaFault::Scheme { data_url: true }),
            ("https://", MediaFault::Scheme { data_url: true }),
            ("cat.png", MediaFault::Scheme { data_url: true }),
            ("", MediaFault::Scheme { data_url: true }),
            ("dat", MediaFault::Scheme { data_url: true }),
            ("é€", MediaFault::Scheme { data_url: true }),
        ];
        for (url, fault) in cases {
            assert_eq!(image_url(url.into()), Err(fault), "{url}");
        }
    }

    #[test]
    fn pdfs_share_the_image_checks_and_take_only_pdfs() {
        let pdf = |data: &str| Ok(DocumentSource::Base64 { data: data.into() });
        assert_eq!(pdf_data_url("data:application/pdf;base64,JVBERi0="), pdf("JVBERi0="));
        assert_eq!(pdf_data_url("DATA:Application/PDF;name=a.pdf;BASE64,JVBE"), pdf("JVBE"));
        assert_eq!(base64_pdf(" application/PDF ", "JVBE".into()), pdf("JVBE"));
        let cases = [
            ("data:text/plain;base64,aGk=", MediaFault::DocumentType("text/plain".into())),
            ("data:image/png;base64,iVBORw0K", MediaFault::DocumentType("image/png".into())),
            ("data:application/pdf;base64,", MediaFault::Data),
            ("data:application/pdf;base64,%PDF", MediaFault::Data),
            ("data:application/pdf,%PDF-1.7", MediaFault::DataUrl),
            // Inline data only: a URL or bare base64 is no `data:` URL.
            ("https://example.com/a.pdf", MediaFault::DataUrl),
            ("JVBERi0=", MediaFault::DataUrl),
        ];
        for (url, fault) in cases {
            assert_eq!(pdf_data_url(url), Err(fault), "{url}");
        }
        let not_pdf = base64_pdf("application/msword", "AAAA".into()).unwrap_err();
        assert!(not_pdf.to_string().contains("only PDFs (`application/pdf`) are taken"), "{not_pdf}");
    }
}
