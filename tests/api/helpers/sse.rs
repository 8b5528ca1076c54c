//! A small server-sent events reader for tests, over a `reqwest` response.

use std::time::Duration;

use futures::StreamExt;

/// One event (or heartbeat comment) as the server sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    /// The `event:` field (`None` means the default, "message").
    pub event: Option<String>,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
    /// Whether this was a comment line (a heartbeat) rather than an event.
    pub comment: bool,
}

impl SseEvent {
    /// The data parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }

    /// The event name, with the SSE default.
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// Reads events from a streaming response.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buffer: String,
    current: SseEvent,
    ready: std::collections::VecDeque<SseEvent>,
}

impl SseReader {
    /// Starts reading; panics unless the response is a 200 event stream.
    pub fn new(response: reqwest::Response) -> SseReader {
        assert_eq!(response.status(), 200, "event stream refused");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content type {content_type}"
        );
        SseReader {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            current: SseEvent::default(),
            ready: Default::default(),
        }
    }

    /// The next event or comment, or `None` when the stream ended.
    pub async fn next_any(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.buffer.find('\n') {
                let line = self.buffer[..end].trim_end_matches('\r').to_owned();
                self.buffer.drain(..=end);
                self.line(&line);
            }
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            let event = std::mem::take(&mut self.current);
            if event.event.is_some() || event.id.is_some() || !event.data.is_empty() {
                self.ready.push_back(event);
            }
        } else if let Some(comment) = line.strip_prefix(':') {
            self.ready.push_back(SseEvent {
                comment: true,
                data: comment.trim().to_owned(),
                ..SseEvent::default()
            });
        } else {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.current.event = Some(value.to_owned()),
                "id" => self.current.id = Some(value.to_owned()),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
    }

    /// The next event, skipping heartbeats; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let event = self.next_any().await?;
            if !event.comment {
                return Some(event);
            }
        }
    }

    /// The next event within `timeout`; panics on timeout or end of stream.
    pub async fn expect(&mut self, timeout: Duration) -> SseEvent {
        tokio::time::timeout(timeout, self.next())
            .await
            .expect("timed out waiting for an event")
            .expect("the event stream ended")
    }

    /// Reads events until one satisfies `pred`, returning it and everything read before it.
    pub async fn until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&SseEvent) -> bool,
    ) -> (SseEvent, Vec<SseEvent>) {
        let mut before = Vec::new();
        let found = tokio::time::timeout(timeout, async {
            while let Some(event) = self.next().await {
                if pred(&event) {
                    return Some(event);
                }
                before.push(event);
            }
            None
        })
        .await;
        match found {
            Ok(Some(event)) => (event, before),
            Ok(None) => panic!("the stream ended first; read {before:#?}"),
            Err(_) => panic!("timed out; read {before:#?}"),
        }
    }

    /// Reads the whole (finite) stream.
    pub async fn collect(mut self, timeout: Duration) -> Vec<SseEvent> {
        let mut all = Vec::new();
        tokio::time::timeout(timeout, async {
            while let Some(event) = self.next().await {
                all.push(event);
            }
        })
        .await
        .expect("the stream did not end in time");
        all
    }
}
