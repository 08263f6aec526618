//! Request bodies: reading them under the size limit (reliability-spec S-10, F-21), and
//! knowing whether an answer left one unread.
//!
//! A body that is slightly too large is drained (up to one more limit's worth, for a few
//! seconds) before the 413 goes out, so the connection can serve the client's next request; a
//! body announced as far too large is refused at once without reading it. Any answer that
//! leaves a body unread (that 413, a 401, a 429 or 503 decided from the head) is marked as the
//! connection's last through [`Unread`], and the server then reads and discards what the
//! client still sends before closing (`server::linger`), so the answer is not lost to a reset.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, HttpBody};
use axum::extract::Request;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the limit.
    TooLarge,
    /// The client went away or sent a broken body.
    Read,
}

/// How long to spend draining an oversized body.
const DRAIN_TIME: Duration = Duration::from_secs(5);

pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let announced = body.size_hint().exact();
    let drain_budget = limit;
    if let Some(len) = announced {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > limit {
            if len - limit <= drain_budget {
                drain(body.into_data_stream(), len).await;
            }
            return Err(BodyError::TooLarge);
        }
    }
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Read)?;
        total = total.saturating_add(chunk.len());
        if total > limit {
            drain(stream, drain_budget).await;
            return Err(BodyError::TooLarge);
        }
        // The common case is one chunk: keep it without copying.
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            Some(prev) => {
                buf.reserve(prev.len() + chunk.len());
                buf.extend_from_slice(&prev);
                buf.extend_from_slice(&chunk);
            }
            None => buf.extend_from_slice(&chunk),
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Reads and throws away a body refused before it was read, keeping nothing: such refusals
/// happen outside the concurrency limit, so buffering here would let memory grow with the
/// number of clients. When the body ends within `limit` bytes and [`DRAIN_TIME`], the
/// connection can serve another request; otherwise [`Unread`] closes it after the answer.
pub(crate) async fn discard(body: Body, limit: usize) {
    drain(body.into_data_stream(), limit).await;
}

/// Reads and discards the rest of a body, up to `budget` bytes and [`DRAIN_TIME`]. Whether it
/// got to the end is for [`Unread`] to tell.
async fn drain(mut stream: BodyDataStream, budget: usize) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(c)) = stream.next().await {
            seen = seen.saturating_add(c.len());
            if seen > budget {
                return;
            }
        }
    })
    .await;
}

/// Whether the request a connection is answering has left part of its body unread: set when
/// a request with a body arrives, cleared when its body is read to the end.
///
/// Answers decided from the head alone (a wrong key, a key's or the gateway's limits, an
/// announced size over the limit) leave the body unread, wherever in the stack they are
/// decided; tracking the body itself covers all of them, present and future, in one place.
/// Such an answer must be the connection's last (the rest of the body would be read as the
/// next request), so it gets `Connection: close`, and the server lingers before closing.
#[derive(Clone, Default)]
pub(crate) struct Unread(Arc<AtomicBool>);

impl Unread {
    /// `request` with its body watched, as the body type the handlers take.
    pub(crate) fn watch(&self, request: Request<Incoming>) -> Request {
        let pending = !request.body().is_end_stream();
        // Relaxed: the flag is set and read on the connection's own task.
        self.0.store(pending, Ordering::Relaxed);
        if pending {
            let unread = self.clone();
            request.map(|inner| Body::new(Watched { inner, unread }))
        } else {
            request.map(Body::new)
        }
    }

    /// True when the last request's body was not read to its end.
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request body that clears its connection's [`Unread`] when it has been read to the end.
struct Watched {
    inner: Incoming,
    unread: Unread,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.unread.0.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_bodies_pass_and_large_ones_are_refused() {
        let ok = read_body(Body::from("hello"), 10).await.unwrap();
        assert_eq!(&ok[..], b"hello");
        assert!(matches!(read_body(Body::from("hello world"), 10).await, Err(BodyError::TooLarge)));
        let chunks = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"def")),
        ]);
        let joined = read_body(Body::from_stream(chunks), 10).await.unwrap();
        assert_eq!(&joined[..], b"abcdef");
        let big = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"abcdef")),
            Ok(Bytes::from_static(b"ghijkl")),
        ]);
        assert!(matches!(read_body(Body::from_stream(big), 10).await, Err(BodyError::TooLarge)));
    }
}
