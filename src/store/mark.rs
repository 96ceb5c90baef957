//! The acknowledged mark: a high-water mark of what the store has acknowledged, kept
//! outside sled so damage to sled's files cannot take it along.
//!
//! Every group commit numbers itself: it writes its number into sled (with the writes
//! it covers) and, once sled's files are synced, into `db/acked`, synced too, before any
//! caller hears back. At open, sled holding an older number than the file means
//! acknowledged writes are gone (sled drops everything after a damaged spot of its
//! log), and the daemon refuses to start unless told to accept the loss.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The mark file, in the database directory (a copy of `db/` carries its mark along).
const FILE_NAME: &str = "acked";

/// One group commit: its number and when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Point {
    /// Group commits made by this store so far.
    pub(crate) seq: u64,
    /// When, Unix ms.
    pub(crate) at_ms: i64,
}

impl Point {
    /// The next commit, made now.
    pub(crate) fn next(self) -> Self {
        Self {
            seq: self.seq + 1,
            at_ms: crate::clock::now_ms(),
        }
    }

    /// The form sled keeps (16 bytes, big-endian).
    pub(crate) fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..].copy_from_slice(&self.at_ms.to_be_bytes());
        out
    }

    /// Reads what [`Self::to_bytes`] wrote.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt("commit mark in the database".to_owned());
        let seq = bytes.get(..8).ok_or_else(corrupt)?;
        let at = bytes.get(8..16).ok_or_else(corrupt)?;
        Ok(Self {
            seq: u64::from_be_bytes(seq.try_into().map_err(|_| corrupt())?),
            at_ms: i64::from_be_bytes(at.try_into().map_err(|_| corrupt())?),
        })
    }

    /// The file's form: fixed width, so each rewrite covers the last one exactly.
    fn to_line(self) -> String {
        format!("{:020} {:020}\n", self.seq, self.at_ms)
    }

    fn from_line(line: &str) -> Option<Self> {
        let (seq, at) = line.trim_end().split_once(' ')?;
        Some(Self {
            seq: seq.parse().ok()?,
            at_ms: at.parse().ok()?,
        })
    }

    /// For messages: "#12 (2026-12-01T01:02:03Z)".
    pub(crate) fn describe(self) -> String {
        if self.seq == 0 {
            return "#0 (no commit)".to_owned();
        }
        format!("#{} ({})", self.seq, crate::clock::rfc3339(self.at_ms))
    }
}

/// The open mark file; written only by the writer thread.
#[derive(Debug)]
pub(crate) struct Mark {
    file: File,
}

impl Mark {
    /// Where the mark of the database in `db_dir` lives.
    pub(crate) fn path(db_dir: &Path) -> PathBuf {
        db_dir.join(FILE_NAME)
    }

    /// The mark on disk, if there is one.
    pub(crate) fn read(db_dir: &Path) -> Result<Option<Point>, StoreError> {
        let path = Self::path(db_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Point::from_line(&text).map(Some).ok_or_else(|| {
                StoreError::Corrupt(format!("{} is not a commit mark", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Open { path, source }),
        }
    }

    /// Opens (or creates, durably, with `start`) the mark file of `db_dir`.
    pub(crate) fn open(db_dir: &Path, start: Point) -> std::io::Result<Self> {
        let path = Self::path(db_dir);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).mode(0o600);
        let existed = path.exists();
        let mut file = options.open(&path)?;
        if !existed {
            file.write_all(start.to_line().as_bytes())?;
            file.sync_all()?;
            File::open(db_dir)?.sync_all()?;
        }
        Ok(Self { file })
    }

    /// Records `point` durably (one `fdatasync`).
    pub(crate) fn write(&self, point: Point) -> std::io::Result<()> {
        self.file.write_all_at(point.to_line().as_bytes(), 0)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_reads_back_after_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Mark::read(dir.path()).unwrap(), None);
        let start = Point {
            seq: 7,
            at_ms: 1_700_000_000_000,
        };
        let mark = Mark::open(dir.path(), start).unwrap();
        assert_eq!(Mark::read(dir.path()).unwrap(), Some(start));
        let next = Point {
            seq: 1_000_000,
            at_ms: 5,
        };
        mark.write(next).unwrap();
        assert_eq!(Mark::read(dir.path()).unwrap(), Some(next));
        assert_eq!(Point::from_bytes(&next.to_bytes()).unwrap(), next);
        std::fs::write(Mark::path(dir.path()), "junk").unwrap();
        assert!(Mark::read(dir.path()).is_err());
    }
}
