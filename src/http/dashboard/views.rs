//! What the templates show, computed from the store: plain strings, numbers and flags, so that
//! the templates stay free of logic and every text they print goes through askama's escaping.
//!
//! Who may do what is decided here only for *showing* buttons; the API the buttons call checks
//! again (see [`crate::experts::Experts`]).

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
};

use switchboard_channel::Channel;

use super::HtmlError;
use crate::{
    experts::Waiting,
    http::AppState,
    store::{
        Db, contacts,
        conversations::{self, Conversation, Listed, Mode, Owned},
        evaluations,
        messages::{Message, Role as Author},
        users::{self, StaffRole, User},
    },
    time::Timestamp,
};

/// Queue entries shown at most; the count says how many more wait.
const QUEUE_SHOWN: usize = 100;
/// Live conversations per page of the supervisors' list.
pub(super) const LIVE_PER_PAGE: i64 = 25;
/// Messages of a transcript shown at most (the newest).
pub(super) const TRANSCRIPT_LIMIT: i64 = 200;

/// A point in time: machine-readable for `<time datetime>` (the script shows it in the reader's
/// time zone), readable in UTC without the script.
pub(super) struct Stamp {
    /// RFC 3339.
    pub iso: String,
    /// `2025-01-31 14:05 UTC`.
    pub text: String,
}

impl Stamp {
    fn of(at: Timestamp) -> Stamp {
        Stamp {
            iso: at.to_string(),
            text: at.to_datetime().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

/// A channel as people call it.
fn channel_label(channel: Channel) -> &'static str {
    crate::channels::label(channel)
}

/// An end user's name, or a stand-in when the channel did not tell one.
fn contact_label(name: Option<String>, channel: Channel) -> String {
    match name {
        Some(name) if !name.trim().is_empty() => name,
        _ if channel == Channel::WEB => "Website visitor".to_owned(),
        _ => format!("Unnamed {} contact", channel_label(channel)),
    }
}

/// The signed-in staff member, as the page header and the availability controls show them.
pub(super) struct Me {
    /// Display name.
    pub name: String,
    /// `expert`, `supervisor` or `admin`.
    pub role: &'static str,
    /// Supervisors and admins.
    pub supervisor: bool,
    /// Taking conversations now.
    pub available: bool,
    /// Most open conversations at once.
    pub capacity: i64,
    /// Conversations they own now.
    pub open: i64,
}

impl Me {
    /// The signed-in user, with their open conversations counted.
    pub(super) async fn load(state: &AppState, user: &User) -> Result<Me, HtmlError> {
        let open = conversations::open_count(&mut state.store.reader(), &user.id).await?;
        Ok(Me {
            name: user.display_name.clone(),
            role: user.role.as_str(),
            supervisor: user.role.includes(StaffRole::Supervisor),
            available: user.available.0,
            capacity: user.capacity,
            open,
        })
    }
}

/// Staff members' names by id (disabled accounts included: their old messages keep a name), and
/// who can take a conversation over.
struct Colleagues {
    names: HashMap<String, String>,
    enabled: Vec<User>,
}

impl Colleagues {
    async fn load(db: &mut impl Db) -> Result<Colleagues, HtmlError> {
        let all = users::list(db).await?;
        Ok(Colleagues {
            names: all
                .iter()
                .map(|u| (u.id.to_string(), u.display_name.clone()))
                .collect(),
            enabled: all
                .into_iter()
                .filter(|u| u.disabled_at.is_none())
                .collect(),
        })
    }

    fn name(&self, id: &str) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }
}

/// Page links of a paginated list.
pub(super) struct Pager {
    /// This page, from 1.
    pub page: i64,
    /// How many pages there are (at least 1).
    pub pages: i64,
    /// How many items there are.
    pub total: i64,
    /// The previous page's fragment, if any.
    pub prev: Option<String>,
    /// The next page's fragment, if any.
    pub next: Option<String>,
}

impl Pager {
    /// Pages of `limit` items; `url` gives a page's fragment URL.
    pub(super) fn new(page: i64, limit: i64, total: i64, url: impl Fn(i64) -> String) -> Pager {
        let pages = ((total + limit - 1) / limit).max(1);
        Pager {
            page,
            pages,
            total,
            prev: (page > 1).then(|| url((page - 1).min(pages))),
            next: (page < pages).then(|| url(page + 1)),
        }
    }
}

/// A conversation waiting in the queue.
pub(super) struct QueueRow {
    pub id: String,
    pub position: usize,
    pub contact: String,
    pub channel: &'static str,
    pub title: String,
    pub since: Option<Stamp>,
}

/// A conversation the user owns.
pub(super) struct MineRow {
    pub id: String,
    pub contact: String,
    pub channel: &'static str,
    pub title: String,
    pub unread: i64,
    pub updated: Stamp,
}

/// A live conversation, as supervisors see it.
pub(super) struct LiveRow {
    pub id: String,
    pub contact: String,
    pub channel: &'static str,
    pub title: String,
    /// Who answers: the assistant, the queue, an expert.
    pub state: String,
    pub updated: Stamp,
}

/// The supervisors' list of live conversations, one page of it.
pub(super) struct LivePage {
    pub rows: Vec<LiveRow>,
    pub pager: Pager,
}

/// An AI reply that failed an evaluation, for supervisors to review.
pub(super) struct FlaggedRow {
    /// The reply's conversation.
    pub conversation_id: String,
    /// The reply, cut short.
    pub excerpt: String,
    /// What failed, in a few words.
    pub failed: String,
    pub at: Stamp,
}

/// Replies flagged for review, newest first.
pub(super) struct Flagged {
    pub rows: Vec<FlaggedRow>,
    /// How many there are in all.
    pub total: i64,
}

/// Flagged replies shown on the dashboard; the API lists them all.
const FLAGGED_SHOWN: i64 = 10;

impl Flagged {
    async fn load(db: &mut impl Db) -> Result<Flagged, HtmlError> {
        let (found, total) = evaluations::failed(db, FLAGGED_SHOWN).await?;
        let rows = found
            .into_iter()
            .map(|e| FlaggedRow {
                failed: crate::evaluations::describe(&e.evaluator, &e.detail, e.score),
                excerpt: excerpt(&e.content, 140),
                conversation_id: e.conversation_id,
                at: Stamp::of(e.created_at),
            })
            .collect();
        Ok(Flagged { rows, total })
    }
}

/// The first `chars` characters of a text, with an ellipsis when there is more.
fn excerpt(text: &str, chars: usize) -> String {
    let mut cut: String = text.chars().take(chars).collect();
    if text.chars().nth(chars).is_some() {
        cut.push('…');
    }
    cut
}

/// The lists of the index page.
pub(super) struct Lists {
    /// Whether the user takes conversations now (their availability may change without them:
    /// an assignment they left unanswered sets them away).
    pub available: bool,
    /// The queue, longest waiting first (at most [`QUEUE_SHOWN`]).
    pub queue: Vec<QueueRow>,
    /// How many wait in all.
    pub queue_total: usize,
    /// The user's conversations.
    pub mine: Vec<MineRow>,
    /// Unread messages in them.
    pub unread: i64,
    /// Supervisors: every live conversation.
    pub live: Option<LivePage>,
    /// Supervisors: replies flagged by evaluations.
    pub flagged: Option<Flagged>,
    /// One line for screen readers, announced when it changes.
    pub summary: String,
}

/// A conversation's title, or a stand-in.
fn title_of(conversation: &Conversation) -> String {
    conversation
        .title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "(no title)".to_owned())
}

/// Who answers a conversation, in words.
fn state_of(conversation: &Conversation, me: &User, colleagues: &Colleagues) -> String {
    match (conversation.mode, conversation.expert_id.as_deref()) {
        (Mode::Ai, _) => "With the assistant".to_owned(),
        (Mode::Closed, _) => "Closed".to_owned(),
        (Mode::Expert, None) => "Waiting for an expert".to_owned(),
        (Mode::Expert, Some(id)) if me.id == id => "With you".to_owned(),
        (Mode::Expert, Some(id)) => format!("With {}", colleagues.name(id).unwrap_or("an expert")),
    }
}

impl Lists {
    /// The queue, the user's conversations and, for supervisors, one page of live conversations.
    pub(super) async fn load(
        state: &AppState,
        me: &User,
        live_page: i64,
    ) -> Result<Lists, HtmlError> {
        let waiting = state.experts.queue().await?;
        let queue_total = waiting.len();
        let queue = waiting
            .into_iter()
            .take(QUEUE_SHOWN)
            .map(
                |Waiting {
                     conversation,
                     contact_name,
                     position,
                 }| QueueRow {
                    position,
                    contact: contact_label(contact_name, conversation.channel),
                    channel: channel_label(conversation.channel),
                    title: title_of(&conversation),
                    since: conversation.queued_at.map(Stamp::of),
                    id: conversation.id.to_string(),
                },
            )
            .collect();
        let mine: Vec<MineRow> = state
            .experts
            .owned(me)
            .await?
            .into_iter()
            .map(
                |Owned {
                     conversation,
                     unread,
                     contact_name,
                 }| MineRow {
                    contact: contact_label(contact_name, conversation.channel),
                    channel: channel_label(conversation.channel),
                    title: title_of(&conversation),
                    unread,
                    updated: Stamp::of(conversation.updated_at),
                    id: conversation.id.to_string(),
                },
            )
            .collect();
        let unread = mine.iter().map(|m| m.unread).sum();
        let (live, flagged) = if me.role.includes(StaffRole::Supervisor) {
            (
                Some(LivePage::load(state, me, live_page).await?),
                Some(Flagged::load(&mut state.store.reader()).await?),
            )
        } else {
            (None, None)
        };
        let summary = format!(
            "{queue_total} waiting in the queue; {} conversations of yours, {unread} unread messages.",
            mine.len()
        );
        Ok(Lists {
            available: me.available.0,
            queue,
            queue_total,
            mine,
            unread,
            live,
            flagged,
            summary,
        })
    }
}

impl LivePage {
    async fn load(state: &AppState, me: &User, page: i64) -> Result<LivePage, HtmlError> {
        let mut reader = state.store.reader();
        let colleagues = Colleagues::load(&mut reader).await?;
        let offset = crate::http::paging::offset(page, LIVE_PER_PAGE)
            .ok_or_else(|| HtmlError::bad_request("No such page."))?;
        let (found, total) = conversations::live(&mut reader, offset, LIVE_PER_PAGE).await?;
        let rows = found
            .into_iter()
            .map(
                |Listed {
                     conversation,
                     contact_name,
                 }| LiveRow {
                    contact: contact_label(contact_name, conversation.channel),
                    channel: channel_label(conversation.channel),
                    title: title_of(&conversation),
                    state: state_of(&conversation, me, &colleagues),
                    updated: Stamp::of(conversation.updated_at),
                    id: conversation.id.to_string(),
                },
            )
            .collect();
        let pager = Pager::new(page, LIVE_PER_PAGE, total, |p| {
            format!("/dashboard/fragments/lists?live_page={p}")
        });
        Ok(LivePage { rows, pager })
    }
}

/// One message of a transcript.
pub(super) struct MessageRow {
    pub id: String,
    /// `user`, `ai`, `expert` or `system`: the bubble's side and colour.
    pub side: &'static str,
    /// Who wrote it, in words.
    pub who: String,
    /// The channel it travelled on.
    pub channel: &'static str,
    /// Its delivery status: received (inbound), pending, sent, delivered, read, failed.
    pub status: &'static str,
    /// Why delivery failed.
    pub error: Option<String>,
    pub at: Stamp,
    pub content: String,
    /// Attached files, described.
    pub attachments: Vec<String>,
    /// Changes whenever anything shown changes: the script replaces only changed messages.
    pub rev: String,
}

impl MessageRow {
    fn of(message: Message, contact: &str, colleagues: &Colleagues) -> MessageRow {
        let (side, who) = match message.role {
            Author::User => ("user", contact.to_owned()),
            Author::Ai => (
                "ai",
                match message.author.as_deref() {
                    Some(agent) if agent != "assistant" => format!("Assistant ({agent})"),
                    _ => "Assistant".to_owned(),
                },
            ),
            Author::Expert => (
                "expert",
                message
                    .metadata
                    .expert_name
                    .clone()
                    .or_else(|| {
                        message
                            .author
                            .as_deref()
                            .and_then(|id| colleagues.name(id))
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "Expert".to_owned()),
            ),
            Author::System => ("system", "Notice".to_owned()),
        };
        let attachments = message
            .attachments
            .iter()
            .map(|a| {
                let name = a.filename.as_deref().unwrap_or("unnamed file");
                match &a.mime_type {
                    Some(mime) => format!("{} {name} ({mime})", a.kind.as_str()),
                    None => format!("{} {name}", a.kind.as_str()),
                }
            })
            .collect();
        let mut hasher = DefaultHasher::new();
        (
            message.status.as_str(),
            message.status_at.micros(),
            &message.content,
            &message.error,
            &who,
        )
            .hash(&mut hasher);
        MessageRow {
            side,
            who,
            channel: message.channel.as_str(),
            status: message.status.as_str(),
            error: message.error,
            at: Stamp::of(message.created_at),
            content: message.content,
            attachments,
            rev: format!("{:016x}", hasher.finish()),
            id: message.id.to_string(),
        }
    }
}

/// Somebody a conversation can be transferred to.
pub(super) struct Target {
    pub id: String,
    pub label: String,
}

/// The buttons a conversation offers the user, by its state and their role.
pub(super) struct Controls {
    /// It waits in the queue: take it.
    pub claim: bool,
    /// It is theirs: write to the end user.
    pub reply: bool,
    /// Hand it to a colleague (its owner, or a supervisor).
    pub transfer: bool,
    /// Give it back to the assistant.
    pub release: bool,
    /// End it.
    pub close: bool,
    /// Who it can be transferred to.
    pub targets: Vec<Target>,
}

/// A conversation as its page shows it.
pub(super) struct ConversationView {
    pub id: String,
    pub title: String,
    pub contact: String,
    /// The end user's address on the channel (phone number, e-mail address, chat id, device).
    pub contact_address: Option<String>,
    pub channel: &'static str,
    /// Who answers, in words.
    pub state: String,
    /// A supervisor looking at a conversation that is not theirs: read-only, the observe stream,
    /// nothing marked read.
    pub observing: bool,
    /// The event stream the script listens to.
    pub stream: String,
    pub messages: Vec<MessageRow>,
    /// Whether older messages are not shown.
    pub truncated: bool,
    pub controls: Controls,
    /// Changes when the controls change: the script replaces them only then, keeping a draft.
    pub controls_key: String,
}

impl ConversationView {
    /// The view of a conversation the user may see (see [`crate::experts::Experts::open`]).
    pub(super) async fn load(
        state: &AppState,
        me: &User,
        conversation: Conversation,
        messages: Vec<Message>,
    ) -> Result<ConversationView, HtmlError> {
        let mut reader = state.store.reader();
        let colleagues = Colleagues::load(&mut reader).await?;
        let name = contacts::display_name(&mut reader, &conversation.contact_id).await?;
        let contact_address = contacts::external_id(&mut reader, &conversation.contact_id).await?;
        let contact = contact_label(name, conversation.channel);
        let supervisor = me.role.includes(StaffRole::Supervisor);
        let owner = conversation.expert_id.as_deref();
        let mine = owner == Some(me.id.as_str());
        let observing = supervisor && !mine;
        let in_expert_mode = conversation.mode == Mode::Expert;
        let controls = Controls {
            claim: in_expert_mode && owner.is_none(),
            reply: in_expert_mode && mine,
            transfer: in_expert_mode && owner.is_some() && (mine || supervisor),
            release: in_expert_mode && (mine || supervisor),
            close: conversation.mode != Mode::Closed && (mine || supervisor),
            targets: colleagues
                .enabled
                .iter()
                .filter(|u| Some(u.id.as_str()) != owner)
                .map(|u| Target {
                    id: u.id.to_string(),
                    label: format!(
                        "{} ({}, {})",
                        u.display_name,
                        u.role,
                        if u.available.0 { "available" } else { "away" }
                    ),
                })
                .collect(),
        };
        let controls_key = format!(
            "{}:{}:{}:{}",
            conversation.mode,
            owner.unwrap_or("-"),
            observing,
            controls.targets.len()
        );
        let truncated = messages.len() as i64 >= TRANSCRIPT_LIMIT
            && messages.first().is_some_and(|m| m.seq > 1);
        let last_seq = messages.last().map_or(0, |m| m.seq);
        // The conversation's own stream resumes after what is shown; the observe stream always
        // replays the history first (the script re-renders once for all of it).
        let stream = if observing {
            format!("/v1/supervisor/conversations/{}/observe", conversation.id)
        } else {
            format!(
                "/v1/expert/conversations/{}/events?last_event_id={last_seq}",
                conversation.id
            )
        };
        Ok(ConversationView {
            title: title_of(&conversation),
            channel: channel_label(conversation.channel),
            state: state_of(&conversation, me, &colleagues),
            observing,
            stream,
            messages: messages
                .into_iter()
                .map(|m| MessageRow::of(m, &contact, &colleagues))
                .collect(),
            truncated,
            contact,
            contact_address,
            controls,
            controls_key,
            id: conversation.id.to_string(),
        })
    }
}

/// A contact found by the supervisors' search.
pub(super) struct ContactRow {
    pub id: String,
    pub name: String,
    pub channel: String,
    pub address: String,
    pub username: Option<String>,
    pub since: Stamp,
}

impl From<contacts::Found> for ContactRow {
    fn from(found: contacts::Found) -> Self {
        ContactRow {
            name: found
                .display_name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| "(no name)".to_owned()),
            channel: found.channel,
            address: found.external_id,
            username: found.username,
            since: Stamp::of(found.created_at),
            id: found.id.to_string(),
        }
    }
}

/// A conversation in a contact's list.
pub(super) struct ContactConversationRow {
    pub id: String,
    pub title: String,
    pub channel: &'static str,
    pub state: String,
    pub updated: Stamp,
}

impl ContactConversationRow {
    /// The rows of a page of a contact's conversations.
    pub(super) async fn load(
        state: &AppState,
        me: &User,
        found: Vec<Conversation>,
    ) -> Result<Vec<ContactConversationRow>, HtmlError> {
        let colleagues = Colleagues::load(&mut state.store.reader()).await?;
        Ok(found
            .into_iter()
            .map(|c| ContactConversationRow {
                title: title_of(&c),
                channel: channel_label(c.channel),
                state: state_of(&c, me, &colleagues),
                updated: Stamp::of(c.updated_at),
                id: c.id.to_string(),
            })
            .collect())
    }
}
