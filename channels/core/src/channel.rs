//! The channels a conversation can come from.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A messaging channel. A conversation belongs to exactly one, and every reply goes back through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The website chat widget and its HTTP API.
    Web,
    /// WhatsApp Business Cloud API.
    Whatsapp,
    /// Telegram Bot API.
    Telegram,
    /// Inbound and outbound e-mail.
    Email,
}

impl Channel {
    /// Every channel, in a stable order.
    pub const ALL: [Channel; 4] = [
        Channel::Web,
        Channel::Whatsapp,
        Channel::Telegram,
        Channel::Email,
    ];

    /// The name stored in the database and shown in APIs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Whatsapp => "whatsapp",
            Channel::Telegram => "telegram",
            Channel::Email => "email",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel name that is not one of [`Channel::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}

impl TryFrom<String> for Channel {
    type Error = UnknownChannel;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
            assert_eq!(serde_json::to_value(channel).unwrap(), channel.as_str());
        }
        assert!("sms".parse::<Channel>().is_err());
    }
}
