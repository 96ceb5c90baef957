//! Webhook secrets: a string that cannot end up in a log or an error message by accident,
//! and its one 0600 file per feed under `DATA_DIR/secrets/`, never in the database, so a
//! copy of the database cannot forge a signed delivery. While a rotation is pending, the
//! next secret waits in a second file; promoting it is one rename.

use std::fmt;
use std::path::Path;

use crate::feed::FeedName;
use crate::paths;

/// A feed's webhook secret (HMAC key or shared token).
///
/// `Debug` and `Display` print `***`; [`Secret::expose`] is the only way to read the value,
/// so every place that touches it is easy to find. Nothing else is derived on purpose.
#[derive(Clone)]
pub(crate) struct Secret(String);

/// Refusal of an empty or whitespace-only secret: any sender could "sign" with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("webhook secret is empty")]
pub(crate) struct EmptySecret;

impl Secret {
    /// Wraps a secret, refusing one that is empty or only whitespace.
    pub(crate) fn new(value: String) -> Result<Secret, EmptySecret> {
        if value.trim().is_empty() {
            return Err(EmptySecret);
        }
        Ok(Secret(value))
    }

    /// A fresh secret for a webhook hookd sets up itself: 256 random bits, hex.
    pub(crate) fn generate() -> Result<Secret, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness available: {e}"))?;
        Ok(Secret(hex::encode(bytes)))
    }

    /// The secret's text, for computing or comparing signatures only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Writes (or replaces) a feed's secret atomically, readable by the daemon's user only.
pub(crate) fn save(data_dir: &Path, feed: &FeedName, secret: &Secret) -> std::io::Result<()> {
    paths::create_private_dir(&paths::secrets_dir(data_dir))?;
    paths::write_private(&paths::secret(data_dir, feed), secret.expose().as_bytes())
}

/// Reads a feed's secret; `None` when the file is gone.
pub(crate) fn load(data_dir: &Path, feed: &FeedName) -> std::io::Result<Option<Secret>> {
    read(&paths::secret(data_dir, feed))
}

/// Deletes a feed's secret and any pending next one.
pub(crate) fn remove(data_dir: &Path, feed: &FeedName) -> std::io::Result<()> {
    remove_file(&paths::secret(data_dir, feed))?;
    remove_pending(data_dir, feed)
}

/// Writes (or replaces) the secret a pending rotation moves to.
pub(crate) fn save_pending(
    data_dir: &Path,
    feed: &FeedName,
    secret: &Secret,
) -> std::io::Result<()> {
    paths::create_private_dir(&paths::secrets_dir(data_dir))?;
    paths::write_private(
        &paths::pending_secret(data_dir, feed),
        secret.expose().as_bytes(),
    )
}

/// Reads the secret a pending rotation moves to; `None` when there is none.
pub(crate) fn load_pending(data_dir: &Path, feed: &FeedName) -> std::io::Result<Option<Secret>> {
    read(&paths::pending_secret(data_dir, feed))
}

/// Makes the pending secret the feed's secret, atomically (one rename: a reader sees
/// the old secret or the new one). Nothing pending is not an error: a rename that
/// happened before a crash stays done.
pub(crate) fn promote_pending(data_dir: &Path, feed: &FeedName) -> std::io::Result<()> {
    let pending = paths::pending_secret(data_dir, feed);
    match std::fs::rename(&pending, paths::secret(data_dir, feed)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => {
            let dir = std::fs::File::open(paths::secrets_dir(data_dir))?;
            dir.sync_all()
        }
    }
}

/// Drops the pending secret, if any.
pub(crate) fn remove_pending(data_dir: &Path, feed: &FeedName) -> std::io::Result<()> {
    remove_file(&paths::pending_secret(data_dir, feed))
}

fn read(path: &Path) -> std::io::Result<Option<Secret>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Secret::new(text).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_secrets_are_refused() {
        assert_eq!(Secret::new(String::new()).err(), Some(EmptySecret));
        assert_eq!(Secret::new(" \t\n".into()).err(), Some(EmptySecret));
    }

    #[test]
    fn a_pending_secret_waits_beside_the_current_one_until_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let feed = FeedName::parse("web").unwrap();
        let old = Secret::new("old".into()).unwrap();
        let new = Secret::new("new".into()).unwrap();
        save(dir.path(), &feed, &old).unwrap();
        save_pending(dir.path(), &feed, &new).unwrap();
        let read = |f: fn(&Path, &FeedName) -> std::io::Result<Option<Secret>>| {
            f(dir.path(), &feed).unwrap().map(|s| s.expose().to_owned())
        };
        assert_eq!(read(load).as_deref(), Some("old"));
        assert_eq!(read(load_pending).as_deref(), Some("new"));
        // Another feed whose name starts the same is not touched.
        let other = FeedName::parse("web.pending").unwrap();
        assert!(load(dir.path(), &other).unwrap().is_none());
        promote_pending(dir.path(), &feed).unwrap();
        assert_eq!(read(load).as_deref(), Some("new"));
        assert!(read(load_pending).is_none());
        // Promoting again (a crash after the rename) keeps the promoted secret.
        promote_pending(dir.path(), &feed).unwrap();
        assert_eq!(read(load).as_deref(), Some("new"));
        save_pending(dir.path(), &feed, &old).unwrap();
        remove_pending(dir.path(), &feed).unwrap();
        assert!(read(load_pending).is_none());
        assert_eq!(read(load).as_deref(), Some("new"));
        save_pending(dir.path(), &feed, &old).unwrap();
        remove(dir.path(), &feed).unwrap();
        assert!(read(load).is_none() && read(load_pending).is_none());
    }

    #[test]
    fn generated_secrets_are_long_hex_and_differ() {
        let (a, b) = (Secret::generate().unwrap(), Secret::generate().unwrap());
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn secret_never_prints_itself() {
        let secret = Secret::new("hunter2".into()).unwrap();
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
