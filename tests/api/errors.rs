//! Bad input: every refusal answers `{"error":{"code","message"}}` with the right status, and
//! changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    both_backends,
    helpers::{Backend, TestApp, json_response},
};

both_backends!(bad_input_is_refused_clearly_and_stores_nothing);

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    status: u16,
    code: &'static str,
}

fn post(what: &'static str, body: &str, status: u16, code: &'static str) -> Case {
    Case {
        what,
        method: Method::POST,
        path: "/v1/chat/messages".into(),
        headers: vec![
            ("content-type", "application/json".into()),
            ("x-device-id", "dev-1".into()),
        ],
        body: Some(body.to_owned()),
        status,
        code,
    }
}

async fn bad_input_is_refused_clearly_and_stores_nothing(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| {
        c.routing.default_agent = "echo".into();
        c.web.max_content_chars = 50;
        c.web.max_attachments = 2;
        c.server.max_body_bytes = 4096;
    })
    .await;
    // Someone else's conversation, which dev-1 must not be able to touch.
    let (_, theirs) = app.send("dev-owner", json!({"content": "private"})).await;
    let theirs = theirs["conversation_id"].as_str().unwrap().to_owned();
    let before = (
        app.count("messages").await,
        app.count("conversations").await,
        app.count("contacts").await,
    );

    let unknown = "0193a2b4-0000-7000-8000-000000000000";
    let mut cases = vec![
        post("malformed JSON", "{\"content\": ", 400, "invalid_json"),
        post("not an object", "[1, 2]", 422, "invalid_request"),
        post("wrong type", r#"{"content": 5}"#, 422, "invalid_request"),
        post("misspelt field", r#"{"contnet": "hi"}"#, 422, "invalid_request"),
        post("camelCase id", r#"{"content": "hi", "conversationId": null}"#, 422, "invalid_request"),
        post("missing content", "{}", 422, "empty_content"),
        post("empty content", r#"{"content": ""}"#, 422, "empty_content"),
        post("blank content", "{\"content\": \" \\n\\t \"}", 422, "empty_content"),
        post(
            "content over the configured limit",
            &json!({"content": "x".repeat(51)}).to_string(),
            422,
            "content_too_long",
        ),
        post(
            "too many attachments",
            &json!({"content": "x", "attachments": [
                {"url": "https://a.example/1"}, {"url": "https://a.example/2"}, {"url": "https://a.example/3"}
            ]})
            .to_string(),
            422,
            "too_many_attachments",
        ),
        post(
            "attachment that is not a URL",
            r#"{"content": "x", "attachments": [{"url": "javascript:alert(1)"}]}"#,
            422,
            "invalid_attachment",
        ),
        post(
            "conversation id that is not an id",
            r#"{"content": "x", "conversation_id": "42"}"#,
            422,
            "invalid_conversation_id",
        ),
        post(
            "unknown conversation",
            &json!({"content": "x", "conversation_id": unknown}).to_string(),
            404,
            "not_found",
        ),
        post(
            "another visitor's conversation",
            &json!({"content": "x", "conversation_id": theirs}).to_string(),
            404,
            "not_found",
        ),
        post(
            "body over the size limit",
            &json!({"content": "y".repeat(5000)}).to_string(),
            413,
            "body_too_large",
        ),
    ];
    let mut no_identity = post(
        "no identity",
        r#"{"content": "hi"}"#,
        401,
        "unauthenticated",
    );
    no_identity
        .headers
        .retain(|(name, _)| *name != "x-device-id");
    cases.push(no_identity);
    let mut bad_device = post(
        "device id with spaces",
        r#"{"content": "hi"}"#,
        400,
        "invalid_device_id",
    );
    bad_device.headers[1].1 = "not valid".into();
    cases.push(bad_device);
    let mut token = post(
        "bearer token without a configured secret",
        r#"{"content": "hi"}"#,
        401,
        "invalid_token",
    );
    token
        .headers
        .push(("authorization", "Bearer abc.def.ghi".into()));
    cases.push(token);
    let mut no_type = post(
        "no JSON content type",
        r#"{"content": "hi"}"#,
        415,
        "unsupported_media_type",
    );
    no_type.headers.remove(0);
    cases.push(no_type);
    let mut key = post(
        "unusable idempotency key",
        r#"{"content": "hi"}"#,
        400,
        "invalid_idempotency_key",
    );
    key.headers
        .push(("idempotency-key", "has spaces in it".into()));
    cases.push(key);
    let stream = |what, status, code, body: &str| Case {
        path: "/v1/chat/stream".into(),
        ..post(what, body, status, code)
    };
    cases.push(stream(
        "stream: empty content",
        422,
        "empty_content",
        r#"{"content": ""}"#,
    ));
    cases.push(stream("stream: malformed JSON", 400, "invalid_json", "{"));
    let get = |what, path: String, device: &str, status, code| Case {
        what,
        method: Method::GET,
        path,
        headers: vec![("x-device-id", device.to_owned())],
        body: None,
        status,
        code,
    };
    cases.extend([
        get(
            "list without identity",
            "/v1/conversations".into(),
            "",
            400,
            "invalid_device_id",
        ),
        get(
            "limit of 0",
            "/v1/conversations?limit=0".into(),
            "dev-1",
            422,
            "invalid_query",
        ),
        get(
            "limit of 101",
            "/v1/conversations?limit=101".into(),
            "dev-1",
            422,
            "invalid_query",
        ),
        get(
            "page 0",
            "/v1/conversations?page=0".into(),
            "dev-1",
            422,
            "invalid_query",
        ),
        get(
            "limit not a number",
            "/v1/conversations?limit=ten".into(),
            "dev-1",
            422,
            "invalid_query",
        ),
        get(
            "unknown query parameter",
            "/v1/conversations?pagee=2".into(),
            "dev-1",
            422,
            "invalid_query",
        ),
        get(
            "another visitor's conversation",
            format!("/v1/conversations/{theirs}"),
            "dev-1",
            404,
            "not_found",
        ),
        get(
            "another visitor's messages",
            format!("/v1/conversations/{theirs}/messages"),
            "dev-1",
            404,
            "not_found",
        ),
        get(
            "another visitor's events",
            format!("/v1/conversations/{theirs}/events"),
            "dev-1",
            404,
            "not_found",
        ),
        get(
            "a conversation id that is not an id",
            "/v1/conversations/nope".into(),
            "dev-1",
            404,
            "not_found",
        ),
        get(
            "an unknown route",
            "/v1/nothing-here".into(),
            "dev-1",
            404,
            "not_found",
        ),
    ]);
    cases.push(Case {
        method: Method::DELETE,
        ..get(
            "deleting another visitor's conversation",
            format!("/v1/conversations/{theirs}"),
            "dev-1",
            404,
            "not_found",
        )
    });
    cases.push(Case {
        method: Method::POST,
        ..get(
            "handing over another visitor's conversation",
            format!("/v1/conversations/{theirs}/handoff"),
            "dev-1",
            404,
            "not_found",
        )
    });
    cases.push(Case {
        method: Method::PUT,
        ..get(
            "a method the route does not take",
            "/v1/conversations".into(),
            "dev-1",
            405,
            "method_not_allowed",
        )
    });
    cases.push(Case {
        body: Some("{not json".into()),
        method: Method::POST,
        ..get(
            "handoff with a malformed body",
            format!("/v1/conversations/{theirs}/handoff"),
            "dev-owner",
            400,
            "invalid_json",
        )
    });

    for case in cases {
        let mut request = app.client.request(case.method.clone(), app.url(&case.path));
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = case.body {
            request = request.body(body);
        }
        let (status, body) = json_response(request.send().await.unwrap()).await;
        assert_eq!(status, case.status, "{}: {body}", case.what);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.what);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: the error explains itself: {body}",
            case.what
        );
    }

    let after = (
        app.count("messages").await,
        app.count("conversations").await,
        app.count("contacts").await,
    );
    assert_eq!(before, after, "refused requests changed nothing");
    // The owner's conversation is untouched.
    let (status, conversation): (u16, Value) = app
        .get("dev-owner", &format!("/v1/conversations/{theirs}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(conversation["mode"], "ai");
    // The limit is inclusive.
    let (status, _) = app.send("dev-1", json!({"content": "z".repeat(50)})).await;
    assert_eq!(status, 200);
}
