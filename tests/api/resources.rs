//! What a hostile or careless client can make the gateway hold: memory stays bounded under a
//! burst of sign-ins (each a 19 MiB password hash) and under slow readers of long conversations
//! (a replay is read a page at a time). Measured on the real binary, from `/proc`.

use std::time::Duration;

use sqlx::{Connection, Executor};

use crate::helpers::{json_response, process::Gateway};

/// Writes a configuration for the binary in `dir`, with `extra` TOML appended.
fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = {}\n[log]\nfilter = \"warn\"\n{extra}",
            toml::Value::String(format!("sqlite://{}", dir.join("gw.db").display()))
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_sign_ins_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // Rates and backoff off: only the bound on concurrent hashes stands between the burst and
    // the memory of 300 hashes at once.
    let config = config(
        dir.path(),
        "[limits.sign_in]\nattempts_per_minute = 0\nfailures_before_backoff = 0\n",
    );
    let gateway = Gateway::start(&config);
    let client = reqwest::Client::new();
    let before = gateway.rss_kib();
    let attempts = (0..300).map(|i| {
        let request = client
            .post(gateway.url("/v1/auth/token"))
            .json(&serde_json::json!({"email": format!("guess{i}@example.com"), "password": "wrong-password"}))
            .send();
        async move { request.await.map(|r| r.status().as_u16()) }
    });
    let statuses = futures::future::join_all(attempts).await;
    let answered = statuses
        .iter()
        .filter(|s| matches!(s, Ok(401 | 429)))
        .count();
    assert_eq!(
        answered, 300,
        "each attempt refused or held off: {statuses:?}"
    );
    let peak = gateway.peak_rss_kib();
    eprintln!("sign-in burst: RSS {before} KiB before, peak {peak} KiB");
    assert!(
        peak < 300 * 1024,
        "peak resident memory {peak} KiB under a burst of 300 sign-ins"
    );
    // The gateway still answers.
    let health = reqwest::get(gateway.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A conversation of `n` visitor messages of about a kilobyte each, written straight into the
/// database before the gateway starts; returns its id.
async fn seed_long_conversation(database: &str, device: &str, n: u32) -> String {
    let conversation = uuid::Uuid::now_v7().to_string();
    let mut conn = sqlx::SqliteConnection::connect(&format!("{database}?mode=rwc"))
        .await
        .unwrap();
    let script = format!(
        "INSERT INTO contacts (id, channel, external_id, created_at, updated_at) \
         VALUES ('contact-1', 'web', 'device:{device}', 0, 0);
         INSERT INTO conversations (id, channel, contact_id, last_seq, created_at, updated_at) \
         VALUES ('{conversation}', 'web', 'contact-1', {n}, 0, 0);
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {n})
         INSERT INTO messages (id, conversation_id, seq, channel, direction, role, kind, content, \
         attachments, status, status_at, created_at, metadata)
         SELECT 'message-' || i, '{conversation}', i, 'web', 'inbound', 'user', 'text', \
         printf('%d %.1000c', i, 'x'), '[]', 'received', 0, 0, '{{}}' FROM k;"
    );
    conn.execute(sqlx::AssertSqlSafe(script)).await.unwrap();
    conn.close().await.unwrap();
    conversation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_a_long_conversation_hold_a_page_each_not_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    // One visitor reads in twenty tabs.
    let config = config(dir.path(), "[limits.visitor]\nevent_streams = 20\n");
    // The gateway creates the schema; then the conversation is written beside it.
    let gateway = Gateway::start(&config);
    drop(gateway);
    let database = format!("sqlite://{}", dir.path().join("gw.db").display());
    let conversation = seed_long_conversation(&database, "reader", 10_000).await;
    let gateway = Gateway::start(&config);
    let client = reqwest::Client::new();
    let url = gateway.url(&format!("/v1/conversations/{conversation}/events"));
    // One reader that takes everything: the replay is complete and in order.
    let response = client
        .get(&url)
        .header("X-Device-ID", "reader")
        .send()
        .await
        .unwrap();
    let mut events = crate::helpers::SseReader::new(response);
    let (last, before) = events
        .until(Duration::from_secs(60), |e| {
            e.id.as_deref() == Some("10000")
        })
        .await;
    assert_eq!(before.len(), 9_999);
    assert!(
        last.json()["content"]
            .as_str()
            .unwrap()
            .starts_with("10000 ")
    );
    drop(events);

    let before = gateway.rss_kib();
    let mut readers = Vec::new();
    for _ in 0..20 {
        let response = client
            .get(&url)
            .header("X-Device-ID", "reader")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        readers.push(response);
    }
    // The readers read nothing: the gateway has written what the sockets take and waits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = gateway.rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("20 stalled replays of 10,000 messages (~10 MB each): RSS {before} -> {after} KiB");
    assert!(
        grown < 64 * 1024,
        "20 stalled replays grew the gateway by {grown} KiB"
    );
    // And the gateway answers meanwhile.
    let (status, _) = json_response(reqwest::get(gateway.url("/healthz")).await.unwrap()).await;
    assert_eq!(status, 200);
    drop(readers);
}
