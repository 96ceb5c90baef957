//! Delivery history and redelivery memory: the last N deliveries per feed with the
//! reply each got, so "why didn't my push build?" has an answer and a redelivered id
//! gets its first reply again.

use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::{abort, codec, keys, Store, StoreError};

/// A reply as sent, kept so a redelivery can be answered identically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoredReply {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

/// One delivery to a feed and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// When it arrived, Unix ms.
    pub at_ms: i64,
    /// Which forge sent it.
    pub provider: String,
    /// Its event name.
    pub event: String,
    /// The forge's delivery id, if any.
    pub delivery_id: Option<String>,
    /// The ref it named, if any.
    pub git_ref: Option<String>,
    /// The commit it named, if any.
    pub commit: Option<String>,
    /// The reply it got.
    pub reply: StoredReply,
    /// The reply's `status` word (queued, ignored, …).
    pub outcome: String,
    /// Why, for filtered or refused deliveries.
    pub reason: Option<String>,
}

impl Store {
    /// Records a delivery that queued nothing (ignored, pong, refused). Only 2xx
    /// replies are remembered for redelivery: a bad signature must not stick to an id.
    pub fn record_delivery(&self, feed: &str, record: DeliveryRecord) -> Result<(), StoreError> {
        let _guard = self.admit_lock.lock().unwrap_or_else(|e| e.into_inner());
        let keep = self.keep_deliveries;
        (&self.meta, &self.deliveries, &self.delivery_ids).transaction(
            |(meta, deliveries, ids)| record_tx(feed, record.clone(), keep, meta, deliveries, ids),
        )?;
        Ok(())
    }

    /// The earlier delivery with this id, if it is still remembered.
    pub fn delivery_by_id(
        &self,
        feed: &str,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let Some(n) = self.delivery_ids.get(keys::feed_text(feed, delivery_id))? else {
            return Ok(None);
        };
        let n = keys::read_u64(&n)?;
        self.deliveries
            .get(keys::feed_u64(feed, n))?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// The newest deliveries of a feed, newest first.
    pub fn deliveries(&self, feed: &str, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.deliveries
            .scan_prefix(keys::feed_prefix(feed))
            .values()
            .rev()
            .take(limit)
            .map(|v| codec::decode(&v?))
            .collect()
    }
}

/// Appends a delivery record, maps its id (2xx only) and forgets the one that fell
/// out of the window, all inside the caller's transaction.
pub(super) fn record_tx(
    feed: &str,
    record: DeliveryRecord,
    keep: usize,
    meta: &TransactionalTree,
    deliveries: &TransactionalTree,
    ids: &TransactionalTree,
) -> Result<(), sled::transaction::ConflictableTransactionError<StoreError>> {
    let counter = keys::feed_text("\u{1}dseq", feed);
    let n = match meta.get(&counter)? {
        Some(v) => keys::read_u64(&v).or_else(abort)? + 1,
        None => 1,
    };
    meta.insert(counter, &n.to_be_bytes())?;
    if let (Some(id), true) = (
        &record.delivery_id,
        (200..300).contains(&record.reply.status),
    ) {
        ids.insert(keys::feed_text(feed, id), &n.to_be_bytes())?;
    }
    deliveries.insert(
        keys::feed_u64(feed, n),
        codec::encode(&record).or_else(abort)?,
    )?;
    if let Some(old_n) = n.checked_sub(keep as u64).filter(|o| *o > 0) {
        if let Some(old) = deliveries.remove(keys::feed_u64(feed, old_n))? {
            let old: DeliveryRecord = codec::decode(&old).or_else(abort)?;
            if let Some(old_id) = old.delivery_id {
                let key = keys::feed_text(feed, &old_id);
                if ids.get(&key)?.as_deref() == Some(&old_n.to_be_bytes()[..]) {
                    ids.remove(key)?;
                }
            }
        }
    }
    Ok(())
}
