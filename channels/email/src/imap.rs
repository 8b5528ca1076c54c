//! Polling a mailbox over IMAP, for deployments without an inbound mail provider.
//!
//! The poller logs in, selects the mailbox and reads mails by UID, handing each to the gateway's
//! [`Inbox`] together with its UID (and the mailbox's UIDVALIDITY) as the mailbox's cursor, in
//! one transaction: after a crash it resumes with the next UID, so no mail is missed or read
//! twice. Mails already in the mailbox when the gateway first polls it are left alone (the
//! gateway should not answer a years-old inbox). Between rounds it waits with IDLE when the
//! server offers it — new mail is then read within moments — and otherwise polls every
//! `email.imap.poll_interval`. A broken connection is retried with backoff.
//!
//! A mail the gateway refuses for good (an attachment larger than it keeps, say) is passed over
//! with a warning, as an unreadable one is: retrying it would stop the mailbox at that mail
//! forever. Only a failure of the gateway itself (its database) or a rate limit keeps the cursor
//! where it is, to be tried again after the backoff.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use futures::StreamExt;
use switchboard_channel::{Checkpoint, Inbox, InboxError};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, rustls};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    ReplyAddress, parse_mime,
    receive::{Received, receive},
};

/// How long one IDLE waits before it is renewed (servers drop IDLE after 30 minutes).
const IDLE_ROUND: Duration = Duration::from_secs(25 * 60);
/// Longest time to connect and log in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the mailbox is.
#[derive(Clone, PartialEq, Eq)]
pub struct MailboxUrl {
    /// Whether the connection is TLS (`imaps://`).
    pub tls: bool,
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Login password.
    pub password: String,
    /// Mailbox name.
    pub mailbox: String,
}

impl std::fmt::Debug for MailboxUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(
            f,
            "{}://{}@{}:{}/{}",
            if self.tls { "imaps" } else { "imap" },
            self.user,
            self.host,
            self.port,
            self.mailbox
        )
    }
}

/// An IMAP URL that cannot be used. Its message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MailboxUrlError(String);

impl MailboxUrl {
    /// Reads `imaps://user:password@host[:port][/mailbox]` or `imap://…`.
    pub fn parse(url: &str) -> Result<MailboxUrl, MailboxUrlError> {
        let fail = |message: String| MailboxUrlError(message);
        let parsed =
            url::Url::parse(url).map_err(|e| fail(format!("email.imap.url is not a URL: {e}")))?;
        let tls = match parsed.scheme() {
            "imaps" => true,
            "imap" => false,
            other => {
                return Err(fail(format!(
                    "email.imap.url must start with imaps:// or imap://, not {other}://"
                )));
            }
        };
        let host = parsed
            .host_str()
            .ok_or_else(|| fail("email.imap.url has no host".into()))?
            .to_owned();
        let decode = |part: &str, what: &str| {
            // The part itself is not shown: it may be the password.
            percent_decode(part).ok_or_else(|| {
                fail(format!(
                    "email.imap.url: bad percent-encoding in the {what}"
                ))
            })
        };
        let user = decode(parsed.username(), "user")?;
        let password = decode(parsed.password().unwrap_or_default(), "password")?;
        if user.is_empty() {
            return Err(fail(
                "email.imap.url needs a user: imaps://user:password@host/INBOX".into(),
            ));
        }
        let mailbox = decode(parsed.path().trim_start_matches('/'), "mailbox")?;
        Ok(MailboxUrl {
            tls,
            port: parsed.port().unwrap_or(if tls { 993 } else { 143 }),
            host,
            user,
            password,
            mailbox: if mailbox.is_empty() {
                "INBOX".into()
            } else {
                mailbox
            },
        })
    }
}

/// `%xx` escapes decoded; `None` for a truncated escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The connection to the server, plain or TLS.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Connection for T {}

type Session = async_imap::Session<Box<dyn Connection>>;

/// The poller of one mailbox.
pub struct ImapPoller {
    /// The mailbox.
    pub url: MailboxUrl,
    /// Where its mails go.
    pub inbox: Arc<dyn Inbox>,
    /// The gateway's reply address (thread tokens, the account).
    pub ours: ReplyAddress,
    /// Attachments kept of one mail at most.
    pub max_attachments: usize,
    /// How often to look when the server cannot notify.
    pub poll_interval: Duration,
    /// Mark fetched mails read.
    pub mark_seen: bool,
    /// Ends the poller.
    pub stop: CancellationToken,
}

impl ImapPoller {
    /// Polls until stopped, reconnecting after failures.
    pub async fn run(self) {
        let mut failures = 0u32;
        loop {
            match self.watch().await {
                Ok(()) => return,
                Err(e) => {
                    failures += 1;
                    warn!(mailbox = ?self.url, error = %format!("{e:#}"), "IMAP polling failed; reconnecting");
                    let wait = Duration::from_secs(1u64 << failures.min(6));
                    if self.pause(wait).await {
                        return;
                    }
                }
            }
        }
    }

    /// One connection's life: read what is new, wait, repeat. Returns `Ok` only when stopped.
    async fn watch(&self) -> anyhow::Result<()> {
        let mut session = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .context("connecting timed out")??;
        let selected = session
            .select(&self.url.mailbox)
            .await
            .with_context(|| format!("cannot select mailbox {:?}", self.url.mailbox))?;
        let validity = selected.uid_validity.unwrap_or(0);
        let mut last = self.position(validity, selected.uid_next).await?;
        let idle = session
            .capabilities()
            .await
            .context("cannot read the server's capabilities")?
            .has_str("IDLE");
        info!(mailbox = ?self.url, idle, "polling the mailbox");
        loop {
            if self.stop.is_cancelled() {
                let _ = session.logout().await;
                return Ok(());
            }
            last = self.read_new(&mut session, validity, last).await?;
            if idle {
                let mut handle = session.idle();
                handle.init().await.context("IDLE was refused")?;
                let (wait, interrupt) = handle.wait_with_timeout(IDLE_ROUND);
                tokio::select! {
                    result = wait => { result.context("IDLE failed")?; }
                    () = self.stop.cancelled() => drop(interrupt),
                }
                session = handle.done().await.context("cannot end IDLE")?;
            } else if self.pause(self.poll_interval).await {
                let _ = session.logout().await;
                return Ok(());
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<Session> {
        let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .with_context(|| format!("cannot connect to {}:{}", self.url.host, self.url.port))?;
        let stream: Box<dyn Connection> = if self.url.tls {
            let roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .context("TLS setup")?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(self.url.host.clone())
                .context("the IMAP host is not a valid TLS server name")?;
            Box::new(
                TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake with the IMAP server failed")?,
            )
        } else {
            Box::new(tcp)
        };
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .context("no greeting from the IMAP server")?
            .context("the IMAP server closed the connection")?;
        client
            .login(&self.url.user, &self.url.password)
            .await
            .map_err(|(e, _)| e)
            .context("the IMAP server refused the login")
    }

    /// The cursor's name: one per mailbox.
    fn cursor_name(&self) -> String {
        cursor_name(&self.url)
    }

    /// The last UID read. A mailbox polled for the first time (or whose UIDs were renumbered,
    /// UIDVALIDITY changed) starts after its current last mail.
    async fn position(&self, validity: u32, uid_next: Option<u32>) -> anyhow::Result<u32> {
        let stored = self
            .inbox
            .position(&self.cursor_name())
            .await
            .context("cannot read the mailbox's position")?;
        if let Some(uid) = stored.as_deref().and_then(|s| resume_after(s, validity)) {
            return Ok(uid);
        }
        let start = uid_next.unwrap_or(1).saturating_sub(1);
        self.advance(validity, start).await?;
        Ok(start)
    }

    /// Moves the cursor without a mail (the start position, an unreadable or refused mail).
    async fn advance(&self, validity: u32, uid: u32) -> anyhow::Result<()> {
        self.inbox
            .ingest(Vec::new(), Some(self.checkpoint(validity, uid)))
            .await
            .context("cannot store the mailbox's position")?;
        Ok(())
    }

    fn checkpoint(&self, validity: u32, uid: u32) -> Checkpoint {
        Checkpoint::Cursor {
            name: self.cursor_name(),
            value: format!("{validity}:{uid}"),
        }
    }

    /// Reads every mail after UID `last`, in order; returns the new last UID.
    async fn read_new(
        &self,
        session: &mut Session,
        validity: u32,
        mut last: u32,
    ) -> anyhow::Result<u32> {
        let found = session
            .uid_search(format!("UID {}:*", last.saturating_add(1)))
            .await
            .context("UID SEARCH failed")?;
        // "n:*" always matches the last mail, even when it is older than n.
        let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > last).collect();
        uids.sort_unstable();
        for uid in uids {
            let raw = self.fetch(session, uid).await?;
            match parse_mime(&raw, &self.ours) {
                Ok(email) => {
                    let checkpoint = Some(self.checkpoint(validity, uid));
                    match receive(
                        &*self.inbox,
                        &self.ours,
                        self.max_attachments,
                        email,
                        checkpoint,
                    )
                    .await
                    {
                        Ok(Received::Ingested(_) | Received::Ignored { .. }) => {}
                        Err(e) if retry_later(&e) => {
                            return Err(anyhow::Error::new(e)
                                .context(format!("cannot store the mail with UID {uid}")));
                        }
                        Err(e) => {
                            warn!(uid, error = %e, "the gateway refused a mail; passed over");
                            self.advance(validity, uid).await?;
                        }
                    }
                }
                Err(e) => {
                    warn!(uid, error = %e, "skipping an unreadable mail");
                    self.advance(validity, uid).await?;
                }
            }
            last = uid;
            if self.mark_seen {
                self.mark_seen(session, uid).await;
            }
        }
        Ok(last)
    }

    async fn fetch(&self, session: &mut Session, uid: u32) -> anyhow::Result<Vec<u8>> {
        let mut fetches = session
            .uid_fetch(uid.to_string(), "BODY.PEEK[]")
            .await
            .with_context(|| format!("cannot fetch the mail with UID {uid}"))?;
        let mut raw = None;
        while let Some(fetch) = fetches.next().await {
            let fetch = fetch.context("reading a fetched mail failed")?;
            if let Some(body) = fetch.body() {
                raw = Some(body.to_vec());
            }
        }
        raw.with_context(|| format!("the server returned no body for UID {uid}"))
    }

    /// Marks a mail read; a failure only costs the flag.
    async fn mark_seen(&self, session: &mut Session, uid: u32) {
        match session.uid_store(uid.to_string(), "+FLAGS (\\Seen)").await {
            Ok(updates) => {
                let _ = updates.collect::<Vec<_>>().await;
            }
            Err(e) => warn!(uid, error = %e, "cannot mark a mail read"),
        }
    }

    /// Waits, unless stopped first; returns whether it was stopped.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => true,
            () = tokio::time::sleep(wait) => false,
        }
    }
}

/// The name of a mailbox's cursor: `imap:{user}@{host}/{mailbox}`.
pub(crate) fn cursor_name(url: &MailboxUrl) -> String {
    format!("imap:{}@{}/{}", url.user, url.host, url.mailbox)
}

/// The last UID read, from a stored position `{uidvalidity}:{uid}`, when it is of the mailbox's
/// current UIDVALIDITY.
fn resume_after(stored: &str, validity: u32) -> Option<u32> {
    let (v, uid) = stored.split_once(':')?;
    (v.parse::<u32>().ok()? == validity).then_some(())?;
    uid.parse().ok()
}

/// Whether a mail the inbox did not take may be taken later: the gateway failed, or a rate was
/// exceeded. Any other refusal would come again with every try.
fn retry_later(error: &InboxError) -> bool {
    matches!(
        error,
        InboxError::Unavailable(_) | InboxError::Limited { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_urls_are_read_with_defaults_and_never_show_the_password() {
        let url = MailboxUrl::parse(
            "imaps://support%40example.com:s%3Acret@imap.example.com/Support%20In",
        )
        .unwrap();
        assert_eq!(
            url,
            MailboxUrl {
                tls: true,
                host: "imap.example.com".into(),
                port: 993,
                user: "support@example.com".into(),
                password: "s:cret".into(),
                mailbox: "Support In".into(),
            }
        );
        assert!(!format!("{url:?}").contains("s:cret"));
        let plain = MailboxUrl::parse("imap://bob:pw@127.0.0.1:1143").unwrap();
        assert_eq!(
            (plain.tls, plain.port, plain.mailbox.as_str()),
            (false, 1143, "INBOX")
        );
        assert!(MailboxUrl::parse("pop3://bob:pw@host").is_err());
        assert!(
            MailboxUrl::parse("imaps://host/INBOX").is_err(),
            "a user is needed"
        );
        let bad = MailboxUrl::parse("imaps://bob:s%ZZcret@host").unwrap_err();
        assert!(!bad.to_string().contains("cret"), "{bad}");
        assert_eq!(cursor_name(&plain), "imap:bob@127.0.0.1/INBOX");
    }

    #[test]
    fn positions_of_another_uidvalidity_are_not_resumed() {
        assert_eq!(resume_after("7:42", 7), Some(42));
        assert_eq!(resume_after("7:42", 8), None);
        assert_eq!(resume_after("garbage", 7), None);
        assert_eq!(resume_after("7:x", 7), None);
    }

    #[test]
    fn only_passing_trouble_is_retried() {
        assert!(retry_later(&InboxError::Unavailable("db".into())));
        assert!(retry_later(&InboxError::Limited {
            reason: "slow down".into(),
            retry_after: 5
        }));
        assert!(!retry_later(&InboxError::TooLarge { limit: 1 }));
        assert!(!retry_later(&InboxError::ConversationClosed));
    }
}
