//! Build records: where they live, reading, listing, progress updates and retention.
//!
//! sled keeps a page-table entry, in memory, for every tree node, and a leaf node holds
//! at most 16 keys, so one key per build would make start-up time and memory grow with
//! the history. So builds are packed: a build has its own key in `builds` while it can
//! change; once every build of its range of [`SHELF_SPAN`] ids is final, the range
//! moves, in the batch that settles it, onto one shelf in `shelves` (one write per
//! range, not one per build). Each feed's ids are kept in blocks of up to
//! [`BLOCK_IDS`] in `feed_builds`. Readers look in `builds` first, then on the shelf:
//! a build only ever moves that way, so it is never missed while it moves.

use sled::IVec;

use super::space::Writes;
use super::{codec, keys, Store, StoreError};
use crate::build::{Build, BuildId};

/// Build ids per shelf: a shelf of finished builds is a few KiB.
const SHELF_SPAN: u64 = 16;
/// Ids per block of a feed's index.
pub(super) const BLOCK_IDS: usize = 64;

/// The shelf key holding build `id` once it is finished.
fn shelf_key(id: BuildId) -> [u8; 8] {
    (id.0 / SHELF_SPAN).to_be_bytes()
}

/// Puts a build on a shelf, keeping it in id order.
fn shelf_put(shelf: &mut Vec<Build>, build: Build) {
    match shelf.binary_search_by_key(&build.id, |b| b.id) {
        Ok(at) => shelf[at] = build,
        Err(at) => shelf.insert(at, build),
    }
}

fn decode_shelf(raw: Option<IVec>) -> Result<Vec<Build>, StoreError> {
    raw.map_or(Ok(Vec::new()), |v| codec::decode(&v))
}

fn decode_block(raw: &[u8]) -> Result<Vec<u64>, StoreError> {
    codec::decode(raw)
}

impl Store {
    /// Reads one build.
    pub(crate) fn build(&self, id: BuildId) -> Result<Option<Build>, StoreError> {
        self.build_staged(id, &Writes::default())
    }

    /// [`Self::build`] as the staged writes `w` leave the store.
    pub(super) fn build_staged(
        &self,
        id: BuildId,
        w: &Writes,
    ) -> Result<Option<Build>, StoreError> {
        if let Some(live) = w.get(&self.builds, id.0.to_be_bytes())? {
            return codec::decode(&live).map(Some);
        }
        let shelf = decode_shelf(w.get(&self.shelves, shelf_key(id))?)?;
        Ok(shelf.into_iter().find(|b| b.id == id))
    }

    /// Reads one build that must exist.
    pub(crate) fn build_required(&self, id: BuildId) -> Result<Build, StoreError> {
        self.build(id)?.ok_or(StoreError::NoBuild(id.0))
    }

    /// Changes a build record (commit resolved, pgid known, …); a change that changes
    /// nothing writes nothing (a pgid that arrives after a fast build ended).
    pub fn update_build(
        &self,
        id: BuildId,
        change: impl FnOnce(&mut Build),
    ) -> Result<Build, StoreError> {
        let _guard = self.lock();
        let mut build = self.build_required(id)?;
        let before = build.clone();
        change(&mut build);
        if build == before {
            return Ok(build);
        }
        let mut w = Writes::default();
        self.put_build(&build, &mut w)?;
        self.apply(w)?;
        Ok(build)
    }

    /// Newest builds, of one feed or of all, newest first, without a full scan.
    pub(crate) fn builds(
        &self,
        feed: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Build>, StoreError> {
        match feed {
            Some(feed) => self
                .feed_build_ids(feed)
                .rev()
                .take(limit)
                .map(|id| self.build_required(BuildId(id?)))
                .collect(),
            None => self.newest_builds(limit),
        }
    }

    /// A feed's newest build that `wanted` accepts, read from the newest end of the
    /// feed's index (no listing, no scan): what a badge shows.
    pub(crate) fn newest_build_where(
        &self,
        feed: &str,
        wanted: impl Fn(&Build) -> bool,
    ) -> Result<Option<Build>, StoreError> {
        for id in self.feed_build_ids(feed).rev() {
            let build = self.build_required(BuildId(id?))?;
            if wanted(&build) {
                return Ok(Some(build));
            }
        }
        Ok(None)
    }

    /// Newest first across feeds: the live builds and the shelves are each in id order,
    /// so the two are merged as they are read.
    fn newest_builds(&self, limit: usize) -> Result<Vec<Build>, StoreError> {
        let mut live = self
            .builds
            .iter()
            .rev()
            .map(|item| codec::decode::<Build>(&item?.1))
            .peekable();
        let mut shelved = self
            .shelves
            .iter()
            .rev()
            .map(|item| decode_shelf(Some(item?.1)))
            .flat_map(|shelf| match shelf {
                Ok(builds) => builds.into_iter().rev().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
            .peekable();
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit {
            let take_live = match (live.peek(), shelved.peek()) {
                (Some(Ok(a)), Some(Ok(b))) => a.id > b.id,
                (Some(_), _) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_live {
                live.next()
            } else {
                shelved.next()
            };
            if let Some(build) = next {
                out.push(build?);
            }
        }
        Ok(out)
    }

    /// A feed's build ids, oldest first.
    fn feed_build_ids(
        &self,
        feed: &str,
    ) -> impl DoubleEndedIterator<Item = Result<u64, StoreError>> {
        self.feed_builds
            .scan_prefix(keys::feed_prefix(feed))
            .flat_map(|item| match item.and_then(|(_, v)| decode_block(&v)) {
                Ok(ids) => ids.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
    }

    /// Drops a feed's oldest finished builds beyond `keep`; returns their ids so the
    /// caller can delete their logs.
    pub fn prune_builds(&self, feed: &str, keep: usize) -> Result<Vec<BuildId>, StoreError> {
        let _guard = self.lock();
        let blocks = self
            .feed_builds
            .scan_prefix(keys::feed_prefix(feed))
            .map(|item| item.and_then(|(key, raw)| Ok((key, decode_block(&raw)?))))
            .collect::<Result<Vec<_>, _>>()?;
        // Ids are oldest first: the first `cut` are beyond the newest `keep`.
        let total: usize = blocks.iter().map(|(_, ids)| ids.len()).sum();
        let cut = total.saturating_sub(keep);
        let mut seen = 0;
        let mut w = Writes::default();
        let mut removed = Vec::new();
        for (key, ids) in blocks {
            if seen >= cut {
                break;
            }
            let mut kept = Vec::with_capacity(ids.len());
            for &id in &ids {
                let old = seen < cut;
                seen += 1;
                if old && self.drop_if_final(BuildId(id), &mut w)? {
                    removed.push(BuildId(id));
                } else {
                    kept.push(id);
                }
            }
            if kept.len() != ids.len() {
                self.put_block(&key, &kept, &mut w)?;
            }
        }
        self.apply(w)?;
        Ok(removed)
    }

    /// Queues the removal of every build of a feed (feed removal); returns their ids.
    pub(super) fn remove_builds_of(
        &self,
        feed: &str,
        w: &mut Writes,
    ) -> Result<Vec<u64>, StoreError> {
        let mut removed = Vec::new();
        for item in self.feed_builds.scan_prefix(keys::feed_prefix(feed)) {
            let (key, raw) = item?;
            for id in decode_block(&raw)? {
                w.remove(&self.builds, id.to_be_bytes());
                w.remove(&self.running, id.to_be_bytes());
                self.unshelve(BuildId(id), w)?;
                removed.push(id);
            }
            w.remove(&self.feed_builds, key);
        }
        Ok(removed)
    }

    /// Queues the write of a build record, and shelves its range if that settles it.
    pub(super) fn put_build(&self, build: &Build, w: &mut Writes) -> Result<(), StoreError> {
        let live_key = build.id.0.to_be_bytes();
        if build.status.is_final() && w.get(&self.builds, live_key)?.is_none() {
            // Shelved already: a late change to a finished build.
            return self.edit_shelf(build.id, w, |shelf| {
                shelf_put(shelf, build.clone());
                true
            });
        }
        w.insert(&self.builds, live_key, codec::encode(build)?);
        if build.status.is_final() {
            self.shelve_if_settled(build.id, w)?;
        }
        Ok(())
    }

    /// Moves the builds of `id`'s range onto their shelf once every id of the range
    /// has been handed out and every build in it is final.
    fn shelve_if_settled(&self, id: BuildId, w: &mut Writes) -> Result<(), StoreError> {
        let first = id.0 / SHELF_SPAN * SHELF_SPAN;
        let end = first + SHELF_SPAN;
        if self.next_build_staged(w)? < end {
            return Ok(());
        }
        let mut settled = Vec::new();
        for n in first..end {
            if let Some(raw) = w.get(&self.builds, n.to_be_bytes())? {
                let build: Build = codec::decode(&raw)?;
                if !build.status.is_final() {
                    return Ok(());
                }
                settled.push(build);
            }
        }
        for build in &settled {
            w.remove(&self.builds, build.id.0.to_be_bytes());
        }
        self.edit_shelf(id, w, |shelf| {
            for build in settled {
                shelf_put(shelf, build);
            }
            true
        })
    }

    /// Queues the removal of a build unless it is still queued or running (those are
    /// never pruned); says whether it goes.
    fn drop_if_final(&self, id: BuildId, w: &mut Writes) -> Result<bool, StoreError> {
        match self.builds.get(id.0.to_be_bytes())? {
            Some(raw) if !codec::decode::<Build>(&raw)?.status.is_final() => Ok(false),
            Some(_) => {
                w.remove(&self.builds, id.0.to_be_bytes());
                Ok(true)
            }
            None => self.unshelve(id, w).map(|()| true),
        }
    }

    /// Queues the removal of a finished build from its shelf, if it is there.
    fn unshelve(&self, id: BuildId, w: &mut Writes) -> Result<(), StoreError> {
        self.edit_shelf(id, w, |shelf| {
            let before = shelf.len();
            shelf.retain(|b| b.id != id);
            shelf.len() != before
        })
    }

    /// Reads the shelf of `id` as this batch leaves it, lets `edit` change it (it says
    /// whether it did) and stages the result.
    fn edit_shelf(
        &self,
        id: BuildId,
        w: &mut Writes,
        edit: impl FnOnce(&mut Vec<Build>) -> bool,
    ) -> Result<(), StoreError> {
        let key = shelf_key(id);
        let mut shelf = decode_shelf(w.get(&self.shelves, key)?)?;
        if !edit(&mut shelf) {
            return Ok(());
        }
        if shelf.is_empty() {
            w.remove(&self.shelves, key);
        } else {
            w.insert(&self.shelves, key, codec::encode(&shelf)?);
        }
        Ok(())
    }

    /// Queues the addition of a new build id to its feed's index: appended to the
    /// newest block, or the first id of a new one.
    pub(super) fn index_build(
        &self,
        feed: &str,
        id: BuildId,
        w: &mut Writes,
    ) -> Result<(), StoreError> {
        let newest = w.last_key(&self.feed_builds, &keys::feed_prefix(feed))?;
        if let Some(key) = newest {
            if let Some(raw) = w.get(&self.feed_builds, &key)? {
                let mut ids = decode_block(&raw)?;
                if ids.len() < BLOCK_IDS {
                    ids.push(id.0);
                    return self.put_block(&key, &ids, w);
                }
            }
        }
        self.put_block(&keys::feed_u64(feed, id.0), &[id.0], w)
    }

    /// Stages an index block (blocks are keyed `feed \0 first id`; an empty one goes).
    fn put_block(&self, key: &[u8], ids: &[u64], w: &mut Writes) -> Result<(), StoreError> {
        if ids.is_empty() {
            w.remove(&self.feed_builds, key);
        } else {
            w.insert(&self.feed_builds, key, codec::encode(&ids)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::build::{BuildStatus, Trigger, TriggerKind};
    use crate::clock::now_ms;
    use crate::feed::Feed;
    use crate::store::queue::{AdmitRequest, Pick};
    use crate::store::test_support::temp_store;

    fn admit(store: &Store, feed: &Feed, branch: &str) -> BuildId {
        let req = AdmitRequest {
            feed,
            git_ref: format!("refs/heads/{branch}"),
            branch: branch.into(),
            trigger: Trigger {
                accepted_ms: 0,
                kind: TriggerKind::Manual,
                provider: "manual".into(),
                event: "trigger".into(),
                delivery_id: None,
                commit: None,
            },
            force: true,
            now_ms: now_ms(),
        };
        match store.admit(&req, None).unwrap() {
            crate::store::Admission::Queued(id) => id,
            other => panic!("{other:?}"),
        }
    }

    /// Queues, starts and finishes `n` builds of `feed`; returns their ids.
    fn run(store: &Store, feed: &Feed, n: usize) -> Vec<BuildId> {
        (0..n)
            .map(|_| {
                let id = admit(store, feed, "main");
                let Pick::Start(b) = store
                    .claim_next(&HashSet::new(), &Default::default(), now_ms())
                    .unwrap()
                else {
                    panic!("nothing to start")
                };
                assert_eq!(b.id, id);
                store.finish(id, BuildStatus::Succeeded, now_ms()).unwrap();
                id
            })
            .collect()
    }

    /// Queues and starts a build of `feed` that stays running.
    fn start(store: &Store, feed: &Feed) -> BuildId {
        let id = admit(store, feed, "dev");
        assert!(
            matches!(store.claim_next(&HashSet::new(), &Default::default(), now_ms()).unwrap(), Pick::Start(b) if b.id == id)
        );
        id
    }

    fn ids(builds: &[Build]) -> Vec<u64> {
        builds.iter().map(|b| b.id.0).collect()
    }

    fn feed(store: &Store, name: &str) -> Feed {
        let feed = Feed {
            cooldown_secs: 0,
            ..crate::feed::sample(name)
        };
        store.add_feed(&feed).unwrap();
        feed
    }

    #[test]
    fn finished_builds_are_shelved_and_listed_with_the_live_ones() {
        let (_d, store) = temp_store();
        let (a, b) = (feed(&store, "a"), feed(&store, "b"));
        run(&store, &a, 20);
        run(&store, &b, 20);
        let running = start(&store, &a);
        run(&store, &b, 5);
        // Ids 1-31 are settled and shelved (0-15, 16-31); 32-46 wait for id 47.
        assert_eq!(store.shelves.count(), 2);
        assert_eq!(store.builds.count(), 15);
        assert_eq!(
            store.build_required(running).unwrap().status,
            BuildStatus::Running
        );
        assert_eq!(store.build_required(BuildId(7)).unwrap().feed.as_str(), "a");
        assert!(store.build(BuildId(99)).unwrap().is_none());
        let newest = store.builds(None, 8).unwrap();
        assert_eq!(ids(&newest), [46, 45, 44, 43, 42, 41, 40, 39]);
        assert_eq!(ids(&store.builds(None, 1000).unwrap()).len(), 46);
        assert_eq!(ids(&store.builds(Some("a"), 3).unwrap()), [41, 20, 19]);
        assert_eq!(ids(&store.builds(Some("b"), 100).unwrap()).len(), 25);
    }

    #[test]
    fn retention_keeps_the_newest_and_never_a_running_build() {
        let (_d, store) = temp_store();
        let a = feed(&store, "a");
        let first = start(&store, &a);
        let finished = run(&store, &a, 150);
        let removed = store.prune_builds("a", 10).unwrap();
        // 151 ids: the oldest 141 are candidates, the running one among them stays.
        assert_eq!(removed.len(), 140);
        assert_eq!(removed.first(), finished.first());
        let listed = store.builds(Some("a"), 1000).unwrap();
        assert_eq!(listed.len(), 11);
        assert_eq!(listed.last().map(|b| b.id), Some(first));
        assert!(store.build(finished[0]).unwrap().is_none());
        assert!(store.build(finished[139]).unwrap().is_none());
        assert!(store.build(finished[140]).unwrap().is_some());
        // Emptied shelves and blocks are gone, not left as empty values: 142-143 are
        // on the shelf of 128-143, 144-151 wait for their range to fill, and the
        // running build keeps 2-15 off a shelf (those were pruned where they were).
        assert_eq!(store.shelves.count(), 1);
        assert_eq!(store.builds.count(), 9);
        assert_eq!(store.feed_builds.count(), 2);
        assert!(store.prune_builds("a", 10).unwrap().is_empty());
    }

    #[test]
    fn a_feed_index_spans_blocks_in_order() {
        let (_d, store) = temp_store();
        let a = feed(&store, "a");
        let ran = run(&store, &a, BLOCK_IDS * 2 + 3);
        assert_eq!(store.feed_builds.count(), 3);
        let listed = store.builds(Some("a"), usize::MAX).unwrap();
        let mut expected: Vec<u64> = ran.iter().map(|id| id.0).collect();
        expected.reverse();
        assert_eq!(ids(&listed), expected);
    }

    #[test]
    fn removing_a_feed_removes_its_builds_only() {
        let (_d, store) = temp_store();
        let (a, b) = (feed(&store, "a"), feed(&store, "b"));
        run(&store, &a, 30);
        run(&store, &b, 3);
        admit(&store, &a, "dev");
        let removed = store.remove_feed(&a.name).unwrap();
        assert_eq!(removed.len(), 31);
        assert_eq!(ids(&store.builds(None, 100).unwrap()), [33, 32, 31]);
        assert!(store.build(BuildId(5)).unwrap().is_none());
        assert!(store.build(BuildId(34)).unwrap().is_none());
    }
}
