//! Delivery history and redelivery memory: the last N deliveries per feed with the
//! reply each got, so "why didn't my push build?" has an answer and a redelivered id
//! gets its first reply again.

use super::space::Writes;
use super::{codec, keys, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::reply::HookReply;

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
    /// The reply it got; a redelivery of its id gets it again.
    pub reply: HookReply,
    /// The reply's `status` word (queued, ignored, …).
    pub outcome: String,
    /// Why, for filtered or refused deliveries.
    pub reason: Option<String>,
}

impl Store {
    /// Records a delivery that queued nothing (ignored, pong, refused). Only 2xx
    /// replies are remembered for redelivery: a bad signature must not stick to an id.
    /// The webhook path records through a [`super::Group`].
    #[cfg(test)]
    pub(crate) fn record_delivery(
        &self,
        feed: &str,
        record: DeliveryRecord,
    ) -> Result<(), StoreError> {
        let _guard = self.lock();
        let mut w = Writes::default();
        self.delivery_writes(feed, record, &mut w)?;
        self.apply(w)
    }

    /// The earlier delivery with this id, if it is still remembered.
    #[cfg(test)]
    pub(crate) fn delivery_by_id(
        &self,
        feed: &str,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        self.delivery_by_id_staged(feed, delivery_id, &Writes::default())
    }

    /// [`Self::delivery_by_id`] as the staged writes `w` leave the store.
    pub(super) fn delivery_by_id_staged(
        &self,
        feed: &str,
        delivery_id: &str,
        w: &Writes,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let Some(n) = w.get(&self.delivery_ids, keys::feed_text(feed, delivery_id))? else {
            return Ok(None);
        };
        let n = keys::read_u64(&n)?;
        w.get(&self.deliveries, keys::feed_u64(feed, n))?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// The newest deliveries of a feed, newest first.
    pub(crate) fn deliveries(
        &self,
        feed: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.deliveries
            .scan_prefix(keys::feed_prefix(feed))
            .rev()
            .take(limit)
            .map(|item| codec::decode(&item?.1))
            .collect()
    }

    /// Appends a delivery record, maps its id (2xx only) and forgets the one that fell
    /// out of the window, reading through `w`. The caller holds the write lock and
    /// applies `w`.
    pub(super) fn delivery_writes(
        &self,
        feed: &str,
        record: DeliveryRecord,
        w: &mut Writes,
    ) -> Result<(), StoreError> {
        let counter = keys::feed_text("\u{1}dseq", feed);
        let n = match w.get(&self.meta, &counter)? {
            Some(v) => keys::read_u64(&v)? + 1,
            None => 1,
        };
        w.insert(&self.meta, counter, &n.to_be_bytes());
        if let (Some(id), true) = (&record.delivery_id, record.reply.is_success()) {
            w.insert(
                &self.delivery_ids,
                keys::feed_text(feed, id),
                &n.to_be_bytes(),
            );
        }
        w.insert(
            &self.deliveries,
            keys::feed_u64(feed, n),
            codec::encode(&record)?,
        );
        let Some(old_n) = n
            .checked_sub(self.keep_deliveries as u64)
            .filter(|o| *o > 0)
        else {
            return Ok(());
        };
        let old_key = keys::feed_u64(feed, old_n);
        if let Some(old) = w.get(&self.deliveries, &old_key)? {
            w.remove(&self.deliveries, old_key);
            let old: DeliveryRecord = codec::decode(&old)?;
            if let Some(old_id) = old.delivery_id {
                let key = keys::feed_text(feed, &old_id);
                if w.get(&self.delivery_ids, &key)?.as_deref() == Some(&old_n.to_be_bytes()[..]) {
                    w.remove(&self.delivery_ids, key);
                }
            }
        }
        Ok(())
    }
}
