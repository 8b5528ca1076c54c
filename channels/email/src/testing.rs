//! A fake SMTP server on 127.0.0.1 (the `testing` feature), for this crate's tests and the
//! gateway's end-to-end tests alike.
//!
//! It speaks enough of RFC 5321 for lettre (greeting, EHLO/HELO, AUTH, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT), records every command and every message whose data it received, and answers
//! with the replies a test scripted for a stage of the transaction ([`FakeSmtp::script`],
//! [`FakeSmtp::answer_next`]: a 451 to be retried, a 550 to be refused), or with success. It
//! offers no STARTTLS, so `smtp://127.0.0.1:<port>` (plain) reaches it; [`FakeSmtp::silent`] is a
//! server that never says a word.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
};

use switchboard_channel::testing::{FakeServer, Recorder, lock};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream, tcp::OwnedWriteHalf},
};

/// A point of the transaction where a scripted reply replaces the usual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The greeting (usually `220`).
    Greeting,
    /// `AUTH` (usually `235`).
    Auth,
    /// `MAIL FROM` (usually `250`).
    MailFrom,
    /// `RCPT TO` (usually `250`).
    RcptTo,
    /// `DATA` (usually `354`).
    Data,
    /// The end of the message data (usually `250`).
    Message,
}

/// A message the fake received (its data complete, whatever the answer).
#[derive(Debug, Clone)]
pub struct Received {
    /// The `MAIL FROM` address.
    pub from: String,
    /// The `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message as sent, dot-stuffing removed, CRLF line ends.
    pub data: String,
    /// The `AUTH` command of the session, if any.
    pub auth: Option<String>,
    /// What the fake answered the data.
    pub answer: String,
}

impl Received {
    /// Whether the fake accepted it (a `2xx` answer).
    pub fn accepted(&self) -> bool {
        self.answer.starts_with('2')
    }

    /// The unfolded value of the first header `name` (case-insensitive) of the message.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\r\n\r\n")?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

#[derive(Default)]
struct Shared {
    /// Every message whose data was received, accepted or not.
    received: Recorder<Received>,
    commands: Recorder<String>,
    script: Mutex<HashMap<Stage, VecDeque<String>>>,
    connections: AtomicUsize,
}

impl Shared {
    /// The scripted reply for `stage`, or `usual`.
    fn reply(&self, stage: Stage, usual: &str) -> String {
        self.script()
            .get_mut(&stage)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| usual.to_owned())
    }

    fn script(&self) -> MutexGuard<'_, HashMap<Stage, VecDeque<String>>> {
        lock(&self.script)
    }
}

/// The fake SMTP server; stops when dropped.
pub struct FakeSmtp {
    server: FakeServer,
    shared: Arc<Shared>,
}

impl FakeSmtp {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeSmtp {
        FakeSmtp::serve(true).await
    }

    /// A server that accepts connections and never says anything.
    pub async fn silent() -> FakeSmtp {
        FakeSmtp::serve(false).await
    }

    async fn serve(speaks: bool) -> FakeSmtp {
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        let server = FakeServer::listen(move |listener| accept(listener, accepting, speaks)).await;
        FakeSmtp { server, shared }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The URL to configure as `email.smtp_url`: `smtp://127.0.0.1:<port>` (plain SMTP).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.server.address)
    }

    /// Answers the next `stage` with `reply` (a full reply line such as `451 4.3.0 Try later`;
    /// `\r\n` separates the lines of a multi-line reply).
    pub fn script(&self, stage: Stage, reply: &str) {
        self.shared
            .script()
            .entry(stage)
            .or_default()
            .push_back(reply.to_owned());
    }

    /// Answers the end of the next messages' data with these replies, in order (e.g.
    /// `451 4.3.0 try later`).
    pub fn answer_next<'a>(&self, replies: impl IntoIterator<Item = &'a str>) {
        for reply in replies {
            self.script(Stage::Message, reply);
        }
    }

    /// The messages accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.offered()
            .into_iter()
            .filter(Received::accepted)
            .collect()
    }

    /// Every message whose data arrived so far, accepted or not.
    pub fn offered(&self) -> Vec<Received> {
        self.shared.received.all()
    }

    /// How many messages were offered (their data complete), accepted or not.
    pub fn attempts(&self) -> usize {
        self.shared.received.len()
    }

    /// The one message offered so far.
    pub fn only_message(&self) -> Received {
        let offered = self.offered();
        assert_eq!(offered.len(), 1, "{offered:#?}");
        offered.into_iter().next().expect("one message")
    }

    /// Waits until `n` messages were accepted, and returns those accepted.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        self.shared
            .received
            .wait_for(
                "the fake SMTP server",
                &format!("{n} accepted mails"),
                || self.received().len() >= n,
            )
            .await;
        self.received()
    }

    /// Every command received so far, in order (`AUTH` arguments included).
    pub fn commands(&self) -> Vec<String> {
        self.shared.commands.all()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

/// Accepts connections until the server is dropped.
async fn accept(listener: TcpListener, shared: Arc<Shared>, speaks: bool) {
    while let Ok((stream, _)) = listener.accept().await {
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if speaks {
                // A broken connection ends the session; lettre reports it.
                let _ = session(stream, &shared).await;
            } else {
                // Hold the connection open without a word.
                let _keep = stream;
                std::future::pending::<()>().await;
            }
        });
    }
}

/// One SMTP session.
async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    send(
        &mut write,
        shared.reply(Stage::Greeting, "220 fake.test ESMTP ready"),
    )
    .await?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut auth = None;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        shared.commands.record(command.clone());
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let argument = |prefix: &str| {
            command[prefix.len().min(command.len())..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        match verb.as_str() {
            "EHLO" => {
                // No STARTTLS: plain connections only.
                let capabilities = [
                    "250-fake.test",
                    "250-PIPELINING",
                    "250-8BITMIME",
                    "250-SMTPUTF8",
                    "250 AUTH PLAIN LOGIN",
                ];
                send(&mut write, capabilities.join("\r\n")).await?;
            }
            "HELO" => send(&mut write, "250 fake.test".into()).await?,
            "AUTH" => {
                auth = Some(command.clone());
                send(
                    &mut write,
                    shared.reply(Stage::Auth, "235 2.7.0 Authentication successful"),
                )
                .await?;
            }
            "MAIL" => {
                let reply = shared.reply(Stage::MailFrom, "250 2.1.0 Ok");
                if reply.starts_with('2') {
                    mail_from = argument("MAIL FROM:");
                    rcpt_to.clear();
                }
                send(&mut write, reply).await?;
            }
            "RCPT" => {
                let reply = shared.reply(Stage::RcptTo, "250 2.1.5 Ok");
                if reply.starts_with('2') {
                    rcpt_to.push(argument("RCPT TO:"));
                }
                send(&mut write, reply).await?;
            }
            "DATA" => {
                let reply = shared.reply(Stage::Data, "354 End data with <CR><LF>.<CR><LF>");
                let accepted = reply.starts_with('3');
                send(&mut write, reply).await?;
                if !accepted {
                    continue;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    // Dot-stuffing (RFC 5321 §4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let answer = shared.reply(Stage::Message, "250 2.0.0 Ok: queued as FAKE1");
                shared.received.record(Received {
                    from: std::mem::take(&mut mail_from),
                    to: std::mem::take(&mut rcpt_to),
                    data,
                    auth: auth.clone(),
                    answer: answer.clone(),
                });
                send(&mut write, answer).await?;
            }
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                send(&mut write, "250 2.0.0 Ok".into()).await?;
            }
            "NOOP" => send(&mut write, "250 2.0.0 Ok".into()).await?,
            "QUIT" => {
                send(&mut write, "221 2.0.0 Bye".into()).await?;
                return Ok(());
            }
            _ => send(&mut write, "502 5.5.2 Command not recognized".into()).await?,
        }
    }
}

/// Writes one reply.
async fn send(write: &mut OwnedWriteHalf, reply: String) -> std::io::Result<()> {
    write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    write.flush().await
}
