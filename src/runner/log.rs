//! A build's log file: one append-only file per build, fed by the command's stdout
//! and stderr and by hookd's own notes, capped so a runaway build cannot fill the
//! disk, and readable in chunks while it grows (`hookd admin log ID --follow`).
//!
//! All file I/O goes through `tokio::fs`, which runs it on the blocking pool.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    #[error("cannot open build log {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot write build log {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Lets callers that speak `io::Result` use `?` on log operations.
impl From<LogError> for io::Error {
    fn from(e: LogError) -> Self {
        let kind = match &e {
            LogError::Open { source, .. } | LogError::Write { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// Appends to one build's log, keeping at most `cap` bytes of command output.
///
/// Writes past the cap are accepted and dropped, so the pipes feeding the log keep
/// draining and the command never blocks on a full pipe.
#[derive(Debug)]
pub(crate) struct LogWriter {
    /// `tokio::fs::File` buffers one write while the previous one runs on the
    /// blocking pool, which is all the buffering a pipe-fed log needs.
    file: File,
    /// For error messages.
    path: PathBuf,
    /// Most bytes the file holds before the cut; the marker, and notes written
    /// after the cut, come on top.
    cap: u64,
    /// Bytes in the file, including whatever was there when it was opened (the
    /// fetch step writes to the same log), so the cap covers the whole file.
    written: u64,
    /// The cut happened: the marker is written and further output is dropped.
    truncated: bool,
    /// Whether the last byte written was a newline, so notes start on their own line.
    at_line_start: bool,
    /// Told the file's length after each write, so followers need not poll.
    on_growth: Option<Growth>,
}

/// A callback told the log's length after each write.
struct Growth(Box<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for Growth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Growth")
    }
}

impl LogWriter {
    /// Opens (creating if needed) the log at `path` for appending, with a cap of
    /// `cap` bytes of output over the whole file.
    pub(crate) async fn open(path: &Path, cap: u64) -> Result<Self, LogError> {
        let open_err = |source| LogError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .await
            .map_err(open_err)?;
        let written = file.metadata().await.map_err(open_err)?.len();
        let at_line_start = if written == 0 {
            true
        } else {
            // Appending ignores the position, so reading the last byte is harmless.
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(written - 1))
                .await
                .map_err(open_err)?;
            file.read_exact(&mut last).await.map_err(open_err)?;
            last[0] == b'\n'
        };
        Ok(Self {
            file,
            path: path.to_owned(),
            cap,
            written,
            truncated: false,
            at_line_start,
            on_growth: None,
        })
    }

    /// Calls `f` with the file's length after every write.
    pub(crate) fn on_growth(&mut self, f: impl Fn(u64) + Send + Sync + 'static) {
        self.on_growth = Some(Growth(Box::new(f)));
    }

    /// Appends command output, up to the cap. The first write that does not fit
    /// writes what fits, then the truncation marker; later writes are dropped.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        if self.truncated || bytes.is_empty() {
            return Ok(());
        }
        let room = self.cap.saturating_sub(self.written);
        let fits = usize::try_from(room).map_or(bytes.len(), |room| room.min(bytes.len()));
        self.append(&bytes[..fits]).await?;
        if fits < bytes.len() {
            self.truncated = true;
            tracing::warn!(path = %self.path.display(), cap = self.cap, "build log reached its cap; dropping further output");
            let marker = format!(
                "\n[hookd: log truncated at {} bytes; further output discarded]\n",
                self.cap
            );
            self.append(marker.as_bytes()).await?;
        }
        Ok(())
    }

    /// Appends one of hookd's own notes (e.g. why the build was stopped) on a line
    /// of its own. Notes are written even after the cut: they are few and short,
    /// and they explain how the build ended.
    pub(crate) async fn write_line(&mut self, line: &str) -> Result<(), LogError> {
        let mut text = String::with_capacity(line.len() + 2);
        if !self.at_line_start {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        self.append(text.as_bytes()).await
    }

    /// Waits until everything written so far is in the file, so readers see it
    /// and write errors surface.
    pub(crate) async fn flush(&mut self) -> Result<(), LogError> {
        self.file.flush().await.map_err(|source| LogError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Where the log lives.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether output has been dropped because of the cap.
    #[cfg(test)]
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
    }

    async fn append(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        let Some(&last) = bytes.last() else {
            return Ok(());
        };
        self.file
            .write_all(bytes)
            .await
            .map_err(|source| LogError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.written += bytes.len() as u64;
        self.at_line_start = last == b'\n';
        if let Some(Growth(f)) = &self.on_growth {
            f(self.written);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER_1000: &str = "\n[hookd: log truncated at 1000 bytes; further output discarded]\n";

    #[tokio::test]
    async fn output_under_the_cap_is_kept_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut log = LogWriter::open(&path, 1000).await.unwrap();
        log.write(b"hello ").await.unwrap();
        log.write(b"world\n").await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world\n");
        assert!(!log.is_truncated());
    }

    #[tokio::test]
    async fn cap_cuts_once_with_marker_and_keeps_accepting_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut log = LogWriter::open(&path, 1000).await.unwrap();
        log.write(&[b'a'; 600]).await.unwrap();
        log.write(&[b'b'; 600]).await.unwrap();
        log.write(&[b'c'; 600]).await.unwrap();
        log.flush().await.unwrap();
        let content = std::fs::read(&path).unwrap();
        let mut expected = vec![b'a'; 600];
        expected.extend_from_slice(&[b'b'; 400]);
        expected.extend_from_slice(MARKER_1000.as_bytes());
        assert_eq!(content, expected);
        assert!(log.is_truncated());
    }

    #[tokio::test]
    async fn exactly_reaching_the_cap_does_not_write_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut log = LogWriter::open(&path, 1000).await.unwrap();
        log.write(&[b'a'; 1000]).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 1000);
        assert!(!log.is_truncated());
        log.write(b"x").await.unwrap();
        log.flush().await.unwrap();
        assert!(std::fs::read(&path)
            .unwrap()
            .ends_with(MARKER_1000.as_bytes()));
    }

    #[tokio::test]
    async fn existing_content_counts_toward_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        std::fs::write(&path, [b'f'; 900]).unwrap();
        let mut log = LogWriter::open(&path, 1000).await.unwrap();
        log.write(&[b'a'; 200]).await.unwrap();
        log.flush().await.unwrap();
        let content = std::fs::read(&path).unwrap();
        assert_eq!(
            &content[..1000],
            [[b'f'; 900].as_slice(), &[b'a'; 100]].concat()
        );
        assert_eq!(&content[1000..], MARKER_1000.as_bytes());
    }

    #[tokio::test]
    async fn notes_start_on_their_own_line_and_survive_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        std::fs::write(&path, b"fetched").unwrap();
        let mut log = LogWriter::open(&path, 10).await.unwrap();
        log.write_line("[hookd] one").await.unwrap();
        log.write(b"0123456789abc").await.unwrap();
        log.write_line("[hookd] two").await.unwrap();
        log.flush().await.unwrap();
        let content = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            content,
            "fetched\n[hookd] one\n\n[hookd: log truncated at 10 bytes; further output discarded]\n[hookd] two\n"
        );
    }

    #[tokio::test]
    async fn open_failure_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("1.log");
        let err = LogWriter::open(&path, 10).await.unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
    }
}
