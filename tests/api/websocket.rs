//! `GET /v1/chat/ws`: the chat over a WebSocket. A visitor chats and sees the reply being written;
//! what happens elsewhere in their conversations (an expert's message) arrives unasked; a
//! reconnect with `resume` loses nothing; bad frames are answered with error frames on a socket
//! that stays open; identity, origin, rates and the sockets per visitor are enforced; pings close
//! dead sockets and a shutdown closes every socket with 1001.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::{config::AgentConfig, store::Db};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use crate::{
    both_backends,
    helpers::{Backend, TestApp, json_response},
};

both_backends!(
    a_visitor_chats_and_sees_typing_deltas_and_the_reply,
    a_reconnect_with_resume_loses_nothing,
    a_resend_with_the_same_client_id_is_stored_once,
);

const WAIT: Duration = Duration::from_secs(10);

/// A test client's socket.
struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>);

/// Opens a socket with the given query string and headers; a refused handshake gives its status
/// and JSON body.
async fn connect(
    app: &TestApp,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<Socket, (u16, Value)> {
    let url = format!("ws://{}/v1/chat/ws{query}", app.address);
    let mut request = url.into_client_request().expect("a request");
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(Socket(socket)),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).expect("a JSON error body"))
                .unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(e) => panic!("cannot connect: {e}"),
    }
}

impl Socket {
    /// Opens a socket as a device and reads its `connected` frame.
    async fn open(app: &TestApp, device: &str) -> (Socket, Value) {
        let mut socket = connect(app, "", &[("x-device-id", device)])
            .await
            .unwrap_or_else(|(status, body)| panic!("refused: {status} {body}"));
        let connected = socket.next().await;
        assert_eq!(connected["type"], "connected", "{connected}");
        (socket, connected)
    }

    async fn send(&mut self, frame: Value) {
        self.0
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    async fn send_raw(&mut self, message: Message) {
        self.0.send(message).await.expect("send");
    }

    /// The next JSON frame (pings are answered by the client library).
    async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("a frame in time")
                .expect("the socket is open")
                .expect("a frame");
            match frame {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame: {other:?}"),
            }
        }
    }

    /// Frames up to the first one `done` accepts: that one and those before it.
    async fn until(&mut self, done: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let frame = self.next().await;
            if done(&frame) {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// The close frame the gateway ends the socket with.
    async fn closed(&mut self) -> (CloseCode, String) {
        loop {
            let frame = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("the close in time");
            match frame {
                Some(Ok(Message::Close(Some(close)))) => {
                    return (close.code, close.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the socket failed instead of closing: {e}"),
            }
        }
    }
}

fn slow_assistant(config: &mut switchboard::config::Config) {
    // Replies are written word by word for a while: the client sees them being written.
    if let Some(AgentConfig::Scripted(s)) = config.agents.get_mut("assistant") {
        s.word_delay = Duration::from_millis(40);
    }
}

/// Reads a reply being written: a typing notice, then deltas that add up to the final message.
async fn read_reply(socket: &mut Socket, conversation: &str, reply_to: &Value) -> Value {
    let typing = socket.next().await;
    assert_eq!(typing["type"], "typing", "{typing}");
    assert_eq!(typing["conversation_id"], conversation);
    assert_eq!(&typing["reply_to"], reply_to);
    let (reply, deltas) = socket.until(|f| f["type"] == "message").await;
    assert!(!deltas.is_empty(), "the reply is written piece by piece");
    let mut text = String::new();
    for (index, delta) in (1..).zip(&deltas) {
        assert_eq!(delta["type"], "delta", "{delta}");
        assert_eq!(delta["index"], index, "in order, none missing: {delta}");
        assert_eq!(&delta["reply_to"], reply_to);
        text.push_str(delta["content"].as_str().unwrap());
    }
    assert_eq!(reply["conversation_id"], conversation);
    assert_eq!(reply["message"]["content"], text.as_str());
    assert_eq!(reply["message"]["role"], "ai");
    assert_eq!(&reply["message"]["reply_to"], reply_to);
    reply
}

async fn a_visitor_chats_and_sees_typing_deltas_and_the_reply(backend: Backend) {
    let app = TestApp::spawn_with(&backend, slow_assistant).await;
    let (mut socket, connected) = Socket::open(&app, "dev-ws").await;
    assert_eq!(connected["conversations"], json!([]));

    socket
        .send(json!({"type": "message", "client_id": "c-1", "content": "hello"}))
        .await;
    let ack = socket.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["client_id"], "c-1");
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["message"]["content"], "hello");
    assert_eq!(ack["message"]["role"], "user");
    let conversation = ack["conversation_id"].as_str().unwrap().to_owned();
    let reply = read_reply(&mut socket, &conversation, &ack["message"]["id"]).await;
    assert!(
        reply["response_time_ms"].is_u64(),
        "an AI reply says how long it took: {reply}"
    );
    assert!(
        reply["message"]["metadata"].get("usage").is_none(),
        "what a reply used is for staff: {reply}"
    );

    // The conversation is followed now: the next reply comes live, and the visitor's own
    // message is not echoed back (the ack carried it).
    socket
        .send(json!({"type": "message", "conversation_id": conversation, "content": "opening hours?"}))
        .await;
    let ack = socket.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["client_id"], Value::Null);
    assert_eq!(ack["message"]["seq"], 3);
    let reply = read_reply(&mut socket, &conversation, &ack["message"]["id"]).await;
    assert_eq!(reply["message"]["seq"], 4);

    // What the socket showed is what is stored.
    let (_, stored) = app
        .get(
            "dev-ws",
            &format!("/v1/conversations/{conversation}/messages"),
        )
        .await;
    let contents: Vec<&str> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents.len(), 4, "{stored}");
    assert_eq!(contents[3], reply["message"]["content"].as_str().unwrap());

    // A frame-level ping is answered.
    socket.send(json!({"type": "ping"})).await;
    assert_eq!(socket.next().await, json!({"type": "pong"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experts_message_arrives_unasked() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let (status, first) = app.send("dev-ws", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{first}");
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    // The socket follows the visitor's conversations from the start.
    let (mut socket, connected) = Socket::open(&app, "dev-ws").await;
    assert_eq!(connected["conversations"], json!([id]));

    socket
        .send(json!({"type": "handoff", "conversation_id": id, "reason": "a person, please"}))
        .await;
    let (update, _) = socket.until(|f| f["type"] == "update").await;
    assert_eq!(update["conversation"]["mode"], "expert", "{update}");
    let (notice, _) = socket.until(|f| f["type"] == "message").await;
    assert_eq!(notice["message"]["role"], "system", "{notice}");
    assert_eq!(notice["message"]["metadata"]["mode"], "expert");

    let (_, token) = app.staff_token("ana@example.com", "expert").await;
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/claim"),
            &token,
            None,
        )
        .await;
    assert!(status < 300, "{status} {body}");
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/messages"),
            &token,
            Some(json!({"content": "Hi, I'm Ana. How can I help?"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (answer, _) = socket
        .until(|f| f["type"] == "message" && f["message"]["role"] == "expert")
        .await;
    assert_eq!(answer["conversation_id"], id.as_str());
    assert_eq!(answer["message"]["content"], "Hi, I'm Ana. How can I help?");
    assert_ne!(
        answer["message"]["author"], body["message"]["author"],
        "the visitor sees the expert's name, not their staff account: {answer}"
    );

    // Another conversation of the visitor, started elsewhere, is taken up with `resume`.
    let (_, other) = app.send("dev-ws", json!({"content": "second tab"})).await;
    let other = other["conversation_id"].as_str().unwrap().to_owned();
    socket
        .send(json!({"type": "resume", "conversation_id": other, "after_seq": 0}))
        .await;
    let (first, _) = socket
        .until(|f| f["conversation_id"] == other.as_str())
        .await;
    assert_eq!(first["message"]["content"], "second tab", "{first}");
}

async fn a_reconnect_with_resume_loses_nothing(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (mut socket, _) = Socket::open(&app, "dev-ws").await;
    socket
        .send(json!({"type": "message", "content": "one"}))
        .await;
    let ack = socket.next().await;
    let id = ack["conversation_id"].as_str().unwrap().to_owned();
    let (reply, _) = socket.until(|f| f["type"] == "message").await;
    assert_eq!(reply["message"]["seq"], 2);
    drop(socket);

    // While the client is away, the conversation goes on.
    for text in ["two", "three"] {
        let (status, _) = app
            .send("dev-ws", json!({"conversation_id": id, "content": text}))
            .await;
        assert_eq!(status, 200);
    }
    let (mut socket, _) = Socket::open(&app, "dev-ws").await;
    socket
        .send(json!({"type": "resume", "conversation_id": id, "after_seq": 2}))
        .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (frame, _) = socket.until(|f| f["type"] == "message").await;
        seen.push((
            frame["message"]["seq"].as_i64().unwrap(),
            frame["message"]["content"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        seen,
        [
            (3, "two".to_owned()),
            (4, "two".to_owned()),
            (5, "three".to_owned()),
            (6, "three".to_owned())
        ],
        "everything missed, once, in order"
    );
    // Then the conversation is followed live, without repeats.
    app.send("dev-ws", json!({"conversation_id": id, "content": "four"}))
        .await;
    let (next, _) = socket.until(|f| f["type"] == "message").await;
    assert_eq!(next["message"]["seq"], 7, "{next}");
    assert_eq!(next["message"]["content"], "four");

    // Someone else's conversation cannot be resumed.
    let (mut stranger, _) = Socket::open(&app, "dev-other").await;
    stranger
        .send(json!({"type": "resume", "conversation_id": id, "after_seq": 0}))
        .await;
    let refused = stranger.next().await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("not_found")),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_frames_and_the_socket_lives() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.web.max_content_chars = 100;
        c.web.ws_max_frame_bytes = 2048;
    })
    .await;
    let (mut socket, _) = Socket::open(&app, "dev-ws").await;
    let long = "x".repeat(200);
    let cases = [
        ("{", "invalid_json"),
        (r#"{"type":"shout"}"#, "unknown_type"),
        (r#"{"content":"no type"}"#, "invalid_request"),
        (r#"{"type":"message","content":""}"#, "empty_content"),
        (
            r#"{"type":"message","content":"hi","colour":"red"}"#,
            "invalid_request",
        ),
        (
            r#"{"type":"message","content":"hi","conversation_id":"nope"}"#,
            "invalid_conversation_id",
        ),
        (
            r#"{"type":"message","content":"hi","conversation_id":"0193a0a0-0000-7000-8000-000000000000"}"#,
            "not_found",
        ),
        (
            r#"{"type":"resume","conversation_id":"nope","after_seq":1}"#,
            "invalid_conversation_id",
        ),
        (r#"{"type":"resume","after_seq":1}"#, "invalid_request"),
    ];
    for (frame, code) in cases {
        socket.send_raw(Message::text(frame)).await;
        let error = socket.next().await;
        assert_eq!(error["type"], "error", "{frame}: {error}");
        assert_eq!(error["code"], code, "{frame}: {error}");
        assert!(error["message"].is_string());
    }
    socket
        .send(json!({"type": "message", "client_id": "long-1", "content": long}))
        .await;
    let error = socket.next().await;
    assert_eq!(
        (error["code"].as_str(), error["client_id"].as_str()),
        (Some("content_too_long"), Some("long-1")),
        "{error}"
    );
    socket.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(socket.next().await["code"], "unsupported_frame");
    assert_eq!(app.count("messages").await, 0, "nothing refused is stored");

    // Still open and answering.
    socket.send(json!({"type": "ping"})).await;
    assert_eq!(socket.next().await["type"], "pong");

    // A frame over web.ws_max_frame_bytes closes the socket.
    socket
        .send(json!({"type": "message", "content": "y".repeat(3000)}))
        .await;
    let (code, _) = socket.closed().await;
    assert_eq!(code, CloseCode::Size);
}

fn token(secret: &str, subject: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 600;
    jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": subject, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_and_origins_are_checked_before_the_upgrade() {
    let secret = "test-secret-that-is-long-enough";
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.web.jwt_secret = Some(secret.into());
        c.web.allowed_origins = vec!["https://shop.example".into()];
    })
    .await;
    let refusal = |result: Result<Socket, (u16, Value)>| match result {
        Ok(_) => panic!("the socket opened"),
        Err((status, body)) => (status, body["error"]["code"].as_str().unwrap().to_owned()),
    };
    assert_eq!(
        refusal(connect(&app, "", &[]).await),
        (401, "unauthenticated".into())
    );
    assert_eq!(
        refusal(connect(&app, "?access_token=forged", &[]).await),
        (401, "invalid_token".into())
    );
    assert_eq!(
        refusal(
            connect(
                &app,
                "?device_id=dev-1",
                &[("origin", "https://evil.example")]
            )
            .await
        ),
        (403, "forbidden_origin".into())
    );
    // A browser on the shop's site, by query string; a signed-in visitor by token.
    connect(
        &app,
        "?device_id=dev-1",
        &[("origin", "https://shop.example")],
    )
    .await
    .expect("an allowed origin");
    let signed = token(secret, "alice");
    let mut socket = connect(&app, &format!("?access_token={signed}"), &[])
        .await
        .expect("a valid token");
    assert_eq!(socket.next().await["type"], "connected");

    // Not a WebSocket handshake: an ordinary error.
    let (status, body) = json_response(
        app.request(Method::GET, "/v1/chat/ws", "dev-1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("not_a_websocket"))
    );

    // A site that insists on its own tokens refuses device ids.
    let strict = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.web.jwt_secret = Some(secret.into());
        c.web.require_token = true;
    })
    .await;
    assert_eq!(
        refusal(connect(&strict, "?device_id=dev-1", &[]).await),
        (401, "token_required".into())
    );
    connect(
        &strict,
        "",
        &[("authorization", &format!("Bearer {signed}"))],
    )
    .await
    .expect("a token in the header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_frames_count_against_the_visitors_rate() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.routing.default_agent = "echo".into();
        c.limits.visitor.messages_per_minute = 2;
    })
    .await;
    let (mut socket, _) = Socket::open(&app, "dev-ws").await;
    socket
        .send(json!({"type": "message", "content": "one"}))
        .await;
    let ack = socket.next().await;
    let id = ack["conversation_id"].as_str().unwrap().to_owned();
    socket
        .send(json!({"type": "message", "conversation_id": id, "content": "two"}))
        .await;
    socket.until(|f| f["type"] == "ack").await;
    app.all_answered().await;
    let stored = app.count("messages").await;
    socket
        .send(json!({"type": "message", "conversation_id": id, "content": "three", "client_id": "m-3"}))
        .await;
    let (refused, _) = socket.until(|f| f["type"] == "error").await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["client_id"], "m-3");
    assert!(refused["retry_after"].as_u64().unwrap() >= 1, "{refused}");
    assert_eq!(app.count("messages").await, stored, "nothing stored");
    // The same rate over HTTP: the socket is no way around it.
    let (status, _) = app
        .send("dev-ws", json!({"conversation_id": id, "content": "four"}))
        .await;
    assert_eq!(status, 429);
    socket.send(json!({"type": "ping"})).await;
    let (pong, _) = socket.until(|f| f["type"] == "pong").await;
    assert_eq!(pong["type"], "pong", "the socket stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_may_hold_only_so_many_sockets() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| c.web.ws_sockets_per_visitor = 2).await;
    let (first, _) = Socket::open(&app, "dev-ws").await;
    let (_second, _) = Socket::open(&app, "dev-ws").await;
    let refused = connect(&app, "?device_id=dev-ws", &[]).await.err();
    let (status, body) = refused.expect("a third socket is refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // Another visitor is not concerned.
    let _other = Socket::open(&app, "dev-other").await;
    // The gauge counts the open sockets.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_websockets_open 3"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("websockets"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Closing one frees its place.
    let mut first = first;
    first.0.close(None).await.unwrap();
    app.eventually(WAIT, "a place after a close", || async {
        connect(&app, "?device_id=dev-ws", &[]).await.ok()
    })
    .await;
}

async fn a_resend_with_the_same_client_id_is_stored_once(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (mut socket, _) = Socket::open(&app, "dev-ws").await;
    socket
        .send(json!({"type": "message", "client_id": "same-1", "content": "hello"}))
        .await;
    let ack = socket.next().await;
    assert_eq!(ack["duplicate"], false);
    socket.until(|f| f["type"] == "message").await;
    app.all_answered().await;

    // The client did not see the ack (say the connection dropped) and sends again.
    let (mut again, _) = Socket::open(&app, "dev-ws").await;
    again
        .send(json!({"type": "message", "client_id": "same-1", "content": "hello"}))
        .await;
    let (repeat, _) = again.until(|f| f["type"] == "ack").await;
    assert_eq!(repeat["duplicate"], true, "{repeat}");
    assert_eq!(repeat["message"]["id"], ack["message"]["id"]);
    assert_eq!(repeat["client_id"], "same-1");
    app.all_answered().await;
    assert_eq!(
        app.count("messages").await,
        2,
        "one message, one reply: no duplicate, no second reply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_closed_and_a_shutdown_says_going_away() {
    let mut app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.web.ws_ping_interval = Duration::from_millis(200);
    })
    .await;
    let (mut silent, connected) = Socket::open(&app, "dev-silent").await;
    assert_eq!(connected["ping_interval_ms"], 200);
    // A client that reads nothing answers no pings.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, reason) = silent.closed().await;
    assert_eq!(code, CloseCode::from(4408), "{reason}");

    // One that reads answers them, and stays.
    let (mut alive, _) = Socket::open(&app, "dev-alive").await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
    while tokio::time::Instant::now() < deadline {
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(100), alive.0.next()).await {
            assert!(
                matches!(frame, Some(Ok(Message::Ping(_)))),
                "only pings on an idle socket: {frame:?}"
            );
        }
    }
    app.begin_stop();
    let (code, _) = alive.closed().await;
    assert_eq!(code, CloseCode::Away);
    app.stop().await;
}

/// The open event transports, from the metrics: (WebSockets, event streams).
async fn transports_open(app: &TestApp) -> (u64, u64) {
    (
        app.metric("switchboard_websockets_open").await as u64,
        app.metric("switchboard_event_streams_open").await as u64,
    )
}

/// The widget in headless Chromium follows its conversation over a WebSocket: an expert's reply
/// reaches the page while the socket is the only event transport open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_gets_replies_over_a_websocket_in_a_real_browser() {
    use crate::browser::{Browser, texts};
    use fantoccini::Locator;

    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let client = browser.client();
    client.goto(&app.url("/")).await.unwrap();
    let input = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#sbw-input"))
        .await
        .expect("the widget opens on the page");
    input.send_keys("hello").await.unwrap();
    client
        .find(Locator::Css("#sbw-send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    app.eventually(WAIT, "the widget's WebSocket", || async {
        (transports_open(&app).await == (1, 0)).then_some(())
    })
    .await;
    let (id,): (String,) = app
        .store
        .reader()
        .fetch_one(switchboard::store::query("SELECT id FROM conversations"))
        .await
        .unwrap();

    // The visitor asks for a person; an expert takes the conversation and answers.
    client
        .find(Locator::Css("#sbw-human"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let (_, token) = app.staff_token("ana@example.com", "expert").await;
    app.eventually(WAIT, "the claim", || async {
        let (status, _) = app
            .staff_call(
                Method::POST,
                &format!("/v1/expert/conversations/{id}/claim"),
                &token,
                None,
            )
            .await;
        (status < 300).then_some(())
    })
    .await;
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/messages"),
            &token,
            Some(json!({"content": "Hello, Ana here."})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.eventually(WAIT, "the expert's reply on the page", || async {
        let shown = texts(client, ".sbw-msg").await;
        shown
            .iter()
            .any(|t| t.contains("Hello, Ana here."))
            .then_some(())
    })
    .await;
    assert_eq!(
        transports_open(&app).await,
        (1, 0),
        "the reply came over the WebSocket, the only event transport open"
    );
    let _ = client.clone().close().await;
}
