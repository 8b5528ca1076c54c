//! `POST /webhooks/telegram/{bot}`: updates Telegram posts for a bot in webhook mode, each with
//! the secret given to `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`.

use axum::{
    Json,
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use switchboard_channel::Channel;
use switchboard_telegram::{SECRET_HEADER, parse, verify_secret};

use super::{body, channel_off, summary};
use crate::http::{ApiError, AppState, extract::ApiPath};

/// Checks the secret, parses the update, and answers 200 once it is stored.
pub async fn receive(
    State(state): State<AppState>,
    ApiPath(bot): ApiPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(telegram) = state.channels.telegram() else {
        return Err(channel_off("telegram"));
    };
    let Some(secret) = telegram.webhook_secret(&bot) else {
        return Err(ApiError::not_found("telegram bot"));
    };
    let given = request
        .headers()
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok());
    if verify_secret(given, secret).is_err() {
        tracing::warn!(%bot, "refused a Telegram webhook without the right secret");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_secret",
            "the X-Telegram-Bot-Api-Secret-Token header is missing or wrong",
        ));
    }
    // Authenticated: now the body is worth reading.
    let body = body(request, switchboard_telegram::MAX_UPDATE_BYTES).await?;
    let parsed = parse(&body, &telegram.identity(&bot))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", e.to_string()))?;
    let received = parsed.events.len();
    let outcomes = if received > 0 {
        state
            .pipeline
            .ingest(Channel::Telegram, parsed.events)
            .await?
    } else {
        Vec::new()
    };
    if let Some(id) = parsed.callback_query_id {
        telegram.answer_callback(&bot, id);
    }
    let mut answer = summary(received, &outcomes);
    if let Some(reason) = parsed.ignored {
        answer["ignored"] = reason.into();
    }
    Ok(Json(answer).into_response())
}
