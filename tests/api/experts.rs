//! Experts and supervisors through the API: the queue and assignment, claim, transfer, release,
//! close, replies passed through to the end user, timeouts, notifications (e-mail, signed
//! webhook), answering by e-mail, supervisors observing, the audit log, and the role checks.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    both_backends,
    helpers::{Backend, TestApp, json_response},
};

both_backends!(
    a_waiting_conversation_is_assigned_answered_and_released_to_the_ai,
    roles_are_checked_and_refusals_change_nothing,
);

/// Starts a web conversation and hands it to the experts; returns its id.
async fn handed_over(app: &TestApp, device: &str) -> String {
    let (status, body) = app.send(device, json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    let (status, body) = app.handoff(device, &id).await;
    assert_eq!(status, 200, "{body}");
    id
}

/// The visitor's view of their conversation: (role, content) of every message.
async fn transcript(app: &TestApp, device: &str, id: &str) -> Vec<(String, String)> {
    let (status, body) = app
        .get(
            device,
            &format!("/v1/conversations/{id}/messages?limit=100"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn a_waiting_conversation_is_assigned_answered_and_released_to_the_ai(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let id = handed_over(&app, "visitor-1").await;
    let (_, token) = app.staff_token("ana@example.com", "expert").await;

    // Nobody is available: the conversation waits in the queue.
    let (status, queue) = app
        .staff_call(Method::GET, "/v1/expert/queue", &token, None)
        .await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["conversations"][0]["conversation"]["id"], id.as_str());
    assert_eq!(queue["conversations"][0]["position"], 1);

    // Ana becomes available and gets it at once.
    let (status, body) = app
        .staff_call(
            Method::PUT,
            "/v1/expert/me/availability",
            &token,
            Some(json!({"available": true, "capacity": 2})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mine = app
        .eventually(Duration::from_secs(10), "the assignment", || async {
            let (_, body) = app
                .staff_call(Method::GET, "/v1/expert/conversations", &token, None)
                .await;
            let list = body["conversations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (!list.is_empty()).then_some(list)
        })
        .await;
    assert_eq!(mine[0]["conversation"]["id"], id.as_str());
    assert_eq!(mine[0]["unread"], 1, "the visitor's message is new to Ana");
    let (_, queue) = app
        .staff_call(Method::GET, "/v1/expert/queue", &token, None)
        .await;
    assert_eq!(queue["conversations"], json!([]));

    // The visitor writes; the AI stays silent; Ana sees it unread, reads and answers.
    app.send_later(
        "visitor-1",
        json!({"conversation_id": id, "content": "is anyone there?"}),
    )
    .await;
    app.all_answered().await;
    let (_, mine) = app
        .staff_call(Method::GET, "/v1/expert/conversations", &token, None)
        .await;
    assert_eq!(mine["conversations"][0]["unread"], 2);
    let (status, opened) = app
        .staff_call(
            Method::GET,
            &format!("/v1/expert/conversations/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["contact"]["external_id"], "device:visitor-1");
    let (_, mine) = app
        .staff_call(Method::GET, "/v1/expert/conversations", &token, None)
        .await;
    assert_eq!(mine["conversations"][0]["unread"], 0, "read once opened");
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/messages"),
            &token,
            Some(json!({"content": "Hi, I'm Ana. How can I help?"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["role"], "expert");
    let seen = transcript(&app, "visitor-1", &id).await;
    let roles: Vec<&str> = seen.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(
        roles,
        ["user", "ai", "system", "system", "user", "expert"],
        "{seen:?}"
    );
    assert_eq!(seen[3].1, "ana has joined the conversation.");
    assert_eq!(seen[5].1, "Hi, I'm Ana. How can I help?");

    // Ana releases it: the AI answers the next message again.
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/release"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["mode"], "ai");
    assert_eq!(
        body["conversation"]["agent"],
        Value::Null,
        "the agent lock was reset"
    );
    let (status, body) = app
        .send(
            "visitor-1",
            json!({"conversation_id": id, "content": "what are your opening hours?"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["reply"]["content"],
        "We're open Monday to Friday, 9:00 to 18:00."
    );
    let seen = transcript(&app, "visitor-1", &id).await;
    assert!(
        seen.iter()
            .any(|(role, text)| role == "system" && text.contains("back with the assistant"))
    );
}

async fn roles_are_checked_and_refusals_change_nothing(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let id = handed_over(&app, "visitor-2").await;
    let (_, ana) = app.staff_token("ana@example.com", "expert").await;
    let (_, ben) = app.staff_token("ben@example.com", "expert").await;
    let (_, sue) = app.staff_token("sue@example.com", "supervisor").await;
    let (_, adm) = app.staff_token("adm@example.com", "admin").await;
    let (status, _) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/claim"),
            &ana,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let messages_before = app.count("messages").await;

    // Another expert: the conversation does not exist for them.
    for (method, path, body) in [
        (Method::GET, format!("/v1/expert/conversations/{id}"), None),
        (
            Method::POST,
            format!("/v1/expert/conversations/{id}/messages"),
            Some(json!({"content": "hi"})),
        ),
        (
            Method::POST,
            format!("/v1/expert/conversations/{id}/release"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/expert/conversations/{id}/close"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/expert/conversations/{id}/claim"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/expert/conversations/{id}/export"),
            None,
        ),
    ] {
        let (status, body) = app.staff_call(method.clone(), &path, &ben, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    // Supervisor and admin routes refuse experts; admin routes refuse supervisors.
    for path in [
        "/v1/supervisor/conversations",
        "/v1/supervisor/contacts?q=a",
        "/v1/admin/users",
        "/v1/admin/audit",
    ] {
        let (status, body) = app.staff_call(Method::GET, path, &ana, None).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("forbidden")),
            "{path}"
        );
    }
    for path in ["/v1/admin/users", "/v1/admin/audit"] {
        let (status, _) = app.staff_call(Method::GET, path, &sue, None).await;
        assert_eq!(status, 403, "{path}");
    }
    let (status, _) = app
        .staff_call(
            Method::POST,
            "/v1/admin/users",
            &ana,
            Some(
                json!({"email": "eve@example.com", "role": "admin", "password": "long-enough-pw"}),
            ),
        )
        .await;
    assert_eq!(status, 403);
    // End users: their identity is valid, but not for staff routes.
    for path in [
        "/v1/supervisor/conversations",
        "/v1/expert/queue",
        "/v1/admin/users",
    ] {
        let (status, body) = app.get("visitor-2", path).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("forbidden")),
            "{path}"
        );
    }
    // No credentials, or a forged token.
    let response = app
        .client
        .get(app.url("/v1/expert/queue"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (status, body) = app
        .staff_call(Method::GET, "/v1/expert/queue", "forged.token.here", None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_token"))
    );
    // Wrong password.
    let response = app
        .client
        .post(app.url("/v1/auth/token"))
        .json(&json!({"email": "ana@example.com", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_response(response).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_credentials"))
    );

    // Nothing changed: still Ana's, no new message, nothing added.
    let (_, opened) = app
        .staff_call(
            Method::GET,
            &format!("/v1/expert/conversations/{id}"),
            &sue,
            None,
        )
        .await;
    assert_eq!(opened["conversation"]["mode"], "expert");
    assert_eq!(app.count("messages").await, messages_before);
    let (_, users) = app
        .staff_call(Method::GET, "/v1/admin/users", &adm, None)
        .await;
    assert_eq!(
        users["users"].as_array().unwrap().len(),
        4,
        "no account was added"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_goes_to_the_least_busy_expert_and_waits_when_all_are_full() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let (ana_id, ana) = app.staff_token("ana@example.com", "expert").await;
    let (ben_id, ben) = app.staff_token("ben@example.com", "expert").await;
    let (_, sue) = app.staff_token("sue@example.com", "supervisor").await;
    for token in [&ana, &ben] {
        app.staff_call(
            Method::PUT,
            "/v1/expert/me/availability",
            token,
            Some(json!({"available": true, "capacity": 1})),
        )
        .await;
    }
    let first = handed_over(&app, "v-a").await;
    let second = handed_over(&app, "v-b").await;
    let third = handed_over(&app, "v-c").await;
    let owner = |id: String| {
        let app = &app;
        let sue = sue.clone();
        async move {
            let (_, body) = app
                .staff_call(
                    Method::GET,
                    &format!("/v1/expert/conversations/{id}"),
                    &sue,
                    None,
                )
                .await;
            body["conversation"]["expert_id"]
                .as_str()
                .map(str::to_owned)
        }
    };
    // One each (the least busy first), the third waits: everyone is full.
    let owners = app
        .eventually(Duration::from_secs(10), "two assignments", || async {
            let (_, a) = app
                .staff_call(Method::GET, "/v1/expert/conversations", &ana, None)
                .await;
            let (_, b) = app
                .staff_call(Method::GET, "/v1/expert/conversations", &ben, None)
                .await;
            let counts = (
                a["conversations"].as_array().map_or(0, Vec::len),
                b["conversations"].as_array().map_or(0, Vec::len),
            );
            (counts == (1, 1)).then_some(counts)
        })
        .await;
    assert_eq!(owners, (1, 1));
    let (_, queue) = app
        .staff_call(Method::GET, "/v1/expert/queue", &ana, None)
        .await;
    assert_eq!(
        queue["conversations"][0]["conversation"]["id"],
        third.as_str()
    );

    // Closing frees a place: the waiting conversation goes to whoever freed it.
    let anas = if owner(first.clone()).await.as_deref() == Some(ana_id.as_str()) {
        first.clone()
    } else {
        second.clone()
    };
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{anas}/close"),
            &ana,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.eventually(
        Duration::from_secs(10),
        "the waiting one assigned",
        || async { (owner(third.clone()).await.as_deref() == Some(ana_id.as_str())).then_some(()) },
    )
    .await;

    // A transfer: Ben hands his conversation to Ana (a supervisor could too).
    let bens = if anas == first { second } else { first };
    assert_eq!(owner(bens.clone()).await.as_deref(), Some(ben_id.as_str()));
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{bens}/transfer"),
            &ben,
            Some(json!({"to": ana_id})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(owner(bens).await.as_deref(), Some(ana_id.as_str()));
}

/// Who owns a conversation, as a supervisor sees it.
async fn owner_of(app: &TestApp, supervisor: &str, id: &str) -> Option<String> {
    let (status, body) = app
        .staff_call(
            Method::GET,
            &format!("/v1/expert/conversations/{id}"),
            supervisor,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["conversation"]["expert_id"]
        .as_str()
        .map(str::to_owned)
}

/// Sets an expert available (with a capacity) or away.
async fn set_available(app: &TestApp, token: &str, available: bool, capacity: i64) {
    let (status, body) = app
        .staff_call(
            Method::PUT,
            "/v1/expert/me/availability",
            token,
            Some(json!({"available": available, "capacity": capacity})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_assignment_goes_back_to_the_queue_and_its_expert_is_set_away() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |config| {
        config.experts.assign_schedule = "* * * * * *".into();
        config.experts.assignment_timeout = Duration::from_secs(300);
    })
    .await;
    let (ana_id, ana) = app.staff_token("ana@example.com", "expert").await;
    let (ben_id, ben) = app.staff_token("ben@example.com", "expert").await;
    let (_, sue) = app.staff_token("sue@example.com", "supervisor").await;
    set_available(&app, &ana, true, 2).await;
    let answered = handed_over(&app, "v-answered").await;
    let ignored = handed_over(&app, "v-ignored").await;
    for id in [&answered, &ignored] {
        app.eventually(Duration::from_secs(10), "the assignment", || async {
            (owner_of(&app, &sue, id).await.as_deref() == Some(ana_id.as_str())).then_some(())
        })
        .await;
    }
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{answered}/messages"),
            &ana,
            Some(json!({"content": "I'm on it."})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Five minutes on, the one Ana never answered waits again; she is set away, so it is not
    // given straight back to her. The one she answered stays hers.
    app.clock.advance(Duration::from_secs(301));
    app.eventually(Duration::from_secs(10), "the timeout", || async {
        let (_, queue) = app
            .staff_call(Method::GET, "/v1/expert/queue", &sue, None)
            .await;
        (queue["conversations"][0]["conversation"]["id"] == ignored.as_str()).then_some(())
    })
    .await;
    let (_, me) = app
        .staff_call(Method::GET, "/v1/expert/me", &ana, None)
        .await;
    assert_eq!(me["user"]["available"], false, "{me}");
    assert_eq!(
        owner_of(&app, &sue, &answered).await.as_deref(),
        Some(ana_id.as_str())
    );
    assert_eq!(owner_of(&app, &sue, &ignored).await, None);

    // A colleague who becomes available gets it.
    set_available(&app, &ben, true, 2).await;
    app.eventually(Duration::from_secs(10), "the reassignment", || async {
        (owner_of(&app, &sue, &ignored).await.as_deref() == Some(ben_id.as_str())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_go_to_colleagues_who_are_there_and_supervisors_assign_from_the_queue() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let (ana_id, ana) = app.staff_token("ana@example.com", "expert").await;
    let (ben_id, _ben) = app.staff_token("ben@example.com", "expert").await;
    let (_, sue) = app.staff_token("sue@example.com", "supervisor").await;
    let id = handed_over(&app, "v-transfer").await;
    let claimed = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/claim"),
            &ana,
            None,
        )
        .await;
    assert_eq!(claimed.0, 200, "{}", claimed.1);
    let messages = app.count("messages").await;

    // Ben is away: Ana cannot hand it to him, and nothing changes.
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/transfer"),
            &ana,
            Some(json!({"to": ben_id})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("conflict")),
        "{body}"
    );
    assert_eq!(
        owner_of(&app, &sue, &id).await.as_deref(),
        Some(ana_id.as_str())
    );
    assert_eq!(app.count("messages").await, messages, "no notice was sent");
    // Nobody by that id.
    let (status, _) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/transfer"),
            &ana,
            Some(json!({"to": "no-such-user"})),
        )
        .await;
    assert_eq!(status, 422);

    // A supervisor gives a waiting conversation to Ben, away or not.
    let waiting = handed_over(&app, "v-waiting").await;
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{waiting}/transfer"),
            &sue,
            Some(json!({"to": ben_id})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        owner_of(&app, &sue, &waiting).await.as_deref(),
        Some(ben_id.as_str())
    );
    // An expert cannot: a waiting conversation is claimed, not handed on.
    let third = handed_over(&app, "v-third").await;
    let (status, _) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{third}/transfer"),
            &ana,
            Some(json!({"to": ben_id})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(owner_of(&app, &sue, &third).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_end_when_access_ends() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let id = handed_over(&app, "v-watch").await;
    let (_, ana) = app.staff_token("ana@example.com", "expert").await;
    let (ben_id, ben) = app.staff_token("ben@example.com", "expert").await;
    let (_, sue) = app.staff_token("sue@example.com", "supervisor").await;
    let (_, adm) = app.staff_token("adm@example.com", "admin").await;
    let stream = |token: &str, path: String| {
        let request = app.as_staff(Method::GET, &path, token);
        async move { request.send().await.unwrap() }
    };
    let events = format!("/v1/expert/conversations/{id}/events");

    // Ana watches the waiting conversation; Ben claims it, so it is no longer Ana's to see.
    let mut anas = crate::helpers::SseReader::new(stream(&ana, events.clone()).await);
    anas.until(Duration::from_secs(5), |e| e.name() == "message")
        .await;
    let (status, _) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/claim"),
            &ben,
            None,
        )
        .await;
    assert_eq!(status, 200);
    anas.collect(Duration::from_secs(10)).await;
    let again = stream(&ana, events.clone()).await;
    assert_eq!(
        again.status(),
        404,
        "reconnecting shows what a new request would"
    );

    // Ben watches it and his notices; an admin disables his account: both streams end, his
    // conversation goes back to the queue, and his token stops working.
    let bens = crate::helpers::SseReader::new(stream(&ben, events.clone()).await);
    let mut notices =
        crate::helpers::SseReader::new(stream(&ben, "/v1/expert/events".into()).await);
    notices
        .until(Duration::from_secs(5), |e| e.name() == "hello")
        .await;
    let (status, body) = app
        .staff_call(
            Method::DELETE,
            &format!("/v1/admin/users/{ben_id}"),
            &adm,
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    bens.collect(Duration::from_secs(10)).await;
    notices.collect(Duration::from_secs(10)).await;
    assert_eq!(owner_of(&app, &sue, &id).await, None, "back in the queue");
    let (_, queue) = app
        .staff_call(Method::GET, "/v1/expert/queue", &sue, None)
        .await;
    assert_eq!(queue["conversations"][0]["conversation"]["id"], id.as_str());
    let (status, _) = app
        .staff_call(Method::GET, "/v1/expert/queue", &ben, None)
        .await;
    assert_eq!(status, 401);

    // A supervisor's observation lasts while the supervisor may observe.
    let observing = crate::helpers::SseReader::new(
        stream(&sue, format!("/v1/supervisor/conversations/{id}/observe")).await,
    );
    let sue_id = app
        .staff_call(Method::GET, "/v1/expert/me", &sue, None)
        .await
        .1["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = app
        .staff_call(
            Method::DELETE,
            &format!("/v1/admin/users/{sue_id}"),
            &adm,
            None,
        )
        .await;
    assert_eq!(status, 204);
    observing.collect(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_access_is_audited_and_supervisors_observe_and_search() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let id = handed_over(&app, "v-audit").await;
    let (ana_id, ana) = app.staff_token("ana@example.com", "expert").await;
    let (sue_id, sue) = app.staff_token("sue@example.com", "supervisor").await;
    let (_, adm) = app.staff_token("adm@example.com", "admin").await;
    app.staff_call(
        Method::POST,
        &format!("/v1/expert/conversations/{id}/claim"),
        &ana,
        None,
    )
    .await;
    app.staff_call(
        Method::GET,
        &format!("/v1/expert/conversations/{id}"),
        &ana,
        None,
    )
    .await;
    app.staff_call(
        Method::POST,
        &format!("/v1/expert/conversations/{id}/messages"),
        &ana,
        Some(json!({"content": "Hello from Ana"})),
    )
    .await;

    // A supervisor observes: an observer marker, the history replayed, then live messages.
    let response = app
        .as_staff(
            Method::GET,
            &format!("/v1/supervisor/conversations/{id}/observe"),
            &sue,
        )
        .header("user-agent", "observer-test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = crate::helpers::SseReader::new(response);
    let first = events.expect(Duration::from_secs(5)).await;
    assert_eq!(first.name(), "observer");
    let mut replayed = Vec::new();
    while replayed.len() < 5 {
        let event = events.expect(Duration::from_secs(5)).await;
        if event.name() == "message" {
            let message: Value = serde_json::from_str(&event.data).unwrap();
            replayed.push(message["content"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(replayed[0], "hello");
    assert_eq!(replayed[4], "Hello from Ana");
    app.send_later(
        "v-audit",
        json!({"conversation_id": id, "content": "thanks!"}),
    )
    .await;
    let live = loop {
        let event = events.expect(Duration::from_secs(5)).await;
        if event.name() == "message" {
            break event;
        }
    };
    assert!(live.data.contains("thanks!"));

    // Contacts are found by their channel id; a contact's conversations are listed.
    let (status, found) = app
        .staff_call(Method::GET, "/v1/supervisor/contacts?q=V-AUDIT", &sue, None)
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 1);
    let contact = found["contacts"][0]["id"].as_str().unwrap().to_owned();
    let (status, listed) = app
        .staff_call(
            Method::GET,
            &format!("/v1/supervisor/users/{contact}/conversations"),
            &sue,
            None,
        )
        .await;
    assert_eq!((status, &listed["total"]), (200, &json!(1)), "{listed}");
    let (_, live_list) = app
        .staff_call(Method::GET, "/v1/supervisor/conversations", &sue, None)
        .await;
    assert_eq!(live_list["total"], 1);
    // Conversations as everywhere else, with the end user's name.
    let listed = &live_list["conversations"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["mode"], "expert");
    assert!(listed.get("contact_name").is_some(), "{listed}");

    // The admin reads who did what, from where.
    let (status, log) = app
        .staff_call(
            Method::GET,
            &format!("/v1/admin/audit?conversation={id}"),
            &adm,
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let entries: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor_id"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        (ana_id.clone(), "claim"),
        (ana_id.clone(), "view"),
        (ana_id.clone(), "reply"),
        (sue_id.clone(), "observe"),
    ] {
        assert!(
            entries
                .iter()
                .any(|(actor, action)| *actor == expected.0 && action == expected.1),
            "{expected:?} missing from {entries:?}"
        );
    }
    let observed = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "observe")
        .unwrap();
    assert_eq!(observed["remote_addr"], "127.0.0.1");
    assert_eq!(observed["user_agent"], "observer-test");
}

/// The one conversation an expert has.
async fn reply_to_conversation(app: &TestApp, token: &str) -> String {
    let (_, mine) = app
        .staff_call(Method::GET, "/v1/expert/conversations", token, None)
        .await;
    mine["conversations"][0]["conversation"]["id"]
        .as_str()
        .expect("a conversation")
        .to_owned()
}

/// The (signature, body) pairs a webhook receiver got.
type Hooked = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A web server that records the JSON bodies and signatures POSTed to it.
async fn webhook_receiver() -> (crate::helpers::fake::FakeServer, Hooked) {
    use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
    let seen: Hooked = Default::default();
    let record = seen.clone();
    let router = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let record = record.clone();
            async move {
                let signature = headers
                    .get("x-switchboard-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                record.lock().unwrap().push((signature, body.to_vec()));
                "ok"
            }
        }),
    );
    (crate::helpers::fake::serve(router).await, seen)
}

/// A file an expert mails a website visitor is theirs to fetch (and nobody else's), and goes when
/// they erase themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_fetches_the_file_their_expert_mailed_and_takes_it_along_when_erased() {
    let smtp = crate::helpers::smtp::FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |config| {
        config.set(
            "email.from",
            "Switchboard Support <support@mail.example.com>",
        );
        config.set("email.smtp_url", smtp.url());
        config.set("email.raw_secret", "raw-secret");
    })
    .await;
    let (_, ana) = app.staff_token("ana@example.com", "expert").await;
    app.staff_call(
        Method::PUT,
        "/v1/expert/me/availability",
        &ana,
        Some(json!({"available": true})),
    )
    .await;
    let id = handed_over(&app, "visitor-1").await;
    let notification = smtp.wait_for(1).await.remove(0);
    let token = notification
        .header("Reply-To")
        .unwrap()
        .split('+')
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .unwrap()
        .to_owned();
    let mail = format!(
        "From: Ana <ana@example.com>\r\nTo: support+{token}@mail.example.com\r\n\
         Subject: Re: help\r\nMessage-ID: <file-1@example.com>\r\n\
         Date: Tue, 11 Nov 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour invoice.\r\n\
         --b1\r\nContent-Type: application/pdf\r\n\
         Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IK\r\n--b1--\r\n"
    );
    let (status, body) = app.email(mail.as_bytes()).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");

    let (status, page) = app
        .get(
            "visitor-1",
            &format!("/v1/conversations/{id}/messages?limit=100"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let anas = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "expert" && m["content"] == "Your invoice.")
        .unwrap_or_else(|| panic!("Ana's message: {page}"));
    let media_id = anas["attachments"][0]["media_id"].as_str().unwrap();
    let fetch = |device: &'static str| {
        app.request(Method::GET, &format!("/v1/media/{media_id}"), device)
            .send()
    };
    let served = fetch("visitor-1").await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/pdf");
    assert!(served.bytes().await.unwrap().starts_with(b"%PDF"));
    let other = fetch("visitor-2").await.unwrap();
    assert_eq!(other.status(), 404, "another visitor does not get it");

    let erased = app
        .request(Method::DELETE, "/v1/me", "visitor-1")
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 204);
    assert_eq!(
        app.count("media").await,
        0,
        "the file went with the visitor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_user_gets_the_experts_emailed_reply_on_whatsapp() {
    let graph = crate::helpers::graph::FakeGraph::start().await;
    let smtp = crate::helpers::smtp::FakeSmtp::start().await;
    let (hook, hooked) = webhook_receiver().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |config| {
        config.set("whatsapp.app_secret", "wa-secret");
        config.set("whatsapp.verify_token", "wa-verify");
        config.set("whatsapp.access_token", "wa-token");
        config.set("whatsapp.api_base", graph.base_url());
        config.set(
            "email.from",
            "Switchboard Support <support@mail.example.com>",
        );
        config.set("email.smtp_url", smtp.url());
        config.set("email.raw_secret", "raw-secret");
        config.experts.webhook_url = Some(format!("http://{}/hook", hook.address));
        config.experts.webhook_secret = Some("hook-secret".into());
    })
    .await;
    let (ana_id, ana) = app.staff_token("ana@example.com", "expert").await;
    app.staff_call(
        Method::PUT,
        "/v1/expert/me/availability",
        &ana,
        Some(json!({"available": true})),
    )
    .await;

    // The WhatsApp user asks for a person.
    let asking = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": "wamid.human.1",
                "timestamp": chrono::Utc::now().timestamp().to_string(),
                "type": "text", "text": {"body": "I want to talk to a human please"}}]
        }}]}]
    }))
    .unwrap();
    let (status, body) = app.whatsapp(&asking).await;
    assert_eq!(status, 200, "{body}");

    // Ana is mailed the conversation, with a reply address bound to it and to her.
    let notification = smtp.wait_for(1).await.remove(0);
    assert_eq!(notification.to, ["ana@example.com"]);
    assert!(
        notification.data.contains("Sheena Nelson"),
        "{}",
        notification.data
    );
    assert!(notification.data.contains("talk to a human please"));
    let reply_to = notification.header("Reply-To").unwrap();
    let token = reply_to
        .split('+')
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .unwrap()
        .to_owned();
    // The integration's webhook heard of it too, signed.
    let (signature, hooked_body) = app
        .eventually(
            Duration::from_secs(10),
            "the assignment webhook",
            || async { hooked.lock().unwrap().first().cloned() },
        )
        .await;
    assert_eq!(
        signature,
        switchboard::experts::notify::sign(&hooked_body, "hook-secret")
    );
    let notice: Value = serde_json::from_slice(&hooked_body).unwrap();
    assert_eq!(notice["event"], "conversation.assigned");
    assert_eq!(notice["expert"]["id"], ana_id.as_str());
    assert_eq!(notice["contact"]["name"], "Sheena Nelson");

    // Someone else answers the notification: refused, nothing reaches the user.
    let mail = |from: &str, id: &str, text: &str| {
        format!(
            "From: {from}\r\nTo: support+{token}@mail.example.com\r\nSubject: Re: {subject}\r\n\
             Message-ID: <{id}>\r\nDate: Tue, 11 Nov 2025 10:00:00 +0000\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\r\n\
             On Tue, 11 Nov 2025 at 10:00, Switchboard Support <support@mail.example.com> wrote:\r\n\
             > I want to talk to a human please\r\n",
            subject = notification.header("Subject").unwrap_or_default(),
        )
        .into_bytes()
    };
    // A mail with a file, from `from`.
    let with_file = |from: &str, id: &str, text: &str| {
        format!(
            "From: {from}\r\nTo: support+{token}@mail.example.com\r\n\
             Subject: Re: help\r\nMessage-ID: <{id}>\r\n\
             Date: Tue, 11 Nov 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
             --b1\r\nContent-Type: application/pdf\r\n\
             Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IK\r\n--b1--\r\n"
        )
        .into_bytes()
    };
    // A mail that is refused, and nothing of which is kept.
    let refused = |mail: Vec<u8>| {
        let app = &app;
        async move {
            let (status, body) = app.email(&mail).await;
            assert_eq!(
                (status, &body["status"]),
                (200, &json!("refused")),
                "{body}"
            );
            assert_eq!(
                app.count("media").await,
                0,
                "nothing of a refused mail is kept"
            );
        }
    };
    refused(with_file(
        "Mallory <mallory@example.net>",
        "m1@example.net",
        "Give me your data",
    ))
    .await;

    // Ana answers by e-mail: her new text reaches the user on WhatsApp.
    let anas = mail(
        "Ana <ana@example.com>",
        "a1@example.com",
        "Hello Sheena, this is Ana. How can I help?",
    );
    let (status, body) = app.email(&anas).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    // A redelivery of the same mail is not posted twice.
    let (_, again) = app.email(&anas).await;
    assert_eq!(again["status"], "refused", "{again}");
    graph
        .wait(
            || {
                graph
                    .message_requests()
                    .iter()
                    .any(|r| r.body["text"]["body"] == "Hello Sheena, this is Ana. How can I help?")
            },
            "the expert's reply on WhatsApp",
        )
        .await;
    app.all_delivered().await;
    let texts: Vec<String> = graph
        .message_requests()
        .iter()
        .filter_map(|r| r.body["text"]["body"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !texts.iter().any(|t| t.contains("Give me your data")),
        "{texts:?}"
    );
    assert_eq!(
        texts.iter().filter(|t| t.contains("this is Ana")).count(),
        1,
        "{texts:?}"
    );
    // The user was told on WhatsApp that a person was coming, and who joined.
    assert!(texts.iter().any(|t| t.contains("expert")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("has joined")), "{texts:?}");

    // Once the conversation is closed, Ana's mail is refused too — and its file is not kept.
    let conversation = reply_to_conversation(&app, &ana).await;
    let (status, _) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{conversation}/close"),
            &ana,
            None,
        )
        .await;
    assert_eq!(status, 200);
    refused(with_file(
        "Ana <ana@example.com>",
        "a2@example.com",
        "One more thing",
    ))
    .await;

    // The audit log has Ana's reply by e-mail, and the refusals.
    let (_, adm) = app.staff_token("adm@example.com", "admin").await;
    let (_, log) = app
        .staff_call(
            Method::GET,
            &format!("/v1/admin/audit?actor={ana_id}"),
            &adm,
            None,
        )
        .await;
    let entries = log["entries"].as_array().unwrap();
    let reply = entries.iter().find(|e| e["action"] == "reply").unwrap();
    assert_eq!(reply["detail"]["via"], "email");
    let refused: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "reply_refused")
        .collect();
    assert_eq!(refused.len(), 3, "{log}");
    assert!(
        refused
            .iter()
            .any(|e| e["detail"]["from"] == "mallory@example.net"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_token_stays_valid_across_a_restart() {
    // No staff.jwt_secret: the gateway generates one once and keeps it in the database.
    let app = TestApp::spawn(&Backend::Sqlite).await;
    assert!(app.config.staff.jwt_secret.is_none());
    let (_, ana) = app.staff_token("ana@example.com", "expert").await;
    let config = app.config.clone();
    let db = app.stop().await;
    let mut again = TestApp::start(config, switchboard::time::Clock::system()).await;
    again.keep(db);
    let (status, me) = again
        .staff_call(Method::GET, "/v1/expert/me", &ana, None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["email"], "ana@example.com");
}
