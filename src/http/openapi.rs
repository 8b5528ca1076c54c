//! The API's OpenAPI 3.1 document (`GET /openapi.json`) and the page that shows it to people
//! (`GET /docs`).
//!
//! The document is generated from the code: every handler carries a `#[utoipa::path]` attribute
//! (method, path, parameters, request body, every response with its status), the types the API
//! takes and sends derive `utoipa::ToSchema`, and [`ApiDoc`] lists the handlers. Answers that
//! handlers build as ad-hoc JSON are described by the types in [`schemas`]. The end-to-end test
//! `openapi` compares the router-building code with the document, so a route added without its
//! annotation fails the tests (see the module docs of [`super`] for how to annotate one).
//!
//! Both answers are built once, when the router is built, not per request. The page is rendered
//! on the server from the same document (askama, `templates/docs.html`) with its styles inline
//! and nothing loaded from anywhere else, so it works offline and under a strict
//! Content-Security-Policy — unlike the usual viewers, which load their scripts from CDNs.

use std::{collections::BTreeMap, sync::LazyLock};

use askama::Template;
use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme},
};

use super::{
    ApiError, admin, agents, chat, conversations, dashboard, error::ErrorBody, events, media, ops,
    pages, privacy, staff, supervisor, uploads, usage, webhook, ws,
};

/// The document's list of operations and components. Handlers whose module keeps them private
/// (webhooks, the dashboard) are listed by their module's own `Api` and merged in [`document`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "A multi-channel messaging bot gateway: the website chat API, channel \
            webhooks, the staff API and dashboard, and operations endpoints.\n\n\
            Every error answers `{\"error\":{\"code\",\"message\"}}` (schema `ErrorBody`) and \
            changes nothing. Any route answers `405 method_not_allowed` to a method it does not \
            take and an unknown path `404 not_found`; a body over `server.max_body_bytes` is \
            `413 body_too_large`, one that does not arrive within `server.body_timeout` is \
            `408 body_timeout`.",
        license(name = "MIT"),
    ),
    paths(
        chat::post_message,
        chat::stream_message,
        agents::list,
        agents::recommend,
        ws::open,
        uploads::create,
        conversations::list,
        conversations::create,
        conversations::get_one,
        conversations::rename,
        conversations::delete,
        conversations::messages,
        conversations::handoff,
        events::stream,
        media::get,
        staff::token,
        staff::me,
        staff::availability,
        staff::queue,
        staff::events,
        staff::mine,
        staff::open,
        staff::reply,
        staff::claim,
        staff::transfer,
        staff::release,
        staff::close,
        staff::conversation_events,
        staff::export,
        supervisor::live,
        supervisor::observe,
        supervisor::of_contact,
        supervisor::search,
        supervisor::evaluations,
        admin::add_user,
        admin::list_users,
        admin::disable_user,
        admin::audit_log,
        pages::index,
        pages::widget,
        ops::health,
        ops::ready,
        ops::metrics,
        ops::version,
        privacy::export_me,
        privacy::erase_me,
        privacy::export_contact,
        privacy::erase_contact,
        privacy::correct_contact,
        usage::totals,
        usage::set_plan,
        usage::get_plan,
        json,
        page,
    ),
    components(schemas(ErrorBody, switchboard_web::stream::Chunk)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "chat", description = "Website visitors send messages and get the replies."),
        (name = "agents", description = "The agents a visitor may choose for a message, and a recommendation of one for a task."),
        (name = "conversations", description = "A visitor's own conversations and their live events."),
        (name = "webhooks", description = "Every channel's provider webhooks, one generic route."),
        (name = "media", description = "Stored copies of files users sent, for the operator."),
        (name = "auth", description = "Staff sign-in for API clients."),
        (name = "expert", description = "Experts: availability, the queue, their conversations."),
        (name = "supervisor", description = "Supervisors: live conversations, contacts, evaluations (audited)."),
        (name = "admin", description = "Admins: staff accounts and the audit log."),
        (name = "dashboard", description = "The staff dashboard: server-rendered pages and fragments (session cookie)."),
        (name = "pages", description = "The demo page and the embeddable widget."),
        (name = "operations", description = "Health, readiness, metrics, version, and this documentation."),
        (name = "privacy", description = "Data subject rights: export and erasure of everything stored about a person; corrections by admins."),
    )
)]
struct ApiDoc;

/// The security schemes operations refer to by name.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let schemes = [
            (
                "device_id",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-Device-ID",
                    "A website visitor's device: 1–128 of A-Z a-z 0-9 . _ : - (the widget keeps a \
                     random one). Event streams also take it as `?device_id=`.",
                ))),
            ),
            (
                "visitor_jwt",
                SecurityScheme::Http(
                    Http::builder()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "A website visitor's HS256 JWT with `sub` and `exp`, when \
                             `web.jwt_secret` is set. Event streams also take it as \
                             `?access_token=`.",
                        ))
                        .build(),
                ),
            ),
            (
                "staff_token",
                SecurityScheme::Http(
                    Http::builder()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some("A staff member's token from `POST /v1/auth/token`."))
                        .build(),
                ),
            ),
            (
                "dashboard_session",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    super::extract::SESSION_COOKIE,
                    "The dashboard's session cookie (set by `POST /dashboard/login`). Requests \
                     that change something must echo the session's CSRF token in `X-CSRF-Token`.",
                ))),
            ),
            (
                "operator_token",
                SecurityScheme::Http(
                    Http::builder()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("The operator's token, `server.admin_token`."))
                        .build(),
                ),
            ),
            (
                "metrics_token",
                SecurityScheme::Http(
                    Http::builder()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "The metrics scraper's token, `server.metrics_token`, when it is set.",
                        ))
                        .build(),
                ),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
    }
}

/// The whole document: [`ApiDoc`] and the modules that list their own handlers.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(webhook::Api::openapi());
    doc.merge(dashboard::Api::openapi());
    unique_operation_ids(&mut doc);
    doc
}

/// Operation ids must be unique, and utoipa names an operation after its handler: handlers of
/// the same name in two modules (`pages::index`, `dashboard::pages::index`), or one handler for
/// two methods, would share one. A shared id becomes `<method>_<path>` for each of them (the
/// end-to-end test `openapi` checks that the result is unique).
fn unique_operation_ids(doc: &mut utoipa::openapi::OpenApi) {
    use std::collections::HashMap;
    let mut uses: HashMap<String, usize> = HashMap::new();
    for item in doc.paths.paths.values() {
        for op in operations(item) {
            if let Some(id) = &op.operation_id {
                *uses.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations_mut(item) {
            if op.operation_id.as_ref().is_some_and(|id| uses[id] > 1) {
                let slug: String = path
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let slug = slug.trim_matches('_');
                let slug = if slug.is_empty() { "root" } else { slug };
                op.operation_id = Some(format!("{method}_{slug}"));
            }
        }
    }
}

fn operations(
    item: &utoipa::openapi::PathItem,
) -> impl Iterator<Item = &utoipa::openapi::path::Operation> {
    [
        &item.get,
        &item.put,
        &item.post,
        &item.delete,
        &item.options,
        &item.head,
        &item.patch,
        &item.trace,
    ]
    .into_iter()
    .flatten()
}

fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut utoipa::openapi::path::Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// The two answers, built once.
struct Built {
    /// `/openapi.json`.
    json: String,
    /// `/docs`, or why it could not be rendered.
    page: Result<String, String>,
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let doc = document();
    // The document is plain data the code built; serializing it cannot meet anything it does
    // not support.
    let value = serde_json::to_value(&doc).unwrap_or(Value::Null);
    Built {
        json: serde_json::to_string(&value).unwrap_or_default(),
        page: DocsPage::from_document(&value)
            .render()
            .map_err(|e| e.to_string()),
    }
});

/// Builds both answers now, so that the first reader does not wait for them.
pub(super) fn prepare() {
    LazyLock::force(&BUILT);
}

/// `GET /openapi.json`
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This document",
    description = "The OpenAPI 3.1 document of every route, generated from the code.",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object)),
)]
pub(super) async fn json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        BUILT.json.as_str(),
    )
        .into_response()
}

/// What the docs page may load: nothing but its own inline styles.
const DOCS_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /docs`
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    summary = "The API documentation, for people",
    description = "Every operation of this document on one page: method, path, parameters, request \
        body, responses and schemas. Self-contained (no script, no external resource).",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 500, description = "`internal`: the page could not be rendered", body = ErrorBody),
    ),
)]
pub(super) async fn page() -> Response {
    match &BUILT.page {
        Ok(html) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(DOCS_POLICY),
                ),
            ],
            html.as_str(),
        )
            .into_response(),
        Err(e) => {
            ApiError::internal(&format!("the docs page cannot be rendered: {e}")).into_response()
        }
    }
}

/// The docs page.
#[derive(Template)]
#[template(path = "docs.html")]
struct DocsPage {
    title: String,
    version: String,
    description: Prose,
    sections: Vec<Section>,
    security: Vec<Named>,
    schemas: Vec<Named>,
}

/// The operations of one tag.
struct Section {
    tag: String,
    description: Prose,
    operations: Vec<Operation>,
}

/// One method of one path.
struct Operation {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    description: Prose,
    security: Vec<String>,
    parameters: Vec<Parameter>,
    request: Option<Body>,
    responses: Vec<Answer>,
}

struct Parameter {
    name: String,
    location: String,
    required: bool,
    kind: Kind,
    description: Prose,
}

/// A body: its media types and its schema.
struct Body {
    content_types: String,
    kind: Option<Kind>,
    required: bool,
    description: Prose,
}

struct Answer {
    status: String,
    description: Prose,
    headers: Vec<String>,
    body: Option<Body>,
}

/// A description, with its `code` spans told apart from the words around them, so that the page
/// can show them as code while the template still escapes every piece.
#[derive(Default)]
struct Prose {
    spans: Vec<Span>,
}

struct Span {
    code: bool,
    text: String,
}

impl Prose {
    fn new(text: &str) -> Prose {
        // Between backticks is code: the pieces alternate, starting with words.
        let spans = text
            .split('`')
            .enumerate()
            .filter(|(_, piece)| !piece.is_empty())
            .map(|(i, piece)| Span {
                code: i % 2 == 1,
                text: piece.to_owned(),
            })
            .collect();
        Prose { spans }
    }

    fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// A schema in one line: its text, and the component it names (for a link), if any.
struct Kind {
    text: String,
    link: Option<String>,
}

/// A named block: a security scheme or a component schema, shown as JSON.
struct Named {
    name: String,
    text: String,
}

/// The order methods are shown in.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "options", "head", "trace",
];

impl DocsPage {
    fn from_document(doc: &Value) -> DocsPage {
        fn text<'a>(v: &'a Value, key: &str) -> &'a str {
            v.get(key).and_then(Value::as_str).unwrap_or_default()
        }
        let info = &doc["info"];
        let mut by_tag: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                by_tag
                    .entry(tag)
                    .or_default()
                    .push(Operation::new(method, path, op));
            }
        }
        // Tags in the order the document declares them, then any it does not.
        let mut sections = Vec::new();
        for tag in doc["tags"].as_array().into_iter().flatten() {
            let name = text(tag, "name");
            if let Some(operations) = by_tag.remove(name) {
                sections.push(Section {
                    tag: name.to_owned(),
                    description: Prose::new(text(tag, "description")),
                    operations,
                });
            }
        }
        sections.extend(by_tag.into_iter().map(|(tag, operations)| Section {
            tag,
            description: Prose::default(),
            operations,
        }));
        let named = |v: &Value| -> Vec<Named> {
            v.as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| Named {
                    name: name.clone(),
                    text: serde_json::to_string_pretty(value).unwrap_or_default(),
                })
                .collect()
        };
        DocsPage {
            title: text(info, "title").to_owned(),
            version: text(info, "version").to_owned(),
            description: Prose::new(text(info, "description")),
            sections,
            security: named(&doc["components"]["securitySchemes"]),
            schemas: named(&doc["components"]["schemas"]),
        }
    }
}

impl Operation {
    fn new(method: &str, path: &str, op: &Value) -> Operation {
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let anchor = format!("{method}-{path}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let security = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(|alternative| alternative.keys().cloned().collect::<Vec<_>>().join(" + "))
            .collect();
        let parameters = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Parameter {
                name: text(p, "name"),
                location: text(p, "in"),
                required: p["required"].as_bool().unwrap_or(false),
                kind: Kind::of(&p["schema"]),
                description: Prose::new(&text(p, "description")),
            })
            .collect();
        let request = op
            .get("requestBody")
            .map(|b| Body::of(b, b["required"].as_bool().unwrap_or(false)));
        let responses = op["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(status, r)| Answer {
                status: status.clone(),
                description: Prose::new(&text(r, "description")),
                headers: r["headers"]
                    .as_object()
                    .map(|h| h.keys().cloned().collect())
                    .unwrap_or_default(),
                body: r.get("content").map(|_| Body::of(r, false)),
            })
            .collect();
        Operation {
            anchor,
            method: method.to_uppercase(),
            path: path.to_owned(),
            summary: text(op, "summary"),
            description: Prose::new(&text(op, "description")),
            security,
            parameters,
            request,
            responses,
        }
    }
}

impl Body {
    /// A request body or a response: `content` maps media types to schemas.
    fn of(v: &Value, required: bool) -> Body {
        let content = v["content"].as_object();
        let content_types = content
            .map(|c| c.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let kind = content
            .and_then(|c| c.values().next())
            .and_then(|media| media.get("schema"))
            .map(Kind::of);
        Body {
            content_types,
            kind,
            required,
            description: Prose::new(v["description"].as_str().unwrap_or_default()),
        }
    }
}

impl Kind {
    fn of(schema: &Value) -> Kind {
        let link = first_ref(schema).map(str::to_owned);
        Kind {
            text: describe(schema),
            link,
        }
    }
}

/// The component a schema names (itself, as an array's items, or as one of its alternatives).
fn first_ref(schema: &Value) -> Option<&str> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next();
    }
    if let Some(items) = schema.get("items") {
        return first_ref(items);
    }
    ["oneOf", "anyOf", "allOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Value::as_array))
        .flatten()
        .find_map(first_ref)
}

/// A schema in a few words: `Message`, `array of Message`, `string (uuid)`, `integer | null`.
fn describe(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema.get(key).and_then(Value::as_array) {
            return alternatives
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    let types = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => vec![],
    };
    let mut words = Vec::new();
    for t in &types {
        words.push(match t.as_str() {
            "array" => format!("array of {}", describe(&schema["items"])),
            other => match schema["format"].as_str() {
                Some(format) => format!("{other} ({format})"),
                None => other.to_owned(),
            },
        });
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        words.push(format!("one of {}", values.join(", ")));
    }
    if words.is_empty() {
        "any".to_owned()
    } else {
        words.join(" | ")
    }
}

/// Bodies the handlers build as ad-hoc JSON, described for the document (its own file, so that
/// handlers naming these schemas do not import the module that lists the handlers).
pub(super) mod schemas;
