//! The OpenAI-compatible agent, against a fake chat completions server: streaming, context,
//! and a polite fallback (never a hang) when the model fails.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::config::{AgentConfig, Config, OpenAiConfig};

use crate::{
    both_backends,
    helpers::{
        Backend, SseReader, TestApp,
        fake::{FakeModel, ModelBehaviour},
    },
};

both_backends!(
    the_model_reply_streams_through,
    the_model_sees_recent_history,
    model_failures_get_the_polite_fallback,
);

fn use_model(c: &mut Config, model: &FakeModel, timeout: Duration) {
    c.agents.insert(
        "gpt".into(),
        AgentConfig::Openai(OpenAiConfig {
            base_url: model.base_url(),
            model: "test-model".into(),
            api_key: Some("sk-test".into()),
            system_prompt: "You are a test.".into(),
            timeout,
            ..OpenAiConfig::default()
        }),
    );
    c.routing.default_agent = "gpt".into();
}

async fn the_model_reply_streams_through(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::Stream(
        vec!["Hel".into(), "lo from".into(), " the model".into()],
        Duration::from_millis(5),
    ))
    .await;
    let app =
        TestApp::spawn_with(&backend, |c| use_model(c, &model, Duration::from_secs(10))).await;
    let response = app.stream("dev-1", json!({"content": "hi model"})).await;
    let events = SseReader::new(response)
        .collect(Duration::from_secs(10))
        .await;
    let pieces: Vec<String> = events
        .iter()
        .filter(|e| e.json()["is_final"] == false)
        .map(|e| e.json()["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pieces, ["Hel", "lo from", " the model"]);
    let last = events.last().unwrap().json();
    assert_eq!(last["reply"]["content"], "Hello from the model");
    assert_eq!(last["reply"]["author"], "gpt");

    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "test-model");
    assert_eq!(requests[0]["stream"], true);
    assert_eq!(
        requests[0]["messages"],
        json!([
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": "hi model"}
        ])
    );
    assert_eq!(model.headers()[0]["authorization"], "Bearer sk-test");
}

async fn the_model_sees_recent_history(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::ZERO)).await;
    let app = TestApp::spawn_with(&backend, |c| {
        use_model(c, &model, Duration::from_secs(10));
        c.pipeline.context_messages = 3;
    })
    .await;
    let (_, first) = app.send("dev-1", json!({"content": "one"})).await;
    assert_eq!(first["reply"]["content"], "echo: one");
    let id = first["conversation_id"].as_str().unwrap();
    app.send("dev-1", json!({"conversation_id": id, "content": "two"}))
        .await;
    app.send("dev-1", json!({"conversation_id": id, "content": "three"}))
        .await;
    let last = model.requests().pop().unwrap();
    assert_eq!(
        last["messages"],
        json!([
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "echo: two"},
            {"role": "user", "content": "three"}
        ]),
        "the last three messages, oldest first"
    );
}

async fn model_failures_get_the_polite_fallback(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::Fail(500, "the model is on fire".into())).await;
    let app = TestApp::spawn_with(&backend, |c| {
        use_model(c, &model, Duration::from_secs(10));
        c.pipeline.agent_timeout = Duration::from_millis(500);
    })
    .await;
    let fallback = app.config.pipeline.fallback_message.clone();

    let (_, supervisor) = app.staff_token("sue@example.com", "supervisor").await;

    let (status, body) = app.send("dev-1", json!({"content": "hello"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["reply"]["content"], fallback.as_str());
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    assert!(
        agent_error(&app, &supervisor, &id, &body)
            .await
            .contains("500"),
        "the cause is kept with the message, for staff"
    );

    // A model that never answers: the fallback comes when the agent timeout runs out.
    model.set(ModelBehaviour::Hang);
    let (_, body) = app
        .send(
            "dev-1",
            json!({"conversation_id": id, "content": "still there?"}),
        )
        .await;
    assert_eq!(body["reply"]["content"], fallback.as_str());
    assert!(
        agent_error(&app, &supervisor, &id, &body)
            .await
            .contains("within")
    );

    // A model that stops halfway: the user gets the fallback, not half a sentence.
    model.set(ModelBehaviour::StallAfter(vec!["Half a".into()]));
    let (_, body) = app
        .send(
            "dev-1",
            json!({"conversation_id": id, "content": "and now?"}),
        )
        .await;
    assert_eq!(body["reply"]["content"], fallback.as_str());

    // The conversation keeps working once the model recovers.
    model.set(ModelBehaviour::Stream(vec!["Back".into()], Duration::ZERO));
    let (_, body) = app
        .send("dev-1", json!({"conversation_id": id, "content": "ok?"}))
        .await;
    assert_eq!(body["reply"]["content"], "Back");
}

/// Nothing listens on the configured address: the user still gets an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_model_gets_the_fallback() {
    // Port 1 (tcpmux) has no listener on a test machine; a port freed by this test could be
    // taken by another test's server before the model is called.
    let closed = "127.0.0.1:1";
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.agents.insert(
            "gpt".into(),
            AgentConfig::Openai(OpenAiConfig {
                base_url: format!("http://{closed}/v1"),
                ..OpenAiConfig::default()
            }),
        );
        c.routing.default_agent = "gpt".into();
    })
    .await;
    let (_, supervisor) = app.staff_token("sue@example.com", "supervisor").await;
    let (_, body) = app.send("dev-1", json!({"content": "hello"})).await;
    assert_eq!(
        body["reply"]["content"],
        app.config.pipeline.fallback_message.as_str()
    );
    let id = body["conversation_id"].as_str().unwrap();
    assert!(
        agent_error(&app, &supervisor, id, &body)
            .await
            .contains("reached")
    );
}

/// Why the agent failed on the fallback `sent` got (the reply of `POST /v1/chat/messages`), as
/// staff read it; the visitor sees the fallback without the cause, in the answer and in the
/// conversation's messages (a model API's error can name the deployment's models, addresses
/// or account).
async fn agent_error(app: &TestApp, staff: &str, conversation: &str, sent: &Value) -> String {
    let reply = &sent["reply"];
    assert!(reply["metadata"]["agent_error"].is_null(), "{sent}");
    let (status, page) = app
        .get(
            "dev-1",
            &format!("/v1/conversations/{conversation}/messages?limit=100"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let seen = page["messages"].as_array().unwrap();
    assert!(
        seen.iter().all(|m| m["metadata"]["agent_error"].is_null()),
        "{page}"
    );
    let (status, opened) = app
        .staff_call(
            Method::GET,
            &format!("/v1/expert/conversations/{conversation}"),
            staff,
            None,
        )
        .await;
    assert_eq!(status, 200, "{opened}");
    let stored = opened["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == reply["id"])
        .unwrap_or_else(|| panic!("the reply in the transcript: {opened}"));
    stored["metadata"]["agent_error"]
        .as_str()
        .unwrap_or_else(|| panic!("the cause with the reply: {stored}"))
        .to_owned()
}
