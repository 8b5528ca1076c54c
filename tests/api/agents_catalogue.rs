//! The agents catalogue: what visitors see of the selectable agents (and nothing of the others),
//! their availability as the agents' own calls show it, the recommendation for a task, and a
//! visitor choosing the agent for one message — refused for any agent not in the catalogue,
//! honoured when the message's turn resumes after a restart.

use std::time::Duration;

use serde_json::{Map, Value, json};
use switchboard::{
    config::{AgentConfig, AgentListing, Config, EchoConfig, OpenAiConfig},
    pipeline::Outcome,
    store::{Db, query},
};
use switchboard_channel::{ContactRef, Content, ConversationRef, InboundEvent, InboundMessage};

use crate::{
    both_backends,
    helpers::{
        Backend, TestApp,
        fake::{FakeModel, ModelBehaviour},
    },
};

both_backends!(a_visitor_chooses_the_agent_of_one_message);

/// Two selectable agents — a cheap, quick echo and a model for code and quality — beside a
/// private echo agent and the built-in scripted assistant, which routing picks by default.
fn catalogue(c: &mut Config, model: &FakeModel) {
    c.agents.insert(
        "fast".into(),
        AgentConfig::Echo(EchoConfig {
            prefix: "fast: ".into(),
            price_per_1k_input: 0.0001,
            price_per_1k_output: 0.0002,
            listing: AgentListing {
                selectable: true,
                name: "Fast".into(),
                description: "Quick, short answers.".into(),
                tags: vec!["general".into(), "speed".into(), "cost".into()],
                context_tokens: Some(4000),
            },
            ..EchoConfig::default()
        }),
    );
    c.agents.insert(
        "gpt".into(),
        AgentConfig::Openai(OpenAiConfig {
            base_url: model.base_url(),
            model: "test-model".into(),
            api_key: Some("sk-test".into()),
            timeout: Duration::from_secs(5),
            price_per_1k_input: 0.5,
            price_per_1k_output: 1.5,
            listing: AgentListing {
                selectable: true,
                name: "GPT".into(),
                description: "Careful answers, code included.".into(),
                tags: vec!["general".into(), "code".into(), "quality".into()],
                context_tokens: Some(128_000),
            },
            ..OpenAiConfig::default()
        }),
    );
    c.agents.insert(
        "private".into(),
        AgentConfig::Echo(EchoConfig {
            prefix: "private: ".into(),
            ..EchoConfig::default()
        }),
    );
    c.quotas.currency = "EUR".into();
}

async fn agents(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("dev-1", "/v1/agents").await;
    assert_eq!(status, 200, "{body}");
    body["agents"].as_array().unwrap().clone()
}

async fn agent(app: &TestApp, id: &str) -> Value {
    agents(app)
        .await
        .into_iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("{id} is in the catalogue"))
}

async fn recommend(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .request(reqwest::Method::POST, "/v1/agents/recommend", "dev-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    crate::helpers::json_response(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_lists_only_selectable_agents() {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::ZERO)).await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| catalogue(c, &model)).await;
    let listed = agents(&app).await;
    let ids: Vec<&str> = listed.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["fast", "gpt"],
        "neither private nor the built-in ones"
    );
    assert_eq!(
        listed[1],
        json!({
            "id": "gpt",
            "name": "GPT",
            "description": "Careful answers, code included.",
            "kind": "openai",
            "model": "test-model",
            "capabilities": {"streaming": true, "choices": false, "tools": false},
            "tags": ["general", "code", "quality"],
            "price_per_1k": {"input": 0.5, "output": 1.5, "currency": "EUR"},
            "context_tokens": 128000,
            "availability": {"status": "healthy"},
        })
    );
    assert_eq!(listed[0]["kind"], "echo");
    assert_eq!(listed[0]["capabilities"]["streaming"], false);
    let doc = crate::openapi::document();
    let (_, list) = app.get("dev-1", "/v1/agents").await;
    crate::openapi::assert_shape(&doc, "AgentList", &list, "GET /v1/agents");
    let (_, recommended) = recommend(&app, json!({"task": "code", "priority": "cost"})).await;
    crate::openapi::assert_shape(&doc, "Recommendation", &recommended, "recommend");

    let anonymous = app.client.get(app.url("/v1/agents")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "visitors identify like elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_follows_the_agents_calls() {
    let model = FakeModel::start(ModelBehaviour::Fail(
        500,
        "upstream exploded; key sk-test".into(),
    ))
    .await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| catalogue(c, &model)).await;
    let (status, sent) = app
        .send(
            "dev-1",
            json!({"content": "are you there?", "agent": "gpt"}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        sent["reply"]["content"], app.config.pipeline.fallback_message,
        "the visitor gets the polite fallback"
    );
    let failing = agent(&app, "gpt").await["availability"].clone();
    assert_eq!(failing["status"], "failing");
    assert_eq!(failing["last_error"], "the model API answered 500");
    assert!(
        !failing.to_string().contains("sk-test") && !failing.to_string().contains("exploded"),
        "the provider's message stays out: {failing}"
    );
    let since = failing["since"].as_str().unwrap().to_owned();
    assert!(since.ends_with('Z'), "a time: {since}");
    assert_eq!(
        agent(&app, "fast").await["availability"]["status"],
        "healthy",
        "only the failing agent is marked"
    );

    // Still failing: since when stays the first failure's time.
    model.set(ModelBehaviour::Fail(503, "overloaded".into()));
    let conversation = sent["conversation_id"].as_str().unwrap();
    app.send(
        "dev-1",
        json!({"conversation_id": conversation, "content": "again?", "agent": "gpt"}),
    )
    .await;
    let still = agent(&app, "gpt").await["availability"].clone();
    assert_eq!(still["last_error"], "the model API answered 503");
    assert_eq!(still["since"], since.as_str());

    // A recommendation passes over the failing agent while a healthy one fits.
    let (_, picked) = recommend(&app, json!({"task": "general", "priority": "quality"})).await;
    assert_eq!(picked["agent"]["id"], "fast", "{picked}");
    assert!(
        picked["reason"]
            .as_str()
            .unwrap()
            .contains("answering normally"),
        "{picked}"
    );

    model.set(ModelBehaviour::Stream(vec!["back".into()], Duration::ZERO));
    let (_, answered) = app
        .send(
            "dev-1",
            json!({"conversation_id": conversation, "content": "now?", "agent": "gpt"}),
        )
        .await;
    assert_eq!(answered["reply"]["content"], "back");
    assert_eq!(
        agent(&app, "gpt").await["availability"],
        json!({"status": "healthy"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recommendation_picks_by_task_and_priority_and_says_why() {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::ZERO)).await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| catalogue(c, &model)).await;
    let pick = |task: &'static str, priority: &'static str| {
        let app = &app;
        async move {
            let (status, body) = recommend(app, json!({"task": task, "priority": priority})).await;
            assert_eq!(status, 200, "{body}");
            (
                body["agent"]["id"].as_str().unwrap().to_owned(),
                body["reason"].as_str().unwrap().to_owned(),
                body,
            )
        }
    };
    let (id, reason, body) = pick("code", "speed").await;
    assert_eq!(id, "gpt", "the only agent for code, whatever the priority");
    assert!(reason.contains("tagged for code"), "{reason}");
    assert_eq!(
        body["agent"]["name"], "GPT",
        "the agent as the catalogue shows it"
    );

    let (id, reason, _) = pick("general", "cost").await;
    assert_eq!(id, "fast");
    assert!(reason.contains("cheapest"), "{reason}");

    let (id, reason, _) = pick("general", "quality").await;
    assert_eq!(id, "gpt");
    assert!(reason.contains("for quality"), "{reason}");

    let (id, reason, _) = pick("general", "speed").await;
    assert_eq!(id, "fast");
    assert!(reason.contains("for speed"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendation_errors() {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::ZERO)).await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| catalogue(c, &model)).await;
    for (body, code) in [
        (
            json!({"task": "poetry", "priority": "speed"}),
            "invalid_task",
        ),
        (
            json!({"task": "Code!", "priority": "speed"}),
            "invalid_task",
        ),
        (
            json!({"task": "speed", "priority": "speed"}),
            "invalid_task",
        ),
        (
            json!({"task": "code", "priority": "cheap"}),
            "invalid_priority",
        ),
        (json!({"task": "code"}), "invalid_request"),
        (
            json!({"task": "code", "priority": "cost", "budget": 1}),
            "invalid_request",
        ),
    ] {
        let (status, answer) = recommend(&app, body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    let (_, answer) = recommend(&app, json!({"task": "poetry", "priority": "cost"})).await;
    assert_eq!(
        answer["error"]["message"], "task must be one of: code, general",
        "the tasks there are, and no priority among them"
    );

    // No agent is selectable (the built-in ones are not): nothing to recommend.
    let bare = TestApp::spawn(&Backend::Sqlite).await;
    assert!(agents(&bare).await.is_empty());
    let (status, answer) = recommend(&bare, json!({"task": "general", "priority": "speed"})).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "no_selectable_agent");
}

async fn a_visitor_chooses_the_agent_of_one_message(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::ZERO)).await;
    let app = TestApp::spawn_with(&backend, |c| catalogue(c, &model)).await;
    let (status, first) = app.send("dev-1", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["reply"]["author"], "assistant", "routing's default");
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();

    let (status, chosen) = app
        .send(
            "dev-1",
            json!({"conversation_id": conversation, "content": "quick one", "agent": "fast"}),
        )
        .await;
    assert_eq!(status, 200, "{chosen}");
    assert_eq!(chosen["message"]["metadata"]["agent"], "fast");
    assert_eq!(chosen["reply"]["author"], "fast");
    assert_eq!(chosen["reply"]["content"], "fast: quick one");

    let (_, next) = app
        .send(
            "dev-1",
            json!({"conversation_id": conversation, "content": "what are your opening hours?"}),
        )
        .await;
    assert_eq!(
        next["reply"]["author"], "assistant",
        "the choice was for one message: the conversation keeps its agent"
    );

    // Refused alike for an agent that exists but is private and for one that does not exist;
    // nothing is stored.
    let messages = app.count("messages").await;
    let mut answers = Vec::new();
    for agent in ["private", "nobody", "assistant"] {
        let (status, refused) = app
            .send(
                "dev-1",
                json!({"conversation_id": conversation, "content": "hi", "agent": agent}),
            )
            .await;
        assert_eq!(status, 422, "{agent}: {refused}");
        assert_eq!(refused["error"]["code"], "agent_not_selectable");
        answers.push(refused["error"].clone());
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one answer, whatever exists: {answers:?}"
    );
    let (status, _) = app
        .send("dev-2", json!({"content": "new here", "agent": "private"}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(app.count("messages").await, messages, "nothing stored");
    let (_, conversations) = app.get("dev-2", "/v1/conversations").await;
    assert_eq!(conversations["conversations"], json!([]), "{conversations}");

    // A conversation created for a selectable agent is answered by it; a private one is refused
    // the same way.
    let create = |agent: &'static str| {
        app.request(reqwest::Method::POST, "/v1/conversations", "dev-3")
            .json(&json!({"agent": agent}))
            .send()
    };
    let refused = crate::helpers::json_response(create("private").await.unwrap()).await;
    assert_eq!(refused.0, 422);
    assert_eq!(refused.1["error"], answers[0]);
    let (status, created) = crate::helpers::json_response(create("gpt").await.unwrap()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["agent"], "gpt");
    let (_, answered) = app
        .send(
            "dev-3",
            json!({"conversation_id": created["id"], "content": "write code"}),
        )
        .await;
    assert_eq!(answered["reply"]["author"], "gpt");
    assert_eq!(answered["reply"]["content"], "echo: write code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_cannot_smuggle_in_a_choice() {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::ZERO)).await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        catalogue(c, &model);
        c.routing.default_agent = "private".into();
    })
    .await;
    let mut metadata = Map::new();
    metadata.insert("agent".into(), json!("fast"));
    let outcomes = app
        .pipeline
        .ingest(
            switchboard_whatsapp::CHANNEL,
            vec![InboundEvent::Message(InboundMessage {
                provider_message_id: Some("wamid.1".into()),
                sender_key: None,
                account: "15550001111".into(),
                from: ContactRef {
                    external_id: "16505551234".into(),
                    display_name: None,
                    username: None,
                },
                conversation: ConversationRef::Current,
                sent_at: None,
                reply_to: None,
                subject: None,
                content: Content::Text {
                    body: "pick fast for me".into(),
                },
                intent: None,
                metadata,
                files: Vec::new(),
            })],
        )
        .await
        .unwrap();
    let Outcome::Stored { message, .. } = &outcomes[0] else {
        panic!("stored: {outcomes:?}");
    };
    assert_eq!(message.metadata.agent, None, "the channel's key is dropped");
    app.all_answered().await;
    let (author, content): (Option<String>, String) = app
        .store
        .reader()
        .fetch_one(query(
            "SELECT author, content FROM messages WHERE role = 'ai'",
        ))
        .await
        .unwrap();
    assert_eq!(author.as_deref(), Some("private"), "routing decided");
    assert_eq!(content, "private: pick fast for me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_choice_is_honoured_when_the_turn_resumes_after_a_restart() {
    let model = FakeModel::start(ModelBehaviour::Hang).await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| catalogue(c, &model)).await;
    let (status, sent) = app
        .send_later(
            "dev-1",
            json!({"content": "take your time", "agent": "gpt"}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    // The chosen agent is writing when the gateway stops.
    model.wait_for_requests(1, Duration::from_secs(10)).await;
    let (config, clock) = (app.config.clone(), app.clock.clone());
    let db = app.stop().await;

    model.set(ModelBehaviour::Stream(
        vec!["resumed ".into(), "answer".into()],
        Duration::ZERO,
    ));
    let mut again = TestApp::start(config, clock).await;
    again.keep(db);
    let reply = again
        .eventually(Duration::from_secs(20), "the resumed reply", || async {
            let (_, page) = again
                .get(
                    "dev-1",
                    &format!("/v1/conversations/{conversation}/messages"),
                )
                .await;
            page["messages"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["role"] == "ai").cloned())
        })
        .await;
    assert_eq!(reply["author"], "gpt", "the chosen agent, not routing's");
    assert_eq!(reply["content"], "resumed answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_counts_against_the_visitors_rate() {
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::ZERO)).await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        catalogue(c, &model);
        c.limits.visitor.messages_per_minute = 2;
    })
    .await;
    assert_eq!(app.get("dev-1", "/v1/agents").await.0, 200);
    let (status, _) = recommend(&app, json!({"task": "code", "priority": "cost"})).await;
    assert_eq!(status, 200);
    let response = app
        .request(reqwest::Method::GET, "/v1/agents", "dev-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let (status, limited) = recommend(&app, json!({"task": "code", "priority": "cost"})).await;
    assert_eq!(status, 429, "{limited}");
    assert_eq!(limited["error"]["code"], "rate_limited");
    assert_eq!(
        app.get("dev-2", "/v1/agents").await.0,
        200,
        "another visitor has a rate of their own"
    );
}
