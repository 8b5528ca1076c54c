//! The WhatsApp part of the benchmark: a fake Graph API that tells waiting users their reply
//! arrived, and users that post signed webhooks one after another.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use axum::{Json, Router, extract::State, routing::post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Connection, Gateway, Throughput, WHATSAPP_SECRET};

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// A Graph API that accepts everything and wakes the user a reply is for.
pub struct FakeGraph {
    address: SocketAddr,
    waiting: Waiting,
}

impl FakeGraph {
    pub async fn start() -> anyhow::Result<FakeGraph> {
        let waiting: Waiting = Arc::default();
        let router = Router::new()
            .route("/{version}/{account}/messages", post(messages))
            .with_state(waiting.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(FakeGraph { address, waiting })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn expect_reply(&self, user: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(user.to_owned(), tx);
        }
        rx
    }
}

async fn messages(State(waiting): State<Waiting>, Json(body): Json<Value>) -> Json<Value> {
    if body["status"] == "read" {
        return Json(json!({"success": true}));
    }
    let to = body["to"].as_str().unwrap_or_default();
    if let Some(waiter) = waiting.lock().ok().and_then(|mut w| w.remove(to)) {
        let _ = waiter.send(());
    }
    Json(
        json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.{}", uuid::Uuid::now_v7().simple())}]}),
    )
}

fn webhook(user: &str, n: u64) -> Vec<u8> {
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Bench User"}, "wa_id": user}],
            "messages": [{"from": user, "id": format!("wamid.{user}.{n}"),
                "timestamp": chrono_now(), "type": "text", "text": {"body": format!("message {n}")}}]
        }}]}]
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn chrono_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default()
}

impl Connection {
    async fn webhook(&mut self, body: Vec<u8>) -> anyhow::Result<()> {
        let signature = switchboard_whatsapp::sign(&body, WHATSAPP_SECRET);
        let request = Request::post(format!("http://{}/webhooks/whatsapp", self.address))
            .header("host", self.address.to_string())
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
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

/// `users` users, each posting its next message as soon as the reply to its last one reached the
/// Graph API, for `duration`.
pub async fn run(
    gateway: &Gateway,
    graph: &FakeGraph,
    users: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let graph = Arc::new(FakeGraph {
        address: graph.address,
        waiting: graph.waiting.clone(),
    });
    let start = Instant::now();
    let deadline = start + duration;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut tasks = Vec::new();
    for u in 0..users {
        let mut connection = Connection::open(gateway.address).await?;
        let graph = graph.clone();
        let user = format!("{}{u:04}", &run[..12]);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let replied = graph.expect_reply(&user);
                let sent = Instant::now();
                connection.webhook(webhook(&user, n)).await?;
                tokio::time::timeout(Duration::from_secs(30), replied)
                    .await
                    .context("no reply within 30 s")??;
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
    Ok(Throughput {
        messages: latencies.len() as u64,
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
    })
}
