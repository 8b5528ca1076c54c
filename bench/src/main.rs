//! Benchmark of the gateway, printing figures (never asserting them).
//!
//! ```text
//! cargo run --release -p switchboard-bench                      # SQLite (+ PostgreSQL if TEST_DATABASE_URL is set)
//! cargo run --release -p switchboard-bench -- --postgres postgres://postgres@127.0.0.1:5432/test
//! cargo run --release -p switchboard-bench -- --ws                # the WebSocket chat only
//! ```
//!
//! The gateway runs in a child process (this program started again with `--serve`), with the
//! `echo` agent, so that the figures measure the gateway and not a model, and so that its memory
//! can be read from `/proc`. The load comes from this process over loopback:
//!
//! 1. throughput: N visitors, each with its own conversation, send messages back to back to
//!    `POST /v1/chat/messages` and wait for the full reply;
//! 2. latency: messages at a fixed 100 per second, latency measured from the moment each one was
//!    due (so a stall shows up instead of hiding), or from when the load generator's timer woke
//!    it, when that was later ([`wait_until_due`]);
//! 3. memory: 10,000 idle `GET /v1/conversations/{id}/events` connections, RSS of the gateway
//!    before and after;
//! 4. WhatsApp: N users each post a signed webhook (`POST /webhooks/whatsapp`) and wait until the
//!    reply reaches a fake Graph API served by this process, then post the next: webhooks/s end to
//!    end, webhook to reply POSTed, with the read receipt each message also causes;
//! 5. Telegram: N connections post webhook updates back to back for distinct chats: updates/s
//!    acknowledged (each stored durably before the 200), and the replies the throttled sender got
//!    out meanwhile (Telegram allows a bot about 30 messages/s, and teloxide's throttle keeps it
//!    there).
//! 6. Several instances (`--instances`, PostgreSQL): the web figure with one gateway and with two
//!    on one database, and the time a reply takes to reach an event stream on the other instance.
//! 7. WebSocket (`--ws`: only this): idle sockets per process and memory per socket, and latency
//!    at 100 messages/s over sockets (see [`ws`]).

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    sync::Mutex,
};

mod instances;
mod telegram;
mod whatsapp;
mod ws;

/// The app secret the benchmark's gateway verifies WhatsApp webhooks with.
const WHATSAPP_SECRET: &str = "bench-app-secret";

/// The same allocator as the `switchboard` binary, so that the gateway child measures what ships.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// With the same options ([`switchboard::ALLOCATOR_OPTIONS`]).
// SAFETY: jemalloc reads this once, as a NUL-terminated string that lives as long as the process.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static std::ffi::c_char> =
    Some(unsafe { &*switchboard::ALLOCATOR_OPTIONS.as_ptr() });

/// What `--help` prints.
const USAGE: &str = "\
switchboard-bench: starts the gateway (echo agent) in a child process and prints its figures

  --duration N              seconds of each back-to-back load: web, WhatsApp, Telegram (10)
  --visitors N              visitors sending back to back (64)
  --rate-seconds N          seconds at a fixed 100 msgs/s per backend (20)
  --sse N                   idle event streams to hold, 0 skips (10000)
  --postgres URL            also measure PostgreSQL (default: TEST_DATABASE_URL)
  --no-postgres             SQLite only
  --no-sqlite               skip the SQLite web figures
  --whatsapp-users N        WhatsApp users, 0 skips (64)
  --telegram-connections N  Telegram connections, 0 skips (64)
  --instances               two gateways on the PostgreSQL database
  --ws                      only the WebSocket benchmark
  --ws-sockets N            idle sockets to open with --ws (20000, capped by the open-files limit)
";

struct Options {
    duration: Duration,
    visitors: usize,
    rate_seconds: u64,
    sse: usize,
    sqlite: bool,
    postgres: Option<String>,
    whatsapp_users: usize,
    telegram_connections: usize,
    /// Also measure two instances on the PostgreSQL database.
    instances: bool,
    /// Only the WebSocket benchmark.
    ws: bool,
    /// Idle sockets to open (at most what the open-files limit allows).
    ws_sockets: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        duration: Duration::from_secs(10),
        visitors: 64,
        rate_seconds: 20,
        sse: 10_000,
        sqlite: true,
        postgres: std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        whatsapp_users: 64,
        telegram_connections: 64,
        instances: false,
        ws: false,
        ws_sockets: 20_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("missing value");
        match arg.as_str() {
            "--duration" => o.duration = Duration::from_secs(value()?.parse()?),
            "--visitors" => o.visitors = value()?.parse()?,
            "--rate-seconds" => o.rate_seconds = value()?.parse()?,
            "--sse" => o.sse = value()?.parse()?,
            "--postgres" => o.postgres = Some(value()?),
            "--no-postgres" => o.postgres = None,
            "--no-sqlite" => o.sqlite = false,
            "--whatsapp-users" => o.whatsapp_users = value()?.parse()?,
            "--telegram-connections" => o.telegram_connections = value()?.parse()?,
            "--instances" => o.instances = true,
            "--ws" => o.ws = true,
            "--ws-sockets" => o.ws_sockets = value()?.parse()?,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n\n{USAGE}"),
        }
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    // Both processes need a file descriptor per connection.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--serve") {
        let url = args.next().context("--serve needs a database URL")?;
        return serve(url, args.next());
    }
    let options = options()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(options))
}

/// The gateway side: echo agent, quiet logs, a port chosen by the OS; with a Graph API base URL,
/// the WhatsApp channel pointed at it.
fn serve(database_url: String, graph: Option<String>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let mut config = switchboard::config::Config::defaults();
            config.database.url = database_url;
            config.routing.default_agent = "echo".into();
            config.log.filter = "warn".into();
            // Several gateways of this benchmark may share a database: each is an instance.
            config.instance.name = Some(format!("bench-{}", std::process::id()));
            let dir = tempfile::tempdir()?;
            config.media.dir = dir.path().join("media");
            // Every gateway the benchmark starts on one database must sign staff tokens with the
            // same key: beside the SQLite file (the default), or one file for PostgreSQL schemas.
            if !config.database.url.starts_with("sqlite:") {
                config.staff.key_file =
                    Some(std::env::temp_dir().join("switchboard-bench-staff.key"));
            }
            // The load comes from one address and few identities: limits that check every
            // request (so their cost is measured; the load's own machine is not exempt) but
            // never refuse one.
            config.limits.exempt_local = false;
            config.server.max_connections_per_address = 0;
            let visitor = &mut config.limits.visitor;
            visitor.messages_per_minute = u32::MAX;
            visitor.conversations_per_hour = u32::MAX;
            visitor.event_streams = u32::MAX;
            let address = &mut config.limits.address;
            address.messages_per_minute = u32::MAX;
            address.conversations_per_hour = u32::MAX;
            address.event_streams = u32::MAX;
            config.limits.contact.messages_per_minute = u32::MAX;
            // Idle sockets are measured for minutes without a word: pings are not the subject.
            config.web.ws_ping_interval = Duration::from_secs(600);
            if let Some(api) = graph.as_deref().and_then(|g| g.strip_prefix("telegram=")) {
                config.set("telegram.token", telegram::TOKEN);
                config.set("telegram.name", "bench");
                config.set("telegram.webhook_secret", telegram::SECRET);
                config.set("telegram.api_url", api.to_owned());
            } else if let Some(graph) = graph {
                config.set("whatsapp.app_secret", WHATSAPP_SECRET);
                config.set("whatsapp.verify_token", "bench");
                config.set("whatsapp.access_token", "bench-token");
                config.set("whatsapp.api_base", graph);
            }
            switchboard::telemetry::init(&config.log);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("listening {}", listener.local_addr()?);
            let gateway = switchboard::app::Gateway::build(config).await?;
            // Stops when the parent closes our stdin (or dies).
            let stop = async {
                let mut buf = [0u8; 1];
                let _ = tokio::io::stdin().read(&mut buf).await;
            };
            gateway.run(listener, stop).await
        })
}

struct Gateway {
    child: Child,
    address: SocketAddr,
}

impl Gateway {
    async fn start(database_url: &str) -> anyhow::Result<Gateway> {
        Self::start_with(database_url, None).await
    }

    async fn start_with(database_url: &str, graph: Option<&str>) -> anyhow::Result<Gateway> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve")
            .arg(database_url)
            .args(graph)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the gateway did not start")??
            .context("the gateway exited")?;
        let address = line
            .strip_prefix("listening ")
            .context("unexpected first line")?
            .parse()?;
        // The gateway's log (warnings and errors) goes on to this program's error output; a
        // closed pipe would make its writes fail.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("gateway: {line}");
            }
        });
        Ok(Gateway { child, address })
    }

    /// Resident memory of the gateway process, in bytes.
    fn rss(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("no pid")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .context("no VmRSS")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kb * 1024)
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    address: SocketAddr,
}

impl Connection {
    async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Connection { sender, address })
    }

    /// Sends a chat message and returns the body once the reply is complete.
    async fn chat(&mut self, device: &str, body: String) -> anyhow::Result<Bytes> {
        let request = Request::post(format!("http://{}/v1/chat/messages", self.address))
            .header("host", self.address.to_string())
            .header("content-type", "application/json")
            .header("x-device-id", device)
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != 200 {
            bail!("status {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

fn has_reply(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"reply\":{";
    body.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

fn conversation_id(body: &[u8]) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    Ok(value["conversation_id"]
        .as_str()
        .context("no conversation_id")?
        .to_owned())
}

/// A visitor with a conversation of its own.
struct Visitor {
    device: String,
    conversation: String,
    connection: Connection,
}

impl Visitor {
    async fn new(address: SocketAddr, n: usize) -> anyhow::Result<Visitor> {
        let mut connection = Connection::open(address).await?;
        let device = format!("bench-{}-{n}", uuid::Uuid::now_v7().simple());
        let body = connection
            .chat(&device, r#"{"content":"hello"}"#.to_owned())
            .await?;
        Ok(Visitor {
            conversation: conversation_id(&body)?,
            device,
            connection,
        })
    }

    async fn say(&mut self, n: u64) -> anyhow::Result<()> {
        let body = format!(
            r#"{{"conversation_id":"{}","content":"message {n}"}}"#,
            self.conversation
        );
        let reply = self.connection.chat(&self.device, body).await?;
        if !has_reply(&reply) {
            bail!("no reply in {}", String::from_utf8_lossy(&reply));
        }
        Ok(())
    }
}

struct Throughput {
    messages: u64,
    per_second: f64,
    latencies: Vec<Duration>,
}

/// `visitors` visitors send back to back for `duration`, visitor `n` to `addresses[n % len]`.
async fn throughput(
    addresses: &[SocketAddr],
    visitors: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let mut ready = Vec::with_capacity(visitors);
    for n in 0..visitors {
        ready.push(Visitor::new(addresses[n % addresses.len()], n).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for mut visitor in ready {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                visitor.say(n).await?;
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
    Ok(Throughput {
        messages: latencies.len() as u64,
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
    })
}

/// Messages at a fixed rate; latency counted from when each message was due.
async fn fixed_rate(
    address: SocketAddr,
    per_second: u64,
    seconds: u64,
) -> anyhow::Result<Vec<Duration>> {
    const LANES: u64 = 8;
    let total = per_second * seconds;
    let interval = Duration::from_secs_f64(1.0 / per_second as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for lane in 0..LANES {
        let mut visitor = Visitor::new(address, lane as usize).await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = lane;
            while i < total {
                let due = start + interval * i as u32;
                let origin = wait_until_due(due).await;
                visitor.say(i).await?;
                latencies.push(origin.elapsed());
                i += LANES;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

/// Waits until a message of a fixed-rate load is due and returns the moment its latency counts
/// from. A lane still busy at `due` (the gateway answered its last message late) sends at once,
/// and that wait counts: a stall shows. A lane that sleeps until `due` wakes up to a millisecond
/// later (tokio's timer resolution): that delay is the load generator's, and does not count.
pub async fn wait_until_due(due: tokio::time::Instant) -> tokio::time::Instant {
    if tokio::time::Instant::now() >= due {
        return due;
    }
    tokio::time::sleep_until(due).await;
    tokio::time::Instant::now()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Opens `count` idle event streams (one per conversation) and returns the gateway's memory
/// growth per connection.
async fn sse_memory(gateway: &Gateway, count: usize) -> anyhow::Result<(u64, u64, usize)> {
    // Conversations to listen to, created over a few connections.
    let conversations = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let mut tasks = Vec::new();
    let creators = 16;
    for c in 0..creators {
        let conversations = conversations.clone();
        let address = gateway.address;
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            for n in (c..count).step_by(creators) {
                let device = format!("sse-{n}");
                let body = connection
                    .chat(&device, r#"{"content":"hi"}"#.to_owned())
                    .await?;
                conversations
                    .lock()
                    .await
                    .push((device, conversation_id(&body)?));
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let conversations = Arc::try_unwrap(conversations)
        .map_err(|_| anyhow::anyhow!("still shared"))?
        .into_inner();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = gateway.rss()?;

    let mut streams = Vec::with_capacity(count);
    for chunk in conversations.chunks(200) {
        let opened = chunk.iter().map(|(device, conversation)| async move {
            let mut stream = TcpStream::connect(gateway.address).await?;
            let request = format!(
                "GET /v1/conversations/{conversation}/events HTTP/1.1\r\nHost: {}\r\n\
                 X-Device-ID: {device}\r\nLast-Event-ID: 2\r\nAccept: text/event-stream\r\n\r\n",
                gateway.address
            );
            stream.write_all(request.as_bytes()).await?;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await? == 0 {
                    bail!("closed before the headers");
                }
                head.push(byte[0]);
            }
            if !head.starts_with(b"HTTP/1.1 200") {
                bail!("refused: {}", String::from_utf8_lossy(&head));
            }
            anyhow::Ok(stream)
        });
        for stream in futures::future::join_all(opened).await {
            streams.push(stream?);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = gateway.rss()?;
    let open = streams.len();
    drop(streams);
    Ok((before, after, open))
}

struct Report {
    backend: &'static str,
    throughput: Throughput,
    fixed: Vec<Duration>,
}

async fn measure(backend: &'static str, url: &str, options: &Options) -> anyhow::Result<Report> {
    let gateway = Gateway::start(url).await?;
    // Warm up: connections, statement caches, page cache.
    throughput(&[gateway.address], options.visitors, Duration::from_secs(2)).await?;
    let mut result = throughput(&[gateway.address], options.visitors, options.duration).await?;
    result.latencies.sort();
    let mut fixed = fixed_rate(gateway.address, 100, options.rate_seconds).await?;
    fixed.sort();
    gateway.stop().await;
    Ok(Report {
        backend,
        throughput: result,
        fixed,
    })
}

/// The WebSocket benchmark: idle sockets and their memory, then latency at 100 msgs/s.
async fn run_ws(options: &Options) -> anyhow::Result<()> {
    // Each socket is a descriptor in both processes; what else they hold stays below 1,000.
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let count = options
        .ws_sockets
        .min(usize::try_from(limit.saturating_sub(1000)).unwrap_or(usize::MAX));
    println!(
        "WebSocket chat: {count} idle sockets (open-files limit {limit}), then 100 msgs/s for {} s",
        options.rate_seconds
    );
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("ws.db").display());
    let gateway = Gateway::start(&sqlite).await?;
    let (before, after, open) = ws::idle_memory(&gateway, count).await?;
    let per = after.saturating_sub(before) as f64 / open.max(1) as f64;
    println!(
        "idle WebSockets: {open} open, each following a conversation; gateway RSS {:.1} MiB -> \
         {:.1} MiB = {:.1} KB per socket",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per / 1024.0
    );
    // Let the sockets' ends settle before measuring latency on the same gateway.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut acks, mut replies) =
        ws::fixed_rate(gateway.address, 100, options.rate_seconds).await?;
    gateway.stop().await;
    acks.sort();
    replies.sort();
    println!(
        "100 msgs/s over WebSockets, {} messages: ack p50 {} p99 {}; reply p50 {} p99 {} max {}",
        replies.len(),
        ms(percentile(&acks, 50.0)),
        ms(percentile(&acks, 99.0)),
        ms(percentile(&replies, 50.0)),
        ms(percentile(&replies, 99.0)),
        ms(replies.last().copied().unwrap_or_default()),
    );
    Ok(())
}

async fn run(options: Options) -> anyhow::Result<()> {
    if options.ws {
        return run_ws(&options).await;
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Switchboard benchmark: {cores} cores, echo agent, {} visitors for {} s, then 100 msgs/s for {} s",
        options.visitors,
        options.duration.as_secs(),
        options.rate_seconds
    );
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut reports = Vec::new();
    if options.sqlite {
        reports.push(measure("SQLite", &sqlite, &options).await?);
    }

    let mut schema = None;
    if let Some(base) = &options.postgres {
        use sqlx::{Connection as _, Executor as _};
        let name = format!("bench_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(base).await?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .await?;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options[search_path]={name}");
        reports.push(measure("PostgreSQL", &url, &options).await?);
        if options.instances {
            let name = format!("bench_{}", uuid::Uuid::now_v7().simple());
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                .await?;
            let url = format!("{base}{separator}options[search_path]={name}");
            let figures = instances::run(&url, options.visitors, options.duration).await;
            conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
                .await?;
            let figures = figures?;
            println!(
                "PostgreSQL, one instance: {:.0} msgs/s; two instances on one database: {:.0} msgs/s \
                 (visitors spread over both); a reply on one reached a stream on the other in \
                 p50 {} p99 {} max {} ({} replies)",
                figures.one.per_second,
                figures.two.per_second,
                ms(percentile(&figures.crossing, 50.0)),
                ms(percentile(&figures.crossing, 99.0)),
                ms(figures.crossing.last().copied().unwrap_or_default()),
                figures.crossing.len(),
            );
        }
        schema = Some((conn, name));
    } else {
        println!("(PostgreSQL skipped: pass --postgres URL or set TEST_DATABASE_URL)");
    }

    println!();
    println!(
        "{:<11} {:>12} {:>10} {:>10} {:>10} | fixed 100 msgs/s: {:>9} {:>9} {:>9}",
        "backend", "msgs/s", "p50", "p99", "messages", "p50", "p99", "max"
    );
    for r in &reports {
        let t = &r.throughput;
        println!(
            "{:<11} {:>12.0} {:>10} {:>10} {:>10} | {:>26} {:>9} {:>9}",
            r.backend,
            t.per_second,
            ms(percentile(&t.latencies, 50.0)),
            ms(percentile(&t.latencies, 99.0)),
            t.messages,
            ms(percentile(&r.fixed, 50.0)),
            ms(percentile(&r.fixed, 99.0)),
            ms(r.fixed.last().copied().unwrap_or_default()),
        );
    }

    if options.sse > 0 {
        let gateway = Gateway::start(&sqlite).await?;
        let (before, after, open) = sse_memory(&gateway, options.sse).await?;
        gateway.stop().await;
        let per = after.saturating_sub(before) as f64 / open.max(1) as f64;
        println!();
        println!(
            "idle SSE connections: {open} open; gateway RSS {:.1} MiB -> {:.1} MiB = {:.1} KB per connection",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per / 1024.0
        );
    }
    if options.whatsapp_users > 0 {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("whatsapp.db").display());
        let graph = whatsapp::FakeGraph::start().await?;
        let gateway = Gateway::start_with(&url, Some(&graph.base_url())).await?;
        // Warm up, then measure.
        whatsapp::run(
            &gateway,
            &graph,
            options.whatsapp_users,
            Duration::from_secs(2),
        )
        .await?;
        let result =
            whatsapp::run(&gateway, &graph, options.whatsapp_users, options.duration).await?;
        gateway.stop().await;
        println!();
        println!(
            "WhatsApp on SQLite: {} users, {:.0} signed webhooks/s end to end (webhook -> reply \
             POSTed to the Graph API); p50 {} p99 {}; {} messages",
            options.whatsapp_users,
            result.per_second,
            ms(percentile(&result.latencies, 50.0)),
            ms(percentile(&result.latencies, 99.0)),
            result.messages
        );
    }
    if options.telegram_connections > 0 {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("telegram.db").display());
        let api = telegram::FakeBotApi::start().await?;
        let gateway =
            Gateway::start_with(&url, Some(&format!("telegram={}", api.base_url()))).await?;
        telegram::run(
            &gateway,
            &api,
            options.telegram_connections,
            Duration::from_secs(2),
        )
        .await?;
        let result = telegram::run(
            &gateway,
            &api,
            options.telegram_connections,
            options.duration,
        )
        .await?;
        gateway.stop().await;
        println!();
        println!(
            "Telegram on SQLite: {} connections, {:.0} webhook updates/s acknowledged (stored); \
             p50 {} p99 {}; {} updates; replies sent meanwhile: {:.1}/s (the throttle's limit)",
            options.telegram_connections,
            result.acknowledged.per_second,
            ms(percentile(&result.acknowledged.latencies, 50.0)),
            ms(percentile(&result.acknowledged.latencies, 99.0)),
            result.acknowledged.messages,
            result.replies_per_second,
        );
    }
    if let Some((mut conn, name)) = schema {
        use sqlx::Executor as _;
        conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
            .await?;
    }
    Ok(())
}
