//! Data subject rights end to end: a visitor exports and erases their own data, admins export,
//! correct and erase any contact, and after an erasure nothing of the contact is left — no row
//! in any table, no file — while the next message from the same address starts afresh.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::{
    config::{AgentConfig, Config},
    store::{Db, query},
};

use crate::{
    both_backends,
    helpers::{Backend, TestApp, graph::FakeGraph, json_response},
};

both_backends!(
    an_admin_exports_then_erases_a_whatsapp_contact_and_nothing_is_left,
    a_visitor_exports_and_erases_their_own_data,
    the_contact_routes_are_for_admins_only,
    an_admin_corrects_a_contact_and_bad_corrections_change_nothing,
    erasing_a_contact_an_expert_holds_ends_the_experts_access,
    a_file_two_contacts_sent_stays_until_neither_needs_it,
    a_reply_being_written_for_an_erased_visitor_is_not_stored,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitors_exports_and_erasures_count_against_their_rate() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.limits.visitor.messages_per_minute = 3
    })
    .await;
    let (status, body) = app.send("dev-a", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, export) = app.get("dev-a", "/v1/me/export").await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["conversations"].as_array().map(Vec::len), Some(1));
    let erased = |device: &'static str| app.request(Method::DELETE, "/v1/me", device).send();
    assert_eq!(erased("dev-a").await.unwrap().status(), 204);
    // The fourth request of the minute is refused, and changes nothing.
    let response = app
        .request(Method::GET, "/v1/me/export", "dev-a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let (_, body) = json_response(response).await;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(erased("dev-a").await.unwrap().status(), 429);
    // Another visitor is not held back.
    let (status, body) = app.send("dev-b", json!({"content": "hi"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, export) = app.get("dev-b", "/v1/me/export").await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["conversations"].as_array().map(Vec::len), Some(1));
    assert_eq!(app.count("contacts").await, 1, "dev-a erased, dev-b kept");
}

const NUMBER: &str = "106540352242922";
const USER: &str = "16505551234";
const OPERATOR: &str = "test-operator-token";

/// Points the WhatsApp channel at the fake, with evaluations of every AI reply on.
fn on_whatsapp(graph: &FakeGraph) -> impl FnOnce(&mut Config) + '_ {
    move |config: &mut Config| {
        config.set("whatsapp.app_secret", "test-app-secret");
        config.set("whatsapp.verify_token", "test-verify-token");
        config.set("whatsapp.access_token", "test-access-token");
        config.set("whatsapp.api_base", graph.base_url());
        config.server.admin_token = Some(OPERATOR.into());
        config.evaluations.enabled = true;
    }
}

/// A WhatsApp text message webhook from `from`, written at the gateway's time.
fn text(app: &TestApp, from: &str, id: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": from}],
            "messages": [{"from": from, "id": id,
                "timestamp": app.clock.now().to_datetime().timestamp().to_string(),
                "type": "text", "text": {"body": body}}]
        }}]}]
    }))
    .unwrap()
}

/// The image fixture (from [`USER`]), as if sent just now.
fn image() -> Vec<u8> {
    let path = format!(
        "{}/webhooks/whatsapp/image.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    switchboard_whatsapp::refresh_whatsapp(&body, chrono::Utc::now().timestamp(), false)
        .expect("a WhatsApp payload")
}

/// One text column of the rows a query selects.
async fn texts(app: &TestApp, sql: String, bind: &str) -> Vec<String> {
    let rows: Vec<(String,)> = app
        .store
        .reader()
        .fetch_all(query(Box::leak(sql.into_boxed_str())).bind(bind))
        .await
        .unwrap();
    rows.into_iter().map(|(t,)| t).collect()
}

/// How many rows a query counts.
async fn count(app: &TestApp, sql: String, bind: &str) -> i64 {
    let (n,): (i64,) = app
        .store
        .reader()
        .fetch_one(query(Box::leak(sql.into_boxed_str())).bind(bind))
        .await
        .unwrap();
    n
}

/// Waits until no job of any queue is left (answers delivered, files downloaded, replies
/// evaluated).
async fn all_jobs_done(app: &TestApp) {
    app.all_answered().await;
    app.eventually(Duration::from_secs(20), "every job to finish", || async {
        (count(app, "SELECT COUNT(*) FROM jobs WHERE $1 = $1".into(), "x").await == 0).then_some(())
    })
    .await;
}

/// Every row in any table that names one of a contact's ids (the contact, its conversations,
/// their messages), by table.
async fn rows_naming(
    app: &TestApp,
    contact: &str,
    conversations: &[String],
    messages: &[String],
) -> Vec<String> {
    let mut found = Vec::new();
    let mut check = async |table: &str, sql: &str, id: &str| {
        let n = count(app, format!("SELECT COUNT(*) FROM {table} WHERE {sql}"), id).await;
        if n > 0 {
            found.push(format!("{table} ({n}) for {id}"));
        }
    };
    check("contacts", "id = $1", contact).await;
    check("conversations", "contact_id = $1", contact).await;
    check("usage", "contact_id = $1", contact).await;
    for conversation in conversations {
        for (table, sql) in [
            ("conversations", "id = $1"),
            ("messages", "conversation_id = $1"),
            ("pending_turns", "conversation_id = $1"),
            ("thread_tokens", "conversation_id = $1"),
            ("jobs", "lane = $1 OR subject LIKE $1 || '/%'"),
        ] {
            check(table, sql, conversation).await;
        }
    }
    for message in messages {
        for (table, sql) in [
            ("messages", "id = $1"),
            ("media", "message_id = $1"),
            ("evaluations", "message_id = $1"),
            ("message_parts", "message_id = $1"),
            ("idempotency_keys", "message_id = $1"),
            ("usage", "message_id = $1"),
            ("jobs", "subject = $1 OR lane = $1"),
        ] {
            check(table, sql, message).await;
        }
    }
    found
}

async fn an_admin_exports_then_erases_a_whatsapp_contact_and_nothing_is_left(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    let (admin_id, admin) = app.staff_token("root@example.com", "admin").await;
    let photo: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    graph.add_media("1003383421387256", &photo, "image/jpeg");
    let (status, body) = app
        .whatsapp(&text(&app, USER, "wamid.first", "my card ends in 4242"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.whatsapp(&image()).await;
    assert_eq!(status, 200, "{body}");
    // Someone else, who must be neither exported nor erased with them.
    let (status, _) = app
        .send("bystander", json!({"content": "bystander's own words"}))
        .await;
    assert_eq!(status, 200);
    all_jobs_done(&app).await;

    let contact = texts(
        &app,
        "SELECT id FROM contacts WHERE channel = $1".into(),
        "whatsapp",
    )
    .await
    .remove(0);
    let conversations = texts(
        &app,
        "SELECT id FROM conversations WHERE contact_id = $1".into(),
        &contact,
    )
    .await;
    let messages = texts(
        &app,
        "SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id \
         WHERE c.contact_id = $1"
            .into(),
        &contact,
    )
    .await;
    let paths = texts(&app, "SELECT path FROM media WHERE $1 = $1".into(), "x").await;
    assert_eq!(paths.len(), 1, "the photo is stored");
    let file = app.config.media.dir.join(&paths[0]);
    assert!(file.exists());
    assert!(
        count(
            &app,
            "SELECT COUNT(*) FROM evaluations WHERE $1 = $1".into(),
            "x"
        )
        .await
            > 0,
        "AI replies were evaluated"
    );

    // The export holds the contact, its messages, the photo's description and evaluations.
    let response = app
        .as_staff(
            Method::GET,
            &format!("/v1/admin/contacts/{contact}/export"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let export: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(export["contact"]["id"], contact.as_str());
    assert_eq!(export["contact"]["external_id"], USER);
    assert_eq!(export["contact"]["display_name"], "Sheena Nelson");
    let exported = export["conversations"].as_array().unwrap();
    assert_eq!(exported.len(), 1);
    let exported_messages = exported[0]["messages"].as_array().unwrap();
    assert_eq!(exported_messages.len(), messages.len());
    assert!(
        exported_messages
            .iter()
            .any(|m| m["content"] == "my card ends in 4242")
    );
    let with_file = exported_messages
        .iter()
        .find(|m| m["files"].as_array().is_some_and(|f| !f.is_empty()))
        .expect("the photo's message lists its file");
    assert_eq!(with_file["files"][0]["mime_type"], "image/jpeg");
    assert_eq!(with_file["files"][0]["size"], photo.len());
    assert!(
        exported_messages
            .iter()
            .any(|m| m["evaluations"].as_array().is_some_and(|e| !e.is_empty())),
        "{exported_messages:?}"
    );
    assert!(!export.to_string().contains("bystander"));

    // Erased: no row names the contact or anything of it, and the file is gone.
    let (status, body) = app
        .staff_call(
            Method::DELETE,
            &format!("/v1/admin/contacts/{contact}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        rows_naming(&app, &contact, &conversations, &messages).await,
        Vec::<String>::new()
    );
    assert!(!file.exists(), "the photo's file is deleted");
    assert_eq!(app.count("media").await, 0);
    assert_eq!(app.count("contacts").await, 1, "the bystander stays");
    assert_eq!(
        app.count("messages").await,
        2,
        "the bystander's messages stay"
    );

    // The erasure is audited: who, which contact, how much — not what was said or the number.
    let (status, log) = app
        .staff_call(Method::GET, "/v1/admin/audit", &admin, None)
        .await;
    assert_eq!(status, 200);
    let entry = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "erase_contact")
        .expect("an erasure entry")
        .clone();
    assert_eq!(entry["actor_id"], admin_id.as_str());
    assert_eq!(entry["detail"]["contact_id"], contact.as_str());
    assert_eq!(entry["detail"]["messages"], messages.len());
    let logged = log.to_string();
    assert!(!logged.contains("4242"), "{logged}");
    assert!(!logged.contains(USER), "{logged}");
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "export_contact"
                && e["detail"]["contact_id"] == contact.as_str())
    );

    // Gone for good.
    let (status, _) = app
        .staff_call(
            Method::DELETE,
            &format!("/v1/admin/contacts/{contact}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .staff_call(
            Method::GET,
            &format!("/v1/admin/contacts/{contact}/export"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 404);

    // The same number writes again: a new contact and conversation, answered as usual.
    let (status, body) = app
        .whatsapp(&text(&app, USER, "wamid.again", "hello again"))
        .await;
    assert_eq!(status, 200, "{body}");
    all_jobs_done(&app).await;
    let again = texts(
        &app,
        "SELECT id FROM contacts WHERE channel = $1".into(),
        "whatsapp",
    )
    .await;
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], contact);
    let threads = texts(
        &app,
        "SELECT id FROM conversations WHERE contact_id = $1".into(),
        &again[0],
    )
    .await;
    assert_eq!(threads.len(), 1);
    assert!(!conversations.contains(&threads[0]));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM messages WHERE conversation_id = $1".into(),
            &threads[0]
        )
        .await,
        2,
        "the message and its answer, nothing older"
    );
}

async fn a_visitor_exports_and_erases_their_own_data(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let send_keyed = |device: &'static str, key: &'static str, content: &'static str| {
        let request = app
            .request(Method::POST, "/v1/chat/messages", device)
            .header("Idempotency-Key", key)
            .json(&json!({"content": content}));
        async move { json_response(request.send().await.unwrap()).await }
    };
    let (status, first) = send_keyed("dev-a", "k1", "my secret is 42").await;
    assert_eq!(status, 200, "{first}");
    let (status, _) = app
        .send(
            "dev-a",
            json!({"content": "and more", "conversation_id": first["conversation_id"]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.send("dev-b", json!({"content": "other person"})).await;
    assert_eq!(status, 200);

    // Nothing is stored about a visitor who never wrote.
    let (status, nothing) = app.get("dev-z", "/v1/me/export").await;
    assert_eq!(status, 200);
    assert!(nothing["contact"].is_null());
    assert_eq!(nothing["conversations"], json!([]));

    let (status, export) = app.get("dev-a", "/v1/me/export").await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["contact"]["channel"], "web");
    let messages = export["conversations"][0]["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        4,
        "two messages and two replies: {messages:?}"
    );
    assert_eq!(messages[0]["content"], "my secret is 42");
    assert_eq!(messages[1]["role"], "ai");
    assert!(!export.to_string().contains("other person"));

    let response = app
        .request(Method::DELETE, "/v1/me", "dev-a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (_, listed) = app.get("dev-a", "/v1/conversations").await;
    assert_eq!(listed["total"], 0);
    let (_, export) = app.get("dev-a", "/v1/me/export").await;
    assert!(export["contact"].is_null());
    assert_eq!(app.count("contacts").await, 1);
    assert_eq!(app.count("messages").await, 2, "dev-b's message and reply");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM idempotency_keys WHERE external_id <> $1".into(),
            "dev-b"
        )
        .await,
        0
    );

    // Audited as the visitor's own act, with no content and no client address.
    let (n, detail, remote): (i64, String, Option<String>) = app
        .store
        .reader()
        .fetch_one(query(
            "SELECT COUNT(*), MAX(CAST(detail AS TEXT)), MAX(remote_addr) FROM audit_log \
             WHERE action = 'erase_contact' AND actor_role = 'visitor'",
        ))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(!detail.contains("secret"), "{detail}");
    assert!(detail.contains("\"messages\""), "{detail}");
    assert!(remote.is_none());

    // Erasing again finds nothing, and succeeds.
    let response = app
        .request(Method::DELETE, "/v1/me", "dev-a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    // The same device and the same idempotency key start afresh: a new message, not the old one.
    let (status, again) = send_keyed("dev-a", "k1", "a new start").await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["conversation_id"], first["conversation_id"]);
    assert_ne!(again["message"]["id"], first["message"]["id"]);
    assert_eq!(again["message"]["seq"], 1);
    assert_eq!(
        again["reply"]["content"].as_str().map(str::is_empty),
        Some(false)
    );
}

async fn the_contact_routes_are_for_admins_only(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let (_, expert) = app.staff_token("ana@example.com", "expert").await;
    let (_, supervisor) = app.staff_token("sue@example.com", "supervisor").await;
    let (_, admin) = app.staff_token("root@example.com", "admin").await;
    app.send("dev-1", json!({"content": "hello"})).await;
    let contact = texts(
        &app,
        "SELECT id FROM contacts WHERE channel = $1".into(),
        "web",
    )
    .await
    .remove(0);
    let routes = [
        (Method::GET, format!("/v1/admin/contacts/{contact}/export")),
        (Method::DELETE, format!("/v1/admin/contacts/{contact}")),
        (Method::PATCH, format!("/v1/admin/contacts/{contact}")),
    ];
    for (method, path) in &routes {
        let body = json!({"display_name": "Changed"});
        let anonymous = app
            .client
            .request(method.clone(), app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {path}");
        let (status, answer) = json_response(
            app.request(method.clone(), path, "dev-1")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "a visitor on {method} {path}");
        assert_eq!(answer["error"]["code"], "forbidden");
        for token in [&expert, &supervisor] {
            let (status, answer) = app
                .staff_call(method.clone(), path, token, Some(body.clone()))
                .await;
            assert_eq!(status, 403, "{method} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "forbidden");
        }
    }
    // Nothing changed.
    assert_eq!(app.count("contacts").await, 1);
    assert_eq!(app.count("messages").await, 2);
    let (_, export) = app.get("dev-1", "/v1/me/export").await;
    assert!(export["contact"]["display_name"].is_null());
    // An admin on a contact that does not exist.
    for (method, _) in routes {
        let path = match method {
            Method::GET => "/v1/admin/contacts/nobody/export",
            _ => "/v1/admin/contacts/nobody",
        };
        let (status, answer) = app
            .staff_call(method, path, &admin, Some(json!({"display_name": "X"})))
            .await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
}

async fn an_admin_corrects_a_contact_and_bad_corrections_change_nothing(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    let (_, admin) = app.staff_token("root@example.com", "admin").await;
    app.whatsapp(&text(&app, USER, "wamid.one", "hi")).await;
    app.whatsapp(&text(&app, "16505550000", "wamid.two", "hi too"))
        .await;
    app.send("dev-1", json!({"content": "hello"})).await;
    let id_of = async |external: &str| {
        texts(
            &app,
            "SELECT id FROM contacts WHERE external_id = $1".into(),
            external,
        )
        .await
        .remove(0)
    };
    let contact = id_of(USER).await;
    let web = texts(
        &app,
        "SELECT id FROM contacts WHERE channel = $1".into(),
        "web",
    )
    .await
    .remove(0);
    let path = format!("/v1/admin/contacts/{contact}");

    let (status, body) = app
        .staff_call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"display_name": "  Sheena N.  ", "username": "sheena"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["contact"]["display_name"], "Sheena N.");
    assert_eq!(body["contact"]["username"], "sheena");
    assert_eq!(body["contact"]["external_id"], USER);

    let bad = [
        (json!({}), 422),
        (json!({"display_name": ""}), 422),
        (json!({"display_name": "bell\u{7}"}), 422),
        (json!({"display_name": "x".repeat(201)}), 422),
        (json!({"username": "two words"}), 422),
        (json!({"external_id": null}), 422),
        (json!({"external_id": "1650 555"}), 422),
        (json!({"external_id": "x".repeat(321)}), 422),
        (json!({"display_name": 5}), 422),
        (json!({"nickname": "S"}), 422),
        (json!({"external_id": "16505550000"}), 409),
    ];
    for (body, expected) in bad {
        let (status, answer) = app
            .staff_call(Method::PATCH, &path, &admin, Some(body.clone()))
            .await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (status, answer) = app
        .staff_call(
            Method::PATCH,
            &format!("/v1/admin/contacts/{web}"),
            &admin,
            Some(json!({"external_id": "dev-2"})),
        )
        .await;
    assert_eq!(status, 422, "a visitor's identity is theirs: {answer}");
    let (_, export) = app
        .staff_call(Method::GET, &format!("{path}/export"), &admin, None)
        .await;
    assert_eq!(export["contact"]["display_name"], "Sheena N.");
    assert_eq!(export["contact"]["external_id"], USER);

    // A name cleared, an address corrected: the next message from the new number is theirs.
    let (status, body) = app
        .staff_call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"display_name": null, "external_id": "16505559999"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["contact"]["display_name"].is_null());
    assert_eq!(body["contact"]["external_id"], "16505559999");
    app.whatsapp(&text(&app, "16505559999", "wamid.three", "new phone"))
        .await;
    assert_eq!(id_of("16505559999").await, contact);
    assert_eq!(app.count("contacts").await, 3);

    // Audited with the fields, not the values.
    let (_, log) = app
        .staff_call(Method::GET, "/v1/admin/audit", &admin, None)
        .await;
    let corrections: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "correct_contact")
        .collect();
    assert_eq!(corrections.len(), 2, "only the accepted corrections");
    assert_eq!(
        corrections[1]["detail"]["fields"],
        json!(["display_name", "username"])
    );
    assert!(!log.to_string().contains("Sheena N."));
    assert!(!log.to_string().contains("16505559999"));
}

async fn erasing_a_contact_an_expert_holds_ends_the_experts_access(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let (_, ana) = app.staff_token("ana@example.com", "expert").await;
    let (_, admin) = app.staff_token("root@example.com", "admin").await;
    let (_, body) = app
        .send("dev-1", json!({"content": "I need a person"}))
        .await;
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    let (status, _) = app.handoff("dev-1", &id).await;
    assert_eq!(status, 200);
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/claim"),
            &ana,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let contact = texts(
        &app,
        "SELECT contact_id FROM conversations WHERE id = $1".into(),
        &id,
    )
    .await
    .remove(0);

    let (status, _) = app
        .staff_call(
            Method::DELETE,
            &format!("/v1/admin/contacts/{contact}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .staff_call(
            Method::GET,
            &format!("/v1/expert/conversations/{id}"),
            &ana,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/messages"),
            &ana,
            Some(json!({"content": "are you still there?"})),
        )
        .await;
    assert_eq!(status, 404);
    let (_, mine) = app
        .staff_call(Method::GET, "/v1/expert/conversations", &ana, None)
        .await;
    assert!(!mine.to_string().contains(&id), "{mine}");
    assert_eq!(app.count("messages").await, 0);
    // The audit trail of the expert's work stays, without its details.
    let (n,): (i64,) = app
        .store
        .reader()
        .fetch_one(
            query("SELECT COUNT(*) FROM audit_log WHERE conversation_id = $1 AND action = 'claim'")
                .bind(id.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

async fn a_file_two_contacts_sent_stays_until_neither_needs_it(backend: Backend) {
    let graph = FakeGraph::start().await;
    let app = TestApp::spawn_with(&backend, on_whatsapp(&graph)).await;
    let (_, admin) = app.staff_token("root@example.com", "admin").await;
    graph.add_media("1003383421387256", b"the same picture", "image/jpeg");
    app.whatsapp(&image()).await;
    // Another number forwards the very same picture: stored once, on the same path.
    let forwarded = String::from_utf8(image())
        .unwrap()
        .replace(USER, "16505550000")
        .replace(
            "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQwRTc2MjkyNzk0ODg4RDRGMUZBNwA=",
            "wamid.forwarded",
        );
    app.whatsapp(forwarded.as_bytes()).await;
    all_jobs_done(&app).await;
    let paths = texts(
        &app,
        "SELECT DISTINCT path FROM media WHERE $1 = $1".into(),
        "x",
    )
    .await;
    assert_eq!(paths.len(), 1, "one file for both");
    assert_eq!(app.count("media").await, 2);
    let file = app.config.media.dir.join(&paths[0]);

    let erase = async |number: &str| {
        let contact = texts(
            &app,
            "SELECT id FROM contacts WHERE external_id = $1".into(),
            number,
        )
        .await
        .remove(0);
        let (status, body) = app
            .staff_call(
                Method::DELETE,
                &format!("/v1/admin/contacts/{contact}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(status, 204, "{body}");
    };
    erase(USER).await;
    assert!(
        file.exists(),
        "the other contact's message still needs the file"
    );
    assert_eq!(app.count("media").await, 1);
    erase("16505550000").await;
    assert!(!file.exists(), "nobody needs the file any more");
    assert_eq!(app.count("media").await, 0);
}

async fn a_reply_being_written_for_an_erased_visitor_is_not_stored(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| {
        if let Some(AgentConfig::Scripted(s)) = c.agents.get_mut("assistant") {
            s.word_delay = Duration::from_millis(60);
        }
    })
    .await;
    let (status, sent) = app
        .send_later(
            "dev-1",
            json!({"content": "what about delivery and shipping?"}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["conversation_id"].as_str().unwrap().to_owned();
    let mut events = app.events("dev-1", &id, None).await;
    // The agent is writing its answer.
    events
        .until(Duration::from_secs(10), |e| e.name() == "delta")
        .await;
    let response = app
        .request(Method::DELETE, "/v1/me", "dev-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(
        app.pipeline.drain(Duration::from_secs(20)).await,
        "the turn finishes"
    );
    assert_eq!(app.count("messages").await, 0, "no reply was stored");
    assert_eq!(app.count("conversations").await, 0);
    assert_eq!(app.count("contacts").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM pending_turns WHERE $1 = $1".into(),
            "x"
        )
        .await,
        0
    );
}
