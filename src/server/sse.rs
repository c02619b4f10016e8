//! Server-sent events framing: `data: <json>\n\n` per event, `data: [DONE]\n\n` at the end.
//! A stream's producer task writes frames into a bounded channel; the response body reads
//! it. When the client goes away the body is dropped, the next send fails, the producer
//! returns and drops the engine's receiver, which cancels the generation.

use crate::api::ErrorBody;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::convert::Infallible;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// One `data:` frame. JSON never contains a raw newline, so one line is always enough.
pub fn frame<T: Serialize>(value: &T) -> Bytes {
    let mut buf = b"data: ".to_vec();
    // Serializing our own wire types cannot fail (no maps with non-string keys).
    if serde_json::to_writer(&mut buf, value).is_err() {
        buf.truncate(6);
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

pub fn error_frame(body: &ErrorBody) -> Bytes {
    frame(body)
}

/// The sending half a producer writes frames into; `send` fails once the client is gone.
pub struct SseSender {
    tx: mpsc::Sender<Bytes>,
}

impl SseSender {
    /// Returns false when the client has disconnected.
    pub async fn send(&self, frame: Bytes) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    pub async fn done(&self) -> bool {
        self.send(Bytes::from_static(DONE)).await
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the client has gone away (the body was dropped).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// A channel and the SSE response that streams what is sent into it.
pub fn channel() -> (SseSender, Response) {
    // A few frames of slack: the producer must notice a gone client within a token or two.
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let response = (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    (SseSender { tx }, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_single_data_lines() {
        let f = frame(&serde_json::json!({"a": "line\nbreak"}));
        assert_eq!(&f[..], b"data: {\"a\":\"line\\nbreak\"}\n\n");
    }

    #[tokio::test]
    async fn send_fails_once_the_body_is_dropped() {
        let (tx, resp) = channel();
        assert!(tx.send(Bytes::from_static(b"data: 1\n\n")).await);
        drop(resp);
        assert!(!tx.send(Bytes::from_static(b"data: 2\n\n")).await);
    }
}
