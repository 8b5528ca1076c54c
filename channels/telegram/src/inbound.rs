//! Turning Telegram updates into normalized [`InboundEvent`]s.
//!
//! Telegram delivers one [`Update`] per webhook POST, or a batch of them per `getUpdates` answer
//! when the gateway polls, and retries a webhook until it gets a `2xx`. Two rules follow:
//!
//! - [`parse`] refuses a body ([`ParseError`], answered `400`) only when it is not an update at
//!   all: not JSON, or no `update_id`. Anything else — an update kind the gateway has no use for, a
//!   group message meant for someone else, a service message — is accepted with no events and
//!   [`ParsedUpdate::ignored`] saying why, because refusing it would only make Telegram retry a body
//!   that can never succeed.
//! - [`parse_update`], which long polling calls on updates teloxide already decoded, never fails.
//!
//! # Who the contact is
//!
//! The contact of an event is the *chat*, not the person who wrote. In a private chat they are the
//! same (a private chat's id is the user's id); in a group the bot answers the group, so the group
//! is the other side of the conversation. Who wrote is kept in the message's metadata (`from`).
//!
//! # The group rule
//!
//! In a group or supergroup the bot may see every message (privacy mode off, or the bot is an
//! administrator), and most are people talking to each other. A group message counts only when it
//! is addressed to the bot:
//!
//! 1. its text or caption mentions the bot: a `mention` entity `@<bot username>` (in any case), or a
//!    `text_mention` of the bot's user id (a mention of a user without a username);
//! 2. it is a command (a `bot_command` entity at the start of the text) without an `@` suffix, or
//!    with `@<bot username>`;
//! 3. it replies to a message the bot wrote.
//!
//! Anything else yields no event, with `ignored = "group message not addressed to the bot"`; so does
//! a command for another bot (`/start@other_bot`). Until the bot's username and user id are known
//! ([`BotIdentity`], from `getMe`), only commands without a suffix count. Edits follow the same rule.
//! Channels are never conversations: their posts and membership changes are ignored.
//!
//! # Ids
//!
//! Telegram message ids are unique only within a chat, so a message's provider id is
//! `"{chat_id}:{message_id}"` ([`provider_message_id`]); the outbound half uses the same format for
//! the messages it sends, which replies and button presses refer to. A button press is not a
//! message and has no id of its own: its provider id is `"callback:{callback query id}"`.

mod addressing;
mod content;
mod secret;
#[cfg(test)]
mod tests;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchboard_channel::{
    ContactRef, Content, ConversationRef, InboundEdit, InboundEvent, InboundMessage, Intent,
    InteractiveReply, ParseError, Reachability,
};
use teloxide::types::{
    CallbackQuery, Chat, ChatKind, ChatMemberKind, ChatMemberUpdated, InlineKeyboardButtonKind,
    Message, PublicChatKind, Update, UpdateKind, User,
};

pub use secret::{SECRET_HEADER, SecretError, verify_secret};

use crate::BotIdentity;

/// Why a group message yields nothing; see the module documentation.
const NOT_ADDRESSED: &str = "group message not addressed to the bot";

/// Why anything happening in a channel yields nothing.
const CHANNEL_CHAT: &str = "channel chats are not handled";

/// What a body that is not a Telegram update is refused as (`400`): the message reads
/// `not a Telegram update: missing update_id`.
const NOT_AN_UPDATE: &str = "not a Telegram update";

/// The refusal of a body that is not an update.
fn not_an_update(reason: impl Into<String>) -> ParseError {
    ParseError::new(NOT_AN_UPDATE, reason)
}

/// One update, normalized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedUpdate {
    /// The update's id. Telegram numbers a bot's updates sequentially: the gateway uses it to drop
    /// repeated deliveries, and long polling to ask for the next ones.
    pub update_id: u32,
    /// What the update tells, normalized: at most one event for the kinds handled today.
    pub events: Vec<InboundEvent>,
    /// The id of an inline-button press. Telegram shows a spinner on the button until the bot
    /// answers it (`answerCallbackQuery`), so it is set for every press, even one that yields no
    /// event.
    pub callback_query_id: Option<String>,
    /// Why the update yields no events (`"update kind not handled: poll"`, the group rule…);
    /// `None` when it yields some.
    pub ignored: Option<&'static str>,
}

/// Parses one webhook body: a single [`Update`] as JSON.
///
/// Fails only when the body is not JSON or not an update (no `update_id`); everything Telegram may
/// send is accepted, if need be with no events and [`ParsedUpdate::ignored`] set. Call it only after
/// [`verify_secret`] accepted the request.
pub fn parse(body: &[u8], bot: &BotIdentity) -> Result<ParsedUpdate, ParseError> {
    Ok(parse_update(decode(body)?, bot))
}

/// Reads one webhook body as an [`Update`], without normalizing it (see [`parse`], which does
/// both): the webhook hands the update to the same delivery as long polling.
pub fn decode(body: &[u8]) -> Result<Update, ParseError> {
    let raw: Value = serde_json::from_slice(body)
        .map_err(|err| not_an_update(format!("invalid JSON: {err}")))?;
    let Value::Object(fields) = &raw else {
        return Err(not_an_update("the body is not a JSON object"));
    };
    if !fields.contains_key("update_id") {
        return Err(not_an_update("missing update_id"));
    }
    let mut update = Update::deserialize(&raw).map_err(|err| not_an_update(err.to_string()))?;
    // teloxide reads an update it cannot decode (a kind newer than it, a malformed message) as
    // `Error` with an empty value, and fills in the raw update when it fetches updates itself. Do
    // the same, so that `parse_update` can name what was skipped.
    if let UpdateKind::Error(value) = &mut update.kind {
        *value = raw;
    }
    Ok(update)
}

/// Normalizes one update, from a webhook ([`parse`]) or from long polling. Never fails: what the
/// gateway cannot use yields no events and [`ParsedUpdate::ignored`] says why.
pub fn parse_update(update: Update, bot: &BotIdentity) -> ParsedUpdate {
    let update_id = update.id.0;
    let mut callback_query_id = None;
    let outcome = match update.kind {
        UpdateKind::Message(message) => new_message(&message, bot).map(InboundEvent::Message),
        UpdateKind::EditedMessage(message) => edit(&message, bot).map(InboundEvent::Edit),
        UpdateKind::CallbackQuery(query) => {
            callback_query_id = Some(query.id.0.clone());
            button_press(&query, bot).map(InboundEvent::Message)
        }
        UpdateKind::MyChatMember(member) => {
            reachability(&member, bot).map(InboundEvent::Reachability)
        }
        UpdateKind::Error(raw) => Err(undecoded(&raw)),
        other => Err(not_handled(kind_name(&other))),
    };
    let (events, ignored) = match outcome {
        Ok(event) => (vec![event], None),
        Err(reason) => {
            tracing::debug!(update_id, reason, "Telegram update yields no event");
            (Vec::new(), Some(reason))
        }
    };
    ParsedUpdate {
        update_id,
        events,
        callback_query_id,
        ignored,
    }
}

/// The provider id of a Telegram message: `"{chat_id}:{message_id}"`, because message ids are only
/// unique within a chat. The outbound half uses the same format for the messages it sends.
pub fn provider_message_id(chat_id: i64, message_id: i32) -> String {
    format!("{chat_id}:{message_id}")
}

// ---------------------------------------------------------------------------------------------
// Messages and edits.
// ---------------------------------------------------------------------------------------------

/// What messages and edits have in common once read.
struct ReadMessage {
    contact: ContactRef,
    content: Content,
    intent: Option<Intent>,
    metadata: Map<String, Value>,
}

fn new_message(message: &Message, bot: &BotIdentity) -> Result<InboundMessage, &'static str> {
    let read = read_message(message, bot)?;
    let chat_id = message.chat.id.0;
    Ok(InboundMessage {
        provider_message_id: Some(provider_message_id(chat_id, message.id.0)),
        sender_key: None,
        account: bot.name.clone(),
        from: read.contact,
        conversation: ConversationRef::Current,
        sent_at: Some(message.date),
        reply_to: replied(message).map(|replied| provider_message_id(chat_id, replied.id.0)),
        subject: None,
        content: read.content,
        intent: read.intent,
        metadata: read.metadata,
        files: Vec::new(),
    })
}

fn edit(message: &Message, bot: &BotIdentity) -> Result<InboundEdit, &'static str> {
    // A live location moves by editing its message, every few seconds for up to hours: those are
    // position updates, not a user correcting what they wrote.
    if message
        .location()
        .is_some_and(|location| location.live_period.is_some())
    {
        return Err("live location update");
    }
    let read = read_message(message, bot)?;
    Ok(InboundEdit {
        provider_message_id: provider_message_id(message.chat.id.0, message.id.0),
        from: read.contact,
        content: read.content,
        edited_at: message.edit_date().copied(),
    })
}

/// Reads a message or an edited one: fails with the reason to ignore it for channel and service
/// messages and for group messages not addressed to the bot.
fn read_message(message: &Message, bot: &BotIdentity) -> Result<ReadMessage, &'static str> {
    let chat_type = chat_type(&message.chat).ok_or(CHANNEL_CHAT)?;
    let mut metadata = Map::new();
    let content = content::content(message, &mut metadata)?;
    let command = addressing::command(message, bot);
    if chat_type != "private" && !addressing::addressed_to_bot(message, command.as_ref(), bot) {
        return Err(NOT_ADDRESSED);
    }

    metadata.insert("chat_type".into(), json!(chat_type));
    if let Some(from) = &message.from {
        metadata.insert("from".into(), user_metadata(from));
    }
    if message.forward_origin().is_some() {
        metadata.insert("forwarded".into(), Value::Bool(true));
    }
    if let Some(group) = message.media_group_id() {
        // The photos of an album arrive as separate messages sharing this id.
        metadata.insert("media_group_id".into(), json!(group.0));
    }
    if message.is_topic_message
        && let Some(thread) = message.thread_id
    {
        // Forum supergroups: an answer belongs in the same topic.
        metadata.insert("message_thread_id".into(), json!(thread.0.0));
    }
    let mut intent = None;
    if let Some(command) = command.filter(|command| command.for_us) {
        intent = match command.name.as_str() {
            "start" => Some(Intent::Start),
            "human" => Some(Intent::Handoff),
            _ => None,
        };
        metadata.insert("command".into(), json!(command.name));
        if let Some(args) = command.args {
            metadata.insert("command_args".into(), json!(args));
        }
    }
    Ok(ReadMessage {
        contact: chat_contact(&message.chat),
        content,
        intent,
        metadata,
    })
}

/// The message this one replies to, if it really is a reply: in a forum topic Telegram fills
/// `reply_to_message` with the topic's opening service message on every message of the topic.
fn replied(message: &Message) -> Option<&Message> {
    message
        .reply_to_message()
        .filter(|replied| !(message.is_topic_message && replied.forum_topic_created().is_some()))
}

/// `private`, `group` or `supergroup`; `None` for a channel.
fn chat_type(chat: &Chat) -> Option<&'static str> {
    match &chat.kind {
        ChatKind::Private(_) => Some("private"),
        ChatKind::Public(public) => match public.kind {
            PublicChatKind::Group => Some("group"),
            PublicChatKind::Supergroup(_) => Some("supergroup"),
            PublicChatKind::Channel(_) => None,
        },
    }
}

/// The chat as the contact: a person's name for a private chat, the title for a group.
fn chat_contact(chat: &Chat) -> ContactRef {
    let (display_name, username) = match &chat.kind {
        ChatKind::Private(private) => (
            person_name(private.first_name.as_deref(), private.last_name.as_deref())
                .or_else(|| non_empty(private.username.as_deref())),
            non_empty(private.username.as_deref()),
        ),
        ChatKind::Public(public) => (non_empty(public.title.as_deref()), None),
    };
    ContactRef {
        external_id: chat.id.0.to_string(),
        display_name,
        username,
    }
}

/// A user's private chat with the bot as the contact: its id is the user's id.
fn user_contact(user: &User) -> ContactRef {
    ContactRef {
        external_id: user.id.0.to_string(),
        display_name: person_name(Some(&user.first_name), user.last_name.as_deref())
            .or_else(|| non_empty(user.username.as_deref())),
        username: non_empty(user.username.as_deref()),
    }
}

/// Who wrote, for the metadata: in a group the contact is the group, so this is the only trace of
/// the person.
fn user_metadata(user: &User) -> Value {
    let mut from = Map::new();
    from.insert("id".into(), json!(user.id.0));
    if let Some(username) = &user.username {
        from.insert("username".into(), json!(username));
    }
    from.insert("first_name".into(), json!(user.first_name));
    if let Some(last_name) = &user.last_name {
        from.insert("last_name".into(), json!(last_name));
    }
    if let Some(language) = &user.language_code {
        from.insert("language_code".into(), json!(language));
    }
    Value::Object(from)
}

/// First and last name joined by a space, skipping empty parts; `None` when both are empty.
fn person_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn non_empty(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Button presses and membership.
// ---------------------------------------------------------------------------------------------

/// A press on an inline keyboard button, as a message answering the message carrying the keyboard.
fn button_press(query: &CallbackQuery, bot: &BotIdentity) -> Result<InboundMessage, &'static str> {
    let data = query.data.clone().unwrap_or_default();
    let mut metadata = Map::new();
    let (contact, chat_type, reply_to, title) = match &query.message {
        Some(carrier) => {
            let chat = carrier.chat();
            let chat_type = chat_type(chat).ok_or(CHANNEL_CHAT)?;
            // An inaccessible message (too old) still names its chat, but not its keyboard.
            let title = carrier
                .regular_message()
                .and_then(|message| button_title(message, &data));
            let reply_to = provider_message_id(chat.id.0, carrier.id().0);
            (chat_contact(chat), chat_type, Some(reply_to), title)
        }
        // A button under a message sent in inline mode: no chat is known, only who pressed it,
        // and their private chat with the bot is where an answer can go.
        None => (user_contact(&query.from), "private", None, None),
    };
    metadata.insert("telegram_type".into(), json!("callback_query"));
    metadata.insert("chat_type".into(), json!(chat_type));
    metadata.insert("from".into(), user_metadata(&query.from));
    if let Some(inline_message_id) = &query.inline_message_id {
        metadata.insert("inline_message_id".into(), json!(inline_message_id));
    }
    Ok(InboundMessage {
        provider_message_id: Some(format!("callback:{}", query.id.0)),
        sender_key: None,
        account: bot.name.clone(),
        from: contact,
        conversation: ConversationRef::Current,
        // A callback query carries no date; the gateway stamps it on arrival.
        sent_at: None,
        reply_to,
        subject: None,
        content: Content::Interactive(InteractiveReply {
            title: title.unwrap_or_else(|| data.clone()),
            id: data,
            description: None,
        }),
        intent: None,
        metadata,
        files: Vec::new(),
    })
}

/// The text of the button whose callback data is `data`, in the message's inline keyboard.
fn button_title(message: &Message, data: &str) -> Option<String> {
    message
        .reply_markup()?
        .inline_keyboard
        .iter()
        .flatten()
        .find_map(|button| match &button.kind {
            InlineKeyboardButtonKind::CallbackData(callback) if callback == data => {
                Some(button.text.clone())
            }
            _ => None,
        })
}

/// The bot's own membership changed: in a private chat the user blocked (`kicked`) or unblocked
/// (`member`) it; in a group it was removed or added.
fn reachability(
    update: &ChatMemberUpdated,
    bot: &BotIdentity,
) -> Result<Reachability, &'static str> {
    chat_type(&update.chat).ok_or(CHANNEL_CHAT)?;
    // `my_chat_member` is about the bot by definition; a mismatch means a misconfigured identity,
    // and reporting someone else's status as ours would silence a conversation.
    if let Some(bot_id) = bot.user_id
        && update.new_chat_member.user.id.0 != bot_id
    {
        return Err("chat member update about another user");
    }
    let (reason, reachable) = match &update.new_chat_member.kind {
        ChatMemberKind::Owner(_) => ("creator", true),
        ChatMemberKind::Administrator(_) => ("administrator", true),
        ChatMemberKind::Member(_) => ("member", true),
        // A restricted member may still be in the chat; one that is not cannot be reached.
        ChatMemberKind::Restricted(restricted) => ("restricted", restricted.is_member),
        ChatMemberKind::Left => ("left", false),
        ChatMemberKind::Banned(_) => ("kicked", false),
    };
    Ok(Reachability {
        contact: chat_contact(&update.chat),
        reachable,
        reason: reason.to_owned(),
        at: Some(update.date),
    })
}

// ---------------------------------------------------------------------------------------------
// Update kinds without events.
// ---------------------------------------------------------------------------------------------

/// Lists the Bot API's update kinds with the reasons given when one is skipped: as `ignored` must
/// be `&'static str`, the reasons are spelled out at compile time.
macro_rules! update_kinds {
    ($($name:literal),+ $(,)?) => {
        /// Every update kind of the Bot API: its name, why it yields nothing when it is not one the
        /// gateway handles, and why when teloxide could not decode it.
        const UPDATE_KINDS: &[(&str, &str, &str)] = &[$((
            $name,
            concat!("update kind not handled: ", $name),
            concat!("update not readable: ", $name),
        )),+];
    };
}

update_kinds!(
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
);

/// Why an update of a kind the Bot API added after teloxide 0.17 yields nothing.
const UNKNOWN_KIND: &str = "update kind not handled: unknown";

/// The Bot API name of an update kind.
fn kind_name(kind: &UpdateKind) -> &'static str {
    match kind {
        UpdateKind::Message(_) => "message",
        UpdateKind::EditedMessage(_) => "edited_message",
        UpdateKind::ChannelPost(_) => "channel_post",
        UpdateKind::EditedChannelPost(_) => "edited_channel_post",
        UpdateKind::BusinessConnection(_) => "business_connection",
        UpdateKind::BusinessMessage(_) => "business_message",
        UpdateKind::EditedBusinessMessage(_) => "edited_business_message",
        UpdateKind::DeletedBusinessMessages(_) => "deleted_business_messages",
        UpdateKind::MessageReaction(_) => "message_reaction",
        UpdateKind::MessageReactionCount(_) => "message_reaction_count",
        UpdateKind::InlineQuery(_) => "inline_query",
        UpdateKind::ChosenInlineResult(_) => "chosen_inline_result",
        UpdateKind::CallbackQuery(_) => "callback_query",
        UpdateKind::ShippingQuery(_) => "shipping_query",
        UpdateKind::PreCheckoutQuery(_) => "pre_checkout_query",
        UpdateKind::PurchasedPaidMedia(_) => "purchased_paid_media",
        UpdateKind::Poll(_) => "poll",
        UpdateKind::PollAnswer(_) => "poll_answer",
        UpdateKind::MyChatMember(_) => "my_chat_member",
        UpdateKind::ChatMember(_) => "chat_member",
        UpdateKind::ChatJoinRequest(_) => "chat_join_request",
        UpdateKind::ChatBoost(_) => "chat_boost",
        UpdateKind::RemovedChatBoost(_) => "removed_chat_boost",
        UpdateKind::Error(_) => "unknown",
    }
}

fn not_handled(name: &str) -> &'static str {
    UPDATE_KINDS
        .iter()
        .find(|(kind, ..)| *kind == name)
        .map_or(UNKNOWN_KIND, |(_, reason, _)| reason)
}

/// Why an update teloxide could not decode yields nothing. `raw` is the update as received (or
/// empty, when whoever decoded it did not keep it): a kind teloxide knows failed to decode (a
/// malformed or newer shape); any other kind is newer than teloxide.
fn undecoded(raw: &Value) -> &'static str {
    let name = raw
        .as_object()
        .and_then(|fields| fields.keys().find(|key| *key != "update_id"))
        .map(String::as_str);
    match name.and_then(|name| UPDATE_KINDS.iter().find(|(kind, ..)| *kind == name)) {
        Some((name, _, unreadable)) => {
            tracing::warn!(kind = name, "Telegram update teloxide cannot decode");
            unreadable
        }
        None => {
            tracing::debug!(kind = name, "Telegram update of an unknown kind");
            UNKNOWN_KIND
        }
    }
}
