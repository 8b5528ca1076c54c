//! Supervisors' views: an observed conversation's replayed history is marked (`history-start`,
//! `history-end`) for every observer at once, also when the history is longer than one page;
//! contact search counts each contact's conversations; and the lists' paging edges (an empty list,
//! a page past the end, limits out of range).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    both_backends,
    helpers::{Backend, SseEvent, SseReader, TestApp},
};

both_backends!(
    every_observer_sees_the_history_marked_then_live_messages,
    contact_search_counts_conversations_and_pages_have_edges,
);

/// Events of an observer's stream up to and including `history-end`.
async fn history(events: &mut SseReader) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    loop {
        let event = events.expect(Duration::from_secs(10)).await;
        let end = event.name() == "history-end";
        seen.push(event);
        if end {
            return seen;
        }
    }
}

async fn observe(app: &TestApp, token: &str, id: &str) -> SseReader {
    let response = app
        .as_staff(
            Method::GET,
            &format!("/v1/supervisor/conversations/{id}/observe"),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    SseReader::new(response)
}

async fn every_observer_sees_the_history_marked_then_live_messages(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (status, body) = app.send("v-watched", json!({"content": "first"})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    app.send(
        "v-watched",
        json!({"conversation_id": id, "content": "second"}),
    )
    .await;
    let (_, sue) = app.staff_token("sue@example.com", "supervisor").await;
    let (_, sam) = app.staff_token("sam@example.com", "supervisor").await;

    let mut watchers = vec![
        observe(&app, &sue, &id).await,
        observe(&app, &sam, &id).await,
    ];
    for events in &mut watchers {
        let seen = history(events).await;
        let names: Vec<&str> = seen.iter().map(SseEvent::name).collect();
        assert_eq!(
            names,
            [
                "observer",
                "history-start",
                "message",
                "message",
                "message",
                "message",
                "history-end"
            ]
        );
        assert_eq!(seen[1].json()["after_seq"], 0);
        assert_eq!(seen[6].json()["last_seq"], 4);
        // Markers never move a client's position.
        assert!(seen[1].id.is_none() && seen[6].id.is_none());
    }
    app.send(
        "v-watched",
        json!({"conversation_id": id, "content": "third"}),
    )
    .await;
    for events in &mut watchers {
        let live = events
            .until(Duration::from_secs(10), |e| {
                e.name() == "message" && e.json()["content"] == "third"
            })
            .await
            .0;
        assert_eq!(live.json()["seq"], 5);
    }

    // A history longer than a page is read a page at a time; the end marker follows all of it.
    let (status, body) = app.send("v-long", json!({"content": "m0"})).await;
    assert_eq!(status, 200, "{body}");
    let long = body["conversation_id"].as_str().unwrap().to_owned();
    for n in 1..120 {
        app.send_later(
            "v-long",
            json!({"conversation_id": long, "content": format!("m{n}")}),
        )
        .await;
    }
    app.all_answered().await;
    let mut events = observe(&app, &sue, &long).await;
    let seen = history(&mut events).await;
    let messages = seen.iter().filter(|e| e.name() == "message").count();
    assert_eq!(messages, 240, "every stored message before the end marker");
    assert_eq!(seen.last().unwrap().json()["last_seq"], 240);
    app.stop().await;
}

async fn contact_search_counts_conversations_and_pages_have_edges(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, sue) = app.staff_token("sue@example.com", "supervisor").await;
    let get = |path: String| {
        let sue = sue.clone();
        let app = &app;
        async move { app.staff_call(Method::GET, &path, &sue, None).await }
    };

    // Nothing yet: empty lists, not errors.
    let (status, empty) = get("/v1/supervisor/contacts?q=".into()).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(
        (
            empty["total"].as_i64(),
            empty["contacts"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let (status, empty) = get("/v1/supervisor/conversations".into()).await;
    assert_eq!(status, 200);
    assert_eq!(empty["conversations"], json!([]));

    // Three conversations of one visitor, one of another.
    for _ in 0..3 {
        let (status, body) = app.send("v-many", json!({"content": "new topic"})).await;
        assert_eq!(status, 200, "{body}");
    }
    app.send("v-once", json!({"content": "hi"})).await;
    let (status, found) = get("/v1/supervisor/contacts?q=v-&limit=10".into()).await;
    assert_eq!(status, 200, "{found}");
    let counts: Vec<(String, i64)> = found["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c: &Value| {
            (
                c["external_id"].as_str().unwrap().to_owned(),
                c["conversation_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(counts.contains(&("device:v-many".into(), 3)), "{counts:?}");
    assert!(counts.contains(&("device:v-once".into(), 1)), "{counts:?}");

    // Paging: a page past the end is empty with the true total; out-of-range values are refused.
    let (status, past) = get("/v1/supervisor/contacts?q=v-&page=3&limit=1".into()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            past["total"].as_i64(),
            past["contacts"].as_array().map(Vec::len)
        ),
        (Some(2), Some(0))
    );
    let (status, second) = get("/v1/supervisor/conversations?page=2&limit=3".into()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            second["total"].as_i64(),
            second["conversations"].as_array().map(Vec::len)
        ),
        (Some(4), Some(1))
    );
    // Out of range, or not a number: 422 `invalid_query`.
    for (bad, expected) in [
        ("limit=0", 422),
        ("limit=101", 422),
        ("page=0", 422),
        ("page=-1", 422),
        ("limit=abc", 422),
    ] {
        let (status, body) = get(format!("/v1/supervisor/conversations?{bad}")).await;
        assert_eq!(status, expected, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    app.stop().await;
}
