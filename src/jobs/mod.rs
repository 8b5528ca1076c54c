//! Background jobs, run by apalis workers.
//!
//! Jobs are for work that may wait or must be retried, never for the path from an inbound message
//! to its reply. Two schedules run in every gateway:
//!
//! - `expire-locks` (`routing.lock_sweep_schedule`): clears agent locks whose TTL ran out, so
//!   conversations show who answers them now. Routing already ignores an expired lock; the job
//!   keeps the stored state truthful.
//! - `sweep` (`pipeline.sweep_schedule`): resumes messages that stayed unanswered longer than
//!   `pipeline.sweep_grace` (a turn failed on a database error, say), and forgets delivery statuses
//!   that never found their message and one-time webhook tokens too old to matter. The sweep at start-up, which resumes what a crash left behind,
//!   runs before the gateway serves.
//!
//! And two durable queues ([`queue`]), whose jobs are written with the data they are about:
//!
//! - `deliver` ([`deliver`]): sends outbound messages through their channel, with retries;
//! - `fetch_media` ([`fetch_media`]): downloads the files users send before their links expire;
//! - `notify_email`, `notify_webhook` (`experts::notify`): tell experts of their assignments;
//! - `evaluate` (`evaluations::job`): checks AI replies, when evaluations are on.

pub mod deliver;
pub mod fetch_media;
pub mod queue;

use std::{str::FromStr, sync::Arc, time::Duration};

use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use apalis_cron::{CronScheduler, Tick};
use cron::Schedule;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    config::Config,
    evaluations::job::{self as evaluation_job, Evaluations},
    experts::{
        Experts,
        notify::{self, Notifications},
    },
    pipeline::Pipeline,
    store::{Store, conversations, jobs as job_store, messages, sessions, threads},
    time::Clock,
};
use deliver::Deliveries;
use fetch_media::MediaDownloads;
use queue::QueueSource;

/// How long a delivery status waits for the message it refers to before it is forgotten.
const EARLY_STATUS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long one-time values of webhooks (signed requests' nonces, the ids of staff replies) are
/// remembered: longer than any provider retries a delivery, and far longer than a signed
/// request stays fresh (the channels allow at most a day).
const SEEN_TOKEN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// The delivery queue's handler.
    pub deliveries: Arc<Deliveries>,
    /// The media queue's handler.
    pub downloads: Arc<MediaDownloads>,
    /// The experts' side (assignment, timeouts).
    pub experts: Experts,
    /// The handlers of expert notifications.
    pub notifications: Arc<Notifications>,
    /// The evaluation queue's handler, when evaluations are on.
    pub evaluations: Option<Arc<Evaluations>>,
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

/// Sends unanswered assignments back to the queue, assigns waiting conversations, forgets
/// expired dashboard sessions.
async fn experts_tick(_tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    ctx.experts.time_out_unanswered().await?;
    ctx.experts.assign_waiting().await?;
    let mut tx = ctx.store.begin().await?;
    sessions::forget_expired(&mut tx, ctx.clock.now()).await?;
    tx.commit().await?;
    Ok(())
}

async fn sweep_tick(_tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let resumed = ctx.pipeline.sweep(ctx.sweep_grace).await?;
    if resumed > 0 {
        info!(resumed, "resumed unanswered messages");
    }
    let now = ctx.clock.now();
    let mut tx = ctx.store.begin().await?;
    messages::forget_early_statuses(&mut tx, now.minus(EARLY_STATUS_RETENTION)).await?;
    threads::forget_seen_before(&mut tx, now.minus(SEEN_TOKEN_RETENTION)).await?;
    tx.commit().await?;
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
    let experts_schedule = Schedule::from_str(&config.experts.assign_schedule)?;
    let lock_ctx = ctx.clone();
    let experts_ctx = ctx.clone();
    let source = |name: &'static str, wake: &queue::Wake| QueueSource {
        name,
        store: ctx.store.clone(),
        clock: ctx.clock.clone(),
        wake: wake.clone(),
        settings: config.jobs.clone(),
        stop: shutdown.clone(),
    };
    let deliver_source = source(job_store::DELIVER, &ctx.deliveries.wake);
    let media_source = source(job_store::FETCH_MEDIA, &ctx.downloads.wake);
    let email_source = source(notify::EMAIL_QUEUE, &ctx.notifications.wake_email);
    let webhook_source = source(notify::WEBHOOK_QUEUE, &ctx.notifications.wake_webhook);
    let evaluations = ctx
        .evaluations
        .clone()
        .map(|e| (source(job_store::EVALUATE, &e.wake), e));
    let concurrency = config.jobs.concurrency;
    let (deliveries, downloads) = (ctx.deliveries.clone(), ctx.downloads.clone());
    let (mail_notices, hook_notices) = (ctx.notifications.clone(), ctx.notifications.clone());
    // Built once here so that an error shows at start-up, not in a worker.
    drop(deliver_source.clone().backend()?);
    let monitor = match evaluations {
        Some((evaluate_source, evaluations)) => Monitor::new().register(move |_| {
            WorkerBuilder::new(job_store::EVALUATE)
                .backend(queue_backend(&evaluate_source))
                .concurrency(concurrency)
                .data(evaluations.clone())
                .build(evaluation_job::handle)
        }),
        None => Monitor::new(),
    };
    monitor
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
        .register(move |_| {
            WorkerBuilder::new(job_store::DELIVER)
                .backend(queue_backend(&deliver_source))
                .concurrency(concurrency)
                .data(deliveries.clone())
                .build(deliver::handle)
        })
        .register(move |_| {
            WorkerBuilder::new("experts")
                .backend(CronScheduler::new(experts_schedule.clone()))
                .data(experts_ctx.clone())
                .build(experts_tick)
        })
        .register(move |_| {
            WorkerBuilder::new(notify::EMAIL_QUEUE)
                .backend(queue_backend(&email_source))
                .concurrency(concurrency)
                .data(mail_notices.clone())
                .build(notify::handle_email)
        })
        .register(move |_| {
            WorkerBuilder::new(notify::WEBHOOK_QUEUE)
                .backend(queue_backend(&webhook_source))
                .concurrency(concurrency)
                .data(hook_notices.clone())
                .build(notify::handle_webhook)
        })
        .register(move |_| {
            WorkerBuilder::new(job_store::FETCH_MEDIA)
                .backend(queue_backend(&media_source))
                .concurrency(concurrency)
                .data(downloads.clone())
                .build(fetch_media::handle)
        })
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await?;
    Ok(())
}

/// The backend of a queue (its construction cannot fail once checked at start-up).
fn queue_backend(source: &QueueSource) -> queue::QueueBackend {
    match source.clone().backend() {
        Ok(backend) => backend,
        Err(e) => unreachable!("checked at start-up: {e}"),
    }
}
