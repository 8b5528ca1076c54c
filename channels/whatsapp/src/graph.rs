//! The Graph API conventions the sender and the media downloader share.
//!
//! Both talk to the same API with the same per-number access tokens, and both must tell the
//! gateway whether a failure is worth retrying: the gateway retries [`SendError::Transient`] from a
//! background job and marks the message (or download) failed on [`SendError::Permanent`]. Keeping
//! the classification in one place means a rate limit or a refused token is treated the same way
//! whether it came from sending a message or fetching a photo.

use std::time::Duration;

use reqwest::{Response, StatusCode, header::RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchboard_channel::{SendError, error_chain};

use crate::Settings;

/// Graph error codes that mean "slow down": per-app, per-account, per-number and per-pair limits.
const RATE_LIMIT_CODES: [i64; 4] = [4, 80007, 130429, 131056];

/// Graph error codes that mean the access token itself was refused.
const AUTH_CODES: [i64; 2] = [0, 190];

/// The code under which a refused token is reported when the API gave none (a bare 401).
const AUTH_FALLBACK_CODE: &str = "190";

/// The Graph error code for a free-form message outside the 24-hour customer-service window.
pub(crate) const OUTSIDE_WINDOW: &str = "131047";

/// How much of an error answer is read. Error bodies are small JSON objects; a proxy's HTML error
/// page could be large, and only its first lines are worth keeping.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How much of a successful JSON answer is read. Real answers are a few hundred bytes; the limit
/// only guards against a misbehaving server.
const MAX_JSON_BODY: usize = 1024 * 1024;

/// How many characters of a body that is not a Graph error end up in the failure's reason.
const EXCERPT_CHARS: usize = 200;

/// The access token for `account`, or a permanent failure when there is none: without a token
/// every request would be refused, so there is no point in calling the API (or in retrying).
pub(crate) fn token<'a>(settings: &'a Settings, account: &str) -> Result<&'a str, SendError> {
    settings
        .token_for(account)
        .filter(|token| !token.trim().is_empty())
        .ok_or_else(|| {
            SendError::permanent(
                "no_access_token",
                format!("no WhatsApp access token is configured for phone number {account}"),
            )
        })
}

/// Checks that an id coming from configuration or a webhook can be used as one segment of a Graph
/// API path. URLs are built by formatting, so an id like `../me` would otherwise send our token to
/// an endpoint we never meant to call.
pub(crate) fn path_segment<'a>(id: &'a str, what: &str) -> Result<&'a str, SendError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+');
    if id.is_empty() || id == "." || id == ".." || !id.chars().all(allowed) {
        return Err(SendError::permanent(
            format!("invalid_{}", what.replace(' ', "_")),
            format!("{what} {id:?} cannot be used in a Graph API request"),
        ));
    }
    Ok(id)
}

/// A request that never got an HTTP answer: a refused connection, a timeout, a broken TLS
/// handshake. The API may well answer next time, so these are transient — except requests reqwest
/// could not even build (an unusable URL or token), which no retry will fix.
pub(crate) fn request_failed(err: reqwest::Error) -> SendError {
    let timed_out = err.is_timeout();
    let unbuildable = err.is_builder();
    // The URL of a media download carries a signature; it has no place in a stored reason. Its
    // causes say why (refused, timed out, TLS): reqwest's own message says only that it failed.
    let reason = error_chain(&err.without_url());
    if unbuildable {
        SendError::permanent(
            "invalid_request",
            format!("cannot build the request: {reason}"),
        )
    } else if timed_out {
        SendError::transient(format!("the Graph API did not answer in time: {reason}"))
    } else {
        SendError::transient(format!("the Graph API could not be reached: {reason}"))
    }
}

/// Reads a successful answer as JSON. A 2xx the API would never send (not JSON, say) most likely
/// comes from something between us and Meta, so it is reported as transient.
pub(crate) async fn json_answer<T: DeserializeOwned>(response: Response) -> Result<T, SendError> {
    let body = read_limited(response, MAX_JSON_BODY)
        .await
        .map_err(request_failed)?;
    serde_json::from_slice(&body).map_err(|err| unexpected_answer(&format!("not JSON ({err})")))
}

/// A transient failure for a 2xx answer that lacks what the API always sends.
pub(crate) fn unexpected_answer(what: &str) -> SendError {
    SendError::transient(format!("unexpected answer from the Graph API: {what}"))
}

/// Reads at most `limit` bytes of a body, so a huge error page cannot exhaust memory.
async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// The `error` object of a Graph API error answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GraphError {
    /// E.g. `(#130429) Rate limit hit`.
    pub message: Option<String>,
    /// E.g. `OAuthException`.
    pub kind: Option<String>,
    /// The error code the classification rests on.
    pub code: Option<i64>,
    /// Refines `code`: `100` with subcode `33` is an object that does not exist.
    pub subcode: Option<i64>,
    /// `error_data.details`: the human explanation, often more useful than `message`.
    pub details: Option<String>,
    /// Meta's trace id, which their support asks for.
    pub fbtrace_id: Option<String>,
}

impl GraphError {
    /// Parses an error answer. The fields are read one by one, leniently (a code may come as a
    /// string), because a failure should be classified by whatever the body does say rather than
    /// dropped for one odd field. `None` when the body is no Graph error at all.
    pub(crate) fn parse(body: &[u8]) -> Option<GraphError> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let error = value.get("error")?.as_object()?;
        let text = |value: Option<&Value>| {
            value
                .and_then(Value::as_str)
                .filter(|text| !text.trim().is_empty())
                .map(str::to_owned)
        };
        let number = |value: Option<&Value>| match value? {
            Value::Number(number) => number.as_i64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        };
        Some(GraphError {
            message: text(error.get("message")),
            kind: text(error.get("type")),
            code: number(error.get("code")),
            subcode: number(error.get("error_subcode")),
            details: text(error.get("error_data").and_then(|data| data.get("details"))),
            fbtrace_id: text(error.get("fbtrace_id")),
        })
    }
}

/// A non-2xx answer of the Graph API (or of the media host), with all that classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `Retry-After` header, when it gave a number of seconds.
    pub retry_after: Option<Duration>,
    /// The Graph error in the body, when there was one.
    pub error: Option<GraphError>,
    /// The start of a body that was not a Graph error (a proxy's error page, say), for the reason.
    pub excerpt: Option<String>,
}

impl Failure {
    /// Reads a failed answer. A body that cannot be read is no reason to lose the status, which
    /// classifies the failure on its own.
    pub(crate) async fn read(response: Response) -> Failure {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let body = read_limited(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        Failure::from_parts(status, retry_after, &body)
    }

    /// A failure from its status, `Retry-After` and body.
    pub(crate) fn from_parts(
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Failure {
        let error = GraphError::parse(body);
        let excerpt = match error {
            Some(_) => None,
            None => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                (!text.is_empty()).then(|| text.chars().take(EXCERPT_CHARS).collect())
            }
        };
        Failure {
            status,
            retry_after,
            error,
            excerpt,
        }
    }

    /// The Graph error code, when the body gave one.
    pub(crate) fn code(&self) -> Option<i64> {
        self.error.as_ref().and_then(|error| error.code)
    }

    /// What went wrong, as the provider put it: its message and details, or the HTTP status and
    /// the start of the body when it gave no Graph error.
    pub(crate) fn reason(&self) -> String {
        let error = self.error.as_ref();
        let message = error.and_then(|error| error.message.as_deref());
        let details = error.and_then(|error| error.details.as_deref());
        match (message, details) {
            (Some(message), Some(details)) if !message.contains(details) => {
                format!("{message}: {details}")
            }
            (Some(message), _) => message.to_owned(),
            (None, Some(details)) => format!("HTTP {}: {details}", self.status),
            (None, None) => match &self.excerpt {
                Some(excerpt) => format!("HTTP {}: {excerpt}", self.status),
                None => format!("HTTP {}", self.status),
            },
        }
    }

    /// Whether the access token was refused.
    pub(crate) fn is_auth(&self) -> bool {
        !self.is_transient()
            && (self.status == StatusCode::UNAUTHORIZED
                || self.code().is_some_and(|code| AUTH_CODES.contains(&code)))
    }

    /// Whether a retry may succeed: rate limits and server-side trouble.
    pub(crate) fn is_transient(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status.is_server_error()
            || self
                .code()
                .is_some_and(|code| RATE_LIMIT_CODES.contains(&code))
            // Anything that is neither a success nor a client error (a stray redirect) says
            // nothing about the request itself.
            || !self.status.is_client_error()
    }

    /// The failure as the gateway sees it. Pure: [`Failure::into_send_error`] adds the logging.
    pub(crate) fn classify(&self) -> SendError {
        if self.is_transient() {
            return SendError::Transient {
                retry_after: self.retry_after,
                reason: self.reason(),
            };
        }
        let code = match self.code() {
            Some(code) => code.to_string(),
            None if self.is_auth() => AUTH_FALLBACK_CODE.to_owned(),
            None => self.status.as_u16().to_string(),
        };
        SendError::permanent(code, self.reason())
    }

    /// Classifies the failure of a request made for `account` and logs it. A refused token is
    /// logged as an error: every message of the number fails until an operator replaces it.
    pub(crate) fn into_send_error(self, account: &str) -> SendError {
        let error = self.error.clone().unwrap_or_default();
        if self.is_auth() {
            tracing::error!(
                phone_number_id = account,
                status = self.status.as_u16(),
                code = error.code,
                subcode = error.subcode,
                fbtrace_id = error.fbtrace_id,
                reason = %self.reason(),
                "the WhatsApp access token was refused; check the access token of phone number {account}"
            );
        } else {
            tracing::warn!(
                phone_number_id = account,
                status = self.status.as_u16(),
                code = error.code,
                subcode = error.subcode,
                error_type = error.kind,
                fbtrace_id = error.fbtrace_id,
                reason = %self.reason(),
                "the Graph API refused a request"
            );
        }
        self.classify()
    }
}

/// `Retry-After` as a number of seconds. The HTTP-date form is not used by the Graph API and is
/// ignored: the gateway's own backoff applies then.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn failure(status: u16, retry_after: Option<u64>, body: &str) -> Failure {
        Failure::from_parts(
            StatusCode::from_u16(status).unwrap(),
            retry_after.map(Duration::from_secs),
            body.as_bytes(),
        )
    }

    fn graph_error(code: i64) -> String {
        serde_json::json!({"error": {
            "message": format!("(#{code}) something"),
            "type": "OAuthException",
            "code": code,
            "error_data": {"details": "more about it"},
            "fbtrace_id": "Ax1"
        }})
        .to_string()
    }

    #[test]
    fn rate_limits_and_server_errors_are_transient() {
        for code in RATE_LIMIT_CODES {
            assert!(matches!(
                failure(400, None, &graph_error(code)).classify(),
                SendError::Transient { .. }
            ));
        }
        assert_eq!(
            failure(429, Some(7), "").classify(),
            SendError::Transient {
                retry_after: Some(Duration::from_secs(7)),
                reason: "HTTP 429 Too Many Requests".into()
            }
        );
        // A server error is transient whatever code it carries.
        assert!(matches!(
            failure(500, None, &graph_error(100)).classify(),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            failure(502, None, "<html>Bad gateway</html>").classify(),
            SendError::Transient { reason, .. } if reason == "HTTP 502 Bad Gateway: <html>Bad gateway</html>"
        ));
    }

    #[test]
    fn refused_tokens_and_bad_requests_are_permanent() {
        assert_eq!(
            failure(401, None, &graph_error(190)).classify(),
            SendError::permanent("190", "(#190) something: more about it")
        );
        assert_eq!(
            failure(401, None, "").classify(),
            SendError::permanent("190", "HTTP 401 Unauthorized")
        );
        assert!(failure(400, None, &graph_error(0)).is_auth());
        assert!(!failure(400, None, &graph_error(100)).is_auth());
        for code in [10, 100, 131026, 131047, 131051] {
            assert!(matches!(
                failure(400, None, &graph_error(code)).classify(),
                SendError::Permanent { code: given, .. } if given == code.to_string()
            ));
        }
        assert_eq!(
            failure(403, None, "forbidden").classify(),
            SendError::permanent("403", "HTTP 403 Forbidden: forbidden")
        );
    }

    #[test]
    fn error_bodies_are_read_leniently() {
        let parsed = GraphError::parse(
            br#"{"error":{"message":"m","code":"130429","error_subcode":2494055,"error_data":{}}}"#,
        )
        .unwrap();
        assert_eq!(parsed.code, Some(130429));
        assert_eq!(parsed.subcode, Some(2494055));
        assert_eq!(parsed.details, None);
        assert_eq!(GraphError::parse(b"not json"), None);
        assert_eq!(GraphError::parse(br#"{"success":false}"#), None);
        let long = "x".repeat(1000);
        assert_eq!(
            failure(400, None, &long).excerpt.unwrap().len(),
            EXCERPT_CHARS
        );
    }

    #[test]
    fn retry_after_takes_seconds_only() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(
            path_segment("106540352242922", "media id"),
            Ok("106540352242922")
        );
        for bad in ["", "..", "a/b", "a?b", "a b", "%2e%2e"] {
            assert!(
                matches!(
                    path_segment(bad, "media id"),
                    Err(SendError::Permanent { code, .. }) if code == "invalid_media_id"
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_or_blank_tokens_are_permanent() {
        let mut settings = testing::settings_for("http://localhost");
        assert_eq!(
            token(&settings, testing::OWN_NUMBER),
            Ok(testing::OWN_TOKEN)
        );
        assert_eq!(token(&settings, "other"), Ok(testing::DEFAULT_TOKEN));
        settings.access_token = Some("  ".into());
        assert!(matches!(
            token(&settings, "other"),
            Err(SendError::Permanent { code, .. }) if code == "no_access_token"
        ));
    }
}
