//! The HTTP side of the gateway: one axum router for the chat API, event streams, the widget page,
//! provider webhooks, stored media, the staff API and dashboard, and operations endpoints.
//!
//! Handlers stay thin: they extract and validate, call the pipeline or the store, and shape the
//! answer. Every error is an [`ApiError`].
//!
//! # Every route is in the OpenAPI document
//!
//! `GET /openapi.json` and the page `GET /docs` are generated from the code ([`openapi`]). A new
//! route needs three things, or the end-to-end test `openapi` fails (it reads every `.route(…)`
//! call under `src/http/` and compares the paths and methods with the document):
//!
//! 1. `#[utoipa::path(...)]` on its handler: method, path (as in `.route`, `{*rest}` written
//!    `{rest}`), `tag`, `summary`, the security scheme (`device_id`/`visitor_jwt` for visitors,
//!    `staff_token`/`dashboard_session` for staff, `operator_token`), `params(...)` for path,
//!    query (`IntoParams` on the query type) and header parameters, `request_body`, and every
//!    response: the success with its body type, and each error status with
//!    `body = crate::http::error::ErrorBody` and its codes in the description. For example:
//!
//!    ```text
//!    #[utoipa::path(
//!        get,
//!        path = "/v1/admin/usage",
//!        tag = "admin",
//!        summary = "Usage per contact",
//!        security(("staff_token" = []), ("dashboard_session" = [])),
//!        params(UsageQuery),
//!        responses(
//!            (status = 200, description = "A page", body = UsagePage),
//!            (status = 401, description = "`unauthenticated`, `invalid_token`", body = crate::http::error::ErrorBody),
//!            (status = 403, description = "`forbidden`: admins only", body = crate::http::error::ErrorBody),
//!        ),
//!    )]
//!    pub(super) async fn usage(/* … */) -> Result<Response, ApiError> { /* … */ }
//!    ```
//!
//! 2. `#[derive(utoipa::ToSchema)]` on the bodies it takes and sends (`utoipa::IntoParams` with
//!    `#[into_params(parameter_in = Query)]` on a query type); a body built with `json!` is
//!    described by a struct in [`openapi`]`::schemas`.
//! 3. The handler in the `paths(...)` list of [`openapi`]'s `ApiDoc` (or, when its module keeps
//!    it private, in that module's own `Api`, merged in [`openapi::document`]).

mod admin;
mod agents;
pub mod auth;
mod chat;
mod conversations;
mod dashboard;
pub mod error;
mod events;
pub mod extract;
mod follow;
mod media;
pub mod openapi;
mod ops;
mod pages;
mod paging;
mod privacy;
pub mod server;
mod staff;
mod staff_streams;
mod supervisor;
mod uploads;
mod usage;
mod webhook;
mod ws;

use std::{sync::Arc, time::Duration};

use axum::middleware;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    routing::{get, post},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ApiError;

use crate::{
    channels::Channels, config::Config, experts::Experts, limits::Limits, live::Hub,
    media_dir::MediaDir, pipeline::Pipeline, staff::Staff, store::Store, telemetry::requests,
    time::Clock,
};
use switchboard_web::identity::IdentityVerifier;

/// What handlers share: one reference, cloned for every request (and by every layer that
/// takes the state), so a request pays one reference count, not one per service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl From<Services> for AppState {
    fn from(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services handlers use (see [`AppState`]).
pub struct Services {
    /// The configuration the gateway runs with.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// The conversation pipeline.
    pub pipeline: Pipeline,
    /// The agents visitors may see and choose.
    pub agents: Arc<crate::agents::Catalogue>,
    /// Live events.
    pub hub: Hub,
    /// Checks website visitor identities.
    pub identity: Arc<IdentityVerifier>,
    /// The gateway's own clock.
    pub clock: Clock,
    /// Where visitors reach the gateway, without a trailing slash.
    pub public_url: Arc<str>,
    /// The media directory.
    pub files: MediaDir,
    /// The channels' connectors.
    pub channels: Channels,
    /// The experts' side.
    pub experts: Experts,
    /// Staff authentication.
    pub staff: Staff,
    /// Rate limits and stream caps.
    pub limits: Arc<Limits>,
    /// Proxies whose `X-Forwarded-For` is believed (`server.trusted_proxies`).
    pub proxies: Arc<[ipnet::IpNet]>,
    /// The memory webhook bodies may take before they are authenticated (providers whose proof
    /// covers the body), in KiB: see `webhook::reserve_unverified`.
    pub unverified_bodies: Arc<tokio::sync::Semaphore>,
    /// Starting, serving or stopping (`/readyz`), and the uptime.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// The metrics exporter, unless the process records metrics elsewhere.
    pub metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
}

/// The gateway's routes.
pub fn router(state: AppState) -> Router {
    openapi::prepare();
    // The visitor API works from any site that embeds the widget (CORS, preflights included);
    // its method-not-allowed answer is set before the CORS layer so that the layer wraps it too
    // (an `OPTIONS` preflight is such a request until the layer answers it).
    let visitor_api = Router::new()
        .route("/v1/chat/messages", post(chat::post_message))
        .route("/v1/chat/stream", post(chat::stream_message))
        .route("/v1/agents", get(agents::list))
        .route("/v1/agents/recommend", post(agents::recommend))
        .route("/v1/chat/ws", get(ws::open))
        .route(
            "/v1/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route(
            "/v1/conversations/{id}",
            get(conversations::get_one)
                .patch(conversations::rename)
                .delete(conversations::delete),
        )
        .route(
            "/v1/conversations/{id}/messages",
            get(conversations::messages),
        )
        .route(
            "/v1/conversations/{id}/handoff",
            post(conversations::handoff),
        )
        .route("/v1/conversations/{id}/events", get(events::stream))
        .route(
            "/v1/uploads",
            post(uploads::create).layer(DefaultBodyLimit::max(
                usize::try_from(
                    state
                        .config
                        .web
                        .max_upload_bytes
                        .saturating_add(uploads::FRAMING_BYTES),
                )
                .unwrap_or(usize::MAX),
            )),
        )
        // The visitor fetches their own uploads from the widget, on any site.
        .route("/v1/media/{id}", get(media::get))
        .route("/v1/me", axum::routing::delete(privacy::erase_me))
        .route("/v1/me/export", get(privacy::export_me))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors(&state.config));
    Router::new()
        .merge(visitor_api)
        .merge(webhook::routes())
        .merge(staff_api())
        .merge(dashboard::routes())
        .route("/", get(pages::index))
        .route("/widget.js", get(pages::widget))
        .route("/healthz", get(ops::health))
        .route("/readyz", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/version", get(ops::version))
        .route("/openapi.json", get(openapi::json))
        .route("/docs", get(openapi::page))
        .route_layer(middleware::from_fn(requests::note_route))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(middleware::from_fn(requests::observe))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// The staff's API: sign-in, experts, supervisors, admins.
fn staff_api() -> Router<AppState> {
    use axum::routing::put;
    Router::new()
        .route("/v1/auth/token", post(staff::token))
        .route("/v1/expert/me", get(staff::me))
        .route("/v1/expert/me/availability", put(staff::availability))
        .route("/v1/expert/queue", get(staff::queue))
        .route("/v1/expert/events", get(staff::events))
        .route("/v1/expert/conversations", get(staff::mine))
        .route("/v1/expert/conversations/{id}", get(staff::open))
        .route("/v1/expert/conversations/{id}/messages", post(staff::reply))
        .route("/v1/expert/conversations/{id}/claim", post(staff::claim))
        .route(
            "/v1/expert/conversations/{id}/transfer",
            post(staff::transfer),
        )
        .route(
            "/v1/expert/conversations/{id}/release",
            post(staff::release),
        )
        .route("/v1/expert/conversations/{id}/close", post(staff::close))
        .route(
            "/v1/expert/conversations/{id}/events",
            get(staff::conversation_events),
        )
        .route("/v1/expert/conversations/{id}/export", get(staff::export))
        .route("/v1/supervisor/conversations", get(supervisor::live))
        .route(
            "/v1/supervisor/conversations/{id}/observe",
            get(supervisor::observe),
        )
        .route(
            "/v1/supervisor/users/{id}/conversations",
            get(supervisor::of_contact),
        )
        .route("/v1/supervisor/contacts", get(supervisor::search))
        .route("/v1/supervisor/evaluations", get(supervisor::evaluations))
        .route(
            "/v1/admin/users",
            post(admin::add_user).get(admin::list_users),
        )
        .route(
            "/v1/admin/users/{id}",
            axum::routing::delete(admin::disable_user),
        )
        .route("/v1/admin/audit", get(admin::audit_log))
        .route(
            "/v1/admin/contacts/{id}",
            axum::routing::delete(privacy::erase_contact).patch(privacy::correct_contact),
        )
        .route(
            "/v1/admin/contacts/{id}/export",
            get(privacy::export_contact),
        )
        .route("/v1/admin/usage", get(usage::totals))
        .route(
            "/v1/admin/contacts/{id}/plan",
            put(usage::set_plan).get(usage::get_plan),
        )
}

fn cors(config: &Config) -> CorsLayer {
    let origins = &config.web.allowed_origins;
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    // No credentials (cookies) cross origins: visitors identify with headers.
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-device-id"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
            requests::REQUEST_ID,
        ])
        .expose_headers([header::RETRY_AFTER, requests::REQUEST_ID])
        .max_age(Duration::from_secs(3600))
}
