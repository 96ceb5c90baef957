//! A notification's content: what one build state change says to one `[[notify]]`
//! target, computed when the change is recorded and stored with it in the outbox, so
//! a retry (after a restart too) sends exactly the same thing. Plain data: the
//! store keeps it, `outbound::notify` makes and renders it.

use serde::{Deserialize, Serialize};

use crate::build::BuildId;
use crate::config::NotifyEvent;
use crate::feed::FeedName;

/// One notification owed to one target. Stored with bincode: add fields only with a
/// new record version, never reorder them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Notice {
    /// The `[[notify]]` target's name; its URL, secret or command are looked up when
    /// it is sent, so nothing secret is stored.
    pub(crate) target: String,
    /// Why it fires (the most specific event the target wants: `broken` over `failed`).
    pub(crate) event: NotifyEvent,
    /// When the change happened, Unix ms.
    pub(crate) at_ms: i64,
    /// The feed.
    pub(crate) feed: FeedName,
    /// The build.
    pub(crate) build: BuildId,
    /// Its status word now (`running` for `started`).
    pub(crate) status: String,
    /// Its exit code, when it failed.
    pub(crate) exit_code: Option<i32>,
    /// Why it ended in `error`.
    pub(crate) reason: Option<String>,
    /// The status of the feed and ref's previous build that succeeded or failed.
    pub(crate) previous_status: Option<String>,
    /// Full ref.
    pub(crate) git_ref: String,
    /// Short branch or tag name.
    pub(crate) branch: String,
    /// The commit built, once resolved.
    pub(crate) commit: Option<String>,
    /// Its subject line.
    pub(crate) subject: Option<String>,
    /// What caused the build (hook, manual, deferred, retry).
    pub(crate) trigger: String,
    /// The forge of its newest trigger.
    pub(crate) provider: String,
    /// The repository URL, credentials removed.
    pub(crate) repo_url: String,
    /// When its command started, Unix ms.
    pub(crate) started_ms: Option<i64>,
    /// When it ended, Unix ms.
    pub(crate) finished_ms: Option<i64>,
    /// Its page, when the web UI is on and `public_url` is set.
    pub(crate) url: Option<String>,
}
