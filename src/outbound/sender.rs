//! The sender: one task that posts due outbox items, at most `[outbox] concurrency`
//! at once, and records each attempt's outcome durably before it counts as done.
//!
//! Items are sent only once they are on disk (the sender waits for the store's flush
//! before it sends what it read), and removed only after the forge's reply.
//!
//! It wakes when the scheduler wrote items (or `admin outbox retry` made one due),
//! when the earliest retry comes due, and when a post finishes. Items of one build go
//! one at a time, oldest first; a status post that a newer one of the same build and
//! context replaces before it was sent is dropped as superseded. Backoff doubles from
//! 1 s up to `[outbox] max_backoff`; a forge's Retry-After or rate-limit reset is
//! honoured (capped the same way).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::forge::{self, Target, Verdict};
use super::Outbox;
use crate::build::BuildId;
use crate::clock::now_ms;
use crate::config::LiveConfig;
use crate::metrics::Metrics;
use crate::store::{Attempt, ItemState, OutboxItem, Outgoing, StatusPost, Store, StoreError};

/// The longest the sender sleeps without looking at the store again.
const MAX_NAP: Duration = Duration::from_secs(60);

/// What the sender works with.
pub(crate) struct Sender {
    /// Where the items live.
    store: Store,
    /// Settings in force (status tables, `[outbox]`).
    config: LiveConfig,
    /// Wake-ups and tokens.
    outbox: Outbox,
    /// `hookd_outbox_sent_total`.
    metrics: Arc<Metrics>,
    /// The HTTP client (made at start from `[outbox]`).
    client: Client,
    /// Builds with an item in flight: their other items wait.
    busy: Arc<Mutex<HashSet<BuildId>>>,
}

impl Sender {
    /// A sender over the store's outbox; `run` starts it.
    pub(crate) fn new(
        store: Store,
        config: LiveConfig,
        outbox: Outbox,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let client = Client::new(&config.get().outbox)?;
        Ok(Self {
            store,
            config,
            outbox,
            metrics,
            client,
            busy: Arc::default(),
        })
    }

    /// Sends until `shutdown`; posts in flight then are abandoned, and their items,
    /// still in the store, are sent after the restart.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut flights = JoinSet::new();
        loop {
            let nap = match this.dispatch(&mut flights).await {
                Ok(nap) => nap,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox; retrying in 1 s");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = this.outbox.woken() => {}
                _ = tokio::time::sleep(nap) => {}
                Some(_) = flights.join_next() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        flights.shutdown().await;
    }

    /// Starts every due item it may, drops superseded ones; returns how long until
    /// the next one comes due.
    async fn dispatch(self: &Arc<Self>, flights: &mut JoinSet<()>) -> Result<Duration, StoreError> {
        let store = self.store.clone();
        let now = now_ms();
        let items = tokio::task::spawn_blocking(move || {
            let items = store.outbox()?;
            // Only what is on disk goes out: a post never tells the forge a state
            // that a crash could still take back.
            let due = |i: &OutboxItem| i.state == ItemState::Pending && i.next_ms <= now;
            if items.iter().any(due) {
                store.durable_blocking()?;
            }
            Ok::<_, StoreError>(items)
        })
        .await
        .map_err(|e| StoreError::Durability(e.to_string()))??;
        let concurrency = self.config.get().outbox.concurrency;
        let superseded = superseded(&items);
        let mut seen = HashSet::new();
        let mut next: Option<i64> = None;
        for item in items.into_iter().filter(|i| i.state == ItemState::Pending) {
            if superseded.contains(&item.id) {
                self.record(&item, Attempt::Done, "superseded").await;
                continue;
            }
            // One item per build at a time, oldest first.
            if !seen.insert(item.build) || self.busy().contains(&item.build) {
                continue;
            }
            if item.next_ms > now {
                next = Some(next.map_or(item.next_ms, |n| n.min(item.next_ms)));
                continue;
            }
            if flights.len() >= concurrency {
                next = Some(now);
                break;
            }
            self.busy().insert(item.build);
            let this = self.clone();
            flights.spawn(async move { this.attempt(item).await });
        }
        let nap = next.map_or(MAX_NAP, |t| {
            Duration::from_millis((t - now).clamp(0, MAX_NAP.as_millis() as i64) as u64)
        });
        // Full: a finished flight wakes the loop, not the timer.
        Ok(if flights.len() >= concurrency {
            MAX_NAP
        } else {
            nap
        })
    }

    /// One attempt at one item, then its outcome recorded.
    async fn attempt(self: Arc<Self>, item: OutboxItem) {
        let verdict = self.deliver(&item).await;
        let config = self.config.get();
        let (attempt, outcome) = match verdict {
            Verdict::Done => (Attempt::Done, "sent"),
            Verdict::Failed(error) => (Attempt::Failed { error }, "failed"),
            Verdict::Retry { after, error } => {
                let wait = backoff(item.attempts + 1, after, config.outbox.max_backoff);
                let next_ms = now_ms() + wait.as_millis() as i64;
                (Attempt::Retry { next_ms, error }, "retry")
            }
        };
        let delivered = attempt == Attempt::Done;
        self.log(&item, &attempt);
        self.record(&item, attempt, outcome).await;
        if delivered {
            self.forge_is_back(&item).await;
        }
        self.busy().remove(&item.build);
    }

    /// A post went through: items for the same forge API that wait out a backoff
    /// are due now, so a backlog from an outage flows as soon as the forge answers
    /// again (a new build's post is what usually finds out), not up to a
    /// `max_backoff` later.
    async fn forge_is_back(&self, sent: &OutboxItem) {
        let config = self.config.get();
        let api_of = move |item: &OutboxItem| match &item.what {
            Outgoing::Status(_) => config
                .status
                .get(item.feed.as_str())
                .map(|s| s.api_url.clone()),
            // A notification target that answers again takes its backlog too.
            Outgoing::Notify(notice) => Some(format!("[[notify]] {}", notice.target)),
        };
        let Some(api) = api_of(sent) else { return };
        let store = self.store.clone();
        let now = now_ms();
        let pulled = tokio::task::spawn_blocking(move || {
            let waiting: Vec<_> = store
                .outbox()?
                .into_iter()
                .filter(|i| i.state == ItemState::Pending && i.next_ms > now)
                .filter(|i| api_of(i).as_deref() == Some(api.as_str()))
                .map(|i| i.id)
                .collect();
            for id in &waiting {
                store.outbox_retry(*id, now)?;
            }
            Ok::<_, StoreError>(waiting.len())
        })
        .await;
        if let Ok(Ok(n)) = pulled {
            if n > 0 {
                tracing::info!(
                    items = n,
                    "the forge answers again; sending its backlog now"
                );
                self.outbox.wake();
            }
        }
    }

    /// Counts an outcome and records it durably (counted first, so whoever sees the
    /// item's new state also sees it counted).
    async fn record(&self, item: &OutboxItem, attempt: Attempt, outcome: &'static str) {
        self.metrics.outbox_attempt(item.what.kind(), outcome);
        let (store, id) = (self.store.clone(), item.id);
        let saved = tokio::task::spawn_blocking(move || {
            store.outbox_attempted(id, attempt)?;
            store.durable_blocking()
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::error!(
                item = id.0,
                "cannot record an outbox attempt; it may be sent again"
            );
        }
    }

    fn log(&self, item: &OutboxItem, attempt: &Attempt) {
        let (id, feed, build, kind) = (item.id.0, &item.feed, item.build.0, item.what.kind());
        match attempt {
            Attempt::Done => {
                tracing::info!(item = id, feed = %feed, build, kind, "outbox item sent")
            }
            Attempt::Retry { next_ms, error } => {
                tracing::warn!(item = id, feed = %feed, build, kind, error = %error, retry_at = %crate::clock::rfc3339(*next_ms), "outbox item not sent; will retry")
            }
            Attempt::Failed { error } => {
                tracing::error!(item = id, feed = %feed, build, kind, error = %error, "outbox item refused for good; see `hookd admin outbox`")
            }
        }
    }

    /// Delivers one item: the one place that knows each kind of item.
    async fn deliver(&self, item: &OutboxItem) -> Verdict {
        match &item.what {
            Outgoing::Status(post) => self.post_status(item, post).await,
            Outgoing::Notify(notice) => {
                let config = self.config.get();
                super::notify::deliver(&self.client, &config, item.id.0, notice).await
            }
        }
    }

    /// Posts a commit status with the feed's settings and token as they are now.
    async fn post_status(&self, item: &OutboxItem, post: &StatusPost) -> Verdict {
        let config = self.config.get();
        let feed = item.feed.as_str();
        let Some(settings) = config.status.get(feed) else {
            return Verdict::Failed(format!("feed {feed} has no [feeds.{feed}.status] any more"));
        };
        let Some(token) = self.outbox.tokens().get(feed) else {
            return Verdict::Retry {
                after: None,
                error: format!("no token read from {}", settings.token_file.display()),
            };
        };
        let repo = match &settings.repo {
            Some(repo) => repo.clone(),
            None => match self.feed_url(feed).await {
                Some(url) => match settings.repo_for(&url) {
                    Ok(repo) => repo,
                    Err(e) => return Verdict::Failed(e),
                },
                None => {
                    return Verdict::Failed(format!(
                        "feed {feed} is gone and its status table names no repo"
                    ))
                }
            },
        };
        let target = Target {
            forge: settings.forge,
            api_url: &settings.api_url,
            repo: &repo,
        };
        let request = match forge::request(&target, post, token.expose()) {
            Ok(request) => request,
            Err(e) => return Verdict::Failed(e),
        };
        match self.client.send(request).await {
            Ok(reply) => forge::judge(
                settings.forge,
                reply.status,
                &reply.headers,
                &reply.body,
                now_ms(),
            ),
            Err(error) => Verdict::Retry { after: None, error },
        }
    }

    /// The feed's repository URL as stored now.
    async fn feed_url(&self, feed: &str) -> Option<String> {
        let (store, feed) = (self.store.clone(), feed.to_owned());
        let found = tokio::task::spawn_blocking(move || store.feed(&feed)).await;
        match found {
            Ok(Ok(Some(feed))) => Some(feed.repo),
            _ => None,
        }
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, HashSet<BuildId>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Pending status posts that a newer pending one of the same build and context
/// replaces: the forge would only be told a state that is no longer true.
fn superseded(items: &[OutboxItem]) -> HashSet<crate::store::OutboxId> {
    let mut newest: HashMap<(BuildId, &str), crate::store::OutboxId> = HashMap::new();
    let pending = || items.iter().filter(|i| i.state == ItemState::Pending);
    for item in pending() {
        if let Some(context) = status_context(&item.what) {
            let entry = newest.entry((item.build, context)).or_insert(item.id);
            *entry = (*entry).max(item.id);
        }
    }
    pending()
        .filter(|i| {
            status_context(&i.what)
                .is_some_and(|context| newest.get(&(i.build, context)) != Some(&i.id))
        })
        .map(|i| i.id)
        .collect()
}

/// A status post's context; `None` for kinds that are never superseded.
fn status_context(what: &Outgoing) -> Option<&str> {
    match what {
        Outgoing::Status(post) => Some(&post.context),
        Outgoing::Notify(_) => None,
    }
}

/// The wait before attempt `attempts + 1`: 1 s doubling per failed attempt, or what
/// the forge asked for when longer, never more than `cap`.
pub(crate) fn backoff(attempts: u32, asked: Option<Duration>, cap: Duration) -> Duration {
    let doubling = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(30));
    doubling.max(asked.unwrap_or_default()).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_to_the_cap_and_honours_the_forge() {
        let day = Duration::from_secs(86_400);
        let secs = |n| Duration::from_secs(n);
        assert_eq!(backoff(1, None, day), secs(1));
        assert_eq!(backoff(2, None, day), secs(2));
        assert_eq!(backoff(5, None, day), secs(16));
        assert_eq!(backoff(40, None, day), day);
        assert_eq!(backoff(1, Some(secs(30)), day), secs(30));
        assert_eq!(backoff(6, Some(secs(3)), day), secs(32));
        assert_eq!(backoff(1, Some(secs(3 * 86_400)), day), day);
    }
}
