//! A fake SMTP server for the tests: it speaks enough of RFC 5321 for lettre (greeting, EHLO,
//! AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT), records every message it receives, and answers
//! with replies a test scripts for a stage of the transaction, or with success.
//!
//! It offers no STARTTLS, so `smtp://127.0.0.1:<port>` (plain) reaches it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream, tcp::OwnedWriteHalf},
    task::JoinHandle,
};

/// A point of the transaction where a scripted reply replaces the usual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stage {
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
pub(crate) struct Received {
    /// The `MAIL FROM` address.
    pub mail_from: String,
    /// The `RCPT TO` addresses.
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-stuffing removed, CRLF line ends.
    pub data: String,
    /// The `AUTH` command of the session, if any.
    pub auth: Option<String>,
    /// What the fake answered the data.
    pub answer: String,
}

impl Received {
    /// The unfolded value of the first header `name` (case-insensitive) of the message.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
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
    received: Mutex<Vec<Received>>,
    script: Mutex<HashMap<Stage, VecDeque<String>>>,
    commands: Mutex<Vec<String>>,
    connections: AtomicUsize,
}

impl Shared {
    /// The scripted reply for `stage`, or `usual`.
    fn reply(&self, stage: Stage, usual: &str) -> String {
        self.script
            .lock()
            .unwrap()
            .get_mut(&stage)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| usual.to_owned())
    }
}

/// The running fake; stops when dropped.
pub(crate) struct FakeSmtp {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSmtp {
    /// Starts the fake on a free port.
    pub(crate) async fn start() -> FakeSmtp {
        FakeSmtp::serve(true).await
    }

    /// A server that accepts connections and never says anything.
    pub(crate) async fn silent() -> FakeSmtp {
        FakeSmtp::serve(false).await
    }

    async fn serve(speaks: bool) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepting.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&accepting);
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
        });
        FakeSmtp {
            port,
            shared,
            server,
        }
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP.
    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Answers the next `stage` with `reply` (a full reply line such as `451 4.3.0 Try later`;
    /// `\r\n` separates the lines of a multi-line reply).
    pub(crate) fn script(&self, stage: Stage, reply: &str) {
        self.shared
            .script
            .lock()
            .unwrap()
            .entry(stage)
            .or_default()
            .push_back(reply.to_owned());
    }

    /// The messages received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The one message received so far.
    pub(crate) fn only_message(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "{received:#?}");
        received.into_iter().next().unwrap()
    }

    /// Every command received so far, in order (`AUTH` arguments included).
    pub(crate) fn commands(&self) -> Vec<String> {
        self.shared.commands.lock().unwrap().clone()
    }

    /// How many connections were accepted.
    pub(crate) fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
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
        shared.commands.lock().unwrap().push(command.clone());
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
                shared.received.lock().unwrap().push(Received {
                    mail_from: std::mem::take(&mut mail_from),
                    rcpt_to: std::mem::take(&mut rcpt_to),
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
