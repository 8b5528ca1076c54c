//! Fake network peers on 127.0.0.1 that are no channel's provider: the OpenAI-compatible model
//! API. The generic server ([`FakeServer`], [`serve`]) is the channel crates' own
//! (`switchboard_channel::testing`), as are the providers' fakes (`botapi`, `graph`, `smtp`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use switchboard_channel::testing::Recorder;
pub use switchboard_channel::testing::{FakeServer, serve};

/// How the fake model API answers.
#[derive(Debug, Clone)]
pub enum ModelBehaviour {
    /// Streams these deltas (as chat.completion.chunk events), pausing between them, then `[DONE]`.
    Stream(Vec<String>, Duration),
    /// Streams these deltas, then a last chunk with the usage (prompt and completion tokens), as
    /// servers do when asked with `stream_options.include_usage`, then `[DONE]`.
    StreamWithUsage(Vec<String>, u64, u64),
    /// Answers this status with an OpenAI-style error body.
    Fail(u16, String),
    /// Never answers.
    Hang,
    /// Streams these deltas, then keeps the connection open without finishing.
    StallAfter(Vec<String>),
    /// After a pause, answers "echo: <the last user message>" in one delta.
    Echo(Duration),
}

#[derive(Clone)]
struct ModelState {
    behaviour: Arc<Mutex<ModelBehaviour>>,
    requests: Recorder<(HeaderMap, Value)>,
    /// Requests being answered right now, and the most seen at once.
    in_flight: Arc<Mutex<(usize, usize)>>,
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<Mutex<(usize, usize)>>);

impl InFlight {
    fn new(counter: &Arc<Mutex<(usize, usize)>>) -> Self {
        let mut c = counter.lock().unwrap();
        c.0 += 1;
        c.1 = c.1.max(c.0);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().0 -= 1;
    }
}

/// A fake OpenAI-compatible chat completions API.
pub struct FakeModel {
    server: FakeServer,
    state: ModelState,
}

impl FakeModel {
    /// Starts the fake.
    pub async fn start(behaviour: ModelBehaviour) -> FakeModel {
        let state = ModelState {
            behaviour: Arc::new(Mutex::new(behaviour)),
            requests: Recorder::default(),
            in_flight: Arc::default(),
        };
        let router = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(state.clone());
        FakeModel {
            server: serve(router).await,
            state,
        }
    }

    /// The base URL to configure (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.address)
    }

    /// Changes how it answers from now on.
    pub fn set(&self, behaviour: ModelBehaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state
            .requests
            .all()
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// The headers of the requests received so far.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.state
            .requests
            .all()
            .into_iter()
            .map(|(h, _)| h)
            .collect()
    }

    /// The most requests that were being answered at the same time.
    pub fn peak_concurrency(&self) -> usize {
        self.state.in_flight.lock().unwrap().1
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) {
        let requests = &self.state.requests;
        if !requests.wait_until(timeout, || requests.len() >= n).await {
            panic!("the model API did not receive {n} requests in time");
        }
    }
}

fn chunk(content: &str) -> String {
    let event = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "fake",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]
    });
    format!("data: {event}\n\n")
}

async fn completions(
    State(state): State<ModelState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    state.requests.record((headers, body));
    let in_flight = InFlight::new(&state.in_flight);
    let behaviour = state.behaviour.lock().unwrap().clone();
    match behaviour {
        ModelBehaviour::Echo(pause) => {
            tokio::time::sleep(pause).await;
            drop(in_flight);
            let events = format!("{}data: [DONE]\n\n", chunk(&format!("echo: {last_user}")));
            sse(Body::from(events))
        }
        ModelBehaviour::Fail(status, message) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"error": {"message": message, "type": "server_error"}})),
        )
            .into_response(),
        ModelBehaviour::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        ModelBehaviour::Stream(deltas, pause) => {
            let events = async_stream::stream! {
                let _in_flight = in_flight;
                let role = json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]});
                yield Ok::<_, std::io::Error>(format!("data: {role}\n\n"));
                for delta in deltas {
                    tokio::time::sleep(pause).await;
                    yield Ok(chunk(&delta));
                }
                yield Ok("data: [DONE]\n\n".to_owned());
            };
            sse(Body::from_stream(events))
        }
        ModelBehaviour::StreamWithUsage(deltas, prompt, completion) => {
            drop(in_flight);
            let mut events: String = deltas.iter().map(|d| chunk(d)).collect();
            let usage = json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": "fake", "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}
            });
            events.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
            sse(Body::from(events))
        }
        ModelBehaviour::StallAfter(deltas) => {
            let events = async_stream::stream! {
                let _in_flight = in_flight;
                for delta in deltas {
                    yield Ok::<_, std::io::Error>(chunk(&delta));
                }
                std::future::pending::<()>().await;
            };
            sse(Body::from_stream(events))
        }
    }
}

fn sse(body: Body) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .expect("response")
}
