//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Facts are recorded where they happen, through the functions of this module: each spells its
//! metric's name and labels once, so the list in README and the code cannot disagree. Recording is
//! a hash lookup and an atomic add (the `metrics` crate's handles), cheap enough for the hot path.
//! What describes the database instead — job queue depth and lag, pending turns, the connection
//! pool — is read when Prometheus scrapes ([`Snapshot`]), so no message ever pays for counting rows.
//!
//! The recorder is process-wide (a `metrics` recorder is global): a process that runs several
//! gateways, as the tests do, shares one set of series.

use std::{sync::OnceLock, time::Duration};

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchboard_channel::Channel;

/// HTTP requests answered, by method, route template and status.
pub const HTTP_REQUESTS: &str = "switchboard_http_requests_total";
/// Time to answer an HTTP request (to its response headers), by method and route template.
pub const HTTP_DURATION: &str = "switchboard_http_request_duration_seconds";
/// Requests refused for a rate or a cap (429), by route template; and messages of contacts over
/// their rate on messaging channels, stored unanswered (`route="contact"`).
pub const RATE_LIMITED: &str = "switchboard_rate_limited_total";
/// New inbound messages stored, by channel.
pub const MESSAGES_RECEIVED: &str = "switchboard_messages_received_total";
/// From an inbound message's arrival to its stored answer, by channel.
pub const REPLY_LATENCY: &str = "switchboard_reply_latency_seconds";
/// Agent calls, by agent and outcome (`ok`, `error`, `timeout`).
pub const AGENT_CALLS: &str = "switchboard_agent_calls_total";
/// Duration of an agent call, by agent.
pub const AGENT_DURATION: &str = "switchboard_agent_call_duration_seconds";
/// Tokens agents read and wrote, by agent and direction (`input`, `output`).
pub const AGENT_TOKENS: &str = "switchboard_agent_tokens_total";
/// Tokens the LLM judge read and wrote, by direction.
pub const JUDGE_TOKENS: &str = "switchboard_judge_tokens_total";
/// Delivery attempts of outbound messages, by channel and outcome (`sent`, `retry`, `failed`).
pub const DELIVERIES: &str = "switchboard_deliveries_total";
/// Jobs waiting in a queue (due or not), by queue.
pub const JOBS_QUEUED: &str = "switchboard_jobs_queued";
/// Age of the oldest job that is due and not yet done, by queue: the queue's lag.
pub const JOBS_LAG: &str = "switchboard_jobs_oldest_due_age_seconds";
/// Inbound messages stored and waiting for their answer.
pub const PENDING_TURNS: &str = "switchboard_pending_turns";
/// Age of the oldest inbound message waiting for its answer.
pub const PENDING_TURNS_AGE: &str = "switchboard_pending_turns_oldest_age_seconds";
/// Open event streams (visitors', staff's and supervisors').
pub const STREAMS_OPEN: &str = "switchboard_event_streams_open";
/// Open WebSockets of the chat (`GET /v1/chat/ws`).
pub const WEBSOCKETS_OPEN: &str = "switchboard_websockets_open";
/// Database connections, by state (`in_use`, `idle`).
pub const DB_CONNECTIONS: &str = "switchboard_db_connections";
/// Largest number of database connections the pool opens.
pub const DB_CONNECTIONS_MAX: &str = "switchboard_db_connections_max";
/// Live events crossing between instances over PostgreSQL, by outcome (`sent`, `received`,
/// `dropped`: not sent because the relay was behind; listeners catch up from the database).
pub const LIVE_SIGNALS: &str = "switchboard_live_signals_total";
/// The running version (value 1, label `version`).
pub const BUILD_INFO: &str = "switchboard_build_info";
/// Seconds since the gateway started.
pub const UPTIME: &str = "switchboard_uptime_seconds";

/// Histogram buckets, in seconds: from a cached answer (1 ms) to a slow model (a minute).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histograms' recent samples are folded into their buckets (without it they grow until
/// the next scrape).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed at the first call. `None` when another recorder was
/// installed first (a program embedding the gateway with metrics of its own): then recording
/// goes there and `/metrics` answers 404.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "time to answer an HTTP request"
    );
    describe_counter!(
        RATE_LIMITED,
        "requests and messages refused for a rate or a cap"
    );
    describe_counter!(MESSAGES_RECEIVED, "new inbound messages stored");
    describe_histogram!(
        REPLY_LATENCY,
        Unit::Seconds,
        "from an inbound message's arrival to its stored answer"
    );
    describe_counter!(AGENT_CALLS, "agent calls by outcome");
    describe_histogram!(AGENT_DURATION, Unit::Seconds, "duration of agent calls");
    describe_counter!(AGENT_TOKENS, "tokens agents read and wrote");
    describe_counter!(JUDGE_TOKENS, "tokens the LLM judge read and wrote");
    describe_counter!(DELIVERIES, "delivery attempts of outbound messages");
    describe_gauge!(JOBS_QUEUED, "jobs waiting in a queue");
    describe_gauge!(
        JOBS_LAG,
        Unit::Seconds,
        "age of the oldest due job of a queue"
    );
    describe_gauge!(PENDING_TURNS, "inbound messages waiting for their answer");
    describe_gauge!(
        PENDING_TURNS_AGE,
        Unit::Seconds,
        "age of the oldest inbound message waiting for its answer"
    );
    describe_gauge!(STREAMS_OPEN, "open event streams");
    describe_gauge!(WEBSOCKETS_OPEN, "open WebSockets of the chat");
    describe_gauge!(DB_CONNECTIONS, "database connections by state");
    describe_gauge!(DB_CONNECTIONS_MAX, "largest size of the database pool");
    describe_counter!(
        LIVE_SIGNALS,
        "live events crossing between instances, by outcome"
    );
    describe_gauge!(BUILD_INFO, "the running version");
    describe_gauge!(UPTIME, Unit::Seconds, "seconds since the gateway started");
}

/// An HTTP request was answered. The labels are interned (route templates, methods and
/// statuses are few), so recording allocates nothing.
pub fn http_request(method: &str, route: &str, status: axum::http::StatusCode, took: Duration) {
    let (method, route) = (intern(method), intern(route));
    let status = intern(status.as_str());
    counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    if status == "429" {
        counter!(RATE_LIMITED, "route" => route).increment(1);
    }
    histogram!(HTTP_DURATION, "method" => method, "route" => route).record(took.as_secs_f64());
}

/// A label value kept for the life of the process. Only for values from a small set: route
/// templates (never raw paths), methods the router knows, status codes.
fn intern(value: &str) -> &'static str {
    static SEEN: OnceLock<std::sync::RwLock<std::collections::HashSet<&'static str>>> =
        OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(found) = seen.read().unwrap_or_else(|e| e.into_inner()).get(value) {
        return found;
    }
    let mut seen = seen.write().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = seen.get(value) {
        return found;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// A contact of a messaging channel wrote faster than their rate: stored, not answered.
pub fn contact_over_rate() {
    counter!(RATE_LIMITED, "route" => "contact").increment(1);
}

/// A new inbound message was stored.
pub fn message_received(channel: Channel) {
    counter!(MESSAGES_RECEIVED, "channel" => channel.as_str()).increment(1);
}

/// An inbound message got its stored answer, `took` after it arrived.
pub fn replied(channel: Channel, took: Duration) {
    histogram!(REPLY_LATENCY, "channel" => channel.as_str()).record(took.as_secs_f64());
}

/// How an agent call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOutcome {
    /// It answered (or asked for a person).
    Ok,
    /// It failed.
    Error,
    /// It ran out of time.
    Timeout,
}

impl AgentOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AgentOutcome::Ok => "ok",
            AgentOutcome::Error => "error",
            AgentOutcome::Timeout => "timeout",
        }
    }
}

/// An agent call ended.
pub fn agent_call(agent: &str, outcome: AgentOutcome, took: Duration) {
    let agent = intern(agent);
    counter!(AGENT_CALLS, "agent" => agent, "outcome" => outcome.as_str()).increment(1);
    histogram!(AGENT_DURATION, "agent" => agent).record(took.as_secs_f64());
}

/// Tokens an agent read and wrote for one reply.
pub fn agent_tokens(agent: &str, input: u64, output: u64) {
    let agent = intern(agent);
    counter!(AGENT_TOKENS, "agent" => agent, "direction" => "input").increment(input);
    counter!(AGENT_TOKENS, "agent" => agent, "direction" => "output").increment(output);
}

/// Tokens the LLM judge read and wrote for one verdict.
pub fn judge_tokens(input: u64, output: u64) {
    counter!(JUDGE_TOKENS, "direction" => "input").increment(input);
    counter!(JUDGE_TOKENS, "direction" => "output").increment(output);
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The provider took the message.
    Sent,
    /// It failed for now; it is tried again later.
    Retry,
    /// It failed for good.
    Failed,
}

/// A delivery attempt of an outbound message ended.
pub fn delivery(channel: Channel, outcome: DeliveryOutcome) {
    let outcome = match outcome {
        DeliveryOutcome::Sent => "sent",
        DeliveryOutcome::Retry => "retry",
        DeliveryOutcome::Failed => "failed",
    };
    counter!(DELIVERIES, "channel" => channel.as_str(), "outcome" => outcome).increment(1);
}

/// What became of live events crossing between instances.
#[derive(Debug, Clone, Copy)]
pub enum SignalOutcome {
    /// Sent to the other instances.
    Sent,
    /// Received from another instance.
    Received,
    /// Not sent: the relay was behind.
    Dropped,
}

/// Live events crossed between instances.
pub fn live_signals(outcome: SignalOutcome, count: usize) {
    let outcome = match outcome {
        SignalOutcome::Sent => "sent",
        SignalOutcome::Received => "received",
        SignalOutcome::Dropped => "dropped",
    };
    counter!(LIVE_SIGNALS, "outcome" => outcome).increment(count as u64);
}

/// What a scrape reads from the gateway's state, recorded as gauges before rendering.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Per queue: jobs waiting, and the age of the oldest due one.
    pub queues: Vec<QueueFigures>,
    /// Inbound messages waiting for their answer, and the oldest one's age.
    pub pending_turns: (i64, Duration),
    /// Open event streams.
    pub streams_open: usize,
    /// Open WebSockets.
    pub websockets_open: usize,
    /// Database connections in use, idle, and at most.
    pub connections: crate::store::PoolFigures,
    /// Since the gateway started.
    pub uptime: Duration,
}

/// One job queue's figures.
#[derive(Debug, Clone)]
pub struct QueueFigures {
    /// The queue.
    pub queue: String,
    /// Jobs in it.
    pub queued: i64,
    /// Age of its oldest due job (zero when none is due).
    pub lag: Duration,
}

impl Snapshot {
    /// Records the snapshot's gauges and renders every metric.
    pub fn render(self, handle: &PrometheusHandle) -> String {
        // Gauges are process-wide: two scrapes at once (or two gateways in one process) must not
        // interleave their values, so a scrape sets and renders under one lock.
        static RENDERING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _rendering = RENDERING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for queue in self.queues {
            gauge!(JOBS_QUEUED, "queue" => queue.queue.clone()).set(queue.queued as f64);
            gauge!(JOBS_LAG, "queue" => queue.queue).set(queue.lag.as_secs_f64());
        }
        gauge!(PENDING_TURNS).set(self.pending_turns.0 as f64);
        gauge!(PENDING_TURNS_AGE).set(self.pending_turns.1.as_secs_f64());
        gauge!(STREAMS_OPEN).set(self.streams_open as f64);
        gauge!(WEBSOCKETS_OPEN).set(self.websockets_open as f64);
        gauge!(DB_CONNECTIONS, "state" => "in_use").set(f64::from(self.connections.in_use));
        gauge!(DB_CONNECTIONS, "state" => "idle").set(f64::from(self.connections.idle));
        gauge!(DB_CONNECTIONS_MAX).set(f64::from(self.connections.max));
        gauge!(UPTIME).set(self.uptime.as_secs_f64());
        handle.render()
    }
}
