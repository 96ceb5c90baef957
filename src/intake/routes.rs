//! The routing table: which hook token opens which feed opens which feed, with each feed's settings and
//! webhook secret, held in memory so the webhook path reads no disk before admission.
//!
//! The store stays the source of truth; the table is rebuilt from it (feeds and
//! tokens only, a few records per feed) at start-up and after every admin change.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::feed::{Feed, FeedName};
use crate::secret::Secret;
use crate::store::{Store, StoreError};
use crate::token::{Presented, TokenId};

/// What a hook request needs to know about its feed.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The feed's settings.
    pub(crate) feed: Feed,
    /// Its webhook secret, when it has one and the file is readable.
    pub(crate) secret: Option<Secret>,
    /// The secret a pending rotation moves to, accepted next to `secret`.
    pub(crate) pending: Option<Secret>,
}

/// One consistent view of tokens and feeds.
#[derive(Debug, Default)]
struct Snapshot {
    /// Active (not revoked) tokens.
    tokens: HashMap<TokenId, FeedName>,
    /// Every feed, by name.
    feeds: HashMap<FeedName, Arc<Entry>>,
}

/// Shared, swappable view; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    current: Arc<RwLock<Arc<Snapshot>>>,
}

impl Routes {
    /// Rebuilds the view from the store and the secret files (blocking I/O).
    pub(crate) fn reload(&self, store: &Store, data_dir: &Path) -> Result<(), StoreError> {
        let mut snapshot = Snapshot::default();
        for feed in store.feeds()? {
            let secret = match feed.has_secret {
                true => crate::secret::load(data_dir, &feed.name).unwrap_or_else(|e| {
                    tracing::error!(feed = %feed.name, error = %e, "cannot read the webhook secret; deliveries will be refused");
                    None
                }),
                false => None,
            };
            let pending = match feed.secret_pending {
                true => crate::secret::load_pending(data_dir, &feed.name).unwrap_or_else(|e| {
                    tracing::error!(feed = %feed.name, error = %e, "cannot read the pending webhook secret; only the current one is accepted");
                    None
                }),
                false => None,
            };
            // A retired feed keeps its tokens for when it is declared again; until
            // then they open nothing.
            for (id, record) in store.tokens_of(feed.name.as_str())? {
                if record.revoked_ms.is_none() && !feed.retired() {
                    snapshot.tokens.insert(id, feed.name.clone());
                }
            }
            snapshot.feeds.insert(
                feed.name.clone(),
                Arc::new(Entry {
                    feed,
                    secret,
                    pending,
                }),
            );
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        Ok(())
    }

    /// The feed a presented token opens; `None` for unknown, revoked or forged tokens.
    /// The MAC was already checked in constant time; the map lookup is on the public id.
    pub(crate) fn lookup(&self, presented: Presented) -> Option<Arc<Entry>> {
        let snapshot = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let name = snapshot.tokens.get(&presented.id)?;
        let entry = snapshot.feeds.get(name)?;
        presented.mac_ok.then(|| entry.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenRecord;
    use crate::token::ServerKey;

    #[test]
    fn only_active_genuine_tokens_open_their_feed() {
        let (dir, store) = crate::store::test_support::temp_store();
        let key = ServerKey::load(dir.path(), false).unwrap();
        let feed = crate::feed::sample("web");
        store.add_feed(&feed).unwrap();
        let (live, live_token) = key.mint().unwrap();
        let (gone, gone_token) = key.mint().unwrap();
        for id in [live, gone] {
            let record = TokenRecord {
                feed: feed.name.clone(),
                label: "x".into(),
                created_ms: 0,
                revoked_ms: None,
            };
            store.add_token(id, &record).unwrap();
        }
        store.revoke_token("web", gone, 1).unwrap();
        let routes = Routes::default();
        assert!(
            routes.lookup(key.check(live_token.expose())).is_none(),
            "empty before the first load"
        );
        routes.reload(&store, dir.path()).unwrap();
        let entry = routes
            .lookup(key.check(live_token.expose()))
            .expect("live token");
        assert_eq!(entry.feed.name.as_str(), "web");
        assert!(
            routes.lookup(key.check(gone_token.expose())).is_none(),
            "revoked"
        );
        let other = tempfile::tempdir().unwrap();
        let forged = ServerKey::load(other.path(), false)
            .unwrap()
            .token_for(live);
        assert!(
            routes.lookup(key.check(forged.expose())).is_none(),
            "right id, wrong MAC"
        );
    }
}
