//! What every service of the gateway shares — the database, the clock, the live hub and the
//! queues' wake handles — as one handle: the gateway builds it once and each service (pipeline,
//! experts, job handlers) takes what it needs from it, instead of every constructor listing the
//! same four things.

use crate::{jobs::queue::Wakers, live::Hub, store::Store, time::Clock};

/// The gateway's shared handles. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    /// The database.
    pub store: Store,
    /// The gateway's clock.
    pub clock: Clock,
    /// Live events (event streams, dashboards).
    pub hub: Hub,
    /// Wakes the queues' workers when work is stored for them.
    pub wakers: Wakers,
}
