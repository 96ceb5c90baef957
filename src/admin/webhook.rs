//! `hookd admin hook register|status|unregister`: the feed's webhook on its forge,
//! done by the daemon (it holds the API token and the outbox's client).
//!
//! Register is idempotent: a webhook of ours (its URL carries a token of this feed,
//! checked with the server key) is updated, never duplicated. It never opens a window
//! in which a push is refused: the new secret is pending (accepted next to the old
//! one) from before the forge hears of it until the forge has confirmed it; a forge
//! that refuses leaves both sides as they were.

use std::time::Duration;

use crate::admin::commands::{add_token, blocking, delivery_view, CommandError};
use crate::admin::proto::{HookStatusView, Reply, WebhookView};
use crate::admin::rotation;
use crate::app::App;
use crate::clock::now_ms;
use crate::config::Forge;
use crate::feed::Feed;
use crate::registration::{api, reach, ForgeHook, Remote, RemoteError, Wanted};
use crate::secret::Secret;
use crate::token::TokenId;

type Result<T> = std::result::Result<T, CommandError>;

/// How long register waits for GitHub to report its ping delivery.
const PING_WAIT: Duration = Duration::from_secs(10);
/// How often it asks meanwhile.
const PING_POLL: Duration = Duration::from_millis(250);
/// hookd's own deliveries shown by `hook status`.
const DELIVERIES_SHOWN: usize = 5;

impl From<RemoteError> for CommandError {
    fn from(e: RemoteError) -> Self {
        CommandError::Other(e.to_string())
    }
}

/// The events a registration asks for: `push` always, `tag` for tag pushes (GitLab
/// has a switch for them; the others send them as pushes anyway). None named:
/// tags when the feed watches any.
fn wants_tags(feed: &Feed, events: &[String]) -> Result<bool> {
    if events.is_empty() {
        return Ok(feed.branches.iter().any(|p| p.starts_with("refs/tags/")));
    }
    if let Some(odd) = events
        .iter()
        .find(|e| !matches!(e.as_str(), "push" | "tag"))
    {
        return Err(CommandError::Other(format!(
            "unknown event {odd:?}: --events takes push and tag (push,tag)"
        )));
    }
    if !events.iter().any(|e| e == "push") {
        return Err(CommandError::Other(
            "--events must include push: hookd builds pushes".into(),
        ));
    }
    Ok(events.iter().any(|e| e == "tag"))
}

/// The feed, the forge it is on (its `[feeds.NAME.status]`) and the live token ids
/// it has, read on the blocking pool.
async fn remote(app: &App, name: &str) -> Result<(Feed, Remote, Vec<TokenId>)> {
    let name = name.to_owned();
    blocking(app, move |app| {
        let feed = app.store.feed_required(&name)?;
        let config = app.config();
        let status = config.status.get(&name).ok_or_else(|| {
            CommandError::Other(format!(
                "feed {name} names no forge: add a [feeds.{name}.status] table to the config \
                 file (forge, repo, token_file; api_url for a self-hosted forge) and reload"
            ))
        })?;
        let token = app.outbox.tokens().get(&name).ok_or_else(|| {
            CommandError::Other(format!(
                "the API token of feed {name} could not be read from {}; see the daemon's log",
                status.token_file.display()
            ))
        })?;
        let repo = status.repo_for(&feed.repo).map_err(CommandError::Other)?;
        let client =
            crate::outbound::client::Client::new(&config.outbox).map_err(CommandError::Other)?;
        let remote = Remote::new(status.forge, status.api_url.clone(), repo, token, client);
        let live = app
            .store
            .tokens_of(&name)?
            .into_iter()
            .filter(|(_, r)| r.revoked_ms.is_none())
            .map(|(id, _)| id)
            .collect();
        Ok((feed, remote, live))
    })
    .await
}

/// The token id of a webhook URL that is one of ours (minted with this daemon's key
/// for this feed, revoked ones included), if it is.
fn our_token(app: &App, feed: &str, url: &str) -> Option<TokenId> {
    let token = url.rsplit_once("/hooks/")?.1;
    let token = token.split(['?', '#', '/']).next()?;
    let presented = app.key().check(token);
    if !presented.mac_ok {
        return None;
    }
    let record = app.store.token(presented.id).ok()??;
    (record.feed.as_str() == feed).then_some(presented.id)
}

/// The repository's webhooks that are ours, each with its token id.
async fn ours(app: &App, name: &str, hooks: Vec<ForgeHook>) -> Result<Vec<(ForgeHook, TokenId)>> {
    let name = name.to_owned();
    blocking(app, move |app| {
        Ok(hooks
            .into_iter()
            .filter_map(|h| our_token(app, &name, &h.url).map(|id| (h, id)))
            .collect())
    })
    .await
}

/// Claims the feed's webhook for this command, or says another command holds it.
fn claim<'a>(app: &'a App, name: &str) -> Result<crate::app::HookChange<'a>> {
    app.begin_hook_change(name).ok_or_else(|| {
        CommandError::Other(format!(
            "another hook register or unregister for feed {name} is still running; \
             try again when it is done"
        ))
    })
}

/// `hook register`: creates or repairs the feed's webhook with a fresh secret.
pub(crate) async fn register(
    app: &App,
    name: String,
    events: Vec<String>,
    allow_private: bool,
) -> Result<Reply> {
    let _change = claim(app, &name)?;
    let (feed, remote, live) = remote(app, &name).await?;
    if feed.declared {
        return Err(CommandError::Other(format!(
            "feed {name} is declared in the config file: its secret is its secret_file, so \
             hookd cannot rotate it; wire the webhook by hand (README, \"Wiring a forge by \
             hand\")"
        )));
    }
    let tags = wants_tags(&feed, &events)?;
    if !allow_private {
        reach::check_public_url(&app.config().public_url)
            .map_err(|e| CommandError::Other(e.to_string()))?;
    }
    // Read first: a token without the scope is refused here, before anything changes.
    let ours = ours(app, &name, remote.hooks().await?).await?;
    let reuse = ours
        .first()
        .map(|(_, id)| *id)
        .filter(|id| live.contains(id));
    let (token, minted) = match reuse {
        Some(id) => (id, false),
        None => {
            let (n, label) = (name.clone(), remote.forge().word().to_owned());
            let view = blocking(app, move |app| add_token(app, &n, label)).await?;
            let id = TokenId::parse_hex(&view.id)
                .ok_or_else(|| CommandError::Other("internal: minted a bad token id".into()))?;
            (id, true)
        }
    };
    let secret = Secret::generate().map_err(CommandError::Other)?;
    let (n, s) = (name.clone(), secret.clone());
    let begun = blocking(app, move |app| {
        rotation::begin(app, &n, &s)?;
        reload(app)
    })
    .await;
    if let Err(e) = begun {
        undo(app, &name, minted.then_some(token)).await;
        return Err(e);
    }
    let url = app.hook_url(token);
    let wanted = Wanted {
        url: &url,
        secret: &secret,
        tags,
        azure: None,
    };
    let done = match ours.first() {
        Some((hook, _)) => remote.update(&hook.id, wanted).await.map(|()| hook.clone()),
        None => remote.create(wanted).await,
    };
    let hook = match done {
        Ok(hook) => hook,
        Err(e) => {
            undo(app, &name, minted.then_some(token)).await;
            return Err(e.into());
        }
    };
    let n = name.clone();
    blocking(app, move |app| {
        rotation::confirm(app, &n)?;
        reload(app)
    })
    .await?;
    let mut removed = 0;
    for (extra, _) in ours.iter().skip(1) {
        remote.delete(&extra.id).await?;
        removed += 1;
    }
    let verb = if ours.is_empty() {
        "created"
    } else {
        "updated"
    };
    tracing::info!(feed = %name, forge = remote.forge().word(), hook = %hook.id, "webhook {verb}");
    let mut said = format!(
        "webhook {} {verb} on {} {} for feed {name}, with a new secret: {url}",
        hook.id,
        remote.forge().word(),
        remote.repo()
    );
    if removed > 0 {
        said.push_str(&format!(
            "\n{removed} duplicate webhook(s) of hookd's deleted"
        ));
    }
    if remote.forge() == Forge::Github && ours.is_empty() {
        said.push('\n');
        said.push_str(&github_ping(&remote, &hook).await?);
    }
    Ok(Reply::Done(said))
}

/// Puts the feed back as it was after the forge refused: the new secret dropped, a
/// token minted for the webhook forgotten.
async fn undo(app: &App, name: &str, minted: Option<TokenId>) {
    let n = name.to_owned();
    let undone = blocking(app, move |app| {
        if let Some(id) = minted {
            app.store.remove_token(&n, id)?;
        }
        if app.store.feed_required(&n)?.secret_pending {
            rotation::cancel(app, &n)?;
        }
        reload(app)
    })
    .await;
    if let Err(e) = undone {
        tracing::error!(feed = %name, error = %e, "cannot undo a refused registration");
    }
}

fn reload(app: &App) -> Result<()> {
    app.routes.reload(&app.store, &app.config().data_dir)?;
    Ok(())
}

/// GitHub pings a new webhook by itself; its `last_response` then tells whether
/// hookd answered. A failed ping is an error that says what to check (the webhook
/// stays: the forge has the new secret).
async fn github_ping(remote: &Remote, hook: &ForgeHook) -> Result<String> {
    let deadline = tokio::time::Instant::now() + PING_WAIT;
    loop {
        let now = remote.hook(&hook.id).await?;
        match (api::delivered(&now), now.last_response) {
            (Some(true), Some(reply)) => return Ok(format!("GitHub's ping was answered: {reply}")),
            (Some(false), Some(reply)) => {
                return Err(CommandError::Other(format!(
                    "webhook {} is set up, but GitHub's ping failed ({reply}): check that \
                     GitHub reaches public_url (firewall, TLS certificate, reverse proxy)",
                    hook.id
                )))
            }
            _ if tokio::time::Instant::now() >= deadline => {
                return Ok(format!(
                    "GitHub has not reported its ping yet; see `hookd admin hook status` \
                     in a moment ({})",
                    hook.id
                ))
            }
            _ => tokio::time::sleep(PING_POLL).await,
        }
    }
}

/// `hook status`: the forge's view of our webhook next to hookd's deliveries.
pub(crate) async fn status(app: &App, name: String) -> Result<Reply> {
    let (_, remote, _) = remote(app, &name).await?;
    let ours = ours(app, &name, remote.hooks().await?).await?;
    let mut webhooks = Vec::new();
    for (hook, _) in ours {
        let hook = match remote.forge() {
            // GitHub's list has the last response already; the others say no more.
            Forge::Github => hook,
            _ => remote.hook(&hook.id).await?,
        };
        webhooks.push(WebhookView {
            id: hook.id,
            url: hook.url,
            active: hook.active,
            events: hook.events,
            last_response: hook.last_response,
        });
    }
    let n = name.clone();
    let deliveries = blocking(app, move |app| {
        Ok(app
            .store
            .deliveries(&n, DELIVERIES_SHOWN)?
            .into_iter()
            .map(delivery_view)
            .collect())
    })
    .await?;
    Ok(Reply::HookStatus(HookStatusView {
        feed: name,
        forge: remote.forge().word().to_owned(),
        repo: remote.repo().to_owned(),
        webhooks,
        deliveries,
    }))
}

/// `hook unregister`: deletes our webhooks on the forge and revokes their tokens.
pub(crate) async fn unregister(app: &App, name: String) -> Result<Reply> {
    let _change = claim(app, &name)?;
    let (_, remote, _) = remote(app, &name).await?;
    let ours = ours(app, &name, remote.hooks().await?).await?;
    if ours.is_empty() {
        return Ok(Reply::Done(format!(
            "no webhook of hookd's for feed {name} on {} {}; nothing deleted",
            remote.forge().word(),
            remote.repo()
        )));
    }
    for (hook, token) in &ours {
        remote.delete(&hook.id).await?;
        let (n, id) = (name.clone(), *token);
        blocking(app, move |app| {
            app.store.revoke_token(&n, id, now_ms())?;
            reload(app)
        })
        .await?;
        tracing::info!(feed = %name, hook = %hook.id, token_id = %token, "webhook deleted, token revoked");
    }
    let ids: Vec<&str> = ours.iter().map(|(h, _)| h.id.as_str()).collect();
    Ok(Reply::Done(format!(
        "webhook {} deleted on {} {}; its hook URL is revoked",
        ids.join(", "),
        remote.forge().word(),
        remote.repo()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_default_to_tags_when_the_feed_watches_them() {
        let mut feed = crate::feed::sample("web");
        assert!(!wants_tags(&feed, &[]).unwrap());
        feed.branches.push("refs/tags/v*".into());
        assert!(wants_tags(&feed, &[]).unwrap());
        assert!(!wants_tags(&feed, &["push".into()]).unwrap());
        assert!(wants_tags(&feed, &["push".into(), "tag".into()]).unwrap());
        let err = wants_tags(&feed, &["tag".into()]).unwrap_err().to_string();
        assert!(err.contains("must include push"), "{err}");
        let err = wants_tags(&feed, &["pr".into()]).unwrap_err().to_string();
        assert!(err.contains("unknown event \"pr\""), "{err}");
    }
}
