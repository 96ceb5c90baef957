//! Builds and triggers: the records that say what was asked for, what ran and how it ended.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::feed::FeedName;

/// Builds keep the newest few triggers in full; older ones only count.
pub(crate) const TRIGGERS_KEPT: usize = 5;

/// Appended to text cut to its limit, so readers know there was more.
pub(crate) const TRUNCATED: &str = " [truncated]";

/// Longest commit subject kept in a build record (it comes from the pushed repository).
pub(crate) const MAX_SUBJECT_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes (on a character boundary) plus [`TRUNCATED`]
/// when it was longer: stored text from outside stays small (see `hook::Delivery::bounded`).
pub(crate) fn truncate_marked(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text.truncate(end);
    text.push_str(TRUNCATED);
    text
}

/// A build's id: increasing across the whole daemon, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BuildId(pub u64);

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a build stands; the terminal ones never change again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    /// Waiting for a worker.
    Queued,
    /// Its command runs now.
    Running,
    /// The command exited 0.
    Succeeded,
    /// The command exited non-zero (or died of a signal, kept as 128+N).
    Failed {
        /// The exit code.
        exit_code: i32,
    },
    /// The feed's timeout ran out.
    TimedOut,
    /// An operator cancelled it.
    Cancelled,
    /// The daemon stopped while it ran; it is queued again once.
    Interrupted,
    /// Fetch, checkout or spawn failed.
    Error {
        /// What went wrong, for the operator.
        reason: String,
    },
}

impl BuildStatus {
    /// The status word shown in lists and JSON.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed { .. } => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
            Self::Error { .. } => "error",
        }
    }

    /// Whether the build is over.
    pub(crate) fn is_final(&self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// Why a build was asked for; becomes `HOOKD_TRIGGER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    /// A webhook delivery.
    Hook,
    /// `hookd admin trigger`.
    Manual,
    /// A trigger held back by the cooldown, now due.
    Deferred,
    /// A rerun of a build the daemon's stop interrupted.
    Retry,
}

impl TriggerKind {
    /// The word used in `HOOKD_TRIGGER` and listings.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Hook => "hook",
            Self::Manual => "manual",
            Self::Deferred => "deferred",
            Self::Retry => "retry",
        }
    }
}

/// One accepted request to build, normalised: never the payload itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// When it was accepted, Unix milliseconds.
    pub accepted_ms: i64,
    /// Hook or manual.
    pub kind: TriggerKind,
    /// Which forge sent it ("manual" for the CLI).
    pub provider: String,
    /// The forge's event name.
    pub event: String,
    /// The forge's delivery id, when it sent one.
    pub delivery_id: Option<String>,
    /// The commit the push named, if any (the fetch decides what is built).
    pub commit: Option<String>,
}

/// The triggers behind one build: a count plus the newest few, so floods stay small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct TriggerList {
    /// All triggers ever joined into this build.
    pub(crate) count: u64,
    /// The newest [`TRIGGERS_KEPT`], oldest first.
    pub(crate) latest: Vec<Trigger>,
}

impl TriggerList {
    /// Adds a trigger, forgetting the oldest kept one when full.
    pub(crate) fn push(&mut self, trigger: Trigger) {
        self.count += 1;
        if self.latest.len() >= TRIGGERS_KEPT {
            self.latest.remove(0);
        }
        self.latest.push(trigger);
    }

    /// Joins another list behind this one.
    pub(crate) fn extend(&mut self, other: TriggerList) {
        let extra = other.count.saturating_sub(other.latest.len() as u64);
        for t in other.latest {
            self.push(t);
        }
        self.count += extra;
    }

    /// The commit named by the newest trigger that named one.
    pub(crate) fn newest_commit(&self) -> Option<&str> {
        self.latest.iter().rev().find_map(|t| t.commit.as_deref())
    }
}

/// One build of one feed: the unit the queue, the runner and the CLI talk about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Its id.
    pub id: BuildId,
    /// The feed it builds.
    pub feed: FeedName,
    /// Full ref, e.g. `refs/heads/main`.
    pub(crate) git_ref: String,
    /// Short branch or tag name.
    pub(crate) branch: String,
    /// Where it stands.
    pub(crate) status: BuildStatus,
    /// What caused it to exist (the first trigger's kind, or deferred/retry).
    pub(crate) kind: TriggerKind,
    /// Every trigger it serves.
    pub(crate) triggers: TriggerList,
    /// Queue order: ties FIFO position to acceptance, not to id (retries keep their place).
    pub(crate) queue_seq: u64,
    /// When it was queued, Unix ms.
    pub(crate) queued_ms: i64,
    /// When its command started, Unix ms.
    pub(crate) started_ms: Option<i64>,
    /// When it ended, Unix ms.
    pub(crate) finished_ms: Option<i64>,
    /// The commit it built, once resolved.
    pub commit: Option<String>,
    /// That commit's subject line.
    pub subject: Option<String>,
    /// Process group of the running command, for recovery after a crash.
    pub pgid: Option<i32>,
    /// The build this one reruns, when interrupted.
    pub(crate) retry_of: Option<BuildId>,
}

impl Build {
    /// A build just admitted: queued at `queued_ms` in the place its id gives it,
    /// nothing run or resolved yet.
    pub(crate) fn queued(
        id: BuildId,
        feed: FeedName,
        git_ref: String,
        branch: String,
        kind: TriggerKind,
        triggers: TriggerList,
        queued_ms: i64,
    ) -> Self {
        Self {
            id,
            feed,
            git_ref,
            branch,
            status: BuildStatus::Queued,
            kind,
            triggers,
            queue_seq: id.0,
            queued_ms,
            started_ms: None,
            finished_ms: None,
            commit: None,
            subject: None,
            pgid: None,
            retry_of: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trig(n: i64) -> Trigger {
        Trigger {
            accepted_ms: n,
            kind: TriggerKind::Hook,
            provider: "github".into(),
            event: "push".into(),
            delivery_id: None,
            commit: Some(format!("c{n}")),
        }
    }

    #[test]
    fn trigger_list_stays_bounded_and_counts_all() {
        let mut list = TriggerList::default();
        for n in 0..1000 {
            list.push(trig(n));
        }
        assert_eq!(list.count, 1000);
        assert_eq!(list.latest.len(), TRIGGERS_KEPT);
        assert_eq!(list.newest_commit(), Some("c999"));
        let mut other = TriggerList::default();
        other.push(trig(5000));
        list.extend(other);
        assert_eq!(list.count, 1001);
        assert_eq!(list.newest_commit(), Some("c5000"));
    }
}
