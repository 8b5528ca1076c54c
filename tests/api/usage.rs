//! Usage per AI reply: the tokens the model reported (or an estimate, marked as such), the cost by
//! the agent's prices, the response time and — when the agent keeps them — the provider's raw
//! events, in the reply's metadata for staff (never for visitors) and totalled by
//! `GET /v1/admin/usage`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::{
    config::{AgentConfig, Config, OpenAiConfig},
    store::{Db, query},
};

use crate::{
    both_backends,
    helpers::{
        Backend, TestApp,
        fake::{FakeModel, ModelBehaviour},
    },
};

both_backends!(
    a_reply_stores_the_usage_the_model_reported_and_its_cost,
    usage_a_model_does_not_report_is_estimated_and_marked,
    usage_totals_check_their_questions,
);

fn use_model(c: &mut Config, model: &FakeModel, keep_raw_events: bool) {
    c.agents.insert(
        "gpt".into(),
        AgentConfig::Openai(OpenAiConfig {
            base_url: model.base_url(),
            model: "test-model".into(),
            api_key: Some("sk-test".into()),
            system_prompt: "You are a test.".into(),
            timeout: Duration::from_secs(10),
            price_per_1k_input: 0.5,
            price_per_1k_output: 2.0,
            keep_raw_events,
            ..OpenAiConfig::default()
        }),
    );
    c.routing.default_agent = "gpt".into();
    c.quotas.currency = "EUR".into();
}

/// The messages of a conversation as staff export them.
async fn exported(app: &TestApp, admin: &str, conversation: &str) -> Vec<Value> {
    let (status, body) = app
        .staff_call(
            Method::GET,
            &format!("/v1/expert/conversations/{conversation}/export"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["messages"].as_array().unwrap().clone()
}

async fn usage_rows(app: &TestApp) -> Vec<(String, String, i64, i64, i64, i64)> {
    app.store
        .reader()
        .fetch_all(query(
            "SELECT agent, model, tokens_in, tokens_out, estimated, cost_micros FROM usage \
             ORDER BY created_at",
        ))
        .await
        .unwrap()
}

async fn a_reply_stores_the_usage_the_model_reported_and_its_cost(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::StreamWithUsage(
        vec!["Hello".into(), " there".into()],
        1200,
        300,
    ))
    .await;
    let app = TestApp::spawn_with(&backend, |c| use_model(c, &model, true)).await;
    let (_, admin) = app.staff_token("ada@example.com", "admin").await;

    let (status, body) = app.send("dev-1", json!({"content": "hi model"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply"]["content"], "Hello there");
    assert_eq!(
        model.requests()[0]["stream_options"],
        json!({"include_usage": true}),
        "the model is asked for its usage"
    );
    // The visitor sees the reply, not what it used.
    for key in ["usage", "raw_events"] {
        assert!(body["reply"]["metadata"].get(key).is_none(), "{body}");
    }
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();
    let (_, listed) = app
        .get(
            "dev-1",
            &format!("/v1/conversations/{conversation}/messages"),
        )
        .await;
    assert!(
        !listed.to_string().contains("tokens_in"),
        "not in the visitor's history either: {listed}"
    );

    // Staff see it: the tokens the model reported, the cost by the agent's prices
    // (1.2 × 0.5 + 0.3 × 2.0 = 1.2 EUR), the response time and the raw events.
    let messages = exported(&app, &admin, &conversation).await;
    let reply = messages.iter().find(|m| m["role"] == "ai").unwrap();
    let usage = &reply["metadata"]["usage"];
    assert_eq!(usage["agent"], "gpt", "{usage}");
    assert_eq!(usage["model"], "fake", "the model as the server named it");
    assert_eq!(usage["tokens_in"], 1200);
    assert_eq!(usage["tokens_out"], 300);
    assert_eq!(usage["estimated"], false);
    assert_eq!(usage["cost"], 1.2);
    assert_eq!(usage["currency"], "EUR");
    assert!(usage["response_time_ms"].is_u64(), "{usage}");
    let raw = reply["metadata"]["raw_events"].as_array().unwrap();
    assert_eq!(raw.len(), 3, "two deltas and the usage chunk: {raw:?}");
    assert_eq!(raw[2]["usage"]["prompt_tokens"], 1200);

    assert_eq!(
        usage_rows(&app).await,
        [("gpt".into(), "fake".into(), 1200, 300, 0, 1_200_000)]
    );

    // A second reply, to another visitor, on the same day.
    app.send("dev-2", json!({"content": "hello again"})).await;
    let today = app.clock.now().to_datetime().date_naive().to_string();
    let (status, by_day) = app
        .staff_call(Method::GET, "/v1/admin/usage", &admin, None)
        .await;
    assert_eq!(status, 200, "{by_day}");
    assert_eq!(by_day["group_by"], "day");
    assert_eq!(by_day["currency"], "EUR");
    assert_eq!(by_day["groups"].as_array().unwrap().len(), 1, "{by_day}");
    let day = &by_day["groups"][0];
    assert_eq!(day["day"], today.as_str());
    assert_eq!(day["replies"], 2);
    assert_eq!(day["tokens_in"], 2400);
    assert_eq!(day["tokens_out"], 600);
    assert_eq!(day["cost"], 2.4);
    assert_eq!(day["estimated_replies"], 0);
    assert!(day["mean_response_time_ms"].is_i64(), "{day}");
    assert_eq!(by_day["total"]["replies"], 2);

    let (_, by_agent) = app
        .staff_call(Method::GET, "/v1/admin/usage?group_by=agent", &admin, None)
        .await;
    assert_eq!(by_agent["groups"][0]["agent"], "gpt", "{by_agent}");
    assert_eq!(by_agent["groups"][0]["cost"], 2.4);

    let (_, by_contact) = app
        .staff_call(
            Method::GET,
            &format!("/v1/admin/usage?group_by=contact&from={today}&to={today}"),
            &admin,
            None,
        )
        .await;
    let groups = by_contact["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "one per visitor: {by_contact}");
    assert!(groups.iter().all(|g| g["replies"] == 1 && g["cost"] == 1.2));
    let (contact,): (String,) = app
        .store
        .reader()
        .fetch_one(query(
            "SELECT id FROM contacts WHERE external_id = 'device:dev-1'",
        ))
        .await
        .unwrap();
    assert!(groups.iter().any(|g| g["contact_id"] == contact.as_str()));

    // A day without replies has none.
    let (_, empty) = app
        .staff_call(
            Method::GET,
            "/v1/admin/usage?from=2020-01-01&to=2020-01-31",
            &admin,
            None,
        )
        .await;
    assert_eq!(empty["groups"], json!([]));
    assert_eq!(empty["total"]["replies"], 0);
}

async fn usage_a_model_does_not_report_is_estimated_and_marked(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::Stream(
        vec!["A reply of thirty characters.".into()],
        Duration::ZERO,
    ))
    .await;
    let app = TestApp::spawn_with(&backend, |c| use_model(c, &model, false)).await;
    let (_, admin) = app.staff_token("ada@example.com", "admin").await;
    let (_, body) = app.send("dev-1", json!({"content": "hi model"})).await;
    let conversation = body["conversation_id"].as_str().unwrap();
    let messages = exported(&app, &admin, conversation).await;
    let reply = messages.iter().find(|m| m["role"] == "ai").unwrap();
    let usage = &reply["metadata"]["usage"];
    assert_eq!(usage["estimated"], true, "{usage}");
    // "A reply of thirty characters." is 29 characters: 8 tokens of about four.
    assert_eq!(usage["tokens_out"], 8);
    // The system prompt and "hi model": 15 + 1 + 8 characters.
    assert_eq!(usage["tokens_in"], 6);
    assert!(
        reply["metadata"].get("raw_events").is_none(),
        "raw events are kept only when the agent keeps them"
    );

    let rows = usage_rows(&app).await;
    assert_eq!(
        rows,
        [("gpt".into(), "fake".into(), 6, 8, 1, 19_000)],
        "estimated, under the model the server named, priced: 6 × 0.5 + 8 × 2 thousandths"
    );
    let (_, totals) = app
        .staff_call(Method::GET, "/v1/admin/usage", &admin, None)
        .await;
    assert_eq!(totals["total"]["estimated_replies"], 1, "{totals}");
}

async fn usage_totals_check_their_questions(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, admin) = app.staff_token("ada@example.com", "admin").await;
    let (_, expert) = app.staff_token("ana@example.com", "expert").await;
    app.send("dev-1", json!({"content": "hello"})).await;

    for (query, why) in [
        ("from=yesterday", "not a date"),
        ("from=2026-02-30", "no such day"),
        ("from=2026-12-05&to=2026-12-01", "from after to"),
        ("from=2020-01-01&to=2026-01-01", "more than 366 days"),
        ("group_by=week", "no such grouping"),
        ("limit=5", "no such parameter"),
    ] {
        let (status, body) = app
            .staff_call(
                Method::GET,
                &format!("/v1/admin/usage?{query}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(status, 422, "{why}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{why}: {body}");
    }
    let (status, body) = app
        .staff_call(Method::GET, "/v1/admin/usage", &expert, None)
        .await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    let response = app
        .request(Method::GET, "/v1/admin/usage", "dev-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403, "visitors are not staff");

    // The echo agent's reply: free, estimated, under its kind.
    let (status, totals) = app
        .staff_call(Method::GET, "/v1/admin/usage?group_by=agent", &admin, None)
        .await;
    assert_eq!(status, 200, "{totals}");
    assert_eq!(totals["groups"][0]["agent"], "echo");
    assert_eq!(totals["groups"][0]["estimated_replies"], 1);
    assert_eq!(totals["groups"][0]["cost"], 0.0);
    assert_eq!(totals["groups"][0]["tokens_out"], 2, "\"hello\": 2 tokens");

    // Reading the totals is audited.
    let (_, audit) = app
        .staff_call(Method::GET, "/v1/admin/audit", &admin, None)
        .await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "read_usage"),
        "{audit}"
    );
}
