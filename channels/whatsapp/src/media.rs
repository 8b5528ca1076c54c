//! Downloading the files WhatsApp users send.
//!
//! A WhatsApp webhook carries no file, only a media id. Fetching it takes two requests, both with
//! the receiving number's access token: the Graph API turns the id into a short-lived URL (valid
//! for about five minutes) plus the file's type, size and hash, and that URL serves the bytes. The
//! gateway calls [`WhatsappMedia`] from a background job right after storing the message and
//! streams the body into its own storage, so files of any size pass through without being held
//! in memory.

use std::{io, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt, stream::BoxStream};
use reqwest::{StatusCode, header::CONTENT_TYPE};
use serde_json::Value;
use switchboard_channel::{MediaDownload, MediaFetcher, SendError};

use crate::{
    Settings,
    graph::{self, Failure},
};

/// The Graph error code and subcode of an object that does not exist, which is how the API
/// answers an unknown or expired media id (with HTTP 400, not 404).
const NO_SUCH_OBJECT: (i64, i64) = (100, 33);

/// Fetches inbound WhatsApp media by id, for any number in [`Settings`].
pub struct WhatsappMedia {
    settings: Arc<Settings>,
    http: reqwest::Client,
}

impl WhatsappMedia {
    /// A fetcher using `http` for its requests.
    ///
    /// The metadata request is bounded by [`Settings::timeout`]. The download is bounded by it
    /// until the answer's headers arrive and then between any two chunks of the body, but not as a
    /// whole: a large video on a slow link may take longer than one API call should, and a total
    /// limit would make it fail on every retry.
    pub fn new(settings: Arc<Settings>, http: reqwest::Client) -> Self {
        Self { settings, http }
    }

    /// Asks the Graph API where the file of `media_id` is.
    async fn locate(
        &self,
        account: &str,
        token: &str,
        media_id: &str,
    ) -> Result<MediaInfo, SendError> {
        let response = self
            .http
            .get(self.settings.url(media_id))
            .bearer_auth(token)
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(graph::request_failed)?;
        if !response.status().is_success() {
            return Err(classify_failure(Failure::read(response).await, account));
        }
        let answer: Value = graph::json_answer(response).await?;
        media_info(&answer)
    }

    /// Starts downloading the file at `info.url`.
    async fn download(
        &self,
        account: &str,
        token: &str,
        info: MediaInfo,
    ) -> Result<MediaDownload, SendError> {
        let timeout = self.settings.timeout;
        let request = self.http.get(&info.url).bearer_auth(token).send();
        let response = match tokio::time::timeout(timeout, request).await {
            Ok(response) => response.map_err(graph::request_failed)?,
            Err(_) => {
                return Err(SendError::transient(format!(
                    "the media download did not start within {timeout:?}"
                )));
            }
        };
        if !response.status().is_success() {
            return Err(classify_failure(Failure::read(response).await, account));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let content_length = response.content_length();
        Ok(MediaDownload {
            mime_type: info.mime_type.or(content_type),
            size: info.size.or(content_length),
            sha256: info.sha256,
            filename: None,
            body: idle_limited(response.bytes_stream(), timeout),
        })
    }
}

#[async_trait]
impl MediaFetcher for WhatsappMedia {
    async fn fetch(&self, account: &str, source: &str) -> Result<MediaDownload, SendError> {
        let token = graph::token(&self.settings, account)?;
        let media_id = graph::path_segment(source.trim(), "media id")?;
        let info = self.locate(account, token, media_id).await?;
        self.download(account, token, info).await
    }
}

/// What the Graph API says about a media id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MediaInfo {
    /// Where the bytes are, for a few minutes.
    url: String,
    mime_type: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
}

/// Reads the metadata answer. Only the URL is indispensable.
fn media_info(answer: &Value) -> Result<MediaInfo, SendError> {
    let text = |field: &str| {
        answer
            .get(field)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let url = text("url").ok_or_else(|| graph::unexpected_answer("no url for the media id"))?;
    Ok(MediaInfo {
        url,
        mime_type: text("mime_type"),
        sha256: text("sha256"),
        size: answer.get("file_size").and_then(file_size),
    })
}

/// `file_size`, which the API documents as a string but has been seen as a number.
fn file_size(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Classifies a failed metadata or download request. A media id that is unknown or has expired
/// gets a code of its own: the gateway records the attachment as lost rather than retrying.
fn classify_failure(failure: Failure, account: &str) -> SendError {
    let no_such_object = failure.error.as_ref().is_some_and(|error| {
        (error.code, error.subcode) == (Some(NO_SUCH_OBJECT.0), Some(NO_SUCH_OBJECT.1))
    });
    if failure.status == StatusCode::NOT_FOUND || no_such_object {
        return SendError::permanent(
            "media_not_found",
            format!(
                "the media id is unknown or has expired ({})",
                failure.reason()
            ),
        );
    }
    failure.into_send_error(account)
}

/// The body as the gateway reads it: I/O errors, and an error when no data arrives for `idle`,
/// so a stalled download fails instead of holding a job forever.
fn idle_limited(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    idle: Duration,
) -> BoxStream<'static, io::Result<Bytes>> {
    futures::stream::unfold(Some(Box::pin(body)), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(None) => None,
            // The error ends the stream: what would follow is no longer the file.
            Ok(Some(Err(err))) => Some((Err(io::Error::other(err.without_url())), None)),
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the media download stalled: no data for {idle:?}"),
                )),
                None,
            )),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_channel::testing::read_download;

    use super::*;
    use crate::testing::{DEFAULT_TOKEN, FakeGraph, GraphReply, OWN_NUMBER, OWN_TOKEN, Reply};

    const NUMBER: &str = "106540352242922";
    const MEDIA_ID: &str = "1037543291543636";

    fn fetcher(settings: Settings) -> WhatsappMedia {
        WhatsappMedia::new(Arc::new(settings), reqwest::Client::new())
    }

    fn metadata(fake: &FakeGraph, file_size: Value) -> Reply {
        Reply::json(
            200,
            json!({
                "url": format!("{}/whatsapp_business/attachments/?mid={MEDIA_ID}&hash=abc", fake.base_url()),
                "mime_type": "image/jpeg",
                "sha256": "c2ba5bd5e5f9e5e6a1d3",
                "file_size": file_size,
                "id": MEDIA_ID,
                "messaging_product": "whatsapp"
            }),
        )
    }

    #[tokio::test]
    async fn fetches_metadata_then_the_file() {
        let fake = FakeGraph::start().await;
        let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fake.reply(metadata(&fake, json!("200000")));
        fake.reply(Reply::raw(200, "application/octet-stream", file.clone()));

        let download = fetcher(fake.settings())
            .fetch(NUMBER, MEDIA_ID)
            .await
            .unwrap();
        assert_eq!(download.mime_type.as_deref(), Some("image/jpeg"));
        assert_eq!(download.size, Some(200_000));
        assert_eq!(download.sha256.as_deref(), Some("c2ba5bd5e5f9e5e6a1d3"));
        assert_eq!(download.filename, None);
        assert_eq!(read_download(download).await.unwrap(), file);

        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].path, format!("/v21.0/{MEDIA_ID}"));
        assert_eq!(requests[1].path, "/whatsapp_business/attachments/");
        let bearer = format!("Bearer {DEFAULT_TOKEN}");
        assert!(
            requests
                .iter()
                .all(|request| request.authorization.as_deref() == Some(bearer.as_str()))
        );
    }

    #[tokio::test]
    async fn media_added_to_the_fake_is_served_with_its_metadata() {
        let fake = FakeGraph::start().await;
        let added = fake.add_media(MEDIA_ID, b"a photo", "image/jpeg");
        let fetcher = fetcher(fake.settings());
        let download = fetcher.fetch(NUMBER, MEDIA_ID).await.unwrap();
        assert_eq!(download.mime_type.as_deref(), Some("image/jpeg"));
        assert_eq!(download.size, Some(7));
        assert_eq!(download.sha256, Some(added.sha256));
        assert_eq!(read_download(download).await.unwrap(), b"a photo");
        let error = fetcher.fetch(NUMBER, "1037").await.unwrap_err();
        assert!(matches!(error, SendError::Permanent { .. }), "{error:?}");
        assert_eq!(fake.requests().len(), 3, "metadata, file, metadata");
    }

    #[tokio::test]
    async fn uses_the_numbers_own_token_and_falls_back_to_the_content_type() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::json(
            200,
            json!({"url": format!("{}/file", fake.base_url()), "file_size": 3, "id": MEDIA_ID}),
        ));
        fake.reply(Reply::raw(200, "audio/ogg", "abc"));
        let download = fetcher(fake.settings())
            .fetch(OWN_NUMBER, MEDIA_ID)
            .await
            .unwrap();
        assert_eq!(download.mime_type.as_deref(), Some("audio/ogg"));
        assert_eq!(download.size, Some(3));
        assert_eq!(download.sha256, None);
        assert_eq!(read_download(download).await.unwrap(), b"abc");
        let bearer = format!("Bearer {OWN_TOKEN}");
        assert!(
            fake.requests()
                .iter()
                .all(|request| request.authorization.as_deref() == Some(bearer.as_str()))
        );
    }

    #[tokio::test]
    async fn unknown_media_is_permanent() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::raw(404, "text/plain", "Not Found"));
        // How the Graph API actually answers an unknown id: code 100, subcode 33, HTTP 400.
        fake.reply(Reply::json(
            400,
            json!({"error": {
                "message": "Unsupported get request. Object with ID '1' does not exist",
                "type": "GraphMethodException",
                "code": 100,
                "error_subcode": 33
            }}),
        ));
        let fetcher = fetcher(fake.settings());
        for _ in 0..2 {
            let error = fetcher.fetch(NUMBER, MEDIA_ID).await.unwrap_err();
            assert!(
                matches!(&error, SendError::Permanent { code, .. } if code == "media_not_found"),
                "{error:?}"
            );
        }
        assert_eq!(
            fake.requests().len(),
            2,
            "no download after a failed lookup"
        );
    }

    #[tokio::test]
    async fn a_404_on_either_request_is_media_not_found() {
        let fake = FakeGraph::start().await;
        fake.reply(Reply::raw(404, "text/plain", "Not Found"));
        fake.reply(metadata(&fake, json!(3)));
        fake.reply(Reply::raw(404, "text/plain", "Not Found"));
        let fetcher = fetcher(fake.settings());
        for _ in 0..2 {
            let error = fetcher.fetch(NUMBER, MEDIA_ID).await.unwrap_err();
            assert!(
                matches!(&error, SendError::Permanent { code, .. } if code == "media_not_found"),
                "{error:?}"
            );
        }
        assert_eq!(fake.requests().len(), 3);
    }

    #[tokio::test]
    async fn download_failures_are_classified_by_status() {
        let fake = FakeGraph::start().await;
        fake.reply(metadata(&fake, json!("3")));
        fake.reply(Reply::raw(500, "text/html", "<h1>oops</h1>"));
        fake.reply(metadata(&fake, json!("3")));
        fake.reply(Reply::raw(401, "text/plain", ""));
        let fetcher = fetcher(fake.settings());
        let error = fetcher.fetch(NUMBER, MEDIA_ID).await.unwrap_err();
        assert!(matches!(error, SendError::Transient { .. }), "{error:?}");
        let error = fetcher.fetch(NUMBER, MEDIA_ID).await.unwrap_err();
        assert!(matches!(error, SendError::Permanent { code, .. } if code == "190"));
    }

    #[tokio::test]
    async fn metadata_failures_are_classified() {
        let fake = FakeGraph::start().await;
        fake.reply(
            Reply::error(400, 130429, "(#130429) Rate limit hit").header("Retry-After", "3"),
        );
        fake.reply(Reply::json(200, json!({"id": MEDIA_ID})));
        let fetcher = fetcher(fake.settings());
        let error = fetcher.fetch(NUMBER, MEDIA_ID).await.unwrap_err();
        assert!(matches!(
            error,
            SendError::Transient { retry_after: Some(wait), .. } if wait == Duration::from_secs(3)
        ));
        let error = fetcher.fetch(NUMBER, MEDIA_ID).await.unwrap_err();
        assert!(matches!(error, SendError::Transient { reason, .. } if reason.contains("no url")));
        assert_eq!(fake.requests().len(), 2, "no download without a url");
    }

    #[tokio::test]
    async fn a_stalled_download_ends_with_an_error() {
        let fake = FakeGraph::start().await;
        fake.reply(metadata(&fake, json!("10")));
        fake.reply(Reply::raw(200, "image/jpeg", "first").stalled());
        let mut settings = fake.settings();
        settings.timeout = Duration::from_millis(200);
        let download = fetcher(settings).fetch(NUMBER, MEDIA_ID).await.unwrap();
        let error = read_download(download).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn no_token_or_bad_id_fails_without_a_request() {
        let fake = FakeGraph::start().await;
        let mut settings = fake.settings();
        settings.access_token = None;
        let error = fetcher(settings).fetch(NUMBER, MEDIA_ID).await.unwrap_err();
        assert!(matches!(error, SendError::Permanent { code, .. } if code == "no_access_token"));
        let error = fetcher(fake.settings())
            .fetch(NUMBER, "../v21.0/me")
            .await
            .unwrap_err();
        assert!(matches!(error, SendError::Permanent { code, .. } if code == "invalid_media_id"));
        assert!(fake.requests().is_empty());
    }

    #[test]
    fn file_sizes_come_as_strings_or_numbers() {
        assert_eq!(file_size(&json!("303833")), Some(303_833));
        assert_eq!(file_size(&json!(303833)), Some(303_833));
        assert_eq!(file_size(&json!("big")), None);
        assert_eq!(file_size(&json!(-1)), None);
    }
}
