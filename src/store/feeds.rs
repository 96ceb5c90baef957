//! Feed records: create, read, change and remove feeds (and all they own).

use super::space::Writes;
use super::{codec, keys, Store, StoreError};
use crate::feed::{CommandSpec, CooldownPolicy, Feed, FeedName};

/// Feed records are written in format 4 (`secret_pending` added); format 3 records
/// (`declared` and `retired_ms` added) are read with no rotation pending, format 2
/// records (`badge` added) also as made with the CLI, format 1 records (the common
/// value version) also as badge off.
const FEED_FORMAT: u8 = 4;
/// The format that added `declared` and `retired_ms`.
const FEED_FORMAT_DECLARED: u8 = 3;
/// The format that added `badge`.
const FEED_FORMAT_BADGE: u8 = 2;

fn encode_feed(feed: &Feed) -> Result<Vec<u8>, StoreError> {
    codec::encode_as(FEED_FORMAT, feed)
}

fn decode_feed(bytes: &[u8]) -> Result<Feed, StoreError> {
    let v2 = |v2: FeedV2| FeedV3 {
        v2,
        declared: false,
        retired_ms: None,
    };
    match bytes.first() {
        Some(&FEED_FORMAT) => codec::decode_as(FEED_FORMAT, bytes),
        Some(&FEED_FORMAT_DECLARED) => {
            codec::decode_as::<FeedV3>(FEED_FORMAT_DECLARED, bytes).map(Feed::from)
        }
        Some(&FEED_FORMAT_BADGE) => {
            codec::decode_as::<FeedV2>(FEED_FORMAT_BADGE, bytes).map(|v| Feed::from(v2(v)))
        }
        _ => codec::decode::<FeedV1>(bytes).map(|v1| Feed::from(v2(FeedV2 { v1, badge: false }))),
    }
}

/// A feed as format 3 stored it: format 2's fields, then `declared` and `retired_ms`
/// (bincode writes fields in order, so the nested struct reads the same bytes).
#[derive(serde::Serialize, serde::Deserialize)]
struct FeedV3 {
    v2: FeedV2,
    declared: bool,
    retired_ms: Option<i64>,
}

/// A feed as format 2 stored it: format 1's fields, then `badge`.
#[derive(serde::Serialize, serde::Deserialize)]
struct FeedV2 {
    v1: FeedV1,
    badge: bool,
}

/// A feed as format 1 stored it (before `badge`).
#[derive(serde::Serialize, serde::Deserialize)]
struct FeedV1 {
    name: FeedName,
    repo: String,
    branches: Vec<String>,
    command: CommandSpec,
    cooldown_secs: u64,
    on_cooldown: CooldownPolicy,
    timeout_secs: u64,
    has_secret: bool,
    paused: bool,
    created_ms: i64,
}

impl From<FeedV3> for Feed {
    fn from(old: FeedV3) -> Self {
        let FeedV2 { v1: v, badge } = old.v2;
        Self {
            name: v.name,
            repo: v.repo,
            branches: v.branches,
            command: v.command,
            cooldown_secs: v.cooldown_secs,
            on_cooldown: v.on_cooldown,
            timeout_secs: v.timeout_secs,
            has_secret: v.has_secret,
            paused: v.paused,
            created_ms: v.created_ms,
            badge,
            declared: old.declared,
            retired_ms: old.retired_ms,
            secret_pending: false,
        }
    }
}

impl Store {
    /// Adds a new feed; refuses a name that exists.
    pub fn add_feed(&self, feed: &Feed) -> Result<(), StoreError> {
        let name = feed.name.as_str();
        {
            let _guard = self.lock();
            if self.feeds.get(name)?.is_some() {
                return Err(StoreError::FeedExists(name.to_owned()));
            }
            self.feeds.insert(name, encode_feed(feed)?)?;
        }
        self.durable_blocking()
    }

    /// Reads one feed.
    pub(crate) fn feed(&self, name: &str) -> Result<Option<Feed>, StoreError> {
        self.feeds.get(name)?.map(|v| decode_feed(&v)).transpose()
    }

    /// Reads one feed that must exist.
    pub(crate) fn feed_required(&self, name: &str) -> Result<Feed, StoreError> {
        self.feed(name)?
            .ok_or_else(|| StoreError::NoFeed(name.to_owned()))
    }

    /// All feeds, by name.
    pub(crate) fn feeds(&self) -> Result<Vec<Feed>, StoreError> {
        self.feeds
            .iter()
            .map(|item| decode_feed(&item?.1))
            .collect()
    }

    /// Replaces a feed's settings with `change(old)`.
    pub(crate) fn update_feed(
        &self,
        name: &str,
        change: impl FnOnce(Feed) -> Feed,
    ) -> Result<Feed, StoreError> {
        let updated = {
            let _guard = self.lock();
            let new = change(self.feed_required(name)?);
            self.feeds.insert(name, encode_feed(&new)?)?;
            new
        };
        self.durable_blocking()?;
        Ok(updated)
    }

    /// Removes a feed with its tokens, queued builds, history and deliveries, in one
    /// atomic batch. Returns the ids of the builds removed, so their logs can go too.
    pub(crate) fn remove_feed(&self, name: &FeedName) -> Result<Vec<u64>, StoreError> {
        let name = name.as_str();
        let removed = {
            let _guard = self.lock();
            self.feed_required(name)?;
            let mut w = Writes::default();
            w.remove(&self.feeds, name);
            self.remove_tokens_writes(name, &mut w)?;
            self.remove_queued_of(name, &mut w)?;
            let removed = self.remove_builds_of(name, &mut w)?;
            let prefix = keys::feed_prefix(name);
            for space in [&self.deliveries, &self.delivery_ids, &self.pending] {
                for item in space.scan_prefix(&prefix) {
                    w.remove(space, item?.0);
                }
            }
            w.remove(&self.cooldowns, name);
            self.apply(w)?;
            removed
        };
        self.durable_blocking()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use crate::feed::{Feed, FeedName};
    use crate::store::test_support::temp_store;
    use crate::store::StoreError;

    fn feed(name: &str) -> Feed {
        crate::feed::sample(name)
    }

    /// The format 1 record of a feed.
    fn v1_of(old: &Feed) -> super::FeedV1 {
        super::FeedV1 {
            name: old.name.clone(),
            repo: old.repo.clone(),
            branches: old.branches.clone(),
            command: old.command.clone(),
            cooldown_secs: old.cooldown_secs,
            on_cooldown: old.on_cooldown,
            timeout_secs: old.timeout_secs,
            has_secret: old.has_secret,
            paused: old.paused,
            created_ms: old.created_ms,
        }
    }

    #[test]
    fn format_1_feeds_read_with_badge_off() {
        let (_dir, store) = temp_store();
        let old = feed("web");
        let v1 = v1_of(&old);
        let bytes = crate::store::codec::encode(&v1).unwrap();
        store.feeds.insert("web", bytes).unwrap();
        assert_eq!(store.feed("web").unwrap().unwrap(), old);
        let badged = store
            .update_feed("web", |f| Feed { badge: true, ..f })
            .unwrap();
        assert!(badged.badge);
        assert!(store.feed("web").unwrap().unwrap().badge);
        assert_eq!(
            store.feeds.get("web").unwrap().unwrap()[0],
            super::FEED_FORMAT
        );
    }

    #[test]
    fn format_2_feeds_read_as_made_with_the_cli() {
        let (_dir, store) = temp_store();
        let old = Feed {
            badge: true,
            ..feed("web")
        };
        let v1 = v1_of(&old);
        let v2 = super::FeedV2 { v1, badge: true };
        let bytes = crate::store::codec::encode_as(super::FEED_FORMAT_BADGE, &v2).unwrap();
        store.feeds.insert("web", bytes).unwrap();
        assert_eq!(store.feed("web").unwrap().unwrap(), old);
        let retired = store
            .update_feed("web", |f| Feed {
                declared: true,
                retired_ms: Some(5),
                ..f
            })
            .unwrap();
        assert_eq!(store.feed("web").unwrap().unwrap(), retired);
    }

    #[test]
    fn format_3_feeds_read_with_no_rotation_pending() {
        let (_dir, store) = temp_store();
        let old = Feed {
            badge: true,
            declared: true,
            retired_ms: Some(9),
            ..feed("web")
        };
        let v3 = super::FeedV3 {
            v2: super::FeedV2 {
                v1: v1_of(&old),
                badge: true,
            },
            declared: true,
            retired_ms: Some(9),
        };
        let bytes = crate::store::codec::encode_as(super::FEED_FORMAT_DECLARED, &v3).unwrap();
        store.feeds.insert("web", bytes).unwrap();
        assert_eq!(store.feed("web").unwrap().unwrap(), old);
        let rotating = store
            .update_feed("web", |f| Feed {
                secret_pending: true,
                ..f
            })
            .unwrap();
        assert_eq!(store.feed("web").unwrap().unwrap(), rotating);
        assert_eq!(
            store.feeds.get("web").unwrap().unwrap()[0],
            super::FEED_FORMAT
        );
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
        let token = |n: u8| crate::token::TokenId::from_bytes(&[n; 8]).unwrap();
        let record = |feed: &str| crate::store::TokenRecord {
            feed: FeedName::parse(feed).unwrap(),
            label: "l".into(),
            created_ms: 0,
            revoked_ms: None,
        };
        store.add_token(token(1), &record("web")).unwrap();
        store.add_token(token(2), &record("api")).unwrap();
        store.add_token(token(3), &record("web")).unwrap();
        assert!(
            store.remove_token("api", token(3)).is_err(),
            "another feed's token"
        );
        store.remove_token("web", token(3)).unwrap();
        assert!(store.token(token(3)).unwrap().is_none());
        assert_eq!(store.tokens_of("web").unwrap().len(), 1);
        store.remove_feed(&FeedName::parse("web").unwrap()).unwrap();
        assert!(store.tokens_of("web").unwrap().is_empty());
        assert!(
            store.token(token(1)).unwrap().is_none(),
            "the removed feed's token is gone"
        );
        assert_eq!(
            store.tokens_of("api").unwrap()[0].0,
            token(2),
            "other feeds keep theirs"
        );
        assert!(store.feed("web").unwrap().is_none());
        assert!(matches!(
            store.update_feed("web", |f| f),
            Err(StoreError::NoFeed(_))
        ));
    }
}
