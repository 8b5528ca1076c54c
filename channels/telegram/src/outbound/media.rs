//! Downloading the files users send.
//!
//! A Telegram message carries a `file_id`, not the file. `getFile` turns the id into a path on the
//! Bot API's file server (valid for at least an hour), and `{api_url}/file/bot{token}/{path}`
//! serves the bytes. Bots can download files of up to 20 MB; Telegram refuses `getFile` for larger
//! ones. The gateway streams the body into its own storage, so nothing here holds the file in
//! memory.
//!
//! The download is started before [`MediaDownload`] is returned: a missing file or a refused
//! token should be a classified failure of the fetch, not an I/O error halfway through storing.

use std::io;

use bytes::Bytes;
use futures::{Stream, StreamExt, stream::BoxStream};
use reqwest::StatusCode;
use switchboard_channel::{MediaDownload, SendError};
use teloxide::{ApiError, RequestError, net::Download, requests::Requester, types::FileId};

use super::{TelegramBot, classify};

/// The code of a file id Telegram does not know (or no longer serves).
const MEDIA_NOT_FOUND: &str = "media_not_found";

impl TelegramBot {
    /// Starts downloading the file with `file_id`.
    pub(crate) async fn fetch(&self, file_id: &str) -> Result<MediaDownload, SendError> {
        let file_id = file_id.trim();
        if file_id.is_empty() {
            return Err(SendError::permanent(
                MEDIA_NOT_FOUND,
                "the file id is empty",
            ));
        }
        let file = self
            .api
            .get_file(FileId(file_id.to_owned()))
            .await
            .map_err(|err| self.file_failure(&err))?;
        if file.path.is_empty() {
            return Err(SendError::permanent(
                MEDIA_NOT_FOUND,
                "Telegram gave no path to download the file from",
            ));
        }
        // teloxide puts `u32::MAX` where Telegram left the size out.
        let size = (file.size != u32::MAX).then_some(u64::from(file.size));

        let mut body = self.downloader.download_file_stream(&file.path);
        // The first item is the answer's status (an error) or the first chunk.
        let first = match body.next().await {
            None => None,
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(err)) => return Err(self.download_failure(&err)),
        };
        let token = self.downloader.token().to_owned();
        let body = futures::stream::iter(first.map(Ok)).chain(until_error(body, token));
        Ok(MediaDownload {
            // Telegram does not say; the gateway has the type from the message itself.
            mime_type: None,
            size,
            sha256: None,
            // The path's name is Telegram's (`file_12.oga`), not the user's; the message has that.
            filename: None,
            body: body.boxed(),
        })
    }

    /// Classifies a failed `getFile`: an unknown id gets a code of its own, so the gateway records
    /// the attachment as lost rather than retrying.
    fn file_failure(&self, error: &RequestError) -> SendError {
        let unknown_file = match error {
            RequestError::Api(ApiError::FileIdInvalid | ApiError::WrongFileId) => true,
            RequestError::Api(ApiError::Unknown(text)) => {
                let text = text.to_lowercase();
                text.contains("file_id") || text.contains("file id")
            }
            _ => false,
        };
        match self.failure("getFile", error, None) {
            SendError::Permanent { reason, .. } if unknown_file => {
                SendError::permanent(MEDIA_NOT_FOUND, reason)
            }
            other => other,
        }
    }

    /// Classifies a download that failed before its first byte, by the file server's status.
    fn download_failure(&self, err: &reqwest::Error) -> SendError {
        let reason = self.without_token(&switchboard_channel::error_chain(err));
        let error = match err.status() {
            Some(StatusCode::NOT_FOUND) => SendError::permanent(
                MEDIA_NOT_FOUND,
                format!("the file server does not have the file: {reason}"),
            ),
            Some(StatusCode::UNAUTHORIZED) => SendError::permanent(classify::INVALID_TOKEN, reason),
            Some(status) if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                SendError::transient(reason)
            }
            Some(status) => SendError::permanent(status.as_u16().to_string(), reason),
            None if err.is_timeout() => {
                SendError::transient(format!("the file server did not answer in time: {reason}"))
            }
            None => SendError::transient(format!("the file server could not be reached: {reason}")),
        };
        if classify::is_invalid_token(&error) {
            tracing::error!(
                bot = %self.name,
                "the Telegram file server refused the token of bot {:?}; check its token",
                self.name
            );
        } else {
            tracing::warn!(bot = %self.name, ?error, "a Telegram file download failed");
        }
        error
    }

    /// `text` with the bot token masked.
    fn without_token(&self, text: &str) -> String {
        let token = self.downloader.token();
        if token.is_empty() {
            text.to_owned()
        } else {
            text.replace(token, "<token>")
        }
    }
}

/// The rest of a download as the gateway reads it: reqwest errors become I/O errors (timeouts as
/// [`io::ErrorKind::TimedOut`]) without the token, and the first error ends the stream, since what
/// would follow is no longer the file.
fn until_error(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    token: String,
) -> BoxStream<'static, io::Result<Bytes>> {
    futures::stream::unfold(Some((Box::pin(body), token)), |state| async move {
        let (mut body, token) = state?;
        match body.next().await? {
            Ok(chunk) => Some((Ok(chunk), Some((body, token)))),
            Err(err) => {
                let kind = if err.is_timeout() {
                    io::ErrorKind::TimedOut
                } else {
                    io::ErrorKind::Other
                };
                let mut text = switchboard_channel::error_chain(&err);
                if !token.is_empty() {
                    text = text.replace(&token, "<token>");
                }
                let error =
                    io::Error::new(kind, format!("the Telegram file download failed: {text}"));
                Some((Err(error), None))
            }
        }
    })
    .boxed()
}
