//! Live events across gateway instances on one PostgreSQL database: what one instance does reaches
//! the event streams open on another — a visitor's stream hears messages and replies handled
//! elsewhere, and an expert's reply sent through one instance reaches the visitor and the
//! dashboards connected to another.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, SseEvent, SseReader, TestApp, TestDb, json_response,
    process::{Gateway, config_file},
};

/// A configuration file in `dir` for an instance named `name` on `url`, answering with `echo`.
fn config(dir: &Path, name: &str, url: &str) -> PathBuf {
    config_file(
        dir,
        &format!("{name}.toml"),
        url,
        &format!("[instance]\nname = \"{name}\"\n[routing]\ndefault_agent = \"echo\"\n"),
    )
}

/// Sends `content` as visitor `device` and waits for its reply; the response body.
async fn chat(gateway: &Gateway, device: &str, body: Value) -> Value {
    let (status, body) = json_response(
        reqwest::Client::new()
            .post(gateway.url("/v1/chat/messages"))
            .header("X-Device-ID", device)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The next stored message on a stream, skipping typing notices, deltas and updates.
async fn next_message(stream: &mut SseReader) -> SseEvent {
    stream
        .until(Duration::from_secs(10), |e| e.name() == "message")
        .await
        .0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A visitor's stream is open on instance `a` while every message of the conversation goes
/// through instance `b`: the stream shows each message and its reply, in order, as they happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_instance_hears_what_another_handles() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let db = TestDb::create(&backend).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Gateway::start(&config(dir.path(), "a", &db.url));
    let b = Gateway::start(&config(dir.path(), "b", &db.url));

    let first = chat(&a, "dev-1", json!({"content": "hello"})).await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let mut stream = SseReader::new(
        reqwest::Client::new()
            .get(a.url(&format!("/v1/conversations/{conversation}/events")))
            .header("X-Device-ID", "dev-1")
            // From after the first exchange (messages 1 and 2): nothing to replay.
            .header("Last-Event-ID", "2")
            .send()
            .await
            .unwrap(),
    );

    let mut latencies = Vec::new();
    for i in 0..20 {
        let content = format!("message {i} through b");
        let reply = chat(
            &b,
            "dev-1",
            json!({"conversation_id": conversation, "content": content}),
        )
        .await;
        // The reply is stored when `b` answers: from there to `a`'s stream is the crossing.
        let answered = Instant::now();
        let user = next_message(&mut stream).await.json();
        let ai = next_message(&mut stream).await.json();
        latencies.push(answered.elapsed());
        assert_eq!(user["role"], "user");
        assert_eq!(user["content"], content.as_str());
        assert_eq!(user["seq"], 3 + 2 * i);
        assert_eq!(ai["role"], "ai");
        assert_eq!(
            ai["id"], reply["reply"]["id"],
            "the reply b stored: {reply}"
        );
        assert_eq!(ai["seq"], 4 + 2 * i);
    }
    latencies.sort();
    println!(
        "a reply stored on one instance reached a stream on the other: p50 {:?}, p99 {:?}, max {:?} (20 replies)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
}

/// An expert answers through one instance while the visitor's stream and the expert's dashboard
/// stream are open on another: both hear it, and the dashboard hears the conversation being taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experts_reply_through_one_instance_reaches_streams_on_another() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let one = TestApp::spawn(&backend).await;
    let two = TestApp::start(one.config.clone(), one.clock.clone()).await;
    let (status, body) = one.send("visitor-1", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    let (_, ana) = one.staff_token("ana@example.com", "expert").await;

    // The visitor and Ana's dashboard listen on the first instance.
    let mut visitor = one.events("visitor-1", &id, Some("2")).await;
    let mut notices = SseReader::new(
        one.as_staff(Method::GET, "/v1/expert/events", &ana)
            .send()
            .await
            .unwrap(),
    );
    notices
        .until(Duration::from_secs(5), |e| e.name() == "hello")
        .await;

    // The visitor asks for a person and Ana takes the conversation, both through the second.
    let (status, body) = two.handoff("visitor-1", &id).await;
    assert_eq!(status, 200, "{body}");
    let (queued, _) = notices
        .until(Duration::from_secs(10), |e| {
            e.name() == "notice" && e.json()["kind"] == "queued"
        })
        .await;
    assert_eq!(queued.json()["conversation_id"], id.as_str());
    let (status, body) = two
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/claim"),
            &ana,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (assigned, _) = notices
        .until(Duration::from_secs(10), |e| {
            e.name() == "notice" && e.json()["kind"] == "assigned"
        })
        .await;
    assert_eq!(assigned.json()["conversation_id"], id.as_str());

    let (status, body) = two
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/messages"),
            &ana,
            Some(json!({"content": "Hi, I'm Ana."})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (said, before) = visitor
        .until(Duration::from_secs(10), |e| {
            e.name() == "message" && e.json()["role"] == "expert"
        })
        .await;
    assert_eq!(said.json()["content"], "Hi, I'm Ana.");
    assert_eq!(said.json()["id"], body["message"]["id"]);
    // Everything stored meanwhile came too, in order: the hand-off's and the joining notices.
    let seqs: Vec<i64> = before
        .iter()
        .filter(|e| e.name() == "message")
        .map(|e| e.json()["seq"].as_i64().unwrap())
        .chain([said.json()["seq"].as_i64().unwrap()])
        .collect();
    let expected: Vec<i64> = (3..3 + seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "no gap, no repeat: {before:#?}");
    drop(two);
}
