//! This process among the gateway instances that share one database: it joins at start-up, says
//! it is alive every `instance.heartbeat`, takes over the work of instances that stop saying so,
//! and hands its own over when it stops.
//!
//! Work in progress names its instance: a message's turn (`pending_turns.owner`) and a job's lease
//! (`jobs.lease_owner`). Without that, work a crashed instance held waits for something to time
//! out — its turns for the survivors' periodic sweep, its jobs for their lease. With it:
//!
//! - an instance found silent for `instance.dead_after` is forgotten by the first other instance
//!   to notice; its turns become that instance's and are answered at once, its job leases are
//!   released and its queues woken;
//! - an instance restarting under its own name takes back what its previous run held at once (a
//!   clean stop already handed everything over);
//! - on SQLite there is one process, so everything found at start-up is stale and becomes its own.
//!
//! Taken-over turns are answered by the usual sweep: a turn stores its reply only while its
//! message is still unanswered, so an instance that was only slow, not dead, never makes a
//! duplicate reply.

use anyhow::{Context, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::InstanceConfig,
    jobs::queue::Wakers,
    live::Hub,
    pipeline::Pipeline,
    store::{
        Backend, Store,
        instances::{self, Registration, TakenOver},
    },
    time::Clock,
};

/// This run of the instance, registered in the database.
pub struct Membership {
    store: Store,
    clock: Clock,
    /// Tells this run from earlier and later runs of the same instance.
    boot_id: String,
    settings: InstanceConfig,
}

impl Membership {
    /// Registers this run, and on PostgreSQL takes over what instances found dead held. When a
    /// run of the same name said it was alive less than `dead_after` ago, waits for it to stop
    /// saying so (a restart after a crash) and gives up with an error after that (two running
    /// instances were given one name).
    pub async fn join(
        store: Store,
        clock: Clock,
        settings: InstanceConfig,
    ) -> anyhow::Result<Membership> {
        let boot_id = uuid::Uuid::now_v7().to_string();
        let started = tokio::time::Instant::now();
        loop {
            match instances::register(&store, &boot_id, clock.now(), settings.dead_after)
                .await
                .context("cannot register the instance")?
            {
                Registration::Registered { jobs } => {
                    if jobs > 0 {
                        info!(
                            instance = store.instance(),
                            jobs, "took back the jobs the previous run of this instance held"
                        );
                    }
                    break;
                }
                Registration::NameInUse { .. }
                    if started.elapsed() <= settings.dead_after + settings.heartbeat =>
                {
                    tokio::time::sleep(settings.heartbeat).await;
                }
                Registration::NameInUse { .. } => bail!(
                    "the instance name {:?} is in use by a running instance; give each instance \
                     its own instance.name (or SWITCHBOARD_INSTANCE)",
                    store.instance()
                ),
            }
        }
        let membership = Membership {
            store,
            clock,
            boot_id,
            settings,
        };
        if membership.store.backend() == Backend::Postgres {
            let taken = membership.take_over().await?;
            membership.report(&taken);
        }
        Ok(membership)
    }

    /// On PostgreSQL, says every `heartbeat` that this instance is alive and takes over the work
    /// of instances that stopped: their turns are answered here, their jobs' queues woken; and
    /// answers the turns other instances hand to this one (`hub` hears of them). Until `stop`.
    /// On SQLite there is nobody else, and nothing to do.
    pub fn watch(
        self: &std::sync::Arc<Self>,
        pipeline: Pipeline,
        wakers: Wakers,
        hub: Hub,
        stop: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        if self.store.backend() != Backend::Postgres {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(me.settings.heartbeat);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    handed = hub.turns_handed_over() => {
                        if let Err(e) = pipeline.resume(&handed).await {
                            warn!(error = %e, "cannot take the turns handed to this instance; the sweep will");
                        }
                        continue;
                    }
                    _ = ticks.tick() => {}
                }
                if let Err(e) = me.beat(&pipeline, &wakers, &hub).await {
                    warn!(error = %e, "cannot check on the other instances; trying again");
                }
            }
        }))
    }

    async fn beat(&self, pipeline: &Pipeline, wakers: &Wakers, hub: &Hub) -> anyhow::Result<()> {
        let now = self.clock.now();
        if !instances::heartbeat(&self.store, &self.boot_id, now).await? {
            // The others found this instance silent for too long (a stall, a lost connection) and
            // took its work over; what it still runs stores nothing twice (see the module docs).
            warn!(
                instance = self.store.instance(),
                "the other instances took this one for dead; registering again"
            );
            instances::rejoin(&self.store, &self.boot_id, now).await?;
            // They freed this instance's conversation leases too.
            pipeline.forget_places();
        }
        let taken = self.take_over().await?;
        self.report(&taken);
        hub.set_others(instances::others(&self.store).await? > 0);
        if !taken.turns.is_empty() {
            pipeline.resume(&taken.turns).await?;
        }
        if taken.jobs > 0 {
            wakers.wake_all();
        }
        Ok(())
    }

    async fn take_over(&self) -> anyhow::Result<TakenOver> {
        instances::take_over(&self.store, self.clock.now(), self.settings.dead_after)
            .await
            .context("cannot take over the work of stopped instances")
    }

    fn report(&self, taken: &TakenOver) {
        if !taken.dead.is_empty() || !taken.turns.is_empty() || taken.jobs > 0 {
            info!(
                instance = self.store.instance(),
                dead = ?taken.dead,
                turns = taken.turns.len(),
                jobs = taken.jobs,
                "took over the work of instances that stopped"
            );
        }
    }

    /// A clean stop: this instance's unfinished turns and job leases become the others' (or its
    /// next run's) at once.
    pub async fn leave(&self) {
        if let Err(e) = instances::leave(&self.store, &self.boot_id).await {
            warn!(error = %e, "cannot hand this instance's work over; the others take it when it looks dead");
        }
    }
}
