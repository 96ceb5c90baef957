//! The scheduler: admits triggers (durably, then wakes the dispatcher), starts queued
//! builds in FIFO order on `workers` slots with at most one build per feed, cancels
//! builds, and on shutdown gives running builds their grace before stopping them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::build::{Build, BuildId, BuildStatus, Trigger};
use crate::clock::now_ms;
use crate::feed::{Feed, FeedName};
use crate::store::{Admission, AdmitRequest, DeliveryRecord, Pick, Store, StoreError, StoredReply};

/// Errors of scheduling operations, for the admin and HTTP layers to map.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The store failed or could not make the trigger durable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking pool is gone (shutdown).
    #[error("daemon is shutting down")]
    ShuttingDown,
}

/// A trigger ready for admission, owning its data (it crosses to the blocking pool).
#[derive(Debug, Clone)]
pub struct Submission {
    /// The feed as read by the caller.
    pub feed: Feed,
    /// Full ref.
    pub git_ref: String,
    /// Short name.
    pub branch: String,
    /// The trigger.
    pub trigger: Trigger,
    /// Skip the cooldown.
    pub force: bool,
    /// The delivery to record with it (webhooks).
    pub delivery: Option<DeliveryRecord>,
}

/// What a cancel request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued and is now cancelled.
    Dequeued,
    /// It was running; its process group is being stopped.
    Stopping,
    /// It had already ended with this status.
    AlreadyOver(String),
}

/// A build that runs now, and how to stop it.
#[derive(Debug)]
struct RunningBuild {
    /// Its feed (one build per feed at a time).
    feed: FeedName,
    /// Fired by `cancel`.
    cancel: CancellationToken,
}

/// Handle to the scheduler; cheap to clone.
#[derive(Clone, Debug)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where the queue lives.
    store: Store,
    /// Woken by every admission and every finished build.
    wake: Notify,
    /// Builds in progress.
    running: Mutex<HashMap<BuildId, RunningBuild>>,
    /// Fired when the shutdown grace is over: stops every build (each build's own
    /// cancel token is a child of it).
    kill_all: CancellationToken,
}

impl Scheduler {
    /// A scheduler over the store's queue; `run` starts dispatching.
    pub fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                kill_all: CancellationToken::new(),
            }),
        }
    }

    /// Admits a trigger and waits until it is durable on disk; only then may the
    /// caller reply 2xx. Wakes the dispatcher when a build became startable.
    pub async fn submit(
        &self,
        sub: Submission,
        reply: fn(&Admission) -> StoredReply,
    ) -> Result<Admission, ScheduleError> {
        let admission = self
            .inner
            .store
            .write_durable(move |store| {
                let req = AdmitRequest {
                    feed: &sub.feed,
                    git_ref: sub.git_ref,
                    branch: sub.branch,
                    trigger: sub.trigger,
                    force: sub.force,
                    now_ms: now_ms(),
                };
                store.admit(&req, sub.delivery, reply)
            })
            .await?;
        if matches!(admission, Admission::Queued(_) | Admission::Deferred { .. }) {
            self.inner.wake.notify_one();
        }
        Ok(admission)
    }

    /// Cancels a queued or running build.
    pub async fn cancel(&self, id: BuildId) -> Result<CancelOutcome, ScheduleError> {
        if let Some(run) = self.running().get(&id) {
            run.cancel.cancel();
            return Ok(CancelOutcome::Stopping);
        }
        let store = self.inner.store.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            match store.cancel_queued(id, now_ms())? {
                Some(_) => {
                    store.durable_blocking()?;
                    Ok(CancelOutcome::Dequeued)
                }
                None => {
                    let build = store.build_required(id)?;
                    Ok(CancelOutcome::AlreadyOver(build.status.word().to_owned()))
                }
            }
        })
        .await
        .map_err(|_| ScheduleError::ShuttingDown)??;
        // A running build may have been claimed between the two looks.
        if let (CancelOutcome::AlreadyOver(word), Some(run)) = (&outcome, self.running().get(&id)) {
            if word == "running" {
                run.cancel.cancel();
                return Ok(CancelOutcome::Stopping);
            }
        }
        Ok(outcome)
    }

    /// Cancels whatever runs for a feed (feed removal).
    pub fn cancel_feed(&self, feed: &FeedName) {
        for run in self.running().values().filter(|r| &r.feed == feed) {
            run.cancel.cancel();
        }
    }

    /// Makes the dispatcher look at the queue again (feed resumed, config reloaded).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// How many builds run now.
    pub fn running_count(&self) -> usize {
        self.running().len()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<BuildId, RunningBuild>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Dispatches builds until `shutdown` fires, then gives running builds `grace`
    /// to finish before cancelling them; returns when every build task has ended.
    pub async fn run(self, app: App, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        loop {
            let free = app.config().workers.saturating_sub(self.running_count());
            let pick = if free > 0 {
                self.pick().await
            } else {
                Ok(Pick::Idle)
            };
            match pick {
                Ok(Pick::Start(build)) => {
                    self.spawn_build(&app, *build, &mut tasks);
                    continue;
                }
                Ok(Pick::WaitUntil(t)) => {
                    let wait = Duration::from_millis((t - now_ms()).clamp(1, 60_000) as u64);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.inner.wake.notified() => {}
                        Some(_) = tasks.join_next() => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Ok(Pick::Idle) => tokio::select! {
                    _ = self.inner.wake.notified() => {}
                    Some(_) = tasks.join_next() => {}
                    _ = shutdown.cancelled() => break,
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the build queue; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        self.drain(app.config().shutdown_grace, tasks).await;
    }

    async fn pick(&self) -> Result<Pick, ScheduleError> {
        let busy: HashSet<FeedName> = self.running().values().map(|r| r.feed.clone()).collect();
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.claim_next(&busy, now_ms()))
            .await
            .map_err(|_| ScheduleError::ShuttingDown)?
            .map_err(ScheduleError::from)
    }

    fn spawn_build(&self, app: &App, build: Build, tasks: &mut JoinSet<()>) {
        let cancel = self.inner.kill_all.child_token();
        self.running().insert(
            build.id,
            RunningBuild {
                feed: build.feed.clone(),
                cancel: cancel.clone(),
            },
        );
        tracing::info!(feed = %build.feed, build = build.id.0, trigger = build.kind.word(), "build started");
        let (this, app) = (self.clone(), app.clone());
        tasks.spawn(async move {
            let id = build.id;
            let status = crate::runner::run_build(&app, build, cancel).await;
            this.record_end(&app, id, status).await;
            this.running().remove(&id);
            this.inner.wake.notify_one();
        });
    }

    async fn record_end(&self, app: &App, id: BuildId, status: BuildStatus) {
        let store = self.inner.store.clone();
        if status == BuildStatus::Cancelled && self.inner.kill_all.is_cancelled() {
            // Stopped by shutdown, not by an operator: it runs again after restart.
            let result = tokio::task::spawn_blocking(move || {
                store.interrupt(id, now_ms())?;
                store.durable_blocking()
            })
            .await;
            if !matches!(result, Ok(Ok(()))) {
                tracing::error!(
                    build = id.0,
                    "cannot mark build interrupted; start-up recovery will"
                );
            }
            tracing::info!(
                build = id.0,
                "build interrupted by shutdown; it reruns after restart"
            );
            return;
        }
        let keep = app.config().keep_builds;
        let data_dir = app.config().data_dir.clone();
        let word = status.word();
        let result = tokio::task::spawn_blocking(move || -> Result<Build, StoreError> {
            let build = store.finish(id, status, now_ms())?;
            for old in store.prune_builds(build.feed.as_str(), keep)? {
                crate::paths::remove_log(&data_dir, old);
            }
            store.durable_blocking()?;
            Ok(build)
        })
        .await;
        match result {
            Ok(Ok(b)) => {
                let secs = b
                    .started_ms
                    .zip(b.finished_ms)
                    .map(|(s, f)| (f - s).max(0) as f64 / 1000.0);
                app.metrics.build_finished(word, secs);
                tracing::info!(feed = %b.feed, build = id.0, status = word, "build finished")
            }
            // `feed remove` cancelled it and deleted its records: nothing left to record.
            Ok(Err(StoreError::NoBuild(_))) => {
                tracing::info!(build = id.0, "build ended after its feed was removed")
            }
            Ok(Err(e)) => tracing::error!(build = id.0, error = %e, "cannot record build end"),
            Err(e) => tracing::error!(build = id.0, error = %e, "build bookkeeping task failed"),
        }
    }

    /// Shutdown: wait up to `grace` for running builds, then stop them.
    async fn drain(&self, grace: Duration, mut tasks: JoinSet<()>) {
        if tasks.is_empty() {
            return;
        }
        tracing::info!(
            running = tasks.len(),
            grace_secs = grace.as_secs(),
            "waiting for running builds"
        );
        let waited =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if waited.is_err() {
            tracing::warn!(
                running = tasks.len(),
                "shutdown grace over; stopping running builds"
            );
            self.inner.kill_all.cancel();
            while tasks.join_next().await.is_some() {}
        }
    }
}
