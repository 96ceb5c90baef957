//! The admin protocol, shared by the daemon (server) and `hookd admin` (client):
//! one JSON request line, then one reply line (or several for a followed log).
//!
//! Replies carry view types made for people and `--json`, not the stored records.

use serde::{Deserialize, Serialize};

use crate::build::{Build, BuildStatus};

use crate::clock::rfc3339;
use crate::feed::redact_url;
use crate::feed::{CommandSpec, CooldownPolicy, Feed};

/// Feed settings as sent by `feed add` / `feed edit`; `None` keeps the old value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FeedSpec {
    /// Repository URL.
    pub(crate) repo: Option<String>,
    /// Branch patterns (empty = keep on edit, default on add).
    pub(crate) branches: Vec<String>,
    /// Command words (one = shell string).
    pub(crate) command: Vec<String>,
    /// Cooldown seconds.
    pub(crate) cooldown_secs: Option<u64>,
    /// Cooldown policy.
    pub(crate) on_cooldown: Option<CooldownPolicy>,
    /// Timeout seconds.
    pub(crate) timeout_secs: Option<u64>,
    /// The webhook secret's text, read from `--secret-file` by the client.
    pub(crate) secret: Option<String>,
    /// Drop the webhook secret.
    pub(crate) clear_secret: bool,
    /// Ask a network remote for its refs before saving (local paths are always
    /// checked).
    #[serde(default)]
    pub(crate) check: bool,
    /// Show a badge (`--badge on|off`).
    #[serde(default)]
    pub(crate) badge: Option<bool>,
}

/// Every request the admin socket answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Add a feed (and its first token).
    FeedAdd {
        /// Feed name.
        name: String,
        /// Its settings.
        spec: FeedSpec,
    },
    /// All feeds.
    FeedList,
    /// One feed.
    FeedShow {
        /// Feed name.
        name: String,
    },
    /// Change a feed.
    FeedEdit {
        /// Feed name.
        name: String,
        /// Changed settings.
        spec: FeedSpec,
    },
    /// Remove a feed.
    FeedRemove {
        /// Feed name.
        name: String,
    },
    /// Pause or resume a feed.
    FeedPause {
        /// Feed name.
        name: String,
        /// true = pause, false = resume.
        paused: bool,
    },
    /// New token.
    TokenAdd {
        /// Feed name.
        name: String,
        /// Label.
        label: String,
    },
    /// A feed's tokens.
    TokenList {
        /// Feed name.
        name: String,
    },
    /// Revoke a token.
    TokenRevoke {
        /// Feed name.
        name: String,
        /// Token id (hex).
        token_id: String,
    },
    /// A sample notification to each of a feed's `[[notify]]` targets.
    NotifyTest {
        /// Feed name.
        name: String,
    },
    /// Start a secret rotation: the new secret is accepted next to the current one.
    SecretRotate {
        /// Feed name.
        name: String,
        /// The new secret's text, read from `--secret-file` by the client.
        secret: String,
    },
    /// End a rotation: the new secret becomes the only one.
    SecretConfirm {
        /// Feed name.
        name: String,
    },
    /// Abandon a rotation: only the current secret stays.
    SecretCancel {
        /// Feed name.
        name: String,
    },
    /// Create or repair the feed's webhook on its forge, with a new secret.
    HookRegister {
        /// Feed name.
        name: String,
        /// `push`, `tag` (empty: push, and tags when the feed watches any).
        events: Vec<String>,
        /// Register a `public_url` on a loopback or private address.
        allow_private: bool,
    },
    /// The forge's view of the feed's webhook.
    HookStatus {
        /// Feed name.
        name: String,
    },
    /// Delete the feed's webhook on its forge and revoke its token.
    HookUnregister {
        /// Feed name.
        name: String,
    },
    /// A feed's hook URLs.
    HookUrl {
        /// Feed name.
        name: String,
    },
    /// Manual trigger.
    Trigger {
        /// Feed name.
        name: String,
        /// Branch or full ref, else the feed's default.
        branch: Option<String>,
        /// Ignore the cooldown.
        force: bool,
        /// Build the named ref even if the feed does not watch it.
        #[serde(default)]
        any_ref: bool,
    },
    /// Running and waiting builds.
    Queue,
    /// Recent builds.
    Builds {
        /// Only this feed.
        name: Option<String>,
        /// How many.
        limit: usize,
    },
    /// One build.
    BuildShow {
        /// Build id.
        id: u64,
    },
    /// A build's log.
    Log {
        /// Build id.
        id: u64,
        /// Stream until the build ends.
        follow: bool,
    },
    /// Cancel a build.
    Cancel {
        /// Build id.
        id: u64,
    },
    /// Recent deliveries.
    Deliveries {
        /// Feed name.
        name: String,
        /// How many.
        limit: usize,
    },
    /// Outbox items waiting or refused.
    Outbox,
    /// Send an outbox item again now.
    OutboxRetry {
        /// Item id.
        id: u64,
    },
    /// Give an outbox item up.
    OutboxDrop {
        /// Item id.
        id: u64,
    },
    /// Daemon status.
    Status,
    /// A backup of feeds, tokens, secrets and the token key.
    Export,
    /// Restore a backup into a daemon that has no feeds.
    Import {
        /// The document `Export` produced.
        backup: Backup,
    },
    /// Let the config file own a feed made with the CLI.
    FeedAdopt {
        /// Feed name.
        name: String,
    },
    /// What applying a config file's declared feeds would change (nothing is applied).
    Plan {
        /// The file's path, for messages and lines.
        file: String,
        /// Its text, as the operator's client read it.
        text: String,
    },
}

/// Every reply; `Error` carries a message for stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub(crate) enum Reply {
    /// The request failed; the message is for the operator.
    Error(String),
    /// A feed, with its hook URLs.
    Feed(FeedView),
    /// Feeds.
    Feeds(Vec<FeedView>),
    /// Tokens (with URLs when just created or asked for).
    Tokens(Vec<TokenView>),
    /// Something done, described in a sentence.
    Done(String),
    /// Outcome of a manual trigger.
    Triggered(TriggerView),
    /// The queue.
    Queue(QueueOut),
    /// Builds.
    Builds(Vec<BuildView>),
    /// One build (boxed: it is the largest reply by far).
    Build(Box<BuildView>),
    /// A piece of log text.
    LogChunk(String),
    /// The log is complete; the build's final status.
    LogEnd(String),
    /// Deliveries.
    Deliveries(Vec<DeliveryView>),
    /// Outbox items.
    Outbox(Vec<OutboxView>),
    /// A feed's webhook as its forge shows it.
    HookStatus(HookStatusView),
    /// Daemon status.
    Status(StatusView),
    /// A backup document.
    Backup(Backup),
    /// What a config file's declared feeds would change.
    Plan(PlanView),
    /// What each `[[notify]]` target answered to a sample.
    NotifyTest(Vec<NotifyResultView>),
}

/// One target's answer to `notify test`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NotifyResultView {
    /// The target's name.
    pub(crate) target: String,
    /// webhook or exec.
    pub(crate) kind: String,
    /// Whether it was delivered.
    pub(crate) ok: bool,
    /// What it answered ("sent (HTTP 200)", or why not).
    pub(crate) result: String,
}

/// One outbox item as `hookd admin outbox` shows it (never a token: items hold none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OutboxView {
    /// Item id, for `outbox retry` / `outbox drop`.
    pub(crate) id: u64,
    /// The feed whose build caused it.
    pub(crate) feed: String,
    /// That build.
    pub(crate) build: u64,
    /// `status` (commit status post).
    pub(crate) kind: String,
    /// `pending` or `failed`.
    pub(crate) state: String,
    /// What it says: the hookd state posted (`running`, `failed`, ...).
    pub(crate) status: String,
    /// The commit it is about.
    pub(crate) commit: String,
    /// When it was written (RFC 3339).
    pub(crate) created: String,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// When the next attempt is due (RFC 3339); none once failed.
    pub(crate) next_attempt: Option<String>,
    /// The last attempt's error or the forge's reply.
    pub(crate) last_error: Option<String>,
}

/// A feed's webhook as its forge shows it, next to hookd's own deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HookStatusView {
    /// Feed name.
    pub(crate) feed: String,
    /// The forge's word.
    pub(crate) forge: String,
    /// The repository on it.
    pub(crate) repo: String,
    /// hookd's webhooks there (one, unless registered by hand too); none when gone.
    pub(crate) webhooks: Vec<WebhookView>,
    /// hookd's latest deliveries for the feed.
    pub(crate) deliveries: Vec<DeliveryView>,
}

/// One webhook on the forge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WebhookView {
    /// The forge's id.
    pub(crate) id: String,
    /// Where it delivers (the hook URL).
    pub(crate) url: String,
    /// Whether the forge delivers to it.
    pub(crate) active: bool,
    /// Events, in the forge's words.
    pub(crate) events: Vec<String>,
    /// The last delivery's response, where the forge's API tells it.
    pub(crate) last_response: Option<String>,
}

/// What applying a config file's declared feeds changes (`check-config --plan`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PlanView {
    /// The config file.
    pub(crate) file: String,
    /// Feeds added, changed, retired and revived, by name; retirements last.
    pub(crate) changes: Vec<PlanChange>,
    /// Declared feeds that stay as they are.
    pub(crate) unchanged: usize,
}

/// One feed a plan changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PlanChange {
    /// Feed name.
    pub(crate) feed: String,
    /// add, change, retire or revive.
    pub(crate) action: String,
    /// The settings that change (change, revive).
    pub(crate) keys: Vec<String>,
    /// Line of its table in the file (not for a retired feed).
    pub(crate) line: Option<usize>,
}

/// Version of the backup format.
pub(crate) const BACKUP_FORMAT: u32 = 1;

/// Everything needed to rebuild a daemon's feeds with the same hook URLs. It holds
/// secrets (the token key, webhook secrets): keep it like the data dir itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Backup {
    /// [`BACKUP_FORMAT`].
    pub(crate) format: u32,
    /// When it was made (RFC 3339).
    pub(crate) exported: String,
    /// The token key, base64url: hook URLs are derived from it.
    pub(crate) server_key: String,
    /// Every feed with its secret and tokens.
    pub(crate) feeds: Vec<BackupFeed>,
}

/// One feed in a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BackupFeed {
    /// The feed's settings.
    pub(crate) feed: Feed,
    /// Its webhook secret.
    pub(crate) secret: Option<String>,
    /// The secret a pending rotation moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pending_secret: Option<String>,
    /// Its tokens, revoked ones included.
    pub(crate) tokens: Vec<BackupToken>,
}

/// One token in a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BackupToken {
    /// Token id (hex).
    pub(crate) id: String,
    /// Label.
    pub(crate) label: String,
    /// Created, Unix ms.
    pub(crate) created_ms: i64,
    /// Revoked, Unix ms.
    pub(crate) revoked_ms: Option<i64>,
}

/// A feed as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FeedView {
    /// Name.
    pub(crate) name: String,
    /// Repository URL, credentials redacted.
    pub(crate) repo: String,
    /// Watched patterns.
    pub(crate) branches: Vec<String>,
    /// Build command.
    pub(crate) command: CommandSpec,
    /// Cooldown seconds.
    pub(crate) cooldown_secs: u64,
    /// Cooldown policy.
    pub(crate) on_cooldown: CooldownPolicy,
    /// Timeout seconds.
    pub(crate) timeout_secs: u64,
    /// Whether deliveries must be signed.
    pub(crate) has_secret: bool,
    /// Whether a new secret is accepted next to the current one until confirmed.
    #[serde(default)]
    pub(crate) secret_pending: bool,
    /// Whether builds are paused.
    pub(crate) paused: bool,
    /// Whether its badge is shown.
    #[serde(default)]
    pub(crate) badge: bool,
    /// Whether the config file owns it.
    #[serde(default)]
    pub(crate) declared: bool,
    /// Where it is declared (`FILE line N`), for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) declared_at: Option<String>,
    /// When it left the config file (RFC 3339); a retired feed builds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retired: Option<String>,
    /// Creation time (RFC 3339).
    pub(crate) created: String,
    /// Active hook URLs.
    pub(crate) hook_urls: Vec<TokenView>,
    /// What `--check` found on the remote: the watched refs it lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) remote_refs: Option<Vec<String>>,
}

impl FeedView {
    /// Builds the view from a stored feed and its active tokens.
    pub(crate) fn new(feed: &Feed, hook_urls: Vec<TokenView>) -> Self {
        Self {
            name: feed.name.to_string(),
            repo: redact_url(&feed.repo),
            branches: feed.branches.clone(),
            command: feed.command.clone(),
            cooldown_secs: feed.cooldown_secs,
            on_cooldown: feed.on_cooldown,
            timeout_secs: feed.timeout_secs,
            has_secret: feed.has_secret,
            secret_pending: feed.secret_pending,
            paused: feed.paused,
            badge: feed.badge,
            declared: feed.declared,
            declared_at: None,
            retired: feed.retired_ms.map(rfc3339),
            created: rfc3339(feed.created_ms),
            hook_urls,
            remote_refs: None,
        }
    }
}

/// A hook token as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenView {
    /// Public id, for `token revoke`.
    pub(crate) id: String,
    /// Label.
    pub(crate) label: String,
    /// Creation time.
    pub(crate) created: String,
    /// Revocation time, if revoked.
    pub(crate) revoked: Option<String>,
    /// The hook URL (absent for revoked tokens).
    pub(crate) url: Option<String>,
}

/// What a manual trigger did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TriggerView {
    /// queued, coalesced, deferred.
    pub(crate) status: String,
    /// The build.
    pub(crate) build: u64,
    /// When a deferred build may start.
    pub(crate) run_at: Option<String>,
}

/// A build as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BuildView {
    /// Id.
    pub(crate) id: u64,
    /// Feed name.
    pub(crate) feed: String,
    /// Branch or tag name.
    pub(crate) branch: String,
    /// Full ref.
    #[serde(rename = "ref")]
    pub(crate) git_ref: String,
    /// Status word.
    pub(crate) status: String,
    /// Exit code, for failed builds.
    pub(crate) exit_code: Option<i32>,
    /// Reason, for errors.
    pub(crate) reason: Option<String>,
    /// hook, manual, deferred or retry.
    pub(crate) trigger: String,
    /// How many triggers it serves.
    pub(crate) trigger_count: u64,
    /// Who sent the newest trigger (github, gitlab, …, manual).
    #[serde(default)]
    pub(crate) provider: Option<String>,
    /// Delivery ids of the newest triggers.
    pub(crate) delivery_ids: Vec<String>,
    /// Queued at.
    pub(crate) queued_at: String,
    /// Started at.
    pub(crate) started_at: Option<String>,
    /// Finished at.
    pub(crate) finished_at: Option<String>,
    /// Run time in seconds.
    pub(crate) duration_secs: Option<f64>,
    /// The commit the newest trigger that named one asked for (a forge that sends
    /// only an annotated tag's object names that); `commit` is what was built.
    pub(crate) requested: Option<String>,
    /// Commit built.
    pub(crate) commit: Option<String>,
    /// Whether the build's feed is paused: a queued build then waits for `resume`.
    #[serde(default)]
    pub(crate) feed_paused: bool,
    /// Its subject line.
    pub(crate) subject: Option<String>,
    /// The build this reruns.
    pub(crate) retry_of: Option<u64>,
    /// For waiting builds: not before (RFC 3339).
    pub(crate) run_at: Option<String>,
    /// Process group of a running build's command.
    pub(crate) pgid: Option<i32>,
}

impl BuildView {
    /// Whether a branch build ran another commit than the one its trigger named: the
    /// branch moved on (a later push), or the feed's repository is not the one pushed
    /// to. (A tag's requested id may be the tag object, which the build peels.)
    pub(crate) fn built_other_commit(&self) -> bool {
        match (&self.requested, &self.commit) {
            (Some(requested), Some(built)) => {
                requested != built && !self.git_ref.starts_with("refs/tags/")
            }
            _ => false,
        }
    }

    /// Builds the view from a stored build.
    pub(crate) fn new(b: &Build) -> Self {
        let (exit_code, reason) = match &b.status {
            BuildStatus::Failed { exit_code } => (Some(*exit_code), None),
            BuildStatus::Error { reason } => (None, Some(reason.clone())),
            _ => (None, None),
        };
        Self {
            id: b.id.0,
            feed: b.feed.to_string(),
            branch: b.branch.clone(),
            git_ref: b.git_ref.clone(),
            status: b.status.word().to_owned(),
            exit_code,
            reason,
            trigger: b.kind.word().to_owned(),
            trigger_count: b.triggers.count,
            provider: b.triggers.latest.last().map(|t| t.provider.clone()),
            delivery_ids: b
                .triggers
                .latest
                .iter()
                .filter_map(|t| t.delivery_id.clone())
                .collect(),
            queued_at: rfc3339(b.queued_ms),
            started_at: b.started_ms.map(rfc3339),
            finished_at: b.finished_ms.map(rfc3339),
            duration_secs: b
                .started_ms
                .zip(b.finished_ms)
                .map(|(s, f)| (f - s).max(0) as f64 / 1000.0),
            requested: b.triggers.newest_commit().map(str::to_owned),
            commit: b.commit.clone(),
            feed_paused: false,
            subject: b.subject.clone(),
            retry_of: b.retry_of.map(|r| r.0),
            run_at: None,
            pgid: b.pgid,
        }
    }
}

/// The queue as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueueOut {
    /// Running builds.
    pub(crate) running: Vec<BuildView>,
    /// Waiting builds, due now, FIFO order.
    pub(crate) queued: Vec<BuildView>,
    /// Waiting builds held back by a cooldown, with `run_at`.
    pub(crate) deferred: Vec<BuildView>,
}

/// One delivery as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeliveryView {
    /// Arrival time.
    pub(crate) at: String,
    /// Provider.
    pub(crate) provider: String,
    /// Event.
    pub(crate) event: String,
    /// Delivery id.
    pub(crate) delivery_id: Option<String>,
    /// Ref named.
    #[serde(rename = "ref")]
    pub(crate) git_ref: Option<String>,
    /// Commit named.
    pub(crate) commit: Option<String>,
    /// HTTP status of the reply.
    pub(crate) http_status: u16,
    /// The build it queued, joined or was deferred into, if any.
    pub(crate) build: Option<u64>,
    /// queued, coalesced, deferred, ignored, pong, rejected, unauthorized, bad_request…
    pub(crate) outcome: String,
    /// Why.
    pub(crate) reason: Option<String>,
    /// Each ref change of a delivery that carried several (Bitbucket, Azure DevOps),
    /// with its own outcome, in payload order; empty for one-ref deliveries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) refs: Vec<RefOutcomeView>,
}

impl DeliveryView {
    /// Why, as listings show it: for a delivery that changed several refs, each ref's
    /// outcome (`refs/tags/v1 queued #7; refs/heads/dev ignored (…)`).
    pub(crate) fn why(&self) -> Option<String> {
        if self.refs.is_empty() {
            return self.reason.clone();
        }
        let each: Vec<String> = self
            .refs
            .iter()
            .map(|r| {
                let build = r.build.map(|b| format!(" #{b}")).unwrap_or_default();
                let reason = r.reason.as_ref().map(|why| format!(" ({why})"));
                format!(
                    "{} {}{build}{}",
                    r.git_ref,
                    r.outcome,
                    reason.unwrap_or_default()
                )
            })
            .collect();
        Some(each.join("; "))
    }
}

/// What became of one ref change of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RefOutcomeView {
    /// Full ref.
    #[serde(rename = "ref")]
    pub(crate) git_ref: String,
    /// queued, coalesced, deferred, rejected, ignored.
    pub(crate) outcome: String,
    /// The build it queued, joined or was deferred into, if any.
    pub(crate) build: Option<u64>,
    /// Why it was not built, when it was not.
    pub(crate) reason: Option<String>,
}

/// Daemon status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StatusView {
    /// hookd version.
    pub(crate) version: String,
    /// Seconds since start.
    pub(crate) uptime_secs: u64,
    /// Configured workers.
    pub(crate) workers: usize,
    /// Builds running now.
    pub(crate) running: usize,
    /// Builds waiting.
    pub(crate) queued: usize,
    /// Hook endpoint.
    pub(crate) listen: String,
    /// Data dir.
    pub(crate) data_dir: String,
    /// Number of feeds.
    pub(crate) feeds: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let r: Request = serde_json::from_str(r#"{"op":"builds","name":null,"limit":5}"#).unwrap();
        assert!(matches!(r, Request::Builds { limit: 5, .. }));
    }
}
