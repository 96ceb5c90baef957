//! `admin export` / `admin import`: a consistent JSON backup of feeds, tokens, webhook
//! secrets and the token key, so a restored daemon answers the same hook URLs.

use crate::admin::commands::CommandError;
use crate::admin::proto::{Backup, BackupFeed, BackupToken, Reply, BACKUP_FORMAT};
use crate::app::App;
use crate::clock::{now_ms, rfc3339};
use crate::feed;
use crate::secret::Secret;
use crate::store::TokenRecord;
use crate::token::{ServerKey, TokenId};

/// Builds the backup document (blocking: reads the store and secret files).
pub(crate) fn export(app: &App) -> Result<Reply, CommandError> {
    let data_dir = app.config().data_dir.clone();
    let mut feeds = Vec::new();
    for feed in app.store.feeds()? {
        let secret = crate::secret::load(&data_dir, &feed.name)
            .map_err(|e| {
                CommandError::Other(format!("cannot read the secret of feed {}: {e}", feed.name))
            })?
            .map(|s| s.expose().to_owned());
        let pending_secret = match feed.secret_pending {
            true => crate::secret::load_pending(&data_dir, &feed.name)
                .map_err(|e| {
                    CommandError::Other(format!(
                        "cannot read the pending secret of feed {}: {e}",
                        feed.name
                    ))
                })?
                .map(|s| s.expose().to_owned()),
            false => None,
        };
        let tokens = app
            .store
            .tokens_of(feed.name.as_str())?
            .into_iter()
            .map(|(id, r)| BackupToken {
                id: id.to_string(),
                label: r.label,
                created_ms: r.created_ms,
                revoked_ms: r.revoked_ms,
            })
            .collect();
        feeds.push(BackupFeed {
            feed,
            secret,
            pending_secret,
            tokens,
        });
    }
    tracing::info!(feeds = feeds.len(), "backup exported");
    Ok(Reply::Backup(Backup {
        format: BACKUP_FORMAT,
        exported: rfc3339(now_ms()),
        server_key: app.key().to_base64(),
        feeds,
    }))
}

/// Restores a backup into a daemon without feeds: key first, then feeds, secrets, tokens.
pub(crate) fn import(app: &App, backup: Backup) -> Result<Reply, CommandError> {
    if backup.format != BACKUP_FORMAT {
        return Err(CommandError::Other(format!(
            "backup format {} is not {BACKUP_FORMAT}",
            backup.format
        )));
    }
    let existing = app.store.feeds()?.len();
    if existing > 0 {
        return Err(CommandError::Other(format!(
            "import restores into a daemon without feeds; this one has {existing} (remove them or use a fresh data dir)"
        )));
    }
    check(&backup)?;
    let data_dir = app.config().data_dir.clone();
    let key = ServerKey::restore(&data_dir, &backup.server_key)
        .map_err(|e| CommandError::Other(e.to_string()))?;
    app.set_key(key);
    let stored = |e| CommandError::Other(format!("cannot store the webhook secret: {e}"));
    let empty = || CommandError::Other("empty webhook secret in backup".into());
    for item in &backup.feeds {
        if let Some(secret) = &item.secret {
            let secret = Secret::new(secret.clone()).map_err(|_| empty())?;
            crate::secret::save(&data_dir, &item.feed.name, &secret).map_err(stored)?;
        }
        if let Some(secret) = &item.pending_secret {
            let secret = Secret::new(secret.clone()).map_err(|_| empty())?;
            crate::secret::save_pending(&data_dir, &item.feed.name, &secret).map_err(stored)?;
        }
        app.store.add_feed(&item.feed)?;
        for t in &item.tokens {
            let id = TokenId::parse_hex(&t.id)
                .ok_or_else(|| CommandError::Other(format!("bad token id {:?}", t.id)))?;
            let record = TokenRecord {
                feed: item.feed.name.clone(),
                label: t.label.clone(),
                created_ms: t.created_ms,
                revoked_ms: t.revoked_ms,
            };
            app.store.add_token(id, &record)?;
        }
    }
    tracing::info!(feeds = backup.feeds.len(), "backup imported");
    Ok(Reply::Done(format!(
        "imported {} feeds",
        backup.feeds.len()
    )))
}

/// Validates every feed and token before anything is written.
fn check(backup: &Backup) -> Result<(), CommandError> {
    for item in &backup.feeds {
        let f = &item.feed;
        feed::validate(f)?;
        if f.has_secret != item.secret.is_some() {
            return Err(CommandError::Other(format!(
                "feed {}: has_secret does not match the secret given",
                f.name
            )));
        }
        if f.secret_pending != item.pending_secret.is_some() {
            return Err(CommandError::Other(format!(
                "feed {}: secret_pending does not match the pending secret given",
                f.name
            )));
        }
        if item
            .tokens
            .iter()
            .any(|t| TokenId::parse_hex(&t.id).is_none())
        {
            return Err(CommandError::Other(format!(
                "feed {}: a token id is not 16 hex digits",
                f.name
            )));
        }
    }
    Ok(())
}
