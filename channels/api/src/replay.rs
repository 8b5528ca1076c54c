//! `switchboard replay webhooks/api/…`: a recorded request posted to a running gateway as the
//! integration would post it, signed now with the integration's secret.
//!
//! The timestamp is the one thing that must change for a replay to be taken at all (requests
//! older than five minutes are refused). With `--new-ids` the messages also get ids never seen
//! before, so the same file can be replayed again and again; without, replaying a file twice
//! shows how a repeated delivery is recognised.

use serde_json::Value;
use switchboard_channel::plugin::{Replay, ReplayRequest};

use crate::{
    config::{Integration, Integrations},
    signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign},
};

/// The signed request for a recorded body.
pub(crate) fn request(
    integrations: &Integrations,
    replay: &Replay<'_>,
) -> Result<ReplayRequest, String> {
    let integration = pick(integrations, replay.account)?;
    let body = if replay.new_ids {
        renew_ids(replay.body)?
    } else {
        replay.body.to_vec()
    };
    let signature = sign(integration.secret.expose(), replay.now, &body);
    Ok(ReplayRequest {
        path: format!("/webhooks/api/{}", integration.name),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (TIMESTAMP_HEADER.into(), replay.now.to_string()),
            (SIGNATURE_HEADER.into(), signature),
        ],
        body,
    })
}

/// The integration named, or the only one.
fn pick<'a>(integrations: &'a Integrations, name: Option<&str>) -> Result<&'a Integration, String> {
    let names = || {
        integrations
            .all
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (name, integrations.all.as_slice()) {
        (_, []) => Err(
            "no API integration is configured: add an [[api.integrations]] entry with the \
             name and secret the gateway has"
                .into(),
        ),
        (Some(name), _) => integrations.get(name).ok_or_else(|| {
            format!(
                "no API integration named {name:?} is configured (configured: {})",
                names()
            )
        }),
        (None, [only]) => Ok(only),
        (None, _) => Err(format!(
            "several API integrations are configured ({}): name the one to post as",
            names()
        )),
    }
}

/// The body with a fresh id for every message (the old id with a unique suffix).
fn renew_ids(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut request: Value =
        serde_json::from_slice(body).map_err(|e| format!("the API request is not JSON: {e}"))?;
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    // Only ids that exist are touched: indexing a JSON value mutably would add missing ones.
    let messages = request.get_mut("messages").and_then(Value::as_array_mut);
    for message in messages.into_iter().flatten() {
        if let Some(id) = message.get_mut("id")
            && let Some(old) = id.as_str()
        {
            *id = Value::String(format!("{old}.{suffix}"));
        }
    }
    serde_json::to_vec_pretty(&request).map_err(|e| e.to_string())
}
