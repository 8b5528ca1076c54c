//! Work only one of the gateway instances sharing a database may do at a time: a Telegram bot's
//! long polling (Telegram refuses a second `getUpdates` caller), an IMAP mailbox's polling (two
//! pollers would fetch every mail twice).
//!
//! The gateway holds such work by a named lease that it renews while the work runs; when its
//! holder stops or dies, another instance takes the lease and the work goes on there.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// Leases on work only one instance may do at a time.
#[async_trait]
pub trait Exclusive: Send + Sync + 'static {
    /// Waits until this instance holds the lease `name`. `None` when `stop` came first.
    async fn acquire(&self, name: &str, stop: &CancellationToken) -> Option<Lease>;
}

/// A held lease.
pub struct Lease {
    /// Cancelled when the lease is lost (it could not be renewed in time, and another instance
    /// may take it) or at shutdown: the work stops.
    pub lost: CancellationToken,
    release: BoxFuture<'static, ()>,
}

impl Lease {
    /// A lease whose loss cancels `lost`, given up by `release`.
    pub fn new(lost: CancellationToken, release: BoxFuture<'static, ()>) -> Lease {
        Lease { lost, release }
    }

    /// Gives the lease up, so another instance may take it at once.
    pub async fn release(self) {
        self.release.await;
    }
}

/// Runs `work` while this instance holds the lease `name`, until `stop`: `work` gets a token
/// cancelled when the lease is lost, and is started again once the lease is held again. Work that
/// ends by itself (not for a lost lease) is done.
pub async fn exclusively<F, Fut>(
    leases: Arc<dyn Exclusive>,
    name: String,
    stop: CancellationToken,
    work: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let Some(lease) = leases.acquire(&name, &stop).await else {
            return;
        };
        let lost = lease.lost.clone();
        work(lost.clone()).await;
        lease.release().await;
        // Lost (the holder says so in its log): wait to hold it again.
        if stop.is_cancelled() || !lost.is_cancelled() {
            return;
        }
    }
}

/// Every lease at once: for a gateway that runs alone (and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct Alone;

#[async_trait]
impl Exclusive for Alone {
    async fn acquire(&self, _name: &str, stop: &CancellationToken) -> Option<Lease> {
        if stop.is_cancelled() {
            return None;
        }
        Some(Lease::new(stop.child_token(), Box::pin(async {})))
    }
}
