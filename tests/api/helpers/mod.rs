//! Spawning the real gateway for a test: its own database, a port chosen by the OS, a clock the
//! test can move, and a client with helpers for the chat API.

pub mod botapi;
mod db;
pub mod dovecot;
pub mod fake;
pub mod graph;
pub mod process;
pub mod smtp;
pub mod sse;

use std::{net::SocketAddr, time::Duration};

pub use db::{Backend, TestDb};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
pub use sse::{SseEvent, SseReader};
use switchboard::{
    app::Gateway,
    config::{AgentConfig, Config},
    pipeline::Pipeline,
    store::{Db, Store},
    time::Clock,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A running gateway.
pub struct TestApp {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its database, for checks that go around the API.
    pub store: Store,
    /// Its pipeline, for feeding events the way a channel adapter does.
    pub pipeline: Pipeline,
    /// Its staff authentication, for creating accounts.
    pub staff: switchboard::staff::Staff,
    /// Its clock.
    pub clock: Clock,
    /// The configuration it runs with.
    pub config: Config,
    /// An HTTP client.
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    db: Option<TestDb>,
    media: Option<tempfile::TempDir>,
}

/// The configuration tests start from: the built-in agents, with the scripted one streaming
/// without pauses.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.database.url = database_url.to_owned();
    if let Some(AgentConfig::Scripted(scripted)) = config.agents.get_mut("assistant") {
        scripted.word_delay = Duration::ZERO;
    }
    config.server.shutdown_grace = Duration::from_secs(2);
    // Retries within a test's patience.
    config.jobs.retry_base = Duration::from_millis(20);
    config.jobs.retry_max = Duration::from_millis(200);
    config.jobs.poll_interval = Duration::from_millis(200);
    // Every test client comes from 127.0.0.1, many send fast: the limits are tested on their own
    // (`limits.rs`), and elsewhere they are high enough never to refuse.
    let limits = &mut config.limits;
    // Test clients are on this machine; the limits' own tests need them held to the limits too.
    limits.exempt_local = false;
    limits.visitor.messages_per_minute = 100_000;
    limits.visitor.conversations_per_hour = 100_000;
    limits.visitor.handoffs_per_hour = 100_000;
    limits.address.messages_per_minute = 100_000;
    limits.address.conversations_per_hour = 100_000;
    limits.address.handoffs_per_hour = 100_000;
    limits.contact.messages_per_minute = 100_000;
    limits.sign_in.attempts_per_minute = 100_000;
    // Nothing stands in front of the test gateway: a forwarded-for header is the client's claim.
    config.server.trusted_proxies.clear();
    config
}

impl TestApp {
    /// Starts a gateway with the test configuration.
    pub async fn spawn(backend: &Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts a gateway after `configure` adjusted the test configuration.
    pub async fn spawn_with(backend: &Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_with_clock(backend, Clock::system(), configure).await
    }

    /// Like [`TestApp::spawn_with`], on a clock the test moves.
    pub async fn spawn_with_clock(
        backend: &Backend,
        clock: Clock,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let db = TestDb::create(backend).await;
        let media = tempfile::tempdir().expect("a media directory");
        let mut config = test_config(&db.url);
        config.media.dir = media.path().to_owned();
        if let Some(dir) = db.dir() {
            // PostgreSQL has no file to keep the staff key beside (SQLite's default).
            config.staff.key_file = Some(dir.join("staff.key"));
        }
        configure(&mut config);
        let mut app = Self::start(config, clock).await;
        app.db = Some(db);
        app.media = Some(media);
        app
    }

    /// Starts a gateway on an existing configuration (and database).
    pub async fn start(config: Config, clock: Clock) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            switchboard::telemetry::init(&config.log);
        }
        config.validate().expect("a valid test configuration");
        // Tests start several gateways on one database with one configuration: each is an
        // instance of its own (what the configuration names stays for the next start).
        let mut running = config.clone();
        running
            .instance
            .name
            .get_or_insert_with(|| format!("test-{}", uuid::Uuid::new_v4().simple()));
        let gateway = Gateway::build_with_clock(running, clock.clone())
            .await
            .expect("the gateway starts");
        let store = gateway.store().clone();
        let pipeline = gateway.pipeline().clone();
        let staff = gateway.staff().clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(gateway.run(listener, async move {
            let _ = stopped.await;
        }));
        TestApp {
            address,
            store,
            pipeline,
            staff,
            clock,
            config,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            db: None,
            media: None,
        }
    }

    /// Tells the gateway to shut down, without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the gateway gracefully and returns its database so another gateway can use it.
    pub async fn stop(mut self) -> Option<TestDb> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the gateway stops in time")
                .expect("the gateway task")
                .expect("the gateway stops cleanly");
        }
        self.db.take()
    }

    /// A URL on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A request as the visitor with this device id.
    pub fn request(&self, method: Method, path: &str, device: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("X-Device-ID", device)
    }

    /// `POST /v1/chat/messages` as a device; returns status and JSON body.
    pub async fn send(&self, device: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(Method::POST, "/v1/chat/messages", device)
            .json(&body)
            .send()
            .await
            .expect("request");
        json_response(response).await
    }

    /// `POST /v1/chat/messages?wait=false` as a device: the message is stored and acknowledged,
    /// and answered later.
    pub async fn send_later(&self, device: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(Method::POST, "/v1/chat/messages?wait=false", device)
            .json(&body)
            .send()
            .await
            .expect("request");
        json_response(response).await
    }

    /// A text setting of a channel's section (`whatsapp.app_secret`), which the test configured.
    pub fn channel_setting(&self, key: &str) -> String {
        let (section, key) = key.split_once('.').expect("section.key");
        self.config.channels[section][key]
            .as_str()
            .unwrap_or_else(|| panic!("{section}.{key} in the test configuration"))
            .to_owned()
    }

    /// `POST /webhooks/whatsapp` with a body signed with the configured app secret.
    pub async fn whatsapp(&self, body: &[u8]) -> (u16, Value) {
        let secret = self.channel_setting("whatsapp.app_secret");
        self.whatsapp_signed(body, &switchboard_whatsapp::sign(body, &secret))
            .await
    }

    /// `POST /webhooks/whatsapp` with the given signature header.
    pub async fn whatsapp_signed(&self, body: &[u8], signature: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body.to_vec())
            .send()
            .await
            .expect("webhook request");
        json_response(response).await
    }

    /// `POST /webhooks/telegram/{bot}` with the given secret header (none: without the header).
    pub async fn telegram(&self, bot: &str, secret: Option<&str>, body: &[u8]) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.url(&format!("/webhooks/telegram/{bot}")))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(secret) = secret {
            request = request.header("x-telegram-bot-api-secret-token", secret);
        }
        json_response(request.send().await.expect("webhook request")).await
    }

    /// `POST /webhooks/email/raw` with a body signed with the configured raw secret.
    pub async fn email(&self, raw: &[u8]) -> (u16, Value) {
        let secret = self.channel_setting("email.raw_secret");
        let response = self
            .client
            .post(self.url("/webhooks/email/raw"))
            .header("content-type", "message/rfc822")
            .header(
                "x-switchboard-signature",
                switchboard_email::providers::raw::sign(raw, &secret),
            )
            .body(raw.to_vec())
            .send()
            .await
            .expect("mail request");
        json_response(response).await
    }

    /// Creates a staff account (password `correct-horse-battery`) and returns a bearer token.
    pub async fn staff_token(&self, email: &str, role: &str) -> (String, String) {
        let role = role.parse().expect("a role");
        let user = self
            .staff
            .add_user(email, "", role, "correct-horse-battery", 3, None)
            .await
            .expect("a new staff account");
        let response = self
            .client
            .post(self.url("/v1/auth/token"))
            .json(&serde_json::json!({"email": email, "password": "correct-horse-battery"}))
            .send()
            .await
            .expect("token request");
        let (status, body) = json_response(response).await;
        assert_eq!(status, 200, "{body}");
        (
            user.id.into_string(),
            body["token"].as_str().expect("a token").to_owned(),
        )
    }

    /// A request with a staff bearer token.
    pub fn as_staff(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// A staff request's status and JSON body.
    pub async fn staff_call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.as_staff(method, path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        json_response(request.send().await.expect("staff request")).await
    }

    /// Attaches a database to this app, so that it is dropped with it.
    pub fn keep(&mut self, db: Option<TestDb>) {
        self.db = db;
    }

    /// `POST /v1/conversations/{id}/handoff` as a device, without a body.
    pub async fn handoff(&self, device: &str, conversation: &str) -> (u16, Value) {
        let response = self
            .request(
                Method::POST,
                &format!("/v1/conversations/{conversation}/handoff"),
                device,
            )
            .send()
            .await
            .expect("request");
        json_response(response).await
    }

    /// `GET` as a device; returns status and JSON body.
    pub async fn get(&self, device: &str, path: &str) -> (u16, Value) {
        let response = self
            .request(Method::GET, path, device)
            .send()
            .await
            .expect("request");
        json_response(response).await
    }

    /// Opens a conversation's event stream as a device, optionally resuming after an event id.
    pub async fn events(
        &self,
        device: &str,
        conversation: &str,
        last_event_id: Option<&str>,
    ) -> SseReader {
        let mut request = self.request(
            Method::GET,
            &format!("/v1/conversations/{conversation}/events"),
            device,
        );
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        SseReader::new(request.send().await.expect("events request"))
    }

    /// Opens `POST /v1/chat/stream` as a device.
    pub async fn stream(&self, device: &str, body: Value) -> Response {
        self.request(Method::POST, "/v1/chat/stream", device)
            .json(&body)
            .send()
            .await
            .expect("stream request")
    }

    /// The value of one metric series (its name with labels, as `/metrics` prints it, e.g.
    /// `switchboard_websockets_open` or `x_total{direction="input"}`); 0 when it is not there.
    pub async fn metric(&self, series: &str) -> f64 {
        let metrics = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("the metrics")
            .text()
            .await
            .expect("the metrics' text");
        metrics
            .lines()
            .find_map(|line| {
                let value = line.strip_prefix(series)?.strip_prefix(' ')?;
                value.trim().parse::<f64>().ok()
            })
            .unwrap_or_default()
    }

    /// Counts rows of a table (messages, conversations, contacts, media).
    pub async fn count(&self, table: &str) -> i64 {
        let sql: &'static str = match table {
            "messages" => "SELECT COUNT(*) FROM messages",
            "conversations" => "SELECT COUNT(*) FROM conversations",
            "contacts" => "SELECT COUNT(*) FROM contacts",
            "media" => "SELECT COUNT(*) FROM media",
            other => panic!("no count for {other}"),
        };
        let (n,): (i64,) = self
            .store
            .reader()
            .fetch_one(switchboard::store::query(sql))
            .await
            .expect("count");
        n
    }

    /// Waits until the pipeline's work list is empty: every message answered (or left to an
    /// expert).
    pub async fn all_answered(&self) {
        self.eventually(
            Duration::from_secs(20),
            "every message to be answered",
            || async {
                let n = switchboard::store::messages::pending_count(&mut self.store.reader())
                    .await
                    .expect("count pending turns");
                (n == 0).then_some(())
            },
        )
        .await
    }

    /// Waits until no outbound message waits for delivery (each was sent, or failed for good).
    pub async fn all_delivered(&self) {
        self.eventually(
            Duration::from_secs(20),
            "every outbound message to be delivered or failed",
            || async {
                let n = switchboard::store::jobs::count(
                    &mut self.store.reader(),
                    switchboard::store::jobs::DELIVER,
                )
                .await
                .expect("count delivery jobs");
                (n == 0).then_some(())
            },
        )
        .await
    }

    /// Polls `check` until it returns `Some`, or panics after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        eventually(timeout, what, &mut check).await
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: &mut F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Status and JSON body of a response (`Null` for an empty body).
pub async fn json_response(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, body)
}
