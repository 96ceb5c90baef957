//! The handles every daemon task shares: settings, store, token key, scheduler.
//!
//! Built once by `daemon` at start-up and passed down; nothing here owns a task.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::config::{Config, LiveConfig};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::store::Store;
use crate::token::ServerKey;

/// Checks a feed's repository as its builds will reach it: (settings, feed name, URL,
/// whether to list a network remote's refs) → the refs listed, if asked, or why the
/// builds could not use it. The daemon passes `runner::check_repo`, so admin reaches
/// git through this and never imports the runner.
pub(crate) type RepoCheck = fn(&Config, &str, &str, bool) -> Result<Option<Vec<String>>, String>;

/// Shared daemon state; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct App {
    /// Current settings; replaced whole on SIGHUP.
    config: LiveConfig,
    /// The database.
    pub(crate) store: Store,
    /// Mints and checks hook tokens; replaced only by `admin import` into an empty daemon.
    key: Arc<RwLock<ServerKey>>,
    /// Admits triggers and runs builds.
    pub(crate) scheduler: Scheduler,
    /// For uptime.
    pub(crate) started: Instant,
    /// Counters for `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
    /// Tokens, feeds and secrets in memory for the webhook path.
    pub(crate) routes: crate::intake::Routes,
    /// How admin checks a new or edited feed's repository.
    pub(crate) check_repo: RepoCheck,
    /// The outbox's handle: the forges' API tokens (`hook register` uses them too).
    pub(crate) outbox: crate::outbound::Outbox,
    /// Feeds whose forge webhook an admin command is changing right now.
    hook_changes: Arc<Mutex<HashSet<String>>>,
}

/// A feed's webhook being changed by one admin command; the feed is free again when
/// this is dropped.
pub(crate) struct HookChange<'a> {
    app: &'a App,
    feed: String,
}

impl Drop for HookChange<'_> {
    fn drop(&mut self) {
        lock(&self.app.hook_changes).remove(&self.feed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    /// Bundles the daemon's shared parts.
    pub(crate) fn new(
        config: LiveConfig,
        store: Store,
        key: ServerKey,
        scheduler: Scheduler,
        metrics: Arc<Metrics>,
        check_repo: RepoCheck,
        outbox: crate::outbound::Outbox,
    ) -> Self {
        Self {
            config,
            store,
            key: Arc::new(RwLock::new(key)),
            scheduler,
            started: Instant::now(),
            metrics,
            routes: Default::default(),
            check_repo,
            outbox,
            hook_changes: Arc::default(),
        }
    }

    /// Claims `feed`'s webhook for one `hook register` or `unregister`; `None` while
    /// another holds it. Two at once would each read the forge's webhooks before the
    /// other wrote, and could leave two webhooks or a secret the forge never got.
    pub(crate) fn begin_hook_change(&self, feed: &str) -> Option<HookChange<'_>> {
        lock(&self.hook_changes)
            .insert(feed.to_owned())
            .then(|| HookChange {
                app: self,
                feed: feed.to_owned(),
            })
    }

    /// Sends a sample notification to each `[[notify]]` target covering `feed`, now
    /// (not through the outbox), and says what each answered.
    pub(crate) async fn notify_test(
        &self,
        feed: &crate::feed::Feed,
    ) -> Vec<crate::outbound::notify::Tried> {
        crate::outbound::notify::test(&self.config(), feed).await
    }

    /// The settings in force now.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// Swaps in reloaded settings.
    pub(crate) fn set_config(&self, config: Config) {
        self.config.set(config);
    }

    /// The token key in force.
    pub(crate) fn key(&self) -> ServerKey {
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in an imported key (the file on disk is written by the caller first).
    pub(crate) fn set_key(&self, key: ServerKey) {
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// The hook URL for a token.
    pub(crate) fn hook_url(&self, id: crate::token::TokenId) -> String {
        format!(
            "{}/hooks/{}",
            self.config().public_url,
            self.key().token_for(id).expose()
        )
    }
}
