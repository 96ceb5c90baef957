//! Notifications: the `[[notify]]` targets told about builds, through the outbox.
//!
//! When a build starts or ends, the scheduler reads the [`Context`] (previous result
//! of the feed and ref, repository URL), and [`items`] makes one
//! `Outgoing::Notify` per target that wants the change ([`plan`]); they are written
//! in the same store batch as the change. The sender hands each to [`deliver`], which
//! sends it as the target is configured now: a signed POST ([`sign`], [`payload`]) or
//! a command ([`exec`]). `hookd admin notify test` sends samples with [`test`].

pub(crate) mod exec;
pub(crate) mod payload;
pub(crate) mod plan;
pub(crate) mod sign;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};

use super::client::Client;
use super::forge::{self, Verdict};
use crate::build::{Build, BuildId, BuildStatus, TriggerKind};
use crate::clock::now_ms;
use crate::config::{Config, NotifyEvent, NotifyTarget, TargetKind, WebhookFormat, WebhookTarget};
use crate::feed::{redact_url, Feed, FeedName};
use crate::notice::Notice;
use crate::store::{Outgoing, Store, StoreError};

pub(crate) use payload::Context;
pub(crate) use plan::Moment;

/// The outbox items a change makes: one notice per target that wants it.
pub(crate) fn items(
    config: &Config,
    build: &Build,
    moment: Moment<'_>,
    context: &Context,
) -> Vec<Outgoing> {
    plan::plan(
        &config.notify,
        &build.feed,
        moment,
        context.previous.as_ref(),
    )
    .into_iter()
    .map(|(target, event)| {
        Outgoing::Notify(Box::new(payload::notice(
            &target.name,
            event,
            build,
            context,
        )))
    })
    .collect()
}

/// What a notice of build `id` needs besides the build itself, read from the store
/// before the change is written (blocking: call it on the blocking pool). Nothing is
/// read when no target covers the feed.
pub(crate) fn context(
    store: &Store,
    config: &Config,
    feed: &FeedName,
    id: BuildId,
    at_ms: i64,
) -> Result<Context, StoreError> {
    if !config.notify.iter().any(|t| t.covers(feed)) {
        return Ok(Context::default());
    }
    let build = store.build_required(id)?;
    let earlier =
        |b: &Build| b.id < build.id && b.git_ref == build.git_ref && plan::is_verdict(&b.status);
    let previous = store
        .newest_build_where(build.feed.as_str(), earlier)?
        .map(|b| b.status);
    let repo_url = store
        .feed(build.feed.as_str())?
        .map(|f| redact_url(&f.repo))
        .unwrap_or_default();
    Ok(Context {
        previous,
        repo_url,
        url: config.build_page(build.id),
        at_ms,
    })
}

/// Sends one stored notice to its target as configured now; `item` makes the
/// `webhook-id`, the same on every retry.
pub(crate) async fn deliver(
    client: &Client,
    config: &Config,
    item: u64,
    notice: &Notice,
) -> Verdict {
    let Some(target) = config.notify.iter().find(|t| t.name == notice.target) else {
        return Verdict::Failed(format!(
            "no [[notify]] table is named {:?} any more",
            notice.target
        ));
    };
    let id = format!("hookd-{}-{item}", notice.build);
    send(client, config, target, &id, notice).await
}

/// One target's answer to a sample (`admin notify test`).
#[derive(Debug)]
pub(crate) struct Tried {
    /// The target's name.
    pub(crate) target: String,
    /// webhook or exec.
    pub(crate) kind: &'static str,
    /// What it answered, or why it was not delivered.
    pub(crate) outcome: Result<String, String>,
}

/// Sends a sample notice to each target covering `feed`, now, and says what each
/// answered.
pub(crate) async fn test(config: &Config, feed: &Feed) -> Vec<Tried> {
    let client = Client::new(&config.outbox);
    let mut tried = Vec::new();
    for target in config.notify.iter().filter(|t| t.covers(&feed.name)) {
        let kind = match target.kind {
            TargetKind::Webhook(_) => "webhook",
            TargetKind::Exec(_) => "exec",
        };
        let outcome = match &client {
            Err(e) => Err(e.clone()),
            Ok(client) => {
                let notice = sample(target, feed);
                let id = format!("hookd-test-{}", notice.at_ms);
                match send(client, config, target, &id, &notice).await {
                    Verdict::Done if kind == "exec" => Ok("ran (exit 0)".to_owned()),
                    Verdict::Done => Ok("sent".to_owned()),
                    Verdict::Retry { error, .. } | Verdict::Failed(error) => {
                        Err(format!("failed: {error}"))
                    }
                }
            }
        };
        tried.push(Tried {
            target: target.name.clone(),
            kind,
            outcome,
        });
    }
    tried
}

/// A made-up build 0 of `feed` for the target's first event.
fn sample(target: &NotifyTarget, feed: &Feed) -> Notice {
    let event = target
        .on
        .iter()
        .next()
        .copied()
        .unwrap_or(NotifyEvent::Succeeded);
    let status = match event {
        NotifyEvent::Started => BuildStatus::Running,
        NotifyEvent::Succeeded | NotifyEvent::Fixed => BuildStatus::Succeeded,
        NotifyEvent::Failed | NotifyEvent::Broken => BuildStatus::Failed { exit_code: 1 },
        NotifyEvent::Error => BuildStatus::Error {
            reason: "sample: hookd admin notify test".into(),
        },
        NotifyEvent::TimedOut => BuildStatus::TimedOut,
        NotifyEvent::Cancelled => BuildStatus::Cancelled,
    };
    let now = now_ms();
    let branch = crate::feed::DEFAULT_BRANCH.to_owned();
    let build = Build {
        id: BuildId(0),
        feed: feed.name.clone(),
        git_ref: format!("refs/heads/{branch}"),
        branch,
        finished_ms: status.is_final().then_some(now),
        status,
        kind: TriggerKind::Manual,
        triggers: Default::default(),
        queue_seq: 0,
        queued_ms: now,
        started_ms: Some(now),
        commit: None,
        subject: Some("hookd admin notify test".into()),
        pgid: None,
        retry_of: None,
    };
    let context = Context {
        previous: None,
        repo_url: redact_url(&feed.repo),
        url: None,
        at_ms: now,
    };
    payload::notice(&target.name, event, &build, &context)
}

/// Sends `notice` to `target` as message `id`.
async fn send(
    client: &Client,
    config: &Config,
    target: &NotifyTarget,
    id: &str,
    notice: &Notice,
) -> Verdict {
    match &target.kind {
        TargetKind::Webhook(hook) => post(client, hook, id, notice).await,
        TargetKind::Exec(command) => {
            let workdir = &config.data_dir;
            let mut env = crate::process::base_env(workdir);
            env.extend(payload::env(notice));
            match exec::run(command, env, workdir, payload::json(notice)).await {
                Ok(()) => Verdict::Done,
                Err(e @ exec::ExecError::Spawn(_)) => Verdict::Failed(e.to_string()),
                Err(e) => Verdict::Retry {
                    after: None,
                    error: e.to_string(),
                },
            }
        }
    }
}

/// POSTs the notice, signed when the target has a secret.
async fn post(client: &Client, hook: &WebhookTarget, id: &str, notice: &Notice) -> Verdict {
    let Some(keys) = &hook.keys else {
        return Verdict::Retry {
            after: None,
            error: "the url_file has not been read".into(),
        };
    };
    let body = match hook.format {
        WebhookFormat::Standard => payload::json(notice),
        WebhookFormat::Slack => payload::slack(notice),
    };
    let mut request = http::Request::post(keys.url.expose())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("hookd/", env!("CARGO_PKG_VERSION")));
    if let Some(key) = &keys.key {
        for (name, value) in sign::headers(key, id, now_ms() / 1000, &body) {
            request = request.header(name, value);
        }
    }
    let request = match request.body(Bytes::from(body)) {
        Ok(request) => request,
        Err(_) => return Verdict::Failed("the url_file does not hold a usable URL".into()),
    };
    let url = keys.url.expose();
    match client.send(request).await {
        Ok(reply) => forge::judge_reply(
            reply.status,
            &reply.headers,
            &reply.body,
            now_ms(),
            "the url_file",
        ),
        // Whatever the error says, the URL (a secret for Slack) is not part of it.
        Err(error) => Verdict::Retry {
            after: None,
            error: error.replace(url, "<url_file>"),
        },
    }
}
