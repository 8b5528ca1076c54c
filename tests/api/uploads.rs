//! Visitors' uploads (`POST /v1/uploads`): stored by what the content is, within the size limit,
//! private to their visitor (and staff), attached to messages by id, counted against the
//! visitor's rate, and removed when no message came to use them.

use std::{path::Path, time::Duration};

use base64::Engine;
use reqwest::{
    Method,
    multipart::{Form, Part},
};
use serde_json::{Value, json};
use switchboard::{
    media_dir::MediaDir,
    retention::{Swept, UnlinkedFiles},
    store::Db,
    time::Clock,
};

use crate::{
    both_backends,
    helpers::{Backend, TestApp, json_response},
};

both_backends!(
    an_upload_is_stored_by_what_its_content_is,
    an_upload_over_the_limit_keeps_nothing,
    only_pictures_and_pdfs_in_one_file_part_are_accepted,
    an_upload_is_private_to_its_visitor,
    a_message_attaches_an_upload_that_the_visitor_and_staff_can_fetch,
    staff_get_a_file_as_they_see_its_conversation_and_every_fetch_is_audited,
    uploads_count_against_the_visitors_rate,
);

/// A real 1×1 PNG.
pub(crate) fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        .expect("a PNG")
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

/// A file part as a browser sends it: the type and name are the client's claims.
fn file(bytes: Vec<u8>, name: &str, claimed: &str) -> Form {
    Form::new().part(
        "file",
        Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(claimed)
            .expect("a MIME type"),
    )
}

async fn upload(app: &TestApp, device: &str, form: Form) -> (u16, Value) {
    let response = app
        .request(Method::POST, "/v1/uploads", device)
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    json_response(response).await
}

/// An upload the gateway refuses while it is still being sent: 413, or — when the gateway's
/// answer and its closing of the connection overtake the client's writing — a broken request.
/// Either way the client learns the upload failed; what matters is that nothing is kept.
async fn upload_cut_short(app: &TestApp, device: &str, form: Form) {
    let sent = app
        .request(Method::POST, "/v1/uploads", device)
        .multipart(form)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let (status, body) = json_response(response).await;
            assert_eq!(status, 413, "{body}");
            assert_eq!(body["error"]["code"], "upload_too_large");
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
}

/// Every file under the media directory.
pub(crate) fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_in(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

async fn an_upload_is_stored_by_what_its_content_is(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    // The browser says text, and names the file with a path: the content says PNG.
    let (status, body) = upload(
        &app,
        "dev-1",
        file(png(), "../../etc/holiday photo.png", "text/plain"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["mime_type"], "image/png");
    assert_eq!(body["size"], png().len());
    assert_eq!(body["name"], "holiday photo.png");
    let id = body["id"].as_str().expect("an id");
    assert_eq!(body["url"], app.url(&format!("/v1/media/{id}")));
    assert_eq!(app.count("media").await, 1);

    let stored = files_in(&app.config.media.dir);
    assert_eq!(stored.len(), 1, "one file: {stored:?}");
    assert_eq!(std::fs::read(&stored[0]).expect("the stored file"), png());
    #[cfg(unix)]
    {
        assert_eq!(mode(&stored[0]), 0o600, "only the gateway reads it");
        assert_eq!(mode(stored[0].parent().expect("its directory")), 0o700);
    }

    // The visitor sees their picture.
    let response = app
        .request(Method::GET, &format!("/v1/media/{id}"), "dev-1")
        .send()
        .await
        .expect("media request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.bytes().await.expect("the file").to_vec(), png());

    // A page on another site may upload: the preflight is answered.
    let preflight = app
        .client
        .request(Method::OPTIONS, app.url("/v1/uploads"))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "x-device-id")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
}

async fn an_upload_over_the_limit_keeps_nothing(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.web.max_upload_bytes = 4096).await;
    let mut big = png();
    big.resize(4097, 0);
    let (status, body) = upload(&app, "dev-1", file(big, "big.png", "image/png")).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "upload_too_large");

    // Streamed without a length, the upload ends as soon as the limit is passed.
    let chunks = (0..64).map(|i| {
        let chunk = if i == 0 { png() } else { vec![0u8; 1024] };
        Ok::<_, std::io::Error>(chunk)
    });
    let part = Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .file_name("streamed.png")
        .mime_str("image/png")
        .expect("a MIME type");
    upload_cut_short(&app, "dev-1", Form::new().part("file", part)).await;

    // A body far too large for any file is refused before it is read.
    upload_cut_short(
        &app,
        "dev-1",
        file(vec![0x89; 512 * 1024], "huge.png", "image/png"),
    )
    .await;

    assert_eq!(app.count("media").await, 0);
    let left = files_in(&app.config.media.dir);
    assert!(left.is_empty(), "files left behind: {left:?}");

    // Right at the limit is fine.
    let mut exact = png();
    exact.resize(4096, 0);
    let (status, body) = upload(&app, "dev-1", file(exact, "exact.png", "image/png")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["size"], 4096);
}

async fn only_pictures_and_pdfs_in_one_file_part_are_accepted(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    for (bytes, name) in [
        (b"<html><script>alert(1)</script>".to_vec(), "cat.png"),
        (
            b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
            "logo.svg",
        ),
        (b"MZ\x90\0\x03\0\0\0".to_vec(), "setup.pdf"),
        (Vec::new(), "empty.png"),
    ] {
        let (status, body) = upload(&app, "dev-1", file(bytes, name, "image/png")).await;
        assert_eq!(status, 415, "{name}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    for (bytes, mime) in [
        (b"GIF89a\x01\0\x01\0\0\0\0;".to_vec(), "image/gif"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec(), "image/jpeg"),
        (b"RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0".to_vec(), "image/webp"),
        (pdf(), "application/pdf"),
    ] {
        let (status, body) = upload(
            &app,
            "dev-1",
            file(bytes, "x.bin", "application/octet-stream"),
        )
        .await;
        assert_eq!(status, 201, "{mime}: {body}");
        assert_eq!(body["mime_type"], mime);
    }
    assert_eq!(app.count("media").await, 4);

    // Not multipart at all; a part of another name; a second part after the file.
    let response = app
        .request(Method::POST, "/v1/uploads", "dev-1")
        .json(&json!({"file": "x"}))
        .send()
        .await
        .expect("request");
    let (status, body) = json_response(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_upload");
    let form = Form::new().part("document", Part::bytes(pdf()).file_name("a.pdf"));
    let (status, body) = upload(&app, "dev-1", form).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_upload"))
    );
    let other = b"%PDF-1.7 another document".to_vec();
    let form = file(other.clone(), "b.pdf", "application/pdf").text("caption", "two parts");
    let (status, body) = upload(&app, "dev-1", form).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_upload"))
    );
    assert_eq!(
        app.count("media").await,
        4,
        "the refused uploads left no row"
    );
    let kept = files_in(&app.config.media.dir);
    assert_eq!(kept.len(), 4, "nor a file: {kept:?}");
    assert!(
        kept.iter()
            .all(|f| std::fs::read(f).ok() != Some(other.clone()))
    );

    // Without an identity there is no upload.
    let response = app
        .client
        .post(app.url("/v1/uploads"))
        .multipart(file(png(), "a.png", "image/png"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
}

async fn an_upload_is_private_to_its_visitor(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let (status, body) = upload(&app, "dev-1", file(png(), "me.png", "image/png")).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("an id").to_owned();
    let path = format!("/v1/media/{id}");

    // Another visitor can neither fetch it nor attach it: as if it did not exist.
    let (status, body) = app.get("dev-2", &path).await;
    assert_eq!(status, 404, "{body}");
    let (status, missing) = app
        .get("dev-2", "/v1/media/0193a0b4-1c2d-7e3f-8a9b-0c1d2e3f4a5b")
        .await;
    assert_eq!(
        (status, &missing),
        (404, &body),
        "same answer as a missing file"
    );
    let (status, body) = app
        .send(
            "dev-2",
            json!({"content": "look", "attachments": [{"upload_id": id}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_attachment");
    assert_eq!(app.count("messages").await, 0, "nothing was stored");
    assert_eq!(app.count("conversations").await, 0);

    // Without any identity: who is asking?
    let response = app.client.get(app.url(&path)).send().await.expect("get");
    assert_eq!(response.status(), 401);
    // A supervisor may look (an expert only at files of conversations they may see).
    let (_, token) = app.staff_token("ada@example.com", "supervisor").await;
    let response = app
        .as_staff(Method::GET, &path, &token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), png());

    // A visitor who erases themselves takes their uploads along, attached or not.
    let (status, _) = app.send("dev-1", json!({"content": "hi"})).await;
    assert_eq!(status, 200);
    erase_leaving_no_file(&app, "dev-1").await;
}

async fn a_message_attaches_an_upload_that_the_visitor_and_staff_can_fetch(backend: Backend) {
    let clock = Clock::system();
    let app = TestApp::spawn_with_clock(&backend, clock.clone(), |c| {
        c.routing.default_agent = "echo".into()
    })
    .await;
    let (status, body) = upload(&app, "dev-1", file(pdf(), "invoice.pdf", "image/png")).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("an id").to_owned();
    let (status, unused) = upload(&app, "dev-1", file(png(), "left.png", "image/png")).await;
    assert_eq!(status, 201, "{unused}");
    let unused = unused["id"].as_str().expect("an id").to_owned();

    let (status, sent) = app
        .send(
            "dev-1",
            json!({"content": "my invoice", "attachments": [{"upload_id": id}]}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let attachment = &sent["message"]["attachments"][0];
    assert_eq!(attachment["media_id"], id.as_str());
    assert_eq!(attachment["mime_type"], "application/pdf");
    assert_eq!(attachment["kind"], "document");
    assert_eq!(attachment["filename"], "invoice.pdf");
    assert_eq!(attachment["size"], pdf().len());
    assert_eq!(sent["message"]["content"], "my invoice");

    // The history shows it, and the file comes back, as a download (a PDF is never shown inline).
    let conversation = sent["conversation_id"].as_str().expect("a conversation");
    let (_, history) = app
        .get(
            "dev-1",
            &format!("/v1/conversations/{conversation}/messages"),
        )
        .await;
    let first = &history["messages"][0];
    assert_eq!(first["attachments"][0]["media_id"], id.as_str());
    let path = format!("/v1/media/{id}");
    let response = app
        .request(Method::GET, &path, "dev-1")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"invoice.pdf\""
    );
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), pdf());
    let (_, token) = app.staff_token("sup@example.com", "supervisor").await;
    let response = app
        .as_staff(Method::GET, &path, &token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);

    // The row is the message's now (exports and erasure find it through the message).
    assert_eq!(
        linked_message(&app, &id).await.as_deref(),
        sent["message"]["id"].as_str()
    );

    // A second message attaches another upload, and the gateway stops before writing the link
    // (the message's write and the link are two transactions): only the message names the file.
    let mut late_png = png();
    late_png.extend_from_slice(b"late");
    let (status, late) = upload(
        &app,
        "dev-1",
        file(late_png.clone(), "late.png", "image/png"),
    )
    .await;
    assert_eq!(status, 201, "{late}");
    let late = late["id"].as_str().expect("an id").to_owned();
    let (status, second) = app
        .send(
            "dev-1",
            json!({"conversation_id": conversation, "content": "and a photo", "attachments": [{"upload_id": late}]}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    app.store
        .execute(
            switchboard::store::query(
                "UPDATE media SET message_id = NULL, attachment = NULL WHERE id = $1",
            )
            .bind(&late),
        )
        .await
        .expect("the link undone");

    // A day later, the upload nobody attached is removed with its file, the one whose link was
    // lost is linked to the message that names it, and the attached one stays.
    let sweep = UnlinkedFiles::new(
        app.store.clone(),
        clock.clone(),
        MediaDir::new(&app.config.media.dir),
        app.config.web.unused_upload_ttl,
    );
    assert_eq!(
        sweep.sweep().await.expect("a sweep"),
        Swept::default(),
        "too early"
    );
    clock.advance(app.config.web.unused_upload_ttl + Duration::from_secs(60));
    assert_eq!(
        sweep.sweep().await.expect("a sweep"),
        Swept {
            linked: 1,
            removed: 1
        }
    );
    let (status, _) = app.get("dev-1", &format!("/v1/media/{unused}")).await;
    assert_eq!(status, 404);
    let mut left: Vec<Vec<u8>> = files_in(&app.config.media.dir)
        .iter()
        .map(|f| std::fs::read(f).expect("the file"))
        .collect();
    left.sort();
    let mut expected = vec![pdf(), late_png];
    expected.sort();
    assert_eq!(left, expected);
    let response = app
        .request(Method::GET, &path, "dev-1")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        linked_message(&app, &late).await.as_deref(),
        second["message"]["id"].as_str()
    );
    assert_eq!(sweep.sweep().await.expect("a sweep"), Swept::default());

    // Linked, both files go when the visitor is erased.
    erase_leaving_no_file(&app, "dev-1").await;
}

async fn staff_get_a_file_as_they_see_its_conversation_and_every_fetch_is_audited(
    backend: Backend,
) {
    let app = TestApp::spawn_with(&backend, |c| c.routing.default_agent = "echo".into()).await;
    let (_, body) = upload(&app, "dev-1", file(png(), "photo.png", "image/png")).await;
    let attached = body["id"].as_str().expect("an id").to_owned();
    let mut other = png();
    other.extend_from_slice(b"unused");
    let (_, body) = upload(&app, "dev-1", file(other, "unused.png", "image/png")).await;
    let unused = body["id"].as_str().expect("an id").to_owned();
    let (status, sent) = app
        .send(
            "dev-1",
            json!({"content": "look", "attachments": [{"upload_id": attached}]}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let conversation = sent["conversation_id"].as_str().expect("a conversation");

    let fetch = |token: String, id: String| {
        let app = &app;
        async move {
            app.as_staff(Method::GET, &format!("/v1/media/{id}"), &token)
                .send()
                .await
                .expect("get")
                .status()
        }
    };
    // The AI answers the conversation: an expert may not see it, nor its file, nor a file no
    // message uses.
    let (expert_id, expert) = app.staff_token("eve@example.com", "expert").await;
    assert_eq!(fetch(expert.clone(), attached.clone()).await, 404);
    assert_eq!(fetch(expert.clone(), unused.clone()).await, 404);
    // A supervisor may, and observes.
    let (supervisor_id, supervisor) = app.staff_token("sue@example.com", "supervisor").await;
    assert_eq!(fetch(supervisor.clone(), attached.clone()).await, 200);
    assert_eq!(fetch(supervisor.clone(), unused.clone()).await, 200);

    let (_, admin) = app.staff_token("adm@example.com", "admin").await;
    let entries = |actor: String| {
        let (app, admin) = (&app, admin.clone());
        async move {
            let (status, log) = app
                .staff_call(
                    Method::GET,
                    &format!("/v1/admin/audit?actor={actor}"),
                    &admin,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{log}");
            log["entries"].as_array().cloned().unwrap_or_default()
        }
    };
    let observed = entries(supervisor_id).await;
    let of = |file: &str| {
        observed
            .iter()
            .find(|e| e["detail"]["file"] == file)
            .cloned()
            .unwrap_or_else(|| panic!("no entry for {file}: {observed:#?}"))
    };
    let attached_entry = of(&attached);
    assert_eq!(attached_entry["action"], "observe");
    assert_eq!(attached_entry["conversation_id"], conversation);
    let unused_entry = of(&unused);
    assert_eq!(unused_entry["action"], "observe");
    assert!(unused_entry["conversation_id"].is_null(), "{unused_entry}");
    // Handed to the experts, the expert who takes the conversation gets its file: a view.
    let (status, body) = app.handoff("dev-1", conversation).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .staff_call(
            Method::POST,
            &format!("/v1/expert/conversations/{conversation}/claim"),
            &expert,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fetch(expert.clone(), attached.clone()).await, 200);
    assert_eq!(fetch(expert.clone(), unused.clone()).await, 404);
    // Only the fetch that showed the file is recorded, as a view of the conversation.
    let fetched: Vec<Value> = entries(expert_id)
        .await
        .into_iter()
        .filter(|e| !e["detail"]["file"].is_null())
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:#?}");
    assert_eq!(fetched[0]["action"], "view");
    assert_eq!(fetched[0]["detail"]["file"], attached.as_str());
    assert_eq!(fetched[0]["conversation_id"], conversation);
}

/// The visitor erases themselves (`DELETE /v1/me`): no file row and no file is left.
async fn erase_leaving_no_file(app: &TestApp, device: &str) {
    let response = app
        .request(Method::DELETE, "/v1/me", device)
        .send()
        .await
        .expect("erase");
    assert_eq!(response.status(), 204);
    assert_eq!(app.count("media").await, 0);
    let left = files_in(&app.config.media.dir);
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// The message a stored file's row is linked to.
async fn linked_message(app: &TestApp, media_id: &str) -> Option<String> {
    let (linked,): (Option<String>,) = app
        .store
        .reader()
        .fetch_one(
            switchboard::store::query("SELECT message_id FROM media WHERE id = $1").bind(media_id),
        )
        .await
        .expect("the media row");
    linked
}

async fn uploads_count_against_the_visitors_rate(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |c| c.limits.visitor.messages_per_minute = 2).await;
    for _ in 0..2 {
        let (status, body) = upload(&app, "dev-1", file(png(), "a.png", "image/png")).await;
        assert_eq!(status, 201, "{body}");
    }
    let response = app
        .request(Method::POST, "/v1/uploads", "dev-1")
        .multipart(file(png(), "a.png", "image/png"))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let (_, body) = json_response(response).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    // The uploads used the visitor's messages too.
    let (status, _) = app.send("dev-1", json!({"content": "hello"})).await;
    assert_eq!(status, 429);
    // Another visitor is not held back.
    let (status, body) = upload(&app, "dev-2", file(png(), "b.png", "image/png")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.count("media").await, 3);
}
