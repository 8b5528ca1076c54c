//! `switchboard replay <file>`: posts a recorded provider payload (the fixtures under
//! `webhooks/<channel>/`) to a running gateway, authenticated the way the provider would (signed,
//! or with the webhook secret), so a channel can be tried without its provider.
//!
//! The directory names the channel; the channel's crate builds the request (its signer, its
//! route). A recorded message replayed now is a message written now: its timestamps are moved to
//! the present (otherwise a provider's 24-hour reply window, say, would be long closed). With `--new-ids`
//! its message ids are made unique too, so the same file can be replayed again and again; without
//! it, replaying a file twice shows how provider retries are recognised.

use std::{net::SocketAddr, path::Path};

use anyhow::{Context as _, bail};

use crate::{channels, config::Config};

/// Where a replay goes and how it is changed.
#[derive(Debug, Clone)]
pub struct Replay<'a> {
    /// The recorded payload.
    pub file: &'a Path,
    /// The gateway's base URL; default: its configured listen address.
    pub url: Option<String>,
    /// Give every message a new id.
    pub new_ids: bool,
    /// Which of the channel's accounts to post to (a bot's name); default: the only one.
    pub account: Option<String>,
}

/// Posts the payload, prints the gateway's answer, and fails unless it was accepted.
pub async fn run(config: &Config, replay: Replay<'_>) -> anyhow::Result<()> {
    let name = replay
        .file
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let Some(kind) = channels::kind(name) else {
        let known: Vec<String> = channels::KINDS
            .iter()
            .map(|k| format!("webhooks/{}/", k.channel()))
            .collect();
        bail!(
            "cannot tell the channel of {}: replay takes files under {} (the directory names \
             the channel), got {name:?}",
            replay.file.display(),
            known.join(", ")
        );
    };
    let body = std::fs::read(replay.file)
        .with_context(|| format!("cannot read {}", replay.file.display()))?;
    let request = kind
        .replay(
            channels::section(config, kind),
            &switchboard_channel::plugin::Replay {
                file: replay.file,
                body: &body,
                new_ids: replay.new_ids,
                account: replay.account.as_deref(),
                now: chrono::Utc::now().timestamp(),
            },
        )
        .map_err(anyhow::Error::msg)?;
    let base = replay
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", reachable(config.server.listen)));
    let base = base.trim_end_matches('/');
    let mut post = reqwest::Client::new()
        .post(format!("{base}{}", request.path))
        .body(request.body);
    for (name, value) in request.headers {
        post = post.header(name, value);
    }
    let response = post
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("{status} {text}");
    if !status.is_success() {
        bail!("the gateway refused the payload");
    }
    Ok(())
}

/// A listen address as a client reaches it (a wildcard address means this machine).
fn reachable(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    }
}
