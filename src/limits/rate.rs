//! One rate: at most N events per period for each key, as a GCRA (token bucket) limiter from
//! `governor`, on the gateway's clock (so tests can move time forward instead of sleeping).
//!
//! A check is a lock-free update of one map entry: it costs nothing measurable on the path from a
//! message to its reply. Keys are small values (an address, or a 64-bit hash of an identity), so a
//! check never allocates; idle keys are forgotten by [`Rate::forget_idle`].
//!
//! Instances sharing a database share their rates: once [`Rate::share`] is on, every event counted
//! here is also noted, handed out by [`Rate::take_recent`] and counted by the other instances with
//! [`Rate::charge`] (see `live::relay`), so a client spreading requests over instances meets one
//! limit, a moment late at most.

use std::{
    collections::HashMap,
    hash::Hash,
    num::NonZeroU32,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use governor::{
    Quota, RateLimiter, middleware::NoOpMiddleware, nanos::Nanos, state::keyed::DashMapStateStore,
};

use crate::time::Clock;

/// The gateway's clock as `governor` reads it.
#[derive(Debug, Clone)]
pub struct LimitClock(Clock);

impl governor::clock::Clock for LimitClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::new(
            u64::try_from(self.0.now().micros())
                .unwrap_or(0)
                .saturating_mul(1000),
        )
    }
}

/// At most `n` events per period for each key; a rate of 0 is no limit at all.
pub struct Rate<K: Hash + Eq + Clone> {
    limiter: Option<RateLimiter<K, DashMapStateStore<K>, LimitClock, NoOpMiddleware<Nanos>>>,
    clock: LimitClock,
    /// Whether other instances count what is counted here.
    shared: AtomicBool,
    /// Events counted here since the other instances were last told, by key.
    recent: Mutex<HashMap<K, u32>>,
}

impl<K: Hash + Eq + Clone> Rate<K> {
    /// `n` per minute (a burst of `n`, refilled evenly over the minute).
    pub fn per_minute(n: u32, clock: &Clock) -> Self {
        Self::new(NonZeroU32::new(n).map(Quota::per_minute), clock)
    }

    /// `n` per hour (a burst of `n`, refilled evenly over the hour).
    pub fn per_hour(n: u32, clock: &Clock) -> Self {
        Self::new(NonZeroU32::new(n).map(Quota::per_hour), clock)
    }

    fn new(quota: Option<Quota>, clock: &Clock) -> Self {
        let clock = LimitClock(clock.clone());
        Self {
            limiter: quota.map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            clock,
            shared: AtomicBool::new(false),
            recent: Mutex::default(),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, HashMap<K, u32>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the events counted from now on for the other instances ([`Rate::take_recent`]).
    pub fn share(&self) {
        self.shared.store(true, Ordering::Relaxed);
    }

    /// The events counted here since the last call, by key, for the other instances.
    pub fn take_recent(&self) -> Vec<(K, u32)> {
        std::mem::take(&mut *self.recent()).into_iter().collect()
    }

    /// Counts `n` events of `key` that another instance allowed, as far as the rate has room
    /// for them (beyond it the key is refused here too, until it refills).
    pub fn charge(&self, key: &K, n: u32) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        for _ in 0..n {
            if limiter.check_key(key).is_err() {
                return;
            }
        }
    }

    /// Counts one event of `key`; `Err` with how long until the next one would be allowed when
    /// this one is over the rate (it is then not counted).
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| {
            use governor::clock::Clock as _;
            not_until.wait_time_from(self.clock.now())
        })?;
        if self.shared.load(Ordering::Relaxed) {
            *self.recent().entry(key.clone()).or_default() += 1;
        }
        Ok(())
    }

    /// Forgets keys whose bucket is full again (they would be allowed a full burst anyway), so
    /// that the map only holds recently active keys.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, RateLimiter::len)
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_refuses_past_its_burst_and_refills_with_time() {
        let clock = Clock::system();
        let rate = Rate::<u64>::per_minute(3, &clock);
        for _ in 0..3 {
            assert!(rate.check(&1).is_ok());
        }
        let wait = rate.check(&1).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(rate.check(&2).is_ok(), "keys are independent");
        clock.advance(Duration::from_secs(20));
        assert!(
            rate.check(&1).is_ok(),
            "one more after a third of the minute"
        );
        assert!(rate.check(&1).is_err());
    }

    #[test]
    fn what_one_instance_counts_the_other_counts_too() {
        let clock = Clock::system();
        let (here, there) = (
            Rate::<u64>::per_minute(3, &clock),
            Rate::<u64>::per_minute(3, &clock),
        );
        here.share();
        here.check(&1).unwrap();
        here.check(&1).unwrap();
        here.check(&2).unwrap();
        let mut recent = here.take_recent();
        recent.sort();
        assert_eq!(recent, [(1, 2), (2, 1)]);
        assert!(here.take_recent().is_empty(), "told once");
        for (key, n) in recent {
            there.charge(&key, n);
        }
        there.check(&1).unwrap();
        assert!(
            there.check(&1).is_err(),
            "two here and one there: the third"
        );
        there.charge(&2, 10);
        assert!(there.check(&2).is_err(), "charged up to the burst");
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let rate = Rate::<u64>::per_minute(0, &Clock::system());
        for _ in 0..1000 {
            assert!(rate.check(&1).is_ok());
        }
        assert!(rate.is_empty());
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let clock = Clock::system();
        let rate = Rate::<u64>::per_minute(2, &clock);
        rate.check(&1).unwrap();
        rate.check(&2).unwrap();
        assert_eq!(rate.len(), 2);
        clock.advance(Duration::from_secs(120));
        rate.forget_idle();
        assert_eq!(rate.len(), 0);
    }
}
