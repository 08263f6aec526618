//! Reading request bodies under the size limit (reliability-spec S-10, F-21).
//!
//! axum's `DefaultBodyLimit` stops reading at the limit and answers 413 while the client is
//! still sending; the server then closes a socket with unread data, the kernel answers with a
//! reset, and the client may lose the 413 and see only "connection reset". Here a body that is
//! slightly too large is drained (up to one more limit's worth, for a few seconds) before the
//! 413 goes out, so clients get a clean answer; a body announced as far too large is refused at
//! once without reading it.

use std::time::Duration;

use axum::body::{Body, HttpBody};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the limit. `drained` tells whether the connection is still usable.
    TooLarge { drained: bool },
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
            let drained = len - limit <= drain_budget && drain(body, len).await;
            return Err(BodyError::TooLarge { drained });
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
            let mut drained = 0usize;
            let done = tokio::time::timeout(DRAIN_TIME, async {
                while let Some(c) = stream.next().await {
                    let Ok(c) = c else { return false };
                    drained = drained.saturating_add(c.len());
                    if drained > drain_budget {
                        return false;
                    }
                }
                true
            })
            .await
            .unwrap_or(false);
            return Err(BodyError::TooLarge { drained: done });
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
/// number of clients. `true` when the body ended within `limit` bytes and [`DRAIN_TIME`], so
/// the connection can serve another request.
pub(crate) async fn discard(body: Body, limit: usize) -> bool {
    drain(body, limit).await
}

/// Reads and discards an announced body of `len` bytes, within [`DRAIN_TIME`].
async fn drain(body: Body, len: usize) -> bool {
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    tokio::time::timeout(DRAIN_TIME, async {
        while let Some(c) = stream.next().await {
            let Ok(c) = c else { return false };
            seen = seen.saturating_add(c.len());
            if seen > len {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_bodies_pass_and_large_ones_are_refused() {
        let ok = read_body(Body::from("hello"), 10).await.unwrap();
        assert_eq!(&ok[..], b"hello");
        assert!(matches!(
            read_body(Body::from("hello world"), 10).await,
            Err(BodyError::TooLarge { drained: true })
        ));
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
        assert!(matches!(
            read_body(Body::from_stream(big), 10).await,
            Err(BodyError::TooLarge { drained: true })
        ));
    }
}
