//! The OpenAPI document and the docs page: the router and the document cannot drift apart, the
//! document is served as OpenAPI 3.1, and the page works offline.
//!
//! Axum's router cannot list its routes, so the router-building code is read instead: every
//! `.route(path, method(handler)…)` call under `src/http/` is compared with the document's paths
//! and methods, both ways. A route added without its annotation fails here.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use reqwest::Method;
use serde_json::Value;

use crate::{
    both_backends,
    helpers::{Backend, TestApp},
};

/// A method a route answers: one method, or every method (`any(…)`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Verb {
    One(String),
    Any,
}

/// What the router serves: path (in OpenAPI's spelling) → methods, and where each was found.
type Served = BTreeMap<String, BTreeSet<Verb>>;

const METHODS: [&str; 8] = [
    "get", "post", "put", "delete", "patch", "head", "options", "trace",
];

/// Router calls this reader does not understand: if one appears, the reader must learn it rather
/// than let its routes go unchecked.
const UNSUPPORTED: [&str; 5] = [
    ".route_service(",
    ".nest(",
    ".nest_service(",
    ".fallback_service(",
    "MethodFilter",
];

/// Every `.route(…)` of one file's code (comments left out).
fn routes_in(file: &str, source: &str, served: &mut Served) {
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for call in UNSUPPORTED {
        assert!(
            !code.contains(call),
            "{file} uses `{call}`, which this test cannot read yet: teach it, so that the \
             routes it adds are compared with the OpenAPI document"
        );
    }
    let mut rest = code.as_str();
    while let Some(at) = rest.find(".route(") {
        let after = &rest[at + ".route(".len()..];
        let arguments = balanced(after)
            .unwrap_or_else(|| panic!("{file}: a `.route(` call without its closing parenthesis"));
        let (path, handlers) = arguments
            .split_once(',')
            .unwrap_or_else(|| panic!("{file}: `.route({arguments})` has no method router"));
        let path = resolve_path(file, &code, path.trim());
        let verbs = verbs(handlers);
        assert!(
            !verbs.is_empty(),
            "{file}: no method found in `.route({arguments})`"
        );
        served.entry(path).or_default().extend(verbs);
        rest = &after[arguments.len()..];
    }
}

/// The text up to the parenthesis that closes the one just opened.
fn balanced(text: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut in_string = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                if depth == 0 {
                    return Some(&text[..i]);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

/// A route's path: a string literal, or a `&str` constant of the same file. Axum's `{*rest}` is
/// OpenAPI's `{rest}`.
fn resolve_path(file: &str, code: &str, argument: &str) -> String {
    let literal = if let Some(quoted) = argument.strip_prefix('"') {
        quoted.trim_end_matches('"').to_owned()
    } else {
        let declaration = format!("const {argument}: &str = \"");
        let start = code.find(&declaration).unwrap_or_else(|| {
            panic!("{file}: the route path `{argument}` is neither a literal nor a constant here")
        }) + declaration.len();
        code[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    literal.replace("{*", "{")
}

/// The methods of a method router: `get(a).post(b)`, `axum::routing::delete(c)`, `any(d)`.
fn verbs(handlers: &str) -> BTreeSet<Verb> {
    let mut found = BTreeSet::new();
    let bytes = handlers.as_bytes();
    for word in METHODS.iter().copied().chain(["any"]) {
        let mut from = 0;
        while let Some(at) = handlers[from..].find(word).map(|i| i + from) {
            from = at + word.len();
            let before = at.checked_sub(1).map(|i| bytes[i]);
            let starts_word = !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
            let called = handlers[from..].trim_start().starts_with('(');
            if starts_word && called {
                found.insert(match word {
                    "any" => Verb::Any,
                    method => Verb::One(method.to_owned()),
                });
            }
        }
    }
    found
}

/// Every route of the gateway's router-building code.
fn served_by_router() -> Served {
    let mut served = Served::new();
    let mut files = Vec::new();
    collect(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut files,
    );
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        routes_in(&file.display().to_string(), &source, &mut served);
    }
    served
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The document's operations: path → methods.
fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("the document has paths")
        .iter()
        .map(|(path, item)| {
            let methods = METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (*m).to_owned())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// What differs between the router and the document, as readable lines; empty when they agree.
fn drift(served: &Served, documented: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, verbs) in served {
        let methods = documented.get(path);
        for verb in verbs {
            match verb {
                Verb::One(method) if !methods.is_some_and(|m| m.contains(method)) => {
                    problems.push(format!(
                        "{} {path} is routed but not in the document",
                        method.to_uppercase()
                    ))
                }
                Verb::Any if methods.is_none_or(BTreeSet::is_empty) => problems.push(format!(
                    "{path} (any method) is routed but not in the document"
                )),
                _ => {}
            }
        }
    }
    for (path, methods) in documented {
        let verbs = served.get(path);
        for method in methods {
            let routed = verbs
                .is_some_and(|v| v.contains(&Verb::Any) || v.contains(&Verb::One(method.clone())));
            if !routed {
                problems.push(format!(
                    "{} {path} is in the document but not routed",
                    method.to_uppercase()
                ));
            }
        }
    }
    problems
}

pub(crate) fn document() -> Value {
    serde_json::to_value(switchboard::http::openapi::document()).unwrap()
}

#[test]
fn every_route_of_the_router_is_in_the_document_and_back() {
    let served = served_by_router();
    let documented = documented(&document());
    // The reader found the router (and not just a few routes of it).
    for known in [
        "/v1/chat/messages",
        "/webhooks/{channel}/{path}",
        "/dashboard/login",
        "/docs",
    ] {
        assert!(served.contains_key(known), "the reader missed {known}");
    }
    assert!(served.len() >= 45, "only {} paths found", served.len());
    let problems = drift(&served, &documented);
    assert!(
        problems.is_empty(),
        "the router and the OpenAPI document differ (annotate the handler with \
         #[utoipa::path] and list it in the document, see src/http/mod.rs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_route_without_annotation_is_caught() {
    // The same reader and comparison, on the real router plus routes nobody documented: one in a
    // new file, one as a second method of a documented path, one behind a constant.
    let mut served = served_by_router();
    let new_file = r#"
        const INVOICES: &str = "/v1/admin/invoices";
        pub(super) fn routes() -> Router<AppState> {
            Router::new()
                .route(INVOICES, get(invoices::get))
                // .route("/commented-out", get(nothing))
                .route(
                    "/v1/expert/me",
                    get(staff::me).patch(staff::change),
                )
                .route("/v1/admin/contacts/{id}/notes", axum::routing::put(invoices::note))
        }
    "#;
    routes_in("invoices.rs", new_file, &mut served);
    let mut problems = drift(&served, &documented(&document()));
    problems.sort();
    assert_eq!(
        problems,
        [
            "GET /v1/admin/invoices is routed but not in the document",
            "PATCH /v1/expert/me is routed but not in the document",
            "PUT /v1/admin/contacts/{id}/notes is routed but not in the document",
        ]
    );
}

#[test]
fn the_document_is_openapi_3_1_with_every_error_described() {
    let doc = document();
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi {version}");
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for scheme in [
        "device_id",
        "visitor_jwt",
        "staff_token",
        "dashboard_session",
        "operator_token",
    ] {
        assert!(schemes.contains_key(scheme), "no security scheme {scheme}");
    }
    assert_eq!(
        doc["components"]["schemas"]["ErrorBody"]["required"],
        serde_json::json!(["error"])
    );
    // Every JSON error answer of every operation is the error schema, and every operation says
    // what it answers when it works (a WebSocket: 101).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.starts_with('3') || s == "101"),
                "{method} {path} has no success response"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let json = &response["content"]["application/json"]["schema"]["$ref"];
                    let html = response["content"].get("text/html");
                    let health = path == "/healthz" || path == "/readyz";
                    assert!(
                        json == "#/components/schemas/ErrorBody" || html.is_some() || health,
                        "{method} {path} {status} does not answer the error schema"
                    );
                }
            }
        }
    }
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} is not unique");
        }
    }
    // Every schema an operation or a schema names is in the document.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let name = reference.split('"').next().unwrap();
        let name = name.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{name} is named but not in the document"
        );
    }
    // The visitor's message: the request body, the stream, and the reply's schema.
    let post = &doc["paths"]["/v1/chat/messages"]["post"];
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SendRequest"
    );
    let send = doc["components"]["schemas"]["SendRequest"].to_string();
    assert!(
        send.contains("#/components/schemas/ChatRequest") && send.contains("\"agent\""),
        "a chat request and the agent to answer it: {send}"
    );
    assert!(post["responses"]["429"]["headers"]["Retry-After"].is_object());
    let stream = &doc["paths"]["/v1/chat/stream"]["post"]["responses"]["200"]["content"];
    assert!(stream.get("text/event-stream").is_some());
    let message = &doc["components"]["schemas"]["Message"]["properties"];
    for field in [
        "id",
        "conversation_id",
        "seq",
        "role",
        "content",
        "attachments",
        "status",
    ] {
        assert!(message.get(field).is_some(), "Message has no {field}");
    }
}

both_backends!(the_document_and_the_page_are_served_and_every_operation_is_routed);

async fn the_document_and_the_page_are_served_and_every_operation_is_routed(backend: Backend) {
    let app = TestApp::spawn(&backend).await;

    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let served: Value = response.json().await.unwrap();
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(served, document());

    let response = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let page = response.text().await.unwrap();
    // Nothing is loaded from anywhere: no external script, style, font or image.
    let lower = page.to_ascii_lowercase();
    for external in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "url(http",
        "@import",
        "<script",
        "<link",
    ] {
        assert!(!lower.contains(external), "the page contains {external}");
    }
    // Every operation is on the page, with its responses and the schemas they name.
    for (path, methods) in documented(&served) {
        let escaped = path.replace('&', "&amp;");
        assert!(page.contains(&escaped), "the page does not show {path}");
        assert!(!methods.is_empty());
    }
    assert!(page.contains("id=\"schema-ErrorBody\""));
    assert!(page.contains("href=\"#schema-SendRequest\""));
    assert!(page.contains("id=\"schema-ChatRequest\""));
    assert!(page.contains("text/event-stream"));
    // Descriptions show their code as code, escaped like everything else.
    assert!(page.contains("<code>rate_limited</code>"));
    assert!(page.contains("<code>{&#34;error&#34;:{&#34;code&#34;,&#34;message&#34;}}</code>"));

    // Every documented operation reaches a handler: an anonymous request is refused or answered
    // by the route itself, never by the unknown-route fallback or with 405. Nothing is stored.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, methods) in documented(&served) {
        let concrete = path
            .replace("{id}", "0193a2b4-0000-7000-8000-000000000000")
            .replace("{channel}", "whatsapp")
            .replace("{path}", "a/b");
        for method in methods {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {concrete}: {body}");
            assert!(
                !(status == 404 && body.contains("route not found")),
                "{method} {concrete} is documented but not routed"
            );
        }
    }
    assert_eq!(app.count("messages").await, 0);
    app.stop().await;
}

/// Checks a real answer against the document's schema: no field the schema does not name, every
/// field it requires, and the same for the schemas its fields name.
pub(crate) fn assert_shape(doc: &Value, schema: &str, value: &Value, at: &str) {
    let schema = &doc["components"]["schemas"][schema];
    assert!(schema.is_object(), "{at}: no schema");
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    // A schema is an object, or all of several (a conversation with its contact's name).
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(all) => all
            .iter()
            .map(|part| match part["$ref"].as_str() {
                Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
                None => part,
            })
            .collect(),
        None => vec![schema],
    };
    for part in parts {
        if let Some(p) = part["properties"].as_object() {
            properties.extend(p.clone());
        }
        if let Some(r) = part["required"].as_array() {
            required.extend(r.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    let fields = value
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not an object: {value}"));
    for (name, field) in fields {
        let property = properties
            .get(name)
            .unwrap_or_else(|| panic!("{at}: `{name}` is not in the schema"));
        let named = property["$ref"]
            .as_str()
            .or_else(|| property["items"]["$ref"].as_str())
            .or_else(|| {
                property["oneOf"]
                    .as_array()
                    .and_then(|alts| alts.iter().find_map(|a| a["$ref"].as_str()))
            })
            .and_then(|r| r.rsplit('/').next());
        let Some(inner) = named else { continue };
        let is_object = doc["components"]["schemas"][inner]["type"] == "object"
            || doc["components"]["schemas"][inner]["allOf"].is_array();
        if !is_object {
            continue;
        }
        match field {
            Value::Object(_) => assert_shape(doc, inner, field, &format!("{at}.{name}")),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    assert_shape(doc, inner, item, &format!("{at}.{name}[{i}]"));
                }
            }
            _ => {}
        }
    }
    for name in required {
        assert!(
            fields.contains_key(&name),
            "{at}: required `{name}` is missing"
        );
    }
}

both_backends!(real_answers_have_the_documented_shapes);

async fn real_answers_have_the_documented_shapes(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let doc = document();

    let (status, sent) = app
        .send("shape-1", serde_json::json!({"content": "hello"}))
        .await;
    assert_eq!(status, 200, "{sent}");
    assert!(sent["reply"].is_object(), "{sent}");
    assert_shape(&doc, "SendResponse", &sent, "POST /v1/chat/messages");
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    for (path, schema) in [
        ("/v1/conversations".to_owned(), "ConversationPage"),
        (
            format!("/v1/conversations/{conversation}"),
            "ConversationDetails",
        ),
        (
            format!("/v1/conversations/{conversation}/messages"),
            "MessagePage",
        ),
        ("/healthz".to_owned(), "Health"),
        ("/version".to_owned(), "Version"),
    ] {
        let (status, body) = app.get("shape-1", &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_shape(&doc, schema, &body, &path);
    }
    let (status, handed) = app.handoff("shape-1", &conversation).await;
    assert_eq!(status, 200, "{handed}");
    assert_shape(&doc, "HandoffResponse", &handed, "handoff");

    let (_, token) = app.staff_token("shape-admin@example.com", "admin").await;
    for (path, schema) in [
        ("/v1/expert/me", "Me"),
        ("/v1/expert/queue", "Queue"),
        ("/v1/expert/conversations", "OwnedList"),
        ("/v1/supervisor/conversations", "LivePage"),
        ("/v1/supervisor/contacts?q=shape", "ContactsPage"),
        ("/v1/supervisor/evaluations", "EvaluationsPage"),
        ("/v1/admin/users", "Users"),
        ("/v1/admin/audit", "AuditPage"),
    ] {
        let (status, body) = app.staff_call(Method::GET, path, &token, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_shape(&doc, schema, &body, path);
    }
    let (status, queue) = app
        .staff_call(Method::GET, "/v1/expert/queue", &token, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        queue["conversations"].as_array().map(Vec::len),
        Some(1),
        "{queue}"
    );
    let claim = format!("/v1/expert/conversations/{conversation}/claim");
    let (status, claimed) = app.staff_call(Method::POST, &claim, &token, None).await;
    assert_eq!(status, 200, "{claimed}");
    assert_shape(&doc, "ConversationEnvelope", &claimed, &claim);
    for (path, schema) in [
        (
            format!("/v1/expert/conversations/{conversation}"),
            "Transcript",
        ),
        (
            format!("/v1/expert/conversations/{conversation}/export"),
            "Export",
        ),
        ("/v1/expert/conversations".to_owned(), "OwnedList"),
    ] {
        let (status, body) = app.staff_call(Method::GET, &path, &token, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_shape(&doc, schema, &body, &path);
    }
    let reply = format!("/v1/expert/conversations/{conversation}/messages");
    let (status, replied) = app
        .staff_call(
            Method::POST,
            &reply,
            &token,
            Some(serde_json::json!({"content": "hi"})),
        )
        .await;
    assert_eq!(status, 201, "{replied}");
    assert_shape(&doc, "MessageEnvelope", &replied, &reply);
    app.stop().await;
}

#[test]
fn a_shape_the_document_does_not_describe_is_caught() {
    let doc = document();
    let fails = |schema: &'static str, value: Value| {
        let doc = doc.clone();
        std::panic::catch_unwind(move || assert_shape(&doc, schema, &value, "test")).is_err()
    };
    assert!(!fails(
        "Version",
        serde_json::json!({"name": "a", "version": "1"})
    ));
    assert!(fails(
        "Version",
        serde_json::json!({"name": "a", "version": "1", "extra": 1})
    ));
    assert!(fails("Version", serde_json::json!({"name": "a"})));
    // Inside a named schema too.
    assert!(fails(
        "UserEnvelope",
        serde_json::json!({"user": {"id": "x"}})
    ));
}
