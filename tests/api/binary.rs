//! The real `switchboard` binary: a message acknowledged to the client survives `kill -9` in the
//! middle of its reply (and is answered after the restart), SIGTERM stops it cleanly,
//! `switchboard migrate` prepares a database, and `switchboard replay` posts recorded webhooks.

use std::{path::Path, process::Command, time::Duration};

use serde_json::json;

use crate::{
    both_backends,
    helpers::{
        Backend, SseReader, TestDb,
        fake::{FakeModel, ModelBehaviour},
        json_response,
        process::Gateway,
    },
};

both_backends!(an_acknowledged_message_survives_a_crash_mid_reply);

async fn an_acknowledged_message_survives_a_crash_mid_reply(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let model = FakeModel::start(ModelBehaviour::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [database]\nurl = {url}\n\
             [pipeline]\nagent_timeout = \"2m\"\n\
             [routing]\ndefault_agent = \"gpt\"\n\
             [agents.gpt]\nkind = \"openai\"\nbase_url = {base}\ntimeout = \"2m\"\n",
            url = toml::Value::String(db.url.clone()),
            base = toml::Value::String(model.base_url()),
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();

    let first = Gateway::start(&config);
    let (status, body) = json_response(
        client
            .post(first.url("/v1/chat/messages?wait=false"))
            .header("X-Device-ID", "dev-1")
            .json(&json!({"content": "please survive"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "acknowledged: {body}");
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();
    // The agent is working on the reply (and will never finish) when the process dies.
    model.wait_for_requests(1, Duration::from_secs(10)).await;
    first.kill();

    model.set(ModelBehaviour::Stream(
        vec!["Recovered".into(), " after a crash".into()],
        Duration::ZERO,
    ));
    let second = Gateway::start(&config);
    let response = client
        .get(second.url(&format!("/v1/conversations/{conversation}/events")))
        .header("X-Device-ID", "dev-1")
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(response);
    let (reply, _) = events
        .until(Duration::from_secs(20), |e| {
            e.name() == "message" && e.json()["role"] == "ai"
        })
        .await;
    assert_eq!(
        reply.json()["content"],
        "Recovered after a crash",
        "log: {:#?}",
        second.log()
    );
    assert_eq!(reply.json()["reply_to"], body["message"]["id"]);

    let (_, page) = json_response(
        client
            .get(second.url(&format!("/v1/conversations/{conversation}/messages")))
            .header("X-Device-ID", "dev-1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let roles: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "ai"], "answered exactly once");
    assert_eq!(model.requests().len(), 2);
    drop(second);
    drop(db);
}

/// SIGTERM stops the gateway cleanly: it exits on its own, with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_gateway_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    let db = dir.path().join("gw.db");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = {}\n",
            toml::Value::String(format!("sqlite://{}", db.display()))
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&config);
    let health = reqwest::get(gateway.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    gateway.terminate();
    let exit = gateway.exited(Duration::from_secs(15)).await;
    assert!(exit.success(), "exit status {exit}");
}

/// `switchboard migrate` creates the schema and exits; `serve` then starts on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_prepares_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("migrate")
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        db.display()
    ))
    .await
    .unwrap();
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let tables: Vec<&str> = tables.iter().map(|(t,)| t.as_str()).collect();
    for table in ["contacts", "conversations", "messages", "pending_turns"] {
        assert!(tables.contains(&table), "{table} missing from {tables:?}");
    }

    // A configuration error is reported plainly, with a failing exit status.
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("migrate")
        .env("DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("database.url"));
}

/// Runs the `switchboard` binary with arguments and environment variables (and no configuration
/// file); returns whether it succeeded and what it printed.
fn switchboard(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args).env_remove("SWITCHBOARD_CONFIG");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run switchboard");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// Runs `switchboard replay` of a WhatsApp fixture against a gateway with a WhatsApp app secret.
fn replay(address: std::net::SocketAddr, secret: &str, extra: &[&str]) -> (bool, String) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks/whatsapp/text.json");
    let url = format!("http://{address}");
    let mut args = vec!["replay", file.to_str().unwrap(), "--url", &url];
    args.extend(extra);
    switchboard(
        &args,
        &[
            ("WHATSAPP_APP_SECRET", secret),
            ("WHATSAPP_VERIFY_TOKEN", "any"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_posts_a_recorded_webhook_signed() {
    let graph = crate::helpers::graph::FakeGraph::start().await;
    let app = crate::helpers::TestApp::spawn_with(&Backend::Sqlite, |config| {
        config.set("whatsapp.app_secret", "replay-secret");
        config.set("whatsapp.verify_token", "replay-token");
        config.set("whatsapp.access_token", "token");
        config.set("whatsapp.api_base", graph.base_url());
    })
    .await;
    let address = app.address;
    let run = move |secret: &'static str, extra: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || replay(address, secret, extra))
    };

    let (ok, printed) = run("replay-secret", &[]).await.unwrap();
    assert!(ok, "{printed}");
    assert!(
        printed.contains("200") && printed.contains("\"stored\":1"),
        "{printed}"
    );
    // The fixture's message is answered, as if just written (its recorded time is long past).
    graph.wait_for_accepted(1).await;

    // Replayed again, it is a provider retry; with new ids, a new message.
    let (ok, printed) = run("replay-secret", &[]).await.unwrap();
    assert!(ok && printed.contains("\"duplicates\":1"), "{printed}");
    let (ok, printed) = run("replay-secret", &["--new-ids"]).await.unwrap();
    assert!(ok && printed.contains("\"stored\":1"), "{printed}");
    graph.wait_for_accepted(2).await;

    // Signed with another secret, it is refused, and the command says so.
    let (ok, printed) = run("another-secret", &[]).await.unwrap();
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("401") && printed.contains("invalid_signature"),
        "{printed}"
    );
    assert_eq!(app.count("messages").await, 4, "two messages, two replies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_webhooks_are_registered_and_replayed() {
    let api = crate::helpers::botapi::FakeBotApi::start().await;
    let api_url: &'static str = Box::leak(api.api_url().into_boxed_str());
    let env = [
        ("TELEGRAM_BOT_TOKEN", "7000000001:test-token"),
        ("TELEGRAM_BOT_NAME", "support"),
        ("TELEGRAM_WEBHOOK_SECRET", "replay-secret"),
        ("TELEGRAM_API_URL", api_url),
    ];

    // set-webhook needs to know where the gateway is reachable, over HTTPS.
    let (ok, printed) =
        tokio::task::spawn_blocking(move || switchboard(&["telegram", "set-webhook"], &env))
            .await
            .unwrap();
    assert!(!ok && printed.contains("public_url"), "{printed}");
    let (ok, printed) = tokio::task::spawn_blocking(move || {
        let mut env = env.to_vec();
        env.push(("SWITCHBOARD_PUBLIC_URL", "https://chat.example.test"));
        switchboard(&["telegram", "set-webhook"], &env)
    })
    .await
    .unwrap();
    assert!(ok, "{printed}");
    assert!(
        printed.contains("registered https://chat.example.test/webhooks/telegram/support"),
        "{printed}"
    );
    let registered = &api.calls_of("setWebhook")[0].params;
    assert_eq!(
        registered["url"],
        "https://chat.example.test/webhooks/telegram/support"
    );
    assert_eq!(registered["secret_token"], "replay-secret");
    let allowed = registered["allowed_updates"].to_string();
    for kind in [
        "message",
        "edited_message",
        "callback_query",
        "my_chat_member",
    ] {
        assert!(allowed.contains(kind), "{allowed}");
    }

    // A recorded update replayed with the secret reaches the gateway's bot.
    let app = crate::helpers::TestApp::spawn_with(&Backend::Sqlite, |config| {
        config.set("telegram.token", "7000000001:test-token");
        config.set("telegram.name", "support");
        config.set("telegram.webhook_secret", "replay-secret");
        config.set("telegram.api_url", api.api_url());
    })
    .await;
    let url = format!("http://{}", app.address);
    let (ok, printed) = tokio::task::spawn_blocking(move || {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks/telegram/text.json");
        switchboard(&["replay", file.to_str().unwrap(), "--url", &url], &env)
    })
    .await
    .unwrap();
    assert!(ok && printed.contains("\"stored\":1"), "{printed}");
    api.wait_for_sends(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_fixtures_are_replayed_through_their_routes() {
    let smtp = crate::helpers::smtp::FakeSmtp::start().await;
    let smtp_url = smtp.url();
    let app = crate::helpers::TestApp::spawn_with(&Backend::Sqlite, move |config| {
        config.set(
            "email.from",
            "Switchboard Support <support@mail.example.com>",
        );
        config.set("email.smtp_url", smtp_url);
        config.set("email.raw_secret", "raw-secret");
        config.set("email.mailgun_signing_key", "mailgun-key");
        config.set("email.inbound_user", "postmaster");
        config.set("email.inbound_password", "inbound-password");
    })
    .await;
    let url = format!("http://{}", app.address);
    for file in [
        "new_mail.eml",
        "mailgun.json",
        "postmark.json",
        "sendgrid.json",
    ] {
        let url = url.clone();
        let (ok, printed) = tokio::task::spawn_blocking(move || {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("webhooks/email")
                .join(file);
            switchboard(
                &["replay", path.to_str().unwrap(), "--url", &url],
                &[
                    (
                        "EMAIL_FROM",
                        "Switchboard Support <support@mail.example.com>",
                    ),
                    ("EMAIL_RAW_SECRET", "raw-secret"),
                    ("MAILGUN_SIGNING_KEY", "mailgun-key"),
                    ("EMAIL_INBOUND_USER", "postmaster"),
                    ("EMAIL_INBOUND_PASSWORD", "inbound-password"),
                ],
            )
        })
        .await
        .unwrap();
        assert!(ok && printed.contains("\"stored\":1"), "{file}: {printed}");
    }
    // Replayed again with new ids, a recorded mail is a new mail.
    let (ok, printed) = tokio::task::spawn_blocking(move || {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks/email/new_mail.eml");
        switchboard(
            &["replay", path.to_str().unwrap(), "--url", &url, "--new-ids"],
            &[
                (
                    "EMAIL_FROM",
                    "Switchboard Support <support@mail.example.com>",
                ),
                ("EMAIL_RAW_SECRET", "raw-secret"),
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok && printed.contains("\"stored\":1"), "{printed}");
    smtp.wait_for(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_accounts_are_created_from_the_command_line() {
    let db = TestDb::create(&Backend::Sqlite).await;
    let url: &'static str = Box::leak(db.url.clone().into_boxed_str());
    let add = move |password: &'static str, email: &'static str| {
        tokio::task::spawn_blocking(move || {
            switchboard(
                &[
                    "user", "add", "--email", email, "--role", "expert", "--name", "Ana",
                ],
                &[
                    ("DATABASE_URL", url),
                    ("SWITCHBOARD_USER_PASSWORD", password),
                ],
            )
        })
    };
    let (ok, printed) = add("short", "ana@example.com").await.unwrap();
    assert!(!ok && printed.contains("at least 10"), "{printed}");
    let (ok, printed) = add("correct-horse-battery", "ana@example.com")
        .await
        .unwrap();
    assert!(
        ok && printed.contains("created expert ana@example.com"),
        "{printed}"
    );
    let (ok, printed) = add("correct-horse-battery", "ana@example.com")
        .await
        .unwrap();
    assert!(!ok && printed.contains("exists"), "{printed}");
    let (ok, printed) = tokio::task::spawn_blocking(move || {
        switchboard(&["user", "list"], &[("DATABASE_URL", url)])
    })
    .await
    .unwrap();
    assert!(
        ok && printed.contains("expert\tana@example.com\tAna\tactive"),
        "{printed}"
    );

    // The account signs in on a gateway over the same database.
    let mut config = crate::helpers::test_config(&db.url);
    config.server.shutdown_grace = Duration::from_secs(1);
    let app = crate::helpers::TestApp::start(config, switchboard::time::Clock::system()).await;
    let response = app
        .client
        .post(app.url("/v1/auth/token"))
        .json(&json!({"email": "Ana@Example.com", "password": "correct-horse-battery"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_response(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "expert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_fixtures_are_replayed_signed_for_their_integration() {
    let integration = switchboard_api::testing::FakeIntegration::start().await;
    let section = format!(
        "[[api.integrations]]\nname = \"crm\"\nsecret = \"replay-secret\"\ncallback_url = \"{}\"\n",
        integration.url("/callback")
    );
    let table: toml::Table = section.parse().unwrap();
    let app = crate::helpers::TestApp::spawn_with(&Backend::Sqlite, |config| {
        config.set("api.integrations", table["api"]["integrations"].clone());
        config.routing.default_agent = "echo".into();
    })
    .await;
    // The command signs with the integration's secret from the operator's configuration file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, &section).unwrap();
    let url = format!("http://{}", app.address);
    let run = move |extra: &'static [&'static str]| {
        let (path, url) = (path.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks/api/message.json");
            let mut args = vec![
                "--config",
                path.to_str().unwrap(),
                "replay",
                file.to_str().unwrap(),
                "--url",
                &url,
            ];
            args.extend(extra);
            switchboard(&args, &[])
        })
    };
    let (ok, printed) = run(&[]).await.unwrap();
    assert!(ok && printed.contains("\"stored\":1"), "{printed}");
    integration
        .wait(
            || !integration.of_type("message").is_empty(),
            "the answer posted to the integration",
        )
        .await;
    assert!(integration.of_type("message")[0].is_signed_with("replay-secret"));
    let (ok, printed) = run(&[]).await.unwrap();
    assert!(ok && printed.contains("\"duplicates\":1"), "{printed}");
    let (ok, printed) = run(&["--new-ids"]).await.unwrap();
    assert!(ok && printed.contains("\"stored\":1"), "{printed}");
}

/// Every request is one log line at `info` (method, route template, status, latency, request id),
/// and what the request causes — the turn answering the message it stored — logs under the same
/// request id. In the JSON format collectors read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_logged_with_an_id_their_work_carries() {
    let model = FakeModel::start(ModelBehaviour::Fail(500, "the model is down".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [database]\nurl = {url}\n\
             [log]\nformat = \"json\"\n\
             [routing]\ndefault_agent = \"gpt\"\n\
             [agents.gpt]\nkind = \"openai\"\nbase_url = {base}\n",
            url = toml::Value::String(format!("sqlite://{}", dir.path().join("gw.db").display())),
            base = toml::Value::String(model.base_url()),
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&config);
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/messages"))
        .header("X-Device-ID", "dev-log")
        .header("X-Request-Id", "log-probe-1")
        .json(&json!({"content": "hello?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "log-probe-1");

    let mut seen: Vec<serde_json::Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (request_line, turn_line) = loop {
        seen.extend(
            gateway
                .log()
                .iter()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()),
        );
        let request_line = seen.iter().find(|l| {
            l["fields"]["message"] == "request" && l["fields"]["request_id"] == "log-probe-1"
        });
        // The agent's failure is logged inside the turn, a child of the request's span.
        let turn_line = seen.iter().find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("the agent failed"))
        });
        if let (Some(r), Some(t)) = (request_line, turn_line) {
            break (r.clone(), t.clone());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log lines missing: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(request_line["level"], "INFO");
    assert_eq!(request_line["fields"]["method"], "POST");
    assert_eq!(request_line["fields"]["route"], "/v1/chat/messages");
    assert_eq!(request_line["fields"]["status"], 200);
    assert!(request_line["fields"]["latency_ms"].is_number());
    let spans = turn_line["spans"].as_array().unwrap();
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "request" && s["request_id"] == "log-probe-1"),
        "{turn_line}"
    );
    assert!(spans.iter().any(|s| s["name"] == "turn"), "{turn_line}");
}
