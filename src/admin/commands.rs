//! What each admin request does on the daemon side. Store work runs on the blocking
//! pool; every failure becomes a `Reply::Error` with a message for the operator.

use crate::admin::proto::{
    BuildView, DeliveryView, FeedSpec, FeedView, NotifyResultView, OutboxView, QueueOut,
    RefOutcomeView, Reply, Request, StatusView, TokenView, TriggerView,
};
use crate::app::App;
use crate::build::{BuildId, Trigger, TriggerKind};
use crate::clock::{now_ms, rfc3339};
use crate::feed::{self, CommandSpec, Feed, FeedError, FeedName};
use crate::hook;
use crate::scheduler::{CancelOutcome, Submission};
use crate::secret::Secret;
use crate::store::{Admission, ItemState, OutboxId, Outgoing, StoreError};
use crate::token::TokenId;

/// Why an admin request failed; the text goes to the operator's stderr.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// Bad input.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// Store failure or missing record.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else worth a sentence.
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, CommandError>;

/// Runs one request (all but a followed log, which `server` streams).
pub(crate) async fn execute(app: &App, req: Request) -> Reply {
    let changes_hooks = matches!(
        req,
        Request::FeedAdd { .. }
            | Request::FeedEdit { .. }
            | Request::FeedRemove { .. }
            | Request::FeedPause { .. }
            | Request::TokenAdd { .. }
            | Request::TokenRevoke { .. }
            | Request::SecretRotate { .. }
            | Request::SecretConfirm { .. }
            | Request::SecretCancel { .. }
            | Request::HookRegister { .. }
            | Request::HookUnregister { .. }
            | Request::Import { .. }
    );
    let mut result = match req {
        Request::Trigger {
            name,
            branch,
            force,
            any_ref,
        } => trigger(app, name, branch, force, any_ref).await,
        Request::Cancel { id } => cancel(app, id).await,
        Request::NotifyTest { name } => notify_test(app, name).await,
        Request::FeedRemove { name } => remove(app, name).await,
        Request::HookRegister {
            name,
            events,
            allow_private,
        } => crate::admin::webhook::register(app, name, events, allow_private).await,
        Request::HookStatus { name } => crate::admin::webhook::status(app, name).await,
        Request::HookUnregister { name } => crate::admin::webhook::unregister(app, name).await,
        other => blocking(app, move |app| sync_command(app, other)).await,
    };
    if changes_hooks {
        // Even a failed change may have partly landed (e.g. a feed added, its token
        // not): the webhook path must see what the store holds.
        let reloaded = blocking(app, |app| {
            app.routes.reload(&app.store, &app.config().data_dir)?;
            Ok(Reply::Done(String::new()))
        })
        .await;
        if let (Ok(_), Err(e)) = (&result, reloaded) {
            result = Err(e);
        }
    }
    result.unwrap_or_else(|e| Reply::Error(e.to_string()))
}

/// Runs store and file work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&App) -> Result<T> + Send + 'static,
) -> Result<T> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&app))
        .await
        .map_err(|_| CommandError::Other("daemon is shutting down".into()))?
}

fn sync_command(app: &App, req: Request) -> Result<Reply> {
    let store = &app.store;
    match req {
        Request::FeedAdd { name, spec } => add_feed(app, &name, spec),
        Request::FeedList => Ok(Reply::Feeds(
            store
                .feeds()?
                .iter()
                .map(|f| feed_view(app, f))
                .collect::<Result<_>>()?,
        )),
        Request::FeedShow { name } => {
            Ok(Reply::Feed(feed_view(app, &store.feed_required(&name)?)?))
        }
        Request::FeedEdit { name, spec } => {
            refuse_if_declared(app, &store.feed_required(&name)?, "edit")?;
            edit_feed(app, &name, spec)
        }
        Request::FeedAdopt { name } => adopt(app, &name),
        Request::Plan { file, text } => plan(app, file, &text),
        Request::FeedPause { name, paused } => {
            let feed = store.update_feed(&name, |mut f| {
                f.paused = paused;
                f
            })?;
            app.scheduler.wake();
            let word = if paused { "paused" } else { "resumed" };
            tracing::info!(feed = %feed.name, "feed {word}");
            Ok(Reply::Done(format!("feed {name} {word}")))
        }
        Request::TokenAdd { name, label } => {
            add_token(app, &name, label).map(|t| Reply::Tokens(vec![t]))
        }
        Request::TokenList { name } => {
            store.feed_required(&name)?;
            Ok(Reply::Tokens(tokens(app, &name, true)?))
        }
        Request::TokenRevoke { name, token_id } => {
            let id = TokenId::parse_hex(&token_id).ok_or_else(|| {
                CommandError::Other(format!("{token_id:?} is not a token id (see `token list`)"))
            })?;
            store.revoke_token(&name, id, now_ms())?;
            tracing::info!(feed = %name, token_id = %id, "token revoked");
            Ok(Reply::Done(format!("token {id} of feed {name} revoked")))
        }
        Request::SecretRotate { name, secret } => {
            let secret = Secret::new(secret).map_err(|_| empty_secret())?;
            let feed = crate::admin::rotation::begin(app, &name, &secret)?;
            Ok(Reply::Feed(feed_view(app, &feed)?))
        }
        Request::SecretConfirm { name } => {
            let feed = crate::admin::rotation::confirm(app, &name)?;
            Ok(Reply::Feed(feed_view(app, &feed)?))
        }
        Request::SecretCancel { name } => {
            let feed = crate::admin::rotation::cancel(app, &name)?;
            Ok(Reply::Feed(feed_view(app, &feed)?))
        }
        Request::HookUrl { name } => {
            store.feed_required(&name)?;
            Ok(Reply::Tokens(tokens(app, &name, false)?))
        }
        Request::Queue => queue(app).map(Reply::Queue),
        Request::Builds { name, limit } => {
            if let Some(name) = &name {
                store.feed_required(name)?;
            }
            let builds = store.builds(name.as_deref(), limit)?;
            Ok(Reply::Builds(build_views(app, &builds)?))
        }
        Request::BuildShow { id } => {
            let build = store.build_required(BuildId(id))?;
            let mut views = build_views(app, std::slice::from_ref(&build))?;
            Ok(Reply::Build(Box::new(views.remove(0))))
        }
        Request::Deliveries { name, limit } => {
            store.feed_required(&name)?;
            Ok(Reply::Deliveries(
                store
                    .deliveries(&name, limit)?
                    .into_iter()
                    .map(delivery_view)
                    .collect(),
            ))
        }
        Request::Outbox => Ok(Reply::Outbox(
            store.outbox()?.into_iter().map(outbox_view).collect(),
        )),
        Request::OutboxRetry { id } => {
            if !store.outbox_retry(OutboxId(id), crate::clock::now_ms())? {
                return Err(CommandError::Other(format!("no outbox item {id}")));
            }
            store.durable_blocking()?;
            app.scheduler.wake_outbox();
            Ok(Reply::Done(format!(
                "outbox item {id} will be sent again now"
            )))
        }
        Request::OutboxDrop { id } => {
            if !store.outbox_drop(OutboxId(id))? {
                return Err(CommandError::Other(format!("no outbox item {id}")));
            }
            store.durable_blocking()?;
            Ok(Reply::Done(format!(
                "outbox item {id} dropped; it will not be sent"
            )))
        }
        Request::Status => status(app).map(Reply::Status),
        Request::Export => crate::admin::backup::export(app),
        Request::Import { backup } => crate::admin::backup::import(app, backup),
        Request::Trigger { .. }
        | Request::Cancel { .. }
        | Request::NotifyTest { .. }
        | Request::FeedRemove { .. }
        | Request::HookRegister { .. }
        | Request::HookStatus { .. }
        | Request::HookUnregister { .. }
        | Request::Log { .. } => Err(CommandError::Other(
            "internal: request routed to the wrong handler".into(),
        )),
    }
}

fn add_feed(app: &App, name: &str, spec: FeedSpec) -> Result<Reply> {
    let name = FeedName::parse(name)?;
    let repo = spec
        .repo
        .clone()
        .ok_or_else(|| CommandError::Other("--repo URL is required".into()))?;
    let secret = spec_secret(&spec)?;
    let feed = Feed {
        name: name.clone(),
        repo,
        branches: if spec.branches.is_empty() {
            vec![feed::DEFAULT_BRANCH.into()]
        } else {
            spec.branches.clone()
        },
        command: CommandSpec::from_words(spec.command.clone())?,
        cooldown_secs: spec.cooldown_secs.unwrap_or(feed::DEFAULT_COOLDOWN_SECS),
        on_cooldown: spec.on_cooldown.unwrap_or_default(),
        timeout_secs: spec.timeout_secs.unwrap_or(feed::DEFAULT_TIMEOUT_SECS),
        has_secret: secret.is_some(),
        paused: false,
        created_ms: now_ms(),
        badge: spec.badge.unwrap_or(false),
        declared: false,
        retired_ms: None,
        secret_pending: false,
    };
    feed::validate(&feed)?;
    // Refuse a taken name before touching its secret file.
    if app.store.feed(name.as_str())?.is_some() {
        return Err(StoreError::FeedExists(name.to_string()).into());
    }
    let remote_refs = check_repo(app, &feed, spec.check)?;
    if let Some(secret) = &secret {
        save_secret(app, &name, secret)?;
    }
    app.store.add_feed(&feed)?;
    add_token(app, name.as_str(), "default".into())?;
    tracing::info!(feed = %name, "feed added");
    let mut view = feed_view(app, &feed)?;
    view.remote_refs = remote_refs;
    Ok(Reply::Feed(view))
}

fn edit_feed(app: &App, name: &str, spec: FeedSpec) -> Result<Reply> {
    let old = app.store.feed_required(name)?;
    let secret = spec_secret(&spec)?;
    let command = match spec.command.is_empty() {
        true => old.command.clone(),
        false => CommandSpec::from_words(spec.command.clone())?,
    };
    let has_secret = match (&secret, spec.clear_secret) {
        (Some(_), _) => true,
        (None, true) => false,
        (None, false) => old.has_secret,
    };
    let new = Feed {
        repo: spec.repo.clone().unwrap_or(old.repo.clone()),
        branches: if spec.branches.is_empty() {
            old.branches.clone()
        } else {
            spec.branches.clone()
        },
        command,
        cooldown_secs: spec.cooldown_secs.unwrap_or(old.cooldown_secs),
        on_cooldown: spec.on_cooldown.unwrap_or(old.on_cooldown),
        timeout_secs: spec.timeout_secs.unwrap_or(old.timeout_secs),
        has_secret,
        // Setting or clearing the secret by hand ends a pending rotation.
        secret_pending: old.secret_pending && secret.is_none() && !spec.clear_secret,
        badge: spec.badge.unwrap_or(old.badge),
        ..old.clone()
    };
    feed::validate(&new)?;
    let remote_refs = match new.repo != old.repo || spec.check {
        true => check_repo(app, &new, spec.check)?,
        false => None,
    };
    match (&secret, spec.clear_secret) {
        (Some(secret), _) => save_secret(app, &new.name, secret)?,
        (None, true) => crate::secret::remove(&app.config().data_dir, &new.name)
            .map_err(|e| CommandError::Other(format!("cannot remove the secret file: {e}")))?,
        (None, false) => {}
    }
    let stored = app.store.update_feed(name, |_| new.clone())?;
    if old.secret_pending && !stored.secret_pending {
        crate::admin::rotation::drop_pending(app, &stored.name);
    }
    app.scheduler.wake();
    tracing::info!(feed = %name, "feed edited");
    let mut view = feed_view(app, &stored)?;
    view.remote_refs = remote_refs;
    Ok(Reply::Feed(view))
}

/// Refuses a repository the builds could not use: a local path that is no git
/// repository, and with `list_remote` a network remote that does not answer or lists
/// none of the feed's watched refs. Returns the watched refs a listing found.
fn check_repo(app: &App, feed: &Feed, list_remote: bool) -> Result<Option<Vec<String>>> {
    let config = app.config();
    let refs = (app.check_repo)(&config, feed.name.as_str(), &feed.repo, list_remote)
        .map_err(CommandError::Other)?;
    let Some(refs) = refs else {
        return Ok(None);
    };
    let rules = crate::hook::WatchRules {
        patterns: &feed.branches,
    };
    let watched: Vec<String> = refs.iter().filter(|r| rules.watches(r)).cloned().collect();
    if watched.is_empty() {
        let listed: Vec<&str> = refs
            .iter()
            .filter_map(|r| r.strip_prefix("refs/heads/"))
            .take(10)
            .collect();
        return Err(CommandError::Other(format!(
            "{} lists no ref the feed watches ({}); its branches: {}",
            crate::feed::redact_url(&feed.repo),
            feed.branches.join(", "),
            if listed.is_empty() {
                "none".into()
            } else {
                listed.join(", ")
            }
        )));
    }
    Ok(Some(watched))
}

/// The webhook secret a spec carries, refused when empty.
fn spec_secret(spec: &FeedSpec) -> Result<Option<Secret>> {
    spec.secret
        .clone()
        .map(Secret::new)
        .transpose()
        .map_err(|_| empty_secret())
}

fn empty_secret() -> CommandError {
    CommandError::Other("the secret file is empty; a webhook secret must not be empty".into())
}

fn save_secret(app: &App, name: &FeedName, secret: &Secret) -> Result<()> {
    crate::secret::save(&app.config().data_dir, name, secret)
        .map_err(|e| CommandError::Other(format!("cannot store the webhook secret: {e}")))
}

/// Removes a feed: first refused if the config file owns it, then its running build
/// is stopped and its records deleted.
async fn remove(app: &App, name: String) -> Result<Reply> {
    let checked = name.clone();
    blocking(app, move |app| {
        refuse_if_declared(app, &app.store.feed_required(&checked)?, "remove")
    })
    .await?;
    if let Ok(feed) = FeedName::parse(&name) {
        app.scheduler.cancel_feed(&feed);
    }
    blocking(app, move |app| remove_feed(app, &name)).await
}

/// The CLI changes no feed the config file owns: it says where to change it instead.
/// A retired feed may be removed (with its history), not edited.
fn refuse_if_declared(app: &App, feed: &Feed, verb: &str) -> Result<()> {
    if !feed.declared || (feed.retired() && verb == "remove") {
        return Ok(());
    }
    let config = app.config();
    let name = &feed.name;
    let to_do = match (feed.retired(), verb) {
        (true, _) => format!(
            "it is retired; declare it again in {} and reload (`systemctl reload hookd`)",
            config.declared_at(name)
        ),
        (false, "remove") => {
            "delete its table there and reload (`systemctl reload hookd`) to retire it".to_owned()
        }
        (false, _) => "change it there and reload (`systemctl reload hookd`)".to_owned(),
    };
    let at = match feed.retired() {
        true => String::new(),
        false => format!(" in {}", config.declared_at(name)),
    };
    Err(CommandError::Other(format!(
        "cannot {verb} feed {name}: it is declared{at}; {to_do}"
    )))
}

/// `feed adopt`: the config file takes over a feed made with the CLI (its tokens and
/// history stay). The file must declare it; its settings apply at the next reload.
fn adopt(app: &App, name: &str) -> Result<Reply> {
    let feed = app.store.feed_required(name)?;
    if feed.declared {
        return Err(CommandError::Other(format!(
            "feed {name} is already declared in the config file"
        )));
    }
    let source = app.config().source.clone().ok_or_else(|| {
        CommandError::Other("the daemon runs without a config file (--config)".into())
    })?;
    let args = crate::cli::ConfigArgs {
        config: Some(source.clone()),
        ..Default::default()
    };
    let config = crate::config::Config::load_settings(&args)
        .map_err(|e| CommandError::Other(e.to_string()))?;
    if !config.declared.contains_key(&feed.name) {
        return Err(CommandError::Other(format!(
            "{} declares no feed {name}: add a [feeds.{name}] table with its repo first",
            source.display()
        )));
    }
    app.store.update_feed(name, |f| Feed {
        declared: true,
        ..f
    })?;
    tracing::info!(feed = name, "feed adopted by the config file");
    Ok(Reply::Done(format!(
        "feed {name} adopted: {} owns it now; reload (`systemctl reload hookd`) to apply it",
        config.declared_at(&feed.name)
    )))
}

/// `check-config --plan`: what the file the client sent would change, applying nothing.
fn plan(app: &App, file: String, text: &str) -> Result<Reply> {
    let path = std::path::PathBuf::from(file);
    let args = crate::cli::ConfigArgs {
        config: Some(path.clone()),
        ..Default::default()
    };
    let config = crate::config::Config::from_text_checked(&path, text, &args)
        .map_err(|e| CommandError::Other(e.to_string()))?;
    let plan = crate::admin::declared::plan(app, &config)?;
    Ok(Reply::Plan(crate::admin::declared::view(&plan, &config)))
}

fn remove_feed(app: &App, name: &str) -> Result<Reply> {
    let feed = FeedName::parse(name)?;
    let removed = app.store.remove_feed(&feed)?;
    let data_dir = app.config().data_dir.clone();
    for id in &removed {
        crate::paths::remove_log(&data_dir, BuildId(*id));
    }
    crate::paths::remove_feed_dirs(&data_dir, &feed);
    if let Err(e) = crate::secret::remove(&data_dir, &feed) {
        tracing::warn!(feed = %feed, error = %e, "cannot remove the feed's secret file");
    }
    tracing::info!(feed = %feed, "feed removed");
    let builds = match removed.len() {
        1 => "1 build".to_owned(),
        n => format!("{n} builds"),
    };
    Ok(Reply::Done(format!(
        "feed {name} removed ({builds} deleted)"
    )))
}

/// Mints a token for a feed and stores it; returns it with its hook URL.
pub(super) fn add_token(app: &App, name: &str, label: String) -> Result<TokenView> {
    let label = label.trim().to_owned();
    if label.is_empty() || label.len() > 64 || label.chars().any(char::is_control) {
        return Err(CommandError::Other(
            "a token label must be 1-64 printable characters".into(),
        ));
    }
    let feed = app.store.feed_required(name)?;
    let (id, _) = app
        .key()
        .mint()
        .map_err(|e| CommandError::Other(e.to_string()))?;
    let record = crate::store::TokenRecord {
        feed: feed.name,
        label,
        created_ms: now_ms(),
        revoked_ms: None,
    };
    app.store.add_token(id, &record)?;
    tracing::info!(feed = %name, token_id = %id, "token added");
    Ok(token_view(app, id, &record))
}

fn tokens(app: &App, name: &str, include_revoked: bool) -> Result<Vec<TokenView>> {
    Ok(app
        .store
        .tokens_of(name)?
        .iter()
        .filter(|(_, r)| include_revoked || r.revoked_ms.is_none())
        .map(|(id, r)| token_view(app, *id, r))
        .collect())
}

fn token_view(app: &App, id: TokenId, r: &crate::store::TokenRecord) -> TokenView {
    TokenView {
        id: id.to_string(),
        label: r.label.clone(),
        created: rfc3339(r.created_ms),
        revoked: r.revoked_ms.map(rfc3339),
        url: r.revoked_ms.is_none().then(|| app.hook_url(id)),
    }
}

fn feed_view(app: &App, feed: &Feed) -> Result<FeedView> {
    let mut view = FeedView::new(feed, tokens(app, feed.name.as_str(), false)?);
    if feed.declared && !feed.retired() {
        view.declared_at = Some(app.config().declared_at(&feed.name));
    }
    Ok(view)
}

/// The full ref a manual trigger builds: the one named (a branch name or a full
/// ref), which the feed must watch unless `any_ref`; else the feed's default, if the
/// feed has one (a feed watching only tag globs has none).
fn manual_ref(feed: &Feed, named: Option<String>, any_ref: bool) -> Result<String> {
    let rules = hook::WatchRules::of(feed);
    let Some(name) = named else {
        return hook::implicit_ref(&rules).map_err(|none| {
            CommandError::Other(format!(
                "feed {}: {none}; name one with --ref refs/tags/NAME or --branch NAME",
                feed.name
            ))
        });
    };
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(CommandError::Other(format!("invalid branch name {name:?}")));
    }
    let git_ref = match name.starts_with("refs/") {
        true => name,
        false => format!("refs/heads/{name}"),
    };
    if !any_ref && !rules.watches(&git_ref) {
        return Err(CommandError::Other(format!(
            "feed {} does not watch {git_ref} (it watches {}); pass --any-ref to build it anyway",
            feed.name,
            feed.branches.join(", ")
        )));
    }
    Ok(git_ref)
}

async fn trigger(
    app: &App,
    name: String,
    branch: Option<String>,
    force: bool,
    any_ref: bool,
) -> Result<Reply> {
    let store = app.store.clone();
    let feed = tokio::task::spawn_blocking(move || store.feed_required(&name))
        .await
        .map_err(|_| CommandError::Other("daemon is shutting down".into()))??;
    if feed.retired() {
        return Err(CommandError::Other(format!(
            "feed {} is retired (it left the config file); declare it again to build it",
            feed.name
        )));
    }
    let git_ref = manual_ref(&feed, branch, any_ref)?;
    let sub = Submission {
        branch: hook::short_name(&git_ref).to_owned(),
        git_ref,
        trigger: Trigger {
            accepted_ms: now_ms(),
            kind: TriggerKind::Manual,
            provider: "manual".into(),
            event: "manual".into(),
            delivery_id: None,
            commit: None,
        },
        force,
        delivery: None,
        feed,
    };
    let admission = app
        .scheduler
        .submit(sub)
        .await
        .map_err(|e| CommandError::Other(e.to_string()))?;
    let view = |status: &str, build: BuildId, run_at: Option<i64>| TriggerView {
        status: status.to_owned(),
        build: build.0,
        run_at: run_at.map(rfc3339),
    };
    match admission {
        Admission::Queued(id) => Ok(Reply::Triggered(view("queued", id, None))),
        Admission::Coalesced(id) => Ok(Reply::Triggered(view("coalesced", id, None))),
        Admission::Deferred { build, run_at_ms } => {
            Ok(Reply::Triggered(view("deferred", build, Some(run_at_ms))))
        }
        Admission::Rejected { retry_after_secs } => Err(CommandError::Other(format!(
            "feed is cooling down (policy reject); retry in {retry_after_secs} s or use --force"
        ))),
        Admission::Replayed(_) => Err(CommandError::Other(
            "internal: manual trigger replayed".into(),
        )),
    }
}

async fn cancel(app: &App, id: u64) -> Result<Reply> {
    let outcome = app
        .scheduler
        .cancel(BuildId(id))
        .await
        .map_err(|e| match e {
            crate::scheduler::ScheduleError::Store(s) => CommandError::Store(s),
            other => CommandError::Other(other.to_string()),
        })?;
    match outcome {
        CancelOutcome::Dequeued => Ok(Reply::Done(format!(
            "build {id} cancelled (it had not started)"
        ))),
        CancelOutcome::Stopping => Ok(Reply::Done(format!("build {id} is being stopped"))),
        CancelOutcome::AlreadyOver(status) => Err(CommandError::Other(format!(
            "build {id} is not queued or running (it is {status})"
        ))),
    }
}

/// `notify test`: a sample notification to each of the feed's targets, now.
async fn notify_test(app: &App, name: String) -> Result<Reply> {
    let feed = blocking(app, move |app| Ok(app.store.feed_required(&name)?)).await?;
    let results: Vec<NotifyResultView> = app
        .notify_test(&feed)
        .await
        .into_iter()
        .map(|tried| NotifyResultView {
            target: tried.target,
            kind: tried.kind.to_owned(),
            ok: tried.outcome.is_ok(),
            result: tried.outcome.unwrap_or_else(|e| e),
        })
        .collect();
    if results.is_empty() {
        return Err(CommandError::Other(format!(
            "no [[notify]] table of the config file covers feed {}",
            feed.name
        )));
    }
    Ok(Reply::NotifyTest(results))
}

/// Running, queued and deferred builds (also the web side's `/api/v1/queue`).
pub(super) fn queue(app: &App) -> Result<QueueOut> {
    let view = app.store.queue_view(now_ms(), QUEUE_SHOWN)?;
    let paused = paused_feeds(app)?;
    let mut out = QueueOut {
        running: view.running.iter().map(BuildView::new).collect(),
        queued: Vec::new(),
        deferred: Vec::new(),
    };
    for (build, not_before) in view.waiting {
        let mut v = BuildView::new(&build);
        v.run_at = not_before.map(rfc3339);
        v.feed_paused = paused.contains(&v.feed);
        match not_before {
            Some(_) => out.deferred.push(v),
            None => out.queued.push(v),
        }
    }
    Ok(out)
}

/// Waiting builds the queue view reads at most.
const QUEUE_SHOWN: usize = 1000;

/// Views of stored builds with what only the queue and the feeds know: when a
/// deferred build may start, and whether a queued one waits on a paused feed.
pub(super) fn build_views(app: &App, builds: &[crate::build::Build]) -> Result<Vec<BuildView>> {
    let mut views: Vec<BuildView> = builds.iter().map(BuildView::new).collect();
    if !views.iter().any(|v| v.status == "queued") {
        return Ok(views);
    }
    let waiting = app.store.queue_view(now_ms(), QUEUE_SHOWN)?.waiting;
    let paused = paused_feeds(app)?;
    for v in views.iter_mut().filter(|v| v.status == "queued") {
        v.feed_paused = paused.contains(&v.feed);
        v.run_at = waiting
            .iter()
            .find(|(b, _)| b.id.0 == v.id)
            .and_then(|(_, not_before)| not_before.map(rfc3339));
    }
    Ok(views)
}

fn paused_feeds(app: &App) -> Result<std::collections::HashSet<String>> {
    Ok(app
        .store
        .feeds()?
        .into_iter()
        .filter(|f| f.paused)
        .map(|f| f.name.to_string())
        .collect())
}

/// Daemon status (also the web side's `/api/v1/status`).
pub(super) fn status(app: &App) -> Result<StatusView> {
    let config = app.config();
    Ok(StatusView {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: app.started.elapsed().as_secs(),
        workers: config.workers,
        running: app.scheduler.running_count(),
        queued: app.store.queue_depth(),
        listen: config.listen.to_string(),
        data_dir: config.data_dir.display().to_string(),
        feeds: app.store.feeds()?.len(),
    })
}

/// An outbox item as operators see it.
fn outbox_view(item: crate::store::OutboxItem) -> OutboxView {
    let (status, commit) = match &item.what {
        Outgoing::Status(post) => (post.state.word().to_owned(), post.commit.clone()),
        Outgoing::Notify(notice) => (
            format!("{} to {}", notice.event.word(), notice.target),
            notice.commit.clone().unwrap_or_default(),
        ),
    };
    let pending = item.state == ItemState::Pending;
    OutboxView {
        id: item.id.0,
        feed: item.feed.to_string(),
        build: item.build.0,
        kind: item.what.kind().to_owned(),
        state: if pending { "pending" } else { "failed" }.to_owned(),
        status,
        commit,
        created: rfc3339(item.created_ms),
        attempts: item.attempts,
        next_attempt: pending.then(|| rfc3339(item.next_ms)),
        last_error: item.last_error,
    }
}

/// A stored delivery as operators see it.
pub(super) fn delivery_view(d: crate::store::DeliveryRecord) -> DeliveryView {
    DeliveryView {
        at: rfc3339(d.at_ms),
        provider: d.provider,
        event: d.event,
        delivery_id: d.delivery_id,
        git_ref: d.git_ref,
        commit: d.commit,
        http_status: d.reply.parts().status.as_u16(),
        build: d.reply.build().map(|b| b.0),
        refs: d
            .reply
            .refs()
            .iter()
            .map(|r| RefOutcomeView {
                git_ref: r.git_ref.clone(),
                outcome: r.reply.word().to_owned(),
                build: r.reply.build().map(|b| b.0),
                reason: r.reply.reason(),
            })
            .collect(),
        outcome: d.outcome,
        reason: d.reason,
    }
}
