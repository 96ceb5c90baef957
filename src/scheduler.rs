//! The scheduler: admits triggers (durably, then wakes the dispatcher), starts queued
//! builds in FIFO order on `workers` slots with at most one build per feed, cancels
//! builds, and on shutdown gives running builds their grace before stopping them.
//!
//! It is the one place where a build's state changes: it hands the runner a plain
//! [`BuildSpec`], turns the runner's [`RunEvent`]s into store writes and metrics, and
//! publishes every change as a [`BuildUpdate`] on a broadcast channel. Publishing
//! never waits: a subscriber that falls behind is told it lagged and rereads the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::build::{Build, BuildId, BuildStatus, Trigger};
use crate::clock::{now_ms, wall_ms_at};
use crate::config::LiveConfig;
use crate::feed::{Feed, FeedName};
use crate::metrics::Metrics;
use crate::outbound::{notify, plan};
use crate::runner::{BuildDirs, BuildSpec, Reporter, RunEvent};
use crate::store::{Admission, AdmitRequest, DeliveryRecord, Pick, Store, StoreError};

/// Errors of scheduling operations, for the admin and HTTP layers to map.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScheduleError {
    /// The store failed or could not make the trigger durable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking pool is gone (shutdown).
    #[error("daemon is shutting down")]
    ShuttingDown,
}

/// A trigger ready for admission, owning its data (it crosses to the blocking pool).
#[derive(Debug, Clone)]
pub(crate) struct Submission {
    /// The feed as read by the caller.
    pub(crate) feed: Feed,
    /// Full ref.
    pub(crate) git_ref: String,
    /// Short name.
    pub(crate) branch: String,
    /// The trigger.
    pub(crate) trigger: Trigger,
    /// Skip the cooldown.
    pub(crate) force: bool,
    /// The delivery to record with it (webhooks).
    pub(crate) delivery: Option<DeliveryRecord>,
}

impl Submission {
    /// The store's view of it, admitted at `now_ms`.
    fn request(&self, now_ms: i64) -> AdmitRequest<'_> {
        AdmitRequest {
            feed: &self.feed,
            git_ref: self.git_ref.clone(),
            branch: self.branch.clone(),
            trigger: self.trigger.clone(),
            force: self.force,
            now_ms,
        }
    }
}

/// The starts this process made, each in the wall time `wall_now` read at the
/// monotonic moment `now` (what [`Store::claim_next`] counts instead of stored times).
fn measured_starts(
    started: &HashMap<FeedName, Instant>,
    now: Instant,
    wall_now: i64,
) -> HashMap<FeedName, i64> {
    started
        .iter()
        .map(|(feed, at)| (feed.clone(), wall_ms_at(*at, now, wall_now)))
        .collect()
}

/// What a cancel request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    /// It was queued and is now cancelled.
    Dequeued,
    /// It was running; its process group is being stopped.
    Stopping,
    /// It had already ended with this status.
    AlreadyOver(String),
}

/// Updates a subscriber may fall behind by before it is told it lagged.
const UPDATES_KEPT: usize = 1024;

/// One change of one build's state, as published to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildUpdate {
    /// Which build.
    pub(crate) build: BuildId,
    /// Its feed.
    pub(crate) feed: FeedName,
    /// What changed.
    pub(crate) change: Change,
}

/// What changed about a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new build was queued (possibly deferred by the cooldown).
    Queued,
    /// A trigger joined the queued build.
    Coalesced,
    /// A worker took it; its source is being fetched.
    Started,
    /// The commit it builds is known.
    Commit {
        /// The commit id.
        commit: String,
    },
    /// Its command runs in this process group.
    ProcessGroup {
        /// The group id.
        pgid: u32,
    },
    /// Its log grew.
    Log {
        /// Bytes in the log now.
        len: u64,
    },
    /// It is over (or interrupted by shutdown, to run again after restart).
    Finished {
        /// The recorded status.
        status: BuildStatus,
    },
}

/// A build that runs now, and how to stop it.
#[derive(Debug)]
struct RunningBuild {
    /// Its feed (one build per feed at a time).
    feed: FeedName,
    /// Fired by `cancel`.
    cancel: CancellationToken,
    /// Set once the build has ended and its status is being recorded: a cancel then
    /// answers with that status instead of "stopping" a build users already see over.
    over: Option<&'static str>,
}

/// Handle to the scheduler; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where the queue lives.
    store: Store,
    /// Settings in force (workers, limits, directories).
    config: LiveConfig,
    /// Build counters.
    metrics: Arc<Metrics>,
    /// Every build state change, for whoever listens.
    updates: broadcast::Sender<BuildUpdate>,
    /// Woken by every admission and every finished build.
    wake: Notify,
    /// Builds in progress.
    running: Mutex<HashMap<BuildId, RunningBuild>>,
    /// When this process last started a build of each feed, on the monotonic clock:
    /// the cooldown is measured from it, so a wall-clock jump does not move it.
    started: Mutex<HashMap<FeedName, Instant>>,
    /// Fired when the shutdown grace is over: stops every build (each build's own
    /// cancel token is a child of it).
    kill_all: CancellationToken,
    /// Woken after a change wrote outbox items (status posts).
    outbox: crate::outbound::Outbox,
}

impl Scheduler {
    /// A scheduler over the store's queue; `run` starts dispatching.
    pub(crate) fn new(
        store: Store,
        config: LiveConfig,
        metrics: Arc<Metrics>,
        outbox: crate::outbound::Outbox,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                metrics,
                updates: broadcast::channel(UPDATES_KEPT).0,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                started: Mutex::new(HashMap::new()),
                kill_all: CancellationToken::new(),
                outbox,
            }),
        }
    }

    /// Admits a trigger and waits until it is durable on disk; only then may the
    /// caller reply 2xx. Wakes the dispatcher when a build became startable.
    pub(crate) async fn submit(&self, mut sub: Submission) -> Result<Admission, ScheduleError> {
        let feed = sub.feed.name.clone();
        let delivery = sub.delivery.take();
        let admission = self
            .inner
            .store
            .write_durable(move |group| group.admit(&sub.request(now_ms()), delivery))
            .await?;
        self.admitted(&feed, std::slice::from_ref(&admission));
        Ok(admission)
    }

    /// Admits the triggers of one delivery (one per ref it changed, all of one feed)
    /// with its record, in one group commit ([`Store::admit_all`]: `settle` fills in the
    /// record from the admissions), and waits until all of it is durable; only then
    /// may the caller reply 2xx. Each submission's own `delivery` is not used.
    #[allow(
        dead_code,
        reason = "the intake's multi-ref path on the multiref branch calls it"
    )]
    pub(crate) async fn submit_all(
        &self,
        subs: Vec<Submission>,
        delivery: Option<DeliveryRecord>,
        settle: impl FnOnce(&[Admission], &mut DeliveryRecord) + Send + 'static,
    ) -> Result<Vec<Admission>, ScheduleError> {
        let Some(feed) = subs.first().map(|sub| sub.feed.name.clone()) else {
            return Ok(Vec::new());
        };
        let admissions = self
            .inner
            .store
            .write_durable(move |group| {
                let now = now_ms();
                let reqs: Vec<AdmitRequest> = subs.iter().map(|sub| sub.request(now)).collect();
                group.admit_all(&reqs, delivery, settle)
            })
            .await?;
        self.admitted(&feed, &admissions);
        Ok(admissions)
    }

    /// Publishes what admissions did to builds and wakes the dispatcher when a build
    /// became startable.
    fn admitted(&self, feed: &FeedName, admissions: &[Admission]) {
        for admission in admissions {
            match admission {
                Admission::Queued(id) | Admission::Deferred { build: id, .. } => {
                    self.publish(*id, feed, Change::Queued);
                    self.inner.wake.notify_one();
                }
                Admission::Coalesced(id) => self.publish(*id, feed, Change::Coalesced),
                Admission::Rejected { .. } | Admission::Replayed(_) => {}
            }
        }
    }

    /// Cancels a queued or running build.
    pub(crate) async fn cancel(&self, id: BuildId) -> Result<CancelOutcome, ScheduleError> {
        if let Some(outcome) = self.cancel_running(id) {
            return Ok(outcome);
        }
        let store = self.inner.store.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            match store.cancel_queued(id, now_ms())? {
                Some(build) => {
                    store.durable_blocking()?;
                    Ok((CancelOutcome::Dequeued, Some(build)))
                }
                None => {
                    let build = store.build_required(id)?;
                    let word = build.status.word().to_owned();
                    Ok((CancelOutcome::AlreadyOver(word), None))
                }
            }
        })
        .await
        .map_err(|_| ScheduleError::ShuttingDown)??;
        let (outcome, dequeued) = outcome;
        if let Some(build) = dequeued {
            let status = build.status;
            self.publish(id, &build.feed, Change::Finished { status });
        }
        // A running build may have been claimed between the two looks.
        if matches!(&outcome, CancelOutcome::AlreadyOver(word) if word == "running") {
            if let Some(outcome) = self.cancel_running(id) {
                return Ok(outcome);
            }
        }
        Ok(outcome)
    }

    /// Stops a build that runs now; `None` when it is not running. A build that has
    /// ended but whose end is still being recorded answers with its final status.
    fn cancel_running(&self, id: BuildId) -> Option<CancelOutcome> {
        let running = self.running();
        let run = running.get(&id)?;
        Some(match run.over {
            Some(word) => CancelOutcome::AlreadyOver(word.to_owned()),
            None => {
                run.cancel.cancel();
                CancelOutcome::Stopping
            }
        })
    }

    /// Cancels whatever runs for a feed (feed removal).
    pub(crate) fn cancel_feed(&self, feed: &FeedName) {
        self.started().remove(feed);
        for run in self.running().values().filter(|r| &r.feed == feed) {
            run.cancel.cancel();
        }
    }

    /// Makes the dispatcher look at the queue again (feed resumed, config reloaded).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Makes the outbox's sender look at the store again (an item was retried).
    pub(crate) fn wake_outbox(&self) {
        self.inner.outbox.wake();
    }

    /// How many builds run now.
    pub(crate) fn running_count(&self) -> usize {
        self.running().len()
    }

    /// A receiver of every build state change from now on. Subscribe before reading
    /// the store, so no change between the read and the first update is missed.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<BuildUpdate> {
        self.inner.updates.subscribe()
    }

    /// Tells subscribers; with none listening the update is simply dropped.
    fn publish(&self, build: BuildId, feed: &FeedName, change: Change) {
        let update = BuildUpdate {
            build,
            feed: feed.clone(),
            change,
        };
        let _ = self.inner.updates.send(update);
    }

    fn started(&self) -> std::sync::MutexGuard<'_, HashMap<FeedName, Instant>> {
        self.inner.started.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<BuildId, RunningBuild>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Dispatches builds until `shutdown` fires, then gives running builds `grace`
    /// to finish before cancelling them; returns when every build task has ended.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        loop {
            let free = self
                .inner
                .config
                .get()
                .workers
                .saturating_sub(self.running_count());
            let pick = if free > 0 {
                self.pick().await
            } else {
                Ok(Pick::Idle)
            };
            match pick {
                Ok(Pick::Start(build)) => {
                    self.spawn_build(*build, &mut tasks);
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
        self.drain(self.inner.config.get().shutdown_grace, tasks)
            .await;
    }

    async fn pick(&self) -> Result<Pick, ScheduleError> {
        let busy: HashSet<FeedName> = self.running().values().map(|r| r.feed.clone()).collect();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let (now, wall_now) = (Instant::now(), now_ms());
            let measured = measured_starts(&this.started(), now, wall_now);
            let pick = this.inner.store.claim_next(&busy, &measured, wall_now);
            if let Ok(Pick::Start(build)) = &pick {
                this.started().insert(build.feed.clone(), now);
            }
            pick
        })
        .await
        .map_err(|_| ScheduleError::ShuttingDown)?
        .map_err(ScheduleError::from)
    }

    fn spawn_build(&self, build: Build, tasks: &mut JoinSet<()>) {
        let cancel = self.inner.kill_all.child_token();
        self.running().insert(
            build.id,
            RunningBuild {
                feed: build.feed.clone(),
                cancel: cancel.clone(),
                over: None,
            },
        );
        tracing::info!(feed = %build.feed, build = build.id.0, trigger = build.kind.word(), "build started");
        self.publish(build.id, &build.feed, Change::Started);
        let span = tracing::info_span!("build", feed = %build.feed, build = build.id.0);
        let this = self.clone();
        tasks.spawn(
            async move {
                let (id, feed) = (build.id, build.feed.clone());
                let status = this.execute(build, cancel).await;
                this.record_end(id, &feed, status).await;
                this.running().remove(&id);
                this.inner.wake.notify_one();
            }
            .instrument(span),
        );
    }

    /// Runs one build, applying its events as they come; returns its final status.
    async fn execute(&self, build: Build, cancel: CancellationToken) -> BuildStatus {
        let spec = match self.spec(&build, cancel).await {
            Ok(spec) => spec,
            Err(status) => return status,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reporter = Reporter::new(tx);
        let log_ack = reporter.log_ack();
        let run = crate::runner::run(spec, reporter);
        let apply = async {
            while let Some(event) = rx.recv().await {
                if let RunEvent::LogGrew { .. } = event {
                    log_ack.taken();
                }
                if let Some(status) = self.apply(&build, event).await {
                    return status;
                }
            }
            crate::runner::error("the build ended without a status")
        };
        let ((), status) = tokio::join!(run, apply);
        status
    }

    /// The runner's input: the feed as it stands now, settings and directories.
    async fn spec(
        &self,
        build: &Build,
        cancel: CancellationToken,
    ) -> Result<BuildSpec, BuildStatus> {
        let config = self.inner.config.get();
        let (store, name) = (self.inner.store.clone(), build.feed.clone());
        let feed = match tokio::task::spawn_blocking(move || store.feed(name.as_str())).await {
            Ok(Ok(Some(feed))) => feed,
            Ok(Ok(None)) => return Err(crate::runner::error("the feed was removed")),
            _ => return Err(crate::runner::error("cannot read the feed from the store")),
        };
        let data_dir = &config.data_dir;
        Ok(BuildSpec {
            id: build.id,
            git_ref: build.git_ref.clone(),
            branch: build.branch.clone(),
            kind: build.kind,
            provider: build
                .triggers
                .latest
                .last()
                .map(|t| t.provider.clone())
                .unwrap_or_default(),
            expected_commit: build.triggers.newest_commit().map(str::to_owned),
            dirs: BuildDirs {
                log: crate::paths::log(data_dir, build.id),
                mirror: crate::paths::mirror(data_dir, &feed.name),
                workspace: crate::paths::workspace(data_dir, &feed.name),
            },
            data_dir: data_dir.clone(),
            build_env: config.build_env.clone(),
            credentials: config
                .credentials
                .get(feed.name.as_str())
                .cloned()
                .unwrap_or_default(),
            kill_grace: config.kill_grace,
            log_max_bytes: config.log_max_bytes,
            feed,
            cancel,
        })
    }

    /// Records and publishes one runner event; `Some` with the final status at the end.
    async fn apply(&self, build: &Build, event: RunEvent) -> Option<BuildStatus> {
        let (id, feed) = (build.id, &build.feed);
        match event {
            RunEvent::Fetched { elapsed } => {
                self.inner.metrics.fetch(elapsed.as_micros() as u64);
            }
            RunEvent::CommitResolved { commit, subject } => {
                let subject =
                    crate::build::truncate_marked(subject, crate::build::MAX_SUBJECT_BYTES);
                let (store, sha) = (self.inner.store.clone(), commit.clone());
                let config = self.inner.config.get();
                // The commit and its `running` post land in one batch.
                let feed_name = feed.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    let notices = notify::context(&store, &config, &feed_name, id, now)?;
                    let change = |b: &mut Build| {
                        b.commit = Some(sha.clone());
                        b.subject = Some(subject.clone());
                    };
                    let plan = |b: &Build| plan::on_commit(b, &config, &notices);
                    store.update_build_posting(id, change, plan, now)
                })
                .await;
                match saved {
                    Ok(Ok((_, posts))) if posts > 0 => self.inner.outbox.wake(),
                    Ok(Ok(_)) => {}
                    _ => tracing::warn!(build = id.0, "cannot record the resolved commit"),
                }
                self.publish(id, feed, Change::Commit { commit });
            }
            RunEvent::Started { pgid } => {
                self.record_pgid(id, pgid).await;
                self.publish(id, feed, Change::ProcessGroup { pgid });
            }
            RunEvent::LogGrew { len } => self.publish(id, feed, Change::Log { len }),
            RunEvent::Finished { status } => return Some(status),
        }
        None
    }

    /// Persists the build's process group as soon as it exists, for crash recovery.
    async fn record_pgid(&self, id: BuildId, pgid: u32) {
        let store = self.inner.store.clone();
        let saved = tokio::task::spawn_blocking(move || {
            // A build that already ended (a fast command) has no group left to record.
            store.update_build(id, |b| {
                if b.status == BuildStatus::Running {
                    b.pgid = i32::try_from(pgid).ok();
                }
            })?;
            store.durable_blocking()
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!(build = id.0, "cannot record the build's process group");
        }
    }

    async fn record_end(&self, id: BuildId, feed: &FeedName, status: BuildStatus) {
        let store = self.inner.store.clone();
        let interrupted = status == BuildStatus::Cancelled && self.inner.kill_all.is_cancelled();
        if let Some(run) = self.running().get_mut(&id) {
            run.over = Some(if interrupted {
                BuildStatus::Interrupted.word()
            } else {
                status.word()
            });
        }
        if interrupted {
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
            let status = BuildStatus::Interrupted;
            self.publish(id, feed, Change::Finished { status });
            return;
        }
        let config = self.inner.config.get();
        let (keep, data_dir) = (config.keep_builds, config.data_dir.clone());
        let word = status.word();
        let feed_name = feed.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<Build, StoreError> {
            // The end, its final status post and its notifications land in one batch.
            let now = now_ms();
            let notices = notify::context(&store, &config, &feed_name, id, now)?;
            let plan = |b: &Build| plan::on_finish(b, &config, &notices);
            let build = store.finish_posting(id, status, now, plan)?;
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
                self.inner.metrics.build_finished(word, secs);
                tracing::info!(feed = %b.feed, build = id.0, status = word, "build finished");
                let status = b.status;
                self.publish(id, feed, Change::Finished { status });
                self.inner.outbox.wake();
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
