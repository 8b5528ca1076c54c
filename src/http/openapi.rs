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
    ApiError, admin, chat, conversations, dashboard, error::ErrorBody, events, media, ops, pages,
    privacy, staff, supervisor, uploads, usage, webhook,
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

/// Bodies the handlers build as ad-hoc JSON, described for the document. The structs are never
/// built: they exist for their schemas, so what they describe is the JSON the handlers write.
#[allow(dead_code)]
pub(super) mod schemas {
    use serde::Serialize;
    use utoipa::ToSchema;

    use crate::store::{
        audit::Entry, contacts::Found, conversations::Mode, evaluations::Evaluation,
        messages::Message, users::User,
    };

    /// A conversation as its website visitor sees it.
    #[derive(Serialize, ToSchema)]
    pub struct VisitorConversation {
        #[schema(format = "uuid")]
        id: String,
        /// Always `web` here.
        channel: String,
        /// Given when it was created, or from the first message.
        title: Option<String>,
        /// Where the client that created it said it was started from.
        source: Option<String>,
        /// The client's data given when it was created.
        metadata: serde_json::Map<String, serde_json::Value>,
        mode: Mode,
        /// The agent that answers (AI mode).
        agent: Option<String>,
        #[schema(format = DateTime)]
        lock_expires_at: Option<String>,
        /// In expert mode: waiting for an expert since then.
        #[schema(format = DateTime)]
        queued_at: Option<String>,
        /// The seq of the newest message.
        last_seq: i64,
        #[schema(format = DateTime)]
        created_at: String,
        #[schema(format = DateTime)]
        updated_at: String,
    }

    /// A conversation as staff see it.
    #[derive(Serialize, ToSchema)]
    pub struct StaffConversation {
        #[schema(format = "uuid")]
        id: String,
        /// The channel it runs on: `web`, or a channel plug-in's name.
        channel: String,
        title: Option<String>,
        mode: Mode,
        agent: Option<String>,
        #[schema(format = DateTime)]
        lock_expires_at: Option<String>,
        /// The expert who owns it.
        #[schema(format = "uuid")]
        expert_id: Option<String>,
        #[schema(format = DateTime)]
        queued_at: Option<String>,
        #[schema(format = DateTime)]
        assigned_at: Option<String>,
        last_seq: i64,
        #[schema(format = DateTime)]
        created_at: String,
        #[schema(format = DateTime)]
        updated_at: String,
    }

    /// `{conversation}`: a conversation after an expert's action.
    #[derive(Serialize, ToSchema)]
    pub struct ConversationEnvelope {
        conversation: StaffConversation,
    }

    /// `{message}`: a stored message.
    #[derive(Serialize, ToSchema)]
    pub struct MessageEnvelope {
        message: Message,
    }

    /// The end user of a conversation, as staff see them.
    #[derive(Serialize, ToSchema)]
    pub struct Contact {
        #[schema(format = "uuid")]
        id: String,
        /// Their id on the channel (phone number, chat id, address, device).
        external_id: Option<String>,
        name: Option<String>,
    }

    /// A conversation opened by staff: the newest messages, oldest first.
    #[derive(Serialize, ToSchema)]
    pub struct Transcript {
        conversation: StaffConversation,
        contact: Contact,
        messages: Vec<Message>,
    }

    /// A whole conversation, downloaded as a file.
    #[derive(Serialize, ToSchema)]
    pub struct Export {
        conversation: StaffConversation,
        contact: Contact,
        messages: Vec<Message>,
        #[schema(format = DateTime)]
        exported_at: String,
    }

    /// A signed-in API client's token.
    #[derive(Serialize, ToSchema)]
    pub struct TokenResponse {
        /// Send as `Authorization: Bearer <token>`.
        token: String,
        #[schema(format = DateTime)]
        expires_at: String,
        user: User,
    }

    /// The caller's account and how many conversations they have open.
    #[derive(Serialize, ToSchema)]
    pub struct Me {
        user: User,
        open: i64,
    }

    /// `{user}`: a staff account.
    #[derive(Serialize, ToSchema)]
    pub struct UserEnvelope {
        user: User,
    }

    /// Every staff account.
    #[derive(Serialize, ToSchema)]
    pub struct Users {
        users: Vec<User>,
    }

    /// A conversation waiting for an expert.
    #[derive(Serialize, ToSchema)]
    pub struct Waiting {
        conversation: StaffConversation,
        contact_name: Option<String>,
        /// Its place in the queue, from 1.
        position: u64,
    }

    /// The conversations waiting for an expert, longest waiting first.
    #[derive(Serialize, ToSchema)]
    pub struct Queue {
        conversations: Vec<Waiting>,
    }

    /// One of the caller's conversations.
    #[derive(Serialize, ToSchema)]
    pub struct Owned {
        conversation: StaffConversation,
        /// Messages since the expert last read the conversation.
        unread: i64,
        contact_name: Option<String>,
    }

    /// The caller's open conversations.
    #[derive(Serialize, ToSchema)]
    pub struct OwnedList {
        conversations: Vec<Owned>,
    }

    /// A live conversation with its end user's name.
    #[derive(Serialize, ToSchema)]
    pub struct Live {
        #[serde(flatten)]
        conversation: StaffConversation,
        contact_name: Option<String>,
    }

    /// Bytes of any format (a file, a provider's payload), not JSON.
    pub struct Binary;

    impl utoipa::PartialSchema for Binary {
        fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
            use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                .into()
        }
    }

    impl ToSchema for Binary {}

    /// A page of live conversations.
    #[derive(Serialize, ToSchema)]
    pub struct LivePage {
        conversations: Vec<Live>,
        total: i64,
        page: i64,
        limit: i64,
    }

    /// A page of one contact's conversations.
    #[derive(Serialize, ToSchema)]
    pub struct ContactConversationsPage {
        /// Their conversations on every channel, most recently active first.
        conversations: Vec<StaffConversation>,
        total: i64,
        page: i64,
        limit: i64,
    }

    /// A page of contacts matching a search.
    #[derive(Serialize, ToSchema)]
    pub struct ContactsPage {
        contacts: Vec<Found>,
        total: i64,
        page: i64,
        limit: i64,
    }

    /// A page of evaluations of AI replies.
    #[derive(Serialize, ToSchema)]
    pub struct EvaluationsPage {
        evaluations: Vec<Evaluation>,
        total: i64,
        page: i64,
        limit: i64,
    }

    /// A page of the audit log, newest first.
    #[derive(Serialize, ToSchema)]
    pub struct AuditPage {
        entries: Vec<Entry>,
        total: i64,
        page: i64,
        limit: i64,
    }

    /// `GET /healthz`.
    #[derive(Serialize, ToSchema)]
    pub struct Health {
        /// `ok`, or `unavailable` with 503 (the database does not answer).
        status: String,
        #[schema(example = "0.1.0")]
        version: String,
        /// Seconds since the process started.
        uptime_seconds: u64,
        /// `starting`, `serving` or `stopping`.
        phase: String,
        /// Messages queued or being answered in this process.
        pending_replies: u64,
        /// Each dependency by name: `database`, and services of the channels, named
        /// `<channel>.<service>`.
        checks: std::collections::BTreeMap<String, Check>,
    }

    /// `GET /v1/admin/usage`.
    #[derive(Serialize, ToSchema)]
    pub struct UsageTotals {
        #[schema(format = Date)]
        from: String,
        #[schema(format = Date)]
        to: String,
        /// `day`, `agent` or `contact`.
        group_by: String,
        /// The currency of the costs (`quotas.currency`).
        currency: String,
        /// One entry per group, with its key (`day`, `agent` or `contact_id`) and totals.
        groups: Vec<serde_json::Map<String, serde_json::Value>>,
        total: UsageTotal,
    }

    /// Totals of AI replies.
    #[derive(Serialize, ToSchema)]
    pub struct UsageTotal {
        replies: i64,
        /// Replies whose tokens were estimated (the model server sent no usage).
        estimated_replies: i64,
        tokens_in: i64,
        tokens_out: i64,
        cost: f64,
        mean_response_time_ms: i64,
    }

    /// A contact's plan, credits and use (`/v1/admin/contacts/{id}/plan`).
    #[derive(Serialize, ToSchema)]
    pub struct Standing {
        #[schema(format = "uuid")]
        contact_id: String,
        plan: String,
        /// Whether the plan is the contact's own (not the default).
        own_plan: bool,
        /// The prepaid balance left, when the contact has one.
        credits: Option<f64>,
        currency: String,
        messages_today: i64,
        messages_this_month: i64,
        tokens_today: i64,
        tokens_this_month: i64,
        /// Why the contact is over quota now, if they are.
        exceeded: Option<String>,
    }

    /// One dependency's state.
    #[derive(Serialize, ToSchema)]
    pub struct Check {
        /// `ok` or `error`.
        status: String,
        /// How long the check took.
        latency_ms: Option<f64>,
        /// What is wrong (never a secret).
        error: Option<String>,
    }

    /// `GET /readyz`.
    #[derive(Serialize, ToSchema)]
    pub struct Ready {
        /// `serving` (200), `starting` or `stopping` (503).
        status: String,
    }

    /// A visitor's conversation with its message count and newest message.
    #[derive(Serialize, ToSchema)]
    pub struct ConversationDetails {
        #[schema(format = "uuid")]
        id: String,
        channel: String,
        title: Option<String>,
        source: Option<String>,
        metadata: serde_json::Map<String, serde_json::Value>,
        mode: Mode,
        agent: Option<String>,
        #[schema(format = DateTime)]
        lock_expires_at: Option<String>,
        #[schema(format = DateTime)]
        queued_at: Option<String>,
        last_seq: i64,
        #[schema(format = DateTime)]
        created_at: String,
        #[schema(format = DateTime)]
        updated_at: String,
        /// How many messages it holds.
        message_count: i64,
        /// Its newest message.
        last_message: Option<Message>,
    }

    /// Everything stored about a contact (`GET /v1/me/export`, `GET /v1/admin/contacts/{id}/export`).
    #[derive(Serialize, ToSchema)]
    pub struct PersonalData {
        #[schema(format = DateTime)]
        exported_at: String,
        /// The contact (`null` for a visitor who never wrote).
        contact: Option<StoredContact>,
        /// Every conversation of the contact, deleted ones too, each with its messages, the
        /// descriptions of their stored files and their evaluations.
        conversations: Vec<serde_json::Value>,
    }

    /// A contact as stored.
    #[derive(Serialize, ToSchema)]
    pub struct StoredContact {
        #[schema(format = "uuid")]
        id: String,
        channel: String,
        /// Phone number, chat id, e-mail address, device or signed-in user.
        external_id: String,
        display_name: Option<String>,
        username: Option<String>,
        metadata: serde_json::Value,
        #[schema(format = DateTime)]
        unreachable_since: Option<String>,
        unreachable_reason: Option<String>,
        #[schema(format = DateTime)]
        created_at: String,
        #[schema(format = DateTime)]
        updated_at: String,
    }

    /// `GET /version`.
    #[derive(Serialize, ToSchema)]
    pub struct Version {
        #[schema(example = "switchboard")]
        name: String,
        #[schema(example = "0.1.0")]
        version: String,
    }

    /// What a webhook answers when it stored what it received; a handshake answers its
    /// provider's challenge as text instead.
    #[derive(Serialize, ToSchema)]
    pub struct WebhookSummary {
        #[schema(example = "ok")]
        status: String,
        /// Messages and other events in the delivery.
        events: u64,
        /// Newly stored.
        stored: u64,
        /// Already stored before (retries).
        duplicates: u64,
        /// Delivery statuses applied.
        statuses: u64,
    }
}
