//! The persistent build queue: admission (coalesce, defer, reject), claiming the next
//! startable build in FIFO order, finishing, and crash recovery. What to do is decided
//! by [`crate::policy`]; this module reads the facts it needs and persists its answer.
//!
//! Every change here reads under the store's write lock and lands as one atomic batch,
//! so a crash leaves either all or none of a trigger's records, and two racing
//! deliveries can never both create a build for the same (feed, ref).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::deliveries::DeliveryRecord;
use super::space::Writes;
use super::{codec, keys, Store, StoreError};
use crate::build::{Build, BuildId, BuildStatus, Trigger, TriggerKind, TriggerList};
use crate::feed::{Feed, FeedName};
use crate::policy::{self, Eligibility, LastStart, NewBuild, Waiting};
use crate::reply::HookReply;

/// One not-yet-started build's place in the FIFO; carries what the scheduler needs
/// to decide eligibility without loading the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueEntry {
    /// The build waiting.
    pub(crate) build: BuildId,
    /// Its feed.
    pub(crate) feed: FeedName,
    /// Not before this time (deferred by the cooldown), Unix ms.
    pub(crate) run_at_ms: Option<i64>,
    /// Ignores the cooldown (`trigger --force`, retries).
    pub(crate) force: bool,
}

impl QueueEntry {
    /// The facts the scheduling policy looks at.
    fn waiting(&self) -> Waiting {
        Waiting {
            run_at_ms: self.run_at_ms,
            force: self.force,
        }
    }
}

/// What became of a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A new build was queued.
    Queued(BuildId),
    /// It joined a queued, not yet started build.
    Coalesced(BuildId),
    /// It waits for the cooldown (alone or joined with other deferred triggers).
    Deferred {
        /// The build that will run.
        build: BuildId,
        /// When it becomes startable, Unix ms.
        run_at_ms: i64,
    },
    /// Cooldown policy `reject`: try again later.
    Rejected {
        /// Seconds until the cooldown ends (Retry-After).
        retry_after_secs: u64,
    },
    /// The delivery id was seen before: the first reply again, nothing new queued.
    Replayed(HookReply),
}

impl Admission {
    /// The reply's `status` word.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            Self::Queued(_) => "queued",
            Self::Coalesced(_) => "coalesced",
            Self::Deferred { .. } => "deferred",
            Self::Rejected { .. } => "rejected",
            Self::Replayed(_) => "replayed",
        }
    }

    /// What the sender is told, and what a redelivery of it will be told again.
    pub(crate) fn reply(&self) -> HookReply {
        match self {
            Self::Queued(build) => HookReply::Queued { build: *build },
            Self::Coalesced(build) => HookReply::Coalesced { build: *build },
            Self::Deferred { build, run_at_ms } => HookReply::Deferred {
                build: *build,
                run_at_ms: *run_at_ms,
            },
            Self::Rejected { retry_after_secs } => HookReply::Rejected {
                retry_after_secs: *retry_after_secs,
            },
            Self::Replayed(first) => first.clone(),
        }
    }
}

/// A trigger to admit.
#[derive(Debug, Clone)]
pub struct AdmitRequest<'a> {
    /// The feed, as read just before.
    pub feed: &'a Feed,
    /// Full ref to build.
    pub git_ref: String,
    /// Its short name.
    pub branch: String,
    /// The trigger itself.
    pub trigger: Trigger,
    /// Skip the cooldown.
    pub force: bool,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// What the scheduler should do next.
#[derive(Debug)]
pub enum Pick {
    /// This build was claimed and is now `running`.
    Start(Box<Build>),
    /// Nothing startable before this time (a deferred build or cooldown end), Unix ms.
    WaitUntil(i64),
    /// Nothing startable until something new arrives.
    Idle,
}

/// The queue as `hookd admin queue` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueueView {
    /// Builds running now.
    pub(crate) running: Vec<Build>,
    /// Builds waiting, FIFO order, with when each may start (None = when a worker frees).
    pub(crate) waiting: Vec<(Build, Option<i64>)>,
}

/// What `admit_all` (a store's or a group's) does with one delivery's triggers.
type SettleFn = fn(&[Admission], &mut DeliveryRecord);

/// Admits a single trigger through `admit_all`: its record gets the admission's reply
/// and word, and the one admission is the answer.
pub(super) fn admit_one(
    req: &AdmitRequest<'_>,
    delivery: Option<DeliveryRecord>,
    admit_all: impl FnOnce(
        &[AdmitRequest<'_>],
        Option<DeliveryRecord>,
        SettleFn,
    ) -> Result<Vec<Admission>, StoreError>,
) -> Result<Admission, StoreError> {
    let settle: SettleFn = |admissions, record| {
        if let Some(admission) = admissions.first() {
            record.reply = admission.reply();
            record.outcome = admission.word().to_owned();
        }
    };
    admit_all(std::slice::from_ref(req), delivery, settle)?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("an admission answered nothing".into()))
}

impl Store {
    /// Admits a trigger: coalesces, defers, rejects or queues it, and records the
    /// delivery (when given) in the same atomic batch, with the admission's reply.
    /// Durable only after [`Store::durable_blocking`]; the webhook path admits through
    /// a [`super::Group`] instead (one batch per group commit).
    pub fn admit(
        &self,
        req: &AdmitRequest<'_>,
        delivery: Option<DeliveryRecord>,
    ) -> Result<Admission, StoreError> {
        admit_one(req, delivery, |reqs, delivery, settle| {
            self.admit_all(reqs, delivery, settle)
        })
    }

    /// Admits the triggers of one delivery (one per ref it changed, all of one feed)
    /// and records the delivery, all in one atomic batch: a crash keeps every build
    /// and the record, or none. `settle` fills in the record's reply and outcome from
    /// the admissions, in request order. A delivery id seen before admits nothing and
    /// answers one [`Admission::Replayed`] with the first reply. No request, no record.
    /// Durable only after [`Store::durable_blocking`]; the webhook path admits through
    /// a [`super::Group`] instead (one batch per group commit).
    pub(crate) fn admit_all(
        &self,
        reqs: &[AdmitRequest<'_>],
        delivery: Option<DeliveryRecord>,
        settle: impl FnOnce(&[Admission], &mut DeliveryRecord),
    ) -> Result<Vec<Admission>, StoreError> {
        let _guard = self.lock();
        let mut w = Writes::default();
        let admissions = self.admit_all_staged(reqs, delivery, settle, &mut w)?;
        self.apply(w)?;
        Ok(admissions)
    }

    /// [`Self::admit_all`] over the staged writes `w`: reads see them, and the
    /// admissions' own writes join them. The caller holds the write lock and applies
    /// `w`.
    pub(super) fn admit_all_staged(
        &self,
        reqs: &[AdmitRequest<'_>],
        delivery: Option<DeliveryRecord>,
        settle: impl FnOnce(&[Admission], &mut DeliveryRecord),
        w: &mut Writes,
    ) -> Result<Vec<Admission>, StoreError> {
        let Some(feed) = reqs.first().map(|req| req.feed.name.as_str()) else {
            return Ok(Vec::new());
        };
        if let Some(seen) = delivery.as_ref().and_then(|d| d.delivery_id.as_deref()) {
            if let Some(first) = self.delivery_by_id_staged(feed, seen, w)? {
                return Ok(vec![Admission::Replayed(first.reply)]);
            }
        }
        let admissions = reqs
            .iter()
            .map(|req| self.admit_writes(req, w))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(mut record) = delivery {
            settle(&admissions, &mut record);
            self.delivery_writes(feed, record, w)?;
        }
        Ok(admissions)
    }

    /// The admission rules: join the pending build of the ref, or reject, defer or
    /// queue a new one.
    fn admit_writes(
        &self,
        req: &AdmitRequest<'_>,
        w: &mut Writes,
    ) -> Result<Admission, StoreError> {
        let feed = req.feed;
        let pkey = keys::feed_text(feed.name.as_str(), &req.git_ref);
        // Staged reads: an earlier request of the same batch may have queued it.
        if let Some(id) = w.get(&self.pending, &pkey)? {
            return self.join_pending(req, BuildId(keys::read_u64(&id)?), w);
        }
        let last_start = self.counted_start(feed.name.as_str(), req.now_ms, w)?;
        let decision = policy::admit_new(feed, last_start, req.trigger.kind, req.force, req.now_ms);
        let (kind, run_at_ms) = match decision {
            NewBuild::Reject { retry_after_secs } => {
                return Ok(Admission::Rejected { retry_after_secs })
            }
            NewBuild::Queue { kind, run_at_ms } => (kind, run_at_ms),
        };
        let id = self.next_build_id(w)?;
        let mut triggers = TriggerList::default();
        triggers.push(req.trigger.clone());
        let build = Build::queued(
            id,
            feed.name.clone(),
            req.git_ref.clone(),
            req.branch.clone(),
            kind,
            triggers,
            req.now_ms,
        );
        let entry = QueueEntry {
            build: id,
            feed: feed.name.clone(),
            run_at_ms,
            force: req.force,
        };
        self.enqueue_writes(&build, &entry, w)?;
        Ok(match run_at_ms {
            Some(run_at_ms) => Admission::Deferred {
                build: id,
                run_at_ms,
            },
            None => Admission::Queued(id),
        })
    }

    fn join_pending(
        &self,
        req: &AdmitRequest<'_>,
        id: BuildId,
        w: &mut Writes,
    ) -> Result<Admission, StoreError> {
        let mut build = self.build_staged(id, w)?.ok_or(StoreError::NoBuild(id.0))?;
        build.triggers.push(req.trigger.clone());
        self.put_build(&build, w)?;
        let seq = build.queue_seq.to_be_bytes();
        let raw = w
            .get(&self.queue, seq)?
            .ok_or_else(|| StoreError::Corrupt(format!("pending build {id} has no queue entry")))?;
        let mut entry: QueueEntry = codec::decode(&raw)?;
        let join = policy::join(entry.waiting(), req.force, req.now_ms);
        if join.changed {
            (entry.run_at_ms, entry.force) = (join.waiting.run_at_ms, join.waiting.force);
            w.insert(&self.queue, seq, codec::encode(&entry)?);
        }
        Ok(match join.deferred_until {
            Some(run_at_ms) => Admission::Deferred {
                build: id,
                run_at_ms,
            },
            None => Admission::Coalesced(id),
        })
    }

    /// Claims the first startable build in FIFO order: its feed is not running, not
    /// paused, not cooling down and not deferred, unless forced. `measured` holds the
    /// starts the caller made itself, timed on the monotonic clock and given in the
    /// wall time of `now_ms` ([`LastStart::Measured`]); they count instead of the
    /// stored times, which a wall-clock jump leaves wrong.
    pub fn claim_next(
        &self,
        busy: &HashSet<FeedName>,
        measured: &HashMap<FeedName, i64>,
        now_ms: i64,
    ) -> Result<Pick, StoreError> {
        let _guard = self.lock();
        let mut feeds: HashMap<FeedName, Option<(Feed, LastStart)>> = HashMap::new();
        let mut fixes = Writes::default();
        let mut wake: Option<i64> = None;
        for item in self.queue.iter() {
            let (seq, value) = item?;
            let entry: QueueEntry = codec::decode(&value)?;
            let feed_busy = busy.contains(&entry.feed);
            let info = match feeds.get(&entry.feed) {
                _ if feed_busy => None,
                Some(info) => info.clone(),
                None => {
                    let feed = self.feed(entry.feed.as_str())?;
                    let stored = self.counted_start(entry.feed.as_str(), now_ms, &mut fixes)?;
                    let last = match measured.get(&entry.feed) {
                        Some(t) => LastStart::Measured(*t),
                        None => LastStart::stored(stored),
                    };
                    let info = feed.map(|f| (f, last));
                    feeds.insert(entry.feed.clone(), info.clone());
                    info
                }
            };
            let (feed, last) = info.map_or((None, LastStart::Unknown), |(f, l)| (Some(f), l));
            if let Some(f) = &feed {
                self.count_run_at(&seq, &entry, f, now_ms, &mut fixes)?;
            }
            match policy::eligibility(entry.waiting(), feed.as_ref(), feed_busy, last, now_ms) {
                Eligibility::Skip => {}
                Eligibility::Wait(t) => {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                    // Later builds of this feed must not overtake it.
                    feeds.insert(entry.feed.clone(), None);
                }
                Eligibility::Start => {
                    self.apply(fixes)?;
                    return Ok(Pick::Start(Box::new(self.claim(&seq, &entry, now_ms)?)));
                }
            }
        }
        self.apply(fixes)?;
        Ok(wake.map_or(Pick::Idle, Pick::WaitUntil))
    }

    /// Stages writing back a deferral that lies past now + the cooldown as counted
    /// ([`policy::counted_run_at`]), so the wait it leaves ends at a fixed time.
    fn count_run_at(
        &self,
        seq: &[u8],
        entry: &QueueEntry,
        feed: &Feed,
        now_ms: i64,
        w: &mut Writes,
    ) -> Result<(), StoreError> {
        let counted = policy::counted_run_at(feed, entry.run_at_ms, now_ms);
        if counted != entry.run_at_ms {
            let fixed = QueueEntry {
                run_at_ms: counted,
                ..entry.clone()
            };
            w.insert(&self.queue, seq, codec::encode(&fixed)?);
        }
        Ok(())
    }

    /// The feed's last start as `w` leaves it, as the rules count it
    /// ([`policy::counted_start`]); stages
    /// writing it back when the stored one lies ahead (the clock was set back), so the
    /// cooldown it leaves ends at a fixed time, not one cooldown from every look.
    fn counted_start(
        &self,
        feed: &str,
        now_ms: i64,
        w: &mut Writes,
    ) -> Result<Option<i64>, StoreError> {
        let stored = self.last_start_staged(feed, w)?;
        let counted = policy::counted_start(stored, now_ms);
        if counted != stored {
            if let Some(t) = counted {
                w.insert(&self.cooldowns, feed, &t.to_be_bytes());
            }
        }
        Ok(counted)
    }

    fn claim(&self, seq: &[u8], entry: &QueueEntry, now_ms: i64) -> Result<Build, StoreError> {
        let mut w = Writes::default();
        let mut build = self.build_required(entry.build)?;
        w.remove(&self.queue, seq);
        self.unpend(&build, &mut w)?;
        build.status = BuildStatus::Running;
        build.started_ms = Some(now_ms);
        self.put_build(&build, &mut w)?;
        w.insert(&self.running, build.id.0.to_be_bytes(), &[]);
        w.insert(&self.cooldowns, build.feed.as_str(), &now_ms.to_be_bytes());
        self.apply(w)?;
        Ok(build)
    }

    /// Drops the (feed, ref) → build link if it still points at this build.
    fn unpend(&self, build: &Build, w: &mut Writes) -> Result<(), StoreError> {
        let pkey = keys::feed_text(build.feed.as_str(), &build.git_ref);
        if self.pending.get(&pkey)?.as_deref() == Some(&build.id.0.to_be_bytes()[..]) {
            w.remove(&self.pending, pkey);
        }
        Ok(())
    }

    /// When the feed's last build started, Unix ms.
    pub(crate) fn last_start(&self, feed: &str) -> Result<Option<i64>, StoreError> {
        self.last_start_staged(feed, &Writes::default())
    }

    /// [`Self::last_start`] as the staged writes `w` leave the store.
    fn last_start_staged(&self, feed: &str, w: &Writes) -> Result<Option<i64>, StoreError> {
        w.get(&self.cooldowns, feed)?
            .map(|v| keys::read_i64(&v))
            .transpose()
    }

    /// Ends a running build with a final status.
    pub fn finish(
        &self,
        id: BuildId,
        status: BuildStatus,
        now_ms: i64,
    ) -> Result<Build, StoreError> {
        self.finish_posting(id, status, now_ms, |_| Vec::new())
    }

    /// [`Self::finish`] plus the outbox items `plan` makes of the finished build (its
    /// final status post), in the same atomic batch: a crash keeps the end and what
    /// it owes the forge, or neither.
    pub(crate) fn finish_posting(
        &self,
        id: BuildId,
        status: BuildStatus,
        now_ms: i64,
        plan: impl FnOnce(&Build) -> Vec<super::Outgoing>,
    ) -> Result<Build, StoreError> {
        let _guard = self.lock();
        let mut w = Writes::default();
        let mut build = self.build_required(id)?;
        build.status = status;
        build.finished_ms = Some(now_ms);
        build.pgid = None;
        self.put_build(&build, &mut w)?;
        w.remove(&self.running, id.0.to_be_bytes());
        let items = plan(&build);
        self.outbox_writes(&build, items, now_ms, &mut w)?;
        self.apply(w)?;
        Ok(build)
    }

    /// Cancels a build that has not started; `None` if it is not queued (running or over).
    pub(crate) fn cancel_queued(
        &self,
        id: BuildId,
        now_ms: i64,
    ) -> Result<Option<Build>, StoreError> {
        let _guard = self.lock();
        let mut build = self.build_required(id)?;
        if build.status != BuildStatus::Queued {
            return Ok(None);
        }
        let mut w = Writes::default();
        w.remove(&self.queue, build.queue_seq.to_be_bytes());
        self.unpend(&build, &mut w)?;
        build.status = BuildStatus::Cancelled;
        build.finished_ms = Some(now_ms);
        self.put_build(&build, &mut w)?;
        self.apply(w)?;
        Ok(Some(build))
    }

    /// The builds of a feed that wait to start, queued or deferred, in FIFO order.
    pub(crate) fn waiting_of(&self, feed: &str) -> Result<Vec<BuildId>, StoreError> {
        let mut out = Vec::new();
        for item in self.queue.iter() {
            let entry: QueueEntry = codec::decode(&item?.1)?;
            if entry.feed.as_str() == feed {
                out.push(entry.build);
            }
        }
        Ok(out)
    }

    /// Drops every queued build of a feed (feed removal; the caller holds the lock).
    pub(super) fn remove_queued_of(&self, feed: &str, w: &mut Writes) -> Result<(), StoreError> {
        for item in self.queue.iter() {
            let (seq, value) = item?;
            let entry: QueueEntry = codec::decode(&value)?;
            if entry.feed.as_str() == feed {
                w.remove(&self.queue, seq);
            }
        }
        Ok(())
    }

    /// Crash recovery: every build left `running` becomes `interrupted`, and is queued
    /// again once (a retry of a retry is not). Returns the interrupted builds so their
    /// leftover process groups can be reaped.
    pub(crate) fn recover_interrupted(&self, now_ms: i64) -> Result<Vec<Build>, StoreError> {
        let ids = self
            .running
            .iter()
            .map(|item| Ok(BuildId(keys::read_u64(&item?.0)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let interrupted = ids
            .into_iter()
            .map(|id| self.interrupt(id, now_ms))
            .collect::<Result<Vec<_>, _>>()?;
        if !interrupted.is_empty() {
            self.durable_blocking()?;
        }
        Ok(interrupted)
    }

    /// Marks one running build `interrupted` and queues its rerun (once) in its old
    /// FIFO place. The returned record still carries the pgid it ran under.
    pub(crate) fn interrupt(&self, id: BuildId, now_ms: i64) -> Result<Build, StoreError> {
        let _guard = self.lock();
        let mut w = Writes::default();
        w.remove(&self.running, id.0.to_be_bytes());
        let mut old = self.build_required(id)?;
        let pgid = old.pgid.take();
        old.status = BuildStatus::Interrupted;
        old.finished_ms = Some(now_ms);
        self.put_build(&old, &mut w)?;
        if old.retry_of.is_none() {
            self.requeue_writes(&old, now_ms, &mut w)?;
        }
        self.apply(w)?;
        old.pgid = pgid;
        Ok(old)
    }

    /// Queues a rerun of an interrupted build in its old FIFO place, or folds its
    /// triggers into a build already pending for the same ref.
    fn requeue_writes(&self, old: &Build, now_ms: i64, w: &mut Writes) -> Result<(), StoreError> {
        let pkey = keys::feed_text(old.feed.as_str(), &old.git_ref);
        if let Some(id) = self.pending.get(&pkey)? {
            let mut build = self.build_required(BuildId(keys::read_u64(&id)?))?;
            let mut merged = old.triggers.clone();
            merged.extend(std::mem::take(&mut build.triggers));
            build.triggers = merged;
            return self.put_build(&build, w);
        }
        let id = self.next_build_id(w)?;
        // It keeps the place in the queue of the build it reruns.
        let retry = Build {
            queue_seq: old.queue_seq,
            retry_of: Some(old.id),
            ..Build::queued(
                id,
                old.feed.clone(),
                old.git_ref.clone(),
                old.branch.clone(),
                TriggerKind::Retry,
                old.triggers.clone(),
                now_ms,
            )
        };
        let entry = QueueEntry {
            build: id,
            feed: old.feed.clone(),
            run_at_ms: None,
            force: true,
        };
        self.enqueue_writes(&retry, &entry, w)
    }

    fn enqueue_writes(
        &self,
        build: &Build,
        entry: &QueueEntry,
        w: &mut Writes,
    ) -> Result<(), StoreError> {
        self.put_build(build, w)?;
        self.index_build(build.feed.as_str(), build.id, w)?;
        w.insert(
            &self.queue,
            build.queue_seq.to_be_bytes(),
            codec::encode(entry)?,
        );
        let pkey = keys::feed_text(build.feed.as_str(), &build.git_ref);
        w.insert(&self.pending, pkey, &build.id.0.to_be_bytes());
        Ok(())
    }

    /// Takes the next build id. Only called under the write lock, and the counter is
    /// written in the same batch as the build, so ids never repeat across crashes.
    fn next_build_id(&self, w: &mut Writes) -> Result<BuildId, StoreError> {
        let next = self.next_build_staged(w)?;
        w.insert(&self.meta, keys::NEXT_BUILD, &(next + 1).to_be_bytes());
        Ok(BuildId(next))
    }

    /// The id the next build will get, as this batch leaves the counter.
    pub(super) fn next_build_staged(&self, w: &Writes) -> Result<u64, StoreError> {
        match w.get(&self.meta, keys::NEXT_BUILD)? {
            Some(v) => keys::read_u64(&v),
            None => Ok(1),
        }
    }

    /// Running and waiting builds, for `hookd admin queue`.
    pub(crate) fn queue_view(&self, now_ms: i64, limit: usize) -> Result<QueueView, StoreError> {
        let mut running = Vec::new();
        for item in self.running.iter() {
            let id = keys::read_u64(&item?.0)?;
            running.push(self.build_required(BuildId(id))?);
        }
        let mut waiting = Vec::new();
        for item in self.queue.iter().take(limit) {
            let entry: QueueEntry = codec::decode(&item?.1)?;
            let build = self.build_required(entry.build)?;
            let not_before = match entry.force {
                true => None,
                false => self.feed(entry.feed.as_str())?.and_then(|f| {
                    let last_start = self.last_start(f.name.as_str()).ok().flatten();
                    let last = LastStart::stored(last_start);
                    policy::not_before(entry.waiting(), &f, last, now_ms)
                }),
            };
            waiting.push((build, not_before));
        }
        Ok(QueueView { running, waiting })
    }

    /// (due, deferred) counts of waiting builds; a scan of the queue entries only, for
    /// status and metrics, never the hot path.
    pub(crate) fn queue_counts(&self, now_ms: i64) -> Result<(usize, usize), StoreError> {
        let (mut due, mut deferred) = (0, 0);
        for item in self.queue.iter() {
            let entry: QueueEntry = codec::decode(&item?.1)?;
            match policy::is_deferred(entry.waiting(), now_ms) {
                true => deferred += 1,
                false => due += 1,
            }
        }
        Ok((due, deferred))
    }

    /// Builds waiting in the queue (a scan: status output only).
    pub(crate) fn queue_depth(&self) -> usize {
        self.queue.count()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::feed::CooldownPolicy;
    use crate::store::test_support::temp_store;

    fn feed(name: &str, cooldown_secs: u64, on_cooldown: CooldownPolicy) -> Feed {
        Feed {
            cooldown_secs,
            on_cooldown,
            ..crate::feed::sample(name)
        }
    }

    fn trigger(commit: &str) -> Trigger {
        Trigger {
            accepted_ms: 0,
            kind: TriggerKind::Hook,
            provider: "github".into(),
            event: "push".into(),
            delivery_id: None,
            commit: Some(commit.into()),
        }
    }

    fn admit(store: &Store, feed: &Feed, branch: &str, commit: &str, now_ms: i64) -> Admission {
        let req = AdmitRequest {
            feed,
            git_ref: format!("refs/heads/{branch}"),
            branch: branch.into(),
            trigger: trigger(commit),
            force: false,
            now_ms,
        };
        store.admit(&req, None).unwrap()
    }

    fn start(store: &Store, now_ms: i64) -> Pick {
        store
            .claim_next(&HashSet::new(), &HashMap::new(), now_ms)
            .unwrap()
    }

    #[test]
    fn fifo_across_feeds_and_coalescing_per_ref() {
        let (_d, store) = temp_store();
        let (a, b) = (
            feed("a", 0, CooldownPolicy::Defer),
            feed("b", 0, CooldownPolicy::Defer),
        );
        store.add_feed(&a).unwrap();
        store.add_feed(&b).unwrap();
        assert_eq!(
            admit(&store, &a, "main", "c1", 0),
            Admission::Queued(BuildId(1))
        );
        assert_eq!(
            admit(&store, &b, "main", "c2", 0),
            Admission::Queued(BuildId(2))
        );
        assert_eq!(
            admit(&store, &a, "main", "c3", 0),
            Admission::Coalesced(BuildId(1))
        );
        assert_eq!(
            admit(&store, &a, "dev", "c4", 0),
            Admission::Queued(BuildId(3))
        );
        let Pick::Start(first) = start(&store, 1) else {
            panic!()
        };
        assert_eq!(first.id, BuildId(1));
        assert_eq!(first.triggers.count, 2);
        assert_eq!(first.triggers.newest_commit(), Some("c3"));
        // Feed a is busy: b's build overtakes a's second one.
        let busy: HashSet<_> = [a.name.clone()].into();
        let Pick::Start(second) = store.claim_next(&busy, &HashMap::new(), 1).unwrap() else {
            panic!()
        };
        assert_eq!(second.id, BuildId(2));
        // Once started, a new trigger for a/main queues a new build.
        assert_eq!(
            admit(&store, &a, "main", "c5", 2),
            Admission::Queued(BuildId(4))
        );
    }

    #[test]
    fn cooldown_defers_and_coalesces_the_deferred_triggers() {
        let (_d, store) = temp_store();
        let a = feed("a", 10, CooldownPolicy::Defer);
        store.add_feed(&a).unwrap();
        assert_eq!(
            admit(&store, &a, "main", "c1", 1_000),
            Admission::Queued(BuildId(1))
        );
        assert!(matches!(start(&store, 1_000), Pick::Start(_)));
        store
            .finish(BuildId(1), BuildStatus::Succeeded, 1_500)
            .unwrap();
        let deferred = Admission::Deferred {
            build: BuildId(2),
            run_at_ms: 11_000,
        };
        assert_eq!(admit(&store, &a, "main", "c2", 2_000), deferred);
        assert_eq!(admit(&store, &a, "main", "c3", 3_000), deferred);
        assert!(matches!(start(&store, 5_000), Pick::WaitUntil(11_000)));
        let Pick::Start(b) = start(&store, 11_000) else {
            panic!()
        };
        assert_eq!(
            (b.id, b.kind, b.triggers.count),
            (BuildId(2), TriggerKind::Deferred, 2)
        );
        assert_eq!(b.triggers.newest_commit(), Some("c3"));
    }

    #[test]
    fn reject_policy_answers_retry_after_and_force_bypasses() {
        let (_d, store) = temp_store();
        let a = feed("a", 300, CooldownPolicy::Reject);
        store.add_feed(&a).unwrap();
        admit(&store, &a, "main", "c1", 0);
        assert!(matches!(start(&store, 0), Pick::Start(_)));
        assert_eq!(
            admit(&store, &a, "main", "c2", 100_500),
            Admission::Rejected {
                retry_after_secs: 200
            }
        );
        let req = AdmitRequest {
            feed: &a,
            git_ref: "refs/heads/main".into(),
            branch: "main".into(),
            trigger: trigger("c3"),
            force: true,
            now_ms: 100_500,
        };
        assert_eq!(
            store.admit(&req, None).unwrap(),
            Admission::Queued(BuildId(2))
        );
        store
            .finish(BuildId(1), BuildStatus::Succeeded, 100_600)
            .unwrap();
        assert!(matches!(start(&store, 100_700), Pick::Start(b) if b.id == BuildId(2)));
    }

    #[test]
    fn interrupted_builds_rerun_once_in_their_place() {
        let (_d, store) = temp_store();
        let a = feed("a", 0, CooldownPolicy::Defer);
        let b = feed("b", 0, CooldownPolicy::Defer);
        store.add_feed(&a).unwrap();
        store.add_feed(&b).unwrap();
        admit(&store, &a, "main", "c1", 0);
        admit(&store, &b, "main", "c2", 0);
        assert!(matches!(start(&store, 0), Pick::Start(x) if x.id == BuildId(1)));
        let interrupted = store.recover_interrupted(10).unwrap();
        assert_eq!(interrupted.len(), 1);
        assert_eq!(
            store.build(BuildId(1)).unwrap().unwrap().status,
            BuildStatus::Interrupted
        );
        let Pick::Start(retry) = start(&store, 20) else {
            panic!()
        };
        assert_eq!(
            (retry.kind, retry.retry_of),
            (TriggerKind::Retry, Some(BuildId(1)))
        );
        // The retry itself is interrupted: it is not queued a third time.
        store.recover_interrupted(30).unwrap();
        let Pick::Start(next) = start(&store, 40) else {
            panic!()
        };
        assert_eq!(next.id, BuildId(2));
        assert!(matches!(start(&store, 50), Pick::Idle));
    }

    #[test]
    fn redelivery_replays_the_first_reply() {
        let (_d, store) = temp_store();
        let a = feed("a", 0, CooldownPolicy::Defer);
        store.add_feed(&a).unwrap();
        let record = DeliveryRecord {
            at_ms: 0,
            provider: "github".into(),
            event: "push".into(),
            delivery_id: Some("d-1".into()),
            git_ref: None,
            commit: None,
            reply: HookReply::Pong,
            outcome: "queued".into(),
            reason: None,
        };
        let req = AdmitRequest {
            feed: &a,
            git_ref: "refs/heads/main".into(),
            branch: "main".into(),
            trigger: trigger("c1"),
            force: false,
            now_ms: 0,
        };
        assert_eq!(
            store.admit(&req, Some(record.clone())).unwrap(),
            Admission::Queued(BuildId(1))
        );
        let again = store.admit(&req, Some(record.clone())).unwrap();
        assert_eq!(
            again,
            Admission::Replayed(HookReply::Queued { build: BuildId(1) })
        );
        assert_eq!(store.deliveries("a", 10).unwrap().len(), 1);
        // The window is 3 deliveries: after 3 more the id is forgotten.
        for i in 0..3 {
            let mut r = record.clone();
            r.delivery_id = Some(format!("other-{i}"));
            store.admit(&req, Some(r)).unwrap();
        }
        assert_eq!(store.deliveries("a", 10).unwrap().len(), 3);
        assert!(store.delivery_by_id("a", "d-1").unwrap().is_none());
    }

    #[test]
    fn one_delivery_admits_several_refs_in_one_batch_with_its_record() {
        let (_d, store) = temp_store();
        let a = feed("a", 0, CooldownPolicy::Defer);
        store.add_feed(&a).unwrap();
        let req = |git_ref: &str, commit: &str| AdmitRequest {
            feed: &a,
            git_ref: git_ref.into(),
            branch: git_ref.rsplit('/').next().unwrap_or_default().into(),
            trigger: trigger(commit),
            force: false,
            now_ms: 0,
        };
        let reqs = [
            req("refs/heads/main", "c1"),
            req("refs/tags/v1", "c1"),
            req("refs/heads/main", "c2"),
        ];
        let record = DeliveryRecord {
            at_ms: 0,
            provider: "bitbucket-cloud".into(),
            event: "repo:push".into(),
            delivery_id: Some("d-1".into()),
            git_ref: None,
            commit: None,
            reply: HookReply::Pong,
            outcome: String::new(),
            reason: None,
        };
        let settle = |admissions: &[Admission], record: &mut DeliveryRecord| {
            record.outcome = format!("{} admitted", admissions.len());
        };
        let admitted = store
            .admit_all(&reqs, Some(record.clone()), settle)
            .unwrap();
        assert_eq!(
            admitted,
            [
                Admission::Queued(BuildId(1)),
                Admission::Queued(BuildId(2)),
                Admission::Coalesced(BuildId(1)),
            ],
            "the third sees the first, staged in the same batch"
        );
        assert_eq!(store.deliveries("a", 10).unwrap()[0].outcome, "3 admitted");
        assert_eq!(store.feed_builds.count(), 1, "one index block, not two");
        let listed = store.builds(Some("a"), 10).unwrap();
        assert_eq!(ids_of(&listed), [2, 1]);
        assert_eq!(listed[1].triggers.count, 2);
        // A redelivery admits nothing and gets the first reply.
        let again = store.admit_all(&reqs, Some(record), |_, _| {}).unwrap();
        assert!(matches!(again.as_slice(), [Admission::Replayed(_)]));
        assert_eq!(store.builds(Some("a"), 10).unwrap().len(), 2);
        let Pick::Start(first) = start(&store, 1) else {
            panic!()
        };
        assert_eq!(first.triggers.newest_commit(), Some("c2"));
    }

    #[test]
    fn a_start_the_caller_measured_counts_instead_of_the_stored_times() {
        let (_d, store) = temp_store();
        let a = feed("a", 60, CooldownPolicy::Defer);
        store.add_feed(&a).unwrap();
        admit(&store, &a, "main", "c1", 1_000);
        assert!(matches!(start(&store, 1_000), Pick::Start(_)));
        store
            .finish(BuildId(1), BuildStatus::Succeeded, 2_000)
            .unwrap();
        assert_eq!(
            admit(&store, &a, "main", "c2", 2_000),
            Admission::Deferred {
                build: BuildId(2),
                run_at_ms: 61_000
            }
        );
        // 20 s after that start the wall clock jumps a day ahead: by the stored times
        // the cooldown is over; the start measured 20 s ago leaves 40 s of it.
        let now = 1_000 + 86_400_000 + 20_000;
        let measured: HashMap<FeedName, i64> = [(a.name.clone(), now - 20_000)].into();
        let pick = store.claim_next(&HashSet::new(), &measured, now).unwrap();
        assert!(
            matches!(pick, Pick::WaitUntil(t) if t == now + 40_000),
            "{pick:?}"
        );
        assert!(matches!(start(&store, now), Pick::Start(b) if b.id == BuildId(2)));
    }

    fn ids_of(builds: &[Build]) -> Vec<u64> {
        builds.iter().map(|b| b.id.0).collect()
    }
}
