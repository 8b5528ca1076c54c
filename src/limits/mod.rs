//! Limits on what the public can ask of the gateway: rates, caps on open streams, and the cost of
//! signing in.
//!
//! The gateway faces the internet. Every website visitor's message is an agent turn (with a paid
//! model, money), every event stream holds a connection, every sign-in attempt costs a 19 MiB
//! password hash. Each of these is bounded here, per visitor identity, per client address, per
//! contact and in total, with defaults a real site can live with (`[limits]` in the
//! configuration; `0` switches one off):
//!
//! - [`VisitorRates`]: messages, new conversations and handoffs of the website API;
//! - [`streams`]: open event streams, and open WebSockets per visitor;
//! - [`contacts`]: answers per contact on the messaging channels (over the limit a message is
//!   stored, not answered);
//! - [`sign_in`]: staff sign-in attempts, with a backoff per account (held by `staff`);
//! - [`quotas`]: what each contact's plan and credits allow per day and month (over it: `402` on
//!   the website API, unanswered on the messaging channels).
//!
//! Clients on the gateway's own machine (loopback, not forwarded by a proxy) are exempt from the
//! per-visitor and per-address limits by default (`limits.exempt_local`): they are the operator's
//! health checks, scripts and load tests. Totals that protect the process apply to everyone.
//!
//! A refusal of a request is answered `429` with `Retry-After` and changes nothing. The checks are
//! in memory and cost nothing measurable on the path from a message to its reply; what they
//! remember is pruned every minute ([`Limits::forget_idle`]). Instances sharing a database tell
//! each other what they counted ([`Charge`], every second), so the rates hold across them.

pub mod contacts;
pub mod quotas;
pub mod rate;
pub mod sign_in;
pub mod streams;

use std::{
    hash::{BuildHasher, BuildHasherDefault, DefaultHasher},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    config::{LimitsConfig, QuotasConfig},
    time::Clock,
};
use contacts::ContactFloods;
use rate::Rate;
use streams::StreamSlots;

/// A request over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When trying again makes sense.
    pub retry_after: Duration,
    /// Which limit, for people.
    pub reason: &'static str,
}

/// Whether a client address is this machine's own (and exempt, when so configured).
fn local(address: IpAddr) -> bool {
    address.to_canonical().is_loopback()
}

/// The key under which an address is limited: an IPv4 address, or the /64 network of an IPv6
/// address — one subscriber gets a whole /64 and can use any address in it.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

/// Every limit of the gateway. Shared (`Arc`) by the HTTP side and the pipeline.
pub struct Limits {
    /// The website API's rates.
    pub visitors: VisitorRates,
    /// Open event streams.
    pub streams: Arc<StreamSlots>,
    /// Open WebSockets (per visitor; their total is the connection cap's, as each holds its
    /// connection).
    pub sockets: Arc<StreamSlots>,
    /// Answers per contact on the messaging channels.
    pub contacts: ContactFloods,
    /// What each contact's plan and credits allow.
    pub quotas: quotas::Quotas,
}

/// The hash of identities under which they are limited: the same in every instance (and every
/// process of one version), so that instances can tell each other what they counted.
pub(crate) type IdentityHasher = BuildHasherDefault<DefaultHasher>;

/// A rate, as instances name it to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RateName {
    /// A visitor's messages.
    #[serde(rename = "vm")]
    VisitorMessages,
    /// A visitor's new conversations.
    #[serde(rename = "vc")]
    VisitorConversations,
    /// A visitor's requests for a person.
    #[serde(rename = "vh")]
    VisitorHandoffs,
    /// An address's messages.
    #[serde(rename = "am")]
    AddressMessages,
    /// An address's new conversations.
    #[serde(rename = "ac")]
    AddressConversations,
    /// An address's requests for a person.
    #[serde(rename = "ah")]
    AddressHandoffs,
    /// A messaging channel contact's answered messages.
    #[serde(rename = "cm")]
    ContactMessages,
}

/// Events one instance counted, for the others to count too: `n` events of `key` against a rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge(pub RateName, pub String, pub u32);

impl Limits {
    /// Notes every event counted from now on for the other instances ([`Limits::take_charges`]).
    pub fn share(&self) {
        let v = &self.visitors;
        for rate in [&v.messages, &v.conversations, &v.handoffs] {
            rate.share();
        }
        for rate in [
            &v.address_messages,
            &v.address_conversations,
            &v.address_handoffs,
        ] {
            rate.share();
        }
        self.contacts.rate().share();
    }

    /// What was counted here since the last call, for the other instances.
    pub fn take_charges(&self) -> Vec<Charge> {
        fn take<K: std::hash::Hash + Eq + Clone + ToString>(
            name: RateName,
            rate: &Rate<K>,
            into: &mut Vec<Charge>,
        ) {
            into.extend(
                rate.take_recent()
                    .into_iter()
                    .map(|(key, n)| Charge(name, key.to_string(), n)),
            );
        }
        let v = &self.visitors;
        let mut charges = Vec::new();
        take(RateName::VisitorMessages, &v.messages, &mut charges);
        take(
            RateName::VisitorConversations,
            &v.conversations,
            &mut charges,
        );
        take(RateName::VisitorHandoffs, &v.handoffs, &mut charges);
        take(RateName::AddressMessages, &v.address_messages, &mut charges);
        take(
            RateName::AddressConversations,
            &v.address_conversations,
            &mut charges,
        );
        take(RateName::AddressHandoffs, &v.address_handoffs, &mut charges);
        take(
            RateName::ContactMessages,
            self.contacts.rate(),
            &mut charges,
        );
        charges
    }

    /// Counts what another instance counted. Keys that do not parse (another version's) are
    /// skipped.
    pub fn charge(&self, charges: &[Charge]) {
        let v = &self.visitors;
        for Charge(name, key, n) in charges {
            let (n, identity, address) = (*n, key.parse::<u64>(), key.parse::<IpAddr>());
            match (name, identity, address) {
                (RateName::VisitorMessages, Ok(key), _) => v.messages.charge(&key, n),
                (RateName::VisitorConversations, Ok(key), _) => v.conversations.charge(&key, n),
                (RateName::VisitorHandoffs, Ok(key), _) => v.handoffs.charge(&key, n),
                (RateName::ContactMessages, Ok(key), _) => self.contacts.rate().charge(&key, n),
                (RateName::AddressMessages, _, Ok(key)) => v.address_messages.charge(&key, n),
                (RateName::AddressConversations, _, Ok(key)) => {
                    v.address_conversations.charge(&key, n);
                }
                (RateName::AddressHandoffs, _, Ok(key)) => v.address_handoffs.charge(&key, n),
                _ => {}
            }
        }
    }

    /// The limits of a configuration, without quotas; `total_streams` is the cap on open event
    /// streams, derived from the connection cap when not configured.
    pub fn new(config: &LimitsConfig, total_streams: usize, clock: &Clock) -> Arc<Self> {
        Self::with_quotas(config, &QuotasConfig::default(), total_streams, 0, clock)
    }

    /// The limits of a configuration, with its quotas (counting nothing until loaded), and at
    /// most `sockets_per_visitor` WebSockets per visitor (0: no cap).
    pub fn with_quotas(
        config: &LimitsConfig,
        quotas: &QuotasConfig,
        total_streams: usize,
        sockets_per_visitor: u32,
        clock: &Clock,
    ) -> Arc<Self> {
        Arc::new(Self {
            visitors: VisitorRates::new(config, clock),
            streams: StreamSlots::new(
                config.visitor.event_streams,
                config.streams.per_staff_member,
                config.address.event_streams,
                total_streams,
                config.exempt_local,
            ),
            sockets: StreamSlots::new(sockets_per_visitor, 0, 0, usize::MAX, config.exempt_local),
            contacts: ContactFloods::new(config.contact.messages_per_minute, clock),
            quotas: quotas::Quotas::new(quotas, clock),
        })
    }

    /// Forgets keys that are idle again, so memory follows the active clients only.
    pub fn forget_idle(&self) {
        self.visitors.forget_idle();
        self.contacts.forget_idle();
        self.quotas.forget_idle();
    }
}

/// What website visitors may do, per visitor and per client address.
pub struct VisitorRates {
    messages: Rate<u64>,
    conversations: Rate<u64>,
    handoffs: Rate<u64>,
    address_messages: Rate<IpAddr>,
    address_conversations: Rate<IpAddr>,
    address_handoffs: Rate<IpAddr>,
    hasher: IdentityHasher,
    exempt_local: bool,
}

impl VisitorRates {
    fn new(config: &LimitsConfig, clock: &Clock) -> Self {
        let (visitor, address) = (&config.visitor, &config.address);
        Self {
            messages: Rate::per_minute(visitor.messages_per_minute, clock),
            conversations: Rate::per_hour(visitor.conversations_per_hour, clock),
            handoffs: Rate::per_hour(visitor.handoffs_per_hour, clock),
            address_messages: Rate::per_minute(address.messages_per_minute, clock),
            address_conversations: Rate::per_hour(address.conversations_per_hour, clock),
            address_handoffs: Rate::per_hour(address.handoffs_per_hour, clock),
            hasher: Default::default(),
            exempt_local: config.exempt_local,
        }
    }

    /// Counts a message of `visitor` (their web contact id) from `address`; starting a new
    /// conversation counts against that rate too.
    pub fn message(
        &self,
        visitor: &str,
        address: IpAddr,
        new_conversation: bool,
    ) -> Result<(), Refused> {
        if self.exempt_local && local(address) {
            return Ok(());
        }
        let key = self.hasher.hash_one(visitor);
        let address = address_key(address);
        if new_conversation {
            self.conversations
                .check(&key)
                .map_err(refused("too many new conversations from this visitor"))?;
            self.address_conversations
                .check(&address)
                .map_err(refused("too many new conversations from this address"))?;
        }
        self.messages
            .check(&key)
            .map_err(refused("too many messages from this visitor"))?;
        self.address_messages
            .check(&address)
            .map_err(refused("too many messages from this address"))
    }

    /// Counts a conversation the visitor creates before writing in it.
    pub fn conversation(&self, visitor: &str, address: IpAddr) -> Result<(), Refused> {
        if self.exempt_local && local(address) {
            return Ok(());
        }
        self.conversations
            .check(&self.hasher.hash_one(visitor))
            .map_err(refused("too many new conversations from this visitor"))?;
        self.address_conversations
            .check(&address_key(address))
            .map_err(refused("too many new conversations from this address"))
    }

    /// Counts a request for a person.
    pub fn handoff(&self, visitor: &str, address: IpAddr) -> Result<(), Refused> {
        if self.exempt_local && local(address) {
            return Ok(());
        }
        self.handoffs
            .check(&self.hasher.hash_one(visitor))
            .map_err(refused("too many requests for a person from this visitor"))?;
        self.address_handoffs
            .check(&address_key(address))
            .map_err(refused("too many requests for a person from this address"))
    }

    fn forget_idle(&self) {
        self.messages.forget_idle();
        self.conversations.forget_idle();
        self.handoffs.forget_idle();
        self.address_messages.forget_idle();
        self.address_conversations.forget_idle();
        self.address_handoffs.forget_idle();
    }
}

fn refused(reason: &'static str) -> impl Fn(Duration) -> Refused {
    move |retry_after| Refused {
        retry_after,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AddressLimits, VisitorLimits};

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OFFICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn the_operators_own_machine_is_exempt_unless_configured_otherwise() {
        let strict = LimitsConfig {
            visitor: VisitorLimits {
                messages_per_minute: 1,
                ..VisitorLimits::default()
            },
            ..LimitsConfig::default()
        };
        let limits = Limits::new(&strict, 10, &Clock::system());
        for _ in 0..5 {
            limits.visitors.message("device:a", LOCAL, true).unwrap();
        }
        limits.visitors.message("device:a", HOME, false).unwrap();
        assert!(limits.visitors.message("device:a", HOME, false).is_err());
        let limits = Limits::new(
            &LimitsConfig {
                exempt_local: false,
                ..strict
            },
            10,
            &Clock::system(),
        );
        limits.visitors.message("device:a", LOCAL, false).unwrap();
        assert!(limits.visitors.message("device:a", LOCAL, false).is_err());
    }

    #[test]
    fn an_ipv6_subscriber_is_one_address() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same_network: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(one), address_key(same_network));
        assert_ne!(address_key(one), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), HOME);
        assert_eq!(address_key(HOME), HOME);
    }

    #[test]
    fn visitors_and_addresses_are_limited_separately() {
        let config = LimitsConfig {
            visitor: VisitorLimits {
                messages_per_minute: 2,
                conversations_per_hour: 1,
                ..VisitorLimits::default()
            },
            address: AddressLimits {
                messages_per_minute: 3,
                ..AddressLimits::default()
            },
            ..LimitsConfig::default()
        };
        let limits = Limits::new(&config, 10, &Clock::system());
        let rates = &limits.visitors;
        rates.message("device:a", HOME, true).unwrap();
        assert_eq!(
            rates.message("device:a", HOME, true).unwrap_err().reason,
            "too many new conversations from this visitor"
        );
        rates.message("device:a", HOME, false).unwrap();
        let refused = rates.message("device:a", HOME, false).unwrap_err();
        assert_eq!(refused.reason, "too many messages from this visitor");
        assert!(refused.retry_after > Duration::ZERO);
        rates.message("device:b", HOME, false).unwrap();
        assert_eq!(
            rates.message("device:c", HOME, false).unwrap_err().reason,
            "too many messages from this address"
        );
        rates.message("device:c", OFFICE, false).unwrap();
    }
}
