//! Who answers: routing rules, the session lock and its expiry, and handoff to experts (after
//! which the AI stays silent).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::config::{AgentConfig, EchoConfig, RoutingRule};

use crate::{
    both_backends,
    helpers::{Backend, SseReader, TestApp, json_response},
};

both_backends!(
    rules_choose_the_agent_and_the_lock_keeps_it,
    an_expired_lock_is_routed_again_and_cleared_by_the_job,
    after_a_handoff_the_ai_stays_silent,
    asking_for_a_human_hands_over,
    a_reply_in_progress_is_dropped_when_an_expert_takes_over,
    concurrent_messages_get_one_reply_each_and_none_after_a_handoff,
);

fn with_billing(c: &mut switchboard::config::Config) {
    c.agents.insert(
        "billing".into(),
        AgentConfig::Echo(EchoConfig {
            prefix: "[billing] ".into(),
            lock_ttl: Some(Duration::from_secs(3600)),
            ..EchoConfig::default()
        }),
    );
    c.agents.insert(
        "orders".into(),
        AgentConfig::Echo(EchoConfig {
            prefix: "[orders] ".into(),
            lock_ttl: None,
            ..EchoConfig::default()
        }),
    );
    c.routing.rules = vec![
        RoutingRule {
            agent: "billing".into(),
            keywords: vec!["refund".into(), "invoice".into()],
            pattern: None,
        },
        RoutingRule {
            agent: "orders".into(),
            keywords: vec![],
            pattern: Some(r"(?i)order\s+#?\d+".into()),
        },
    ];
}

async fn rules_choose_the_agent_and_the_lock_keeps_it(backend: Backend) {
    let app = TestApp::spawn_with(&backend, with_billing).await;
    let (_, first) = app
        .send("dev-1", json!({"content": "I want a Refund"}))
        .await;
    assert_eq!(first["reply"]["content"], "[billing] I want a Refund");
    assert_eq!(first["reply"]["author"], "billing");
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let (_, conversation) = app.get("dev-1", &format!("/v1/conversations/{id}")).await;
    assert_eq!(conversation["agent"], "billing");
    assert!(conversation["lock_expires_at"].is_string());

    // Locked: a message for another agent still goes to billing.
    let (_, second) = app
        .send(
            "dev-1",
            json!({"conversation_id": id, "content": "where is order #123?"}),
        )
        .await;
    assert_eq!(second["reply"]["content"], "[billing] where is order #123?");

    // Other conversations are routed on their own.
    let (_, orders) = app
        .send("dev-1", json!({"content": "where is order #123?"}))
        .await;
    assert_eq!(orders["reply"]["author"], "orders");
    let (_, default) = app.send("dev-1", json!({"content": "hello"})).await;
    assert_eq!(default["reply"]["author"], "assistant");
}

async fn an_expired_lock_is_routed_again_and_cleared_by_the_job(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| {
        with_billing(c);
        c.routing.lock_sweep_schedule = "* * * * * *".into();
    })
    .await;
    let (_, first) = app
        .send("dev-1", json!({"content": "invoice please"}))
        .await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(first["reply"]["author"], "billing");

    // Idle for longer than billing's one-hour TTL.
    app.clock.advance(Duration::from_secs(2 * 3600));
    let path = format!("/v1/conversations/{id}");
    let cleared: Value = app
        .eventually(
            Duration::from_secs(10),
            "the job to clear the expired lock",
            || async {
                let (_, conversation) = app.get("dev-1", &path).await;
                conversation["agent"].is_null().then_some(conversation)
            },
        )
        .await;
    assert!(cleared["lock_expires_at"].is_null());

    let (_, next) = app
        .send("dev-1", json!({"conversation_id": id, "content": "hello"}))
        .await;
    assert_eq!(
        next["reply"]["author"], "assistant",
        "routed again after the lock expired"
    );
    let (_, conversation) = app.get("dev-1", &path).await;
    assert_eq!(
        conversation["agent"], "assistant",
        "and locked to the new agent"
    );
}

fn roles(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect()
}

async fn after_a_handoff_the_ai_stays_silent(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let (_, first) = app.send("dev-1", json!({"content": "hello"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();

    let handoff = |body: Option<Value>| {
        let mut request = app.request(
            Method::POST,
            &format!("/v1/conversations/{id}/handoff"),
            "dev-1",
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let (status, body) = json_response(
        handoff(Some(json!({"reason": "billing question"})))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["mode"], "expert");
    assert_eq!(body["message"]["role"], "system");
    assert_eq!(body["message"]["metadata"]["mode"], "expert");
    assert_eq!(body["message"]["metadata"]["reason"], "billing question");

    let (status, answer) = app
        .send(
            "dev-1",
            json!({"conversation_id": id, "content": "are you there?"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        answer["reply"].is_null(),
        "the AI does not answer: {answer}"
    );
    let stream = app
        .stream("dev-1", json!({"conversation_id": id, "content": "hello?"}))
        .await;
    let events = SseReader::new(stream).collect(Duration::from_secs(5)).await;
    assert_eq!(events.len(), 1, "only the final event: {events:?}");
    assert_eq!(events[0].json()["mode"], "expert");
    assert!(events[0].json()["reply"].is_null());

    // Asking again changes nothing.
    let (status, again) = json_response(handoff(None).await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(again["message"].is_null());

    let (_, page) = app
        .get("dev-1", &format!("/v1/conversations/{id}/messages"))
        .await;
    assert_eq!(roles(&page), ["user", "ai", "system", "user", "user"]);
    let (_, conversation) = app.get("dev-1", &format!("/v1/conversations/{id}")).await;
    assert_eq!(conversation["mode"], "expert");
}

async fn asking_for_a_human_hands_over(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let (_, body) = app
        .send(
            "dev-1",
            json!({"content": "Can I talk to a human, please?"}),
        )
        .await;
    assert!(
        body["reply"]["content"]
            .as_str()
            .unwrap()
            .contains("handing you over"),
        "{body}"
    );
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    let (_, conversation) = app.get("dev-1", &format!("/v1/conversations/{id}")).await;
    assert_eq!(conversation["mode"], "expert");
    let (_, next) = app
        .send("dev-1", json!({"conversation_id": id, "content": "hello?"}))
        .await;
    assert!(next["reply"].is_null());
    let (_, page) = app
        .get("dev-1", &format!("/v1/conversations/{id}/messages"))
        .await;
    assert_eq!(roles(&page), ["user", "ai", "system", "user"]);

    // `/human` works on every channel, as on Telegram: no agent is asked.
    let (_, body) = app.send("dev-2", json!({"content": "/human"})).await;
    assert!(body["reply"].is_null(), "{body}");
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    let (_, conversation) = app.get("dev-2", &format!("/v1/conversations/{id}")).await;
    assert_eq!(conversation["mode"], "expert");
    let (_, page) = app
        .get("dev-2", &format!("/v1/conversations/{id}/messages"))
        .await;
    assert_eq!(roles(&page), ["user", "system"]);
}

async fn a_reply_in_progress_is_dropped_when_an_expert_takes_over(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| {
        if let Some(AgentConfig::Scripted(s)) = c.agents.get_mut("assistant") {
            s.word_delay = Duration::from_millis(100);
        }
    })
    .await;
    let (_, first) = app.send("dev-1", json!({"content": "hi"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let stream = app
        .stream(
            "dev-1",
            json!({"conversation_id": id, "content": "what are your opening hours?"}),
        )
        .await;
    let mut events = SseReader::new(stream);
    let chunk = events.expect(Duration::from_secs(5)).await;
    assert_eq!(chunk.json()["is_final"], false);
    assert_eq!(app.handoff("dev-1", &id).await.0, 200);
    let (last, written_after) = events
        .until(Duration::from_secs(10), |e| e.json()["is_final"] == true)
        .await;
    // The agent stops writing at once (one word may have been on its way): the user does not
    // watch the rest of a reply that will never be sent.
    assert!(
        written_after.len() <= 1,
        "the reply kept streaming after the handoff: {written_after:?}"
    );
    let last = last.json();
    assert!(
        last["reply"].is_null(),
        "the half-written reply is not delivered: {last}"
    );
    assert_eq!(last["mode"], "expert");
    let (_, page) = app
        .get("dev-1", &format!("/v1/conversations/{id}/messages"))
        .await;
    assert_eq!(roles(&page), ["user", "ai", "user", "system"]);
    // The message is off the work list: nobody answers it later, should the AI get the
    // conversation back.
    assert_eq!(
        switchboard::store::messages::pending_count(&mut app.store.reader())
            .await
            .unwrap(),
        0
    );
}

async fn concurrent_messages_get_one_reply_each_and_none_after_a_handoff(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, first) = app.send("dev-1", json!({"content": "start"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let send =
        |text: String| app.send_later("dev-1", json!({"conversation_id": id, "content": text}));
    let burst = (0..15).map(|i| send(format!("before {i}")));
    for (status, _) in futures::future::join_all(burst).await {
        assert_eq!(status, 202);
    }
    let late = (0..15).map(|i| send(format!("after {i}")));
    let ((status, _), late) =
        tokio::join!(app.handoff("dev-1", &id), futures::future::join_all(late));
    assert_eq!(status, 200);
    for (status, _) in late {
        assert_eq!(status, 202);
    }
    app.all_answered().await;

    let (_, page) = app
        .get(
            "dev-1",
            &format!("/v1/conversations/{id}/messages?limit=100"),
        )
        .await;
    let messages = page["messages"].as_array().unwrap();
    let notice = messages
        .iter()
        .find(|m| m["role"] == "system")
        .expect("the handoff notice");
    let notice_seq = notice["seq"].as_i64().unwrap();
    let mut answered = std::collections::HashMap::new();
    for m in messages.iter().filter(|m| m["role"] == "ai") {
        assert!(
            m["seq"].as_i64().unwrap() < notice_seq,
            "no AI message after the handoff: {m}"
        );
        *answered
            .entry(m["reply_to"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert!(
        answered.values().all(|&n| n == 1),
        "never two replies to one message"
    );
    // Replies come in the order of the messages they answer.
    let users: Vec<&Value> = messages.iter().filter(|m| m["role"] == "user").collect();
    let reply_order: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "ai")
        .map(|m| m["reply_to"].as_str().unwrap())
        .collect();
    let user_order: Vec<&str> = users
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .filter(|id| answered.contains_key(*id))
        .collect();
    assert_eq!(reply_order, user_order);
    // Everything sent after the handoff stays unanswered.
    for m in users
        .iter()
        .filter(|m| m["content"].as_str().unwrap().starts_with("after"))
    {
        if m["seq"].as_i64().unwrap() > notice_seq {
            assert!(!answered.contains_key(m["id"].as_str().unwrap()));
        }
    }
}
