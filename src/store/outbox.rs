//! The outbox: what hookd owes the outside world (a commit status post, later
//! notifications), written in the same atomic batch as the build state change that
//! caused it, and removed only once the forge answered. A crash between the change and
//! the post leaves the item here, and the sender (`outbound`) posts it after restart.
//!
//! The store decides nothing about items: the caller hands it the [`Outgoing`] values a
//! change produces (see `outbound::plan`) and the sender tells it each attempt's
//! outcome ([`Attempt`]).

use serde::{Deserialize, Serialize};

use super::space::Writes;
use super::{codec, keys, Store, StoreError};
use crate::build::{Build, BuildId, BuildStatus};
use crate::feed::FeedName;

/// An outbox item's id: increasing, never reused (the counter is written in the same
/// batch as the item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct OutboxId(pub(crate) u64);

impl std::fmt::Display for OutboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What an item delivers. Stored with bincode, which encodes a variant by its index:
/// add new variants at the END only (the notifications half adds `Notify(...)` here),
/// never reorder or remove one, or stored items would decode as the wrong kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outgoing {
    /// A commit status on the forge that hosts the feed's repository.
    Status(StatusPost),
    /// A notification to one `[[notify]]` target.
    Notify(Box<crate::notice::Notice>),
}

impl Outgoing {
    /// The kind word in `admin outbox` and the `kind` label of
    /// `hookd_outbox_sent_total`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::Notify(_) => "notify",
        }
    }
}

/// A commit status, forge-neutral, as computed when the build changed state. Where to
/// post it (forge, API URL, repository) and the token are looked up when it is sent,
/// so no credential is ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatusPost {
    /// The resolved commit the build ran on.
    pub(crate) commit: String,
    /// hookd's state, mapped to each forge's own words by the sender.
    pub(crate) state: PostState,
    /// One short line for the forge's UI ("failed (exit 2) in 1m12s").
    pub(crate) description: String,
    /// The build's page, when the web UI is on and `public_url` set.
    pub(crate) target_url: Option<String>,
    /// The status context (`hookd/NAME` unless configured).
    pub(crate) context: String,
    /// The ref the build ran for (GitLab's `ref`, Bitbucket's `refname`).
    pub(crate) git_ref: String,
}

/// The hookd states a status post can carry: a build that runs, and each way a build
/// ends. (An interrupted build is not one: it leaves the running state in place.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PostState {
    /// The commit is resolved and the build runs.
    Running,
    /// Exit 0.
    Succeeded,
    /// Non-zero exit.
    Failed,
    /// The feed's timeout ran out.
    TimedOut,
    /// An operator cancelled it.
    Cancelled,
    /// Fetch, checkout or spawn failed.
    Error,
}

impl PostState {
    /// The state a finished build posts; `None` for a status that posts nothing.
    pub(crate) fn of(status: &BuildStatus) -> Option<Self> {
        match status {
            BuildStatus::Queued | BuildStatus::Interrupted => None,
            BuildStatus::Running => Some(Self::Running),
            BuildStatus::Succeeded => Some(Self::Succeeded),
            BuildStatus::Failed { .. } => Some(Self::Failed),
            BuildStatus::TimedOut => Some(Self::TimedOut),
            BuildStatus::Cancelled => Some(Self::Cancelled),
            BuildStatus::Error { .. } => Some(Self::Error),
        }
    }

    /// The word shown by `admin outbox`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
        }
    }
}

/// Whether an item still waits to be sent or was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ItemState {
    /// Sent when `next_ms` comes (again after a failed attempt).
    Pending,
    /// The far side refused it for good (a 4xx); kept for `admin outbox` until
    /// retried or dropped.
    Failed,
}

/// One thing owed, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutboxItem {
    /// Its id.
    pub(crate) id: OutboxId,
    /// The feed whose build caused it.
    pub(crate) feed: FeedName,
    /// The build whose change caused it.
    pub(crate) build: BuildId,
    /// What to deliver.
    pub(crate) what: Outgoing,
    /// When it was written, Unix ms.
    pub(crate) created_ms: i64,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// Not before this time, Unix ms.
    pub(crate) next_ms: i64,
    /// The last attempt's error, or the far side's reply to it.
    pub(crate) last_error: Option<String>,
    /// Pending or failed for good.
    pub(crate) state: ItemState,
}

/// What one attempt came to, as the sender tells the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Delivered (or made moot: a newer status replaced it): the item goes.
    Done,
    /// Try again at `next_ms`; `error` says what went wrong.
    Retry {
        /// When, Unix ms.
        next_ms: i64,
        /// Why this attempt failed.
        error: String,
    },
    /// Refused for good; `error` is the reply.
    Failed {
        /// The reply or reason.
        error: String,
    },
}

impl Store {
    /// Stages new items caused by a change made at `now_ms` for `build`.
    pub(super) fn outbox_writes(
        &self,
        build: &Build,
        items: Vec<Outgoing>,
        now_ms: i64,
        w: &mut Writes,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut next = match w.get(&self.meta, keys::NEXT_OUTBOX)? {
            Some(v) => keys::read_u64(&v)?,
            None => 1,
        };
        for what in items {
            let item = OutboxItem {
                id: OutboxId(next),
                feed: build.feed.clone(),
                build: build.id,
                what,
                created_ms: now_ms,
                attempts: 0,
                next_ms: now_ms,
                last_error: None,
                state: ItemState::Pending,
            };
            w.insert(&self.outbox, next.to_be_bytes(), codec::encode(&item)?);
            next += 1;
        }
        w.insert(&self.meta, keys::NEXT_OUTBOX, &next.to_be_bytes());
        Ok(())
    }

    /// [`Store::update_build`] plus the items `plan` makes of the changed build, in
    /// one atomic batch (the resolved commit and its `running` post).
    pub(crate) fn update_build_posting(
        &self,
        id: BuildId,
        change: impl FnOnce(&mut Build),
        plan: impl FnOnce(&Build) -> Vec<Outgoing>,
        now_ms: i64,
    ) -> Result<(Build, usize), StoreError> {
        let _guard = self.lock();
        let mut build = self.build_required(id)?;
        change(&mut build);
        let items = plan(&build);
        let count = items.len();
        let mut w = Writes::default();
        self.put_build(&build, &mut w)?;
        self.outbox_writes(&build, items, now_ms, &mut w)?;
        self.apply(w)?;
        Ok((build, count))
    }

    /// Every item, pending and failed, in id order (the outbox stays small: items
    /// leave once sent).
    pub(crate) fn outbox(&self) -> Result<Vec<OutboxItem>, StoreError> {
        self.outbox
            .iter()
            .map(|item| codec::decode(&item?.1))
            .collect()
    }

    /// One item.
    pub(crate) fn outbox_item(&self, id: OutboxId) -> Result<Option<OutboxItem>, StoreError> {
        self.outbox
            .get(id.0.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Items waiting to be sent (for the `hookd_outbox_pending` gauge).
    pub(crate) fn outbox_pending_count(&self) -> Result<usize, StoreError> {
        Ok(self
            .outbox()?
            .iter()
            .filter(|i| i.state == ItemState::Pending)
            .count())
    }

    /// Records an attempt's outcome; an item already gone (dropped meanwhile) stays
    /// gone. Durable only after [`Store::durable_blocking`].
    pub(crate) fn outbox_attempted(
        &self,
        id: OutboxId,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let _guard = self.lock();
        let Some(mut item) = self.outbox_item(id)? else {
            return Ok(());
        };
        let key = id.0.to_be_bytes();
        match attempt {
            Attempt::Done => return self.outbox.remove(key),
            Attempt::Retry { next_ms, error } => {
                item.next_ms = next_ms;
                item.last_error = Some(error);
            }
            Attempt::Failed { error } => {
                item.state = ItemState::Failed;
                item.last_error = Some(error);
            }
        }
        item.attempts = item.attempts.saturating_add(1);
        self.outbox.insert(key, codec::encode(&item)?)
    }

    /// `admin outbox retry`: the item is pending again and due at `now_ms`; `false`
    /// when there is no such item.
    pub(crate) fn outbox_retry(&self, id: OutboxId, now_ms: i64) -> Result<bool, StoreError> {
        let _guard = self.lock();
        let Some(mut item) = self.outbox_item(id)? else {
            return Ok(false);
        };
        item.state = ItemState::Pending;
        item.next_ms = now_ms;
        self.outbox
            .insert(id.0.to_be_bytes(), codec::encode(&item)?)?;
        Ok(true)
    }

    /// `admin outbox drop`: the item goes unsent; `false` when there is no such item.
    pub(crate) fn outbox_drop(&self, id: OutboxId) -> Result<bool, StoreError> {
        let _guard = self.lock();
        if self.outbox_item(id)?.is_none() {
            return Ok(false);
        }
        self.outbox.remove(id.0.to_be_bytes())?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{BuildStatus, Trigger, TriggerKind};
    use crate::store::test_support::temp_store;
    use crate::store::{AdmitRequest, Pick};

    fn post(state: PostState) -> Outgoing {
        Outgoing::Status(StatusPost {
            commit: "c".repeat(40),
            state,
            description: state.word().into(),
            target_url: None,
            context: "hookd/a".into(),
            git_ref: "refs/heads/main".into(),
        })
    }

    fn running_build(store: &Store) -> Build {
        let feed = crate::feed::sample("a");
        store.add_feed(&feed).unwrap();
        let req = AdmitRequest {
            feed: &feed,
            git_ref: "refs/heads/main".into(),
            branch: "main".into(),
            trigger: Trigger {
                accepted_ms: 0,
                kind: TriggerKind::Manual,
                provider: "manual".into(),
                event: "manual".into(),
                delivery_id: None,
                commit: None,
            },
            force: true,
            now_ms: 0,
        };
        store.admit(&req, None).unwrap();
        let pick = store
            .claim_next(&Default::default(), &Default::default(), 1)
            .unwrap();
        let Pick::Start(build) = pick else {
            panic!("{pick:?}")
        };
        *build
    }

    #[test]
    fn items_land_with_the_change_and_leave_only_when_done() {
        let (_d, store) = temp_store();
        let build = running_build(&store);
        let (_, n) = store
            .update_build_posting(
                build.id,
                |b| b.commit = Some("c".repeat(40)),
                |b| {
                    assert_eq!(b.commit.as_deref(), Some(&*"c".repeat(40)));
                    vec![post(PostState::Running)]
                },
                10,
            )
            .unwrap();
        assert_eq!(n, 1);
        store
            .finish_posting(build.id, BuildStatus::Succeeded, 20, |b| {
                assert_eq!(b.status, BuildStatus::Succeeded);
                vec![post(PostState::Succeeded)]
            })
            .unwrap();
        let items = store.outbox().unwrap();
        assert_eq!(
            items
                .iter()
                .map(|i| (i.id.0, i.next_ms))
                .collect::<Vec<_>>(),
            [(1, 10), (2, 20)]
        );
        assert_eq!(store.outbox_pending_count().unwrap(), 2);
        let retry = Attempt::Retry {
            next_ms: 99,
            error: "connection refused".into(),
        };
        store.outbox_attempted(OutboxId(1), retry).unwrap();
        let first = store.outbox_item(OutboxId(1)).unwrap().unwrap();
        assert_eq!((first.attempts, first.next_ms), (1, 99));
        store
            .outbox_attempted(
                OutboxId(1),
                Attempt::Failed {
                    error: "401".into(),
                },
            )
            .unwrap();
        assert_eq!(store.outbox_pending_count().unwrap(), 1);
        assert!(store.outbox_retry(OutboxId(1), 100).unwrap());
        assert_eq!(store.outbox_pending_count().unwrap(), 2);
        store.outbox_attempted(OutboxId(2), Attempt::Done).unwrap();
        assert!(store.outbox_drop(OutboxId(1)).unwrap());
        assert!(!store.outbox_drop(OutboxId(1)).unwrap());
        assert!(store.outbox().unwrap().is_empty());
        // Ids are never reused.
        store
            .update_build_posting(build.id, |_| {}, |_| vec![post(PostState::Error)], 30)
            .unwrap();
        assert_eq!(store.outbox().unwrap()[0].id, OutboxId(3));
    }
}
