//! How many messages of one contact on a messaging channel (every channel but the web chat) are
//! answered.
//!
//! A provider's messages cannot be refused — the user already sent them, and refusing the
//! webhook only makes the provider retry. So over the limit a message is stored like any other
//! (nothing is lost, experts can read it) but gets no agent turn, and the contact is told, once an
//! hour at most, that answers will resume.

use std::{collections::HashMap, hash::BuildHasher, sync::Mutex, time::Duration};

use switchboard_channel::Channel;

use super::rate::Rate;
use crate::time::{Clock, Timestamp};

/// How long after telling a contact about the limit they may be told again.
const TELL_AGAIN_AFTER: Duration = Duration::from_secs(3600);

/// What to do with a contact's new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactTurn {
    /// Answer it.
    Answer,
    /// Store it unanswered; `tell` says whether the contact should hear why.
    Quiet {
        /// Tell the contact (the first message over the limit in an hour).
        tell: bool,
    },
}

/// The per-contact limit.
pub struct ContactFloods {
    rate: Rate<u64>,
    per_minute: u32,
    told: Mutex<HashMap<u64, Timestamp>>,
    hasher: super::IdentityHasher,
    clock: Clock,
}

impl ContactFloods {
    /// `per_minute` answered messages per contact (0: no limit).
    pub fn new(per_minute: u32, clock: &Clock) -> Self {
        Self {
            rate: Rate::per_minute(per_minute, clock),
            per_minute,
            told: Mutex::new(HashMap::new()),
            hasher: Default::default(),
            clock: clock.clone(),
        }
    }

    /// The rate itself (shared between instances, see [`super::Limits::share`]).
    pub(super) fn rate(&self) -> &Rate<u64> {
        &self.rate
    }

    /// The limit, per minute (0: none).
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Counts a new message of a contact and says what to do with it.
    pub fn check(&self, channel: Channel, external_id: &str) -> ContactTurn {
        let key = self.hasher.hash_one((channel.as_str(), external_id));
        if self.rate.check(&key).is_ok() {
            return ContactTurn::Answer;
        }
        let now = self.clock.now();
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        let tell = told
            .get(&key)
            .is_none_or(|at| *at <= now.minus(TELL_AGAIN_AFTER));
        if tell {
            told.insert(key, now);
        }
        ContactTurn::Quiet { tell }
    }

    /// Takes back the telling of a contact whose notice was not stored after all (its
    /// transaction failed): the next message over the rate tells them.
    pub fn untell(&self, channel: Channel, external_id: &str) {
        let key = self.hasher.hash_one((channel.as_str(), external_id));
        self.told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// Forgets contacts that are quiet again.
    pub fn forget_idle(&self) {
        self.rate.forget_idle();
        let horizon = self.clock.now().minus(TELL_AGAIN_AFTER);
        self.told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, at| *at > horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_messages_are_quiet_and_the_contact_is_told_once() {
        let clock = Clock::system();
        let floods = ContactFloods::new(2, &clock);
        assert_eq!(
            floods.check(Channel::named("sms"), "1"),
            ContactTurn::Answer
        );
        assert_eq!(
            floods.check(Channel::named("sms"), "1"),
            ContactTurn::Answer
        );
        assert_eq!(
            floods.check(Channel::named("sms"), "1"),
            ContactTurn::Quiet { tell: true }
        );
        assert_eq!(
            floods.check(Channel::named("sms"), "1"),
            ContactTurn::Quiet { tell: false }
        );
        assert_eq!(
            floods.check(Channel::named("chat"), "1"),
            ContactTurn::Answer,
            "channels are separate"
        );
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            floods.check(Channel::named("sms"), "1"),
            ContactTurn::Answer
        );
        assert_eq!(
            floods.check(Channel::named("sms"), "1"),
            ContactTurn::Quiet { tell: false },
            "told within the hour already"
        );
        floods.untell(Channel::named("sms"), "1");
        assert_eq!(
            floods.check(Channel::named("sms"), "1"),
            ContactTurn::Quiet { tell: true },
            "a notice that was not stored is told again"
        );
        clock.advance(TELL_AGAIN_AFTER);
        floods.check(Channel::named("sms"), "1");
        floods.check(Channel::named("sms"), "1");
        assert_eq!(
            floods.check(Channel::named("sms"), "1"),
            ContactTurn::Quiet { tell: true }
        );
    }
}
