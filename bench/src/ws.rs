//! The WebSocket chat (`GET /v1/chat/ws`): memory per idle socket, and latency at a fixed rate.
//!
//! 1. idle sockets: N visitors, each with a conversation, each open one socket (which follows
//!    that conversation) and then say nothing; the gateway's RSS before and after, per socket.
//!    Both processes need a descriptor per socket: the open-files limit (raised to the hard
//!    limit at start) bounds N, and is printed.
//! 2. latency: 50 sockets send `message` frames at a fixed 100 per second in all; each message's
//!    latency runs from the moment it was due to its acknowledgement, and to the reply's
//!    `message` frame (the echo agent's reply, stored and published).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::{Connection, Gateway, conversation_id};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a socket as `device` and reads its `connected` frame.
async fn open(address: SocketAddr, device: &str) -> anyhow::Result<Socket> {
    let url = format!("ws://{address}/v1/chat/ws?device_id={device}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let connected = next(&mut socket).await?;
    if connected["type"] != "connected" {
        bail!("expected connected, got {connected}");
    }
    Ok(socket)
}

/// The next JSON frame.
async fn next(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("no frame in 30 s")?
            .context("the socket closed")??;
        match frame {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => bail!("unexpected frame {other:?}"),
        }
    }
}

/// Memory of idle sockets: (RSS before, RSS after, sockets open).
pub async fn idle_memory(gateway: &Gateway, count: usize) -> anyhow::Result<(u64, u64, usize)> {
    // One conversation per visitor, created over a few connections.
    let creators = 16;
    let mut tasks = Vec::new();
    for c in 0..creators {
        let address = gateway.address;
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let mut devices = Vec::new();
            for n in (c..count).step_by(creators) {
                let device = format!("ws-{n}");
                let body = connection
                    .chat(&device, r#"{"content":"hi"}"#.to_owned())
                    .await?;
                conversation_id(&body)?;
                devices.push(device);
            }
            anyhow::Ok(devices)
        }));
    }
    let mut devices = Vec::with_capacity(count);
    for task in tasks {
        devices.extend(task.await??);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = gateway.rss()?;
    let mut sockets = Vec::with_capacity(count);
    for chunk in devices.chunks(200) {
        let opened = chunk.iter().map(|device| open(gateway.address, device));
        for socket in futures::future::join_all(opened).await {
            sockets.push(socket?);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = gateway.rss()?;
    let open = sockets.len();
    drop(sockets);
    Ok((before, after, open))
}

/// Latencies at `per_second` messages per second for `seconds`: (to the ack, to the reply).
pub async fn fixed_rate(
    address: SocketAddr,
    per_second: u64,
    seconds: u64,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    // Visitors write a few messages a minute, not a hundred: 50 of them, 2 messages/s each (a
    // socket takes at most 240 frames a minute).
    const LANES: u64 = 50;
    let total = per_second * seconds;
    let interval = Duration::from_secs_f64(1.0 / per_second as f64);
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let device = format!("ws-rate-{}-{lane}", uuid::Uuid::now_v7().simple());
        let mut socket = open(address, &device).await?;
        // The conversation, and one exchange to warm up.
        socket
            .send(Message::text(
                json!({"type": "message", "content": "hello"}).to_string(),
            ))
            .await?;
        let ack = next(&mut socket).await?;
        let conversation = ack["conversation_id"]
            .as_str()
            .context("no conversation in the ack")?
            .to_owned();
        reply(&mut socket).await?;
        lanes.push((socket, conversation));
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for (lane, (mut socket, conversation)) in (0..).zip(lanes) {
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut replies = Vec::new();
            let mut i = lane;
            while i < total {
                let due = start + interval * i as u32;
                let origin = crate::wait_until_due(due).await;
                let frame = json!({
                    "type": "message",
                    "conversation_id": conversation,
                    "content": format!("message {i}"),
                });
                socket.send(Message::text(frame.to_string())).await?;
                loop {
                    let frame = next(&mut socket).await?;
                    match frame["type"].as_str() {
                        Some("ack") => break,
                        Some("error") => bail!("error frame: {frame}"),
                        _ => {}
                    }
                }
                acks.push(origin.elapsed());
                reply(&mut socket).await?;
                replies.push(origin.elapsed());
                i += LANES;
            }
            anyhow::Ok((acks, replies))
        }));
    }
    let (mut acks, mut replies) = (Vec::new(), Vec::new());
    for task in tasks {
        let (a, r) = task.await??;
        acks.extend(a);
        replies.extend(r);
    }
    Ok((acks, replies))
}

/// Reads up to the reply's `message` frame.
async fn reply(socket: &mut Socket) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let frame = next(socket).await?;
        match frame["type"].as_str() {
            Some("message") if frame["message"]["role"] == "ai" => return Ok(()),
            Some("error") => bail!("error frame: {frame}"),
            _ if started.elapsed() > Duration::from_secs(30) => bail!("no reply in 30 s"),
            _ => {}
        }
    }
}
