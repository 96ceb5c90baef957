//! The data directory's layout: every path under `DATA_DIR` is named here, and the one
//! way hookd writes a private file (0600, atomic). Paths derive from feed names and
//! build ids only, never from payload data.
//!
//! ```text
//! DATA_DIR/db/                   the store (sled)
//! DATA_DIR/server.key            the hook-token key (0600)
//! DATA_DIR/admin.sock            the admin socket (default)
//! DATA_DIR/secrets/FEED          a feed's webhook secret (0600, dir 0700)
//! DATA_DIR/secrets/FEED+pending  its next secret while a rotation is pending (0600)
//! DATA_DIR/logs/ID.log           a build's log
//! DATA_DIR/mirrors/FEED.git      a feed's bare mirror
//! DATA_DIR/workspaces/FEED       where a feed's builds run
//! ```

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::build::BuildId;
use crate::feed::FeedName;

/// The token key's file name.
pub(crate) const SERVER_KEY: &str = "server.key";

/// The store's directory.
pub(crate) fn db(data_dir: &Path) -> PathBuf {
    data_dir.join("db")
}

/// The token key.
pub(crate) fn server_key(data_dir: &Path) -> PathBuf {
    data_dir.join(SERVER_KEY)
}

/// The admin socket when the config names none.
pub(crate) fn admin_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// The webhook secrets' directory (0700).
pub(crate) fn secrets_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets")
}

/// A feed's webhook secret.
pub(crate) fn secret(data_dir: &Path, feed: &FeedName) -> PathBuf {
    secrets_dir(data_dir).join(feed.as_str())
}

/// A feed's next webhook secret while a rotation is pending (`+` is in no feed name,
/// so it cannot be another feed's secret).
pub(crate) fn pending_secret(data_dir: &Path, feed: &FeedName) -> PathBuf {
    secrets_dir(data_dir).join(format!("{}+pending", feed.as_str()))
}

/// Where a build's log lives.
pub(crate) fn log(data_dir: &Path, id: BuildId) -> PathBuf {
    data_dir.join("logs").join(format!("{}.log", id.0))
}

/// Where a feed's bare mirror lives.
pub(crate) fn mirror(data_dir: &Path, feed: &FeedName) -> PathBuf {
    data_dir
        .join("mirrors")
        .join(format!("{}.git", feed.as_str()))
}

/// Where a feed's builds run.
pub(crate) fn workspace(data_dir: &Path, feed: &FeedName) -> PathBuf {
    data_dir.join("workspaces").join(feed.as_str())
}

/// Creates a private directory (0700) and its parents.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes a file readable by the daemon's user only, atomically: a reader sees the old
/// content or the new, never a torn file, and the content is on disk before the rename.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a private file needs a file name"))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Up to `max` bytes of a build's log from byte `offset`: empty at its end, or while
/// the build has no log yet. Followers (`admin log --follow`, the web's live views)
/// poll it as the log grows. Blocks: async callers use the blocking pool.
pub(crate) fn read_log(
    data_dir: &Path,
    id: BuildId,
    offset: u64,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(log(data_dir, id)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut chunk = Vec::with_capacity(max.min(64 * 1024));
    file.take(u64::try_from(max).unwrap_or(u64::MAX))
        .read_to_end(&mut chunk)?;
    Ok(chunk)
}

/// How many leading bytes of `bytes` end on a whole UTF-8 character: where a text
/// made of a log read may end, so a character cut by the read waits for the next.
pub(crate) fn whole_chars(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(4) {
        let b = bytes[n - back];
        if b & 0xC0 != 0x80 {
            let len = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if back < len { n - back } else { n };
        }
    }
    n
}

/// Deletes a pruned build's log.
pub(crate) fn remove_log(data_dir: &Path, id: BuildId) {
    let path = log(data_dir, id);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(build = id.0, error = %e, "cannot delete build log");
        }
    }
}

/// Deletes a removed feed's mirror and workspace.
pub(crate) fn remove_feed_dirs(data_dir: &Path, feed: &FeedName) {
    for dir in [mirror(data_dir, feed), workspace(data_dir, feed)] {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(feed = %feed, dir = %dir.display(), error = %e, "cannot delete feed directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_file_is_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"old").unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_cut_character_waits_for_the_next_chunk() {
        let text = "aé€😀".as_bytes();
        assert_eq!(whole_chars(text), text.len());
        assert_eq!(whole_chars(b""), 0);
        for cut in 0..text.len() {
            let keep = whole_chars(&text[..cut]);
            assert!(std::str::from_utf8(&text[..keep]).is_ok(), "cut {cut}");
            assert!(cut - keep < 4, "cut {cut} kept {keep}");
        }
        assert_eq!(whole_chars(&text[..2]), 1, "half an é");
        assert_eq!(whole_chars(b"a\xff"), 2, "an invalid byte is not held back");
    }

    #[test]
    fn read_log_pages_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = BuildId(1);
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        std::fs::write(log(dir.path(), id), b"0123456789").unwrap();
        assert_eq!(read_log(dir.path(), id, 0, 4).unwrap(), b"0123");
        assert_eq!(read_log(dir.path(), id, 4, 100).unwrap(), b"456789");
        assert!(read_log(dir.path(), id, 10, 100).unwrap().is_empty());
        std::fs::write(log(dir.path(), id), b"0123456789more").unwrap();
        assert_eq!(read_log(dir.path(), id, 10, 100).unwrap(), b"more");
    }

    #[test]
    fn read_log_of_a_build_without_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_log(dir.path(), BuildId(7), 3, 100).unwrap().is_empty());
    }
}
