//! A canned HTTP answer that a test queues on a fake: any status, headers and body, optionally
//! late (a slow provider) or never finished (a stalled download). Provider crates add their API's
//! own shapes through extension traits (`Reply::ok` of the Bot API, `Reply::error` of the Graph
//! API).

use std::{convert::Infallible, time::Duration};

use axum::{
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::Response,
};
use serde_json::Value;

/// How a fake answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Option<Duration>,
    stall: bool,
}

impl Reply {
    /// `status` with `body` and no `Content-Type`.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: StatusCode::from_u16(status)
                .unwrap_or_else(|_| panic!("{status} is no HTTP status")),
            headers: Vec::new(),
            body: body.into(),
            delay: None,
            stall: false,
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::raw(status, "application/json", body.to_string())
    }

    /// Any answer, with its `Content-Type`.
    pub fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(status, body).header(header::CONTENT_TYPE.as_str(), content_type)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay`, like a slow server.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }

    /// Sends the status, headers and body, then never finishes the response, like a download
    /// that stalls.
    pub fn stalled(mut self) -> Reply {
        self.stall = true;
        self
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response, once its delay passed.
    pub async fn into_response(self) -> Response {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        let body = if self.stall {
            let first =
                futures::stream::once(async move { Ok::<_, Infallible>(Bytes::from(self.body)) });
            Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()))
        } else {
            Body::from(self.body)
        };
        response
            .body(body)
            .unwrap_or_else(|e| panic!("a reply with an invalid header: {e}"))
    }
}
