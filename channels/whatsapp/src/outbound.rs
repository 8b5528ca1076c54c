//! Sending messages through the WhatsApp Cloud API.
//!
//! The gateway hands [`WhatsappSender`] one channel-neutral [`OutboundMessage`] at a time; this
//! module turns it into the Graph API's `messages` request and the answer into a [`Sent`] or a
//! classified [`SendError`]. Two WhatsApp rules shape it beyond that translation:
//!
//! - Free-form messages are only accepted within 24 hours of the user's last message. Outside that
//!   window the only way to reach the user is an approved template, so the sender substitutes the
//!   number's fallback template (and says so in [`Sent::substituted`]) or fails permanently without
//!   calling the API. The gateway's idea of the window can be off (a clock, a missed webhook), so
//!   the API's own verdict, error 131047, is handled the same way.
//! - Interactive messages have hard limits (3 reply buttons, 10 list rows, short titles). Choices
//!   are mapped onto whichever form fits, and titles are shortened rather than refused.
//!
//! Request bodies are built by small pure functions, kept apart from the HTTP calls.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use switchboard_channel::{
    Choice, MediaKind, OutboundContent, OutboundMessage, SendError, Sender, Sent, TypingTarget,
    text::Measure,
};

use crate::{Settings, Template, graph};

/// The longest text body WhatsApp accepts, in characters.
const TEXT_LIMIT: usize = 4096;

/// How long after the user's last message free-form messages are accepted.
const SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// At most this many choices are shown as reply buttons.
const MAX_BUTTONS: usize = 3;

/// At most this many choices fit in a list message.
const MAX_LIST_ROWS: usize = 10;

/// The longest title of a reply button, in characters.
const BUTTON_TITLE_LIMIT: usize = 20;

/// The longest title of a list row, in characters.
const ROW_TITLE_LIMIT: usize = 24;

/// The label of the button that opens a list message.
const LIST_BUTTON_LABEL: &str = "Choose";

/// Sends messages, read receipts and typing indicators for WhatsApp business numbers through the
/// Graph API. One sender serves every number in [`Settings`]; the account of a message picks the
/// number and its access token.
pub struct WhatsappSender {
    settings: Arc<Settings>,
    http: reqwest::Client,
}

impl WhatsappSender {
    /// A sender using `http` for its requests; each request is bounded by [`Settings::timeout`].
    pub fn new(settings: Arc<Settings>, http: reqwest::Client) -> Self {
        Self { settings, http }
    }

    /// POSTs `body` to the `messages` endpoint of `account`; a non-2xx answer becomes the
    /// classified error.
    async fn post(
        &self,
        account: &str,
        token: &str,
        body: &Value,
    ) -> Result<reqwest::Response, SendError> {
        let account = graph::path_segment(account, "phone number id")?;
        let response = self
            .http
            .post(self.settings.url(&format!("{account}/messages")))
            .bearer_auth(token)
            .timeout(self.settings.timeout)
            .json(body)
            .send()
            .await
            .map_err(graph::request_failed)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(graph::Failure::read(response)
                .await
                .into_send_error(account))
        }
    }

    /// Sends one message body and reads the id WhatsApp gave the message.
    async fn deliver(&self, account: &str, token: &str, body: &Value) -> Result<Sent, SendError> {
        let response = self.post(account, token, body).await?;
        let answer: Value = graph::json_answer(response).await?;
        let id = provider_message_id(&answer)
            .ok_or_else(|| graph::unexpected_answer("no message id in the answer"))?;
        Ok(Sent {
            provider_message_id: id.to_owned(),
            substituted: None,
        })
    }

    /// Sends the fallback template in place of a message WhatsApp would refuse.
    async fn deliver_template(
        &self,
        message: &OutboundMessage,
        token: &str,
        template: &Template,
    ) -> Result<Sent, SendError> {
        tracing::info!(
            message_id = %message.message_id,
            phone_number_id = %message.account,
            template = %template.name,
            "outside WhatsApp's 24-hour window: sending the fallback template instead"
        );
        let body = template_body(&message.to, template);
        let sent = self.deliver(&message.account, token, &body).await?;
        Ok(Sent {
            substituted: Some(format!("template {}", template.name)),
            ..sent
        })
    }
}

#[async_trait]
impl Sender for WhatsappSender {
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        let token = graph::token(&self.settings, &message.account)?;
        let fallback = self.settings.fallback_template_for(&message.account);
        let free_form = !matches!(message.content, OutboundContent::Template { .. });

        if free_form && !message.service_window_open {
            return match fallback {
                Some(template) => self.deliver_template(message, token, template).await,
                None => Err(window_closed(
                    "outside WhatsApp's 24-hour customer service window and no fallback template is configured",
                )),
            };
        }

        let body = message_body(&message.to, message.reply_to.as_deref(), &message.content)?;
        match self.deliver(&message.account, token, &body).await {
            // The API knows the window better than the gateway does; trust its verdict.
            Err(SendError::Permanent { code, reason })
                if free_form && code == graph::OUTSIDE_WINDOW =>
            {
                match fallback {
                    Some(template) => self.deliver_template(message, token, template).await,
                    None => Err(window_closed(&reason)),
                }
            }
            outcome => outcome,
        }
    }

    fn text_limit(&self) -> Option<(usize, Measure)> {
        Some((TEXT_LIMIT, Measure::Chars))
    }

    async fn typing(&self, target: &TypingTarget) -> Result<(), SendError> {
        let Some(message_id) = target.message_provider_id.as_deref() else {
            return Ok(());
        };
        if !self.settings.mark_read {
            return Ok(());
        }
        let token = graph::token(&self.settings, &target.account)?;
        let response = self
            .post(&target.account, token, &typing_body(message_id))
            .await?;
        let answer: Value = graph::json_answer(response).await?;
        if answer.get("success").and_then(Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(graph::unexpected_answer("the message was not marked read"))
        }
    }

    fn service_window(&self) -> Option<Duration> {
        Some(SERVICE_WINDOW)
    }
}

/// The permanent failure of a free-form message outside the window, with no template to send.
fn window_closed(reason: &str) -> SendError {
    SendError::permanent(graph::OUTSIDE_WINDOW, reason)
}

/// The id of the sent message in a successful answer: `messages[0].id`.
fn provider_message_id(answer: &Value) -> Option<&str> {
    answer
        .get("messages")?
        .get(0)?
        .get("id")?
        .as_str()
        .filter(|id| !id.is_empty())
}

/// The fields every message request starts with.
fn envelope(to: &str) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("messaging_product".into(), "whatsapp".into());
    body.insert("recipient_type".into(), "individual".into());
    body.insert("to".into(), to.into());
    body
}

/// The request body sending `content` to `to`, as a reply to `reply_to` when given.
fn message_body(
    to: &str,
    reply_to: Option<&str>,
    content: &OutboundContent,
) -> Result<Value, SendError> {
    let (kind, object) = content_object(content)?;
    let mut body = envelope(to);
    body.insert("type".into(), kind.into());
    body.insert(kind.into(), object);
    if let Some(id) = reply_to.filter(|id| !id.is_empty()) {
        body.insert("context".into(), json!({ "message_id": id }));
    }
    Ok(Value::Object(body))
}

/// The request body sending the fallback `template` to `to`. It carries no reply context: it
/// stands in for a message to a user who last wrote more than a day ago, and quoting that old
/// message would only confuse.
fn template_body(to: &str, template: &Template) -> Value {
    let mut body = envelope(to);
    body.insert("type".into(), "template".into());
    body.insert(
        "template".into(),
        template_object(&template.name, &template.language, &template.components),
    );
    Value::Object(body)
}

/// The message `type` for `content` and the object named after it.
fn content_object(content: &OutboundContent) -> Result<(&'static str, Value), SendError> {
    Ok(match content {
        OutboundContent::Text { body } => ("text", text_object(body)),
        OutboundContent::Media {
            attachment,
            caption,
        } => {
            let kind = media_type(attachment.kind);
            let mut object = Map::new();
            object.insert("link".into(), attachment.source.as_str().into());
            if let Some(caption) = caption.as_deref().filter(|caption| !caption.is_empty())
                && !matches!(kind, "audio" | "sticker")
            {
                object.insert("caption".into(), caption.into());
            }
            if let Some(filename) = attachment.filename.as_deref()
                && kind == "document"
            {
                object.insert("filename".into(), filename.into());
            }
            (kind, Value::Object(object))
        }
        // WhatsApp has no interactive message without buttons; the text alone is what is left.
        OutboundContent::Choices { body, choices } if choices.is_empty() => {
            ("text", text_object(body))
        }
        OutboundContent::Choices { body, choices } => {
            ("interactive", interactive_object(body, choices)?)
        }
        OutboundContent::Template {
            name,
            language,
            components,
        } => ("template", template_object(name, language, components)),
    })
}

/// A text object; link previews are asked for only when the text has a link to preview.
fn text_object(body: &str) -> Value {
    let preview_url = body.contains("http://") || body.contains("https://");
    json!({ "preview_url": preview_url, "body": body })
}

/// The message type for a kind of file. WhatsApp has no separate voice type: a voice note is
/// audio (shown as a voice message when it is OGG/Opus).
fn media_type(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image",
        MediaKind::Video => "video",
        MediaKind::Document => "document",
        MediaKind::Sticker => "sticker",
        MediaKind::Audio | MediaKind::Voice => "audio",
    }
}

/// Reply buttons for up to three choices, a list for up to ten; more cannot be shown at all.
fn interactive_object(body: &str, choices: &[Choice]) -> Result<Value, SendError> {
    if choices.len() <= MAX_BUTTONS {
        let buttons: Vec<Value> = choices
            .iter()
            .map(|choice| {
                json!({
                    "type": "reply",
                    "reply": {
                        "id": choice.id,
                        "title": truncate_chars(&choice.title, BUTTON_TITLE_LIMIT),
                    }
                })
            })
            .collect();
        return Ok(json!({
            "type": "button",
            "body": { "text": body },
            "action": { "buttons": buttons },
        }));
    }
    if choices.len() <= MAX_LIST_ROWS {
        let rows: Vec<Value> = choices
            .iter()
            .map(|choice| {
                json!({
                    "id": choice.id,
                    "title": truncate_chars(&choice.title, ROW_TITLE_LIMIT),
                })
            })
            .collect();
        return Ok(json!({
            "type": "list",
            "body": { "text": body },
            "action": {
                "button": LIST_BUTTON_LABEL,
                "sections": [{ "rows": rows }],
            },
        }));
    }
    Err(SendError::permanent(
        "too_many_choices",
        format!(
            "WhatsApp shows at most {MAX_LIST_ROWS} choices in one message, not {}",
            choices.len()
        ),
    ))
}

/// A template object; `components` is left out when there are none, as templates without
/// parameters expect.
fn template_object(name: &str, language: &str, components: &Value) -> Value {
    let mut template = Map::new();
    template.insert("name".into(), name.into());
    template.insert("language".into(), json!({ "code": language }));
    let empty = match components {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    if !empty {
        template.insert("components".into(), components.clone());
    }
    Value::Object(template)
}

/// The body that marks a user's message read and shows the typing indicator.
fn typing_body(message_id: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": message_id,
        "typing_indicator": { "type": "text" },
    })
}

/// The first `max` characters of `text`, cut on a character boundary.
fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use switchboard_channel::Attachment;

    use super::*;
    use crate::testing::{
        DEFAULT_TOKEN, Failure, FakeGraph, GraphReply, OWN_NUMBER, OWN_TOKEN, Reply,
    };

    const NUMBER: &str = "106540352242922";
    const USER: &str = "16505551234";

    fn sender(settings: Settings) -> WhatsappSender {
        WhatsappSender::new(Arc::new(settings), reqwest::Client::new())
    }

    fn message(content: OutboundContent) -> OutboundMessage {
        OutboundMessage {
            message_id: "msg-1".into(),
            account: NUMBER.into(),
            to: USER.into(),
            reply_to: None,
            content,
            service_window_open: true,
            thread: None,
        }
    }

    fn text(body: &str) -> OutboundContent {
        OutboundContent::Text { body: body.into() }
    }

    fn attachment(kind: MediaKind, filename: Option<&str>) -> Attachment {
        Attachment {
            kind,
            source: "https://files.example.com/f".into(),
            mime_type: None,
            filename: filename.map(str::to_owned),
            size: None,
            sha256: None,
            media_id: None,
        }
    }

    fn choices(n: usize) -> OutboundContent {
        OutboundContent::Choices {
            body: "Pick one".into(),
            choices: (1..=n)
                .map(|i| Choice {
                    id: format!("c{i}"),
                    title: format!("Choice number {i} with a long title"),
                })
                .collect(),
        }
    }

    fn fallback() -> Template {
        Template {
            name: "reengage".into(),
            language: "en_US".into(),
            components: json!([]),
        }
    }

    fn messages_path(number: &str) -> String {
        format!("/v21.0/{number}/messages")
    }

    /// Sends `content` through a fresh fake and returns the one request body it received.
    async fn sent_body(content: OutboundContent) -> Value {
        let fake = FakeGraph::start().await;
        sender(fake.settings())
            .send(&message(content))
            .await
            .unwrap();
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        requests[0].body.clone()
    }

    #[tokio::test]
    async fn sends_text_with_the_default_token() {
        let fake = FakeGraph::start().await;
        let sent = sender(fake.settings())
            .send(&message(text("Hello there")))
            .await
            .unwrap();
        assert_eq!(
            sent,
            Sent {
                provider_message_id: "wamid.out.1".into(),
                substituted: None
            }
        );
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, messages_path(NUMBER));
        assert_eq!(
            requests[0].authorization.as_deref(),
            Some(format!("Bearer {DEFAULT_TOKEN}").as_str())
        );
        assert_eq!(
            requests[0].body,
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": USER,
                "type": "text",
                "text": {"preview_url": false, "body": "Hello there"}
            })
        );
    }

    #[tokio::test]
    async fn a_number_with_its_own_token_uses_it() {
        let fake = FakeGraph::start().await;
        let mut own = message(text("Hi"));
        own.account = OWN_NUMBER.into();
        sender(fake.settings()).send(&own).await.unwrap();
        let requests = fake.requests();
        assert_eq!(requests[0].path, messages_path(OWN_NUMBER));
        assert_eq!(
            requests[0].authorization.as_deref(),
            Some(format!("Bearer {OWN_TOKEN}").as_str())
        );
    }

    #[tokio::test]
    async fn links_ask_for_a_preview_and_replies_carry_context() {
        let fake = FakeGraph::start().await;
        let mut reply = message(text("See https://example.com"));
        reply.reply_to = Some("wamid.user".into());
        sender(fake.settings()).send(&reply).await.unwrap();
        let body = fake.requests()[0].body.clone();
        assert_eq!(body["text"]["preview_url"], true);
        assert_eq!(body["context"], json!({"message_id": "wamid.user"}));
    }

    #[tokio::test]
    async fn media_is_sent_by_link() {
        let body = sent_body(OutboundContent::Media {
            attachment: attachment(MediaKind::Document, Some("report.pdf")),
            caption: Some("The report".into()),
        })
        .await;
        assert_eq!(body["type"], "document");
        assert_eq!(
            body["document"],
            json!({"link": "https://files.example.com/f", "caption": "The report", "filename": "report.pdf"})
        );

        let body = sent_body(OutboundContent::Media {
            attachment: attachment(MediaKind::Image, Some("ignored.jpg")),
            caption: Some("A photo".into()),
        })
        .await;
        assert_eq!(
            body["image"],
            json!({"link": "https://files.example.com/f", "caption": "A photo"})
        );

        let body = sent_body(OutboundContent::Media {
            attachment: attachment(MediaKind::Voice, None),
            caption: Some("audio takes no caption".into()),
        })
        .await;
        assert_eq!(body["type"], "audio");
        assert_eq!(
            body["audio"],
            json!({"link": "https://files.example.com/f"})
        );
    }

    #[tokio::test]
    async fn few_choices_become_buttons_with_short_titles() {
        let body = sent_body(choices(3)).await;
        assert_eq!(body["type"], "interactive");
        let interactive = &body["interactive"];
        assert_eq!(interactive["type"], "button");
        assert_eq!(interactive["body"], json!({"text": "Pick one"}));
        let buttons = interactive["action"]["buttons"].as_array().unwrap();
        assert_eq!(buttons.len(), 3);
        assert_eq!(
            buttons[0],
            json!({"type": "reply", "reply": {"id": "c1", "title": "Choice number 1 with"}})
        );
    }

    #[tokio::test]
    async fn more_choices_become_a_list() {
        let body = sent_body(choices(10)).await;
        let interactive = &body["interactive"];
        assert_eq!(interactive["type"], "list");
        assert_eq!(interactive["action"]["button"], "Choose");
        let rows = interactive["action"]["sections"][0]["rows"]
            .as_array()
            .unwrap();
        assert_eq!(rows.len(), 10);
        assert_eq!(
            rows[9],
            json!({"id": "c10", "title": "Choice number 10 with a "})
        );
    }

    #[tokio::test]
    async fn too_many_choices_are_refused_without_a_request() {
        let fake = FakeGraph::start().await;
        let error = sender(fake.settings())
            .send(&message(choices(11)))
            .await
            .unwrap_err();
        assert!(matches!(error, SendError::Permanent { code, .. } if code == "too_many_choices"));
        assert!(fake.requests().is_empty());
    }

    #[test]
    fn titles_are_cut_on_character_boundaries() {
        assert_eq!(truncate_chars("ééééé", 3), "ééé");
        assert_eq!(truncate_chars("short", 20), "short");
        let (_, object) = content_object(&OutboundContent::Choices {
            body: "b".into(),
            choices: vec![Choice {
                id: "x".into(),
                title: "😀".repeat(25),
            }],
        })
        .unwrap();
        assert_eq!(
            object["action"]["buttons"][0]["reply"]["title"],
            "😀".repeat(20)
        );
    }

    #[test]
    fn no_choices_send_the_text_alone() {
        let (kind, object) = content_object(&OutboundContent::Choices {
            body: "Nothing to pick".into(),
            choices: Vec::new(),
        })
        .unwrap();
        assert_eq!(kind, "text");
        assert_eq!(object["body"], "Nothing to pick");
    }

    #[tokio::test]
    async fn templates_are_sent_as_given() {
        let body = sent_body(OutboundContent::Template {
            name: "order_update".into(),
            language: "en_US".into(),
            components: json!([{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]),
        })
        .await;
        assert_eq!(body["type"], "template");
        assert_eq!(
            body["template"],
            json!({
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]
            })
        );

        for components in [Value::Null, json!([])] {
            let object = template_object("hello", "de", &components);
            assert_eq!(object, json!({"name": "hello", "language": {"code": "de"}}));
        }
    }

    #[tokio::test]
    async fn a_closed_window_sends_the_fallback_template() {
        let fake = FakeGraph::start().await;
        let mut settings = fake.settings();
        settings.fallback_template = Some(fallback());
        let mut late = message(text("Are you still there?"));
        late.service_window_open = false;
        late.reply_to = Some("wamid.old".into());
        let sent = sender(settings).send(&late).await.unwrap();
        assert_eq!(sent.provider_message_id, "wamid.out.1");
        assert_eq!(sent.substituted.as_deref(), Some("template reengage"));
        let requests = fake.requests();
        assert_eq!(requests.len(), 1, "no free-form request");
        assert_eq!(
            requests[0].body,
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": USER,
                "type": "template",
                "template": {"name": "reengage", "language": {"code": "en_US"}}
            })
        );
    }

    #[tokio::test]
    async fn a_closed_window_without_template_fails_without_a_request() {
        let fake = FakeGraph::start().await;
        let mut late = message(text("Are you still there?"));
        late.service_window_open = false;
        let error = sender(fake.settings()).send(&late).await.unwrap_err();
        assert_eq!(
            error,
            SendError::permanent(
                "131047",
                "outside WhatsApp's 24-hour customer service window and no fallback template is configured"
            )
        );
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn templates_are_sent_whatever_the_window() {
        let fake = FakeGraph::start().await;
        let mut late = message(OutboundContent::Template {
            name: "hello".into(),
            language: "en".into(),
            components: Value::Null,
        });
        late.service_window_open = false;
        let sent = sender(fake.settings()).send(&late).await.unwrap();
        assert_eq!(sent.substituted, None);
        assert_eq!(fake.requests().len(), 1);
    }

    #[tokio::test]
    async fn the_apis_window_error_falls_back_to_the_template() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::error(400, 131047, "Re-engagement message"));
        let mut settings = fake.settings();
        settings.numbers[0].fallback_template = Some(fallback());
        let mut own = message(text("Hi"));
        own.account = OWN_NUMBER.into();
        let sent = sender(settings).send(&own).await.unwrap();
        assert_eq!(
            sent,
            Sent {
                provider_message_id: "wamid.out.1".into(),
                substituted: Some("template reengage".into())
            }
        );
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].body["type"], "text");
        assert_eq!(requests[1].body["type"], "template");
    }

    #[tokio::test]
    async fn the_apis_window_error_without_template_is_permanent() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::error(400, 131047, "Re-engagement message"));
        let error = sender(fake.settings())
            .send(&message(text("Hi")))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            SendError::permanent("131047", "Re-engagement message: details of 131047")
        );
        assert_eq!(fake.requests().len(), 1);
    }

    #[tokio::test]
    async fn rate_limits_are_transient() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::raw(429, "text/plain", "slow down").header("retry-after", "7"));
        fake.reply(Reply::error(400, 130429, "(#130429) Rate limit hit"));
        let sender = sender(fake.settings());
        let error = sender.send(&message(text("Hi"))).await.unwrap_err();
        assert!(matches!(
            error,
            SendError::Transient { retry_after: Some(wait), .. } if wait == Duration::from_secs(7)
        ));
        let error = sender.send(&message(text("Hi"))).await.unwrap_err();
        assert!(matches!(
            error,
            SendError::Transient { retry_after: None, reason } if reason.contains("Rate limit hit")
        ));
    }

    #[tokio::test]
    async fn server_errors_and_unreachable_apis_are_transient() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::raw(500, "text/html", "<h1>oops</h1>"));
        let error = sender(fake.settings())
            .send(&message(text("Hi")))
            .await
            .unwrap_err();
        assert!(matches!(error, SendError::Transient { .. }), "{error:?}");

        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let error = sender(crate::testing::settings_for(&format!("http://{closed}")))
            .send(&message(text("Hi")))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, SendError::Transient { reason, .. } if reason.contains("could not be reached")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_stalled_api_times_out_transiently() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::raw(200, "application/json", "{").stalled());
        let mut settings = fake.settings();
        settings.timeout = Duration::from_millis(200);
        let error = sender(settings)
            .send(&message(text("Hi")))
            .await
            .unwrap_err();
        assert!(matches!(error, SendError::Transient { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn refused_tokens_and_invalid_requests_are_permanent() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::error(401, 190, "Error validating access token"));
        fake.reply(Reply::raw(401, "text/plain", ""));
        fake.reply(Reply::error(400, 100, "(#100) Invalid parameter"));
        fake.reply(Reply::error(400, 131026, "Message undeliverable"));
        let sender = sender(fake.settings());
        let mut codes = Vec::new();
        for _ in 0..4 {
            match sender.send(&message(text("Hi"))).await {
                Err(SendError::Permanent { code, reason }) => codes.push((code, reason)),
                other => panic!("expected a permanent failure, got {other:?}"),
            }
        }
        assert_eq!(
            codes,
            [
                ("190", "Error validating access token: details of 190"),
                ("190", "HTTP 401 Unauthorized"),
                ("100", "(#100) Invalid parameter: details of 100"),
                ("131026", "Message undeliverable: details of 131026"),
            ]
            .map(|(code, reason)| (code.to_owned(), reason.to_owned()))
        );
    }

    #[tokio::test]
    async fn answers_without_a_message_id_are_transient() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::json(
            200,
            json!({"messaging_product": "whatsapp", "messages": []}),
        ));
        fake.reply(Reply::raw(200, "text/html", "<html>captive portal</html>"));
        let sender = sender(fake.settings());
        for _ in 0..2 {
            let error = sender.send(&message(text("Hi"))).await.unwrap_err();
            assert!(matches!(error, SendError::Transient { .. }), "{error:?}");
        }
    }

    #[tokio::test]
    async fn no_token_fails_without_a_request() {
        let fake = FakeGraph::start().await;
        let mut settings = fake.settings();
        settings.access_token = None;
        let sender = sender(settings);
        let error = sender.send(&message(text("Hi"))).await.unwrap_err();
        assert!(matches!(error, SendError::Permanent { code, .. } if code == "no_access_token"));
        assert!(fake.requests().is_empty());
        // The number with its own token still works.
        let mut own = message(text("Hi"));
        own.account = OWN_NUMBER.into();
        assert!(sender.send(&own).await.is_ok());
    }

    #[tokio::test]
    async fn scripted_failures_answer_the_next_sends_not_read_receipts() {
        let fake = FakeGraph::start().await;
        fake.fail_next([Failure::RateLimited(Some(2)), Failure::TokenExpired]);
        let sender = sender(fake.settings());
        let target = TypingTarget {
            account: NUMBER.into(),
            to: USER.into(),
            message_provider_id: Some("wamid.user".into()),
        };
        sender.typing(&target).await.unwrap();
        let error = sender.send(&message(text("Hi"))).await.unwrap_err();
        assert!(
            matches!(error, SendError::Transient { retry_after: Some(wait), .. } if wait == Duration::from_secs(2)),
            "{error:?}"
        );
        let error = sender.send(&message(text("Hi"))).await.unwrap_err();
        assert!(
            matches!(&error, SendError::Permanent { code, .. } if code == "190"),
            "{error:?}"
        );
        let sent = sender.send(&message(text("Hi"))).await.unwrap();
        assert_eq!(sent.provider_message_id, "wamid.out.1");
        assert_eq!(fake.accepted(), 1);
        assert_eq!(fake.message_requests().len(), 3);
        assert_eq!(fake.read_receipts().len(), 1);
    }

    #[tokio::test]
    async fn typing_marks_the_message_read() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::json(200, json!({"success": true})));
        let target = TypingTarget {
            account: NUMBER.into(),
            to: USER.into(),
            message_provider_id: Some("wamid.user".into()),
        };
        sender(fake.settings()).typing(&target).await.unwrap();
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, messages_path(NUMBER));
        assert_eq!(
            requests[0].authorization.as_deref(),
            Some(format!("Bearer {DEFAULT_TOKEN}").as_str())
        );
        assert_eq!(
            requests[0].body,
            json!({
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "wamid.user",
                "typing_indicator": {"type": "text"}
            })
        );
    }

    #[tokio::test]
    async fn typing_errors_are_classified() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::error(400, 100, "(#100) Invalid parameter"));
        let target = TypingTarget {
            account: NUMBER.into(),
            to: USER.into(),
            message_provider_id: Some("wamid.user".into()),
        };
        let error = sender(fake.settings()).typing(&target).await.unwrap_err();
        assert!(matches!(error, SendError::Permanent { code, .. } if code == "100"));
    }

    #[tokio::test]
    async fn typing_does_nothing_when_off_or_without_a_message() {
        let fake = FakeGraph::start().await;
        let mut target = TypingTarget {
            account: NUMBER.into(),
            to: USER.into(),
            message_provider_id: None,
        };
        sender(fake.settings()).typing(&target).await.unwrap();
        target.message_provider_id = Some("wamid.user".into());
        let mut settings = fake.settings();
        settings.mark_read = false;
        sender(settings).typing(&target).await.unwrap();
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn unusable_accounts_never_reach_the_api() {
        let fake = FakeGraph::start().await;
        let mut odd = message(text("Hi"));
        odd.account = "../me".into();
        let error = sender(fake.settings()).send(&odd).await.unwrap_err();
        assert!(matches!(error, SendError::Permanent { .. }));
        assert!(fake.requests().is_empty());
    }

    #[test]
    fn limits_are_whatsapps() {
        let sender = sender(crate::testing::settings_for("http://localhost"));
        assert_eq!(sender.text_limit(), Some((4096, Measure::Chars)));
        assert_eq!(sender.service_window(), Some(Duration::from_secs(86_400)));
    }
}
