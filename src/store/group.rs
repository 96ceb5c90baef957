//! A write's place in a group commit (see `commit`): the admissions and delivery
//! records of one group decide over the writes of those before them, still pending,
//! exactly as if each had been applied and made durable alone; the group then applies
//! them all as one batch. A write that fails takes back what it staged, so the others
//! of its group go on as if it had never run.

use super::queue::admit_one;
use super::space::Writes;
use super::{Admission, AdmitRequest, DeliveryRecord, Store, StoreError};

/// One group commit's pending writes, as handed to a [`Store::write_durable`] write.
pub(crate) struct Group<'a> {
    store: &'a Store,
    writes: &'a mut Writes,
}

impl<'a> Group<'a> {
    pub(super) fn new(store: &'a Store, writes: &'a mut Writes) -> Self {
        Self { store, writes }
    }

    /// [`Store::admit`], seeing and joining the group's pending writes.
    pub(crate) fn admit(
        &mut self,
        req: &AdmitRequest<'_>,
        delivery: Option<DeliveryRecord>,
    ) -> Result<Admission, StoreError> {
        admit_one(req, delivery, |reqs, delivery, settle| {
            self.admit_all(reqs, delivery, settle)
        })
    }

    /// [`Store::admit_all`], seeing and joining the group's pending writes.
    pub(crate) fn admit_all(
        &mut self,
        reqs: &[AdmitRequest<'_>],
        delivery: Option<DeliveryRecord>,
        settle: impl FnOnce(&[Admission], &mut DeliveryRecord),
    ) -> Result<Vec<Admission>, StoreError> {
        self.atomically(|store, w| store.admit_all_staged(reqs, delivery, settle, w))
    }

    /// [`Store::record_delivery`], seeing and joining the group's pending writes.
    pub(crate) fn record_delivery(
        &mut self,
        feed: &str,
        record: DeliveryRecord,
    ) -> Result<(), StoreError> {
        self.atomically(|store, w| store.delivery_writes(feed, record, w))
    }

    /// Runs `change`; if it fails, takes back whatever it staged.
    fn atomically<T>(
        &mut self,
        change: impl FnOnce(&Store, &mut Writes) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let point = self.writes.savepoint();
        let result = change(self.store, self.writes);
        if result.is_err() {
            self.writes.undo_to(point);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Waker};

    use super::*;
    use crate::build::{BuildId, Trigger, TriggerKind};
    use crate::feed::{CooldownPolicy, Feed};
    use crate::reply::HookReply;
    use crate::store::commit::Fault;
    use crate::store::keys;
    use crate::store::mark::{Mark, Point};
    use crate::store::test_support::{reopen, temp_store};

    /// One webhook: its feed, branch, delivery id and when it is admitted.
    #[derive(Debug, Clone)]
    struct Hook {
        feed: Feed,
        branch: &'static str,
        delivery_id: Option<String>,
        now_ms: i64,
        force: bool,
    }

    impl Hook {
        fn new(feed: &Feed, branch: &'static str, id: Option<&str>, now_ms: i64) -> Self {
            Self {
                feed: feed.clone(),
                branch,
                delivery_id: id.map(str::to_owned),
                now_ms,
                force: false,
            }
        }

        fn request(&self) -> AdmitRequest<'_> {
            AdmitRequest {
                feed: &self.feed,
                git_ref: format!("refs/heads/{}", self.branch),
                branch: self.branch.into(),
                trigger: Trigger {
                    accepted_ms: self.now_ms,
                    kind: TriggerKind::Hook,
                    provider: "github".into(),
                    event: "push".into(),
                    delivery_id: self.delivery_id.clone(),
                    commit: Some(format!("c{}", self.now_ms)),
                },
                force: self.force,
                now_ms: self.now_ms,
            }
        }

        fn record(&self) -> DeliveryRecord {
            DeliveryRecord {
                at_ms: self.now_ms,
                provider: "github".into(),
                event: "push".into(),
                delivery_id: self.delivery_id.clone(),
                git_ref: Some(format!("refs/heads/{}", self.branch)),
                commit: None,
                reply: HookReply::Pong,
                outcome: String::new(),
                reason: None,
            }
        }

        /// Admits it through a group commit, as the webhook path does; `order` counts
        /// the writes as the writer thread runs them.
        fn submit(
            self,
            store: &Store,
            order: Arc<AtomicUsize>,
        ) -> impl Future<Output = Result<(usize, Admission), StoreError>> + '_ {
            store.write_durable(move |group| {
                let at = order.fetch_add(1, Ordering::SeqCst);
                Ok((at, group.admit(&self.request(), Some(self.record()))?))
            })
        }
    }

    fn feed(store: &Store, name: &str, cooldown_secs: u64, on_cooldown: CooldownPolicy) -> Feed {
        let feed = Feed {
            cooldown_secs,
            on_cooldown,
            ..crate::feed::sample(name)
        };
        store.add_feed(&feed).unwrap();
        feed
    }

    /// A store's records, key and value.
    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    /// Every record but the commit number: what sequential admissions must equal.
    fn records(store: &Store) -> Records {
        let skip = [store.meta.key(keys::COMMIT), store.meta.key(keys::HEALTH)];
        store
            .records
            .iter()
            .map(|item| {
                let (k, v) = item.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .filter(|(k, _)| !skip.contains(k))
            .collect()
    }

    fn commits(store: &Store) -> u64 {
        let raw = store.meta.get(keys::COMMIT).unwrap().unwrap();
        Point::from_bytes(&raw).unwrap().seq
    }

    /// The acknowledged mark's commit number, as `db/acked` has it.
    fn acked(dir: &tempfile::TempDir) -> u64 {
        let db = crate::paths::db(dir.path());
        Mark::read(&db).unwrap().unwrap().seq
    }

    /// Feeds `a` (no cooldown), `r` (10 s, reject) and `d` (10 s, defer), the last two
    /// started at 1 000 ms, so their cooldowns end at 11 000 ms.
    fn setup(store: &Store) -> [Feed; 3] {
        let a = feed(store, "a", 0, CooldownPolicy::Defer);
        let r = feed(store, "r", 10, CooldownPolicy::Reject);
        let d = feed(store, "d", 10, CooldownPolicy::Defer);
        for f in [&r, &d] {
            let warm = Hook::new(f, "warm", None, 1_000);
            store.admit(&warm.request(), None).unwrap();
            let pick = store
                .claim_next(&HashSet::new(), &Default::default(), 1_000)
                .unwrap();
            assert!(matches!(pick, crate::store::Pick::Start(_)), "{pick:?}");
        }
        store.durable_blocking().unwrap();
        [a, r, d]
    }

    /// Webhooks that collide: one delivery id sent five times, triggers for one
    /// (feed, ref), admissions on both sides of a cooldown's end, a forced one, a
    /// rejected id sent again, and a redelivery of an id that left the window.
    fn colliding([a, r, d]: &[Feed; 3]) -> Vec<Hook> {
        let mut hooks = Vec::new();
        for _ in 0..5 {
            hooks.push(Hook::new(a, "main", Some("same"), 5_000));
        }
        for i in 0..4 {
            hooks.push(Hook::new(a, "main", Some(&format!("a{i}")), 5_001 + i));
            hooks.push(Hook::new(a, "dev", Some(&format!("dev{i}")), 5_001 + i));
        }
        hooks.push(Hook::new(a, "main", Some("same"), 5_100));
        for (i, t) in [10_998, 10_999, 10_999, 11_000, 11_000, 11_001]
            .iter()
            .enumerate()
        {
            hooks.push(Hook::new(r, "main", Some(&format!("r{i}")), *t));
            hooks.push(Hook::new(d, "main", Some(&format!("d{i}")), *t));
        }
        hooks.push(Hook::new(r, "main", Some("r0"), 11_002));
        let mut forced = Hook::new(d, "main", None, 10_999);
        forced.force = true;
        hooks.push(forced);
        hooks.push(Hook::new(d, "main", Some("d5"), 11_003));
        hooks.push(Hook::new(d, "main", Some("d0"), 11_004));
        hooks
    }

    /// What admitting `hooks` one by one, each applied alone, answers.
    fn sequential(hooks: &[Hook]) -> (Vec<Admission>, Records) {
        let (_dir, store) = temp_store();
        setup(&store);
        let replies = hooks
            .iter()
            .map(|h| store.admit(&h.request(), Some(h.record())).unwrap())
            .collect();
        (replies, records(&store))
    }

    /// Polls a future once (sending its write to the writer thread).
    fn poll_once<F: Future>(future: &mut Pin<Box<F>>) {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }

    /// Admits `hooks` through the writer thread as one group commit: it waits for the
    /// write lock with the first write taken, and every other write is queued behind
    /// it before the lock goes. Answers in the order handed over, with where each ran.
    fn one_group(store: &Store, hooks: &[Hook]) -> Vec<Result<(usize, Admission), StoreError>> {
        let order = Arc::new(AtomicUsize::new(0));
        let guard = store.lock();
        let mut pending: Vec<_> = hooks
            .iter()
            .map(|h| Box::pin(h.clone().submit(store, order.clone())))
            .collect();
        pending.iter_mut().for_each(poll_once);
        drop(guard);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        pending.into_iter().map(|w| runtime.block_on(w)).collect()
    }

    #[test]
    fn colliding_admissions_in_one_group_decide_as_sequential_ones() {
        let (_dir, store) = temp_store();
        let feeds = setup(&store);
        let hooks = colliding(&feeds);
        let before = commits(&store);
        let replies: Vec<Admission> = one_group(&store, &hooks)
            .into_iter()
            .enumerate()
            .map(|(i, answer)| {
                let (at, admission) = answer.unwrap();
                assert_eq!(at, i, "writes run in the order they were handed over");
                admission
            })
            .collect();
        assert_eq!(
            commits(&store),
            before + 1,
            "one group, one batch, one commit"
        );
        let (expected, stored) = sequential(&hooks);
        assert_eq!(replies, expected);
        assert_eq!(records(&store), stored);
        // The collisions happened: replays, coalescing, both sides of the cooldown.
        let first = Admission::Queued(BuildId(3));
        assert_eq!(replies[0], first);
        assert_eq!(replies[4], Admission::Replayed(first.reply()));
        assert_eq!(replies[5], Admission::Coalesced(BuildId(3)));
        assert!(replies.contains(&Admission::Rejected {
            retry_after_secs: 1
        }));
        assert!(replies.iter().any(|a| matches!(
            a,
            Admission::Deferred {
                run_at_ms: 11_000,
                ..
            }
        )));
    }

    #[test]
    fn many_threads_admitting_at_once_leave_what_sequential_admissions_leave() {
        let (_dir, store) = temp_store();
        let feeds = setup(&store);
        let hooks = colliding(&feeds);
        let order = Arc::new(AtomicUsize::new(0));
        let start = std::sync::Barrier::new(hooks.len());
        let answered: Vec<(usize, Admission)> = std::thread::scope(|s| {
            let threads: Vec<_> = hooks
                .iter()
                .map(|h| {
                    let (store, order, start) = (&store, order.clone(), &start);
                    s.spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap();
                        start.wait();
                        runtime.block_on(h.clone().submit(store, order)).unwrap()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        // Replay in the order the writer thread ran them, one by one.
        let mut ran: Vec<(usize, &Hook, Admission)> = answered
            .into_iter()
            .zip(&hooks)
            .map(|((at, admission), hook)| (at, hook, admission))
            .collect();
        ran.sort_by_key(|(at, ..)| *at);
        let in_order: Vec<Hook> = ran.iter().map(|(_, h, _)| (*h).clone()).collect();
        let replies: Vec<Admission> = ran.into_iter().map(|(.., a)| a).collect();
        let (expected, stored) = sequential(&in_order);
        assert_eq!(replies, expected);
        assert_eq!(records(&store), stored);
    }

    #[test]
    fn a_failed_admission_takes_back_its_writes_and_its_group_goes_on() {
        let (_dir, store) = temp_store();
        let feeds = setup(&store);
        let a = &feeds[0];
        // Three deliveries fill the window of three; the oldest is then damaged, so
        // the next delivery fails after staging its build, when it drops that record.
        let fill: Vec<Hook> = (0..3)
            .map(|i| Hook::new(a, "main", Some(&format!("f{i}")), 2_000 + i))
            .collect();
        for h in &fill {
            store.admit(&h.request(), Some(h.record())).unwrap();
        }
        let claimed = store
            .claim_next(&HashSet::new(), &Default::default(), 2_100)
            .unwrap();
        assert!(matches!(claimed, crate::store::Pick::Start(_)));
        store
            .deliveries
            .insert(keys::feed_u64("a", 1), &b"damaged"[..])
            .unwrap();
        let hooks = [
            Hook::new(a, "main", Some("fails"), 3_000),
            Hook::new(&feeds[2], "main", Some("next"), 3_001),
            Hook::new(a, "main", Some("fails"), 3_002),
        ];
        let results: Vec<_> = one_group(&store, &hooks)
            .into_iter()
            .map(|answer| answer.map(|(_, a)| a))
            .collect();
        assert!(
            matches!(results[0], Err(StoreError::Corrupt(_))),
            "{results:?}"
        );
        assert!(
            matches!(results[2], Err(StoreError::Corrupt(_))),
            "{results:?}"
        );
        // The failed admissions left nothing: the next build takes the id they staged.
        let next = store.build(BuildId(4)).unwrap().unwrap();
        assert_eq!(next.feed.as_str(), "d");
        assert_eq!(
            results[1].as_ref().unwrap(),
            &Admission::Deferred {
                build: BuildId(4),
                run_at_ms: 11_000
            }
        );
        assert!(store.delivery_by_id("a", "fails").unwrap().is_none());
        let counter = store.meta.get(keys::feed_text("\u{1}dseq", "a")).unwrap();
        assert_eq!(keys::read_u64(&counter.unwrap()).unwrap(), 3);
    }

    #[test]
    fn a_group_whose_batch_or_flush_fails_acknowledges_none_and_the_next_starts_clean() {
        for fault in [Fault::Apply, Fault::Flush] {
            let (dir, store) = temp_store();
            let feeds = setup(&store);
            let hooks = colliding(&feeds);
            let (before, marked) = (commits(&store), acked(&dir));
            assert_eq!(marked, before);
            store.committer.fail_next(fault);
            assert_all_refused(one_group(&store, &hooks), fault);
            assert_eq!(acked(&dir), marked, "{fault:?}: the mark moved");
            assert!(store.has_failed());
            let store = match fault {
                Fault::Apply => store,
                // A failed flush is for good: the next group is refused too, and only
                // a store opened afresh (as `heal` does) takes writes again.
                Fault::Flush => {
                    assert_all_refused(one_group(&store, &hooks), fault);
                    assert_eq!(acked(&dir), marked, "{fault:?}: the mark moved");
                    drop(store);
                    reopen(&dir)
                }
            };
            // The same webhooks again, as one group: they decide over what the failed
            // group left in sled (nothing when its batch was refused; all of it or
            // nothing, never acknowledged, when its flush was), exactly as sequential
            // admissions do.
            let left = store.delivery_by_id("a", "same").unwrap().is_some();
            assert!(
                !left || fault == Fault::Flush,
                "a refused batch left writes"
            );
            let replies: Vec<Admission> = one_group(&store, &hooks)
                .into_iter()
                .map(|answer| answer.unwrap().1)
                .collect();
            let earlier = if left { hooks.clone() } else { Vec::new() };
            let all: Vec<Hook> = earlier.iter().chain(&hooks).cloned().collect();
            let (expected, stored) = sequential(&all);
            assert_eq!(replies, expected[earlier.len()..], "{fault:?}");
            assert_eq!(records(&store), stored, "{fault:?}");
            assert_eq!(acked(&dir), commits(&store), "{fault:?}");
            assert!(commits(&store) > before, "{fault:?}");
            if fault == Fault::Apply {
                assert_eq!(commits(&store), before + 1);
                assert_eq!(replies[0], Admission::Queued(BuildId(3)));
            }
        }
    }

    fn assert_all_refused(answers: Vec<Result<(usize, Admission), StoreError>>, fault: Fault) {
        for (i, answer) in answers.into_iter().enumerate() {
            assert!(
                matches!(answer, Err(StoreError::Durability(_))),
                "{fault:?}: admission {i} of a failed group answered {answer:?}"
            );
        }
    }
}
