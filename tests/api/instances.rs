//! Instances that stop — killed, or stopped cleanly — and the work they held: real gateway
//! processes on one database. A restarted instance takes back its jobs at once instead of waiting
//! for their leases; on PostgreSQL the survivors answer a killed instance's acknowledged messages
//! within seconds, each once, and a clean stop hands its unfinished turns over.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{io::AsyncReadExt, net::TcpListener};

use crate::{
    both_backends,
    helpers::{
        Backend, TestDb,
        botapi::FakeBotApi,
        fake::{FakeModel, ModelBehaviour},
        graph::FakeGraph,
        json_response,
        process::{Gateway, config_file},
    },
};

both_backends!(a_restart_takes_back_its_jobs_without_waiting_for_their_leases);

const SECRET: &str = "test-app-secret";
const USER: &str = "16505551234";

/// A provider that takes requests and never answers them; counts those whose bytes so far
/// contain `needle`.
struct Unresponsive {
    address: std::net::SocketAddr,
    seen: Arc<AtomicUsize>,
}

impl Unresponsive {
    async fn start(needle: &'static str) -> Unresponsive {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut buffer = [0u8; 4096];
                    let mut counted = false;
                    while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                        received.extend_from_slice(&buffer[..n]);
                        if !counted && String::from_utf8_lossy(&received).contains(needle) {
                            counted = true;
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Unresponsive { address, seen }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.seen.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "{n} requests never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A signed WhatsApp text message from the test user.
fn whatsapp_text(id: &str, body: &str) -> (Vec<u8>, String) {
    let payload = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": USER}],
            "messages": [{"from": USER, "id": id,
                "timestamp": chrono::Utc::now().timestamp().to_string(),
                "type": "text", "text": {"body": body}}]
        }}]}]
    }))
    .unwrap();
    let signature = switchboard_whatsapp::sign(&payload, SECRET);
    (payload, signature)
}

/// A gateway killed while it delivers a reply holds that delivery's lease (ten minutes here) in
/// the database; restarted, it delivers the reply at once rather than when the lease runs out.
async fn a_restart_takes_back_its_jobs_without_waiting_for_their_leases(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let dir = tempfile::tempdir().unwrap();
    let whatsapp = |api_base: &str| {
        format!(
            "[jobs]\nlease = \"10m\"\n[routing]\ndefault_agent = \"echo\"\n\
             [whatsapp]\napp_secret = \"{SECRET}\"\nverify_token = \"v\"\naccess_token = \"t\"\n\
             api_base = {}\n",
            toml::Value::String(api_base.into())
        )
    };
    let silent = Unresponsive::start("survive the lease").await;
    let config = config_file(
        dir.path(),
        "first.toml",
        &db.url,
        &whatsapp(&silent.base_url()),
    );
    let first = Gateway::start(&config);
    let (payload, signature) = whatsapp_text("wamid.lease-1", "survive the lease");
    let response = reqwest::Client::new()
        .post(first.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The reply is on its way to a Graph API that never answers when the process dies.
    silent.wait_for(1).await;
    first.kill();

    let graph = FakeGraph::start().await;
    let config = config_file(
        dir.path(),
        "second.toml",
        &db.url,
        &whatsapp(&graph.base_url()),
    );
    let restarted = Instant::now();
    let second = Gateway::start(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let sent: Vec<Value> = graph
            .message_requests()
            .into_iter()
            .map(|request| request.body)
            .collect();
        if !sent.is_empty() {
            break sent;
        }
        assert!(
            Instant::now() < deadline,
            "the reply was not delivered after the restart (its lease lasts 10 minutes); log: {:#?}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "{backend:?}: reply delivered {:?} after the restart began",
        restarted.elapsed()
    );
    assert_eq!(delivered.len(), 1, "delivered once: {delivered:#?}");
    assert_eq!(delivered[0]["to"], USER);
    assert!(
        delivered[0]["text"]["body"]
            .as_str()
            .is_some_and(|text| text.contains("survive the lease")),
        "{delivered:#?}"
    );
    drop(second);
    drop(db);
}

/// Sends `content` as visitor `device` without waiting for the reply; the acknowledged message.
async fn acknowledged(gateway: &Gateway, device: &str, content: &str) -> Value {
    let (status, body) = json_response(
        reqwest::Client::new()
            .post(gateway.url("/v1/chat/messages?wait=false"))
            .header("X-Device-ID", device)
            .json(&json!({ "content": content }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "acknowledged: {body}");
    body
}

/// The roles and contents of a conversation's messages, as the visitor reads them on `gateway`.
async fn transcript(gateway: &Gateway, device: &str, conversation: &str) -> Vec<(String, String)> {
    let (status, page) = json_response(
        reqwest::Client::new()
            .get(gateway.url(&format!("/v1/conversations/{conversation}/messages")))
            .header("X-Device-ID", device)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until every conversation has its reply on `gateway`; how long that took.
async fn all_answered(gateway: &Gateway, sent: &[(String, String, String)]) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        let mut answered = 0;
        for (device, conversation, _) in sent {
            if transcript(gateway, device, conversation)
                .await
                .iter()
                .any(|(role, _)| role == "ai")
            {
                answered += 1;
            }
        }
        if answered == sent.len() {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{answered} of {} answered; log: {:#?}",
            sent.len(),
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two instances on one PostgreSQL schema: `a` answers with a model that never finishes, `b` with
/// the echo agent under the same name (so whoever answers is visible in the reply).
fn two_instances(dir: &Path, url: &str, model: &FakeModel) -> (PathBuf, PathBuf) {
    let a = config_file(
        dir,
        "a.toml",
        url,
        &format!(
            "[instance]\nname = \"a\"\n[pipeline]\nagent_timeout = \"2m\"\n\
             [routing]\ndefault_agent = \"gpt\"\n\
             [agents.gpt]\nkind = \"openai\"\nbase_url = {}\ntimeout = \"2m\"\n",
            toml::Value::String(model.base_url())
        ),
    );
    let b = config_file(
        dir,
        "b.toml",
        url,
        "[instance]\nname = \"b\"\n[routing]\ndefault_agent = \"gpt\"\n\
         [agents.gpt]\nkind = \"echo\"\nprefix = \"b: \"\n",
    );
    (a, b)
}

/// `kill -9` of one of two instances while it runs acknowledged turns: the other answers every
/// one of them within seconds (instead of at its next periodic sweep), each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_messages_are_answered_by_another_at_once() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let db = TestDb::create(&backend).await;
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(ModelBehaviour::Hang).await;
    let (a, b) = two_instances(dir.path(), &db.url, &model);
    let a = Gateway::start(&a);
    let b = Gateway::start(&b);

    let mut sent = Vec::new();
    for i in 0..5 {
        let device = format!("dev-{i}");
        let content = format!("message {i}");
        let body = acknowledged(&a, &device, &content).await;
        let conversation = body["conversation_id"].as_str().unwrap().to_owned();
        sent.push((device, conversation, content));
    }
    // Every turn is running on `a` (its model never answers) when it dies.
    model.wait_for_requests(5, Duration::from_secs(10)).await;
    a.kill();

    let took = all_answered(&b, &sent).await;
    println!("the survivor answered the killed instance's 5 messages within {took:?}");
    for (device, conversation, content) in &sent {
        assert_eq!(
            transcript(&b, device, conversation).await,
            [
                ("user".to_owned(), content.clone()),
                ("ai".to_owned(), format!("b: {content}")),
            ],
            "answered once, by the survivor"
        );
    }
    assert!(
        b.log()
            .iter()
            .any(|line| line.contains("took over the work")),
        "the survivor says it took the work over"
    );
}

/// A clean stop that cannot finish its turns within the grace period hands them to the instance
/// that goes on running, which answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_instance_hands_its_unfinished_turns_over() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let db = TestDb::create(&backend).await;
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(ModelBehaviour::Hang).await;
    let (a, b) = two_instances(dir.path(), &db.url, &model);
    let a = Gateway::start(&a);
    let b = Gateway::start(&b);

    let body = acknowledged(&a, "dev-1", "finish this for me").await;
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();
    model.wait_for_requests(1, Duration::from_secs(10)).await;
    a.terminate();
    let exit = a.exited(Duration::from_secs(15)).await;
    assert!(exit.success(), "a stopped cleanly: {exit}");

    let sent = [("dev-1".to_owned(), conversation.clone(), String::new())];
    all_answered(&b, &sent).await;
    assert_eq!(
        transcript(&b, "dev-1", &conversation).await,
        [
            ("user".to_owned(), "finish this for me".to_owned()),
            ("ai".to_owned(), "b: finish this for me".to_owned()),
        ]
    );
}

/// A Telegram bot in polling mode on two instances: one polls (Telegram would end the other's
/// calls with 409 Conflict), and when it dies the other takes over and answers what came since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_polling_runs_on_one_instance_and_moves_when_it_dies() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let db = TestDb::create(&backend).await;
    let dir = tempfile::tempdir().unwrap();
    let api = FakeBotApi::start().await;
    let telegram = |name: &str| {
        format!(
            "[instance]\nname = \"{name}\"\n[routing]\ndefault_agent = \"echo\"\n\
             [telegram]\napi_url = {}\ntoken = \"7000000001:test-token\"\nname = \"support\"\n\
             mode = \"polling\"\npoll_timeout = \"1s\"\n",
            toml::Value::String(api.api_url())
        )
    };
    let a = Gateway::start(&config_file(dir.path(), "a.toml", &db.url, &telegram("a")));
    let b = Gateway::start(&config_file(dir.path(), "b.toml", &db.url, &telegram("b")));
    let update = |id: i64, text: &str| {
        json!({"update_id": id, "message": {
            "message_id": id, "date": chrono::Utc::now().timestamp(),
            "from": {"id": 4242, "is_bot": false, "first_name": "Waffle"},
            "chat": {"id": 4242, "first_name": "Waffle", "type": "private"},
            "text": text
        }})
    };
    api.push_update(update(900, "first"));
    api.wait_for_sends(1).await;

    // Both run for a while; only one polls: no getUpdates call was cut short by another.
    let mut logs = (Vec::new(), Vec::new());
    // Generous: a loaded machine starts processes slowly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let standby = loop {
        logs.0.extend(a.log());
        logs.1.extend(b.log());
        let standing_by = |log: &[String]| log.iter().any(|l| l.contains("standing by"));
        match (standing_by(&logs.0), standing_by(&logs.1)) {
            (false, true) => break "b",
            (true, false) => break "a",
            (true, true) => panic!("both stand by: {logs:#?}"),
            (false, false) => {}
        }
        assert!(Instant::now() < deadline, "nobody stands by: {logs:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(api.conflicts(), 0, "two pollers at once");

    // The poller dies; an update sent meanwhile is answered by the other.
    let (poller, survivor) = if standby == "a" { (b, a) } else { (a, b) };
    poller.kill();
    let killed = Instant::now();
    api.push_update(update(901, "second"));
    api.wait_for_sends(2).await;
    println!(
        "Telegram polling moved to the other instance and answered within {:?}",
        killed.elapsed()
    );
    assert_eq!(api.sent_texts(), ["first", "second"], "each answered once");
    assert_eq!(api.conflicts(), 0, "two pollers at once");
    assert!(
        survivor
            .log()
            .iter()
            .any(|line| line.contains("took over work another instance did")),
        "the survivor says it took the polling over"
    );
}

/// Sends `content` in `conversation` (a new one when `None`) through `gateway` and waits for the
/// reply; the response.
async fn chat_through(
    gateway: &Gateway,
    device: &str,
    conversation: Option<&str>,
    content: &str,
) -> Value {
    let (status, body) = json_response(
        reqwest::Client::new()
            .post(gateway.url("/v1/chat/messages"))
            .header("X-Device-ID", device)
            .json(&json!({ "conversation_id": conversation, "content": content }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// One visitor's conversation, its messages spread over two instances: whoever receives a
/// message, the instance that runs the conversation answers it — one message at a time, in
/// order, the model called once per message — and a request waiting on the other instance gets
/// its reply all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conversation_over_two_instances_is_answered_in_one_place() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let db = TestDb::create(&backend).await;
    let dir = tempfile::tempdir().unwrap();
    let model = FakeModel::start(ModelBehaviour::Echo(Duration::from_millis(100))).await;
    let config = |name: &str| {
        config_file(
            dir.path(),
            &format!("{name}.toml"),
            &db.url,
            &format!(
                "[instance]\nname = \"{name}\"\n[routing]\ndefault_agent = \"gpt\"\n\
                 [agents.gpt]\nkind = \"openai\"\nbase_url = {}\n",
                toml::Value::String(model.base_url())
            ),
        )
    };
    let gateways = [Gateway::start(&config("a")), Gateway::start(&config("b"))];

    // Back and forth, each request waiting for its reply.
    let first = chat_through(&gateways[0], "dev-1", None, "message 0").await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(first["reply"]["content"], "echo: message 0");
    for i in 1..4 {
        let content = format!("message {i}");
        let body = chat_through(&gateways[i % 2], "dev-1", Some(&conversation), &content).await;
        assert_eq!(
            body["reply"]["content"],
            format!("echo: {content}"),
            "through instance {}: {body}",
            i % 2
        );
    }

    // Six at once, three through each instance.
    let sends = (4..10).map(|i| {
        let gateway = &gateways[i % 2];
        let conversation = conversation.clone();
        async move {
            let (status, body) = json_response(
                reqwest::Client::new()
                    .post(gateway.url("/v1/chat/messages?wait=false"))
                    .header("X-Device-ID", "dev-1")
                    .json(&json!({"conversation_id": conversation, "content": format!("message {i}")}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 202, "{body}");
        }
    });
    futures::future::join_all(sends).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = transcript(&gateways[0], "dev-1", &conversation).await;
        if seen.iter().filter(|(role, _)| role == "ai").count() == 10 {
            break seen;
        }
        assert!(Instant::now() < deadline, "not all answered: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let asked: Vec<String> = seen
        .iter()
        .filter(|(role, _)| role == "user")
        .map(|(_, content)| format!("echo: {content}"))
        .collect();
    let answered: Vec<String> = seen
        .iter()
        .filter(|(role, _)| role == "ai")
        .map(|(_, content)| content.clone())
        .collect();
    assert_eq!(answered, asked, "answered in the order asked: {seen:#?}");
    assert_eq!(
        model.requests().len(),
        10,
        "the model called once per message"
    );
    assert_eq!(
        model.peak_concurrency(),
        1,
        "one message of the conversation at a time"
    );
    let handed = gateways
        .iter()
        .flat_map(|g| g.log())
        .filter(|line| line.contains("handed this one over"))
        .count();
    assert!(
        handed >= 5,
        "the other instance's messages were handed over: {handed}"
    );
}

/// A WhatsApp user's messages reach two instances in turn (and one webhook reaches both at
/// once, as a provider retry can): each message is answered once, the replies in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_messages_spread_over_two_instances_are_answered_once_in_order() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let db = TestDb::create(&backend).await;
    let dir = tempfile::tempdir().unwrap();
    let graph = FakeGraph::start().await;
    let config = |name: &str| {
        config_file(
            dir.path(),
            &format!("{name}.toml"),
            &db.url,
            &format!(
                "[instance]\nname = \"{name}\"\n[routing]\ndefault_agent = \"echo\"\n\
                 [whatsapp]\napp_secret = \"{SECRET}\"\nverify_token = \"v\"\naccess_token = \"t\"\n\
                 api_base = {}\n",
                toml::Value::String(graph.base_url())
            ),
        )
    };
    let gateways = [Gateway::start(&config("a")), Gateway::start(&config("b"))];
    let post = |gateway: &Gateway, id: &str, body: &str| {
        let (payload, signature) = whatsapp_text(id, body);
        reqwest::Client::new()
            .post(gateway.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(payload)
            .send()
    };
    for i in 0..6 {
        let response = post(
            &gateways[i % 2],
            &format!("wamid.spread-{i}"),
            &format!("note {i}"),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
    }
    // The same delivery to both at once.
    let (one, other) = tokio::join!(
        post(&gateways[0], "wamid.spread-6", "note 6"),
        post(&gateways[1], "wamid.spread-6", "note 6"),
    );
    assert_eq!(one.unwrap().status(), 200);
    assert_eq!(other.unwrap().status(), 200);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = graph.message_requests().len();
        if sent >= 7 {
            break;
        }
        assert!(Instant::now() < deadline, "{sent} of 7 replies");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A moment more, for a duplicate that would come late.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: Vec<String> = graph
        .message_requests()
        .into_iter()
        .filter_map(|r| r.body["text"]["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(sent.len(), 7, "one reply per message: {sent:#?}");
    for (i, text) in sent.iter().enumerate() {
        assert!(text.contains(&format!("note {i}")), "in order: {sent:#?}");
    }
}
