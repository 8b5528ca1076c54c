//! Background jobs, run by apalis workers.
//!
//! Jobs are for work that may wait or must be retried, never for the path from an inbound message
//! to its reply. Two schedules run in every gateway:
//!
//! - `expire-locks` (`routing.lock_sweep_schedule`): clears agent locks whose TTL ran out, so
//!   conversations show who answers them now. Routing already ignores an expired lock; the job
//!   keeps the stored state truthful.
//! - `sweep` (`pipeline.sweep_schedule`): resumes messages that stayed unanswered longer than
//!   `pipeline.sweep_grace` (a turn failed on a database error, say). The sweep at start-up, which
//!   resumes what a crash left behind, runs before the gateway serves.

use std::{str::FromStr, time::Duration};

use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder};
use apalis_cron::{CronScheduler, Tick};
use cron::Schedule;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    config::Config,
    pipeline::Pipeline,
    store::{Store, conversations},
    time::Clock,
};

/// What the jobs work with.
#[derive(Clone)]
pub struct JobContext {
    /// The database.
    pub store: Store,
    /// The pipeline, for sweeps.
    pub pipeline: Pipeline,
    /// The gateway's clock.
    pub clock: Clock,
    /// How old an unanswered message must be before a sweep resumes it.
    pub sweep_grace: Duration,
}

/// Clears expired agent locks.
pub async fn expire_locks(ctx: &JobContext) -> Result<u64, BoxDynError> {
    let mut tx = ctx.store.begin().await?;
    let cleared = conversations::clear_expired_locks(&mut tx, ctx.clock.now()).await?;
    tx.commit().await?;
    if cleared > 0 {
        info!(cleared, "cleared expired agent locks");
    }
    Ok(cleared)
}

async fn expire_locks_tick(_tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    expire_locks(&ctx).await.map(|_| ())
}

async fn sweep_tick(_tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let resumed = ctx.pipeline.sweep(ctx.sweep_grace).await?;
    if resumed > 0 {
        info!(resumed, "resumed unanswered messages");
    }
    Ok(())
}

/// Runs the scheduled jobs until `shutdown` is cancelled.
pub async fn run(
    ctx: JobContext,
    config: &Config,
    shutdown: CancellationToken,
) -> Result<(), BoxDynError> {
    let lock_schedule = Schedule::from_str(&config.routing.lock_sweep_schedule)?;
    let sweep_schedule = Schedule::from_str(&config.pipeline.sweep_schedule)?;
    let lock_ctx = ctx.clone();
    Monitor::new()
        .register(move |_| {
            WorkerBuilder::new("expire-locks")
                .backend(CronScheduler::new(lock_schedule.clone()))
                .data(lock_ctx.clone())
                .build(expire_locks_tick)
        })
        .register(move |_| {
            WorkerBuilder::new("sweep")
                .backend(CronScheduler::new(sweep_schedule.clone()))
                .data(ctx.clone())
                .build(sweep_tick)
        })
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await?;
    Ok(())
}
