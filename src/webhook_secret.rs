//! Webhook secrets on disk: one 0600 file per feed under `DATA_DIR/secrets/`, never in
//! the database, so a copy of the database cannot forge a signed delivery.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::feed::FeedName;
use crate::secret::Secret;

fn path(data_dir: &Path, feed: &FeedName) -> PathBuf {
    data_dir.join("secrets").join(feed.as_str())
}

/// Writes (or replaces) a feed's secret atomically, readable by the daemon's user only.
pub fn save(data_dir: &Path, feed: &FeedName, secret: &Secret) -> std::io::Result<()> {
    let dir = data_dir.join("secrets");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let tmp = dir.join(format!(".{}.tmp", feed.as_str()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(secret.expose().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path(data_dir, feed))
}

/// Reads a feed's secret; `None` when the file is gone.
pub fn load(data_dir: &Path, feed: &FeedName) -> std::io::Result<Option<Secret>> {
    match std::fs::read_to_string(path(data_dir, feed)) {
        Ok(text) => Ok(Secret::new(text).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes a feed's secret, if any.
pub fn remove(data_dir: &Path, feed: &FeedName) -> std::io::Result<()> {
    match std::fs::remove_file(path(data_dir, feed)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
