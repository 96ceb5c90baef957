//! Build records: reading, listing, progress updates and per-feed retention.

use serde::{Deserialize, Serialize};

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
        change: impl Fn(&mut Build),
    ) -> Result<Build, StoreError> {
        let updated = self.builds.transaction(|tx| {
            let mut build = super::queue::get_build(tx, id)?;
            change(&mut build);
            super::queue::put_build(tx, &build)?;
            Ok(build)
        })?;
        Ok(updated)
    }

    /// Newest builds, of one feed or of all, newest first, without a full scan.
    pub fn builds(&self, feed: Option<&str>, limit: usize) -> Result<Vec<Build>, StoreError> {
        match feed {
            Some(feed) => self
                .feed_builds
                .scan_prefix(keys::feed_prefix(feed))
                .keys()
                .rev()
                .take(limit)
                .map(|k| self.build_required(BuildId(keys::read_u64(&k?)?)))
                .collect(),
            None => self
                .builds
                .iter()
                .values()
                .rev()
                .take(limit)
                .map(|v| codec::decode(&v?))
                .collect(),
        }
    }

    /// Drops a feed's oldest finished builds beyond `keep`; returns their ids so the
    /// caller can delete their logs.
    pub fn prune_builds(&self, feed: &str, keep: usize) -> Result<Vec<BuildId>, StoreError> {
        let mut removed = Vec::new();
        let ids: Vec<u64> = self
            .feed_builds
            .scan_prefix(keys::feed_prefix(feed))
            .keys()
            .rev()
            .skip(keep)
            .map(|k| k.map_err(StoreError::from).and_then(|k| keys::read_u64(&k)))
            .collect::<Result<_, _>>()?;
        for id in ids {
            let id = BuildId(id);
            if self.build(id)?.is_some_and(|b| !b.status.is_final()) {
                continue;
            }
            self.builds.remove(id.0.to_be_bytes())?;
            self.feed_builds.remove(keys::feed_u64(feed, id.0))?;
            removed.push(id);
        }
        Ok(removed)
    }

    /// How many build records exist (status output).
    pub fn build_count(&self) -> usize {
        self.builds.len()
    }
}
