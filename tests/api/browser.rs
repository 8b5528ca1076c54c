//! The widget in a real browser: headless Chromium driven over WebDriver (chromedriver).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the test
//! is skipped with a note, unless `SWITCHBOARD_REQUIRE_BROWSER=1` (as in CI) makes that a failure.

use std::{
    io::Write,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use switchboard::config::AgentConfig;

use crate::helpers::{Backend, TestApp};

/// chromedriver and the browser session it drives (more can be opened: [`Browser::session`]).
pub(crate) struct Browser {
    driver: Child,
    /// Where chromedriver listens.
    url: String,
    /// What every session starts with: headless Chromium.
    capabilities: serde_json::Map<String, serde_json::Value>,
    client: Option<Client>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    pub(crate) async fn start() -> Option<Browser> {
        let driver = find(
            "CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let chrome = find(
            "CHROME_BIN",
            &[
                "/usr/bin/chromium",
                "/usr/bin/chromium-browser",
                "/usr/bin/google-chrome",
            ],
        );
        let (Some(driver), Some(chrome)) = (driver, chrome) else {
            if std::env::var_os("SWITCHBOARD_REQUIRE_BROWSER").is_some() {
                panic!(
                    "SWITCHBOARD_REQUIRE_BROWSER is set but chromium/chromedriver are not installed"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "\nnote: the browser test is SKIPPED: install chromium and chromium-driver to run it\n"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1200,900",
                ]
            }),
        );
        // The console, for tests that must see no errors there (a refused CORS request is only
        // reported on the console).
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let mut browser = Browser {
            driver: child,
            url: format!("http://127.0.0.1:{port}"),
            capabilities,
            client: None,
        };
        browser.client = Some(browser.session().await);
        Some(browser)
    }

    /// A new browser session: a browser of its own, with its own profile (cookies, storage).
    pub(crate) async fn session(&self) -> Client {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let connector =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(self.capabilities.clone())
                    .connect(&self.url)
                    .await;
            match connector {
                Ok(client) => return client,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("cannot start a browser session: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The first session.
    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }
}

/// The browser console's entries since the last call (chromedriver's log endpoint).
pub(crate) async fn console(client: &Client) -> Vec<serde_json::Value> {
    #[derive(Debug)]
    struct BrowserLog;
    impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
        fn endpoint(
            &self,
            base: &url::Url,
            session: Option<&str>,
        ) -> Result<url::Url, url::ParseError> {
            base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
        }

        fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
            (
                http::Method::POST,
                Some(json!({"type": "browser"}).to_string()),
            )
        }
    }
    match client.issue_cmd(BrowserLog).await {
        Ok(serde_json::Value::Array(entries)) => entries,
        other => panic!("cannot read the browser console: {other:?}"),
    }
}

/// The text of every element matching a CSS selector.
pub(crate) async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in client.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(element.text().await.unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_chats_with_the_assistant_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        if let Some(AgentConfig::Scripted(s)) = c.agents.get_mut("assistant") {
            s.word_delay = Duration::from_millis(60);
        }
    })
    .await;
    let greeting = match &app.config.agents["assistant"] {
        AgentConfig::Scripted(s) => s.greeting.clone(),
        _ => unreachable!(),
    };
    let client = browser.client();
    client.goto(&app.url("/")).await.unwrap();
    let page = client.source().await.unwrap();
    assert!(
        page.contains(&format!("{}/widget.js", app.url(""))),
        "the page shows the embed snippet"
    );

    let input = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#sbw-input"))
        .await
        .expect("the widget opens on the page");
    input.send_keys("hello").await.unwrap();
    client
        .find(Locator::Css("#sbw-send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Watch the reply grow word by word until it is complete.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let replies = texts(client, ".sbw-msg.sbw-ai").await;
        if let Some(text) = replies.first() {
            if seen.last() != Some(text) {
                seen.push(text.clone());
            }
            if *text == greeting {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no complete reply; saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        seen.iter()
            .any(|t| !t.is_empty() && t.len() < greeting.len() && greeting.starts_with(t.as_str())),
        "the reply streamed in: only saw {seen:?}"
    );
    assert_eq!(texts(client, ".sbw-msg.sbw-user").await, ["hello"]);

    // After a reload the conversation is still there, from the server.
    client.refresh().await.unwrap();
    let mut restored = Vec::new();
    for _ in 0..200 {
        restored = texts(client, ".sbw-msg.sbw-ai").await;
        if !restored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(restored, std::slice::from_ref(&greeting));

    // The greeting offers its topics as buttons; a tap asks that question.
    let mut offered = Vec::new();
    for _ in 0..200 {
        offered = texts(client, ".sbw-choice").await;
        if !offered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(offered, ["Opening hours", "Pricing", "Talk to a human"]);
    client
        .find(Locator::XPath(
            "//button[@class='sbw-choice' and text()='Opening hours']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let hours = "We're open Monday to Friday, 9:00 to 18:00.";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let replies = texts(client, ".sbw-msg.sbw-ai").await;
        if replies.last().map(String::as_str) == Some(hours) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer to the tapped choice; saw {replies:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        texts(client, ".sbw-msg.sbw-user").await,
        ["hello", "Opening hours"]
    );
    assert!(
        texts(client, ".sbw-choice").await.is_empty(),
        "only the newest reply's choices are shown"
    );

    // Asking for a person: the notice appears and the assistant stays quiet.
    client
        .find(Locator::Css("#sbw-human"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = texts(client, "#sbw-status").await.join("");
        if status.contains("expert") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no expert notice");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        texts(client, ".sbw-msg.sbw-system")
            .await
            .iter()
            .any(|t| t.contains("expert"))
    );
    if let Some(client) = browser.client.clone() {
        let _ = client.close().await;
    }
}

/// A customer's site on another origin embeds the widget with the one line the gateway's page
/// shows: preflighted requests (JSON bodies, identity and idempotency headers) and the event stream
/// all cross origins, the history comes back after a reload, and the console stays clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_works_embedded_on_another_site() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let greeting = match &app.config.agents["assistant"] {
        AgentConfig::Scripted(s) => s.greeting.clone(),
        _ => unreachable!(),
    };
    let embed = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Shop</title></head><body>\
         <h1>Our shop</h1>\
         <script>window.pageErrors = [];\
           addEventListener('error', e => pageErrors.push(String(e.message)));\
           addEventListener('unhandledrejection', e => pageErrors.push(String(e.reason)));</script>\
         <script src=\"{}/widget.js\" data-open=\"true\" async></script></body></html>",
        app.url("")
    );
    let site = crate::helpers::fake::serve(
        axum::Router::new()
            .route(
                "/",
                axum::routing::get(move || {
                    let page = embed.clone();
                    async move { axum::response::Html(page) }
                }),
            )
            .route(
                "/favicon.ico",
                axum::routing::get(|| async { axum::http::StatusCode::NO_CONTENT }),
            ),
    )
    .await;
    // localhost is another origin than the gateway's 127.0.0.1 (and another port too).
    let page = format!("http://localhost:{}/", site.address.port());
    let client = browser.client();
    client.goto(&page).await.unwrap();
    let input = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#sbw-input"))
        .await
        .expect("the widget opens on the customer's page");
    input.send_keys("hello").await.unwrap();
    client
        .find(Locator::Css("#sbw-send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let errors = texts(client, ".sbw-error").await;
        assert!(errors.is_empty(), "the widget shows an error: {errors:?}");
        if texts(client, ".sbw-msg.sbw-ai").await.first() == Some(&greeting) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reply on the other site"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // After a reload the conversation comes back from the gateway, across origins.
    client.refresh().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if texts(client, ".sbw-msg.sbw-ai").await == std::slice::from_ref(&greeting)
            && texts(client, ".sbw-msg.sbw-user").await == ["hello"]
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no history after the reload"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The event stream (opened after the history loaded) carries the experts' notice across
    // origins too.
    client
        .find(Locator::Css("#sbw-human"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !texts(client, "#sbw-status")
        .await
        .join("")
        .contains("expert")
    {
        assert!(tokio::time::Instant::now() < deadline, "no expert notice");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let page_errors = client
        .execute("return window.pageErrors", vec![])
        .await
        .unwrap();
    assert_eq!(page_errors, json!([]), "errors on the page");
    let problems: Vec<serde_json::Value> = console(client)
        .await
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
        .collect();
    assert!(problems.is_empty(), "console: {problems:#?}");
    assert_eq!(
        app.count("messages").await,
        3,
        "hello, the greeting, the handoff notice"
    );
    if let Some(client) = browser.client.clone() {
        let _ = client.close().await;
    }
}

/// Waits until `check` holds, polling the page.
async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether every picture in the visitor's bubbles is loaded and shown, and there are `n`.
async fn pictures_shown(client: &Client, n: usize) -> bool {
    let shown = client
        .execute(
            "return Array.from(document.querySelectorAll('.sbw-msg.sbw-user img.sbw-image'))\
             .map(img => img.complete && img.naturalWidth > 0)",
            vec![],
        )
        .await
        .unwrap_or_default();
    shown
        .as_array()
        .is_some_and(|all| all.len() == n && all.iter().all(|v| v == &json!(true)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_sends_a_picture_from_the_attach_button() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("a directory");
    let picture = dir.path().join("holiday.png");
    std::fs::write(&picture, crate::uploads::png()).expect("the picture");
    let client = browser.client();
    client.goto(&app.url("/")).await.unwrap();
    let input = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#sbw-input"))
        .await
        .expect("the widget opens on the page");
    input.send_keys("here it is").await.unwrap();
    let attach = client.find(Locator::Css("#sbw-file")).await.unwrap();
    assert_eq!(
        attach.attr("aria-label").await.unwrap().as_deref(),
        Some("Attach a picture or PDF")
    );
    attach
        .send_keys(picture.to_str().expect("a path"))
        .await
        .unwrap();

    until(
        "the picture is shown in the visitor's bubble",
        Duration::from_secs(10),
        || pictures_shown(client, 1),
    )
    .await;
    until(
        "the message is stored with its picture",
        Duration::from_secs(10),
        || async { texts(client, ".sbw-msg.sbw-user[data-id]").await == ["here it is"] },
    )
    .await;
    assert_eq!(app.count("media").await, 1);
    let errors = texts(client, ".sbw-error").await;
    assert!(errors.is_empty(), "the widget shows an error: {errors:?}");

    // After a reload the picture comes back from the gateway, fetched as the visitor.
    client.refresh().await.unwrap();
    until(
        "the picture is shown again after a reload",
        Duration::from_secs(10),
        || pictures_shown(client, 1),
    )
    .await;
    assert_eq!(texts(client, ".sbw-msg.sbw-user").await, ["here it is"]);

    // A file the gateway does not take is refused in the widget, and nothing is stored.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "plain text").expect("the file");
    client
        .find(Locator::Css("#sbw-file"))
        .await
        .unwrap()
        .send_keys(text.to_str().expect("a path"))
        .await
        .unwrap();
    until("the refusal is shown", Duration::from_secs(10), || async {
        texts(client, ".sbw-error")
            .await
            .iter()
            .any(|t| t.contains("PDF"))
    })
    .await;
    assert_eq!(app.count("media").await, 1);
    assert_eq!(app.count("messages").await, 2, "the picture and its answer");
    if let Some(client) = browser.client.clone() {
        let _ = client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_lists_switches_and_starts_conversations() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn_with(&Backend::Sqlite, |c| {
        c.routing.default_agent = "echo".into()
    })
    .await;
    let client = browser.client();
    client.goto(&app.url("/")).await.unwrap();
    let say = |text: &'static str| async move {
        let input = client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#sbw-input"))
            .await
            .expect("the message field");
        input.send_keys(text).await.unwrap();
        client
            .find(Locator::Css("#sbw-send"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the answer", Duration::from_secs(10), || async {
            texts(client, ".sbw-msg.sbw-ai[data-id]").await.len()
                == texts(client, ".sbw-msg.sbw-user").await.len()
                && texts(client, ".sbw-msg.sbw-user[data-id]")
                    .await
                    .last()
                    .map(String::as_str)
                    == Some(text)
        })
        .await;
    };
    say("about my order").await;

    // A new conversation starts empty; its first message creates it.
    let click = |css: &'static str| async move {
        client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    };
    click("#sbw-list").await;
    click("#sbw-new").await;
    assert!(texts(client, ".sbw-msg.sbw-user").await.is_empty());
    say("about a refund").await;
    assert_eq!(texts(client, ".sbw-msg.sbw-user").await, ["about a refund"]);
    assert_eq!(app.count("conversations").await, 2);

    // The list shows both, newest first, the current one marked.
    click("#sbw-list").await;
    until(
        "both conversations are listed",
        Duration::from_secs(10),
        || async { texts(client, ".sbw-conversation").await.len() == 2 },
    )
    .await;
    let listed = texts(client, ".sbw-conversation").await;
    assert!(listed[0].starts_with("about a refund"), "{listed:?}");
    assert!(listed[1].starts_with("about my order"), "{listed:?}");
    let current = client
        .find(Locator::Css(".sbw-conversation[aria-current='true']"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(current.starts_with("about a refund"), "{current}");

    // Switching shows the other conversation's history, and it stays current after a reload.
    client
        .find(Locator::XPath(
            "//button[contains(@class,'sbw-conversation') and starts-with(.,'about my order')]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the earlier history", Duration::from_secs(10), || async {
        texts(client, ".sbw-msg.sbw-user").await == ["about my order"]
            && texts(client, ".sbw-msg.sbw-ai").await.len() == 1
    })
    .await;
    say("one more thing").await;
    assert_eq!(
        texts(client, ".sbw-msg.sbw-user").await,
        ["about my order", "one more thing"]
    );
    client.refresh().await.unwrap();
    until(
        "the switched-to conversation after a reload",
        Duration::from_secs(10),
        || async {
            texts(client, ".sbw-msg.sbw-user").await == ["about my order", "one more thing"]
        },
    )
    .await;
    assert_eq!(app.count("conversations").await, 2);
    if let Some(client) = browser.client.clone() {
        let _ = client.close().await;
    }
}
