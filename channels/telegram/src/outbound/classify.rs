//! How a failed Bot API call is reported to the gateway.
//!
//! The gateway retries [`SendError::Transient`] from a background job, fails the message on
//! [`SendError::Permanent`], and on [`SendError::Unreachable`] also marks the contact unreachable
//! until they write again. Every call of the client (sending, typing, polling, downloading) goes
//! through [`classify`], so a flood wait or a revoked token means the same thing wherever it shows
//! up.
//!
//! teloxide hands us less than the Bot API sends: it keeps the `description` of an error (as an
//! [`ApiError`] variant, or [`ApiError::Unknown`] with the text) and its `parameters`
//! (`retry_after`, `migrate_to_chat_id`), but drops `error_code` and the HTTP status. So server
//! trouble is recognized by its description ("Internal Server Error", "Bad Gateway"…), and an
//! answer teloxide could not read at all ([`RequestError::InvalidJson`]) is looked at again here:
//! an HTML error page from a proxy is an outage, not a bad request.

use std::time::Duration;

use serde_json::Value;
use switchboard_channel::{SendError, error_chain};
use teloxide::{ApiError, RequestError, types::ChatId};

/// The code of a refused bot token: every call of the bot fails until an operator replaces it.
pub(crate) const INVALID_TOKEN: &str = "invalid_token";

/// The code of a group that became a supergroup: the conversation continues under a new chat id.
pub(crate) const MIGRATED: &str = "migrated";

/// How many characters of an unreadable answer end up in a failure's reason.
const EXCERPT_CHARS: usize = 200;

/// The longest code derived from an error description; longer descriptions fall back to their
/// category ("bad_request"), so codes stay short enough to group failures by.
const MAX_DERIVED_CODE: usize = 48;

/// Descriptions (lowercase) of a recipient the bot cannot write to until they act: they blocked
/// the bot, deleted their account, never started it, or removed it from their group. Some of these
/// have teloxide variants, but Telegram has reworded several of them over the years
/// ("Unauthorized: …" became "Forbidden: …"), and the reworded texts arrive as
/// [`ApiError::Unknown`]; matching the text catches both.
const UNREACHABLE: [&str; 5] = [
    "bot was blocked by the user",
    "user is deactivated",
    "bot was kicked from",
    "bot is not a member of",
    "bot can't initiate conversation with a user",
];

/// Descriptions (lowercase prefixes) the Bot API gives with HTTP 5xx, and a flood wait that came
/// without its `retry_after` parameter: all worth retrying.
const TRANSIENT_PREFIXES: [&str; 5] = [
    "internal server error",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    "too many requests",
];

/// Classifies a failed call. `chat` is the chat the call was about, when it was about one: "chat
/// not found" means the user is gone for a private chat, but a wrong id for a group.
///
/// Pure, so that it can be tested on its own; [`super::TelegramBot`] adds the logging and removes
/// the bot token from the reason.
pub(crate) fn classify(error: &RequestError, chat: Option<ChatId>) -> SendError {
    match error {
        RequestError::RetryAfter(wait) => SendError::Transient {
            retry_after: Some(wait.duration()),
            reason: format!("Telegram's flood control asks to wait {wait}"),
        },
        RequestError::MigrateToChatId(new) => SendError::permanent(
            MIGRATED,
            format!("the group was upgraded to a supergroup; its new chat id is {new}"),
        ),
        RequestError::Api(api) => api_error(api, chat),
        RequestError::Network(err) => network_error(err),
        // Only uploads of local files read from disk; a retry may well succeed.
        RequestError::Io(err) => SendError::transient(format!("I/O error: {err}")),
        RequestError::InvalidJson { source, raw } => unreadable_answer(raw, &source.to_string()),
    }
}

/// Whether a failure is the bot token being refused.
pub(crate) fn is_invalid_token(error: &SendError) -> bool {
    matches!(error, SendError::Permanent { code, .. } if code == INVALID_TOKEN)
}

/// An error the Bot API described.
fn api_error(error: &ApiError, chat: Option<ChatId>) -> SendError {
    let description = description(error);
    let lowercase = description.to_lowercase();
    match error {
        ApiError::InvalidToken => return invalid_token(),
        ApiError::TerminatedByOtherGetUpdates => {
            // Usually a deployment where the old process still polls for a few seconds; if it
            // lasts, the poller's logs say why.
            return SendError::transient(format!(
                "another process is polling this bot: {description}"
            ));
        }
        ApiError::ChatNotFound => {
            return if chat.is_some_and(ChatId::is_user) {
                SendError::Unreachable {
                    reason: description,
                }
            } else {
                SendError::permanent("chat_not_found", description)
            };
        }
        _ => {}
    }
    if UNREACHABLE.iter().any(|text| lowercase.contains(text)) {
        return SendError::Unreachable {
            reason: description,
        };
    }
    if TRANSIENT_PREFIXES
        .iter()
        .any(|prefix| lowercase.starts_with(prefix))
    {
        return SendError::Transient {
            retry_after: retry_after_in_text(&lowercase),
            reason: description,
        };
    }
    if lowercase.contains("can't use getupdates method while webhook is active") {
        return SendError::permanent("cant_get_updates", description);
    }
    SendError::permanent(api_error_code(error), description)
}

/// What the Bot API said: the text of an unknown error, or the one teloxide matched.
fn description(error: &ApiError) -> String {
    match error {
        ApiError::Unknown(text) => text.clone(),
        ApiError::InvalidToken => "Unauthorized: the bot token was refused".to_owned(),
        known => known.to_string(),
    }
}

/// A short name for an error: teloxide's variant in snake case (`MessageTextIsEmpty` →
/// `message_text_is_empty`), or one derived from the description of an error teloxide does not
/// know.
fn api_error_code(error: &ApiError) -> String {
    if let ApiError::Unknown(text) = error {
        return code_from_description(text);
    }
    let debug = format!("{error:?}");
    let variant = debug.split('(').next().unwrap_or(&debug);
    let mut code = String::with_capacity(variant.len() + 8);
    for (at, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() && at > 0 {
            code.push('_');
        }
        code.push(c.to_ascii_lowercase());
    }
    code
}

/// A code from a description like `Bad Request: message thread not found`: the detail in snake
/// case (`message_thread_not_found`) when it is short and has no numbers in it (which would make
/// every occurrence a code of its own), else the category (`bad_request`).
fn code_from_description(text: &str) -> String {
    let (category, detail) = match text.split_once(": ") {
        Some((category, detail)) => (category, detail),
        None => ("", text),
    };
    let detail_code = slug(detail);
    if !detail_code.is_empty()
        && detail_code.len() <= MAX_DERIVED_CODE
        && !detail.chars().any(|c| c.is_ascii_digit())
    {
        return detail_code;
    }
    let category_code = slug(category);
    if category_code.is_empty() {
        "api_error".to_owned()
    } else {
        category_code
    }
}

/// Lowercase ASCII letters and digits, with runs of anything else as one `_`; apostrophes vanish
/// (`can't` → `cant`).
fn slug(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars().filter(|&c| c != '\'') {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    slug.truncate(slug.trim_end_matches('_').len());
    slug
}

/// The wait in a description like `Too Many Requests: retry after 7`, for the rare flood error
/// that comes without its `retry_after` parameter.
fn retry_after_in_text(lowercase: &str) -> Option<Duration> {
    let (_, after) = lowercase.split_once("retry after ")?;
    let seconds: String = after.chars().take_while(char::is_ascii_digit).collect();
    seconds.parse().ok().map(Duration::from_secs)
}

/// The failure for a refused token.
fn invalid_token() -> SendError {
    SendError::permanent(
        INVALID_TOKEN,
        "Telegram refused the bot token (401 Unauthorized or 404 Not Found); check the token from @BotFather",
    )
}

/// A call that got no answer. The URL in the error has the token in it; teloxide masks
/// well-formed tokens, and [`super::TelegramBot`] removes the token from every reason anyway.
fn network_error(err: &reqwest::Error) -> SendError {
    let reason = error_chain(err);
    if err.is_builder() {
        // No retry makes an unusable URL usable.
        SendError::permanent(
            "invalid_request",
            format!("cannot build the request: {reason}"),
        )
    } else if err.is_timeout() {
        SendError::transient(format!("the Bot API did not answer in time: {reason}"))
    } else {
        SendError::transient(format!("the Bot API could not be reached: {reason}"))
    }
}

/// An answer teloxide could not read. The status is lost by then, so the body tells what it was.
fn unreadable_answer(raw: &str, parse_error: &str) -> SendError {
    let Ok(answer) = serde_json::from_str::<Value>(raw) else {
        // An HTML error page or an empty body: something between us and Telegram (a proxy, a
        // load balancer) is in trouble, or Telegram itself answered a 5xx without JSON.
        return SendError::transient(format!(
            "the Bot API answered with something that is not JSON: {}",
            excerpt(raw)
        ));
    };
    match answer.get("ok").and_then(Value::as_bool) {
        // The call was carried out; its result is not what teloxide expects (a newer API?).
        // Repeating the call would not change that.
        Some(true) => SendError::permanent(
            "unexpected_answer",
            format!("the Bot API's answer could not be read: {parse_error}"),
        ),
        Some(false) => error_answer(&answer),
        None => SendError::transient(format!(
            "the Bot API answered with JSON that is not a Bot API answer: {}",
            excerpt(raw)
        )),
    }
}

/// An error answer teloxide could not read (no description, say): classified by its
/// `error_code`, which is the HTTP status.
fn error_answer(answer: &Value) -> SendError {
    let status = answer.get("error_code").and_then(Value::as_u64);
    let description = answer
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| match status {
            Some(status) => format!("error {status} without description"),
            None => "error without code or description".to_owned(),
        });
    match status {
        Some(429) => SendError::Transient {
            retry_after: answer
                .pointer("/parameters/retry_after")
                .and_then(Value::as_u64)
                .map(Duration::from_secs),
            reason: description,
        },
        Some(500..) | None => SendError::transient(description),
        Some(401 | 404) => invalid_token(),
        Some(status) => SendError::permanent(status.to_string(), description),
    }
}

/// The start of a body, on one line.
fn excerpt(raw: &str) -> String {
    let text: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "an empty body".to_owned();
    }
    let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    format!("{excerpt:?}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use teloxide::types::Seconds;

    use super::*;

    const USER: Option<ChatId> = Some(ChatId(218485655));
    const GROUP: Option<ChatId> = Some(ChatId(-1001234567890));

    fn api(text: &str) -> RequestError {
        // Through serde, as teloxide does: known texts become their variant.
        let error: ApiError = serde_json::from_value(Value::String(text.to_owned())).unwrap();
        RequestError::Api(error)
    }

    fn invalid_json(raw: &str) -> RequestError {
        let source = serde_json::from_str::<Value>("{").unwrap_err();
        RequestError::InvalidJson {
            source: Arc::new(source),
            raw: raw.into(),
        }
    }

    fn permanent(code: &str, reason: &str) -> SendError {
        SendError::permanent(code, reason)
    }

    #[test]
    fn flood_control_is_transient_with_its_wait() {
        assert_eq!(
            classify(&RequestError::RetryAfter(Seconds::from_seconds(3)), USER),
            SendError::Transient {
                retry_after: Some(Duration::from_secs(3)),
                reason: "Telegram's flood control asks to wait 3s".into()
            }
        );
        // Without the parameter, the description still gives the wait.
        assert_eq!(
            classify(&api("Too Many Requests: retry after 7"), USER),
            SendError::Transient {
                retry_after: Some(Duration::from_secs(7)),
                reason: "Too Many Requests: retry after 7".into()
            }
        );
    }

    #[test]
    fn server_trouble_is_transient() {
        for text in [
            "Internal Server Error",
            "Bad Gateway",
            "Service Unavailable",
            "Gateway Timeout",
            "Internal Server Error: restart",
        ] {
            assert_eq!(
                classify(&api(text), USER),
                SendError::transient(text),
                "{text}"
            );
        }
        assert!(matches!(
            classify(&invalid_json("<html><h1>502 Bad Gateway</h1></html>"), USER),
            SendError::Transient { reason, .. } if reason.contains("not JSON") && reason.contains("502 Bad Gateway")
        ));
        assert!(matches!(
            classify(&invalid_json(""), USER),
            SendError::Transient { reason, .. } if reason.ends_with("an empty body")
        ));
        assert_eq!(
            classify(&invalid_json(r#"{"ok":false,"error_code":502}"#), USER),
            SendError::transient("error 502 without description")
        );
        assert_eq!(
            classify(
                &invalid_json(
                    r#"{"ok":false,"error_code":429,"parameters":{"retry_after":"soon"}}"#
                ),
                USER
            ),
            SendError::Transient {
                retry_after: None,
                reason: "error 429 without description".into()
            }
        );
        assert!(matches!(
            classify(
                &RequestError::Io(Arc::new(std::io::Error::other("disk"))),
                USER
            ),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            classify(
                &api(
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
                ),
                None
            ),
            SendError::Transient { .. }
        ));
    }

    #[test]
    fn gone_recipients_are_unreachable() {
        for text in [
            "Forbidden: bot was blocked by the user",
            "Forbidden: user is deactivated",
            "Unauthorized: bot was kicked from a chat",
            "Forbidden: bot was kicked from the supergroup chat",
            "Forbidden: bot was kicked from the group chat",
            "Forbidden: bot was kicked from the channel chat",
            "Forbidden: bot is not a member of the supergroup chat",
            "Unauthorized: bot can't initiate conversation with a user",
            "Forbidden: bot can't initiate conversation with a user",
        ] {
            assert_eq!(
                classify(&api(text), USER),
                SendError::Unreachable {
                    reason: text.into()
                },
                "{text}"
            );
        }
    }

    #[test]
    fn a_missing_chat_is_unreachable_only_for_a_user() {
        assert_eq!(
            classify(&api("Bad Request: chat not found"), USER),
            SendError::Unreachable {
                reason: "Bad Request: chat not found".into()
            }
        );
        for chat in [GROUP, None] {
            assert_eq!(
                classify(&api("Bad Request: chat not found"), chat),
                permanent("chat_not_found", "Bad Request: chat not found")
            );
        }
    }

    #[test]
    fn refused_tokens_are_invalid_token() {
        for text in ["Unauthorized", "Not Found"] {
            let error = classify(&api(text), USER);
            assert!(is_invalid_token(&error), "{text}: {error:?}");
        }
        for raw in [
            r#"{"ok":false,"error_code":401}"#,
            r#"{"ok":false,"error_code":404}"#,
        ] {
            assert!(is_invalid_token(&classify(&invalid_json(raw), USER)));
        }
        assert!(!is_invalid_token(&classify(
            &api("Bad Request: chat not found"),
            GROUP
        )));
    }

    #[test]
    fn migrated_groups_name_their_new_id() {
        assert_eq!(
            classify(
                &RequestError::MigrateToChatId(ChatId(-1001234567890)),
                Some(ChatId(-4567))
            ),
            permanent(
                "migrated",
                "the group was upgraded to a supergroup; its new chat id is -1001234567890"
            )
        );
    }

    #[test]
    fn other_api_errors_are_permanent_with_a_code() {
        for (text, code) in [
            (
                "Bad Request: message text is empty",
                "message_text_is_empty",
            ),
            ("Bad Request: message is too long", "message_is_too_long"),
            (
                "Bad Request: wrong file identifier/HTTP URL specified",
                "wrong_file_id_or_url",
            ),
            (
                "Bad Request: failed to get HTTP URL content",
                "failed_to_get_url_content",
            ),
            (
                "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 12",
                "cant_parse_entities",
            ),
            ("Bad Request: BUTTON_DATA_INVALID", "button_data_invalid"),
            // Unknown to teloxide: named after the description.
            (
                "Bad Request: message thread not found",
                "message_thread_not_found",
            ),
            ("Bad Request: TOPIC_CLOSED", "topic_closed"),
            (
                "Forbidden: bot can't send messages to bots",
                "bot_cant_send_messages_to_bots",
            ),
            // Numbers in it, or too long: only the category.
            (
                "Bad Request: message to be replied not found in chat 12",
                "bad_request",
            ),
            (
                "Bad Request: a very long description that goes on and on about what went wrong",
                "bad_request",
            ),
            ("Something else entirely", "something_else_entirely"),
            ("!!!", "api_error"),
        ] {
            assert_eq!(classify(&api(text), USER), permanent(code, text), "{text}");
        }
        assert_eq!(
            classify(
                &api(
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
                ),
                None
            ),
            permanent(
                "cant_get_updates",
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
            )
        );
        assert_eq!(
            classify(
                &invalid_json(r#"{"ok":false,"error_code":400,"description":7}"#),
                USER
            ),
            permanent("400", "error 400 without description")
        );
    }

    #[test]
    fn a_readable_success_that_teloxide_cannot_parse_is_permanent() {
        assert!(matches!(
            classify(&invalid_json(r#"{"ok":true,"result":{"odd":1}}"#), None),
            SendError::Permanent { code, .. } if code == "unexpected_answer"
        ));
        assert!(matches!(
            classify(&invalid_json(r#"{"hello":1}"#), None),
            SendError::Transient { .. }
        ));
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        let long = format!("<html>\n{}\n</html>", "x".repeat(1000));
        let excerpt = excerpt(&long);
        assert!(excerpt.chars().count() <= EXCERPT_CHARS + 3, "{excerpt}");
        assert!(!excerpt.contains('\n'));
        assert_eq!(slug("  Can't -- parse__ URL! "), "cant_parse_url");
    }
}
