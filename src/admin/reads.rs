//! The web side's window on the daemon: the admin server's own reads and views
//! (`commands`, `proto`), without hook URLs, behind [`Source`], the interface the web side reads through.

use std::io::{Read, Seek, SeekFrom};

use crate::admin::commands::{self, CommandError};
use crate::admin::proto::{BuildView, DeliveryView, FeedView, QueueOut, StatusView};
use crate::app::App;
use crate::build::{BuildId, BuildStatus};
use crate::scheduler::BuildUpdate;
use crate::store::StoreError;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// No such feed or build (or a name that cannot be one).
    #[error("{0}")]
    NotFound(String),
    /// The store could not answer.
    #[error("{0}")]
    Unavailable(String),
}

/// The reads the web side is allowed: the admin protocol's views, without hook URLs.
/// Every method blocks (store reads); the web side calls them on the blocking pool.
pub(crate) trait Source: Send + Sync + 'static {
    /// Page heading (`[web] title`), read per request so a reload applies.
    fn title(&self) -> String;
    /// Every feed, by name.
    fn feeds(&self) -> Result<Vec<FeedView>, ReadError>;
    /// One feed.
    fn feed(&self, name: &str) -> Result<FeedView, ReadError>;
    /// A feed's newest builds, newest first, skipping `skip`.
    fn builds(&self, name: &str, skip: usize, limit: usize) -> Result<Vec<BuildView>, ReadError>;
    /// One build.
    fn build(&self, id: u64) -> Result<BuildView, ReadError>;
    /// A feed's newest deliveries.
    fn deliveries(&self, name: &str, limit: usize) -> Result<Vec<DeliveryView>, ReadError>;
    /// Running, queued and deferred builds.
    fn queue(&self) -> Result<QueueOut, ReadError>;
    /// Daemon status.
    fn status(&self) -> Result<StatusView, ReadError>;
    /// The badge state of an opted-in feed: the status word of its newest started
    /// build (of `branch`, if named), `None` when it has none. `Ok(None)` also for a
    /// feed without a badge or no feed at all: the caller must not tell them apart.
    /// Reads the feed's build index from the newest end, never a listing.
    fn badge(&self, name: &str, branch: Option<&str>) -> Result<Option<Option<String>>, ReadError>;
    /// Opted-in feeds with their newest started build, for CCTray.
    fn badge_feeds(&self) -> Result<Vec<(String, Option<BuildView>)>, ReadError>;
    /// Up to `max` bytes of a build's log from its end.
    fn log_tail(&self, id: u64, max: u64) -> Result<LogTail, ReadError>;
    /// Up to `max` bytes of a build's log from byte `offset` (empty at its end, or
    /// while the build has no log yet). Live views read it as it grows.
    fn log_chunk(&self, id: u64, offset: u64, max: usize) -> Result<Vec<u8>, ReadError>;
    /// Every build state change from now on (the scheduler's broadcast). Subscribe
    /// before reading, so no change between the read and the first update is missed.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<BuildUpdate>;
}

/// The end of a build's log, and where in the file it starts (so a live view can
/// continue from its end without a gap or a repeat).
#[derive(Debug, Default)]
pub(crate) struct LogTail {
    /// The bytes.
    pub(crate) bytes: Vec<u8>,
    /// Offset of the first byte in the log; above 0 when the start was cut.
    pub(crate) start: u64,
}

impl LogTail {
    /// Offset just past the last byte: where following the log continues.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// [`Source`] over the daemon's shared handles.
pub(crate) struct Reads(pub(crate) App);

impl From<CommandError> for ReadError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Store(e) => e.into(),
            CommandError::Feed(e) => Self::NotFound(e.to_string()),
            CommandError::Other(m) => Self::Unavailable(m),
        }
    }
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoFeed(_) | StoreError::NoBuild(_) => Self::NotFound(e.to_string()),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl Reads {
    /// A feed that exists; a name that cannot be one is not found either.
    fn stored_feed(&self, name: &str) -> Result<crate::feed::Feed, ReadError> {
        crate::feed::FeedName::parse(name).map_err(|e| ReadError::NotFound(e.to_string()))?;
        Ok(self.0.store.feed_required(name)?)
    }
}

/// A build a badge can show: one that has started (a queued one says nothing yet).
fn started(status: &BuildStatus) -> bool {
    !matches!(status, BuildStatus::Queued)
}

impl Source for Reads {
    fn title(&self) -> String {
        self.0.config().web.title.clone()
    }

    fn feeds(&self) -> Result<Vec<FeedView>, ReadError> {
        Ok(self
            .0
            .store
            .feeds()?
            .iter()
            .map(|f| FeedView::new(f, Vec::new()))
            .collect())
    }

    fn feed(&self, name: &str) -> Result<FeedView, ReadError> {
        Ok(FeedView::new(&self.stored_feed(name)?, Vec::new()))
    }

    fn builds(&self, name: &str, skip: usize, limit: usize) -> Result<Vec<BuildView>, ReadError> {
        self.stored_feed(name)?;
        let builds = self
            .0
            .store
            .builds(Some(name), skip.saturating_add(limit))?;
        let page: Vec<_> = builds.into_iter().skip(skip).collect();
        Ok(commands::build_views(&self.0, &page)?)
    }

    fn build(&self, id: u64) -> Result<BuildView, ReadError> {
        let build = self.0.store.build_required(BuildId(id))?;
        let mut views = commands::build_views(&self.0, std::slice::from_ref(&build))?;
        Ok(views.remove(0))
    }

    fn deliveries(&self, name: &str, limit: usize) -> Result<Vec<DeliveryView>, ReadError> {
        self.stored_feed(name)?;
        Ok(self
            .0
            .store
            .deliveries(name, limit)?
            .into_iter()
            .map(commands::delivery_view)
            .collect())
    }

    fn queue(&self) -> Result<QueueOut, ReadError> {
        Ok(commands::queue(&self.0)?)
    }

    fn status(&self) -> Result<StatusView, ReadError> {
        Ok(commands::status(&self.0)?)
    }

    fn badge(&self, name: &str, branch: Option<&str>) -> Result<Option<Option<String>>, ReadError> {
        let feed = match crate::feed::FeedName::parse(name) {
            Ok(_) => self.0.store.feed(name)?,
            Err(_) => None,
        };
        if !feed.is_some_and(|f| f.badge) {
            return Ok(None);
        }
        let newest = self.0.store.newest_build_where(name, |b| {
            started(&b.status) && branch.is_none_or(|br| b.branch == br)
        })?;
        Ok(Some(newest.map(|b| b.status.word().to_owned())))
    }

    fn badge_feeds(&self) -> Result<Vec<(String, Option<BuildView>)>, ReadError> {
        let mut out = Vec::new();
        for feed in self.0.store.feeds()?.into_iter().filter(|f| f.badge) {
            let newest = self
                .0
                .store
                .newest_build_where(feed.name.as_str(), |b| started(&b.status))?;
            out.push((feed.name.to_string(), newest.as_ref().map(BuildView::new)));
        }
        Ok(out)
    }

    fn log_tail(&self, id: u64, max: u64) -> Result<LogTail, ReadError> {
        self.0.store.build_required(BuildId(id))?;
        let Some(mut file) = self.log_file(id)? else {
            return Ok(LogTail::default());
        };
        let read = || -> std::io::Result<LogTail> {
            let len = file.metadata()?.len();
            let start = len.saturating_sub(max);
            file.seek(SeekFrom::Start(start))?;
            let mut bytes = Vec::new();
            file.take(len - start).read_to_end(&mut bytes)?;
            Ok(LogTail { bytes, start })
        };
        read().map_err(log_unreadable)
    }

    fn log_chunk(&self, id: u64, offset: u64, max: usize) -> Result<Vec<u8>, ReadError> {
        crate::paths::read_log(&self.0.config().data_dir, BuildId(id), offset, max)
            .map_err(log_unreadable)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<BuildUpdate> {
        self.0.scheduler.subscribe()
    }
}

impl Reads {
    /// A build's log file, `None` while it has none.
    fn log_file(&self, id: u64) -> Result<Option<std::fs::File>, ReadError> {
        let path = crate::paths::log(&self.0.config().data_dir, BuildId(id));
        match std::fs::File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(log_unreadable(e)),
        }
    }
}

fn log_unreadable(e: std::io::Error) -> ReadError {
    ReadError::Unavailable(format!("cannot read the log: {e}"))
}
