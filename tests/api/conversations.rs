//! A visitor's conversations: creating, listing, reading, renaming, paging, deleting, and who may
//! see what.

use jsonwebtoken::{EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    both_backends,
    helpers::{Backend, TestApp, json_response},
};

both_backends!(
    conversations_are_listed_newest_first_with_a_total,
    messages_page_backwards,
    a_deleted_conversation_is_gone_for_the_visitor_but_kept,
    signed_in_visitors_see_only_their_own_conversations,
    conversations_are_created_before_writing_renamed_and_detailed,
);

fn ids(page: &Value, key: &str) -> Vec<String> {
    page[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn conversations_are_listed_newest_first_with_a_total(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let mut created = Vec::new();
    for text in ["first", "second", "third"] {
        let (_, body) = app.send("dev-1", json!({"content": text})).await;
        created.push(body["conversation_id"].as_str().unwrap().to_owned());
    }
    app.send("dev-2", json!({"content": "not yours"})).await;

    let (status, page) = app.get("dev-1", "/v1/conversations").await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 3);
    assert_eq!(
        ids(&page, "conversations"),
        [created[2].as_str(), &created[1], &created[0]]
    );
    assert_eq!(page["conversations"][0]["title"], "third");

    // Writing to the oldest makes it the most recent.
    app.send(
        "dev-1",
        json!({"conversation_id": created[0], "content": "back again"}),
    )
    .await;
    let (_, page) = app.get("dev-1", "/v1/conversations?limit=2").await;
    assert_eq!(
        ids(&page, "conversations"),
        [created[0].as_str(), &created[2]]
    );
    assert_eq!(
        (
            page["page"].as_i64(),
            page["limit"].as_i64(),
            page["total"].as_i64()
        ),
        (Some(1), Some(2), Some(3))
    );
    let (_, page2) = app.get("dev-1", "/v1/conversations?limit=2&page=2").await;
    assert_eq!(ids(&page2, "conversations"), [created[1].as_str()]);
    let (_, page3) = app.get("dev-1", "/v1/conversations?limit=2&page=3").await;
    assert_eq!(page3["conversations"].as_array().unwrap().len(), 0);
    assert_eq!(page3["total"], 3);

    let (_, stranger) = app.get("dev-new", "/v1/conversations").await;
    assert_eq!(stranger["total"], 0);
}

async fn messages_page_backwards(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, first) = app.send("dev-1", json!({"content": "m1"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    for text in ["m2", "m3"] {
        app.send("dev-1", json!({"conversation_id": id, "content": text}))
            .await;
    }
    let seqs = |page: &Value| -> Vec<i64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let path = format!("/v1/conversations/{id}/messages");
    let (_, all) = app.get("dev-1", &path).await;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5, 6]);
    assert_eq!(all["has_more"], false);
    let (_, newest) = app.get("dev-1", &format!("{path}?limit=2")).await;
    assert_eq!(seqs(&newest), [5, 6]);
    assert_eq!(newest["has_more"], true);
    let (_, older) = app.get("dev-1", &format!("{path}?limit=2&before=5")).await;
    assert_eq!(seqs(&older), [3, 4]);
    let (_, oldest) = app.get("dev-1", &format!("{path}?limit=5&before=3")).await;
    assert_eq!(seqs(&oldest), [1, 2]);
    assert_eq!(oldest["has_more"], false);
    assert_eq!(oldest["messages"][0]["content"], "m1");
    assert_eq!(oldest["messages"][1]["role"], "ai");
}

async fn a_deleted_conversation_is_gone_for_the_visitor_but_kept(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, body) = app.send("dev-1", json!({"content": "forget me"})).await;
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    let (_, kept) = app.send("dev-1", json!({"content": "keep me"})).await;

    // Nobody else can delete it.
    let response = app
        .request(Method::DELETE, &format!("/v1/conversations/{id}"), "dev-2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let response = app
        .request(Method::DELETE, &format!("/v1/conversations/{id}"), "dev-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for path in [
        format!("/v1/conversations/{id}"),
        format!("/v1/conversations/{id}/messages"),
        format!("/v1/conversations/{id}/events"),
    ] {
        let (status, body) = app.get("dev-1", &path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = app
        .send("dev-1", json!({"conversation_id": id, "content": "hello?"}))
        .await;
    assert_eq!(status, 404);
    let response = app
        .request(Method::DELETE, &format!("/v1/conversations/{id}"), "dev-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "deleting twice");

    let (_, page) = app.get("dev-1", "/v1/conversations").await;
    assert_eq!(
        ids(&page, "conversations"),
        [kept["conversation_id"].as_str().unwrap()]
    );
    assert_eq!(page["total"], 1);
    // Soft delete: the rows stay for the operators.
    assert_eq!(app.count("conversations").await, 2);
    assert_eq!(app.count("messages").await, 4);
}

fn token(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn signed_in_visitors_see_only_their_own_conversations(backend: Backend) {
    let secret = "test-secret-that-is-long-enough";
    let app = TestApp::spawn_with(&backend, |c| {
        c.routing.default_agent = "echo".into();
        c.web.jwt_secret = Some(secret.into());
    })
    .await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let alice = token(secret, json!({"sub": "alice", "name": "Alice", "exp": exp}));
    let bob = token(secret, json!({"sub": "bob", "exp": exp}));
    let as_user = |method: Method, path: &str, token: &str| {
        app.client.request(method, app.url(path)).bearer_auth(token)
    };

    let (status, body) = json_response(
        as_user(Method::POST, "/v1/chat/messages", &alice)
            .json(&json!({"content": "hi from alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["conversation_id"].as_str().unwrap().to_owned();

    let (status, _) = json_response(
        as_user(Method::GET, &format!("/v1/conversations/{id}"), &alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = json_response(
        as_user(Method::GET, &format!("/v1/conversations/{id}"), &bob)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "bob cannot see alice's conversation");
    // A device id that looks like alice's user id is another identity.
    let (status, _) = app
        .get("user:alice", &format!("/v1/conversations/{id}"))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.get("alice", &format!("/v1/conversations/{id}")).await;
    assert_eq!(status, 404);
    // A token wins over a device id sent alongside.
    let (status, _) = json_response(
        as_user(Method::GET, &format!("/v1/conversations/{id}"), &alice)
            .header("X-Device-ID", "dev-9")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);

    // Expired, forged and unsigned tokens are refused.
    let expired = token(
        secret,
        json!({"sub": "alice", "exp": chrono::Utc::now().timestamp() - 3600}),
    );
    let forged = token(
        "another-secret-entirely",
        json!({"sub": "alice", "exp": exp}),
    );
    for bad in [expired, forged, "not-a-token".to_owned()] {
        let (status, body) = json_response(
            as_user(Method::GET, "/v1/conversations", &bad)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_token");
    }
}

/// `web.require_token`: a site that signs its visitors' tokens can refuse anonymous devices, on
/// every visitor route, headers or query string alike; nothing is stored for a refused device.
#[tokio::test]
async fn a_site_can_insist_on_signed_visitors() {
    let secret = "test-secret-that-is-long-enough";
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.web.jwt_secret = Some(secret.into());
        c.web.require_token = true;
    })
    .await;
    let (status, body) = app.send("dev-anon", json!({"content": "hi"})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "token_required");
    assert_eq!(app.count("messages").await, 0);
    let (status, body) = app.get("dev-anon", "/v1/conversations").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_required"))
    );

    let exp = chrono::Utc::now().timestamp() + 600;
    let alice = token(secret, json!({"sub": "alice", "exp": exp}));
    let (status, body) = json_response(
        app.client
            .post(app.url("/v1/chat/messages"))
            .bearer_auth(&alice)
            .json(&json!({"content": "hi, signed"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["conversation_id"].as_str().unwrap();
    // Browsers' event streams identify in the query string: a device id is refused there too.
    let (status, body) = json_response(
        app.client
            .get(app.url(&format!("/v1/conversations/{id}/events?device_id=dev-anon")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_required"))
    );
    app.stop().await;

    // Without a secret nobody could identify: the configuration is refused.
    let mut config = switchboard::config::Config::defaults();
    config.web.require_token = true;
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("web.require_token"), "{error}");
}

async fn conversations_are_created_before_writing_renamed_and_detailed(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let create = |device: &str, body: Value| {
        app.request(Method::POST, "/v1/conversations", device)
            .json(&body)
            .send()
    };
    let response = create(
        "dev-c",
        json!({"title": " Trip to Rome ", "source": "mobile", "metadata": {"plan": "pro"}}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, created) = json_response(response).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/conversations/{id}"));
    assert_eq!(created["title"], "Trip to Rome");
    assert_eq!(created["source"], "mobile");
    assert_eq!(created["metadata"], json!({"plan": "pro"}));
    assert_eq!(
        (created["message_count"].as_i64(), &created["last_message"]),
        (Some(0), &Value::Null)
    );
    let (_, listed) = app.get("dev-c", "/v1/conversations").await;
    assert_eq!(ids(&listed, "conversations"), [id.as_str()]);

    // Writing in it: the first message takes seq 1; the details count and show the newest.
    let (status, body) = app
        .send(
            "dev-c",
            json!({"conversation_id": id, "content": "hello Rome"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["seq"], 1);
    let (status, details) = app.get("dev-c", &format!("/v1/conversations/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(details["message_count"], 2);
    assert_eq!(details["last_message"]["role"], "ai");
    assert_eq!(details["last_message"]["seq"], 2);
    assert_eq!(details["title"], "Trip to Rome", "a given title is kept");

    // Renaming: the owner only; the title is checked.
    let rename = |device: &str, body: Value| {
        app.request(Method::PATCH, &format!("/v1/conversations/{id}"), device)
            .json(&body)
            .send()
    };
    let (status, renamed) = json_response(
        rename("dev-c", json!({"title": "Rome, day 2"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, renamed["title"].as_str()),
        (200, Some("Rome, day 2"))
    );
    let (status, _) = json_response(
        rename("dev-other", json!({"title": "mine now"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    for (body, code) in [
        (json!({"title": "  "}), "invalid_title"),
        (json!({"title": "x".repeat(201)}), "invalid_title"),
    ] {
        let (status, error) = json_response(rename("dev-c", body).await.unwrap()).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (422, Some(code)),
            "{error}"
        );
    }
    let (_, details) = app.get("dev-c", &format!("/v1/conversations/{id}")).await;
    assert_eq!(details["title"], "Rome, day 2");

    // Refused creations store nothing.
    let before = app.count("conversations").await;
    for (body, code) in [
        (json!({"source": "has spaces"}), "invalid_source"),
        (
            json!({"metadata": {"blob": "x".repeat(5000)}}),
            "invalid_metadata",
        ),
        (json!({"agent": "assistant"}), "agent_not_selectable"),
        (json!({"titel": "typo"}), "invalid_request"),
    ] {
        let (status, error) = json_response(create("dev-c", body).await.unwrap()).await;
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
    }
    assert_eq!(app.count("conversations").await, before);
    app.stop().await;
}

/// A message may carry the client's own bounded metadata and a message type: stored, and returned
/// with the message wherever it is read. Unfit values are refused and store nothing.
#[tokio::test]
async fn messages_keep_the_clients_metadata_and_type() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.routing.default_agent = "echo".into()
    })
    .await;
    let (status, body) = app
        .send(
            "dev-meta",
            json!({
                "content": "my plan",
                "message_type": "fitness_plan",
                "metadata": {"week": 3, "goals": ["run", "swim"]}
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = &body["message"];
    assert_eq!(sent["metadata"]["message_type"], "fitness_plan");
    assert_eq!(
        sent["metadata"]["client"],
        json!({"week": 3, "goals": ["run", "swim"]})
    );
    let id = body["conversation_id"].as_str().unwrap();
    let (_, page) = app
        .get("dev-meta", &format!("/v1/conversations/{id}/messages"))
        .await;
    assert_eq!(page["messages"][0]["metadata"], sent["metadata"]);

    let before = app.count("messages").await;
    for (body, code) in [
        (
            json!({"content": "x", "message_type": "Has Caps"}),
            "invalid_message_type",
        ),
        (
            json!({"content": "x", "message_type": ""}),
            "invalid_message_type",
        ),
        (
            json!({"content": "x", "metadata": {"blob": "y".repeat(5000)}}),
            "invalid_metadata",
        ),
        (
            json!({"content": "x", "metadata": [1, 2]}),
            "invalid_request",
        ),
    ] {
        let (status, error) = app.send("dev-meta", body).await;
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
    }
    assert_eq!(app.count("messages").await, before);
    app.stop().await;
}
