//! How often staff sign-in may be tried: per client address, and per account with a backoff that
//! doubles with every failure in a row.
//!
//! Sign-in is where passwords are guessed. The address rate stops one client from trying many
//! accounts quickly; the account backoff stops many clients (a botnet) from trying many passwords
//! on one account. While an account backs off, attempts are refused before the password is even
//! checked, so a guess made then can never succeed — and costs the gateway no password hash.

use std::{collections::HashMap, hash::BuildHasher, net::IpAddr, sync::Mutex, time::Duration};

use super::{Refused, rate::Rate};
use crate::{
    config::SignInLimits,
    time::{Clock, Timestamp},
};

/// The sign-in limits and what they remember.
pub struct SignInGuard {
    per_address: Rate<IpAddr>,
    failures: Mutex<HashMap<u64, Failures>>,
    hasher: std::collections::hash_map::RandomState,
    failures_before_backoff: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    exempt_local: bool,
    clock: Clock,
}

/// An account's failed sign-ins in a row.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// No attempt is checked before then.
    until: Timestamp,
    last: Timestamp,
}

impl SignInGuard {
    /// The guard of these limits; with `exempt_local`, loopback clients are not held to the
    /// address rate (the account backoff holds for everyone).
    pub fn new(config: &SignInLimits, exempt_local: bool, clock: &Clock) -> Self {
        Self {
            per_address: Rate::per_minute(config.attempts_per_minute, clock),
            failures: Mutex::new(HashMap::new()),
            hasher: Default::default(),
            failures_before_backoff: config.failures_before_backoff,
            backoff_base: config.backoff_base,
            backoff_max: config.backoff_max,
            exempt_local,
            clock: clock.clone(),
        }
    }

    /// Whether an attempt on `account` from `address` may be checked now.
    pub fn admit(&self, account: &str, address: IpAddr) -> Result<(), Refused> {
        if !(self.exempt_local && address.to_canonical().is_loopback()) {
            self.per_address
                .check(&address)
                .map_err(|retry_after| Refused {
                    retry_after,
                    reason: "too many sign-in attempts from this address",
                })?;
        }
        let now = self.clock.now();
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&self.key(account)) {
            Some(f) if f.until > now => Err(Refused {
                retry_after: Duration::from_micros(
                    u64::try_from(f.until.micros() - now.micros()).unwrap_or(0),
                ),
                reason: "too many failed sign-ins for this account",
            }),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt on `account`.
    pub fn failed(&self, account: &str) {
        if self.failures_before_backoff == 0 {
            return;
        }
        let now = self.clock.now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures.entry(self.key(account)).or_insert(Failures {
            count: 0,
            until: now,
            last: now,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if let Some(beyond) = entry.count.checked_sub(self.failures_before_backoff) {
            let wait = self
                .backoff_base
                .saturating_mul(2u32.saturating_pow(beyond.min(31)))
                .min(self.backoff_max);
            entry.until = now.plus(wait);
        }
    }

    /// Records a successful sign-in: the account's failures are forgotten.
    pub fn succeeded(&self, account: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key(account));
    }

    /// Forgets what no longer matters: address buckets that are full again, and accounts whose
    /// last failure is older than the longest backoff.
    pub fn forget_idle(&self) {
        self.per_address.forget_idle();
        let horizon = self.clock.now().minus(self.backoff_max);
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, f| f.last > horizon || f.until > horizon);
    }

    fn key(&self, account: &str) -> u64 {
        self.hasher.hash_one(account.trim().to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));

    fn guard(clock: &Clock) -> SignInGuard {
        SignInGuard::new(
            &SignInLimits {
                attempts_per_minute: 100,
                failures_before_backoff: 3,
                backoff_base: Duration::from_secs(10),
                backoff_max: Duration::from_secs(60),
                ..SignInLimits::default()
            },
            true,
            clock,
        )
    }

    #[test]
    fn failures_in_a_row_back_off_doubling_up_to_the_maximum() {
        let clock = Clock::system();
        let guard = guard(&clock);
        for _ in 0..2 {
            guard.admit("ana@example.com", HOME).unwrap();
            guard.failed("ana@example.com");
        }
        guard.admit("Ana@Example.com ", AWAY).unwrap();
        guard.failed("ana@example.com");
        // Third failure: 10 s, from any address, for any spelling of the account.
        let refused = guard.admit("ANA@example.com", AWAY).unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(10));
        assert!(
            guard.admit("bob@example.com", HOME).is_ok(),
            "other accounts are not affected"
        );
        clock.advance(Duration::from_secs(11));
        guard.admit("ana@example.com", HOME).unwrap();
        guard.failed("ana@example.com");
        let refused = guard.admit("ana@example.com", HOME).unwrap_err();
        assert!(
            refused.retry_after > Duration::from_secs(10),
            "doubled: {refused:?}"
        );
        for _ in 0..10 {
            clock.advance(Duration::from_secs(61));
            guard.failed("ana@example.com");
        }
        let refused = guard.admit("ana@example.com", HOME).unwrap_err();
        assert!(
            refused.retry_after <= Duration::from_secs(60),
            "capped: {refused:?}"
        );
        clock.advance(Duration::from_secs(61));
        guard.succeeded("ana@example.com");
        guard.admit("ana@example.com", HOME).unwrap();
        guard.failed("ana@example.com");
        assert!(
            guard.admit("ana@example.com", HOME).is_ok(),
            "a success starts afresh"
        );
    }

    #[test]
    fn one_address_cannot_try_quickly() {
        let clock = Clock::system();
        let guard = SignInGuard::new(
            &SignInLimits {
                attempts_per_minute: 2,
                ..SignInLimits::default()
            },
            true,
            &clock,
        );
        guard.admit("a@example.com", HOME).unwrap();
        guard.admit("b@example.com", HOME).unwrap();
        assert!(guard.admit("c@example.com", HOME).is_err());
        assert!(guard.admit("c@example.com", AWAY).is_ok());
    }
}
