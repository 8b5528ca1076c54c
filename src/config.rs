//! One typed configuration for the whole gateway.
//!
//! Values come from built-in defaults, then an optional `switchboard.toml` (path from `--config` or
//! `SWITCHBOARD_CONFIG`), then a short list of environment variables ([`ENV_OVERRIDES`]) so that the
//! common deployment knobs need no file at all. `switchboard.example.toml` documents every key; a test
//! keeps it complete.
//!
//! The channels' sections are not typed here: each channel crate owns its section, its defaults,
//! its checks and its environment variables, and `channels::configure` applies them. This module
//! knows only the gateway's own sections.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use serde::{Deserialize, Serialize};
use switchboard_channel::Secret;

/// The gateway's configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The HTTP server.
    pub server: ServerConfig,
    /// Where conversations are stored.
    pub database: DatabaseConfig,
    /// The website chat channel and its API.
    pub web: WebConfig,
    /// How inbound messages are handled.
    pub pipeline: PipelineConfig,
    /// Which agent answers a conversation.
    pub routing: RoutingConfig,
    /// The AI agents, by name. `assistant` (scripted) and `echo` exist unless redefined.
    pub agents: BTreeMap<String, AgentConfig>,
    /// Staff accounts: how experts, supervisors and admins sign in.
    pub staff: StaffConfig,
    /// Experts: assignment of conversations, notifications.
    pub experts: ExpertsConfig,
    /// Checks of every AI reply, and what a failed one causes.
    pub evaluations: EvaluationsConfig,
    /// Background jobs: deliveries and media downloads, their retries.
    pub jobs: JobsConfig,
    /// Where downloaded media is kept.
    pub media: MediaConfig,
    /// How long conversations, media and the audit log are kept (forever by default).
    pub retention: RetentionConfig,
    /// Rate limits and caps on what the public can ask of the gateway.
    pub limits: LimitsConfig,
    /// Plans of messages and tokens per contact, the currency of prices and credits.
    pub quotas: QuotasConfig,
    /// Logging.
    pub log: LogConfig,
    /// This process among the instances that share one database.
    pub instance: InstanceConfig,
    /// The channels' sections (`[<channel>]`), by name: each channel crate reads
    /// and checks its own (see `channels`), so this file names none of them.
    #[serde(flatten)]
    pub channels: BTreeMap<String, toml::Value>,
}

/// This process among the gateway instances that share one (PostgreSQL) database: its name, and
/// how often it says it is alive. Work in progress — turns and job leases — names its instance, so
/// that when an instance dies the others take its work over, and when it restarts it takes its own
/// back at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceConfig {
    /// Unique among the instances sharing the database, and the same across restarts of one
    /// instance (a restart then takes back its own work at once). Default: the host name and the
    /// listening port (with port 0, the host name and a random suffix).
    pub name: Option<String>,
    /// How often the instance says it is alive.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long an instance may stay silent before the others take its work over.
    #[serde(with = "humantime_serde")]
    pub dead_after: Duration,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            name: None,
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
        }
    }
}

impl InstanceConfig {
    /// The instance's name: the configured one, or the host name (and port) it runs on.
    pub fn name(&self, listen: SocketAddr) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "switchboard".into());
        match listen.port() {
            // Several such gateways run on one host (tests, tools): each is an instance of its own.
            0 => format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            port => format!("{host}:{port}"),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control))
        {
            return Err("instance.name must be 1 to 200 printable characters".into());
        }
        if self.heartbeat < Duration::from_millis(100) {
            return Err("instance.heartbeat must be at least 100ms".into());
        }
        if self.dead_after < self.heartbeat * 2 {
            return Err("instance.dead_after must be at least twice instance.heartbeat".into());
        }
        Ok(())
    }
}

/// The HTTP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// The address visitors reach the gateway at, used in the embed snippet. Defaults to
    /// `http://<listen>`.
    pub public_url: Option<String>,
    /// How long a shutdown waits for running replies before giving up on them (they are resumed by
    /// the next start).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a shutdown keeps serving, with `/readyz` answering 503, before it stops accepting
    /// connections: the time a load balancer needs to notice and send new clients elsewhere.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Largest request body accepted, in bytes (provider webhooks have limits of their own, sized
    /// to what each provider really sends).
    pub max_body_bytes: usize,
    /// Longest time a client may take to send a request body (slow senders hold a connection).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Longest time a client may take to send its request headers; also how long an idle
    /// keep-alive connection stays open.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Open connections at most; further clients wait in the listen backlog. `0`: as many as the
    /// process's open-files limit allows, less a reserve for the database, files and providers,
    /// up to 65,536.
    pub max_connections: usize,
    /// Open connections of one client address (an IPv6 /64) at most; further ones are closed at
    /// once. Trusted proxies (and this machine, when `limits.exempt_local`) are not limited. `0`:
    /// no limit.
    pub max_connections_per_address: usize,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed: the client's address
    /// (for rate limits and the audit log) is then the nearest address in that header that is not
    /// one of them. Default: this machine's loopback addresses (a reverse proxy on the same host);
    /// every other peer is the client itself.
    pub trusted_proxies: Vec<String>,
    /// Bearer token of the operator: it grants access to stored media (`/v1/media/{id}`). Unset:
    /// those routes answer 401.
    #[serde(deserialize_with = "Secret::optional")]
    pub admin_token: Option<Secret>,
    /// Bearer token `GET /metrics` requires. Unset: the metrics are open to whoever reaches the
    /// listener (fine on a private address; set it when the gateway faces the internet).
    #[serde(deserialize_with = "Secret::optional")]
    pub metrics_token: Option<Secret>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            shutdown_grace: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            max_body_bytes: 256 * 1024,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            max_connections: 0,
            max_connections_per_address: 512,
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1".into()],
            admin_token: None,
            metrics_token: None,
        }
    }
}

impl ServerConfig {
    /// The public base URL without a trailing slash.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }
}

/// Where conversations are stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://<file>` (created on first run) or `postgres://user@host/db`.
    pub url: String,
    /// PostgreSQL pool size. Commits wait for the WAL to reach disk; with more connections more
    /// of them share each flush (group commit).
    pub max_connections: u32,
    /// SQLite reader connections (writes go through one writer connection). More readers than
    /// CPU cores only adds thread switching.
    pub sqlite_readers: u32,
    /// SQLite durability: `normal` survives a crash of the process (not of the machine) and is fast;
    /// `full` also survives power loss, at a cost in throughput.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://switchboard.db".into(),
            max_connections: 16,
            sqlite_readers: 2,
            sqlite_synchronous: SqliteSynchronous::Normal,
        }
    }
}

/// SQLite's `synchronous` setting, as far as it is sensible in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Durable against process crashes.
    Normal,
    /// Durable against power loss too.
    Full,
}

/// The website chat channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Secret for HS256 visitor tokens (`Authorization: Bearer`). Unset: only `X-Device-ID`. Must
    /// differ from `staff.jwt_secret`.
    #[serde(deserialize_with = "Secret::optional")]
    pub jwt_secret: Option<Secret>,
    /// Clock skew tolerated when checking token expiry and `nbf`.
    #[serde(with = "humantime_serde")]
    pub jwt_leeway: Duration,
    /// Longest validity of a visitor token (`exp` after `iat`, or after now without `iat`); a
    /// token valid for longer is refused.
    #[serde(with = "humantime_serde")]
    pub jwt_max_lifetime: Duration,
    /// When set, visitor tokens must carry this `aud`.
    pub jwt_audience: Option<String>,
    /// When set, visitor tokens must carry this `iss`.
    pub jwt_issuer: Option<String>,
    /// Identify visitors by the site's signed tokens only: `X-Device-ID` is refused (401
    /// `token_required`). Needs `jwt_secret`.
    pub require_token: bool,
    /// Most characters in one message.
    pub max_content_chars: usize,
    /// Most attachments in one message.
    pub max_attachments: usize,
    /// Largest file a visitor may upload (`POST /v1/uploads`); a bigger one is refused with 413
    /// as soon as the excess arrives, and nothing of it is kept.
    pub max_upload_bytes: u64,
    /// How long an upload no message attaches is kept before it is removed (and a mail's kept
    /// file no message names: the copy of a resent mail).
    #[serde(with = "humantime_serde")]
    pub unused_upload_ttl: Duration,
    /// Origins allowed to call the API from a browser (CORS). `["*"]` allows any site to embed the
    /// widget; identities travel in headers, never cookies.
    pub allowed_origins: Vec<String>,
    /// How long `POST /v1/chat/messages` waits for the reply before answering without it (the reply
    /// still arrives on the conversation's event stream).
    #[serde(with = "humantime_serde")]
    pub reply_timeout: Duration,
    /// Interval of comment heartbeats on event streams.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// The largest frame a WebSocket client (`GET /v1/chat/ws`) may send, in bytes; a bigger one
    /// closes the socket (close code 1009).
    pub ws_max_frame_bytes: usize,
    /// WebSockets one visitor may hold open at once; one more is refused (429). 0: no limit.
    pub ws_sockets_per_visitor: u32,
    /// How often the gateway pings each WebSocket; a socket that has not answered (nothing came
    /// from it) for two intervals is closed (close code 4408).
    #[serde(with = "humantime_serde")]
    pub ws_ping_interval: Duration,
}

/// The smallest and largest `web.ws_max_frame_bytes`.
pub const WS_FRAME_BYTES: std::ops::RangeInclusive<usize> = 1024..=16 * 1024 * 1024;

/// The largest `web.max_upload_bytes`: an upload is one request, held open while it arrives.
pub const MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_leeway: Duration::from_secs(60),
            jwt_max_lifetime: Duration::from_secs(24 * 3600),
            jwt_audience: None,
            jwt_issuer: None,
            require_token: false,
            max_content_chars: 4096,
            max_attachments: 10,
            max_upload_bytes: 10 * 1024 * 1024,
            unused_upload_ttl: Duration::from_secs(24 * 3600),
            allowed_origins: vec!["*".into()],
            reply_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            ws_max_frame_bytes: 64 * 1024,
            ws_sockets_per_visitor: 8,
            ws_ping_interval: Duration::from_secs(30),
        }
    }
}

/// How inbound messages are handled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// How many earlier messages an agent sees.
    pub context_messages: u32,
    /// How many replies are produced at the same time, over all conversations.
    pub max_concurrency: usize,
    /// Longest time an agent may take for one reply.
    #[serde(with = "humantime_serde")]
    pub agent_timeout: Duration,
    /// What the user is told when the agent fails or times out.
    pub fallback_message: String,
    /// Cron schedule (with seconds) of the sweeper that resumes messages left unanswered.
    pub sweep_schedule: String,
    /// How old an unanswered message must be before the sweeper takes it over.
    #[serde(with = "humantime_serde")]
    pub sweep_grace: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            context_messages: 20,
            max_concurrency: 256,
            agent_timeout: Duration::from_secs(60),
            fallback_message: "Sorry, I can't answer right now. Please try again in a moment."
                .into(),
            sweep_schedule: "*/30 * * * * *".into(),
            sweep_grace: Duration::from_secs(60),
        }
    }
}

/// Which agent answers a conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// The agent for messages no rule matches.
    pub default_agent: String,
    /// How long a conversation stays with the agent that answered it, after its last answer,
    /// unless the agent sets its own.
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Duration,
    /// Cron schedule (with seconds) of the job that clears expired locks.
    pub lock_sweep_schedule: String,
    /// Rules tried in order on the first message of an unlocked conversation.
    pub rules: Vec<RoutingRule>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            default_agent: "assistant".into(),
            lock_ttl: Duration::from_secs(24 * 3600),
            lock_sweep_schedule: "0 * * * * *".into(),
            rules: Vec::new(),
        }
    }
}

/// Sends matching messages to an agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingRule {
    /// The agent to use.
    pub agent: String,
    /// Matches when the message contains one of these words (case-insensitive, whole words).
    pub keywords: Vec<String>,
    /// Matches when this regular expression finds a match in the message.
    pub pattern: Option<String>,
}

/// One agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AgentConfig {
    /// Offline rules: greeting, keyword answers, handoff phrases, fallback.
    Scripted(ScriptedConfig),
    /// Repeats the user's message (tests and benchmarks).
    Echo(EchoConfig),
    /// Any OpenAI-compatible chat completions endpoint, streamed.
    Openai(OpenAiConfig),
}

impl AgentConfig {
    /// The agent's own lock TTL, overriding `routing.lock_ttl`.
    pub fn lock_ttl(&self) -> Option<Duration> {
        match self {
            AgentConfig::Scripted(c) => c.lock_ttl,
            AgentConfig::Echo(c) => c.lock_ttl,
            AgentConfig::Openai(c) => c.lock_ttl,
        }
    }

    /// How visitors see the agent, and whether they may choose it.
    pub fn listing(&self) -> &AgentListing {
        match self {
            AgentConfig::Scripted(c) => &c.listing,
            AgentConfig::Echo(c) => &c.listing,
            AgentConfig::Openai(c) => &c.listing,
        }
    }

    /// The agent's prices per 1,000 tokens: (input, output).
    pub fn prices(&self) -> (f64, f64) {
        match self {
            AgentConfig::Scripted(c) => (c.price_per_1k_input, c.price_per_1k_output),
            AgentConfig::Echo(c) => (c.price_per_1k_input, c.price_per_1k_output),
            AgentConfig::Openai(c) => (c.price_per_1k_input, c.price_per_1k_output),
        }
    }
}

/// An agent as visitors see it in the catalogue: the keys every kind of agent takes besides its
/// own. An agent is in the catalogue, and visitors may pick it for a message, only when
/// `selectable`; the rest stay private to the operator's routing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentListing {
    /// Visitors may see and choose this agent.
    pub selectable: bool,
    /// The name shown to visitors (needed when `selectable`).
    pub name: String,
    /// What the agent is good at, in a sentence or two.
    pub description: String,
    /// What it is for (`general`, `code`, `creative`…) and what it is best at (`speed`,
    /// `quality`, `cost`): the recommendation picks by them.
    pub tags: Vec<String>,
    /// How many tokens of conversation the model reads at most, when known.
    pub context_tokens: Option<u32>,
}

/// The longest catalogue name of an agent, in characters.
pub const MAX_AGENT_NAME_CHARS: usize = 80;
/// The longest catalogue description of an agent, in characters.
pub const MAX_AGENT_DESCRIPTION_CHARS: usize = 500;
/// The most tags of one agent.
pub const MAX_AGENT_TAGS: usize = 16;
/// The longest tag, in bytes (tags are lowercase ASCII).
pub const MAX_TAG_LEN: usize = 32;
/// The largest context size an agent may declare.
pub const MAX_CONTEXT_TOKENS: u32 = 100_000_000;

/// Whether `tag` is a well-formed tag: 1 to [`MAX_TAG_LEN`] lowercase letters, digits, `_` or `-`.
pub fn is_tag(tag: &str) -> bool {
    (1..=MAX_TAG_LEN).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

impl AgentListing {
    /// Checks the bounds; `agent` names the agent in the message.
    fn validate(&self, agent: &str) -> Result<(), String> {
        let name = self.name.trim();
        if self.selectable && name.is_empty() {
            return Err(format!(
                "agents.{agent}.name is needed when the agent is selectable"
            ));
        }
        let printable = |text: &str| !text.chars().any(char::is_control);
        if self.name.chars().count() > MAX_AGENT_NAME_CHARS || !printable(&self.name) {
            return Err(format!(
                "agents.{agent}.name has at most {MAX_AGENT_NAME_CHARS} characters and no control characters"
            ));
        }
        if self.description.chars().count() > MAX_AGENT_DESCRIPTION_CHARS {
            return Err(format!(
                "agents.{agent}.description has at most {MAX_AGENT_DESCRIPTION_CHARS} characters"
            ));
        }
        if self.tags.len() > MAX_AGENT_TAGS || !self.tags.iter().all(|t| is_tag(t)) {
            return Err(format!(
                "agents.{agent}.tags: at most {MAX_AGENT_TAGS} tags of 1 to {MAX_TAG_LEN} lowercase letters, digits, '_' or '-'"
            ));
        }
        if self
            .context_tokens
            .is_some_and(|n| n == 0 || n > MAX_CONTEXT_TOKENS)
        {
            return Err(format!(
                "agents.{agent}.context_tokens must be between 1 and {MAX_CONTEXT_TOKENS}"
            ));
        }
        Ok(())
    }
}

/// The offline scripted agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptedConfig {
    /// Lock TTL for conversations this agent answers.
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Option<Duration>,
    /// Price of 1,000 input (prompt) tokens, in `quotas.currency`.
    pub price_per_1k_input: f64,
    /// Price of 1,000 output (completion) tokens, in `quotas.currency`.
    pub price_per_1k_output: f64,
    /// How visitors see the agent in the catalogue (`GET /v1/agents`), and whether they may
    /// choose it.
    #[serde(flatten)]
    pub listing: AgentListing,
    /// Pause between streamed words, so replies visibly stream in.
    #[serde(with = "humantime_serde")]
    pub word_delay: Duration,
    /// Words that make a message a greeting.
    pub greeting_words: Vec<String>,
    /// The answer to a greeting.
    pub greeting: String,
    /// Offered as buttons with the greeting (on channels that show buttons); a tap sends the
    /// title, so titles should match keywords of `answers` or `handoff_phrases`.
    pub greeting_choices: Vec<String>,
    /// Answers to messages containing keywords, tried in order.
    pub answers: Vec<ScriptedAnswer>,
    /// Phrases with which a user asks for a person; they hand the conversation to an expert.
    pub handoff_phrases: Vec<String>,
    /// What the agent says when handing over.
    pub handoff_reply: String,
    /// The answer when nothing else matches.
    pub fallback: String,
}

impl Default for ScriptedConfig {
    fn default() -> Self {
        Self {
            lock_ttl: None,
            price_per_1k_input: 0.0,
            price_per_1k_output: 0.0,
            listing: AgentListing::default(),
            word_delay: Duration::from_millis(30),
            greeting_words: [
                "hi",
                "hello",
                "hey",
                "hallo",
                "good morning",
                "good evening",
            ]
            .map(String::from)
            .to_vec(),
            greeting: "Hello! I'm the Switchboard assistant. Ask me about opening hours, pricing \
                       or delivery, or say \"talk to a human\" to reach a person."
                .into(),
            greeting_choices: ["Opening hours", "Pricing", "Talk to a human"]
                .map(String::from)
                .to_vec(),
            answers: vec![
                ScriptedAnswer {
                    keywords: ["hours", "open", "opening"].map(String::from).to_vec(),
                    reply: "We're open Monday to Friday, 9:00 to 18:00.".into(),
                },
                ScriptedAnswer {
                    keywords: ["price", "prices", "pricing", "cost", "plan"]
                        .map(String::from)
                        .to_vec(),
                    reply: "Plans start at 10 EUR a month; every plan includes all channels."
                        .into(),
                },
                ScriptedAnswer {
                    keywords: ["delivery", "shipping", "ship"].map(String::from).to_vec(),
                    reply: "Orders ship within two working days.".into(),
                },
            ],
            handoff_phrases: [
                "talk to a human",
                "speak to a human",
                "talk to a person",
                "real person",
                "human agent",
            ]
            .map(String::from)
            .to_vec(),
            handoff_reply: "Of course. I'm handing you over to one of our experts; they will \
                            answer here."
                .into(),
            fallback: "I'm not sure I understood. I can help with opening hours, pricing and \
                       delivery, or you can say \"talk to a human\"."
                .into(),
        }
    }
}

/// A keyword answer of the scripted agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptedAnswer {
    /// Whole words (case-insensitive) that trigger the answer.
    pub keywords: Vec<String>,
    /// The answer.
    pub reply: String,
}

/// The echo agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EchoConfig {
    /// Lock TTL for conversations this agent answers.
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Option<Duration>,
    /// Price of 1,000 input (prompt) tokens, in `quotas.currency`.
    pub price_per_1k_input: f64,
    /// Price of 1,000 output (completion) tokens, in `quotas.currency`.
    pub price_per_1k_output: f64,
    /// How visitors see the agent in the catalogue (`GET /v1/agents`), and whether they may
    /// choose it.
    #[serde(flatten)]
    pub listing: AgentListing,
    /// Put before the echoed text.
    pub prefix: String,
}

/// An agent backed by an OpenAI-compatible chat completions API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Lock TTL for conversations this agent answers.
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Option<Duration>,
    /// Price of 1,000 input (prompt) tokens, in `quotas.currency`.
    pub price_per_1k_input: f64,
    /// Price of 1,000 output (completion) tokens, in `quotas.currency`.
    pub price_per_1k_output: f64,
    /// How visitors see the agent in the catalogue (`GET /v1/agents`), and whether they may
    /// choose it.
    #[serde(flatten)]
    pub listing: AgentListing,
    /// Keep the provider's raw stream events with each reply (for staff, bounded in count and
    /// size): for debugging a model, not for everyday use.
    pub keep_raw_events: bool,
    /// Base URL up to and including the version, e.g. `https://api.openai.com/v1`;
    /// `/chat/completions` is appended.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// API key. Unset: the `OPENAI_API_KEY` environment variable, if any.
    #[serde(deserialize_with = "Secret::optional")]
    pub api_key: Option<Secret>,
    /// System prompt put before the conversation.
    pub system_prompt: String,
    /// Sampling temperature, if the model should not use its default.
    pub temperature: Option<f32>,
    /// Most tokens in one reply.
    pub max_tokens: Option<u32>,
    /// Longest time for the whole reply, including connecting.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            lock_ttl: None,
            price_per_1k_input: 0.0,
            price_per_1k_output: 0.0,
            listing: AgentListing::default(),
            keep_raw_events: false,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key: None,
            system_prompt: "You are a helpful customer service assistant. Answer briefly.".into(),
            temperature: None,
            max_tokens: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// How staff sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaffConfig {
    /// Secret of staff API tokens (HS256). Unset: a random one generated at the first start and
    /// kept in `key_file`. Every instance sharing a database must use the same.
    #[serde(deserialize_with = "Secret::optional")]
    pub jwt_secret: Option<Secret>,
    /// Where the generated staff token secret is kept (readable by the owner only), when
    /// `jwt_secret` is not set. Default: beside the SQLite database (`<name>.key`), or
    /// `switchboard.key` in the working directory with PostgreSQL.
    pub key_file: Option<std::path::PathBuf>,
    /// How long an API token is valid (at most 7 days); tokens claiming a longer validity are
    /// refused.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// How long a dashboard session lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Mark session cookies `Secure` (only sent over HTTPS). Unset: when `server.public_url` is
    /// an `https://` address.
    pub secure_cookies: Option<bool>,
}

impl Default for StaffConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            key_file: None,
            token_ttl: Duration::from_secs(8 * 3600),
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: None,
        }
    }
}

/// Experts and their conversations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExpertsConfig {
    /// Open conversations of a new expert at most (each expert can change theirs).
    pub default_capacity: i64,
    /// An assigned conversation the expert has not answered for this long goes back to the queue.
    #[serde(with = "humantime_serde")]
    pub assignment_timeout: Duration,
    /// Cron schedule (with seconds) of the job that times out unanswered assignments and assigns
    /// waiting conversations (assignment also happens at once on every change).
    pub assign_schedule: String,
    /// E-mail the assigned expert the conversation so far (needs a channel that can mail staff:
    /// the e-mail channel with its outgoing server); they can answer by replying.
    pub notify_by_email: bool,
    /// POSTed a JSON notice of every assignment, signed with `webhook_secret` in
    /// `X-Switchboard-Signature: sha256=<hex HMAC of the body>`.
    pub webhook_url: Option<String>,
    /// See `webhook_url`.
    #[serde(deserialize_with = "Secret::optional")]
    pub webhook_secret: Option<Secret>,
}

impl Default for ExpertsConfig {
    fn default() -> Self {
        Self {
            default_capacity: 5,
            assignment_timeout: Duration::from_secs(15 * 60),
            assign_schedule: "*/15 * * * * *".into(),
            notify_by_email: true,
            webhook_url: None,
            webhook_secret: None,
        }
    }
}

/// Evaluations: checks run on every AI reply after it is stored, in a background job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluationsConfig {
    /// Run them.
    pub enabled: bool,
    /// What a failed evaluation causes.
    pub action: EvaluationAction,
    /// Words and phrases a reply must not contain (whole words, any case).
    pub blocked_keywords: Vec<String>,
    /// Regular expressions a reply must not match.
    pub blocked_patterns: Vec<String>,
    /// Longest acceptable reply, in characters (an empty reply always fails).
    pub max_chars: usize,
    /// An LLM that scores each reply; off when unset.
    pub judge: Option<JudgeConfig>,
}

impl Default for EvaluationsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            action: EvaluationAction::Flag,
            blocked_keywords: Vec::new(),
            blocked_patterns: Vec::new(),
            max_chars: 4096,
            judge: None,
        }
    }
}

impl EvaluationsConfig {
    fn validate(&self, agents: &BTreeMap<String, AgentConfig>) -> Result<(), String> {
        if self.max_chars == 0 {
            return Err("evaluations.max_chars must be at least 1".into());
        }
        for (i, pattern) in self.blocked_patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(format!("evaluations.blocked_patterns[{i}]: {e}"));
            }
        }
        if self.blocked_keywords.iter().any(|k| k.trim().is_empty()) {
            return Err("evaluations.blocked_keywords must not contain empty words".into());
        }
        if let Some(judge) = &self.judge {
            if !matches!(agents.get(&judge.agent), Some(AgentConfig::Openai(_))) {
                return Err(format!(
                    "evaluations.judge.agent {:?} must name an agent of kind \"openai\" in [agents]",
                    judge.agent
                ));
            }
            if !(0.0..=1.0).contains(&judge.min_score) {
                return Err("evaluations.judge.min_score must be between 0 and 1".into());
            }
        }
        Ok(())
    }
}

/// What a failed evaluation causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvaluationAction {
    /// The failure is listed for supervisors to review (and announced on their dashboards).
    Flag,
    /// Also: the conversation goes to the experts.
    Handoff,
}

/// The LLM judge of evaluations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeConfig {
    /// An agent of kind `openai` in `[agents]` whose API, model and key the judge uses (with its
    /// own instructions instead of the agent's system prompt).
    pub agent: String,
    /// Lowest acceptable score (0 to 1) of each of relevance, safety and quality.
    pub min_score: f64,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            agent: "judge".into(),
            min_score: 0.5,
        }
    }
}

/// Background jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs of one queue running at the same time.
    pub concurrency: usize,
    /// How long a worker holds a job before another may take it over (after a crash).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often idle workers look for work that other instances queued.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Wait before the first retry; each further retry waits twice as long.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest wait between two retries.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Attempts before a job gives up (the message is then marked failed).
    pub max_attempts: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(5),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            max_attempts: 20,
        }
    }
}

/// Downloaded media.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The directory (created on first use).
    pub dir: std::path::PathBuf,
    /// Largest file downloaded, in bytes.
    pub max_bytes: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            dir: "media".into(),
            max_bytes: 100 * 1024 * 1024,
        }
    }
}

/// How long stored data is kept. Each period is in days and unset by default: nothing is
/// removed unless the operator chooses a period. See `retention` for what each one removes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Messages older than this are removed (with their files and evaluations); conversations
    /// left without messages and idle as long are removed, and contacts left without
    /// conversations.
    pub messages_days: Option<u32>,
    /// Stored files older than this are removed; their messages stay and describe them.
    pub media_days: Option<u32>,
    /// Conversations deleted (by their visitor) this long ago are removed for good.
    pub deleted_conversations_days: Option<u32>,
    /// Audit log entries older than this are removed.
    pub audit_days: Option<u32>,
    /// Rows removed per transaction, at most: the database is never held long.
    pub batch_size: u32,
    /// Cron schedule (with seconds) of the purge.
    pub schedule: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            messages_days: None,
            media_days: None,
            deleted_conversations_days: None,
            audit_days: None,
            batch_size: 500,
            schedule: "0 17 3 * * *".into(),
        }
    }
}

/// The longest retention period that can be set: a hundred years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl RetentionConfig {
    /// Whether any period is set (otherwise the purge has nothing to do and is not scheduled).
    pub fn enabled(&self) -> bool {
        self.periods().iter().any(|(_, days)| days.is_some())
    }

    fn periods(&self) -> [(&'static str, Option<u32>); 4] {
        [
            ("retention.messages_days", self.messages_days),
            ("retention.media_days", self.media_days),
            (
                "retention.deleted_conversations_days",
                self.deleted_conversations_days,
            ),
            ("retention.audit_days", self.audit_days),
        ]
    }

    fn validate(&self) -> Result<(), String> {
        for (name, days) in self.periods() {
            if let Some(days) = days
                && !(1..=MAX_RETENTION_DAYS).contains(&days)
            {
                return Err(format!(
                    "{name} must be between 1 and {MAX_RETENTION_DAYS} (leave it out to keep forever)"
                ));
            }
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err("retention.batch_size must be between 1 and 10000".into());
        }
        Ok(())
    }
}

/// Rate limits and caps: what one visitor, one client address, one contact or one sign-in may
/// ask of the gateway. `0` switches a single limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Clients on this machine (a loopback address no trusted proxy forwarded for: health checks,
    /// scripts, load tests of the operator) are not held to the visitor and address limits. The
    /// gateway's total caps and the per-account sign-in backoff still apply.
    pub exempt_local: bool,
    /// Per website visitor identity (a device id, or a signed-in user of the embedding site).
    pub visitor: VisitorLimits,
    /// Per client address: all visitors behind one address together.
    pub address: AddressLimits,
    /// Per contact on the messaging channels (all but the web chat). Over the limit a
    /// message is still stored, but not answered, and the contact is told once.
    pub contact: ContactLimits,
    /// Staff sign-in.
    pub sign_in: SignInLimits,
    /// Open event streams of the whole gateway.
    pub streams: StreamLimits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            exempt_local: true,
            visitor: VisitorLimits::default(),
            address: AddressLimits::default(),
            contact: ContactLimits::default(),
            sign_in: SignInLimits::default(),
            streams: StreamLimits::default(),
        }
    }
}

/// What one website visitor may do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisitorLimits {
    /// Messages per minute (each is an agent turn, which may cost money).
    pub messages_per_minute: u32,
    /// New conversations per hour.
    pub conversations_per_hour: u32,
    /// Requests for a person per hour.
    pub handoffs_per_hour: u32,
    /// Event streams open at once.
    pub event_streams: u32,
}

impl Default for VisitorLimits {
    fn default() -> Self {
        Self {
            messages_per_minute: 30,
            conversations_per_hour: 30,
            handoffs_per_hour: 10,
            event_streams: 8,
        }
    }
}

/// What all visitors behind one client address may do together (an office, a mobile carrier's
/// NAT): higher than one visitor's limits, but a bound on someone inventing device ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressLimits {
    /// Messages per minute.
    pub messages_per_minute: u32,
    /// New conversations per hour.
    pub conversations_per_hour: u32,
    /// Requests for a person per hour.
    pub handoffs_per_hour: u32,
    /// Event streams open at once.
    pub event_streams: u32,
}

impl Default for AddressLimits {
    fn default() -> Self {
        Self {
            messages_per_minute: 300,
            conversations_per_hour: 300,
            handoffs_per_hour: 60,
            event_streams: 200,
        }
    }
}

/// What one contact on a messaging channel gets answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContactLimits {
    /// Messages answered per minute; further ones are stored unanswered.
    pub messages_per_minute: u32,
    /// What the contact is told, once, when they go over the limit.
    pub notice: String,
}

impl Default for ContactLimits {
    fn default() -> Self {
        Self {
            messages_per_minute: 20,
            notice: "You're writing faster than we can answer. We have your messages; please \
                     give us a moment before sending more."
                .into(),
        }
    }
}

/// Staff sign-in: password guessing is slow and expensive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignInLimits {
    /// Sign-in attempts per minute from one client address.
    pub attempts_per_minute: u32,
    /// Failed sign-ins of one account in a row before it backs off: each further failure doubles
    /// the wait before the next attempt is even checked.
    pub failures_before_backoff: u32,
    /// The first wait once an account backs off.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// The longest wait.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Password hashes (argon2id, 19 MiB each) computed at once. `0`: one per CPU core.
    pub concurrent_hashes: usize,
    /// How long a sign-in waits for a free hashing slot before it is refused with 429.
    #[serde(with = "humantime_serde")]
    pub hash_wait: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            attempts_per_minute: 10,
            failures_before_backoff: 5,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(15 * 60),
            concurrent_hashes: 0,
            hash_wait: Duration::from_secs(2),
        }
    }
}

/// Long-lived event streams of the whole gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamLimits {
    /// Event streams open at once, over all clients (each holds a connection and its socket).
    /// `0`: `server.max_connections` less a tenth (at least 256), so that streams never crowd out
    /// other requests.
    pub total: usize,
    /// Event streams one staff member keeps open at once.
    pub per_staff_member: u32,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            total: 0,
            per_staff_member: 16,
        }
    }
}

/// Quotas: how much each contact may use, by plan, and the currency of prices and credits.
///
/// Every contact has a plan: the one an admin gave them, else `default_plan`. Out of the box the
/// default plan has no limits, so the gateway answers everyone as it always did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// The currency of the agents' prices and of contacts' credits (a label, e.g. `USD`).
    pub currency: String,
    /// The plan of contacts an admin gave none. `default` exists (without limits) unless defined.
    pub default_plan: String,
    /// What a contact on a messaging channel is told, once per period, when they are over
    /// their quota (their messages are kept, not answered).
    pub notice: String,
    /// When the counters are re-read from the database (cron with seconds), so that instances
    /// sharing a PostgreSQL database see each other's use. SQLite runs one instance and skips it.
    pub refresh_schedule: String,
    /// The plans, by name.
    pub plans: BTreeMap<String, PlanConfig>,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            currency: "USD".into(),
            default_plan: DEFAULT_PLAN.into(),
            notice: "You have used up your messages for now. We will answer again when your \
                     allowance renews."
                .into(),
            refresh_schedule: "0 * * * * *".into(),
            plans: BTreeMap::new(),
        }
    }
}

/// The plan that exists without being configured.
pub const DEFAULT_PLAN: &str = "default";

/// The largest limit of a plan, and the largest credit balance: far beyond real use, small
/// enough that no sum of them overflows.
pub const MAX_QUOTA: u64 = 1_000_000_000_000;

/// A plan: what a contact may use per UTC day and per UTC month. An absent limit is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanConfig {
    /// Messages a contact may send per day.
    pub messages_per_day: Option<u64>,
    /// Messages a contact may send per month.
    pub messages_per_month: Option<u64>,
    /// Tokens (in and out) the contact's replies may use per day.
    pub tokens_per_day: Option<u64>,
    /// Tokens (in and out) the contact's replies may use per month.
    pub tokens_per_month: Option<u64>,
}

impl PlanConfig {
    /// Whether the plan limits anything.
    pub fn is_limited(&self) -> bool {
        self.messages_per_day.is_some()
            || self.messages_per_month.is_some()
            || self.tokens_per_day.is_some()
            || self.tokens_per_month.is_some()
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Filter in `tracing` syntax, e.g. `info` or `info,switchboard=debug`.
    pub filter: String,
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Pretty,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Environment variables that override the file, and the key each one sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("SWITCHBOARD_LISTEN", "server.listen"),
    ("SWITCHBOARD_INSTANCE", "instance.name"),
    ("SWITCHBOARD_PUBLIC_URL", "server.public_url"),
    ("DATABASE_URL", "database.url"),
    ("SWITCHBOARD_JWT_SECRET", "web.jwt_secret"),
    ("SWITCHBOARD_WS_PING_INTERVAL", "web.ws_ping_interval"),
    ("SWITCHBOARD_DEFAULT_AGENT", "routing.default_agent"),
    ("SWITCHBOARD_LOG", "log.filter"),
    ("SWITCHBOARD_LOG_FORMAT", "log.format"),
    ("SWITCHBOARD_ADMIN_TOKEN", "server.admin_token"),
    ("SWITCHBOARD_METRICS_TOKEN", "server.metrics_token"),
    ("SWITCHBOARD_MEDIA_DIR", "media.dir"),
    ("SWITCHBOARD_STAFF_JWT_SECRET", "staff.jwt_secret"),
    ("SWITCHBOARD_EXPERT_WEBHOOK_URL", "experts.webhook_url"),
    (
        "SWITCHBOARD_EXPERT_WEBHOOK_SECRET",
        "experts.webhook_secret",
    ),
];

/// Environment variables that override numeric keys of the file, and the key each one sets.
pub const ENV_NUMBER_OVERRIDES: &[(&str, &str)] = &[
    ("SWITCHBOARD_WS_MAX_FRAME_BYTES", "web.ws_max_frame_bytes"),
    (
        "SWITCHBOARD_WS_SOCKETS_PER_VISITOR",
        "web.ws_sockets_per_visitor",
    ),
];

/// Overrides the default plan's `messages_per_day` (a number; not a fixed key, since the default
/// plan is named by `quotas.default_plan`).
pub const QUOTA_MESSAGES_PER_DAY_ENV: &str = "SWITCHBOARD_QUOTA_MESSAGES_PER_DAY";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an environment variable does not fit the schema.
    #[error("{origin}: {message}")]
    Parse {
        /// Which file or variable.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The values contradict each other.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the configuration: defaults, then the file (when given), then the environment.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut doc = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        origin: path.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for (var, key) in ENV_OVERRIDES {
            if let Some(value) = env(var).filter(|v| !v.is_empty()) {
                set_key(&mut doc, key, toml::Value::String(value));
            }
        }
        for (var, key) in ENV_NUMBER_OVERRIDES {
            if let Some(value) = env(var).filter(|v| !v.trim().is_empty()) {
                let number = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|e| ConfigError::Parse {
                        origin: (*var).into(),
                        message: format!("{value:?} is not a number: {e}"),
                    })?;
                set_key(&mut doc, key, toml::Value::Integer(number));
            }
        }
        let origin = path.map_or("environment".to_owned(), |p| p.display().to_string());
        let mut config: Config =
            toml::Value::Table(doc)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin,
                    message: e.to_string(),
                })?;
        config.add_builtin_agents();
        config.add_default_plan();
        if let Some(value) = env(QUOTA_MESSAGES_PER_DAY_ENV).filter(|v| !v.trim().is_empty()) {
            let limit = value
                .trim()
                .parse::<u64>()
                .map_err(|e| ConfigError::Parse {
                    origin: QUOTA_MESSAGES_PER_DAY_ENV.into(),
                    message: format!("{value:?} is not a number of messages: {e}"),
                })?;
            if let Some(plan) = config.quotas.plans.get_mut(&config.quotas.default_plan) {
                plan.messages_per_day = Some(limit);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets a key of a channel's section, by its dotted name (`<channel>.<key>`), as the
    /// file or an environment variable would.
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        let mut doc = toml::Table::new();
        doc.extend(std::mem::take(&mut self.channels));
        set_key(&mut doc, key, value.into());
        self.channels = doc.into_iter().collect();
    }

    /// The configuration with no file and no environment: what `cargo run` starts with.
    pub fn defaults() -> Config {
        let mut config = Config::default();
        config.add_builtin_agents();
        config.add_default_plan();
        config
    }

    fn add_default_plan(&mut self) {
        self.quotas.plans.entry(DEFAULT_PLAN.into()).or_default();
    }

    fn add_builtin_agents(&mut self) {
        self.agents
            .entry("assistant".into())
            .or_insert_with(|| AgentConfig::Scripted(ScriptedConfig::default()));
        self.agents
            .entry("echo".into())
            .or_insert_with(|| AgentConfig::Echo(EchoConfig::default()));
    }

    /// Checks what the types cannot: references between sections, patterns, schedules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !self.agents.contains_key(&self.routing.default_agent) {
            return invalid(format!(
                "routing.default_agent {:?} is not defined in [agents]",
                self.routing.default_agent
            ));
        }
        for (i, rule) in self.routing.rules.iter().enumerate() {
            if !self.agents.contains_key(&rule.agent) {
                return invalid(format!(
                    "routing.rules[{i}].agent {:?} is not defined in [agents]",
                    rule.agent
                ));
            }
            if rule.keywords.is_empty() && rule.pattern.is_none() {
                return invalid(format!("routing.rules[{i}] needs keywords or a pattern"));
            }
            if let Some(pattern) = &rule.pattern
                && let Err(e) = regex::Regex::new(pattern)
            {
                return invalid(format!("routing.rules[{i}].pattern: {e}"));
            }
        }
        if self.experts.webhook_url.is_some() != self.experts.webhook_secret.is_some() {
            return invalid(
                "experts.webhook_url and experts.webhook_secret are needed together".into(),
            );
        }
        if self.experts.default_capacity < 1 {
            return invalid("experts.default_capacity must be at least 1".into());
        }
        for (name, schedule) in [
            ("experts.assign_schedule", &self.experts.assign_schedule),
            ("pipeline.sweep_schedule", &self.pipeline.sweep_schedule),
            (
                "routing.lock_sweep_schedule",
                &self.routing.lock_sweep_schedule,
            ),
            ("retention.schedule", &self.retention.schedule),
            ("quotas.refresh_schedule", &self.quotas.refresh_schedule),
        ] {
            if let Err(e) = schedule.parse::<cron::Schedule>() {
                return invalid(format!("{name} {schedule:?}: {e}"));
            }
        }
        self.instance.validate().map_err(ConfigError::Invalid)?;
        if self.pipeline.context_messages == 0 {
            return invalid("pipeline.context_messages must be at least 1".into());
        }
        if self.pipeline.max_concurrency == 0 {
            return invalid("pipeline.max_concurrency must be at least 1".into());
        }
        if self.web.max_content_chars == 0 {
            return invalid("web.max_content_chars must be at least 1".into());
        }
        if !(1..=MAX_UPLOAD_BYTES).contains(&self.web.max_upload_bytes) {
            return invalid(format!(
                "web.max_upload_bytes must be between 1 and {MAX_UPLOAD_BYTES}"
            ));
        }
        if !WS_FRAME_BYTES.contains(&self.web.ws_max_frame_bytes) {
            return invalid(format!(
                "web.ws_max_frame_bytes must be between {} and {}",
                WS_FRAME_BYTES.start(),
                WS_FRAME_BYTES.end()
            ));
        }
        if self.web.ws_ping_interval < Duration::from_millis(100) {
            return invalid("web.ws_ping_interval must be at least 100ms".into());
        }
        if self.web.unused_upload_ttl < Duration::from_secs(60) {
            return invalid("web.unused_upload_ttl must be at least 1m".into());
        }
        if self.database.max_connections == 0 || self.database.sqlite_readers == 0 {
            return invalid(
                "database.max_connections and database.sqlite_readers must be at least 1".into(),
            );
        }
        self.evaluations
            .validate(&self.agents)
            .map_err(ConfigError::Invalid)?;
        self.retention.validate().map_err(ConfigError::Invalid)?;
        if let (Some(web), Some(staff)) = (&self.web.jwt_secret, &self.staff.jwt_secret)
            && web == staff
        {
            return invalid(
                "web.jwt_secret and staff.jwt_secret must differ: a site that signs visitor \
                 tokens must not be able to sign staff tokens"
                    .into(),
            );
        }
        if self.staff.token_ttl.is_zero() || self.staff.token_ttl > MAX_STAFF_TOKEN_TTL {
            return invalid("staff.token_ttl must be between 1s and 7 days".into());
        }
        if self.web.require_token && self.web.jwt_secret.is_none() {
            return invalid(
                "web.require_token needs web.jwt_secret (SWITCHBOARD_JWT_SECRET): without it no \
                 visitor could identify"
                    .into(),
            );
        }
        if self.web.jwt_max_lifetime.is_zero() {
            return invalid("web.jwt_max_lifetime must be at least 1s".into());
        }
        for proxy in &self.server.trusted_proxies {
            if parse_proxy(proxy).is_none() {
                return invalid(format!(
                    "server.trusted_proxies: {proxy:?} is not an address or a CIDR range"
                ));
            }
        }
        if self.server.body_timeout.is_zero() || self.server.header_timeout.is_zero() {
            return invalid(
                "server.body_timeout and server.header_timeout must be at least 1s".into(),
            );
        }
        let sign_in = &self.limits.sign_in;
        if sign_in.backoff_base > sign_in.backoff_max {
            return invalid(
                "limits.sign_in.backoff_base must not be longer than backoff_max".into(),
            );
        }
        if self.jobs.concurrency == 0 || self.jobs.max_attempts == 0 {
            return invalid("jobs.concurrency and jobs.max_attempts must be at least 1".into());
        }
        for (name, agent) in &self.agents {
            agent
                .listing()
                .validate(name)
                .map_err(ConfigError::Invalid)?;
        }
        self.validate_usage().map_err(ConfigError::Invalid)?;
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return invalid(format!(
                "database.url must start with sqlite: or postgres://, got {:?}",
                self.database.url
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Prices, plans and the currency.
    fn validate_usage(&self) -> Result<(), String> {
        for (name, agent) in &self.agents {
            let (input, output) = agent.prices();
            for (key, price) in [
                ("price_per_1k_input", input),
                ("price_per_1k_output", output),
            ] {
                if !price.is_finite() || !(0.0..=MAX_PRICE_PER_1K).contains(&price) {
                    return Err(format!(
                        "agents.{name}.{key} must be between 0 and {MAX_PRICE_PER_1K}"
                    ));
                }
            }
        }
        let quotas = &self.quotas;
        if !quotas.plans.contains_key(&quotas.default_plan) {
            return Err(format!(
                "quotas.default_plan {:?} is not defined in [quotas.plans]",
                quotas.default_plan
            ));
        }
        for (name, plan) in &quotas.plans {
            if name.is_empty() || name.len() > 64 {
                return Err("quotas.plans: a plan's name has 1 to 64 characters".into());
            }
            for (key, limit) in [
                ("messages_per_day", plan.messages_per_day),
                ("messages_per_month", plan.messages_per_month),
                ("tokens_per_day", plan.tokens_per_day),
                ("tokens_per_month", plan.tokens_per_month),
            ] {
                if limit.is_some_and(|l| l > MAX_QUOTA) {
                    return Err(format!(
                        "quotas.plans.{name}.{key} must be at most {MAX_QUOTA}"
                    ));
                }
            }
        }
        let currency = quotas.currency.trim();
        if currency.is_empty() || currency.len() > 16 {
            return Err("quotas.currency must have 1 to 16 characters".into());
        }
        if quotas.notice.trim().is_empty() {
            return Err("quotas.notice must not be empty".into());
        }
        Ok(())
    }
}

/// The highest price per 1,000 tokens the configuration accepts: far above any real model.
pub const MAX_PRICE_PER_1K: f64 = 1_000.0;

/// The longest validity of a staff API token.
pub const MAX_STAFF_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A trusted proxy: an address (`10.0.0.5`) or a CIDR range (`10.0.0.0/8`).
pub fn parse_proxy(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// Sets a dotted key in a TOML document, creating tables on the way.
fn set_key(doc: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut table = doc;
    for part in parts {
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else {
            return;
        };
        table = inner;
    }
    table.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    fn parse_agents(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(Some(&path), env(&[]))
    }

    #[test]
    fn agents_take_their_listing_and_still_refuse_unknown_keys() {
        let config = parse_agents(
            "[agents.fast]\nkind = \"echo\"\nselectable = true\nname = \"Fast\"\n\
             tags = [\"general\", \"speed\"]\ncontext_tokens = 8000\n",
        )
        .unwrap();
        let listing = config.agents["fast"].listing();
        assert!(listing.selectable);
        assert_eq!(listing.name, "Fast");
        assert_eq!(listing.tags, ["general", "speed"]);
        assert_eq!(listing.context_tokens, Some(8000));
        let unknown = parse_agents("[agents.fast]\nkind = \"echo\"\nselectible = true\n");
        assert!(
            matches!(&unknown, Err(ConfigError::Parse { message, .. }) if message.contains("selectible")),
            "{unknown:?}"
        );
        let nameless = parse_agents("[agents.fast]\nkind = \"echo\"\nselectable = true\n");
        assert!(matches!(nameless, Err(ConfigError::Invalid(_))));
        let bad_tag =
            parse_agents("[agents.fast]\nkind = \"openai\"\nname = \"F\"\ntags = [\"Speed!\"]\n");
        assert!(matches!(bad_tag, Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database.url, "sqlite://switchboard.db");
        assert!(matches!(
            config.agents["assistant"],
            AgentConfig::Scripted(_)
        ));
        assert!(matches!(config.agents["echo"], AgentConfig::Echo(_)));
        assert_eq!(config.web.heartbeat, Duration::from_secs(15));
        assert_eq!(config.routing.lock_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(config.web.max_content_chars, 4096);
    }

    #[test]
    fn websocket_limits_come_from_the_environment_too() {
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_WS_MAX_FRAME_BYTES", "4096"),
                ("SWITCHBOARD_WS_SOCKETS_PER_VISITOR", "3"),
                ("SWITCHBOARD_WS_PING_INTERVAL", "10s"),
            ]),
        )
        .unwrap();
        assert_eq!(config.web.ws_max_frame_bytes, 4096);
        assert_eq!(config.web.ws_sockets_per_visitor, 3);
        assert_eq!(config.web.ws_ping_interval, Duration::from_secs(10));
        assert!(
            Config::load(None, env(&[("SWITCHBOARD_WS_MAX_FRAME_BYTES", "many")])).is_err(),
            "not a number"
        );
        assert!(
            Config::load(None, env(&[("SWITCHBOARD_WS_MAX_FRAME_BYTES", "10")])).is_err(),
            "too small for a message"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"0.0.0.0:9000\"\n[database]\nurl = \"sqlite://a.db\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("DATABASE_URL", "postgres://db/x"),
                ("SWITCHBOARD_DEFAULT_AGENT", "echo"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.database.url, "postgres://db/x");
        assert_eq!(config.routing.default_agent, "echo");
    }

    #[test]
    fn quotas_default_to_none_and_are_checked() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.quotas.default_plan, DEFAULT_PLAN);
        assert!(
            !config.quotas.plans[DEFAULT_PLAN].is_limited(),
            "no limits by default"
        );

        let config = Config::load(None, env(&[(QUOTA_MESSAGES_PER_DAY_ENV, "50")])).unwrap();
        assert_eq!(config.quotas.plans[DEFAULT_PLAN].messages_per_day, Some(50));
        let err = Config::load(None, env(&[(QUOTA_MESSAGES_PER_DAY_ENV, "many")])).unwrap_err();
        assert!(
            err.to_string().contains(QUOTA_MESSAGES_PER_DAY_ENV),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quotas.toml");
        std::fs::write(
            &path,
            "[quotas]\ndefault_plan = \"basic\"\n[quotas.plans.basic]\nmessages_per_day = 5\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), env(&[(QUOTA_MESSAGES_PER_DAY_ENV, "7")])).unwrap();
        assert_eq!(
            config.quotas.plans["basic"].messages_per_day,
            Some(7),
            "the variable sets the default plan's, whatever its name"
        );
        for bad in [
            "[quotas]\ndefault_plan = \"gold\"\n",
            "[quotas.plans.x]\nmessages_per_hour = 5\n",
            "[agents.echo]\nkind = \"echo\"\nprice_per_1k_input = -1.0\n",
            "[agents.echo]\nkind = \"echo\"\nkeep_raw_events = true\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(Config::load(Some(&path), env(&[])).is_err(), "{bad}");
        }
    }

    #[test]
    fn instances_are_named_and_their_heartbeat_checked() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let config = Config::load(None, env(&[])).unwrap();
        assert!(
            config.instance.name(listen).ends_with(":8080"),
            "the host name and the port"
        );
        let ephemeral: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_ne!(
            config.instance.name(ephemeral),
            config.instance.name(ephemeral),
            "gateways on port 0 are instances of their own"
        );
        let config = Config::load(None, env(&[("SWITCHBOARD_INSTANCE", "eu-1")])).unwrap();
        assert_eq!(config.instance.name(listen), "eu-1");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.toml");
        for bad in [
            "[instance]\nname = \" \"\n",
            "[instance]\nheartbeat = \"10ms\"\n",
            "[instance]\nheartbeat = \"2s\"\ndead_after = \"3s\"\n",
            "[instance]\nnmae = \"a\"\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(Config::load(Some(&path), env(&[])).is_err(), "{bad}");
        }
    }

    #[test]
    fn typos_and_dangling_references_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[server]\nlisten_on = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");

        std::fs::write(
            &path,
            "[[routing.rules]]\nagent = \"nobody\"\nkeywords = [\"x\"]\n",
        )
        .unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(err.to_string().contains("nobody"), "{err}");

        let err = Config::load(None, env(&[("SWITCHBOARD_LISTEN", "not an address")])).unwrap_err();
        assert!(err.to_string().contains("address"), "{err}");
    }

    #[test]
    fn retention_is_off_by_default_and_its_periods_are_checked() {
        let config = Config::load(None, env(&[])).unwrap();
        assert!(
            !config.retention.enabled(),
            "nothing is removed unless asked"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retention.toml");
        std::fs::write(&path, "[retention]\nmessages_days = 90\n").unwrap();
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert!(config.retention.enabled());
        assert_eq!(config.retention.messages_days, Some(90));
        for (bad, named) in [
            ("messages_days = 0", "retention.messages_days"),
            ("audit_days = 36501", "retention.audit_days"),
            ("batch_size = 0", "retention.batch_size"),
            ("schedule = \"daily\"", "retention.schedule"),
            ("media_days = -1", "media_days"),
        ] {
            std::fs::write(&path, format!("[retention]\n{bad}\n")).unwrap();
            let err = Config::load(Some(&path), env(&[])).unwrap_err();
            assert!(err.to_string().contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn agents_are_configured_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.toml");
        std::fs::write(
            &path,
            "[agents.gpt]\nkind = \"openai\"\nmodel = \"m\"\ntimeout = \"5s\"\nlock_ttl = \"1h\"\n\
             [agents.bad]\nkind = \"echo\"\nprefix = \"> \"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), env(&[])).unwrap();
        let AgentConfig::Openai(gpt) = &config.agents["gpt"] else {
            panic!("expected openai")
        };
        assert_eq!(gpt.timeout, Duration::from_secs(5));
        assert_eq!(
            config.agents["gpt"].lock_ttl(),
            Some(Duration::from_secs(3600))
        );

        std::fs::write(&path, "[agents.x]\nkind = \"echo\"\nmodel = \"m\"\n").unwrap();
        assert!(Config::load(Some(&path), env(&[])).is_err());
    }

    /// Every key of the configuration must be documented in the shipped example, and the example
    /// must load.
    #[test]
    fn the_example_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("switchboard.example.toml");
        let example_text = std::fs::read_to_string(&path).unwrap();
        Config::load(Some(&path), env(&[])).unwrap();

        let mut config = Config::defaults();
        config.routing.rules.push(RoutingRule {
            agent: "echo".into(),
            keywords: vec!["x".into()],
            pattern: Some("x".into()),
        });
        config.agents.insert(
            "openai".into(),
            AgentConfig::Openai(OpenAiConfig {
                api_key: Some("k".into()),
                temperature: Some(0.2),
                max_tokens: Some(10),
                listing: AgentListing {
                    selectable: true,
                    name: "x".into(),
                    context_tokens: Some(1),
                    ..AgentListing::default()
                },
                ..OpenAiConfig::default()
            }),
        );
        if let Some(AgentConfig::Scripted(s)) = config.agents.get_mut("assistant") {
            s.lock_ttl = Some(Duration::from_secs(1));
        }
        if let Some(AgentConfig::Echo(e)) = config.agents.get_mut("echo") {
            e.lock_ttl = Some(Duration::from_secs(1));
        }
        config.server.public_url = Some("x".into());
        config.server.admin_token = Some("x".into());
        config.web.jwt_secret = Some("w".into());
        config.staff.jwt_secret = Some("x".into());
        config.staff.key_file = Some("switchboard.key".into());
        config.web.jwt_audience = Some("x".into());
        config.web.jwt_issuer = Some("x".into());
        config.server.trusted_proxies = vec!["10.0.0.0/8".into()];
        config.evaluations.judge = Some(JudgeConfig::default());
        config.experts.webhook_url = Some("https://x".into());
        config.experts.webhook_secret = Some("x".into());
        config.retention.messages_days = Some(1);
        config.retention.media_days = Some(1);
        config.retention.deleted_conversations_days = Some(1);
        config.retention.audit_days = Some(1);
        let value = toml::Value::try_from(&config).unwrap();
        let mut missing = Vec::new();
        collect_keys(&value, &mut |key| {
            let documented = example_text
                .lines()
                .map(|l| l.trim_start_matches(['#', ' ']))
                .any(|l| l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}=")));
            if !documented {
                missing.push(key.to_owned());
            }
        });
        assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    }

    pub(crate) fn collect_keys(value: &toml::Value, f: &mut impl FnMut(&str)) {
        let toml::Value::Table(table) = value else {
            return;
        };
        for (key, value) in table {
            match value {
                toml::Value::Table(_) => collect_keys(value, f),
                toml::Value::Array(items)
                    if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
                {
                    for item in items {
                        collect_keys(item, f);
                    }
                }
                _ => f(key),
            }
        }
    }
}
