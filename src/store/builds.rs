//! Build records: reading, listing, progress updates and per-feed retention.

use serde::{Deserialize, Serialize};

use super::space::Writes;
use super::{codec, keys, Store, StoreError};
use crate::build::{Build, BuildId};

/// A page of builds, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildPage {
    /// The builds.
    pub builds: Vec<Build>,
}

impl Store {
    /// Reads one build.
    pub fn build(&self, id: BuildId) -> Result<Option<Build>, StoreError> {
        self.builds
            .get(id.0.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Reads one build that must exist.
    pub fn build_required(&self, id: BuildId) -> Result<Build, StoreError> {
        self.build(id)?.ok_or(StoreError::NoBuild(id.0))
    }

    /// Changes a build record (commit resolved, pgid known, …).
    pub fn update_build(
        &self,
        id: BuildId,
        change: impl FnOnce(&mut Build),
    ) -> Result<Build, StoreError> {
        let _guard = self.lock();
        let mut build = self.build_required(id)?;
        change(&mut build);
        self.builds
            .insert(id.0.to_be_bytes(), codec::encode(&build)?)?;
        Ok(build)
    }

    /// Newest builds, of one feed or of all, newest first, without a full scan.
    pub fn builds(&self, feed: Option<&str>, limit: usize) -> Result<Vec<Build>, StoreError> {
        match feed {
            Some(feed) => self
                .feed_builds
                .scan_prefix(keys::feed_prefix(feed))
                .rev()
                .take(limit)
                .map(|item| self.build_required(BuildId(keys::read_u64(&item?.0)?)))
                .collect(),
            None => self
                .builds
                .iter()
                .rev()
                .take(limit)
                .map(|item| codec::decode(&item?.1))
                .collect(),
        }
    }

    /// Drops a feed's oldest finished builds beyond `keep`; returns their ids so the
    /// caller can delete their logs.
    pub fn prune_builds(&self, feed: &str, keep: usize) -> Result<Vec<BuildId>, StoreError> {
        let _guard = self.lock();
        let ids: Vec<u64> = self
            .feed_builds
            .scan_prefix(keys::feed_prefix(feed))
            .rev()
            .skip(keep)
            .map(|item| keys::read_u64(&item?.0))
            .collect::<Result<_, _>>()?;
        let mut w = Writes::default();
        let mut removed = Vec::new();
        for id in ids.into_iter().map(BuildId) {
            if self.build(id)?.is_some_and(|b| !b.status.is_final()) {
                continue;
            }
            w.remove(&self.builds, id.0.to_be_bytes());
            w.remove(&self.feed_builds, keys::feed_u64(feed, id.0));
            removed.push(id);
        }
        self.apply(w)?;
        Ok(removed)
    }
}
