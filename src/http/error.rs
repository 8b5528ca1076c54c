//! The one error type of the HTTP API.
//!
//! Every failure answers `{"error":{"code":"…","message":"…"}}` with the right status. Codes are
//! stable, lowercase identifiers clients can branch on; messages are for people. Internal failures
//! are logged once, with detail, and answered with a generic message.

use axum::{
    Json,
    extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use switchboard_web::{identity::IdentityError, request::RequestError};

use crate::{
    experts::ExpertError,
    limits::{Refused, streams::StreamRefused},
    pipeline::{HandoffError, IngestError},
    store::StoreError,
};

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// A header the answer needs (`WWW-Authenticate` with a 401).
    header: Option<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    /// The same error, answered with a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.header = Some((name, value));
        self
    }

    /// 404 for anything the caller may not see or that does not exist; the two are
    /// indistinguishable on purpose.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 422 for a well-formed request with unacceptable values.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500; the cause goes to the log, not to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; please try again",
        )
    }

    /// 429 for a request over a limit: `Retry-After` says when trying again makes sense. The
    /// request changed nothing.
    pub fn rate_limited(refused: Refused) -> Self {
        // Whole seconds, rounded up: "0" would invite an immediate retry.
        let seconds =
            refused.retry_after.as_secs() + u64::from(refused.retry_after.subsec_nanos() > 0);
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{}; try again in {} s", refused.reason, seconds.max(1)),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code clients branch on.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The seconds of its `Retry-After` header, when it has one (a refusal over a limit).
    pub fn retry_after(&self) -> Option<u64> {
        self.header
            .as_ref()
            .filter(|(name, _)| name == header::RETRY_AFTER)
            .and_then(|(_, value)| value.to_str().ok()?.parse().ok())
    }
}

/// The body of every error answer: `{"error":{"code","message"}}`. The OpenAPI document
/// describes every error response with this type's schema.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, lowercase identifier clients can branch on (`not_found`, `rate_limited`, …).
    #[schema(example = "not_found")]
    pub code: &'static str,
    /// For people; may change between versions.
    #[schema(example = "conversation not found")]
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some((name, value)) = self.header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        ApiError::rate_limited(refused)
    }
}

impl From<StreamRefused> for ApiError {
    fn from(refused: StreamRefused) -> Self {
        // A place frees up when another stream of the same client ends; an owner or address at
        // its maximum has to close one first, which a short wait will not change.
        let retry_after = match refused {
            StreamRefused::Total => std::time::Duration::from_secs(5),
            StreamRefused::Owner | StreamRefused::Address => std::time::Duration::from_secs(30),
        };
        ApiError::rate_limited(Refused {
            retry_after,
            reason: match refused {
                StreamRefused::Owner => "too many event streams open for this visitor or account",
                StreamRefused::Address => "too many event streams open from this address",
                StreamRefused::Total => "the gateway has too many event streams open",
            },
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::ConversationNotFound => ApiError::not_found("conversation"),
            IngestError::ConversationClosed => ApiError::new(
                StatusCode::CONFLICT,
                "conversation_closed",
                "this conversation is closed; start a new one",
            ),
            IngestError::Replayed => ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "replayed",
                "this request was already received; its one-time token cannot be used again",
            ),
            IngestError::Limited(refused) => ApiError::rate_limited(refused),
            IngestError::OverQuota(exceeded) => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "quota_exceeded",
                exceeded.reason,
            ),
            IngestError::Store(e) => ApiError::internal(&e),
            IngestError::Internal(e) => ApiError::internal(&e),
        }
    }
}

impl From<HandoffError> for ApiError {
    fn from(e: HandoffError) -> Self {
        match e {
            HandoffError::NotFound => ApiError::not_found("conversation"),
            HandoffError::Closed => ApiError::new(
                StatusCode::CONFLICT,
                "conversation_closed",
                "this conversation is closed",
            ),
            HandoffError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<ExpertError> for ApiError {
    fn from(e: ExpertError) -> Self {
        match e {
            ExpertError::NotFound => ApiError::not_found("conversation"),
            ExpertError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, "conflict", why),
            ExpertError::Invalid(why) => ApiError::invalid("invalid_request", why),
            ExpertError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        let code = match e {
            IdentityError::Missing => "unauthenticated",
            IdentityError::TokenRequired => "token_required",
            IdentityError::InvalidDeviceId => "invalid_device_id",
            IdentityError::MalformedAuthorization
            | IdentityError::TokensDisabled
            | IdentityError::InvalidToken(_) => "invalid_token",
        };
        let status = match e {
            IdentityError::InvalidDeviceId => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let code = match e {
            RequestError::EmptyContent => "empty_content",
            RequestError::ContentTooLong { .. } => "content_too_long",
            RequestError::TooManyAttachments { .. } => "too_many_attachments",
            RequestError::InvalidAttachment { .. } => "invalid_attachment",
            RequestError::InvalidConversationId => "invalid_conversation_id",
            RequestError::InvalidIdempotencyKey => "invalid_idempotency_key",
            RequestError::InvalidField { field, .. } => match field {
                "title" => "invalid_title",
                "source" => "invalid_source",
                "metadata" => "invalid_metadata",
                "message_type" => "invalid_message_type",
                _ => "invalid_request",
            },
        };
        let status = match e {
            RequestError::InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => ApiError::invalid("invalid_request", e.body_text()),
            JsonRejection::BytesRejection(e) => ApiError::from(e),
            other => ApiError::new(other.status(), "invalid_request", other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            );
        }
        if super::server::is_body_timeout(&rejection) {
            return body_timeout();
        }
        ApiError::new(rejection.status(), "invalid_request", rejection.body_text())
    }
}

/// 408: the body did not arrive within `server.body_timeout`.
pub(crate) fn body_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body took too long to arrive",
    )
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid("invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}
