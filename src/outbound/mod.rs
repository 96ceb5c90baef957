//! Outbound: what hookd tells the outside world about builds, through the durable
//! outbox in the store. `plan` decides which items a build state change produces
//! (the scheduler writes them in the same batch as the change); `sender` posts them
//! with `client`, as each forge wants (`forge`), retrying with backoff until the far
//! side answers; `tokens` holds the API tokens read from their files; `notify` makes
//! and delivers the `[[notify]]` notifications (webhooks and commands).
//!
//! # Adding a kind of item (the notifications half)
//! 1. Add a variant at the END of [`crate::store::Outgoing`] (bincode stores the
//!    variant index) with the data computed at the time of the change.
//! 2. Produce it in [`plan::on_commit`] / [`plan::on_finish`] (or a new `plan::on_*`
//!    the scheduler calls inside its store write): they get the changed `Build` and
//!    the `Config` in force, and return every item the change causes.
//! 3. Deliver it in `sender::deliver` (one match arm): return a [`forge::Verdict`];
//!    the sender does backoff, Retry-After, per-build ordering, the durable
//!    removal, metrics and `admin outbox`.
//!
//! Items of one build are sent one at a time, oldest first, so a build's `started`
//! never overtakes its `running`; a newer status post of a build replaces an unsent
//! older one with the same context.

pub(crate) mod client;
pub(crate) mod forge;
pub(crate) mod notify;
pub(crate) mod plan;
pub(crate) mod sender;
pub(crate) mod tokens;

use std::sync::Arc;

use tokio::sync::Notify;

/// Handle shared by the scheduler (which wakes the sender after writing items), the
/// admin side (retry) and the daemon (token reloads); cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Wakes the sender: items were written, or one was retried.
    wake: Notify,
    /// API tokens by feed name, read from the `token_file`s.
    tokens: tokens::Tokens,
}

impl Outbox {
    /// Tells the sender that items may be due now.
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Resolves when [`Outbox::wake`] was called (since the last wait).
    pub(crate) async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// The API tokens in force.
    pub(crate) fn tokens(&self) -> &tokens::Tokens {
        &self.inner.tokens
    }
}
