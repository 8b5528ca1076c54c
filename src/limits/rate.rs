//! One rate: at most N events per period for each key, as a GCRA (token bucket) limiter from
//! `governor`, on the gateway's clock (so tests can move time forward instead of sleeping).
//!
//! A check is a lock-free update of one map entry: it costs nothing measurable on the path from a
//! message to its reply. Keys are small values (an address, or a 64-bit hash of an identity under
//! a per-process random key), so a check never allocates; idle keys are forgotten by
//! [`Rate::forget_idle`].

use std::{hash::Hash, num::NonZeroU32, time::Duration};

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
        })
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
