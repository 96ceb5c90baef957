//! Hook token records: which feed a token id belongs to, its label, whether revoked.
//!
//! Only the public token id is stored; the secret half of a token is a MAC under the
//! server key (see `crate::token`), so a copy of the database cannot forge one.

use serde::{Deserialize, Serialize};

use super::{codec, Store, StoreError};
use crate::feed::FeedName;
use crate::token::TokenId;

/// What the store knows about one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The feed the token triggers.
    pub feed: FeedName,
    /// The operator's label (one per sending host).
    pub label: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// When it was revoked; revoked tokens answer 404.
    pub revoked_ms: Option<i64>,
}

impl Store {
    /// Records a new token for a feed.
    pub fn add_token(&self, id: TokenId, record: &TokenRecord) -> Result<(), StoreError> {
        self.feed_required(record.feed.as_str())?;
        self.tokens.insert(id.as_bytes(), codec::encode(record)?)?;
        self.durable_blocking()
    }

    /// Looks a token id up (hot path: one sled read).
    pub fn token(&self, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.tokens
            .get(id.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Every token of a feed, revoked ones included, oldest first.
    pub fn tokens_of(&self, feed: &str) -> Result<Vec<(TokenId, TokenRecord)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.tokens.iter() {
            let (key, value) = entry?;
            let record: TokenRecord = codec::decode(&value)?;
            if record.feed.as_str() == feed {
                let id = TokenId::from_bytes(&key)
                    .ok_or_else(|| StoreError::Corrupt("bad token id key".into()))?;
                out.push((id, record));
            }
        }
        out.sort_by_key(|(_, r)| r.created_ms);
        Ok(out)
    }

    /// Revokes one token of a feed; the feed's other tokens keep working.
    pub fn revoke_token(&self, feed: &str, id: TokenId, now_ms: i64) -> Result<(), StoreError> {
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
