//! Per-conversation serial lanes.
//!
//! Messages of one conversation must be answered one at a time and in order (an agent answering
//! message 2 must see its answer to message 1), while different conversations proceed in parallel.
//! A lane is a queue per conversation with at most one runner task; the runner drains the queue and
//! ends when it is empty. A semaphore bounds how many jobs run at once over all lanes.
//!
//! Lanes also remember which jobs are queued or running, so that the sweeper (which resubmits
//! messages the database says are unanswered) never queues a message twice.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    hash::Hash,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// A unit of work that belongs to a lane.
pub trait LaneJob: Send + 'static {
    /// The lane key (the conversation id).
    type Key: Clone + Eq + Hash + Send + Sync + 'static;
    /// The job's identity (the message id), for deduplication.
    type Id: Clone + Eq + Hash + Send + Sync + 'static;
    /// The lane this job runs in.
    fn lane(&self) -> Self::Key;
    /// The job's identity.
    fn id(&self) -> Self::Id;
}

struct State<J: LaneJob> {
    queues: HashMap<J::Key, VecDeque<J>>,
    in_flight: HashSet<J::Id>,
}

/// Serial lanes with bounded overall concurrency.
pub struct Lanes<J: LaneJob> {
    state: Mutex<State<J>>,
    permits: Arc<Semaphore>,
    idle: Notify,
}

/// What [`Lanes::push`] did with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The lane was idle: the caller must start a runner for it.
    StartRunner,
    /// Queued behind the lane's running job.
    Queued,
    /// The same job is already queued or running; dropped.
    Duplicate,
}

impl<J: LaneJob> Lanes<J> {
    /// Lanes running at most `max_concurrency` jobs at once.
    pub fn new(max_concurrency: usize) -> Self {
        Self {
            state: Mutex::new(State {
                queues: HashMap::new(),
                in_flight: HashSet::new(),
            }),
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            idle: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job in its lane.
    pub fn push(&self, job: J) -> Pushed {
        let mut state = self.lock();
        if !state.in_flight.insert(job.id()) {
            return Pushed::Duplicate;
        }
        match state.queues.get_mut(&job.lane()) {
            Some(queue) => {
                queue.push_back(job);
                Pushed::Queued
            }
            None => {
                state.queues.insert(job.lane(), VecDeque::from([job]));
                Pushed::StartRunner
            }
        }
    }

    /// Runs a lane's jobs in order until the lane is empty. Call once per [`Pushed::StartRunner`].
    pub async fn run<F, Fut>(&self, lane: J::Key, mut work: F)
    where
        F: FnMut(J) -> Fut,
        Fut: Future<Output = ()>,
    {
        // The lane's entry exists for as long as this runner does, so jobs pushed while one runs
        // queue behind it instead of starting a second runner.
        while let Some(job) = self.next(&lane) {
            let id = job.id();
            let permit = self.permit().await;
            // A panicking job must not take the lane down with it: the lane's entry would stay
            // and no later job of the conversation would ever run.
            if AssertUnwindSafe(work(job)).catch_unwind().await.is_err() {
                tracing::error!("a job panicked; its lane goes on with the next one");
            }
            drop(permit);
            self.lock().in_flight.remove(&id);
        }
    }

    /// The lane's next job, or `None` after removing the lane because it is empty.
    fn next(&self, lane: &J::Key) -> Option<J> {
        let mut state = self.lock();
        let job = state.queues.get_mut(lane)?.pop_front();
        if job.is_none() {
            state.queues.remove(lane);
            if state.queues.is_empty() {
                self.idle.notify_waiters();
            }
        }
        job
    }

    async fn permit(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed.
        match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("lane semaphore closed"),
        }
    }

    /// Takes a job that is queued (not running) in a lane, to run it now instead of in its turn.
    pub fn take_queued(&self, lane: &J::Key, id: &J::Id) -> Option<J> {
        let mut state = self.lock();
        let queue = state.queues.get_mut(lane)?;
        let at = queue.iter().position(|job| &job.id() == id)?;
        let job = queue.remove(at)?;
        state.in_flight.remove(id);
        Some(job)
    }

    /// Whether this job is queued or running.
    pub fn contains(&self, id: &J::Id) -> bool {
        self.lock().in_flight.contains(id)
    }

    /// How many jobs are queued or running.
    pub fn len(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// Whether no job is queued or running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every lane is empty, or the timeout passes. Returns whether they emptied.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.lock().queues.is_empty() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Job {
        lane: &'static str,
        id: u32,
    }

    impl LaneJob for Job {
        type Key = &'static str;
        type Id = (&'static str, u32);
        fn lane(&self) -> &'static str {
            self.lane
        }
        fn id(&self) -> (&'static str, u32) {
            (self.lane, self.id)
        }
    }

    /// Pushes jobs the way the pipeline does: start a runner when told to.
    fn submit(
        lanes: &Arc<Lanes<Job>>,
        job: Job,
        log: &Arc<Mutex<Vec<(&'static str, u32)>>>,
        running: &Arc<AtomicUsize>,
        peak: &Arc<AtomicUsize>,
    ) -> Pushed {
        let lane = job.lane;
        let pushed = lanes.push(job);
        if pushed == Pushed::StartRunner {
            let (lanes, log, running, peak) =
                (lanes.clone(), log.clone(), running.clone(), peak.clone());
            tokio::spawn(async move {
                lanes
                    .run(lane, |job| {
                        let (log, running, peak) = (log.clone(), running.clone(), peak.clone());
                        async move {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            log.lock().unwrap().push((job.lane, job.id));
                            running.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                    .await
            });
        }
        pushed
    }

    #[tokio::test(start_paused = true)]
    async fn one_lane_runs_in_order_and_lanes_run_in_parallel() {
        let lanes = Arc::new(Lanes::new(2));
        let log = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for id in 0..5 {
            for lane in ["a", "b", "c"] {
                submit(&lanes, Job { lane, id }, &log, &running, &peak);
            }
        }
        assert!(lanes.wait_idle(Duration::from_secs(10)).await);
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 15);
        for lane in ["a", "b", "c"] {
            let order: Vec<u32> = log
                .iter()
                .filter(|(l, _)| *l == lane)
                .map(|(_, id)| *id)
                .collect();
            assert_eq!(order, vec![0, 1, 2, 3, 4], "lane {lane} out of order");
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "the concurrency bound holds and is used"
        );
        assert!(lanes.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_stop_its_lane() {
        let lanes = Arc::new(Lanes::new(1));
        let ran = Arc::new(Mutex::new(Vec::new()));
        for id in 0..3 {
            assert_ne!(lanes.push(Job { lane: "a", id }), Pushed::Duplicate);
        }
        let log = ran.clone();
        lanes
            .run("a", |job| {
                let log = log.clone();
                async move {
                    if job.id == 1 {
                        panic!("a bug in a turn");
                    }
                    log.lock().unwrap().push(job.id);
                }
            })
            .await;
        assert_eq!(ran.lock().unwrap().as_slice(), &[0, 2]);
        assert!(lanes.is_empty());
        assert_eq!(
            lanes.push(Job { lane: "a", id: 9 }),
            Pushed::StartRunner,
            "the lane is free again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_in_flight_is_not_queued_twice() {
        let lanes = Arc::new(Lanes::new(4));
        let log = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            submit(&lanes, Job { lane: "a", id: 1 }, &log, &running, &peak),
            Pushed::StartRunner
        );
        assert_eq!(
            submit(&lanes, Job { lane: "a", id: 1 }, &log, &running, &peak),
            Pushed::Duplicate
        );
        assert_eq!(
            submit(&lanes, Job { lane: "a", id: 2 }, &log, &running, &peak),
            Pushed::Queued
        );
        assert!(lanes.contains(&("a", 1)));
        assert!(lanes.wait_idle(Duration::from_secs(10)).await);
        assert_eq!(log.lock().unwrap().as_slice(), &[("a", 1), ("a", 2)]);
        assert_eq!(
            submit(&lanes, Job { lane: "a", id: 1 }, &log, &running, &peak),
            Pushed::StartRunner
        );
        assert!(lanes.wait_idle(Duration::from_secs(10)).await);
    }
}
