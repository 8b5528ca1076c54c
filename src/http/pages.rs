//! The page at `/` and the embeddable widget at `/widget.js`.

use askama::Template;
use axum::{
    extract::State,
    http::header,
    response::{Html, IntoResponse},
};

use super::{AppState, error::ApiError};

/// The demo page: the widget, live, and how to embed it elsewhere.
#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    /// Where the gateway is reachable.
    public_url: &'a str,
    /// The gateway version.
    version: &'a str,
    /// The largest upload, for the widget's own check before it uploads.
    max_upload_bytes: u64,
}

/// `GET /`
#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    summary = "The demo page",
    description = "The widget, live, and the one line that embeds it on another site.",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 500, description = "`internal`: details only in the log", body = crate::http::error::ErrorBody),
    ),
)]
pub(super) async fn index(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let page = IndexPage {
        public_url: &state.public_url,
        version: env!("CARGO_PKG_VERSION"),
        max_upload_bytes: state.config.web.max_upload_bytes,
    };
    page.render().map(Html).map_err(|e| ApiError::internal(&e))
}

/// `GET /widget.js`
#[utoipa::path(
    get,
    path = "/widget.js",
    tag = "pages",
    summary = "The embeddable widget",
    description = "`<script src=\"…/widget.js\" async></script>` on any page.",
    responses(
        (status = 200, description = "The script", content_type = "application/javascript", body = String),
    ),
)]
pub(super) async fn widget() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        switchboard_web::WIDGET_JS,
    )
}
