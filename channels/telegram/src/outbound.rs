//! The Bot API client of each configured bot: sending, typing, polling, webhooks, downloads.
//!
//! [`TelegramBots`] holds one [`TelegramBot`] per configured bot and is the channel's [`Sender`]
//! and [`MediaFetcher`]; the account of a message picks the bot. The crate's poller and webhook
//! set-up use the per-bot methods ([`TelegramBot::get_updates`], [`TelegramBot::set_webhook`]…).
//!
//! Three things shape this module beyond translating calls:
//!
//! - **Throttling.** Telegram bans bots that exceed about one message per second in a chat, twenty
//!   a minute in a group and thirty a second overall. Sends go through teloxide's [`Throttle`]
//!   adaptor with its default [`Limits`] (1 a second and 20 a minute per chat, 10 a minute in
//!   supergroups and channels, 30 a second overall), which queues them within those limits
//!   (keeping their order per chat) and, after a flood error, holds back all of the bot's sends
//!   until the wait is over. Its own retry is turned
//!   off: the gateway retries failed sends from its job queue, which survives restarts, and must
//!   hear about the flood wait to schedule that.
//! - **One attempt, classified.** A [`Sender`] must not retry on its own; every failure is turned
//!   into a [`SendError`] by [`classify::classify`], logged here (a refused token loudly, since
//!   every message of the bot fails until an operator acts), with the bot token removed from
//!   anything that is stored or logged.
//! - **Timeouts.** API calls share one HTTP client whose timeout exceeds the longest long poll
//!   (`MAX_POLL_TIMEOUT`; longer polls are shortened). Downloads use a client of their own without
//!   a total timeout — a large video on a slow link may take longer than any API call should — but
//!   with a limit on how long the server may stay silent, so a stalled download fails instead of
//!   holding a job forever.

mod classify;
mod media;

#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use switchboard_channel::{
    Choice, MediaDownload, MediaFetcher, MediaKind, OutboundContent, OutboundMessage, SendError,
    Sender, Sent, TypingTarget, text::Measure,
};
use teloxide::{
    Bot, RequestError,
    adaptors::{
        Throttle,
        throttle::{Limits, Settings as ThrottleSettings},
    },
    payloads::setters::*,
    requests::Requester,
    types::{
        AllowedUpdate, CallbackQueryId, ChatAction, ChatId, InlineKeyboardButton,
        InlineKeyboardMarkup, InputFile, Message, MessageId, ReplyParameters, Update,
    },
};

use crate::{BotIdentity, BotSettings, provider_message_id};

/// The longest text of one message, in UTF-16 code units (how Telegram counts).
const TEXT_LIMIT: usize = 4096;

/// The longest caption of a file, in UTF-16 code units.
const CAPTION_LIMIT: usize = 1024;

/// The most bytes of `callback_data` an inline button may carry.
const CALLBACK_DATA_LIMIT: usize = 64;

/// The longest long poll asked of Telegram; longer requests are shortened to it. Telegram itself
/// answers a long poll after about 50 seconds whatever was asked.
const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(50);

/// The most updates one `getUpdates` call may return.
const MAX_UPDATES: u8 = 100;

/// How long any API call may take, from connecting to the end of the answer. It must exceed the
/// longest long poll, or polls would time out on quiet bots; it also leaves Telegram time to fetch
/// the file behind a media URL before it answers a send.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(65);

/// How long connecting to the Bot API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a download may go without receiving data (before the answer's headers, or between two
/// chunks of the body).
const DOWNLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

const _: () = assert!(
    REQUEST_TIMEOUT.as_secs() >= MAX_POLL_TIMEOUT.as_secs() + 10,
    "the HTTP timeout must leave a long poll time to answer"
);

/// The updates the gateway handles; Telegram sends no others, which saves both sides the traffic.
/// `my_chat_member` tells when a user blocks or unblocks the bot in a private chat.
const ALLOWED_UPDATES: [AllowedUpdate; 4] = [
    AllowedUpdate::Message,
    AllowedUpdate::EditedMessage,
    AllowedUpdate::CallbackQuery,
    AllowedUpdate::MyChatMember,
];

/// One bot's Bot API client.
///
/// Cheap to share: the poller, the webhook and the sender hold it through an [`Arc`].
pub struct TelegramBot {
    name: String,
    /// API calls, throttled to Telegram's limits (only sends are throttled; teloxide passes other
    /// calls straight through).
    api: Throttle<Bot>,
    /// The same bot on the download client: see the module documentation.
    downloader: Bot,
}

// By hand: teloxide's `Bot` prints its token in `Debug`.
impl fmt::Debug for TelegramBot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramBot")
            .field("name", &self.name)
            .field("api_url", &self.downloader.api_url().as_str())
            .finish_non_exhaustive()
    }
}

/// The HTTP clients every bot shares.
struct Clients {
    api: reqwest::Client,
    download: reqwest::Client,
}

impl Clients {
    fn new() -> Result<Clients, SendError> {
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .build()
                .map_err(|err| {
                    SendError::permanent(
                        "http_client",
                        format!(
                            "cannot set up the HTTP client: {}",
                            switchboard_channel::error_chain(&err)
                        ),
                    )
                })
        };
        Ok(Clients {
            api: build(reqwest::Client::builder().timeout(REQUEST_TIMEOUT))?,
            download: build(reqwest::Client::builder().read_timeout(DOWNLOAD_IDLE_TIMEOUT))?,
        })
    }
}

impl TelegramBot {
    /// The client of one bot. Spawns the throttling worker, so it needs a Tokio runtime (checked
    /// by [`TelegramBots::new`]).
    fn new(settings: BotSettings, clients: &Clients) -> Result<TelegramBot, SendError> {
        let api_url = api_url(&settings)?;
        let bot = Bot::with_client(settings.token.trim(), clients.api.clone())
            .set_api_url(api_url.clone());
        let downloader =
            Bot::with_client(settings.token.trim(), clients.download.clone()).set_api_url(api_url);
        // teloxide's default limits; no retry of its own (see the module documentation).
        let throttle = ThrottleSettings::default()
            .limits(Limits::default())
            .no_retry();
        Ok(TelegramBot {
            name: settings.name,
            api: Throttle::spawn_with_settings(bot, throttle),
            downloader,
        })
    }

    /// The gateway's name for the bot.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks Telegram who the bot is (`getMe`): its username and user id, which reading group
    /// chats needs.
    pub async fn get_me(&self) -> Result<BotIdentity, SendError> {
        let me = self
            .api
            .get_me()
            .await
            .map_err(|err| self.failure("getMe", &err, None))?;
        Ok(BotIdentity {
            name: self.name.clone(),
            username: me.user.username.clone(),
            user_id: Some(me.user.id.0),
        })
    }

    /// Long-polls for updates (`getUpdates`) from `offset` (the last update id seen plus one,
    /// which also confirms everything before it), waiting up to `timeout` (at most 50 seconds,
    /// which keeps the call within the HTTP timeout) for at most `limit` updates (1 to 100).
    ///
    /// Only the kinds of update the gateway handles are asked for. An update teloxide cannot read
    /// (a kind newer than it, say) comes back as [`teloxide::types::UpdateKind::Error`] with its id,
    /// rather than failing the whole batch, so the offset can still move past it.
    ///
    /// Telegram refuses this while a webhook is set: call [`TelegramBot::delete_webhook`] first.
    pub async fn get_updates(
        &self,
        offset: i32,
        timeout: Duration,
        limit: u8,
    ) -> Result<Vec<Update>, SendError> {
        let timeout = timeout.min(MAX_POLL_TIMEOUT);
        let seconds = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX);
        self.api
            .get_updates()
            .offset(offset)
            .timeout(seconds)
            .limit(limit.clamp(1, MAX_UPDATES))
            .allowed_updates(ALLOWED_UPDATES)
            .await
            .map_err(|err| self.failure("getUpdates", &err, None))
    }

    /// Registers the bot's webhook (`setWebhook`): Telegram posts updates to `url` with `secret`
    /// in the `X-Telegram-Bot-Api-Secret-Token` header. Updates waiting for delivery are kept.
    pub async fn set_webhook(&self, url: &str, secret: &str) -> Result<(), SendError> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|url| url.scheme() == "https" || url.scheme() == "http")
            .ok_or_else(|| {
                SendError::permanent(
                    "invalid_webhook_url",
                    format!("{url:?} is not an http(s) URL"),
                )
            })?;
        check_webhook_secret(secret)?;
        self.api
            .set_webhook(url)
            .secret_token(secret)
            .allowed_updates(ALLOWED_UPDATES)
            .drop_pending_updates(false)
            .await
            .map_err(|err| self.failure("setWebhook", &err, None))?;
        Ok(())
    }

    /// Removes the bot's webhook (`deleteWebhook`), which long polling needs. Updates waiting for
    /// delivery are kept, so polling picks them up.
    pub async fn delete_webhook(&self) -> Result<(), SendError> {
        self.api
            .delete_webhook()
            .drop_pending_updates(false)
            .await
            .map_err(|err| self.failure("deleteWebhook", &err, None))?;
        Ok(())
    }

    /// Answers an inline-button press (`answerCallbackQuery`), so the user's app stops showing a
    /// progress indicator on the button.
    pub async fn answer_callback(&self, callback_query_id: &str) -> Result<(), SendError> {
        self.api
            .answer_callback_query(CallbackQueryId(callback_query_id.to_owned()))
            .await
            .map_err(|err| self.failure("answerCallbackQuery", &err, None))?;
        Ok(())
    }

    /// Sends one message to the chat `message.to`.
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        let chat = chat_id(&message.to)?;
        let reply = reply_parameters(message.reply_to.as_deref(), chat);
        let (method, result) = match &message.content {
            OutboundContent::Text { body } => {
                let mut request = self.api.send_message(chat, body);
                if let Some(reply) = reply {
                    request = request.reply_parameters(reply);
                }
                ("sendMessage", request.await)
            }
            OutboundContent::Choices { body, choices } => {
                let mut request = self.api.send_message(chat, body);
                if let Some(keyboard) = keyboard(choices)? {
                    request = request.reply_markup(keyboard);
                }
                if let Some(reply) = reply {
                    request = request.reply_parameters(reply);
                }
                ("sendMessage", request.await)
            }
            OutboundContent::Media {
                attachment,
                caption,
            } => {
                let file = InputFile::url(media_url(&attachment.source)?);
                // Stickers have no caption: it is dropped rather than failing the message.
                let caption = caption
                    .as_deref()
                    .filter(|caption| {
                        !caption.trim().is_empty() && attachment.kind != MediaKind::Sticker
                    })
                    .map(check_caption)
                    .transpose()?;
                // Every kind but stickers takes a caption and a reply the same way.
                macro_rules! send_file {
                    ($method:ident, $name:literal) => {{
                        let mut request = self.api.$method(chat, file);
                        if let Some(caption) = caption {
                            request = request.caption(caption);
                        }
                        if let Some(reply) = reply {
                            request = request.reply_parameters(reply);
                        }
                        ($name, request.await)
                    }};
                }
                match attachment.kind {
                    MediaKind::Image => send_file!(send_photo, "sendPhoto"),
                    MediaKind::Voice => send_file!(send_voice, "sendVoice"),
                    MediaKind::Audio => send_file!(send_audio, "sendAudio"),
                    MediaKind::Video => send_file!(send_video, "sendVideo"),
                    MediaKind::Document => send_file!(send_document, "sendDocument"),
                    MediaKind::Sticker => {
                        let mut request = self.api.send_sticker(chat, file);
                        if let Some(reply) = reply {
                            request = request.reply_parameters(reply);
                        }
                        ("sendSticker", request.await)
                    }
                }
            }
            OutboundContent::Template { .. } => {
                return Err(SendError::permanent(
                    "unsupported",
                    "Telegram has no message templates",
                ));
            }
        };
        self.delivered(method, result, chat)
    }

    /// Reads the outcome of a send.
    fn delivered(
        &self,
        method: &str,
        result: Result<Message, RequestError>,
        chat: ChatId,
    ) -> Result<Sent, SendError> {
        let (chat, message) = match result {
            Ok(sent) => (sent.chat.id.0, sent.id.0),
            Err(err) => match sent_despite(&err) {
                // Telegram delivered the message and only its echo could not be read: reporting a
                // failure would make the gateway send it again.
                Some(ids) => {
                    tracing::warn!(
                        bot = %self.name,
                        method,
                        error = %err,
                        "Telegram accepted the message but teloxide could not read the answer; using its ids"
                    );
                    ids
                }
                None => return Err(self.failure(method, &err, Some(chat))),
            },
        };
        Ok(Sent {
            provider_message_id: provider_message_id(chat, message),
            substituted: None,
        })
    }

    /// Shows "typing…" in a chat (`sendChatAction`) for about five seconds.
    async fn typing(&self, chat: ChatId) -> Result<(), SendError> {
        self.api
            .send_chat_action(chat, ChatAction::Typing)
            .await
            .map_err(|err| self.failure("sendChatAction", &err, Some(chat)))?;
        Ok(())
    }

    /// Classifies a failed call of `method` and logs it, without the token.
    fn failure(&self, method: &str, error: &RequestError, chat: Option<ChatId>) -> SendError {
        let classified = self.redacted(classify::classify(error, chat));
        let chat = chat.map(|chat| chat.0);
        match &classified {
            error if classify::is_invalid_token(error) => tracing::error!(
                bot = %self.name,
                method,
                "Telegram refused the token of bot {:?}: every call of this bot fails until its token is replaced (check it with @BotFather)",
                self.name
            ),
            SendError::Unreachable { reason } => {
                tracing::info!(bot = %self.name, method, chat, %reason, "the Telegram chat cannot be reached");
            }
            SendError::Transient {
                retry_after,
                reason,
            } => {
                tracing::warn!(bot = %self.name, method, chat, ?retry_after, %reason, "a Bot API call failed; it may succeed later");
            }
            SendError::Permanent { code, reason } => {
                tracing::warn!(bot = %self.name, method, chat, %code, %reason, "the Bot API refused a call");
            }
        }
        classified
    }

    /// The error with the bot token removed from its texts. teloxide masks tokens of the usual
    /// shape in URLs, but not others, and a reason ends up stored with the message.
    fn redacted(&self, error: SendError) -> SendError {
        let token = self.downloader.token();
        if token.is_empty() {
            return error;
        }
        let clean = |text: String| text.replace(token, "<token>");
        match error {
            SendError::Transient {
                retry_after,
                reason,
            } => SendError::Transient {
                retry_after,
                reason: clean(reason),
            },
            SendError::Permanent { code, reason } => SendError::Permanent {
                code,
                reason: clean(reason),
            },
            SendError::Unreachable { reason } => SendError::Unreachable {
                reason: clean(reason),
            },
        }
    }
}

/// The configured bots, by name: the Telegram channel's [`Sender`] and [`MediaFetcher`].
pub struct TelegramBots {
    bots: BTreeMap<String, Arc<TelegramBot>>,
}

impl fmt::Debug for TelegramBots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.bots.values()).finish()
    }
}

impl TelegramBots {
    /// Clients for the bots in `settings`, throttled to Telegram's limits.
    ///
    /// Fails with [`SendError::Permanent`] on an unusable setting: a name used twice or empty
    /// (`invalid_bot_name`), an empty token (`missing_token`), a Bot API URL that is not an
    /// http(s) URL (`invalid_api_url`). Must be called inside a Tokio runtime, since each bot's
    /// throttle runs as a task (`no_runtime` otherwise).
    pub fn new(settings: Vec<BotSettings>) -> Result<Self, SendError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SendError::permanent(
                "no_runtime",
                "the Telegram bots must be set up inside a Tokio runtime",
            ));
        }
        let clients = Clients::new()?;
        let mut bots = BTreeMap::new();
        for bot in settings {
            if bot.name.trim().is_empty() || bots.contains_key(&bot.name) {
                return Err(SendError::permanent(
                    "invalid_bot_name",
                    format!(
                        "Telegram bot names must be unique and not empty: {:?}",
                        bot.name
                    ),
                ));
            }
            if bot.token.trim().is_empty() {
                return Err(SendError::permanent(
                    "missing_token",
                    format!("Telegram bot {:?} has no token", bot.name),
                ));
            }
            let name = bot.name.clone();
            bots.insert(name, Arc::new(TelegramBot::new(bot, &clients)?));
        }
        Ok(TelegramBots { bots })
    }

    /// The bot called `name`.
    pub fn bot(&self, name: &str) -> Option<&Arc<TelegramBot>> {
        self.bots.get(name)
    }

    /// The names of the bots, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.bots.keys().map(String::as_str)
    }

    /// The bot an outbound message or download goes through.
    fn account(&self, account: &str) -> Result<&TelegramBot, SendError> {
        self.bots.get(account).map(Arc::as_ref).ok_or_else(|| {
            SendError::permanent(
                "unknown_bot",
                format!("no Telegram bot called {account:?} is configured"),
            )
        })
    }
}

#[async_trait]
impl Sender for TelegramBots {
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        self.account(&message.account)?.send(message).await
    }

    fn text_limit(&self) -> Option<(usize, Measure)> {
        Some((TEXT_LIMIT, Measure::Utf16))
    }

    async fn typing(&self, target: &TypingTarget) -> Result<(), SendError> {
        let bot = self.account(&target.account)?;
        bot.typing(chat_id(&target.to)?).await
    }

    fn service_window(&self) -> Option<Duration> {
        None
    }
}

#[async_trait]
impl MediaFetcher for TelegramBots {
    /// Downloads the file with the id `source` (a `file_id`) received by the bot `account`.
    async fn fetch(&self, account: &str, source: &str) -> Result<MediaDownload, SendError> {
        self.account(account)?.fetch(source).await
    }
}

/// The Bot API URL of a bot, checked: teloxide panics on a URL that cannot have a path, and a
/// trailing slash would double the one it adds before `bot<token>`.
fn api_url(settings: &BotSettings) -> Result<reqwest::Url, SendError> {
    let text = settings.api_url.trim().trim_end_matches('/');
    reqwest::Url::parse(text)
        .ok()
        .filter(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && !url.cannot_be_a_base()
                && url.query().is_none()
                && url.fragment().is_none()
        })
        .ok_or_else(|| {
            SendError::permanent(
                "invalid_api_url",
                format!(
                    "the Bot API URL of Telegram bot {:?} is not an http(s) URL: {:?}",
                    settings.name, settings.api_url
                ),
            )
        })
}

/// The chat id in a recipient: Telegram chat ids are integers (negative for groups).
fn chat_id(to: &str) -> Result<ChatId, SendError> {
    to.parse::<i64>()
        .ok()
        .filter(|&id| id != 0)
        .map(ChatId)
        .ok_or_else(|| {
            SendError::permanent(
                "invalid_chat_id",
                format!("{to:?} is not a Telegram chat id"),
            )
        })
}

/// Reply parameters for `reply_to` when it is a message of this chat (`{chat}:{message}`, as
/// [`provider_message_id`] writes them). Anything else (a button press, a message of another chat)
/// cannot be replied to and is left out: the message is still worth sending.
///
/// `allow_sending_without_reply`: the user may have deleted their message meanwhile, and the
/// answer must arrive all the same.
fn reply_parameters(reply_to: Option<&str>, chat: ChatId) -> Option<ReplyParameters> {
    let (reply_chat, message) = reply_to?.split_once(':')?;
    let reply_chat: i64 = reply_chat.parse().ok()?;
    let message: i32 = message.parse().ok().filter(|&id| id > 0)?;
    if reply_chat != chat.0 {
        tracing::debug!(
            chat = chat.0,
            reply_chat,
            "not replying to a message of another chat"
        );
        return None;
    }
    Some(ReplyParameters::new(MessageId(message)).allow_sending_without_reply())
}

/// An inline keyboard with one button per choice, one per row (titles can be long); `None` for no
/// choices, which leave the text alone.
fn keyboard(choices: &[Choice]) -> Result<Option<InlineKeyboardMarkup>, SendError> {
    if choices.is_empty() {
        return Ok(None);
    }
    let rows = choices
        .iter()
        .map(|choice| {
            if choice.id.is_empty() {
                return Err(SendError::permanent(
                    "invalid_choice_id",
                    format!("the choice {:?} has an empty id", choice.title),
                ));
            }
            if choice.id.len() > CALLBACK_DATA_LIMIT {
                return Err(SendError::permanent(
                    "choice_id_too_long",
                    format!(
                        "Telegram buttons carry at most {CALLBACK_DATA_LIMIT} bytes; the id of choice {:?} has {}",
                        choice.title,
                        choice.id.len()
                    ),
                ));
            }
            Ok(vec![InlineKeyboardButton::callback(
                choice.title.clone(),
                choice.id.clone(),
            )])
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(InlineKeyboardMarkup::new(rows)))
}

/// The URL of a file to send: Telegram fetches it itself, so only http(s) URLs make sense (and a
/// `file://` URL must not reach it).
fn media_url(source: &str) -> Result<reqwest::Url, SendError> {
    reqwest::Url::parse(source.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
        .ok_or_else(|| {
            SendError::permanent(
                "invalid_media_url",
                format!("Telegram fetches files by http(s) URL; {source:?} is none"),
            )
        })
}

/// A caption Telegram accepts; a longer one would be refused by the API anyway.
fn check_caption(caption: &str) -> Result<String, SendError> {
    let length = Measure::Utf16.len(caption);
    if length > CAPTION_LIMIT {
        return Err(SendError::permanent(
            "caption_too_long",
            format!("Telegram captions hold at most {CAPTION_LIMIT} characters, not {length}"),
        ));
    }
    Ok(caption.to_owned())
}

/// Checks a webhook secret the way Telegram would (1–256 of `A-Z a-z 0-9 _ -`), so that a bad one
/// is reported as a configuration problem with a clear message.
fn check_webhook_secret(secret: &str) -> Result<(), SendError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if secret.is_empty() || secret.len() > 256 || !secret.chars().all(allowed) {
        return Err(SendError::permanent(
            "invalid_webhook_secret",
            "Telegram webhook secrets are 1 to 256 characters of A-Z, a-z, 0-9, _ and -",
        ));
    }
    Ok(())
}

/// The chat and message ids of a send whose answer teloxide could not read although Telegram
/// reported success (`{"ok":true,"result":{"message_id":…,"chat":{"id":…}}}`).
fn sent_despite(error: &RequestError) -> Option<(i64, i32)> {
    let RequestError::InvalidJson { raw, .. } = error else {
        return None;
    };
    let answer: serde_json::Value = serde_json::from_str(raw).ok()?;
    if answer.get("ok")?.as_bool()? {
        let result = answer.get("result")?;
        let message = i32::try_from(result.get("message_id")?.as_i64()?).ok()?;
        let chat = result.pointer("/chat/id")?.as_i64()?;
        Some((chat, message))
    } else {
        None
    }
}
