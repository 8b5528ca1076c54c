//! The gateway's side of [`Exclusive`] work (pollers): named leases in the database, taken by one
//! instance, renewed every `instance.heartbeat` and given up at a clean stop.
//!
//! A lease lasts `instance.dead_after` from its last renewal, so the work of an instance that died
//! moves to another within that time (sooner when the dead instance is noticed and forgotten:
//! a lease whose holder is no longer registered is free). An instance that cannot renew in time
//! stops the work before its lease can run out, so two instances never do it at once.

use std::time::Duration;

use async_trait::async_trait;
use switchboard_channel::{Exclusive, Lease};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::InstanceConfig,
    store::{Store, leases},
    time::Clock,
};

/// Leases on exclusive work, held in the database.
#[derive(Clone)]
pub struct Leases {
    store: Store,
    clock: Clock,
    settings: InstanceConfig,
}

impl Leases {
    /// Leases for this instance (the store's), timed by `settings`.
    pub fn new(store: Store, clock: Clock, settings: InstanceConfig) -> Leases {
        Leases {
            store,
            clock,
            settings,
        }
    }

    /// How long a renewal keeps the lease.
    fn term(&self) -> Duration {
        self.settings.dead_after
    }

    /// Keeps the lease `name` until `done`; cancels `lost` when a renewal fails or does not come
    /// in time (the lease might run out and be taken: the work must stop first).
    async fn renew(self, name: String, lost: CancellationToken, done: CancellationToken) {
        let mut held_until = tokio::time::Instant::now() + self.term();
        loop {
            tokio::select! {
                () = done.cancelled() => return,
                () = lost.cancelled() => return,
                () = tokio::time::sleep(self.settings.heartbeat) => {}
            }
            let now = self.clock.now();
            let attempt = tokio::time::timeout(
                self.settings.heartbeat,
                leases::renew(&self.store, &name, now.plus(self.term())),
            )
            .await;
            match attempt {
                Ok(Ok(true)) => held_until = tokio::time::Instant::now() + self.term(),
                Ok(Ok(false)) => {
                    warn!(lease = %name, "another instance holds the lease now; stopping the work");
                    lost.cancel();
                    return;
                }
                Ok(Err(e)) => warn!(lease = %name, error = %e, "cannot renew a lease"),
                Err(_) => warn!(lease = %name, "renewing a lease takes too long"),
            }
            // Stop while the lease surely still holds, a heartbeat before it could run out.
            if tokio::time::Instant::now() + self.settings.heartbeat >= held_until {
                warn!(lease = %name, "cannot renew the lease in time; stopping the work");
                lost.cancel();
                return;
            }
        }
    }
}

#[async_trait]
impl Exclusive for Leases {
    async fn acquire(&self, name: &str, stop: &CancellationToken) -> Option<Lease> {
        let mut waiting = false;
        loop {
            if stop.is_cancelled() {
                return None;
            }
            let now = self.clock.now();
            match leases::claim(&self.store, name, now, now.plus(self.term())).await {
                Ok(true) => break,
                Ok(false) if !waiting => {
                    waiting = true;
                    info!(lease = %name, "another instance does this work; standing by");
                }
                Ok(false) => {}
                Err(e) => warn!(lease = %name, error = %e, "cannot take a lease"),
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(self.settings.heartbeat) => {}
            }
        }
        if waiting {
            info!(lease = %name, "took over work another instance did");
        }
        let lost = stop.child_token();
        let done = CancellationToken::new();
        let renewing = tokio::spawn(self.clone().renew(
            name.to_owned(),
            lost.clone(),
            done.clone(),
        ));
        let (store, name) = (self.store.clone(), name.to_owned());
        let release = Box::pin(async move {
            done.cancel();
            let _ = renewing.await;
            if let Err(e) = leases::release(&store, &name).await {
                // It runs out by itself.
                warn!(lease = %name, error = %e, "cannot give up a lease");
            }
        });
        Some(Lease::new(lost, release))
    }
}
