//! Evaluations of AI replies: the rule checks and the LLM judge run in a background job after
//! each reply, their verdicts are listed for supervisors, and a failure flags the reply or hands
//! the conversation to an expert.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::config::{AgentConfig, Config, EvaluationAction, JudgeConfig, OpenAiConfig};
use switchboard::store::Db;

use crate::{
    both_backends,
    helpers::{
        Backend, SseReader, TestApp,
        fake::{FakeModel, ModelBehaviour},
    },
};

both_backends!(
    a_reply_with_blocked_words_is_flagged_for_review,
    a_failed_evaluation_hands_the_conversation_to_an_expert,
    the_llm_judge_scores_replies_and_is_asked_again_when_down,
    the_fallback_is_not_evaluated,
);

/// Evaluations on, the echo agent answering (so the test writes the reply it evaluates).
fn evaluate_echoes(c: &mut Config, action: EvaluationAction) {
    c.routing.default_agent = "echo".into();
    c.evaluations.enabled = true;
    c.evaluations.action = action;
    c.evaluations.blocked_keywords = vec!["guaranteed refund".into()];
    c.evaluations.blocked_patterns = vec![r"\b\d{4} \d{4} \d{4} \d{4}\b".into()];
}

/// The verdicts listed for `query`, once there are at least `n`.
async fn verdicts(app: &TestApp, token: &str, query: &str, n: usize) -> Vec<Value> {
    app.eventually(
        Duration::from_secs(20),
        &format!("{n} evaluations for {query}"),
        || async {
            let (status, body) = app
                .staff_call(
                    Method::GET,
                    &format!("/v1/supervisor/evaluations?{query}"),
                    token,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let items = body["evaluations"].as_array().unwrap().clone();
            (items.len() >= n).then_some(items)
        },
    )
    .await
}

async fn a_reply_with_blocked_words_is_flagged_for_review(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| evaluate_echoes(c, EvaluationAction::Flag)).await;
    let (_, supervisor) = app.staff_token("sue@example.com", "supervisor").await;
    let (_, expert) = app.staff_token("ana@example.com", "expert").await;
    let mut notices = SseReader::new(
        app.as_staff(Method::GET, "/v1/expert/events", &supervisor)
            .send()
            .await
            .unwrap(),
    );
    notices.expect(Duration::from_secs(5)).await; // hello

    let (status, clean) = app
        .send("visitor-1", json!({"content": "where is my parcel?"}))
        .await;
    assert_eq!(status, 200, "{clean}");
    let conversation = clean["conversation_id"].as_str().unwrap().to_owned();
    let (status, bad) = app
        .send(
            "visitor-1",
            json!({"conversation_id": conversation, "content": "you get a Guaranteed Refund"}),
        )
        .await;
    assert_eq!(status, 200, "{bad}");
    let bad_reply = bad["reply"]["id"].as_str().unwrap();

    // The supervisors' dashboards hear of it at once.
    let (flagged, _) = notices
        .until(Duration::from_secs(20), |e| e.json()["kind"] == "flagged")
        .await;
    assert_eq!(flagged.json()["conversation_id"], conversation.as_str());

    let failed = verdicts(&app, &supervisor, "result=failed", 1).await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["message_id"], bad_reply);
    assert_eq!(failed[0]["evaluator"], "safety");
    assert_eq!(failed[0]["passed"], false);
    assert_eq!(failed[0]["conversation_id"], conversation.as_str());
    assert_eq!(failed[0]["content"], "you get a Guaranteed Refund");
    assert_eq!(
        failed[0]["detail"]["blocked_keywords"],
        json!(["guaranteed refund"])
    );
    // Both replies were checked by both rules; only one verdict failed.
    let all = verdicts(
        &app,
        &supervisor,
        &format!("conversation_id={conversation}"),
        4,
    )
    .await;
    assert_eq!(all.len(), 4, "{all:#?}");
    let clean_reply = clean["reply"]["id"].as_str().unwrap();
    let of_clean = verdicts(&app, &supervisor, &format!("message_id={clean_reply}"), 2).await;
    assert!(
        of_clean.iter().all(|v| v["passed"] == true),
        "{of_clean:#?}"
    );

    // Flagging leaves the conversation to the AI.
    let (status, next) = app
        .send(
            "visitor-1",
            json!({"conversation_id": conversation, "content": "thanks"}),
        )
        .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["reply"]["content"], "thanks");

    // Only supervisors review; a bad filter is an error.
    let (status, body) = app
        .staff_call(Method::GET, "/v1/supervisor/evaluations", &expert, None)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = app
        .staff_call(
            Method::GET,
            "/v1/supervisor/evaluations?result=maybe",
            &supervisor,
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
}

async fn a_failed_evaluation_hands_the_conversation_to_an_expert(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| {
        evaluate_echoes(c, EvaluationAction::Handoff);
        c.evaluations.max_chars = 40;
    })
    .await;
    let (_, expert) = app.staff_token("ana@example.com", "expert").await;
    let long = "Please tell me everything about all of your delivery options";
    let (status, body) = app.send("visitor-1", json!({"content": long})).await;
    assert_eq!(status, 200, "{body}");
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();

    // The conversation waits for an expert; the visitor was told why the assistant went quiet.
    let queue = app
        .eventually(
            Duration::from_secs(20),
            "the conversation in the experts' queue",
            || async {
                let (_, queue) = app
                    .staff_call(Method::GET, "/v1/expert/queue", &expert, None)
                    .await;
                let items = queue["conversations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                (!items.is_empty()).then_some(items)
            },
        )
        .await;
    assert_eq!(queue[0]["conversation"]["id"], conversation.as_str());
    let (status, page) = app
        .get(
            "visitor-1",
            &format!("/v1/conversations/{conversation}/messages?limit=100"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().unwrap();
    let notice = messages.last().unwrap();
    assert_eq!(notice["role"], "system", "{messages:#?}");
    assert_eq!(notice["metadata"]["mode"], "expert");
    let reason = notice["metadata"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("failed its evaluation") && reason.contains("length"),
        "{reason}"
    );

    // The AI stays silent from now on.
    let (status, body) = app
        .send(
            "visitor-1",
            json!({"conversation_id": conversation, "content": "hello?"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["reply"].is_null(), "{body}");
}

/// A judge agent on the fake model; the echo agent answers.
fn judged(c: &mut Config, model: &FakeModel) {
    c.routing.default_agent = "echo".into();
    c.agents.insert(
        "judge".into(),
        AgentConfig::Openai(OpenAiConfig {
            base_url: model.base_url(),
            model: "judge-model".into(),
            api_key: Some("sk-judge".into()),
            timeout: Duration::from_secs(10),
            price_per_1k_input: 0.5,
            price_per_1k_output: 1.5,
            ..OpenAiConfig::default()
        }),
    );
    c.evaluations.enabled = true;
    c.evaluations.judge = Some(JudgeConfig {
        agent: "judge".into(),
        min_score: 0.5,
    });
}

async fn the_llm_judge_scores_replies_and_is_asked_again_when_down(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::Fail(503, "overloaded".into())).await;
    let app = TestApp::spawn_with(&backend, |c| judged(c, &model)).await;
    let (_, supervisor) = app.staff_token("sue@example.com", "supervisor").await;
    let (status, body) = app
        .send("visitor-1", json!({"content": "Can I pay by card?"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let reply = body["reply"]["id"].as_str().unwrap().to_owned();

    // The judge is down: the job waits and asks again.
    app.eventually(
        Duration::from_secs(20),
        "the evaluation to be scheduled again",
        || async {
            let (n,): (i64,) = app
                .store
                .reader()
                .fetch_one(switchboard::store::query(
                    "SELECT COUNT(*) FROM jobs WHERE queue = 'evaluate' \
                     AND last_error LIKE '%503%'",
                ))
                .await
                .unwrap();
            (n == 1).then_some(())
        },
    )
    .await;
    model.set(ModelBehaviour::StreamWithUsage(
        vec![
            "```json\n{\"relevance\": 0.9, \"safety\": 0.3, ".into(),
            "\"quality\": 0.8, \"reason\": \"It repeats the user.\"}\n```".into(),
        ],
        400,
        30,
    ));
    let judge = verdicts(
        &app,
        &supervisor,
        &format!("message_id={reply}&result=failed"),
        1,
    )
    .await;
    assert_eq!(judge[0]["evaluator"], "judge", "{judge:#?}");
    assert_eq!(judge[0]["score"], 0.3);
    assert_eq!(judge[0]["detail"]["relevance"], 0.9);
    assert_eq!(judge[0]["detail"]["reason"], "It repeats the user.");
    assert_eq!(judge[0]["detail"]["model"], "judge-model");
    // What the call used, as the model API reported it, priced at the judge agent's prices:
    // 400 tokens in at 0.5 and 30 out at 1.5 per 1,000.
    let usage = &judge[0]["detail"]["usage"];
    assert_eq!(usage["tokens_in"], 400, "{usage}");
    assert_eq!(usage["tokens_out"], 30);
    assert_eq!(usage["estimated"], false);
    assert_eq!(usage["cost"], 0.245);
    assert_eq!(usage["currency"], app.config.quotas.currency.as_str());
    // The counter is the process's, shared with other tests' judges: at least this call's.
    let input = app
        .metric("switchboard_judge_tokens_total{direction=\"input\"}")
        .await;
    let output = app
        .metric("switchboard_judge_tokens_total{direction=\"output\"}")
        .await;
    assert!(input >= 400.0 && output >= 30.0, "{input} in, {output} out");

    let requests = model.requests();
    assert!(requests.len() >= 2, "asked again after the 503");
    let last = requests.last().unwrap();
    assert_eq!(last["model"], "judge-model");
    let messages = last["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("relevance")
    );
    let asked = messages[1]["content"].as_str().unwrap();
    assert!(
        asked.contains("The user wrote:\n<<<\nCan I pay by card?\n>>>")
            && asked.contains("The assistant replied:\n<<<\nCan I pay by card?\n>>>"),
        "{asked}"
    );
    assert_eq!(model.headers()[0]["authorization"], "Bearer sk-judge");
    // The rule checks ran as well, once.
    let all = verdicts(&app, &supervisor, &format!("message_id={reply}"), 2).await;
    assert_eq!(all.len(), 2, "{all:#?}");
}

async fn the_fallback_is_not_evaluated(backend: Backend) {
    let model = FakeModel::start(ModelBehaviour::Fail(500, "boom".into())).await;
    let app = TestApp::spawn_with(&backend, |c| {
        c.agents.insert(
            "gpt".into(),
            AgentConfig::Openai(OpenAiConfig {
                base_url: model.base_url(),
                timeout: Duration::from_secs(10),
                ..OpenAiConfig::default()
            }),
        );
        c.routing.default_agent = "gpt".into();
        c.evaluations.enabled = true;
    })
    .await;
    let (_, supervisor) = app.staff_token("sue@example.com", "supervisor").await;
    let (status, fallback) = app.send("visitor-1", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{fallback}");
    assert_eq!(
        fallback["reply"]["content"],
        app.config.pipeline.fallback_message.as_str(),
        "{fallback}"
    );
    let conversation = fallback["conversation_id"].as_str().unwrap();

    model.set(ModelBehaviour::Echo(Duration::ZERO));
    let (status, answer) = app
        .send(
            "visitor-1",
            json!({"conversation_id": conversation, "content": "hello again"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reply"]["content"], "echo: hello again");

    // The model's answer was checked; the fallback, queued earlier, was not.
    let all = verdicts(
        &app,
        &supervisor,
        &format!("conversation_id={conversation}"),
        1,
    )
    .await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["message_id"], answer["reply"]["id"]);
    assert_eq!(all[0]["evaluator"], "length");
}
