//! Hook token records: which feed a token id belongs to, its label, whether revoked.
//!
//! Only the public token id is stored; the secret half of a token is a MAC under the
//! server key (see `crate::token`), so a copy of the database cannot forge one.

use serde::{Deserialize, Serialize};

use super::space::Writes;
use super::{codec, keys, Store, StoreError};
use crate::feed::FeedName;
use crate::token::TokenId;

/// What the store knows about one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    /// The feed the token triggers.
    pub(crate) feed: FeedName,
    /// The operator's label (one per sending host).
    pub(crate) label: String,
    /// Creation time, Unix ms.
    pub(crate) created_ms: i64,
    /// When it was revoked; revoked tokens answer 404.
    pub(crate) revoked_ms: Option<i64>,
}

impl Store {
    /// Records a new token for a feed.
    pub(crate) fn add_token(&self, id: TokenId, record: &TokenRecord) -> Result<(), StoreError> {
        {
            let _guard = self.lock();
            let feed = record.feed.as_str();
            self.feed_required(feed)?;
            let mut w = Writes::default();
            w.insert(&self.tokens, id.as_bytes(), codec::encode(record)?);
            w.insert(&self.feed_tokens, feed_token_key(feed, id), &[]);
            self.apply(w)?;
        }
        self.durable_blocking()
    }

    /// Looks a token id up (hot path: one sled read).
    pub(crate) fn token(&self, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.tokens
            .get(id.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Whether any token exists (revoked ones included): if so, the server key that
    /// made them must not be replaced.
    pub(crate) fn holds_tokens(&self) -> Result<bool, StoreError> {
        Ok(self.tokens.iter().next().transpose()?.is_some())
    }

    /// Every token of a feed, revoked ones included, oldest first.
    pub(crate) fn tokens_of(&self, feed: &str) -> Result<Vec<(TokenId, TokenRecord)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.feed_tokens.scan_prefix(keys::feed_prefix(feed)) {
            let key = entry?.0;
            let id = key
                .get(feed.len() + 1..)
                .and_then(TokenId::from_bytes)
                .ok_or_else(|| StoreError::Corrupt("bad feed token key".into()))?;
            let record = self
                .token(id)?
                .ok_or_else(|| StoreError::Corrupt(format!("token {id} is indexed but missing")))?;
            out.push((id, record));
        }
        out.sort_by_key(|(_, r)| r.created_ms);
        Ok(out)
    }

    /// Queues the removal of every token of a feed (feed removal; caller holds the lock).
    pub(super) fn remove_tokens_writes(
        &self,
        feed: &str,
        w: &mut Writes,
    ) -> Result<(), StoreError> {
        for (id, _) in self.tokens_of(feed)? {
            w.remove(&self.tokens, id.as_bytes());
            w.remove(&self.feed_tokens, feed_token_key(feed, id));
        }
        Ok(())
    }

    /// Forgets a token of a feed as if it had never been minted (a registration the
    /// forge refused takes back the token it made for it).
    pub(crate) fn remove_token(&self, feed: &str, id: TokenId) -> Result<(), StoreError> {
        {
            let _guard = self.lock();
            match self.token(id)? {
                Some(record) if record.feed.as_str() == feed => {}
                _ => {
                    return Err(StoreError::NoToken {
                        feed: feed.to_owned(),
                        token_id: id.to_string(),
                    })
                }
            }
            let mut w = Writes::default();
            w.remove(&self.tokens, id.as_bytes());
            w.remove(&self.feed_tokens, feed_token_key(feed, id));
            self.apply(w)?;
        }
        self.durable_blocking()
    }

    /// Revokes one token of a feed; the feed's other tokens keep working.
    pub(crate) fn revoke_token(
        &self,
        feed: &str,
        id: TokenId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let guard = self.lock();
        let missing = || StoreError::NoToken {
            feed: feed.to_owned(),
            token_id: id.to_string(),
        };
        let mut record = self.token(id)?.ok_or_else(missing)?;
        if record.feed.as_str() != feed {
            return Err(missing());
        }
        record.revoked_ms.get_or_insert(now_ms);
        self.tokens.insert(id.as_bytes(), codec::encode(&record)?)?;
        drop(guard);
        self.durable_blocking()
    }
}

/// `feed \0 token id`.
fn feed_token_key(feed: &str, id: TokenId) -> Vec<u8> {
    let mut key = keys::feed_prefix(feed);
    key.extend_from_slice(id.as_bytes());
    key
}
