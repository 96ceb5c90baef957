//! Webhook secret rotation without a refusal window: a new secret waits next to the
//! current one (deliveries signed with either are accepted) until the forge is known
//! to sign with it; confirming makes it the only one, cancelling drops it.
//!
//! Order of writes, so a crash at any point refuses no delivery the forge signs: the
//! pending file before the flag that makes intake read it; the rename that promotes
//! it before the flag is cleared (a crash in between leaves the new secret current and
//! nothing pending, which a second confirm finishes).

use crate::admin::commands::CommandError;
use crate::app::App;
use crate::feed::{Feed, FeedName};
use crate::secret::Secret;

type Result<T> = std::result::Result<T, CommandError>;

/// Starts (or restarts with another secret) a rotation of `name`'s webhook secret.
pub(crate) fn begin(app: &App, name: &str, next: &Secret) -> Result<Feed> {
    let feed = app.store.feed_required(name)?;
    refuse_declared(app, &feed)?;
    crate::secret::save_pending(&app.config().data_dir, &feed.name, next)
        .map_err(|e| file_error("store the new webhook secret", e))?;
    let feed = app.store.update_feed(name, |f| Feed {
        secret_pending: true,
        ..f
    })?;
    tracing::info!(feed = %feed.name, "webhook secret rotation started");
    Ok(feed)
}

/// Makes the pending secret the feed's only secret.
pub(crate) fn confirm(app: &App, name: &str) -> Result<Feed> {
    let feed = pending_feed(app, name)?;
    crate::secret::promote_pending(&app.config().data_dir, &feed.name)
        .map_err(|e| file_error("promote the new webhook secret", e))?;
    let feed = app.store.update_feed(name, |f| Feed {
        has_secret: true,
        secret_pending: false,
        ..f
    })?;
    tracing::info!(feed = %feed.name, "webhook secret rotation confirmed");
    Ok(feed)
}

/// Drops the pending secret; the current one (or none) stays in force.
pub(crate) fn cancel(app: &App, name: &str) -> Result<Feed> {
    let feed = pending_feed(app, name)?;
    let feed = app.store.update_feed(feed.name.as_str(), |f| Feed {
        secret_pending: false,
        ..f
    })?;
    drop_pending(app, &feed.name);
    tracing::info!(feed = %feed.name, "webhook secret rotation cancelled");
    Ok(feed)
}

/// Removes a pending secret file whose flag is already cleared (a leftover only
/// costs disk, so a failure is logged, not returned).
pub(crate) fn drop_pending(app: &App, name: &FeedName) {
    if let Err(e) = crate::secret::remove_pending(&app.config().data_dir, name) {
        tracing::warn!(feed = %name, error = %e, "cannot remove the pending webhook secret file");
    }
}

fn pending_feed(app: &App, name: &str) -> Result<Feed> {
    let feed = app.store.feed_required(name)?;
    if !feed.secret_pending {
        return Err(CommandError::Other(format!(
            "feed {name} has no secret rotation pending (start one with `hookd admin secret \
             rotate {name} --secret-file PATH`)"
        )));
    }
    Ok(feed)
}

/// A declared feed's secret is the config file's `secret_file`, rewritten at every
/// reload: a rotation here would be undone.
fn refuse_declared(app: &App, feed: &Feed) -> Result<()> {
    if !feed.declared {
        return Ok(());
    }
    Err(CommandError::Other(format!(
        "feed {} is declared in {}: its secret is the file its secret_file names; write the \
         new secret there and reload",
        feed.name,
        app.config().declared_at(&feed.name)
    )))
}

fn file_error(what: &str, e: std::io::Error) -> CommandError {
    CommandError::Other(format!("cannot {what}: {e}"))
}
