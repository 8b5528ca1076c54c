//! Per-conversation lanes: one message of a conversation at a time, in order; different
//! conversations in parallel, up to the configured concurrency.

use std::time::Duration;

use serde_json::json;
use switchboard::config::{AgentConfig, OpenAiConfig};

use crate::{
    both_backends,
    helpers::{
        Backend, TestApp,
        fake::{FakeModel, ModelBehaviour},
    },
};

both_backends!(messages_of_a_conversation_are_answered_one_at_a_time_in_order);

fn slow_model(c: &mut switchboard::config::Config, model: &FakeModel) {
    c.agents.insert(
        "slow".into(),
        AgentConfig::Openai(OpenAiConfig {
            base_url: model.base_url(),
            timeout: Duration::from_secs(30),
            ..OpenAiConfig::default()
        }),
    );
    c.routing.default_agent = "slow".into();
}

async fn messages_of_a_conversation_are_answered_one_at_a_time_in_order(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::from_millis(30))).await;
    let app = TestApp::spawn_with(&backend, |c| slow_model(c, &model)).await;
    let (_, first) = app.send("dev-1", json!({"content": "m0"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    // Each message is acknowledged before the next is sent, faster than the model answers.
    for i in 1..8 {
        let (status, _) = app
            .send_later(
                "dev-1",
                json!({"conversation_id": id, "content": format!("m{i}")}),
            )
            .await;
        assert_eq!(status, 202);
    }
    app.all_answered().await;
    assert_eq!(
        model.peak_concurrency(),
        1,
        "one message of a conversation at a time"
    );

    // Each request saw the answers to every earlier message.
    for (i, request) in model.requests().iter().enumerate().skip(1) {
        let history = request["messages"].as_array().unwrap();
        let previous_answer = format!("echo: m{}", i - 1);
        assert!(
            history
                .iter()
                .any(|m| m["role"] == "assistant" && m["content"] == previous_answer.as_str()),
            "request {i} lacks the answer to m{}: {history:?}",
            i - 1
        );
        assert_eq!(history.last().unwrap()["content"], format!("m{i}"));
    }
    let (_, page) = app
        .get(
            "dev-1",
            &format!("/v1/conversations/{id}/messages?limit=100"),
        )
        .await;
    let answers: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "ai")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..8).map(|i| format!("echo: m{i}")).collect();
    assert_eq!(answers, expected);
}

/// Different conversations are answered at the same time, but never more than
/// `pipeline.max_concurrency` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_answered_in_parallel_up_to_the_limit() {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::from_millis(300))).await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        slow_model(c, &model);
        c.pipeline.max_concurrency = 3;
    })
    .await;
    let devices: Vec<String> = (0..8).map(|i| format!("dev-{i}")).collect();
    let sends = devices
        .iter()
        .map(|device| app.send_later(device, json!({"content": format!("hi from {device}")})));
    for (status, _) in futures::future::join_all(sends).await {
        assert_eq!(status, 202);
    }
    app.all_answered().await;
    assert_eq!(model.requests().len(), 8);
    assert_eq!(model.peak_concurrency(), 3);
}
