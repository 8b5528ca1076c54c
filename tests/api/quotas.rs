//! Quotas: plans of messages and tokens per UTC day and month, and prepaid credits. Over a quota
//! the website API answers `402` `quota_exceeded` and stores nothing; a messaging channel's
//! message is stored, not answered, and the contact is told once per period. Admins give a contact
//! a plan or credits with `PUT /v1/admin/contacts/{id}/plan`, which applies at once.

use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::{
    config::{Config, PlanConfig},
    store::{Db, messages, query},
    time::{Clock, Timestamp},
};

use crate::{
    both_backends,
    helpers::{Backend, TestApp, graph::FakeGraph},
};

both_backends!(
    over_the_daily_quota_the_web_api_answers_402_and_stores_nothing,
    a_monthly_quota_lasts_until_the_next_month,
    a_token_quota_counts_the_replies_tokens,
    admins_set_a_contacts_plan_and_credits_and_they_apply_at_once,
    a_whatsapp_contact_over_quota_is_stored_unanswered_and_told_once,
);

const DAY: Duration = Duration::from_secs(86_400);

/// A clock at 10:00 UTC on the 10th of next month: days and months can be crossed at will.
fn mid_month() -> Clock {
    let today = Utc::now().date_naive();
    let (year, month) = match today.month() {
        12 => (today.year() + 1, 1),
        m => (today.year(), m + 1),
    };
    let start = Utc.with_ymd_and_hms(year, month, 10, 10, 0, 0).unwrap();
    Clock::starting_at(Timestamp::from(start))
}

fn default_plan(c: &mut Config, plan: PlanConfig) {
    c.routing.default_agent = "echo".into();
    c.quotas.plans.insert("default".into(), plan);
}

fn assert_over_quota(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(what), "{message:?} should name {what:?}");
}

async fn over_the_daily_quota_the_web_api_answers_402_and_stores_nothing(backend: Backend) {
    let clock = mid_month();
    let app = TestApp::spawn_with_clock(&backend, clock.clone(), |c| {
        default_plan(
            c,
            PlanConfig {
                messages_per_day: Some(2),
                ..PlanConfig::default()
            },
        )
    })
    .await;
    let (status, first) = app.send("dev-1", json!({"content": "one"})).await;
    assert_eq!(status, 200, "{first}");
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .send("dev-1", json!({"conversation_id": id, "content": "two"}))
        .await;
    assert_eq!(status, 200);
    let stored = app.count("messages").await;
    assert_eq!(stored, 4);

    let (status, body) = app
        .send("dev-1", json!({"conversation_id": id, "content": "three"}))
        .await;
    assert_over_quota(status, &body, "2 messages a day");
    let (status, body) = app.send("dev-1", json!({"content": "a new one"})).await;
    assert_over_quota(status, &body, "2 messages a day");
    let response = app
        .stream(
            "dev-1",
            json!({"conversation_id": id, "content": "streamed"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 402, "the stream route too");
    assert_eq!(app.count("messages").await, stored, "nothing stored");
    assert_eq!(app.count("conversations").await, 1);

    // Another visitor has their own allowance.
    let (status, _) = app.send("dev-2", json!({"content": "hello"})).await;
    assert_eq!(status, 200);

    // A restarted gateway counts from the database.
    let config = app.config.clone();
    let db = app.stop().await;
    let mut app = TestApp::start(config, clock.clone()).await;
    app.keep(db);
    let (status, body) = app
        .send(
            "dev-1",
            json!({"conversation_id": id, "content": "after a restart"}),
        )
        .await;
    assert_over_quota(status, &body, "2 messages a day");

    // The next day, the allowance is back.
    clock.advance(DAY);
    let (status, body) = app
        .send(
            "dev-1",
            json!({"conversation_id": id, "content": "tomorrow"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply"]["content"], "tomorrow");
}

async fn a_monthly_quota_lasts_until_the_next_month(backend: Backend) {
    let clock = mid_month();
    let app = TestApp::spawn_with_clock(&backend, clock.clone(), |c| {
        default_plan(
            c,
            PlanConfig {
                messages_per_month: Some(2),
                ..PlanConfig::default()
            },
        )
    })
    .await;
    app.send("dev-1", json!({"content": "one"})).await;
    clock.advance(DAY);
    let (status, _) = app.send("dev-1", json!({"content": "two"})).await;
    assert_eq!(status, 200);
    clock.advance(DAY);
    let (status, body) = app.send("dev-1", json!({"content": "three"})).await;
    assert_over_quota(status, &body, "2 messages a month");
    // From the 12th to the first days of the month after.
    clock.advance(DAY * 22);
    let (status, body) = app.send("dev-1", json!({"content": "three"})).await;
    assert_eq!(status, 200, "{body}");
}

async fn a_token_quota_counts_the_replies_tokens(backend: Backend) {
    let app = TestApp::spawn_with_clock(&backend, mid_month(), |c| {
        default_plan(
            c,
            PlanConfig {
                tokens_per_day: Some(30),
                ..PlanConfig::default()
            },
        )
    })
    .await;
    // The echo agent's reply to 40 characters: about 10 tokens in and 10 out.
    let forty = "x".repeat(40);
    let (status, _) = app.send("dev-1", json!({"content": forty})).await;
    assert_eq!(status, 200);
    let (status, _) = app.send("dev-1", json!({"content": forty})).await;
    assert_eq!(status, 200, "20 of 30 tokens used");
    let (status, body) = app.send("dev-1", json!({"content": "short"})).await;
    assert_over_quota(status, &body, "30 tokens a day");
}

/// The contact id of a web visitor.
async fn contact_of(app: &TestApp, device: &str) -> String {
    let (id,): (String,) = app
        .store
        .reader()
        .fetch_one(
            query("SELECT id FROM contacts WHERE external_id = $1")
                .bind(format!("device:{device}")),
        )
        .await
        .unwrap();
    id
}

async fn admins_set_a_contacts_plan_and_credits_and_they_apply_at_once(backend: Backend) {
    let app = TestApp::spawn_with_clock(&backend, mid_month(), |c| {
        c.routing.default_agent = "echo".into();
        c.quotas.plans.insert(
            "tiny".into(),
            PlanConfig {
                messages_per_day: Some(1),
                ..PlanConfig::default()
            },
        );
        if let Some(switchboard::config::AgentConfig::Echo(echo)) = c.agents.get_mut("echo") {
            // "hello": 2 tokens out, 0.02 a reply.
            echo.price_per_1k_output = 10.0;
        }
    })
    .await;
    let (_, admin) = app.staff_token("ada@example.com", "admin").await;
    let (_, expert) = app.staff_token("ana@example.com", "expert").await;
    // Out of the box there are no limits.
    for _ in 0..3 {
        let (status, _) = app.send("dev-1", json!({"content": "hello"})).await;
        assert_eq!(status, 200);
    }
    let contact = contact_of(&app, "dev-1").await;
    let path = format!("/v1/admin/contacts/{contact}/plan");

    let (status, body) = app
        .staff_call(Method::PUT, &path, &admin, Some(json!({"plan": "tiny"})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plan"], "tiny");
    assert_eq!(body["messages_today"], 3, "{body}");
    assert!(body["exceeded"].is_string(), "{body}");
    let (status, body) = app.send("dev-1", json!({"content": "hello"})).await;
    assert_over_quota(status, &body, "1 messages a day");
    let (status, _) = app.send("dev-2", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "others keep the default plan");

    // Back to the default plan, with credits for two replies (0.03, a reply costs 0.02).
    let (status, body) = app
        .staff_call(
            Method::PUT,
            &path,
            &admin,
            Some(json!({"plan": null, "credits": 0.03})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["plan"], &body["credits"]),
        (&json!("default"), &json!(0.03))
    );
    for _ in 0..2 {
        let (status, body) = app.send("dev-1", json!({"content": "hello"})).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app.send("dev-1", json!({"content": "hello"})).await;
    assert_over_quota(status, &body, "credits");
    // Topped up.
    let (status, body) = app
        .staff_call(Method::PUT, &path, &admin, Some(json!({"credits": 1})))
        .await;
    assert_eq!(body["credits"], 1.0, "{body}");
    assert_eq!(status, 200);
    let (status, _) = app.send("dev-1", json!({"content": "hello"})).await;
    assert_eq!(status, 200);
    // No credit limit at all.
    let (status, body) = app
        .staff_call(Method::PUT, &path, &admin, Some(json!({"credits": null})))
        .await;
    assert_eq!((status, &body["credits"]), (200, &Value::Null));

    // Bad requests change nothing.
    for (body, code) in [
        (json!({}), "invalid_request"),
        (json!({"plan": "platinum"}), "unknown_plan"),
        (json!({"credits": -1}), "invalid_request"),
        (json!({"credits": 1e300}), "invalid_request"),
        (json!({"credits": "ten"}), "invalid_request"),
        (json!({"plan": "tiny", "colour": "red"}), "invalid_request"),
    ] {
        let (status, answer) = app
            .staff_call(Method::PUT, &path, &admin, Some(body.clone()))
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}"
        );
    }
    let (status, body) = app
        .staff_call(
            Method::PUT,
            "/v1/admin/contacts/nobody/plan",
            &admin,
            Some(json!({"plan": "tiny"})),
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, _) = app
        .staff_call(Method::PUT, &path, &expert, Some(json!({"plan": "tiny"})))
        .await;
    assert_eq!(status, 403);
    let (plan,): (Option<String>,) = app
        .store
        .reader()
        .fetch_one(query("SELECT plan FROM contacts WHERE id = $1").bind(&contact))
        .await
        .unwrap();
    assert_eq!(plan, None, "the refused changes left the contact as it was");

    // Audited.
    let (_, audit) = app
        .staff_call(Method::GET, "/v1/admin/audit", &admin, None)
        .await;
    let changes = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "set_plan")
        .count();
    assert_eq!(changes, 4, "{audit}");
}

fn whatsapp_text(app: &TestApp, user: &str, id: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": user}],
            "messages": [{"from": user, "id": id,
                "timestamp": app.clock.now().to_datetime().timestamp().to_string(),
                "type": "text", "text": {"body": body}}]
        }}]}]
    }))
    .unwrap()
}

async fn a_whatsapp_contact_over_quota_is_stored_unanswered_and_told_once(backend: Backend) {
    let graph = FakeGraph::start().await;
    let clock = mid_month();
    let app = TestApp::spawn_with_clock(&backend, clock.clone(), |c| {
        c.set("whatsapp.app_secret", "secret");
        c.set("whatsapp.verify_token", "verify");
        c.set("whatsapp.access_token", "token");
        c.set("whatsapp.api_base", graph.base_url());
        c.set("whatsapp.mark_read", false);
        default_plan(
            c,
            PlanConfig {
                messages_per_day: Some(2),
                ..PlanConfig::default()
            },
        );
    })
    .await;
    let user = "16505551234";
    let send = |n: usize| {
        let body = whatsapp_text(&app, user, &format!("wamid.q{n}"), &format!("message {n}"));
        let app = &app;
        async move {
            let (status, body) = app.whatsapp(&body).await;
            assert_eq!(status, 200, "every message is acknowledged: {body}");
            assert_eq!(body["stored"], 1, "{body}");
        }
    };
    for n in 0..5 {
        send(n).await;
        // One at a time, so that each is answered before the next is checked.
        app.all_answered().await;
    }
    app.all_delivered().await;

    let (conversation,): (String,) = app
        .store
        .reader()
        .fetch_one(
            query(
                "SELECT c.id FROM conversations c JOIN contacts ct ON ct.id = c.contact_id \
                 WHERE ct.external_id = $1",
            )
            .bind(user),
        )
        .await
        .unwrap();
    let all = messages::page(
        &mut app.store.reader(),
        &conversation.clone().into(),
        None,
        100,
    )
    .await
    .unwrap();
    let inbound: Vec<_> = all
        .iter()
        .filter(|m| m.direction == messages::Direction::Inbound)
        .collect();
    assert_eq!(inbound.len(), 5, "nothing is lost");
    let unanswered: Vec<_> = inbound
        .iter()
        .filter_map(|m| m.metadata.unanswered.clone())
        .collect();
    assert_eq!(unanswered.len(), 3, "{unanswered:?}");
    assert!(unanswered[0].contains("over quota"), "{unanswered:?}");
    assert_eq!(
        all.iter().filter(|m| m.role == messages::Role::Ai).count(),
        2
    );
    let notices: Vec<_> = all
        .iter()
        .filter(|m| m.role == messages::Role::System)
        .collect();
    assert_eq!(notices.len(), 1, "told once: {notices:?}");
    assert_eq!(
        notices[0].metadata.notice.as_deref(),
        Some("quota_exceeded")
    );
    let sent: Vec<String> = graph
        .message_requests()
        .iter()
        .filter(|r| r.body["to"] == user)
        .map(|r| {
            r.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(sent.len(), 3, "two answers and the notice: {sent:?}");
    assert!(sent[2].contains("used up your messages"), "{sent:?}");

    // The next day the contact is answered again — and told again if they go over again.
    clock.advance(DAY);
    send(5).await;
    app.all_answered().await;
    let all = messages::page(&mut app.store.reader(), &conversation.into(), None, 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter().filter(|m| m.role == messages::Role::Ai).count(),
        3
    );
}

/// Two gateways on one PostgreSQL database: each counts what it stores, and re-reads what the
/// other stored on `quotas.refresh_schedule`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_database_see_each_others_use() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let clock = mid_month();
    let one = TestApp::spawn_with_clock(&backend, clock.clone(), |c| {
        default_plan(
            c,
            PlanConfig {
                messages_per_day: Some(2),
                ..PlanConfig::default()
            },
        );
        c.quotas.refresh_schedule = "* * * * * *".into();
    })
    .await;
    let two = TestApp::start(one.config.clone(), clock.clone()).await;
    let (_, admin) = one.staff_token("ada@example.com", "admin").await;
    let (status, _) = one.send("dev-1", json!({"content": "one"})).await;
    assert_eq!(status, 200);
    let (status, _) = two.send("dev-1", json!({"content": "two"})).await;
    assert_eq!(status, 200, "the second instance counted one message");
    let contact = contact_of(&one, "dev-1").await;
    // The first instance learns of the other's message within a refresh.
    one.eventually(
        Duration::from_secs(10),
        "the counters to be refreshed",
        || async {
            let (status, body) = one
                .staff_call(
                    Method::GET,
                    &format!("/v1/admin/contacts/{contact}/plan"),
                    &admin,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["messages_today"], 2, "{body}");
            body["exceeded"].is_string().then_some(())
        },
    )
    .await;
    let (status, body) = one.send("dev-1", json!({"content": "three"})).await;
    assert_over_quota(status, &body, "2 messages a day");
    two.stop().await;
}
