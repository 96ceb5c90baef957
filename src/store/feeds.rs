//! Feed records: create, read, change and remove feeds (and all they own).

use sled::transaction::Transactional;

use super::{abort, codec, keys, Store, StoreError};
use crate::feed::{Feed, FeedName};

impl Store {
    /// Adds a new feed; refuses a name that exists.
    pub fn add_feed(&self, feed: &Feed) -> Result<(), StoreError> {
        let value = codec::encode(feed)?;
        let name = feed.name.as_str();
        let prior = self
            .feeds
            .compare_and_swap(name, None as Option<&[u8]>, Some(value))?;
        if prior.is_err() {
            return Err(StoreError::FeedExists(name.to_owned()));
        }
        self.durable_blocking()
    }

    /// Reads one feed.
    pub fn feed(&self, name: &str) -> Result<Option<Feed>, StoreError> {
        self.feeds.get(name)?.map(|v| codec::decode(&v)).transpose()
    }

    /// Reads one feed that must exist.
    pub fn feed_required(&self, name: &str) -> Result<Feed, StoreError> {
        self.feed(name)?
            .ok_or_else(|| StoreError::NoFeed(name.to_owned()))
    }

    /// All feeds, by name.
    pub fn feeds(&self) -> Result<Vec<Feed>, StoreError> {
        self.feeds
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Replaces a feed's settings with `change(old)`.
    pub fn update_feed(
        &self,
        name: &str,
        change: impl Fn(Feed) -> Feed,
    ) -> Result<Feed, StoreError> {
        let updated = self.feeds.transaction(|tx| {
            let Some(old) = tx.get(name)? else {
                return abort(StoreError::NoFeed(name.to_owned()));
            };
            let old: Feed = codec::decode(&old).or_else(abort)?;
            let new = change(old);
            tx.insert(name, codec::encode(&new).or_else(abort)?)?;
            Ok(new)
        })?;
        self.durable_blocking()?;
        Ok(updated)
    }

    /// Removes a feed with its tokens, queued builds, history and deliveries.
    /// Returns the ids of the builds removed, so their logs can be deleted too.
    pub fn remove_feed(&self, name: &FeedName) -> Result<Vec<u64>, StoreError> {
        let name = name.as_str();
        if self.feeds.remove(name)?.is_none() {
            return Err(StoreError::NoFeed(name.to_owned()));
        }
        self.remove_tokens_of(name)?;
        self.remove_queued_of(name)?;
        let prefix = keys::feed_prefix(name);
        let mut removed = Vec::new();
        for key in self.feed_builds.scan_prefix(&prefix).keys() {
            let key = key?;
            let id = keys::read_u64(&key)?;
            (&self.builds, &self.feed_builds, &self.running).transaction(
                |(builds, feed_builds, running)| {
                    builds.remove(&id.to_be_bytes())?;
                    running.remove(&id.to_be_bytes())?;
                    feed_builds.remove(&*key)?;
                    Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(())
                },
            )?;
            removed.push(id);
        }
        for tree in [&self.deliveries, &self.delivery_ids, &self.pending] {
            for key in tree.scan_prefix(&prefix).keys() {
                tree.remove(key?)?;
            }
        }
        self.cooldowns.remove(name)?;
        self.durable_blocking()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use crate::feed::{CommandSpec, CooldownPolicy, Feed, FeedName};
    use crate::store::test_support::temp_store;
    use crate::store::StoreError;

    pub(crate) fn feed(name: &str) -> Feed {
        Feed {
            name: FeedName::parse(name).unwrap(),
            repo: "/srv/x".into(),
            branches: vec!["main".into()],
            command: CommandSpec::Shell("true".into()),
            cooldown_secs: 0,
            on_cooldown: CooldownPolicy::Defer,
            timeout_secs: 60,
            has_secret: false,
            paused: false,
            created_ms: 1,
        }
    }

    #[test]
    fn feed_lifecycle() {
        let (_dir, store) = temp_store();
        store.add_feed(&feed("web")).unwrap();
        assert!(matches!(
            store.add_feed(&feed("web")),
            Err(StoreError::FeedExists(_))
        ));
        store.add_feed(&feed("api")).unwrap();
        let names: Vec<_> = store
            .feeds()
            .unwrap()
            .into_iter()
            .map(|f| f.name.to_string())
            .collect();
        assert_eq!(names, ["api", "web"]);
        let edited = store
            .update_feed("web", |mut f| {
                f.paused = true;
                f
            })
            .unwrap();
        assert!(edited.paused);
        assert!(store.feed("web").unwrap().unwrap().paused);
        store.remove_feed(&FeedName::parse("web").unwrap()).unwrap();
        assert!(store.feed("web").unwrap().is_none());
        assert!(matches!(
            store.update_feed("web", |f| f),
            Err(StoreError::NoFeed(_))
        ));
    }
}
