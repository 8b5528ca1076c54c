//! Bodies the handlers build as ad-hoc JSON, described for the document. The structs are never
//! built: they exist for their schemas, so what they describe is the JSON the handlers write.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{
    audit::Entry, contacts::Found, conversations::Mode, evaluations::Evaluation, messages::Message,
    users::User,
};

/// A conversation as its website visitor sees it.
#[derive(Serialize, ToSchema)]
pub struct VisitorConversation {
    #[schema(format = "uuid")]
    id: String,
    /// Always `web` here.
    channel: String,
    /// Given when it was created, or from the first message.
    title: Option<String>,
    /// Where the client that created it said it was started from.
    source: Option<String>,
    /// The client's data given when it was created.
    metadata: serde_json::Map<String, serde_json::Value>,
    mode: Mode,
    /// The agent that answers (AI mode).
    agent: Option<String>,
    #[schema(format = DateTime)]
    lock_expires_at: Option<String>,
    /// In expert mode: waiting for an expert since then.
    #[schema(format = DateTime)]
    queued_at: Option<String>,
    /// The seq of the newest message.
    last_seq: i64,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A conversation as staff see it.
#[derive(Serialize, ToSchema)]
pub struct StaffConversation {
    #[schema(format = "uuid")]
    id: String,
    /// The channel it runs on: `web`, or a channel plug-in's name.
    channel: String,
    title: Option<String>,
    mode: Mode,
    agent: Option<String>,
    #[schema(format = DateTime)]
    lock_expires_at: Option<String>,
    /// The expert who owns it.
    #[schema(format = "uuid")]
    expert_id: Option<String>,
    #[schema(format = DateTime)]
    queued_at: Option<String>,
    #[schema(format = DateTime)]
    assigned_at: Option<String>,
    last_seq: i64,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// `{conversation}`: a conversation after an expert's action.
#[derive(Serialize, ToSchema)]
pub struct ConversationEnvelope {
    conversation: StaffConversation,
}

/// `{message}`: a stored message.
#[derive(Serialize, ToSchema)]
pub struct MessageEnvelope {
    message: Message,
}

/// The end user of a conversation, as staff see them.
#[derive(Serialize, ToSchema)]
pub struct Contact {
    #[schema(format = "uuid")]
    id: String,
    /// Their id on the channel (phone number, chat id, address, device).
    external_id: Option<String>,
    name: Option<String>,
}

/// A conversation opened by staff: the newest messages, oldest first.
#[derive(Serialize, ToSchema)]
pub struct Transcript {
    conversation: StaffConversation,
    contact: Contact,
    messages: Vec<Message>,
}

/// A whole conversation, downloaded as a file.
#[derive(Serialize, ToSchema)]
pub struct Export {
    conversation: StaffConversation,
    contact: Contact,
    messages: Vec<Message>,
    #[schema(format = DateTime)]
    exported_at: String,
}

/// A signed-in API client's token.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    #[schema(format = DateTime)]
    expires_at: String,
    user: User,
}

/// The caller's account and how many conversations they have open.
#[derive(Serialize, ToSchema)]
pub struct Me {
    user: User,
    open: i64,
}

/// `{user}`: a staff account.
#[derive(Serialize, ToSchema)]
pub struct UserEnvelope {
    user: User,
}

/// Every staff account.
#[derive(Serialize, ToSchema)]
pub struct Users {
    users: Vec<User>,
}

/// A conversation waiting for an expert.
#[derive(Serialize, ToSchema)]
pub struct Waiting {
    conversation: StaffConversation,
    contact_name: Option<String>,
    /// Its place in the queue, from 1.
    position: u64,
}

/// The conversations waiting for an expert, longest waiting first.
#[derive(Serialize, ToSchema)]
pub struct Queue {
    conversations: Vec<Waiting>,
}

/// One of the caller's conversations.
#[derive(Serialize, ToSchema)]
pub struct Owned {
    conversation: StaffConversation,
    /// Messages since the expert last read the conversation.
    unread: i64,
    contact_name: Option<String>,
}

/// The caller's open conversations.
#[derive(Serialize, ToSchema)]
pub struct OwnedList {
    conversations: Vec<Owned>,
}

/// A live conversation with its end user's name.
#[derive(Serialize, ToSchema)]
pub struct Live {
    #[serde(flatten)]
    conversation: StaffConversation,
    contact_name: Option<String>,
}

/// Bytes of any format (a file, a provider's payload), not JSON.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// A page of live conversations.
#[derive(Serialize, ToSchema)]
pub struct LivePage {
    conversations: Vec<Live>,
    total: i64,
    page: i64,
    limit: i64,
}

/// A page of one contact's conversations.
#[derive(Serialize, ToSchema)]
pub struct ContactConversationsPage {
    /// Their conversations on every channel, most recently active first.
    conversations: Vec<StaffConversation>,
    total: i64,
    page: i64,
    limit: i64,
}

/// A page of contacts matching a search.
#[derive(Serialize, ToSchema)]
pub struct ContactsPage {
    contacts: Vec<Found>,
    total: i64,
    page: i64,
    limit: i64,
}

/// A page of evaluations of AI replies.
#[derive(Serialize, ToSchema)]
pub struct EvaluationsPage {
    evaluations: Vec<Evaluation>,
    total: i64,
    page: i64,
    limit: i64,
}

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    entries: Vec<Entry>,
    total: i64,
    page: i64,
    limit: i64,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` with 503 (the database does not answer).
    status: String,
    #[schema(example = "0.1.0")]
    version: String,
    /// Seconds since the process started.
    uptime_seconds: u64,
    /// `starting`, `serving` or `stopping`.
    phase: String,
    /// Messages queued or being answered in this process.
    pending_replies: u64,
    /// Each dependency by name: `database`, and services of the channels, named
    /// `<channel>.<service>`.
    checks: std::collections::BTreeMap<String, Check>,
}

/// `GET /v1/admin/usage`.
#[derive(Serialize, ToSchema)]
pub struct UsageTotals {
    #[schema(format = Date)]
    from: String,
    #[schema(format = Date)]
    to: String,
    /// `day`, `agent` or `contact`.
    group_by: String,
    /// The currency of the costs (`quotas.currency`).
    currency: String,
    /// One entry per group, with its key (`day`, `agent` or `contact_id`) and totals.
    groups: Vec<serde_json::Map<String, serde_json::Value>>,
    total: UsageTotal,
}

/// Totals of AI replies.
#[derive(Serialize, ToSchema)]
pub struct UsageTotal {
    replies: i64,
    /// Replies whose tokens were estimated (the model server sent no usage).
    estimated_replies: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost: f64,
    mean_response_time_ms: i64,
}

/// A contact's plan, credits and use (`/v1/admin/contacts/{id}/plan`).
#[derive(Serialize, ToSchema)]
pub struct Standing {
    #[schema(format = "uuid")]
    contact_id: String,
    plan: String,
    /// Whether the plan is the contact's own (not the default).
    own_plan: bool,
    /// The prepaid balance left, when the contact has one.
    credits: Option<f64>,
    currency: String,
    messages_today: i64,
    messages_this_month: i64,
    tokens_today: i64,
    tokens_this_month: i64,
    /// Why the contact is over quota now, if they are.
    exceeded: Option<String>,
}

/// One dependency's state.
#[derive(Serialize, ToSchema)]
pub struct Check {
    /// `ok` or `error`.
    status: String,
    /// How long the check took.
    latency_ms: Option<f64>,
    /// What is wrong (never a secret).
    error: Option<String>,
}

/// `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `serving` (200), `starting` or `stopping` (503).
    status: String,
}

/// A visitor's conversation with its message count and newest message.
#[derive(Serialize, ToSchema)]
pub struct ConversationDetails {
    #[schema(format = "uuid")]
    id: String,
    channel: String,
    title: Option<String>,
    source: Option<String>,
    metadata: serde_json::Map<String, serde_json::Value>,
    mode: Mode,
    agent: Option<String>,
    #[schema(format = DateTime)]
    lock_expires_at: Option<String>,
    #[schema(format = DateTime)]
    queued_at: Option<String>,
    last_seq: i64,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// How many messages it holds.
    message_count: i64,
    /// Its newest message.
    last_message: Option<Message>,
}

/// Everything stored about a contact (`GET /v1/me/export`, `GET /v1/admin/contacts/{id}/export`).
#[derive(Serialize, ToSchema)]
pub struct PersonalData {
    #[schema(format = DateTime)]
    exported_at: String,
    /// The contact (`null` for a visitor who never wrote).
    contact: Option<StoredContact>,
    /// Every conversation of the contact, deleted ones too, each with its messages, the
    /// descriptions of their stored files and their evaluations.
    conversations: Vec<serde_json::Value>,
}

/// A contact as stored.
#[derive(Serialize, ToSchema)]
pub struct StoredContact {
    #[schema(format = "uuid")]
    id: String,
    channel: String,
    /// Phone number, chat id, e-mail address, device or signed-in user.
    external_id: String,
    display_name: Option<String>,
    username: Option<String>,
    metadata: serde_json::Value,
    #[schema(format = DateTime)]
    unreachable_since: Option<String>,
    unreachable_reason: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// `GET /version`.
#[derive(Serialize, ToSchema)]
pub struct Version {
    #[schema(example = "switchboard")]
    name: String,
    #[schema(example = "0.1.0")]
    version: String,
}

/// What a webhook answers when it stored what it received; a handshake answers its
/// provider's challenge as text instead.
#[derive(Serialize, ToSchema)]
pub struct WebhookSummary {
    #[schema(example = "ok")]
    status: String,
    /// Messages and other events in the delivery.
    events: u64,
    /// Newly stored.
    stored: u64,
    /// Already stored before (retries).
    duplicates: u64,
    /// Delivery statuses applied.
    statuses: u64,
}
