//! Downloading the files users send, from providers whose media links expire.
//!
//! WhatsApp and Telegram do not put files in their webhooks: a message carries a media id, and the
//! file must be fetched with an API call while the link is valid (minutes, on WhatsApp). The
//! gateway does that in a background job right after the message is stored, through the channel's
//! [`MediaFetcher`], and keeps its own copy.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::SendError;

/// A download in progress: what the provider says about the file, and its bytes as they arrive.
pub struct MediaDownload {
    /// MIME type, as the provider reports it.
    pub mime_type: Option<String>,
    /// Size in bytes, as the provider reports it.
    pub size: Option<u64>,
    /// SHA-256 of the file as the provider reports it (hex or base64), for checking the download.
    pub sha256: Option<String>,
    /// The file's name, when the provider knows one.
    pub filename: Option<String>,
    /// The file's bytes.
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl std::fmt::Debug for MediaDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaDownload")
            .field("mime_type", &self.mime_type)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .field("filename", &self.filename)
            .finish_non_exhaustive()
    }
}

/// Fetches inbound media from a channel's provider. Failures are classified like sending
/// failures: [`SendError::Transient`] is retried, [`SendError::Permanent`] is recorded.
#[async_trait]
pub trait MediaFetcher: Send + Sync + 'static {
    /// Starts downloading the file an attachment's `source` refers to, received on `account`.
    async fn fetch(&self, account: &str, source: &str) -> Result<MediaDownload, SendError>;
}
