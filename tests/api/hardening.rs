//! The gateway in front of the public: cross-origin embedding, secrets that cannot be empty or
//! read by others, idempotency keys that cannot collide, bodies that are refused before they are
//! read and must arrive in time, stored media that never runs in a browser, what visitors see of
//! staff, and the housekeeping and audit records that go with it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::{
    app::Gateway,
    config::Config,
    staff::{passwords, tokens::TokenKeys},
    store::{
        Db, Store, query,
        users::{self, NewUser, StaffRole},
    },
    time::Clock,
};
use tokio::io::AsyncWriteExt;

use crate::{
    both_backends,
    helpers::{Backend, TestApp, TestDb, json_response, test_config},
    limits::{announce_body, read_head},
};

both_backends!(idempotency_keys_never_collide_across_visitors);

const RAW_SECRET: &str = "raw-secret";
const OPERATOR: &str = "operator-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_visitor_api_answers_preflights_from_any_site_and_the_staff_api_from_none() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let (_, body) = app.send("dev-1", json!({"content": "hello"})).await;
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    let preflight = |path: String, method: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url(&path))
            .header("Origin", "http://localhost:5173")
            .header("Access-Control-Request-Method", method)
            .header(
                "Access-Control-Request-Headers",
                "content-type,x-device-id,idempotency-key",
            )
            .send()
    };
    for (path, method) in [
        ("/v1/chat/messages".to_owned(), "POST"),
        ("/v1/chat/stream".to_owned(), "POST"),
        ("/v1/conversations".to_owned(), "GET"),
        (format!("/v1/conversations/{id}"), "DELETE"),
        (format!("/v1/conversations/{id}/messages"), "GET"),
        (format!("/v1/conversations/{id}/handoff"), "POST"),
        (format!("/v1/conversations/{id}/events"), "GET"),
    ] {
        let response = preflight(path.clone(), method).await.unwrap();
        assert_eq!(response.status(), 200, "{method} {path}");
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], "*", "{path}");
        let allowed = headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(allowed.contains("idempotency-key"), "{path}: {allowed}");
    }
    // The staff API stays same-origin: no CORS answer, so browsers refuse other sites.
    let response = preflight("/v1/auth/token".into(), "POST").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    let response = preflight("/v1/expert/queue".into(), "GET").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // A list of origins restricts the visitor API to them.
    let strict = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.web.allowed_origins = vec!["https://shop.example.com".into()];
    })
    .await;
    let ask = |origin: &'static str| {
        strict
            .client
            .request(Method::OPTIONS, strict.url("/v1/chat/messages"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let allowed = ask("https://shop.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let refused = ask("https://evil.example.net").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

/// Loads a configuration file as an operator would write it.
fn load(toml: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, toml).unwrap();
    let mut config = Config::load(Some(&path), |_| None).map_err(|e| e.to_string())?;
    switchboard::channels::configure(&mut config, |_| None).map_err(|e| e.to_string())?;
    Ok(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_secrets_switch_features_off_and_never_open_them() {
    let db = TestDb::create(&Backend::Sqlite).await;
    let mut config = load(
        "[whatsapp]\napp_secret = \"\"\nverify_token = \"\"\naccess_token = \"\"\n\
         [email]\nfrom = \"Support <support@mail.example.com>\"\ninbound_user = \"\"\n\
         inbound_password = \"\"\nmailgun_signing_key = \"\"\nraw_secret = \"\"\n\
         [staff]\njwt_secret = \"\"\n[web]\njwt_secret = \" \"\n[server]\nadmin_token = \"\"\n",
    )
    .expect("empty secrets are no secrets, not errors");
    let running = switchboard::channels::Channels::from_config(&config).unwrap();
    assert!(
        running.by_name("whatsapp").is_none() && running.by_name("email").is_none(),
        "{running:?}"
    );
    assert!(config.staff.jwt_secret.is_none());
    assert!(config.web.jwt_secret.is_none());
    let base = test_config(&db.url);
    config.database = base.database.clone();
    config.agents = base.agents.clone();
    let media = tempfile::tempdir().unwrap();
    config.media.dir = media.path().to_owned();
    let mut app = TestApp::start(config, Clock::system()).await;
    app.keep(Some(db));

    // A webhook "signed" with the empty key: the channel is off.
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let (status, answer) = app
        .whatsapp_signed(body, &switchboard_whatsapp::sign(body, ""))
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "channel_not_configured");
    // Postmark's route with empty Basic credentials: off.
    let response = app
        .client
        .post(app.url("/webhooks/email/postmark"))
        .header("authorization", "Basic Og==")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // The operator's media route with an empty bearer token: refused.
    let response = app
        .client
        .get(app.url("/v1/media/x"))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // An admin token signed with an empty key is not a token.
    let (user_id, _) = app.staff_token("root@example.com", "admin").await;
    let now = app.clock.now();
    let forged = TokenKeys::new(b"", Duration::from_secs(3600)).issue(
        &user_id,
        StaffRole::Admin,
        now,
        now.plus(Duration::from_secs(600)),
    );
    let (status, body) = app
        .staff_call(Method::GET, "/v1/admin/users", &forged, None)
        .await;
    assert_eq!(status, 401, "{body}");
    // Nor is a visitor token signed with a blank key.
    let visitor = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "u1", "exp": now.to_datetime().timestamp() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b" "),
    )
    .unwrap();
    let response = app
        .client
        .get(app.url("/v1/conversations"))
        .bearer_auth(visitor)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(app.count("messages").await, 0);

    // A channel whose required secret is missing while the rest is set refuses to start.
    let refused = load("[whatsapp]\napp_secret = \"\"\nverify_token = \"token\"\n").unwrap_err();
    assert!(refused.contains("app_secret"), "{refused}");
    let refused = load("[telegram]\ntoken = \"123:abc\"\nwebhook_secret = \"\"\n").unwrap_err();
    assert!(refused.contains("webhook_secret"), "{refused}");
    let refused =
        load("[experts]\nwebhook_url = \"https://x\"\nwebhook_secret = \"\"\n").unwrap_err();
    assert!(refused.contains("webhook_secret"), "{refused}");
    // The staff and visitor secrets must differ.
    let refused =
        load("[web]\njwt_secret = \"same\"\n[staff]\njwt_secret = \"same\"\n").unwrap_err();
    assert!(refused.contains("must differ"), "{refused}");
}

/// A visitor token for `sub`, valid for ten minutes.
fn visitor_token(secret: &str, sub: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn idempotency_keys_never_collide_across_visitors(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| {
        c.web.jwt_secret = Some("site-secret".into());
        c.routing.default_agent = "echo".into();
    })
    .await;
    let send = |sub: &'static str, key: &'static str, content: &'static str| {
        let request = app
            .client
            .post(app.url("/v1/chat/messages"))
            .bearer_auth(visitor_token("site-secret", sub))
            .header("Idempotency-Key", key)
            .json(&json!({"content": content}));
        async move { json_response(request.send().await.unwrap()).await }
    };
    // "user:acme/alice" + "k42" and "user:acme" + "alice/k42" once made the same provider id.
    let (status, alice) = send("acme/alice", "k42", "alice's private question").await;
    assert_eq!(status, 200, "{alice}");
    let (status, acme) = send("acme", "alice/k42", "acme's own question").await;
    assert_eq!(status, 200, "{acme}");
    assert_ne!(acme["message"]["id"], alice["message"]["id"]);
    assert_eq!(acme["message"]["content"], "acme's own question");
    assert_eq!(acme["reply"]["content"], "acme's own question");
    assert_ne!(acme["conversation_id"], alice["conversation_id"]);

    // A retry is still recognised, and answered to its owner only.
    let (status, again) = send("acme", "alice/k42", "acme's own question").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["message"]["id"], acme["message"]["id"]);
    assert_eq!(again["reply"]["id"], acme["reply"]["id"]);
    // The same key from a device is that device's own message.
    let response = app
        .request(Method::POST, "/v1/chat/messages", "dev-1")
        .header("Idempotency-Key", "k42")
        .json(&json!({"content": "a device's message"}))
        .send()
        .await
        .unwrap();
    let (status, device) = json_response(response).await;
    assert_eq!(status, 200, "{device}");
    assert_eq!(device["message"]["content"], "a device's message");
    assert_eq!(
        app.count("messages").await,
        6,
        "three messages, three replies"
    );
}

/// A mail from Ravi with attachments of the given types, each a few bytes.
fn mail_with_attachments(message_id: &str, types: &[&str]) -> Vec<u8> {
    let mut mail = format!(
        "From: Ravi Patel <ravi.patel@example.org>\r\nTo: support@mail.example.com\r\n\
         Subject: Files\r\nMessage-ID: <{message_id}>\r\nDate: Tue, 11 Nov 2025 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHere are the files.\r\n"
    );
    for (i, mime) in types.iter().enumerate() {
        let extension = mime.rsplit('/').next().unwrap();
        mail.push_str(&format!(
            "--b1\r\nContent-Type: {mime}\r\nContent-Disposition: attachment; \
             filename=\"file{i}.{extension}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("<html><script>alert({i})</script></html>")
            )
        ));
    }
    mail.push_str("--b1--\r\n");
    mail.into_bytes()
}

/// Turns on the raw mail route (answers are not mailed).
fn on_raw_mail(config: &mut Config) {
    config.set("email.from", "Support <support@mail.example.com>");
    config.set("email.raw_secret", RAW_SECRET);
    config.server.admin_token = Some(OPERATOR.into());
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_media_and_staff_key_are_readable_by_the_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("gateway.db");
    let mut config = test_config(&format!("sqlite://{}", database.display()));
    config.media.dir = dir.path().join("media");
    on_raw_mail(&mut config);
    let app = TestApp::start(config, Clock::system()).await;
    let (status, body) = app
        .email(&mail_with_attachments(
            "files-1@example.org",
            &["application/pdf"],
        ))
        .await;
    assert_eq!(status, 200, "{body}");

    for file in [
        "gateway.db",
        "gateway.db-wal",
        "gateway.db-shm",
        "gateway.key",
    ] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&dir.path().join("media")), 0o700);
    let (path,): (String,) = app
        .store
        .reader()
        .fetch_one(query("SELECT path FROM media"))
        .await
        .unwrap();
    let stored = dir.path().join("media").join(&path);
    assert_eq!(mode(&stored), 0o600);
    assert_eq!(mode(stored.parent().unwrap()), 0o700);

    // The key signs tokens, and the database does not hold it: only its fingerprint.
    let key = std::fs::read_to_string(dir.path().join("gateway.key")).unwrap();
    assert!(key.trim().len() >= 32);
    let settings: Vec<(String, String)> = app
        .store
        .reader()
        .fetch_all(query("SELECT name, value FROM settings"))
        .await
        .unwrap();
    assert!(
        settings
            .iter()
            .all(|(name, value)| name != "staff_jwt_secret" && !value.contains(key.trim())),
        "{settings:?}"
    );
    assert!(
        settings
            .iter()
            .any(|(name, _)| name == "staff_key_fingerprint")
    );
    app.stop().await;

    // A database file an earlier version left readable by everyone is tightened at start.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut config = test_config(&format!("sqlite://{}", database.display()));
    config.media.dir = dir.path().join("media");
    let again = TestApp::start(config, Clock::system()).await;
    assert_eq!(mode(&database), 0o600);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_secret_kept_in_the_database_moves_to_the_key_file() {
    let db = TestDb::create(&Backend::Sqlite).await;
    let config = test_config(&db.url);
    // What an earlier version left: the secret in clear in the settings table.
    let store = Store::connect(&config.database).await.unwrap();
    store.migrate().await.unwrap();
    let now = Clock::system().now();
    let mut tx = store.begin().await.unwrap();
    tx.execute(
        query("INSERT INTO settings (name, value, created_at) VALUES ($1, $2, $3)")
            .bind("staff_jwt_secret")
            .bind("legacy-secret-0123456789abcdef")
            .bind(now),
    )
    .await
    .unwrap();
    let user = users::create(
        &mut tx,
        NewUser {
            email: "ana@example.com".into(),
            display_name: "Ana".into(),
            role: StaffRole::Expert,
            password_hash: passwords::hash("correct-horse-battery").unwrap(),
            capacity: 3,
        },
        now,
    )
    .await
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    let token = TokenKeys::new(b"legacy-secret-0123456789abcdef", Duration::from_secs(3600)).issue(
        &user.id,
        StaffRole::Expert,
        now,
        now.plus(Duration::from_secs(600)),
    );

    let mut app = TestApp::start(config.clone(), Clock::system()).await;
    let (status, me) = app
        .staff_call(Method::GET, "/v1/expert/me", &token, None)
        .await;
    assert_eq!(
        status, 200,
        "a token issued before the upgrade stays valid: {me}"
    );
    let legacy: Option<(String,)> = app
        .store
        .reader()
        .fetch_optional(query(
            "SELECT value FROM settings WHERE name = 'staff_jwt_secret'",
        ))
        .await
        .unwrap();
    assert!(legacy.is_none(), "the secret left the database");
    let key_file =
        std::path::PathBuf::from(db.url.trim_start_matches("sqlite://")).with_extension("key");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        "legacy-secret-0123456789abcdef"
    );
    let db = app.stop().await;

    // An instance with another key on the same database refuses to start, saying why.
    let mut other = config.clone();
    let elsewhere = tempfile::tempdir().unwrap();
    other.staff.key_file = Some(elsewhere.path().join("other.key"));
    let error = Gateway::build(other).await.err().expect("refused");
    assert!(format!("{error:#}").contains("another key"), "{error:#}");
    app = TestApp::start(config, Clock::system()).await;
    app.keep(db);
    let (status, _) = app
        .staff_call(Method::GET, "/v1/expert/me", &token, None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_have_a_maximum_lifetime_and_their_claims_are_checked() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.web.jwt_secret = Some("site-secret".into());
        c.web.jwt_audience = Some("chat.example.com".into());
        c.web.jwt_issuer = Some("https://shop.example.com".into());
        c.staff.jwt_secret = Some("staff-secret".into());
        c.staff.token_ttl = Duration::from_secs(3600);
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let visit = |claims: Value| {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"site-secret"),
        )
        .unwrap();
        let request = app
            .client
            .get(app.url("/v1/conversations"))
            .bearer_auth(token);
        async move { json_response(request.send().await.unwrap()).await }
    };
    let good = json!({"sub": "u1", "exp": now + 600, "aud": "chat.example.com",
                      "iss": "https://shop.example.com"});
    assert_eq!(visit(good.clone()).await.0, 200);
    for (what, claims) in [
        (
            "valid for 30 days",
            json!({"sub": "u1", "iat": now, "exp": now + 30 * 86400,
            "aud": "chat.example.com", "iss": "https://shop.example.com"}),
        ),
        (
            "not valid yet",
            json!({"sub": "u1", "nbf": now + 600, "exp": now + 1200,
            "aud": "chat.example.com", "iss": "https://shop.example.com"}),
        ),
        (
            "no audience",
            json!({"sub": "u1", "exp": now + 600, "iss": "https://shop.example.com"}),
        ),
        (
            "another issuer",
            json!({"sub": "u1", "exp": now + 600, "aud": "chat.example.com",
            "iss": "https://evil.example.net"}),
        ),
    ] {
        let (status, body) = visit(claims).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_token", "{what}");
    }

    // A staff token minted with the right key but claiming a year's validity is refused.
    let (user_id, _) = app.staff_token("root@example.com", "admin").await;
    let clock = app.clock.now();
    let long = TokenKeys::new(b"staff-secret", Duration::from_secs(365 * 86400)).issue(
        &user_id,
        StaffRole::Admin,
        clock,
        clock.plus(Duration::from_secs(365 * 86400)),
    );
    let (status, body) = app
        .staff_call(Method::GET, "/v1/admin/users", &long, None)
        .await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_media_never_runs_in_a_browser() {
    let app = TestApp::spawn_with(&Backend::Sqlite, on_raw_mail).await;
    let (status, body) = app
        .email(&mail_with_attachments(
            "files-2@example.org",
            &["text/html", "image/svg+xml", "image/png"],
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let media: Vec<(String, String)> = app
        .store
        .reader()
        .fetch_all(query("SELECT id, mime_type FROM media ORDER BY attachment"))
        .await
        .unwrap();
    assert_eq!(media.len(), 3);
    for (id, mime) in media {
        let response = app
            .client
            .get(app.url(&format!("/v1/media/{id}")))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{csp}"
        );
        let disposition = headers["content-disposition"].to_str().unwrap();
        if mime == "image/png" {
            assert!(disposition.starts_with("inline"), "{mime}: {disposition}");
        } else {
            assert!(
                disposition.starts_with("attachment"),
                "{mime}: {disposition}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_keeps_only_its_first_attachments() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        on_raw_mail(c);
        c.set("email.max_attachments", 3_i64);
    })
    .await;
    let types = ["application/pdf"; 12];
    let (status, body) = app
        .email(&mail_with_attachments("many@example.org", &types))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.count("media").await,
        3,
        "three files written, not twelve"
    );
    let (metadata,): (String,) = app
        .store
        .reader()
        .fetch_one(query(
            "SELECT CAST(metadata AS TEXT) FROM messages WHERE direction = 'inbound'",
        ))
        .await
        .unwrap();
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["attachments_dropped"], 9, "{metadata}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_see_an_experts_name_never_their_account_id() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let (status, body) = app.send("visitor-1", json!({"content": "hello"})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    app.handoff("visitor-1", &id).await;
    let (ana_id, ana) = app.staff_token("ana@example.com", "expert").await;
    let mut events = app.events("visitor-1", &id, Some("3")).await;
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/claim"),
            &ana,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{id}/messages"),
            &ana,
            Some(json!({"content": "Hi, I'm Ana."})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (live, _) = events
        .until(Duration::from_secs(10), |e| {
            e.name() == "message" && e.json()["role"] == "expert"
        })
        .await;
    assert_eq!(live.json()["author"], "ana");
    assert!(!live.data.contains(&ana_id), "{}", live.data);
    let (_, page) = app
        .get("visitor-1", &format!("/v1/conversations/{id}/messages"))
        .await;
    let expert = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "expert")
        .unwrap();
    assert_eq!(expert["author"], "ana");
    assert!(!page.to_string().contains(&ana_id));
    // Nor does the conversation name the staff account that has it.
    let (_, conversation) = app
        .get("visitor-1", &format!("/v1/conversations/{id}"))
        .await;
    assert_eq!(conversation["mode"], "expert");
    assert!(
        !conversation.to_string().contains(&ana_id),
        "{conversation}"
    );
    let (_, list) = app.get("visitor-1", "/v1/conversations").await;
    assert!(!list.to_string().contains(&ana_id), "{list}");
    let (_, again) = app.handoff("visitor-1", &id).await;
    assert!(!again.to_string().contains(&ana_id), "{again}");
    // Staff still see who wrote it.
    let (_, staff_view) = app
        .staff_call(
            Method::GET,
            &format!("/v1/expert/conversations/{id}"),
            &ana,
            None,
        )
        .await;
    assert!(staff_view.to_string().contains(&ana_id));
}

/// Sends `head` (request headers announcing a large body that never comes) and expects the
/// answer's status line within two seconds: the request was refused before its body was read.
async fn refused_before_the_body(app: &TestApp, head: &str, status: u16) {
    let mut stream = announce_body(app, head).await;
    let answer = tokio::time::timeout(Duration::from_secs(2), read_head(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("no answer without the body: {head}"));
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{head}\n-> {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_refuse_before_reading_the_body_and_take_only_their_providers_sizes() {
    let off = TestApp::spawn(&Backend::Sqlite).await;
    let post = |path: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
             Content-Length: 20000000\r\n{extra}\r\n{{\"partial\":"
        )
    };
    // A channel that is off.
    refused_before_the_body(&off, &post("/webhooks/whatsapp", ""), 404).await;
    refused_before_the_body(&off, &post("/webhooks/email/mailgun", ""), 404).await;

    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.set("whatsapp.app_secret", "app-secret");
        c.set("whatsapp.verify_token", "verify");
        c.set("email.from", "Support <support@mail.example.com>");
        c.set("email.raw_secret", RAW_SECRET);
        c.set("email.inbound_user", "postmaster");
        c.set("email.inbound_password", "inbound-password");
        c.set("telegram.token", "123:abc");
        c.set("telegram.webhook_secret", "telegram-secret");
        c.set("telegram.api_url", "http://127.0.0.1:1");
    })
    .await;
    // A signed body without a signature is refused unread.
    refused_before_the_body(&app, &post("/webhooks/whatsapp", ""), 401).await;
    refused_before_the_body(&app, &post("/webhooks/email/raw", ""), 401).await;
    refused_before_the_body(
        &app,
        &post("/webhooks/whatsapp", "X-Hub-Signature-256: sha256=123\r\n"),
        401,
    )
    .await;
    // Credentials in the headers are checked first.
    refused_before_the_body(
        &app,
        &post(
            "/webhooks/email/postmark",
            "Authorization: Basic d3Jvbmc6d3Jvbmc=\r\n",
        ),
        401,
    )
    .await;
    refused_before_the_body(&app, &post("/webhooks/telegram/bot", ""), 401).await;
    // Authenticated, but larger than Telegram ever sends.
    refused_before_the_body(
        &app,
        &post(
            "/webhooks/telegram/bot",
            "X-Telegram-Bot-Api-Secret-Token: telegram-secret\r\n",
        ),
        413,
    )
    .await;
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_is_cut_off() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.server.body_timeout = Duration::from_millis(500);
    })
    .await;
    let mut stream = announce_body(
        &app,
        "POST /v1/chat/messages HTTP/1.1\r\nHost: gateway\r\nX-Device-ID: slow\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"content\":",
    )
    .await;
    // A byte now and then keeps the connection busy, but not beyond the deadline.
    let trickle = async {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), trickle)
        .await
        .ok();
    let answer = tokio::time::timeout(Duration::from_secs(3), read_head(&mut stream))
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_webhook_tokens_are_forgotten_when_too_old_to_matter() {
    let clock = Clock::system();
    let app = TestApp::spawn_with_clock(&Backend::Sqlite, clock.clone(), |c| {
        c.set("email.from", "Support <support@mail.example.com>");
        c.set("email.mailgun_signing_key", "mailgun-key");
        c.pipeline.sweep_schedule = "* * * * * *".into();
    })
    .await;
    let timestamp = clock.now().to_datetime().timestamp().to_string();
    let fields = [
        ("timestamp", timestamp.clone()),
        ("token", "once-only-token".to_owned()),
        (
            "signature",
            switchboard_email::providers::mailgun::sign(
                "mailgun-key",
                &timestamp,
                "once-only-token",
            ),
        ),
        ("sender", "ravi.patel@example.org".to_owned()),
        ("from", "Ravi Patel <ravi.patel@example.org>".to_owned()),
        ("recipient", "support@mail.example.com".to_owned()),
        ("subject", "Hello".to_owned()),
        ("body-plain", "Hello there".to_owned()),
        ("Message-Id", "<once@example.org>".to_owned()),
    ];
    let response = app
        .client
        .post(app.url("/webhooks/email/mailgun"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let seen = || async {
        let (n,): (i64,) = app
            .store
            .reader()
            .fetch_one(query("SELECT COUNT(*) FROM seen_tokens"))
            .await
            .unwrap();
        n
    };
    assert_eq!(seen().await, 1);
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    app.eventually(
        Duration::from_secs(10),
        "the old token to be forgotten",
        || async { (seen().await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_accounts_and_the_audit_log_is_audited_and_supervisors_observe() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let (_, root) = app.staff_token("root@example.com", "admin").await;
    let (_, sue) = app.staff_token("sue@example.com", "supervisor").await;
    let (_, ana) = app.staff_token("ana@example.com", "expert").await;
    let (_, body) = app.send("visitor-1", json!({"content": "hello"})).await;
    let id = body["conversation_id"].as_str().unwrap().to_owned();
    app.handoff("visitor-1", &id).await;
    app.staff_call(
        Method::POST,
        &format!("/v1/expert/conversations/{id}/claim"),
        &ana,
        None,
    )
    .await;
    // The supervisor looks at Ana's conversation: an observation, not a view.
    let (status, _) = app
        .staff_call(
            Method::GET,
            &format!("/v1/expert/conversations/{id}"),
            &sue,
            None,
        )
        .await;
    assert_eq!(status, 200);
    // …and watching it live is observing too.
    let live = app
        .as_staff(
            Method::GET,
            &format!("/v1/expert/conversations/{id}/events"),
            &sue,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    drop(live);
    let (status, _) = app
        .staff_call(Method::GET, "/v1/admin/users", &root, None)
        .await;
    assert_eq!(status, 200);
    app.staff_call(Method::GET, "/v1/admin/audit", &root, None)
        .await;
    let (_, log) = app
        .staff_call(Method::GET, "/v1/admin/audit?limit=100", &root, None)
        .await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"list_users"), "{actions:?}");
    assert!(actions.contains(&"read_audit_log"), "{actions:?}");
    assert_eq!(
        actions.iter().filter(|a| **a == "sign_in").count(),
        3,
        "{actions:?}"
    );
    let sues: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor_role"] == "supervisor" && e["conversation_id"] == id.as_str())
        .collect();
    assert_eq!(sues.len(), 2, "{sues:?}");
    assert!(sues.iter().all(|e| e["action"] == "observe"), "{sues:?}");
    assert!(sues.iter().any(|e| e["detail"]["live"] == true), "{sues:?}");
}
