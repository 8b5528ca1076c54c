//! Time as the gateway sees it.
//!
//! Every stored time is a [`Timestamp`]: microseconds since the Unix epoch, UTC, in a 64-bit integer
//! column on both SQLite and PostgreSQL. That keeps the SQL identical on both backends, makes
//! comparisons exact, and lets expiry be computed in SQL (`locked_at + ttl`). APIs show RFC 3339.
//!
//! "Now" comes from a [`Clock`], so tests can move time forward (lock expiry) without sleeping.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Serialize, Serializer};

/// A point in time: microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The time as microseconds since the epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// The time as a `chrono` value.
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// This time plus a duration (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// This time minus a duration (saturating).
    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp(t.timestamp_micros())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The source of "now". Production uses the system clock; tests may advance it.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `start` now and runs on from there (tests of calendar days and months).
    pub fn starting_at(start: Timestamp) -> Self {
        let clock = Self::default();
        clock.offset_micros.store(
            start.micros() - Utc::now().timestamp_micros(),
            Ordering::Relaxed,
        );
        clock
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        Timestamp(Utc::now().timestamp_micros() + self.offset_micros.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_show_as_rfc3339_millis() {
        let t = Timestamp(1_763_719_200_123_456);
        assert_eq!(t.to_string(), "2025-11-21T10:00:00.123Z");
        assert_eq!(serde_json::to_value(t).unwrap(), "2025-11-21T10:00:00.123Z");
        assert_eq!(Timestamp::from(t.to_datetime()), t);
    }

    #[test]
    fn advancing_a_clock_moves_its_clones() {
        let clock = Clock::system();
        let clone = clock.clone();
        let before = clone.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clone.now().micros() - before.micros() >= 3_600_000_000);
    }
}
