//! Test doubles that every channel's tests need, written once (the `testing` feature).
//!
//! A channel crate tests its sender against a fake of its provider's API, and its webhooks and
//! pollers against a fake of the gateway's inbox; the gateway's end-to-end tests start the same
//! provider fakes. Each provider crate exposes its fake behind a `testing` feature of its own
//! (`switchboard_telegram::testing::FakeBotApi`, `switchboard_whatsapp::testing::FakeGraph`,
//! `switchboard_email::testing::FakeSmtp`, `switchboard_api::testing::FakeIntegration`), built on
//! the generic pieces here:
//!
//! - [`FakeServer`] / [`serve`]: a server on a free port of 127.0.0.1, stopped when dropped;
//! - [`Recorder`]: what a fake received, and waiting until it received enough;
//! - [`Reply`]: a canned HTTP answer (status, headers, body; late, or never finished);
//! - [`FakeInbox`]: the gateway's [`Inbox`](crate::Inbox) in memory;
//! - [`fixture`]: the recorded provider payloads of `webhooks/`; [`webhook_request`]: the head of
//!   a webhook request as the gateway hands it over; [`read_download`]: the bytes of a
//!   [`MediaDownload`].
//!
//! Nothing here is for production: the fakes panic, with a message, on what a test did not
//! expect.

mod inbox;
mod recorder;
mod reply;
mod server;

use std::sync::{Mutex, MutexGuard};

use futures::TryStreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};

use crate::{MediaDownload, WebhookRequest};

pub use inbox::{Batch, FakeInbox};
pub use recorder::{Recorder, WAIT};
pub use reply::Reply;
pub use server::{FakeServer, serve};

/// Locks a fake's state. A test that panicked while holding the lock has failed already; the
/// state is still worth reading for the rest of it (its message, other tasks).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A recorded provider payload: `webhooks/<channel>/<name>` of the workspace.
pub fn fixture(channel: &str, name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../webhooks")
        .join(channel)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lowercase hex SHA-256 of `bytes`: the checksum providers announce for a file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A webhook request's head, as the gateway hands it to a channel: `path` below the channel's
/// route, no query, the `headers` given (name, value).
pub fn webhook_request<K: AsRef<str>, V: AsRef<str>>(
    method: Method,
    path: &str,
    headers: &[(K, V)],
) -> WebhookRequest {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        map.insert(
            HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|e| panic!("header name {name:?}: {e}")),
            HeaderValue::from_str(value).unwrap_or_else(|e| panic!("header {name}: {e}")),
        );
    }
    WebhookRequest {
        method,
        path: path.into(),
        query: None,
        headers: map,
    }
}

/// All the bytes of a download, or the error that ended it.
pub async fn read_download(download: MediaDownload) -> std::io::Result<Vec<u8>> {
    download
        .body
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
}
