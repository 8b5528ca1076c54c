//! A fake SMTP server on 127.0.0.1: enough ESMTP for lettre (EHLO, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT, no STARTTLS), recording every accepted mail, and able to answer the next DATA with
//! a scripted reply (451 to be retried, 550 to be refused).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

/// A mail the fake accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// `MAIL FROM`.
    pub from: String,
    /// `RCPT TO`s.
    pub to: Vec<String>,
    /// The message as sent (headers and body, dot-unstuffed).
    pub data: String,
}

impl Received {
    /// A header's value (the first, unfolded), by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(current) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    current.push(' ');
                    current.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }
}

#[derive(Default)]
struct SmtpState {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<String>>,
    attempts: Mutex<usize>,
    arrived: Notify,
}

/// The fake SMTP server.
pub struct FakeSmtp {
    /// Where it listens.
    pub address: SocketAddr,
    state: Arc<SmtpState>,
    task: JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmtp {
    /// Starts the fake.
    pub async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
        let address = listener.local_addr().expect("SMTP address");
        let state = Arc::new(SmtpState::default());
        let serving = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let _ = session(stream, state).await;
                });
            }
        });
        FakeSmtp {
            address,
            state,
            task,
        }
    }

    /// The URL to configure as `email.smtp_url` (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    /// Answers the next DATA commands with these replies (e.g. `451 4.3.0 try later`).
    pub fn answer_next(&self, replies: impl IntoIterator<Item = &'static str>) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(replies.into_iter().map(str::to_owned));
    }

    /// The mails accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// How many mails were offered (DATA completed), accepted or not.
    pub fn attempts(&self) -> usize {
        *self.state.attempts.lock().unwrap()
    }

    /// Waits until `n` mails were accepted.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let arrived = self.state.arrived.notified();
                if self.received().len() >= n {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the fake SMTP server did not get {n} mails: {:#?}",
                self.received()
            )
        });
        self.received()
    }
}

async fn session(stream: TcpStream, state: Arc<SmtpState>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write
        .write_all(b"220 fake.smtp.test ESMTP ready\r\n")
        .await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-fake.smtp.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800".into()
        } else if upper.starts_with("HELO") {
            "250 fake.smtp.test".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command[10..]);
            to.clear();
            "250 2.1.0 OK".into()
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command[8..]));
            "250 2.1.5 OK".into()
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                // Dot-unstuffing (RFC 5321 §4.5.2).
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            *state.attempts.lock().unwrap() += 1;
            let scripted = state.script.lock().unwrap().pop_front();
            let reply = match scripted {
                Some(reply) => reply,
                None => {
                    state.received.lock().unwrap().push(Received {
                        from: from.clone(),
                        to: to.clone(),
                        data,
                    });
                    "250 2.0.0 queued".into()
                }
            };
            state.arrived.notify_waiters();
            reply
        } else if upper == "RSET" || upper == "NOOP" {
            "250 OK".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "502 command not implemented".into()
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

fn address(argument: &str) -> String {
    argument
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches(['<', '>'])
        .to_owned()
}
