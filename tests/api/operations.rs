//! What operators see: Prometheus metrics that move when messages are handled, the request id of
//! every request, the health report with its dependencies, and readiness through a shutdown.
//!
//! The metrics recorder is process-wide, and tests run in parallel: series that other tests also
//! move are checked for an increase, series of this test alone (an agent named after the test and
//! the backend) for exact values.

use std::time::Duration;

use serde_json::json;
use switchboard::{
    config::{AgentConfig, Config, EchoConfig, OpenAiConfig},
    store::jobs::{self, NewJob},
};

use crate::{
    both_backends,
    helpers::{
        Backend, TestApp, eventually,
        fake::{FakeModel, ModelBehaviour},
        json_response,
        smtp::FakeSmtp,
    },
};

both_backends!(
    metrics_move_when_a_message_is_handled,
    queue_lag_pending_turns_and_agent_timeouts_are_measured,
);

/// The metrics as text.
async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

/// The value of the series `name` whose labels include every one of `labels` (0 when absent).
fn value(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

fn agent_name(backend: &Backend, what: &str) -> String {
    match backend {
        Backend::Sqlite => format!("{what}-sqlite"),
        Backend::Postgres(_) => format!("{what}-postgres"),
    }
}

fn echo_agent(c: &mut Config, name: &str) {
    c.agents
        .insert(name.into(), AgentConfig::Echo(EchoConfig::default()));
    c.routing.default_agent = name.into();
}

async fn metrics_move_when_a_message_is_handled(backend: Backend) {
    let agent = agent_name(&backend, "ops-echo");
    let app = TestApp::spawn_with(&backend, |c| echo_agent(c, &agent)).await;
    let before = scrape(&app).await;

    let (status, body) = app
        .send("dev-metrics", json!({"content": "count me"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .get(
            "dev-metrics",
            &format!("/v1/conversations/{conversation}/messages"),
        )
        .await;
    assert_eq!(status, 200);
    let missing = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let after = scrape(&app).await;

    let grew = |name: &str, labels: &[(&str, &str)]| {
        let (b, a) = (value(&before, name, labels), value(&after, name, labels));
        assert!(a > b, "{name}{labels:?} did not grow: {b} → {a}\n{after}");
    };
    let posted = [
        ("method", "POST"),
        ("route", "/v1/chat/messages"),
        ("status", "200"),
    ];
    grew("switchboard_http_requests_total", &posted);
    grew(
        "switchboard_http_request_duration_seconds_count",
        &[("method", "POST"), ("route", "/v1/chat/messages")],
    );
    // Routes are labelled by their template, never by the ids in the path.
    grew(
        "switchboard_http_requests_total",
        &[
            ("route", "/v1/conversations/{id}/messages"),
            ("status", "200"),
        ],
    );
    assert!(!after.contains(&conversation), "an id leaked into a label");
    grew(
        "switchboard_http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
    );
    grew("switchboard_messages_received_total", &[("channel", "web")]);
    grew(
        "switchboard_reply_latency_seconds_count",
        &[("channel", "web")],
    );
    // This test's agent alone: exact figures.
    let calls = [("agent", agent.as_str()), ("outcome", "ok")];
    assert_eq!(value(&after, "switchboard_agent_calls_total", &calls), 1.0);
    assert_eq!(
        value(
            &after,
            "switchboard_agent_call_duration_seconds_count",
            &[("agent", agent.as_str())]
        ),
        1.0
    );
    // Read at the scrape.
    assert!(value(&after, "switchboard_db_connections_max", &[]) >= 1.0);
    assert!(after.contains("switchboard_db_connections{state=\"in_use\"}"));
    assert!(after.contains("switchboard_event_streams_open "));
    assert!(after.contains("switchboard_pending_turns "));
    assert_eq!(
        value(
            &after,
            "switchboard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Described for Prometheus, with histograms rather than summaries.
    assert!(after.contains("# TYPE switchboard_http_request_duration_seconds histogram"));
    assert!(after.contains("# HELP switchboard_messages_received_total"));
    app.stop().await;
}

async fn queue_lag_pending_turns_and_agent_timeouts_are_measured(backend: Backend) {
    let agent = agent_name(&backend, "ops-hang");
    let queue: &'static str = match backend {
        Backend::Sqlite => "lag_probe_sqlite",
        Backend::Postgres(_) => "lag_probe_postgres",
    };
    let model = FakeModel::start(ModelBehaviour::Hang).await;
    let app = TestApp::spawn_with(&backend, |c| {
        c.agents.insert(
            agent.clone(),
            AgentConfig::Openai(OpenAiConfig {
                base_url: model.base_url(),
                model: "test-model".into(),
                timeout: Duration::from_secs(30),
                ..OpenAiConfig::default()
            }),
        );
        c.routing.default_agent = agent.clone();
        c.pipeline.agent_timeout = Duration::from_secs(2);
    })
    .await;
    // A job of a queue nobody works, due 90 seconds ago: the queue lags by that much.
    let mut tx = app.store.begin().await.unwrap();
    let due = app.clock.now().minus(Duration::from_secs(90));
    jobs::enqueue(&mut tx, NewJob::new(queue, "probe"), due)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let (status, body) = app
        .send_later("dev-hang", json!({"content": "are you there?"}))
        .await;
    assert_eq!(status, 202, "{body}");
    model.wait_for_requests(1, Duration::from_secs(10)).await;
    let during = scrape(&app).await;
    assert_eq!(
        value(&during, "switchboard_jobs_queued", &[("queue", queue)]),
        1.0
    );
    let lag = value(
        &during,
        "switchboard_jobs_oldest_due_age_seconds",
        &[("queue", queue)],
    );
    assert!((90.0..120.0).contains(&lag), "lag {lag}");
    assert_eq!(value(&during, "switchboard_pending_turns", &[]), 1.0);

    // The agent runs out of time: a timeout, and the fallback answers.
    let timeouts = [("agent", agent.as_str()), ("outcome", "timeout")];
    eventually(
        Duration::from_secs(15),
        "the agent call to time out",
        &mut || {
            let app = &app;
            async move {
                let metrics = scrape(app).await;
                (value(&metrics, "switchboard_agent_calls_total", &timeouts) == 1.0).then_some(())
            }
        },
    )
    .await;
    app.all_answered().await;
    let after = scrape(&app).await;
    assert_eq!(value(&after, "switchboard_pending_turns", &[]), 0.0);
    app.stop().await;
}

#[tokio::test]
async fn metrics_need_their_token_when_one_is_set() {
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.server.metrics_token = switchboard_channel::Secret::new("scrape-secret-123");
    })
    .await;
    for header in [None, Some("Bearer wrong"), Some("scrape-secret-123")] {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let (status, body) = json_response(request.send().await.unwrap()).await;
        assert_eq!(status, 401, "{header:?}");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("switchboard_"));
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_its_request_id() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let id_of = |response: &reqwest::Response| {
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    // The client's (or its proxy's) id is kept…
    let response = app
        .request(reqwest::Method::POST, "/v1/chat/messages", "dev-id")
        .header("X-Request-Id", "client-req-42")
        .json(&json!({"content": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(id_of(&response), "client-req-42");
    // …one is made when there is none, or when it is unfit for a log line.
    let plain = app.client.get(app.url("/version")).send().await.unwrap();
    let made = id_of(&plain);
    assert_eq!(made.len(), 32, "{made}");
    assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
    let long = "x".repeat(200);
    let replaced = app
        .client
        .get(app.url("/version"))
        .header("X-Request-Id", &long)
        .send()
        .await
        .unwrap();
    assert_ne!(id_of(&replaced), long);
    assert_ne!(id_of(&replaced), made);
    // Errors carry one too.
    let missing = app
        .client
        .get(app.url("/nowhere"))
        .header("X-Request-Id", "lost-1")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(id_of(&missing), "lost-1");
    app.stop().await;
}

#[tokio::test]
async fn health_reports_version_uptime_and_each_dependency() {
    let smtp = FakeSmtp::start().await;
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.set("email.from", "Support <support@mail.example.com>");
        c.set("email.smtp_url", smtp.url());
    })
    .await;
    let (status, body) =
        json_response(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64());
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert!(body["checks"]["database"]["latency_ms"].is_number());
    assert_eq!(body["checks"]["email.smtp"]["status"], "ok", "{body}");
    app.stop().await;

    // A relay that is down is reported, without failing the check: messages still arrive and
    // their replies are retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.set("email.from", "Support <support@mail.example.com>");
        c.set("email.smtp_url", format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    let (status, body) =
        json_response(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["email.smtp"]["status"], "error", "{body}");
    let error = body["checks"]["email.smtp"]["error"].as_str().unwrap();
    assert!(error.contains(&port.to_string()), "{error}");
    app.stop().await;
}

#[tokio::test]
async fn readiness_follows_start_and_shutdown() {
    let mut app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.server.drain_delay = Duration::from_secs(3);
    })
    .await;
    let ready = |app: &TestApp| {
        let request = app.client.get(app.url("/readyz"));
        async move { json_response(request.send().await.unwrap()).await }
    };
    eventually(
        Duration::from_secs(10),
        "the gateway to be ready",
        &mut || {
            let answer = ready(&app);
            async move { (answer.await.0 == 200).then_some(()) }
        },
    )
    .await;

    app.begin_stop();
    let (status, body) = eventually(Duration::from_secs(2), "readiness to drop", &mut || {
        let answer = ready(&app);
        async move { Some(answer.await).filter(|(status, _)| *status == 503) }
    })
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "stopping");
    // Still serving while load balancers notice.
    let (status, body) = app
        .send("dev-late", json!({"content": "still there?"}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}
