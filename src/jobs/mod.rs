//! Background jobs, run by apalis workers.
//!
//! Jobs are for work that may wait or must be retried, never for the path from an inbound message
//! to its reply. The gateway runs two kinds:
//!
//! - durable queues ([`queue`]), whose jobs are rows written in the transaction of the data they
//!   are about; each queue has one [`QueueHandler`]: `deliver` ([`deliver`]: outbound messages
//!   through their channel, with retries), `fetch_media` ([`fetch_media`]: the files users send,
//!   before their links expire), `notify_email` and `notify_webhook` (`experts::notify`: experts
//!   told of their assignments), `evaluate` (`evaluations::job`: AI replies checked, when
//!   evaluations are on);
//! - schedules ([`ScheduledTask`]): lock expiry and the sweeper (`pipeline`), assignment and its
//!   timeouts (`experts`).
//!
//! This module knows neither: the gateway hands [`Jobs::run`] the handlers and tasks of its
//! services, so jobs depend on no feature module and each feature owns its jobs.

pub mod deliver;
pub mod fetch_media;
pub mod queue;

use std::{str::FromStr, sync::Arc, time::Duration};

use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use apalis_cron::{CronScheduler, Tick};
use async_trait::async_trait;
use cron::Schedule;
use tokio_util::sync::CancellationToken;

use crate::{
    config::JobsConfig,
    store::{Backend, Store, StoreError, jobs::Job},
    time::Clock,
};
use queue::{QueueSource, Wake};

/// The handler of one durable queue.
#[async_trait]
pub trait QueueHandler: Send + Sync + 'static {
    /// The queue's name in the `jobs` table.
    fn queue(&self) -> &'static str;

    /// Wakes the queue's worker when a job is added.
    fn wake(&self) -> &Wake;

    /// Runs one claimed job. The handler finishes it (`store::jobs::finish` in the transaction
    /// that records its effect) or reschedules it (`store::jobs::retry_at`); an error leaves it
    /// to its lease, so it is tried again.
    async fn handle(&self, job: Job) -> Result<(), StoreError>;
}

/// Something done on a schedule.
#[async_trait]
pub trait ScheduledTask: Send + Sync + 'static {
    /// Its name, in logs.
    fn name(&self) -> &'static str;

    /// Its cron schedule (with seconds), from the configuration.
    fn schedule(&self) -> &str;

    /// Whether the instances sharing a database run each occurrence once between them (work on
    /// shared data: expiring locks, assigning experts, purging), rather than each its own (work
    /// on what the instance itself holds, such as its turns or its in-memory counters).
    fn once_per_deployment(&self) -> bool {
        false
    }

    /// Does it once.
    async fn tick(&self) -> Result<(), BoxDynError>;
}

/// A task on its schedule, as the runner holds it.
struct Scheduled {
    task: Arc<dyn ScheduledTask>,
    schedule: Schedule,
    store: Store,
    clock: Clock,
}

impl Scheduled {
    /// Whether this instance runs the current occurrence: always, unless the task runs once per
    /// deployment and another instance (PostgreSQL) took the occurrence first. The occurrence's
    /// lease lasts half the time to the next one: every instance's tick of this occurrence comes
    /// within it, and the next occurrence finds it run out.
    async fn runs_here(&self) -> Result<bool, StoreError> {
        if !self.task.once_per_deployment() || self.store.backend() != Backend::Postgres {
            return Ok(true);
        }
        let mut upcoming = self.schedule.upcoming(chrono::Utc);
        let period = match (upcoming.next(), upcoming.next()) {
            (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(1)),
            _ => Duration::from_secs(1),
        };
        let now = self.clock.now();
        crate::store::leases::claim_once(
            &self.store,
            &format!("schedule:{}", self.task.name()),
            now,
            now.plus(period / 2),
        )
        .await
    }
}

/// What the gateway's services give the job runner: a handler per queue, and their scheduled
/// tasks.
#[derive(Default)]
pub struct Work {
    /// One handler per durable queue.
    pub queues: Vec<Arc<dyn QueueHandler>>,
    /// What runs on a schedule.
    pub tasks: Vec<Arc<dyn ScheduledTask>>,
}

/// Where the queues' workers take their jobs from.
#[derive(Clone)]
pub struct Jobs {
    /// The database.
    pub store: Store,
    /// The gateway's clock (jobs are due by it).
    pub clock: Clock,
    /// Claim lease, batch size, poll interval, concurrency.
    pub settings: JobsConfig,
}

impl Jobs {
    /// Runs every queue with its handler and every task on its schedule until `shutdown` is
    /// cancelled. A schedule or queue that cannot start is refused before anything runs;
    /// `started` is called once every worker is registered and about to run.
    pub async fn run(
        &self,
        work: Work,
        shutdown: CancellationToken,
        started: impl FnOnce() + Send,
    ) -> Result<(), BoxDynError> {
        let mut monitor = Monitor::new();
        for task in work.tasks {
            let schedule = Schedule::from_str(task.schedule())
                .map_err(|e| format!("{} schedule {:?}: {e}", task.name(), task.schedule()))?;
            let name = task.name();
            let scheduled = Arc::new(Scheduled {
                task,
                schedule: schedule.clone(),
                store: self.store.clone(),
                clock: self.clock.clone(),
            });
            monitor = monitor.register(move |_| {
                WorkerBuilder::new(name)
                    .backend(CronScheduler::new(schedule.clone()))
                    .data(scheduled.clone())
                    .build(tick)
            });
        }
        let concurrency = self.settings.concurrency;
        for handler in work.queues {
            let source = QueueSource {
                name: handler.queue(),
                store: self.store.clone(),
                clock: self.clock.clone(),
                wake: handler.wake().clone(),
                settings: self.settings.clone(),
                stop: shutdown.clone(),
            };
            // Built once here so that an error shows at start-up, not in a worker.
            drop(source.clone().backend()?);
            monitor = monitor.register(move |_| {
                WorkerBuilder::new(handler.queue())
                    .backend(queue_backend(&source))
                    .concurrency(concurrency)
                    .data(handler.clone())
                    .build(handle)
            });
        }
        started();
        monitor
            .run_with_signal(async move {
                shutdown.cancelled().await;
                Ok(())
            })
            .await?;
        Ok(())
    }
}

/// The one apalis handler of every queue.
async fn handle(job: Job, handler: Data<Arc<dyn QueueHandler>>) -> Result<(), BoxDynError> {
    handler.handle(job).await.map_err(Into::into)
}

/// The one apalis handler of every schedule.
async fn tick(_tick: Tick, scheduled: Data<Arc<Scheduled>>) -> Result<(), BoxDynError> {
    if !scheduled.runs_here().await? {
        return Ok(());
    }
    scheduled.task.tick().await
}

/// The backend of a queue (its construction cannot fail once checked at start-up).
fn queue_backend(source: &QueueSource) -> queue::QueueBackend {
    match source.clone().backend() {
        Ok(backend) => backend,
        Err(e) => unreachable!("checked at start-up: {e}"),
    }
}
