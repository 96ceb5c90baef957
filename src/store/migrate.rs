//! Upgrades of the key layout, run once when an older store is opened. Each is one
//! atomic batch together with the schema bump: a crash leaves the old layout or the
//! new one, never a mix.

use std::collections::BTreeMap;

use super::builds::BLOCK_IDS;
use super::space::Writes;
use serde::{Deserialize, Serialize};

use super::{codec, keys, DeliveryRecord, Store, StoreError, SCHEMA_VERSION};
use crate::build::Build;
use crate::reply::HookReply;

impl Store {
    /// Schema 1 kept every build under its own key and one index key per build
    /// (`feed \0 id` -> empty); schema 2 shelves finished builds and keeps each feed's
    /// ids in blocks (see `builds`).
    pub(super) fn migrate_from_v1(&self) -> Result<(), StoreError> {
        let _guard = self.lock();
        let mut w = Writes::default();
        let mut ids_by_feed: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
        for item in self.feed_builds.iter() {
            let (key, _) = item?;
            let id = keys::read_u64(&key)?;
            let feed_prefix = key[..key.len() - 8].to_vec();
            ids_by_feed.entry(feed_prefix).or_default().push(id);
            w.remove(&self.feed_builds, &key);
        }
        for (feed_prefix, ids) in ids_by_feed {
            for block in ids.chunks(BLOCK_IDS) {
                let mut key = feed_prefix.clone();
                key.extend_from_slice(&block[0].to_be_bytes());
                w.insert(&self.feed_builds, key, codec::encode(&block)?);
            }
        }
        for item in self.builds.iter() {
            let build: Build = codec::decode(&item?.1)?;
            if build.status.is_final() {
                self.put_build(&build, &mut w)?;
            }
        }
        w.insert(&self.meta, keys::SCHEMA, &2u32.to_be_bytes());
        self.apply(w)
    }

    /// Schema 2 kept each delivery's reply as the status and body sent; schema 3 keeps
    /// the reply as data ([`HookReply`]). Old replies become [`HookReply::Recorded`], so
    /// a redelivery still gets the very bytes the first delivery got.
    pub(super) fn migrate_from_v2(&self) -> Result<(), StoreError> {
        let _guard = self.lock();
        let mut w = Writes::default();
        for item in self.deliveries.iter() {
            let (key, value) = item?;
            let old: DeliveryRecordV2 = codec::decode(&value)?;
            w.insert(&self.deliveries, key, codec::encode(&old.upgrade())?);
        }
        w.insert(&self.meta, keys::SCHEMA, &3u32.to_be_bytes());
        self.apply(w)
    }

    /// Schema 4 may store a reply that lists several refs ([`HookReply::Refs`]), which
    /// a schema-3 hookd cannot read: the bump makes it refuse the store instead of
    /// misreading it. Replies are stored by variant position and the new one is last,
    /// so every record schema 3 wrote reads as it is; only the version changes.
    pub(super) fn migrate_from_v3(&self) -> Result<(), StoreError> {
        let _guard = self.lock();
        let mut w = Writes::default();
        w.insert(&self.meta, keys::SCHEMA, &4u32.to_be_bytes());
        self.apply(w)
    }

    /// Schema 5 may store feed records of format 4 (a pending webhook secret), which
    /// a schema-4 hookd would call corrupt: the bump makes it refuse the store with a
    /// version message instead. Older feed records read as they are (no rotation
    /// pending), so only the version changes.
    pub(super) fn migrate_from_v4(&self) -> Result<(), StoreError> {
        let _guard = self.lock();
        let mut w = Writes::default();
        w.insert(&self.meta, keys::SCHEMA, &SCHEMA_VERSION.to_be_bytes());
        self.apply(w)
    }
}

/// A delivery record as schema 2 stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DeliveryRecordV2 {
    at_ms: i64,
    provider: String,
    event: String,
    delivery_id: Option<String>,
    git_ref: Option<String>,
    commit: Option<String>,
    /// HTTP status and JSON body, as sent.
    reply: (u16, String),
    outcome: String,
    reason: Option<String>,
}

impl DeliveryRecordV2 {
    fn upgrade(self) -> DeliveryRecord {
        let (status, body) = self.reply;
        DeliveryRecord {
            at_ms: self.at_ms,
            provider: self.provider,
            event: self.event,
            delivery_id: self.delivery_id,
            git_ref: self.git_ref,
            commit: self.commit,
            reply: HookReply::Recorded { status, body },
            outcome: self.outcome,
            reason: self.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::build::{Build, BuildId, BuildStatus, TriggerKind, TriggerList};
    use crate::store::test_support::temp_store;
    use crate::store::{codec, keys, SCHEMA_VERSION};

    fn build(id: u64, status: BuildStatus) -> Build {
        let feed = crate::feed::FeedName::parse("a").unwrap();
        let (git_ref, branch) = ("refs/heads/main".into(), "main".into());
        let kind = TriggerKind::Manual;
        Build {
            status,
            ..Build::queued(
                BuildId(id),
                feed,
                git_ref,
                branch,
                kind,
                TriggerList::default(),
                0,
            )
        }
    }

    #[test]
    fn schema_1_builds_are_shelved_and_reindexed() {
        let (_d, store) = temp_store();
        store.add_feed(&crate::feed::sample("a")).unwrap();
        // Lay the store out as schema 1 did.
        store
            .meta
            .insert(keys::SCHEMA, &1u32.to_be_bytes())
            .unwrap();
        store
            .meta
            .insert(keys::NEXT_BUILD, &71u64.to_be_bytes())
            .unwrap();
        for id in 1..=70 {
            let status = if id == 70 {
                BuildStatus::Queued
            } else {
                BuildStatus::Succeeded
            };
            let raw = codec::encode(&build(id, status)).unwrap();
            store.builds.insert(id.to_be_bytes(), raw).unwrap();
            store
                .feed_builds
                .insert(keys::feed_u64("a", id), &[])
                .unwrap();
        }
        store.check_schema().unwrap();
        let listed = store.builds(Some("a"), 1000).unwrap();
        let ids: Vec<u64> = listed.iter().map(|b| b.id.0).collect();
        assert_eq!(ids, (1..=70).rev().collect::<Vec<_>>());
        assert_eq!(
            store.build_required(BuildId(5)).unwrap(),
            build(5, BuildStatus::Succeeded)
        );
        // 0-15 … 48-63 are settled and shelved; 64-70 wait for the queued build 70
        // and for ids still to come.
        assert_eq!(store.shelves.count(), 4);
        assert_eq!(store.builds.count(), 7);
        assert_eq!(store.feed_builds.count(), 2);
        let schema = store.meta.get(keys::SCHEMA).unwrap().unwrap();
        assert_eq!(keys::read_u32(&schema).unwrap(), SCHEMA_VERSION);
        // Opening again changes nothing.
        store.check_schema().unwrap();
        assert_eq!(store.builds(Some("a"), 1000).unwrap(), listed);
    }

    #[test]
    fn schema_2_replies_become_data_and_still_replay_byte_for_byte() {
        use super::DeliveryRecordV2;
        use crate::reply::HookReply;
        let (_d, store) = temp_store();
        store.add_feed(&crate::feed::sample("a")).unwrap();
        // A delivery as schema 2 wrote it, its id remembered for redelivery.
        let body = r#"{"build":1,"status":"queued"}"#.to_owned();
        let old = DeliveryRecordV2 {
            at_ms: 5,
            provider: "github".into(),
            event: "push".into(),
            delivery_id: Some("d-1".into()),
            git_ref: Some("refs/heads/main".into()),
            commit: None,
            reply: (202, body.clone()),
            outcome: "queued".into(),
            reason: None,
        };
        store
            .deliveries
            .insert(keys::feed_u64("a", 1), codec::encode(&old).unwrap())
            .unwrap();
        store
            .delivery_ids
            .insert(keys::feed_text("a", "d-1"), &1u64.to_be_bytes())
            .unwrap();
        store
            .meta
            .insert(keys::SCHEMA, &2u32.to_be_bytes())
            .unwrap();
        store.check_schema().unwrap();
        let first = store.delivery_by_id("a", "d-1").unwrap().expect("kept");
        assert_eq!(
            first.reply,
            HookReply::Recorded {
                status: 202,
                body: body.clone()
            }
        );
        let parts = first.reply.parts();
        assert_eq!((parts.status.as_u16(), parts.body), (202, body));
        assert_eq!(first.reply.build(), Some(BuildId(1)));
        assert_eq!((first.outcome.as_str(), first.at_ms), ("queued", 5));
        let schema = store.meta.get(keys::SCHEMA).unwrap().unwrap();
        assert_eq!(keys::read_u32(&schema).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn schema_3_records_read_as_they_are_and_several_refs_can_follow() {
        use crate::reply::{HookReply, RefReply};
        use crate::store::DeliveryRecord;
        let (_d, store) = temp_store();
        store.add_feed(&crate::feed::sample("a")).unwrap();
        let record = |n: u64, reply: HookReply| DeliveryRecord {
            at_ms: n as i64,
            provider: "bitbucket-cloud".into(),
            event: "repo:push".into(),
            delivery_id: Some(format!("d-{n}")),
            git_ref: Some("refs/heads/main".into()),
            commit: None,
            reply,
            outcome: "queued".into(),
            reason: None,
        };
        // A delivery as schema 3 wrote it (its variants encode as they did then).
        let old = record(1, HookReply::Queued { build: BuildId(1) });
        store.record_delivery("a", old.clone()).unwrap();
        store
            .meta
            .insert(keys::SCHEMA, &3u32.to_be_bytes())
            .unwrap();
        store.check_schema().unwrap();
        let schema = store.meta.get(keys::SCHEMA).unwrap().unwrap();
        assert_eq!(keys::read_u32(&schema).unwrap(), SCHEMA_VERSION);
        assert_eq!(store.delivery_by_id("a", "d-1").unwrap(), Some(old));
        // What schema 4 adds: a reply listing several refs, kept and replayed whole.
        let several = record(
            2,
            HookReply::Refs {
                refs: vec![
                    RefReply {
                        git_ref: "refs/heads/main".into(),
                        reply: HookReply::Queued { build: BuildId(2) },
                    },
                    RefReply {
                        git_ref: "refs/tags/v1".into(),
                        reply: HookReply::Queued { build: BuildId(3) },
                    },
                ],
            },
        );
        store.record_delivery("a", several.clone()).unwrap();
        assert_eq!(store.delivery_by_id("a", "d-2").unwrap(), Some(several));
        // Opening again changes nothing.
        store.check_schema().unwrap();
        assert_eq!(store.deliveries("a", 10).unwrap().len(), 2);
    }

    #[test]
    fn schema_4_feeds_read_as_they_are_and_a_rotation_can_follow() {
        let (_d, store) = temp_store();
        // A feed as schema 4 wrote it (format 3, before `secret_pending`).
        let old = crate::feed::Feed {
            has_secret: true,
            ..crate::feed::sample("a")
        };
        store.add_feed(&old).unwrap();
        let format_3 = {
            let mut bytes = store.feeds.get("a").unwrap().unwrap().to_vec();
            // Format 4 appends one bool to format 3's fields: drop it, relabel.
            assert_eq!(bytes.pop(), Some(0));
            bytes[0] = 3;
            bytes
        };
        store.feeds.insert("a", format_3).unwrap();
        store
            .meta
            .insert(keys::SCHEMA, &4u32.to_be_bytes())
            .unwrap();
        store.check_schema().unwrap();
        let schema = store.meta.get(keys::SCHEMA).unwrap().unwrap();
        assert_eq!(keys::read_u32(&schema).unwrap(), SCHEMA_VERSION);
        assert_eq!(store.feed("a").unwrap().unwrap(), old);
        let rotating = store
            .update_feed("a", |f| crate::feed::Feed {
                secret_pending: true,
                ..f
            })
            .unwrap();
        assert!(rotating.secret_pending);
        store.check_schema().unwrap();
        assert_eq!(store.feed("a").unwrap().unwrap(), rotating);
    }

    #[test]
    fn a_newer_schema_is_refused_by_name() {
        let (_d, store) = temp_store();
        store
            .meta
            .insert(keys::SCHEMA, &(SCHEMA_VERSION + 1).to_be_bytes())
            .unwrap();
        let err = store.check_schema().unwrap_err().to_string();
        assert!(err.contains("newer than this hookd understands"), "{err}");
    }
}
