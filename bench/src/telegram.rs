//! The Telegram part of the benchmark: a fake Bot API that accepts and counts sends, and
//! connections that post webhook updates for distinct chats back to back.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use axum::{Json, Router, extract::Path, routing::post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{Value, json};

use super::{Connection, Gateway, Throughput};

/// The benchmark bot's token.
pub const TOKEN: &str = "7000000001:bench-token";
/// Its webhook secret.
pub const SECRET: &str = "bench-webhook-secret";

/// A Bot API that accepts everything and counts the messages sent.
pub struct FakeBotApi {
    address: SocketAddr,
    sent: Arc<AtomicU64>,
}

impl FakeBotApi {
    pub async fn start() -> anyhow::Result<FakeBotApi> {
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let router = Router::new().route(
            "/{bot}/{method}",
            post(
                move |Path((_bot, method)): Path<(String, String)>, body: Bytes| {
                    let counter = counter.clone();
                    async move { answer(&method, &body, &counter) }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(FakeBotApi { address, sent })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }
}

fn answer(method: &str, body: &[u8], sent: &AtomicU64) -> Json<Value> {
    let result = match method.to_ascii_lowercase().as_str() {
        "getme" => json!({"id": 7000000001u64, "is_bot": true, "first_name": "Bench",
            "username": "bench_bot", "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "has_main_web_app": false}),
        "sendmessage" => {
            let n = sent.fetch_add(1, Ordering::Relaxed) + 1;
            let params: Value = serde_json::from_slice(body).unwrap_or_default();
            json!({"message_id": n, "date": 0,
                "chat": {"id": params["chat_id"], "type": "private", "first_name": "U"},
                "text": params["text"]})
        }
        _ => json!(true),
    };
    Json(json!({"ok": true, "result": result}))
}

fn update(update_id: u64, chat: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    serde_json::to_vec(&json!({"update_id": update_id, "message": {
        "message_id": update_id, "date": now,
        "from": {"id": chat, "is_bot": false, "first_name": "Bench"},
        "chat": {"id": chat, "type": "private", "first_name": "Bench"},
        "text": format!("message {update_id}")
    }}))
    .unwrap_or_default()
}

impl Connection {
    async fn telegram(&mut self, body: Vec<u8>) -> anyhow::Result<()> {
        let request = Request::post(format!("http://{}/webhooks/telegram/bench", self.address))
            .header("host", self.address.to_string())
            .header("content-type", "application/json")
            .header("x-telegram-bot-api-secret-token", SECRET)
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != 200 {
            bail!("status {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

/// What a Telegram run measured.
pub struct TelegramRun {
    pub acknowledged: Throughput,
    pub replies_per_second: f64,
}

static NEXT_UPDATE: AtomicU64 = AtomicU64::new(1);

/// `connections` connections post updates (each for a chat of its own) back to back.
pub async fn run(
    gateway: &Gateway,
    api: &FakeBotApi,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<TelegramRun> {
    let sent_before = api.sent.load(Ordering::Relaxed);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut connection = Connection::open(gateway.address).await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let id = NEXT_UPDATE.fetch_add(1, Ordering::Relaxed);
                let chat = 100_000 + (c as u64) * 1_000_000 + n;
                let sent = Instant::now();
                connection.telegram(update(id, chat)).await?;
                latencies.push(sent.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let replies = api.sent.load(Ordering::Relaxed) - sent_before;
    Ok(TelegramRun {
        acknowledged: Throughput {
            messages: latencies.len() as u64,
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            latencies,
        },
        replies_per_second: replies as f64 / elapsed.as_secs_f64(),
    })
}
