//! Where a gateway process is in its life — starting, serving, stopping — and since when: what
//! `/readyz` tells a load balancer (send traffic only to a process that serves) and what `/healthz`
//! reports as uptime.
//!
//! The HTTP server listens before the background workers run and keeps answering while a shutdown
//! drains running replies; in both windows the process is alive but should not get new work.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

/// A phase of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The database is migrated; the workers are not running yet.
    Starting,
    /// Everything runs.
    Serving,
    /// A shutdown began: running work is finishing.
    Stopping,
}

impl Phase {
    /// The phase's name in the health report.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Serving => "serving",
            Phase::Stopping => "stopping",
        }
    }
}

/// The process's phase, shared by the start-up, the shutdown and the operations routes. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    phase: Arc<AtomicU8>,
    started: Instant,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            phase: Arc::new(AtomicU8::new(Phase::Starting as u8)),
            started: Instant::now(),
        }
    }
}

impl Lifecycle {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Stopping,
        }
    }

    /// The workers run: traffic is welcome. A process already stopping stays stopping.
    pub fn serving(&self) {
        let _ = self.phase.compare_exchange(
            Phase::Starting as u8,
            Phase::Serving as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// A shutdown began.
    pub fn stopping(&self) {
        self.phase.store(Phase::Stopping as u8, Ordering::Release);
    }

    /// Since the process was built.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopping_process_never_serves_again() {
        let life = Lifecycle::default();
        assert_eq!(life.phase(), Phase::Starting);
        life.serving();
        assert_eq!(life.phase(), Phase::Serving);
        life.stopping();
        life.serving();
        assert_eq!(life.phase(), Phase::Stopping);
    }
}
