//! Two gateway instances on one PostgreSQL database, as a deployment behind a load balancer runs
//! them: the web figure with one instance and with two (visitors spread over both, each keeping
//! its keep-alive connection, as a load balancer does), and how long a reply stored on one
//! instance takes to reach an event stream open on the other.
//!
//! On a 2-core machine both instances share the cores with the database and the load, so the point
//! is what a second instance costs, not what it adds.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{Connection, Gateway, Throughput, conversation_id, throughput};

/// What was measured.
pub struct Figures {
    /// Web messages/s with one instance.
    pub one: Throughput,
    /// Web messages/s with two, visitors spread over both.
    pub two: Throughput,
    /// From a reply stored on one instance to its event on a stream open on the other, sorted.
    pub crossing: Vec<Duration>,
}

/// Runs the three measurements on `url` (a PostgreSQL schema of its own).
pub async fn run(url: &str, visitors: usize, duration: Duration) -> anyhow::Result<Figures> {
    let a = Gateway::start(url).await?;
    throughput(&[a.address], visitors, Duration::from_secs(2)).await?;
    let one = throughput(&[a.address], visitors, duration).await?;
    let b = Gateway::start(url).await?;
    let both = [a.address, b.address];
    throughput(&both, visitors, Duration::from_secs(2)).await?;
    let two = throughput(&both, visitors, duration).await?;
    let crossing = crossing(&a, &b, 200).await?;
    a.stop().await;
    b.stop().await;
    Ok(Figures { one, two, crossing })
}

/// `n` messages of one conversation run by `b`, one after another, while its event stream is
/// open on `a`: how long after `b` answered each reply shows on `a`'s stream.
async fn crossing(a: &Gateway, b: &Gateway, n: usize) -> anyhow::Result<Vec<Duration>> {
    let device = format!("crossing-{}", uuid::Uuid::now_v7().simple());
    let mut sender = Connection::open(b.address).await?;
    // Started on `b`, so that `b` runs the conversation's turns.
    let first = sender
        .chat(&device, r#"{"content":"hello"}"#.to_owned())
        .await?;
    let conversation = conversation_id(&first)?;
    let mut stream = TcpStream::connect(a.address).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET /v1/conversations/{conversation}/events HTTP/1.1\r\nHost: {}\r\n\
         X-Device-ID: {device}\r\nLast-Event-ID: 2\r\nAccept: text/event-stream\r\n\r\n",
        a.address
    );
    stream.write_all(request.as_bytes()).await?;
    let mut seen = Vec::new();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let body = format!(r#"{{"conversation_id":"{conversation}","content":"message {i}"}}"#);
        let reply = sender.chat(&device, body).await?;
        let answered = Instant::now();
        let reply_id = reply_id(&reply)?;
        let deadline = answered + Duration::from_secs(10);
        let mut buffer = [0u8; 8192];
        while !contains(&seen, reply_id.as_bytes()) {
            let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer))
                .await
                .context("the reply never reached the other instance's stream")??;
            if read == 0 {
                bail!("the event stream ended");
            }
            seen.extend_from_slice(&buffer[..read]);
        }
        latencies.push(answered.elapsed());
        seen.clear();
    }
    latencies.sort();
    Ok(latencies)
}

fn reply_id(body: &[u8]) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    value["reply"]["id"]
        .as_str()
        .map(str::to_owned)
        .context("no reply id")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
