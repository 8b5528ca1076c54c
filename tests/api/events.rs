//! `GET /v1/conversations/{id}/events`: live events, replay after a reconnect, heartbeats.

use std::time::Duration;

use serde_json::json;
use switchboard::config::AgentConfig;

use crate::{
    both_backends,
    helpers::{Backend, SseReader, TestApp},
};

both_backends!(
    everything_in_a_conversation_arrives_live_with_ids,
    reconnecting_replays_only_what_was_missed,
    reconnecting_mid_reply_replays_the_missing_deltas,
    under_concurrent_writers_every_message_arrives_once_in_order,
);

const WAIT: Duration = Duration::from_secs(10);

async fn everything_in_a_conversation_arrives_live_with_ids(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let (_, first) = app.send("dev-1", json!({"content": "hello"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let mut events = app.events("dev-1", &id, Some("2")).await;

    let (_, reply) = app
        .send(
            "dev-1",
            json!({"conversation_id": id, "content": "opening hours?"}),
        )
        .await;
    let user = events.expect(WAIT).await;
    assert_eq!((user.name(), user.id.as_deref()), ("message", Some("3")));
    assert_eq!(user.json()["content"], "opening hours?");
    let typing = events.expect(WAIT).await;
    assert_eq!((typing.name(), typing.id.as_deref()), ("typing", Some("3")));
    assert_eq!(typing.json()["reply_to"], user.json()["id"]);
    let (answer, deltas) = events.until(WAIT, |e| e.name() == "message").await;
    assert!(!deltas.is_empty());
    let mut text = String::new();
    for (i, delta) in deltas.iter().enumerate() {
        assert_eq!(delta.name(), "delta");
        assert_eq!(delta.id.as_deref(), Some(format!("3.{}", i + 1).as_str()));
        text.push_str(delta.json()["content"].as_str().unwrap());
    }
    assert_eq!(answer.id.as_deref(), Some("4"));
    assert_eq!(answer.json()["content"], text);
    assert_eq!(answer.json()["id"], reply["reply"]["id"]);

    // A mode change shows up as the system notice.
    assert_eq!(app.handoff("dev-1", &id).await.0, 200);
    let notice = events.expect(WAIT).await;
    assert_eq!(
        (notice.name(), notice.id.as_deref()),
        ("message", Some("5"))
    );
    assert_eq!(notice.json()["role"], "system");
    assert_eq!(notice.json()["metadata"]["mode"], "expert");

    // EventSource clients cannot send headers: the device id may come in the query string.
    let response = app
        .client
        .get(app.url(&format!(
            "/v1/conversations/{id}/events?device_id=dev-1&last_event_id=4"
        )))
        .send()
        .await
        .unwrap();
    let mut by_query = SseReader::new(response);
    assert_eq!(by_query.expect(WAIT).await.id.as_deref(), Some("5"));
    let response = app
        .client
        .get(app.url(&format!("/v1/conversations/{id}/events?device_id=dev-2")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

async fn reconnecting_replays_only_what_was_missed(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, first) = app.send("dev-1", json!({"content": "one"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    for text in ["two", "three"] {
        app.send("dev-1", json!({"conversation_id": id, "content": text}))
            .await;
    }
    // The client saw up to the reply to "two" (seq 4) before losing the connection.
    let mut events = app.events("dev-1", &id, Some("4")).await;
    let replayed: Vec<(String, String)> =
        vec![events.expect(WAIT).await, events.expect(WAIT).await]
            .into_iter()
            .map(|e| {
                (
                    e.id.clone().unwrap(),
                    e.json()["content"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    assert_eq!(
        replayed,
        [
            ("5".to_owned(), "three".to_owned()),
            ("6".to_owned(), "three".to_owned())
        ]
    );
    // Then it follows the live conversation, without repeating anything.
    app.send("dev-1", json!({"conversation_id": id, "content": "four"}))
        .await;
    let next = events.expect(WAIT).await;
    assert_eq!(
        (next.id.as_deref(), next.json()["content"].as_str()),
        (Some("7"), Some("four"))
    );

    // Without Last-Event-ID the whole history is replayed.
    let mut fresh = app.events("dev-1", &id, None).await;
    assert_eq!(fresh.expect(WAIT).await.id.as_deref(), Some("1"));
}

async fn reconnecting_mid_reply_replays_the_missing_deltas(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| {
        if let Some(AgentConfig::Scripted(s)) = c.agents.get_mut("assistant") {
            s.word_delay = Duration::from_millis(60);
        }
    })
    .await;
    let (_, first) = app.send("dev-1", json!({"content": "hi"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let mut events = app.events("dev-1", &id, Some("2")).await;
    let (status, _) = app
        .send_later(
            "dev-1",
            json!({"conversation_id": id, "content": "what about delivery and shipping?"}),
        )
        .await;
    assert_eq!(status, 202);
    // Read two deltas, then drop the connection.
    let (second, before) = events.until(WAIT, |e| e.id.as_deref() == Some("3.2")).await;
    let first_delta = before
        .iter()
        .find(|e| e.id.as_deref() == Some("3.1"))
        .expect("delta 3.1");
    let mut text = format!(
        "{}{}",
        first_delta.json()["content"].as_str().unwrap(),
        second.json()["content"].as_str().unwrap()
    );
    drop(events);

    let mut resumed = app.events("dev-1", &id, Some("3.2")).await;
    let (answer, deltas) = resumed.until(WAIT, |e| e.name() == "message").await;
    for (expected_index, delta) in (3..).zip(&deltas) {
        assert_eq!(delta.name(), "delta");
        assert_eq!(
            delta.id.as_deref(),
            Some(format!("3.{expected_index}").as_str()),
            "no gap, no repeat"
        );
        text.push_str(delta.json()["content"].as_str().unwrap());
    }
    assert!(!deltas.is_empty(), "the reply was still being written");
    assert_eq!(
        answer.json()["content"],
        text,
        "the pieces add up to the stored reply"
    );
    assert_eq!(answer.id.as_deref(), Some("4"));
}

/// Heartbeats (comment lines) keep idle streams open through proxies; the interval is
/// `web.heartbeat` (15 s by default, shortened here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_get_heartbeats() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.web.heartbeat = Duration::from_millis(200)
    })
    .await;
    let (_, first) = app.send("dev-1", json!({"content": "hi"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let mut events = app.events("dev-1", &id, Some("2")).await;
    for _ in 0..2 {
        let beat = tokio::time::timeout(WAIT, events.next_any())
            .await
            .expect("a heartbeat")
            .expect("the stream stays open");
        assert!(beat.comment, "only heartbeats on an idle stream: {beat:?}");
    }
}

async fn under_concurrent_writers_every_message_arrives_once_in_order(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, first) = app.send("dev-1", json!({"content": "start"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let mut events = app.events("dev-1", &id, Some("2")).await;
    let burst = (0..25).map(|i| {
        app.send_later(
            "dev-1",
            json!({"conversation_id": id, "content": format!("m{i}")}),
        )
    });
    for (status, _) in futures::future::join_all(burst).await {
        assert_eq!(status, 202);
    }
    let mut seqs = Vec::new();
    while seqs.len() < 50 {
        let event = events.expect(WAIT).await;
        if event.name() == "message" {
            let seq = event.json()["seq"].as_i64().unwrap();
            assert_eq!(event.id.as_deref(), Some(seq.to_string().as_str()));
            seqs.push(seq);
        }
    }
    let expected: Vec<i64> = (3..53).collect();
    assert_eq!(seqs, expected, "each message once, in order");
}
