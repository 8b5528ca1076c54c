//! The channels a conversation can come from.
//!
//! A channel is a name: `web` (the gateway's own chat API) and one per channel crate, each of
//! which defines its constant (`switchboard_whatsapp::CHANNEL`, …). The set is open so that a new
//! channel is a new crate and a line in the gateway's registry, with nothing to change here.

use std::{
    fmt,
    str::FromStr,
    sync::{Mutex, OnceLock},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A messaging channel. A conversation belongs to exactly one, and every reply goes back through
/// it. Cheap to copy and compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(&'static str);

impl Channel {
    /// The website chat widget and its HTTP API, built into the gateway.
    pub const WEB: Channel = Channel("web");

    /// A channel by its name: lowercase letters, digits, `_` and `-`, as stored in the database
    /// and shown in APIs. For the constant of a channel crate; names read at run time go through
    /// [`FromStr`].
    pub const fn named(name: &'static str) -> Channel {
        Channel(name)
    }

    /// The name stored in the database and shown in APIs.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", self.0)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A channel name that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}")]
pub struct UnknownChannel(pub String);

/// The most distinct channel names read at run time. Names come from the database (which holds
/// only the names of channels that stored something), so a handful exist; the bound keeps a
/// corrupted table from growing the process.
const MAX_NAMES: usize = 256;

/// Names read at run time, each kept once for the life of the process (a `Channel` is a
/// `&'static str`).
fn interned() -> &'static Mutex<Vec<&'static str>> {
    static NAMES: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(|| Mutex::new(vec![Channel::WEB.0]))
}

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let well_formed = !s.is_empty()
            && s.len() <= 32
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(UnknownChannel(s.to_owned()));
        }
        let mut names = interned()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(name) = names.iter().find(|n| **n == s) {
            return Ok(Channel(name));
        }
        if names.len() >= MAX_NAMES {
            return Err(UnknownChannel(s.to_owned()));
        }
        let name: &'static str = Box::leak(s.to_owned().into_boxed_str());
        names.push(name);
        Ok(Channel(name))
    }
}

impl TryFrom<String> for Channel {
    type Error = UnknownChannel;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Channel, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_kept_once() {
        const SMS: Channel = Channel::named("sms");
        for channel in [Channel::WEB, SMS] {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
            assert_eq!(serde_json::to_value(channel).unwrap(), channel.as_str());
        }
        let a: Channel = "pager".parse().unwrap();
        let b: Channel = "pager".parse().unwrap();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        for bad in ["", "Web", "we b", "9lives", &"x".repeat(33)] {
            assert!(bad.parse::<Channel>().is_err(), "{bad:?}");
        }
    }
}
