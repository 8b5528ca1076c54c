//! Sending messages and getting replies: `POST /v1/chat/messages` and `POST /v1/chat/stream`.

use std::time::Duration;

use serde_json::json;

use crate::{
    both_backends,
    helpers::{Backend, SseReader, TestApp},
};

both_backends!(
    a_message_gets_the_agents_reply,
    a_conversation_continues_with_its_id,
    replies_stream_chunk_by_chunk_then_a_final_event,
    a_retried_request_is_stored_once,
    without_waiting_the_message_is_accepted_and_answered_later,
    conversations_survive_a_restart,
);

async fn a_message_gets_the_agents_reply(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let (status, body) = app.send("dev-1", json!({"content": "Hello there"})).await;
    assert_eq!(status, 200, "{body}");
    let greeting = "Hello! I'm the Switchboard assistant.";
    assert!(
        body["reply"]["content"]
            .as_str()
            .unwrap()
            .starts_with(greeting),
        "{body}"
    );
    assert_eq!(body["reply"]["role"], "ai");
    assert_eq!(body["reply"]["author"], "assistant");
    assert_eq!(body["message"]["content"], "Hello there");
    assert_eq!(body["message"]["role"], "user");
    assert_eq!(body["reply"]["reply_to"], body["message"]["id"]);
    assert_eq!(body["conversation_id"], body["message"]["conversation_id"]);

    // Both messages are stored, in order, and the conversation is titled after the first one.
    let id = body["conversation_id"].as_str().unwrap();
    let (_, page) = app
        .get("dev-1", &format!("/v1/conversations/{id}/messages"))
        .await;
    let contents: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents.len(), 2);
    assert_eq!(contents[0], "Hello there");
    assert!(contents[1].starts_with(greeting));
    let (_, conversation) = app.get("dev-1", &format!("/v1/conversations/{id}")).await;
    assert_eq!(conversation["title"], "Hello there");
    assert_eq!(conversation["mode"], "ai");
    assert_eq!(conversation["agent"], "assistant");
}

async fn a_conversation_continues_with_its_id(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, first) = app.send("dev-1", json!({"content": "one"})).await;
    let id = first["conversation_id"].as_str().unwrap();
    let (status, second) = app
        .send("dev-1", json!({"conversation_id": id, "content": "two"}))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["conversation_id"], id);
    assert_eq!(second["reply"]["content"], "two");
    assert_eq!(second["message"]["seq"], 3);
    assert_eq!(second["reply"]["seq"], 4);
    // A new request without an id starts another conversation.
    let (_, other) = app.send("dev-1", json!({"content": "three"})).await;
    assert_ne!(other["conversation_id"], id);
    assert_eq!(app.count("conversations").await, 2);
}

async fn replies_stream_chunk_by_chunk_then_a_final_event(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let response = app
        .stream("dev-1", json!({"content": "what are your opening hours?"}))
        .await;
    let events = SseReader::new(response)
        .collect(Duration::from_secs(10))
        .await;
    let (last, chunks) = events.split_last().expect("events");
    assert!(chunks.len() > 3, "the reply arrives in pieces: {events:#?}");
    let mut text = String::new();
    for chunk in chunks {
        let data = chunk.json();
        assert_eq!(data["is_final"], false);
        assert!(data["timestamp"].as_str().unwrap().ends_with('Z'));
        text.push_str(data["content"].as_str().unwrap());
    }
    assert_eq!(text, "We're open Monday to Friday, 9:00 to 18:00.");
    let last = last.json();
    assert_eq!(last["is_final"], true);
    assert_eq!(last["content"], "");
    assert_eq!(last["reply"]["content"], text);
    assert_eq!(last["reply_id"], last["reply"]["id"]);
    assert_eq!(last["mode"], "ai");
    let conversation = last["conversation_id"].as_str().unwrap();
    let (_, page) = app
        .get(
            "dev-1",
            &format!("/v1/conversations/{conversation}/messages"),
        )
        .await;
    assert_eq!(page["messages"][0]["id"], last["message_id"]);
    assert_eq!(page["messages"][1]["id"], last["reply_id"]);
}

async fn a_retried_request_is_stored_once(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let send = || {
        app.request(reqwest::Method::POST, "/v1/chat/messages", "dev-1")
            .header("Idempotency-Key", "msg-42")
            .json(&json!({"content": "only once"}))
            .send()
    };
    let first = crate::helpers::json_response(send().await.unwrap()).await;
    let again = crate::helpers::json_response(send().await.unwrap()).await;
    assert_eq!(first.0, 200);
    assert_eq!(again.0, 200, "a duplicate answers success");
    assert_eq!(first.1["message"]["id"], again.1["message"]["id"]);
    assert_eq!(first.1["reply"]["id"], again.1["reply"]["id"]);
    assert_eq!(app.count("messages").await, 2, "one message, one reply");
    assert_eq!(app.count("conversations").await, 1);

    // The key is scoped to the visitor: another visitor's identical key is a new message.
    let (status, other) = crate::helpers::json_response(
        app.request(reqwest::Method::POST, "/v1/chat/messages", "dev-2")
            .header("Idempotency-Key", "msg-42")
            .json(&json!({"content": "mine"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(other["reply"]["content"], "mine");
    assert_eq!(app.count("messages").await, 4);

    // Concurrent retries of the same request (a flaky network) still store one message.
    let retries: Vec<_> = (0..10)
        .map(|_| {
            app.request(reqwest::Method::POST, "/v1/chat/messages", "dev-3")
                .header("Idempotency-Key", "burst")
                .json(&json!({"content": "burst"}))
                .send()
        })
        .collect();
    for response in futures::future::join_all(retries).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(app.count("messages").await, 6);
}

async fn without_waiting_the_message_is_accepted_and_answered_later(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (status, body) = app.send_later("dev-1", json!({"content": "later"})).await;
    assert_eq!(status, 202);
    assert!(body["reply"].is_null());
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();
    let mut events = app.events("dev-1", &conversation, None).await;
    let (reply, _) = events
        .until(Duration::from_secs(5), |e| {
            e.name() == "message" && e.json()["role"] == "ai"
        })
        .await;
    assert_eq!(reply.json()["content"], "later");
}

async fn conversations_survive_a_restart(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, first) = app.send("dev-1", json!({"content": "remember me"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let (config, clock) = (app.config.clone(), app.clock.clone());
    let db = app.stop().await;

    let app = TestApp::start(config, clock).await;
    let (_, page) = app
        .get("dev-1", &format!("/v1/conversations/{id}/messages"))
        .await;
    let contents: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["remember me", "remember me"]);
    let (status, next) = app
        .send(
            "dev-1",
            json!({"conversation_id": id, "content": "still here"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(next["message"]["seq"], 3);
    drop(app);
    drop(db);
}
