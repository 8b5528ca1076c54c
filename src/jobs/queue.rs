//! A durable job queue for apalis workers, over the gateway's own `jobs` table.
//!
//! Why not apalis' SQL storages: a job must be written in the same transaction as the data that
//! causes it (a stored reply and its delivery), which only works when jobs live in the gateway's
//! own database, on its own connections — one writer on SQLite, each test's own schema on
//! PostgreSQL. So jobs are rows of [`crate::store::jobs`], and this module turns them into an apalis
//! backend: a stream that claims due jobs (with a lease, see [`crate::store::jobs::claim`]) and waits,
//! between claims, until it is woken (a job was added or finished), the next retry is due, or the
//! poll interval passes (jobs added by other instances).
//!
//! Handlers finish their jobs themselves ([`crate::store::jobs::finish`] in the transaction that records
//! the result, or [`crate::store::jobs::retry_at`] with the [`RetryPolicy`]'s delay), so a job is removed
//! exactly when its effect is stored.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use apalis::prelude::{BackendBuilder, BoxDynError, CustomBackend, Task};
use futures::{
    FutureExt, StreamExt,
    sink::{self, Sink},
    stream::BoxStream,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    config::JobsConfig,
    store::{
        Store,
        jobs::{self, Claimed, Job},
    },
    time::Clock,
};

/// Wakes a queue's worker: there may be work now. Cheap to clone; waking an idle worker that finds
/// nothing costs one query.
///
/// A write that added a job may also have claimed it for this instance (a reply's delivery, first
/// in its lane, on SQLite): it [hands](Wake::hand) the job over, and the worker runs it without a
/// claim of its own. The job's lease is in the database, so one lost in memory (a shutdown) is
/// claimed again when the lease runs out, as a crashed worker's would be.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Waiting>);

#[derive(Debug, Default)]
struct Waiting {
    notify: Notify,
    /// Asked by [`Wake::wake`]: jobs may be due that nobody claimed.
    claim: AtomicBool,
    /// Jobs claimed by the writes that added them, with their lease's end.
    handed: Mutex<Vec<Claimed>>,
}

/// Jobs handed over but not yet taken, at most: past it (a worker that does not run), they are
/// left to their leases.
const MOST_HANDED: usize = 4096;

impl Wake {
    /// Wakes the worker (at once if it waits, or makes its next wait return at once) to claim
    /// what is due.
    pub fn wake(&self) {
        self.0.claim.store(true, Ordering::Release);
        self.0.notify.notify_one();
    }

    /// Hands the worker a job already claimed for this instance.
    pub fn hand(&self, claimed: Claimed) {
        {
            let mut handed = self.0.handed.lock().unwrap_or_else(PoisonError::into_inner);
            if handed.len() >= MOST_HANDED {
                return;
            }
            handed.push(claimed);
        }
        self.0.notify.notify_one();
    }

    /// Waits for a wake or a hand-over; says whether a claim was asked for.
    async fn woken(&self) -> bool {
        self.0.notify.notified().await;
        self.0.claim.swap(false, Ordering::AcqRel)
    }

    /// The jobs handed over so far, oldest first.
    fn take_handed(&self) -> Vec<Claimed> {
        std::mem::take(&mut *self.0.handed.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The wake handles of the gateway's queues.
#[derive(Debug, Clone, Default)]
pub struct Wakers {
    /// Outbound deliveries.
    pub deliver: Wake,
    /// Inbound media downloads.
    pub fetch_media: Wake,
    /// Mails telling experts about their conversations.
    pub notify_email: Wake,
    /// Webhooks telling integrations about assignments.
    pub notify_webhook: Wake,
    /// Evaluations of AI replies.
    pub evaluate: Wake,
}

impl Wakers {
    /// Wakes every queue's worker: jobs of every kind may be due (leases another instance held
    /// were released).
    pub fn wake_all(&self) {
        for wake in [
            &self.deliver,
            &self.fetch_media,
            &self.notify_email,
            &self.notify_webhook,
            &self.evaluate,
        ] {
            wake.wake();
        }
    }
}

/// How long to wait before retrying a failed job.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Wait before the first retry; doubled for each further one.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The policy of the configuration.
    pub fn new(config: &JobsConfig) -> Self {
        Self {
            base: config.retry_base,
            max: config.retry_max,
            max_attempts: config.max_attempts,
        }
    }

    /// The wait before the next attempt after `attempts` failed ones, at least the provider's
    /// `hint`; `None` when the job should give up.
    pub fn next(&self, attempts: i64, hint: Option<Duration>) -> Option<Duration> {
        if attempts >= i64::from(self.max_attempts) {
            return None;
        }
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let backoff = self.base.saturating_mul(1 << doublings).min(self.max);
        // Up to a quarter more, so that jobs failing together do not retry together.
        let jitter = backoff.mul_f64(fastrand_fraction() / 4.0);
        Some((backoff + jitter).max(hint.unwrap_or_default()))
    }
}

/// A number in [0, 1) that differs between calls; good enough for jitter.
fn fastrand_fraction() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a queue's jobs come from.
#[derive(Clone)]
pub struct QueueSource {
    /// The queue's name in the `jobs` table.
    pub name: &'static str,
    /// The database.
    pub store: Store,
    /// The gateway's clock (jobs are due by it).
    pub clock: Clock,
    /// Wakes the worker.
    pub wake: Wake,
    /// Claim lease, batch size and poll interval.
    pub settings: JobsConfig,
    /// Ends the stream at shutdown.
    pub stop: CancellationToken,
}

type Fetch = BoxStream<'static, Result<Option<Task<Job>>, BoxDynError>>;
type Refuse = std::pin::Pin<Box<dyn Sink<Task<Job>, Error = BoxDynError> + Send + 'static>>;

/// The apalis backend of a queue.
pub type QueueBackend = CustomBackend<Job, QueueSource, Fetch, Refuse, ()>;

impl QueueSource {
    /// The apalis backend that hands this queue's due jobs to a worker.
    pub fn backend(self) -> Result<QueueBackend, BoxDynError> {
        Ok(BackendBuilder::new()
            .database(self)
            .fetcher(|source: &mut QueueSource, _: &(), _| source.clone().jobs())
            .sink(|_: &mut QueueSource, _: &()| {
                // Jobs are added in the transaction of the data they are about (`store::jobs`),
                // never pushed from outside.
                Box::pin(sink::unfold((), |(), _task: Task<Job>| {
                    async {
                        Err::<(), BoxDynError>("jobs are added with store::jobs::enqueue".into())
                    }
                    .boxed()
                })) as Refuse
            })
            .build()?)
    }

    /// Hands the worker the jobs given to it and claims due jobs as it asks for them; waits when
    /// there are none.
    fn jobs(self) -> Fetch {
        async_stream::stream! {
            let limit = i64::try_from(self.settings.concurrency).unwrap_or(i64::MAX);
            // Jobs left from before the start are due at once.
            let mut claim = true;
            let mut due = tokio::time::Instant::now();
            loop {
                for handed in self.wake.take_handed() {
                    if handed.lease_until > self.clock.now() {
                        yield Ok(Some(Task::new(handed.job)));
                    } else {
                        // Its lease ran out while it waited: a claim takes it like any other.
                        claim = true;
                    }
                }
                // After a wait that only brought handed jobs there is nothing to claim, and the
                // next due time stands.
                if claim {
                    let now = self.clock.now();
                    match jobs::claim(&self.store, self.name, now, self.settings.lease, limit).await {
                        Ok(claimed) if !claimed.is_empty() => {
                            // Fewer than asked for: nothing else is due now, so no need to ask
                            // again before a wake (a job added meanwhile has woken the queue).
                            let all = i64::try_from(claimed.len()).unwrap_or(i64::MAX) >= limit;
                            for job in claimed {
                                yield Ok(Some(Task::new(job)));
                            }
                            if all {
                                continue;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(queue = self.name, error = %e, "cannot claim jobs; trying again shortly");
                        }
                    }
                    let wait = match jobs::next_due(&self.store, self.name, now).await {
                        Ok(Some(at)) => Duration::from_micros(
                            u64::try_from(at.micros() - now.micros()).unwrap_or(0),
                        )
                        .min(self.settings.poll_interval),
                        _ => self.settings.poll_interval,
                    };
                    due = tokio::time::Instant::now() + wait;
                }
                claim = tokio::select! {
                    asked = self.wake.woken() => asked,
                    () = tokio::time::sleep_until(due) => true,
                    () = self.stop.cancelled() => break,
                };
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::DatabaseConfig, ids::JobId, time::Timestamp};

    fn handed(id: &str, lease_until: Timestamp) -> Claimed {
        Claimed {
            job: Job {
                id: JobId::from(id),
                queue: jobs::DELIVER.into(),
                subject: format!("message-{id}"),
                lane: None,
                payload: sqlx::types::Json(serde_json::json!({})),
                attempts: 1,
                last_error: None,
                created_at: Timestamp(0),
            },
            lease_until,
        }
    }

    /// A job handed over by the write that claimed it reaches the worker without a claim (these
    /// are not even in the database); one whose lease ran out while it waited is left to a claim.
    #[tokio::test]
    async fn handed_jobs_skip_the_claim_unless_their_lease_ran_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("queue.db").display()),
            ..DatabaseConfig::default()
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let clock = Clock::system();
        let source = QueueSource {
            name: jobs::DELIVER,
            store: store.clone(),
            clock: clock.clone(),
            wake: Wake::default(),
            settings: JobsConfig {
                // Only wakes and hand-overs make the worker look.
                poll_interval: Duration::from_secs(3600),
                ..JobsConfig::default()
            },
            stop: CancellationToken::new(),
        };
        let wake = source.wake.clone();
        let mut tasks = source.jobs();
        let next = async |tasks: &mut Fetch| {
            tokio::time::timeout(Duration::from_millis(300), tasks.next())
                .await
                .ok()
                .map(|task| task.unwrap().unwrap().unwrap().args.id.to_string())
        };
        let later = clock.now().plus(Duration::from_secs(60));
        wake.hand(handed("a", later));
        assert_eq!(next(&mut tasks).await.as_deref(), Some("a"));
        assert_eq!(next(&mut tasks).await, None, "nothing else");

        // A job due in the database, added without a wake: a hand-over does not claim it.
        let mut tx = store.begin().await.unwrap();
        jobs::enqueue(
            &mut tx,
            jobs::NewJob::new(jobs::DELIVER, "m-c"),
            clock.now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        wake.hand(handed("d", later));
        assert_eq!(next(&mut tasks).await.as_deref(), Some("d"));
        assert_eq!(next(&mut tasks).await, None, "handed jobs claim nothing");

        // A hand-over whose lease ran out is dropped and the worker claims what is due.
        wake.hand(handed("e", Timestamp(clock.now().micros() - 1)));
        let claimed = next(&mut tasks).await.expect("the due job claimed");
        assert_ne!(claimed, "e");
        assert_eq!(next(&mut tasks).await, None);
        wake.wake();
        assert_eq!(next(&mut tasks).await, None, "claimed once");
    }

    #[test]
    fn retries_back_off_up_to_a_limit_and_honour_hints() {
        let policy = RetryPolicy {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
            max_attempts: 5,
        };
        let first = policy.next(1, None).unwrap();
        assert!(first >= Duration::from_secs(2) && first <= Duration::from_millis(2500));
        let third = policy.next(3, None).unwrap();
        assert!(third >= Duration::from_secs(8) && third <= Duration::from_secs(10));
        let capped = policy.next(4, None).unwrap();
        assert!(capped >= Duration::from_secs(16));
        assert_eq!(
            policy.next(1, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30)),
            "a provider's hint wins when it asks for longer"
        );
        assert_eq!(policy.next(5, None), None, "gives up after max_attempts");
        let far = RetryPolicy {
            max_attempts: 100,
            ..policy
        };
        assert!(far.next(60, None).unwrap() <= Duration::from_secs(75));
    }
}
