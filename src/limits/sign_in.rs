//! How often staff sign-in may be tried: per client address, and per account with a backoff that
//! doubles with every failure in a row.
//!
//! Sign-in is where passwords are guessed. The address rate stops one client from trying many
//! accounts quickly; the account backoff stops many clients (a botnet) from trying many passwords
//! on one account. While an account backs off, attempts are refused before the password is even
//! checked, so a guess made then can never succeed — and costs the gateway no password hash. One
//! attempt per account is checked at a time, so a burst of guesses cannot all slip in before the
//! first failure is counted.

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

/// An account's failed sign-ins in a row, and the attempt being checked.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// No attempt is checked before then.
    until: Timestamp,
    last: Timestamp,
    /// An attempt is being checked now (a password hash takes a while): another one waits. Without
    /// this, a burst of guesses would all be admitted before the first failure is counted.
    checking: bool,
}

/// An admitted sign-in attempt: say how it ended. Dropped without a verdict (the check could not
/// be made), it counts for nothing.
pub struct Attempt<'a> {
    guard: &'a SignInGuard,
    key: u64,
}

impl std::fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attempt")
    }
}

impl Attempt<'_> {
    /// The password was wrong (or the login unknown).
    pub fn failed(self) {
        self.guard.settle(self.key, false);
        std::mem::forget(self);
    }

    /// The password was right: the account's failures are forgotten.
    pub fn succeeded(self) {
        self.guard.settle(self.key, true);
        std::mem::forget(self);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut failures = self.guard.failures();
        if let Some(f) = failures.get_mut(&self.key) {
            f.checking = false;
            if f.count == 0 {
                failures.remove(&self.key);
            }
        }
    }
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

    /// Whether an attempt on `account` from `address` may be checked now: not while the account
    /// backs off, nor while another attempt on it is being checked.
    pub fn admit(&self, account: &str, address: IpAddr) -> Result<Attempt<'_>, Refused> {
        if !(self.exempt_local && address.to_canonical().is_loopback()) {
            self.per_address
                .check(&super::address_key(address))
                .map_err(|retry_after| Refused {
                    retry_after,
                    reason: "too many sign-in attempts from this address",
                })?;
        }
        let now = self.clock.now();
        let key = self.key(account);
        let mut failures = self.failures();
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            until: now,
            last: now,
            checking: false,
        });
        if entry.until > now {
            return Err(Refused {
                retry_after: Duration::from_micros(
                    u64::try_from(entry.until.micros() - now.micros()).unwrap_or(0),
                ),
                reason: "too many failed sign-ins for this account",
            });
        }
        if entry.checking {
            return Err(Refused {
                retry_after: Duration::from_secs(1),
                reason: "another sign-in of this account is being checked",
            });
        }
        entry.checking = true;
        Ok(Attempt { guard: self, key })
    }

    /// Records how an admitted attempt ended.
    fn settle(&self, key: u64, succeeded: bool) {
        let now = self.clock.now();
        let mut failures = self.failures();
        if succeeded || self.failures_before_backoff == 0 {
            failures.remove(&key);
            return;
        }
        let Some(entry) = failures.get_mut(&key) else {
            return;
        };
        entry.checking = false;
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

    /// Forgets what no longer matters: address buckets that are full again, and accounts whose
    /// last failure is older than the longest backoff.
    pub fn forget_idle(&self) {
        self.per_address.forget_idle();
        let horizon = self.clock.now().minus(self.backoff_max);
        self.failures()
            .retain(|_, f| f.checking || f.last > horizon || f.until > horizon);
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Failures>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
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
            guard.admit("ana@example.com", HOME).unwrap().failed();
        }
        guard.admit("Ana@Example.com ", AWAY).unwrap().failed();
        // Third failure: 10 s, from any address, for any spelling of the account.
        let refused = guard.admit("ANA@example.com", AWAY).unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(10));
        assert!(
            guard.admit("bob@example.com", HOME).is_ok(),
            "other accounts are not affected"
        );
        clock.advance(Duration::from_secs(11));
        guard.admit("ana@example.com", HOME).unwrap().failed();
        let refused = guard.admit("ana@example.com", HOME).unwrap_err();
        assert!(
            refused.retry_after > Duration::from_secs(10),
            "doubled: {refused:?}"
        );
        for _ in 0..10 {
            clock.advance(Duration::from_secs(61));
            guard.admit("ana@example.com", HOME).unwrap().failed();
        }
        let refused = guard.admit("ana@example.com", HOME).unwrap_err();
        assert!(
            refused.retry_after <= Duration::from_secs(60),
            "capped: {refused:?}"
        );
        clock.advance(Duration::from_secs(61));
        guard.admit("ana@example.com", HOME).unwrap().succeeded();
        guard.admit("ana@example.com", HOME).unwrap().failed();
        assert!(
            guard.admit("ana@example.com", HOME).is_ok(),
            "a success starts afresh"
        );
    }

    #[test]
    fn one_attempt_per_account_is_checked_at_a_time() {
        let clock = Clock::system();
        let guard = guard(&clock);
        let first = guard.admit("ana@example.com", HOME).unwrap();
        let refused = guard.admit("ana@example.com", AWAY).unwrap_err();
        assert_eq!(
            refused.reason,
            "another sign-in of this account is being checked"
        );
        assert!(guard.admit("bob@example.com", HOME).is_ok());
        first.failed();
        let second = guard.admit("ana@example.com", AWAY).unwrap();
        drop(second);
        assert!(
            guard.admit("ana@example.com", AWAY).is_ok(),
            "an unsettled attempt counts for nothing"
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
        drop(guard.admit("a@example.com", HOME).unwrap());
        drop(guard.admit("b@example.com", HOME).unwrap());
        assert!(guard.admit("c@example.com", HOME).is_err());
        assert!(guard.admit("c@example.com", AWAY).is_ok());
    }
}
