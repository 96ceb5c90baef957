//! The store: the only module that knows sled. Callers get typed methods over domain
//! types (`Feed`, `Build`, `BuildId`, `OutboxItem`), never keys or `IVec`s.
//!
//! Methods block; async callers run them on the blocking pool, or hand a write to the
//! store's writer thread with [`Store::write_durable`], which resolves once it is on
//! disk (group commit, see `commit`; one batch per group, see `group`). Never call
//! `durable_blocking` or a locking method from inside such a write: it would wait for
//! its own thread.

mod builds;
mod codec;
mod commit;
mod deliveries;
mod feeds;
mod group;
mod keys;
mod mark;
mod migrate;
mod outbox;
mod queue;
mod space;
mod tokens;

use std::path::{Path, PathBuf};

use space::{Space, Writes};

pub use deliveries::DeliveryRecord;
pub(crate) use group::Group;
pub(crate) use outbox::{
    Attempt, ItemState, OutboxId, OutboxItem, Outgoing, PostState, StatusPost,
};
pub use queue::{Admission, AdmitRequest, Pick};
pub(crate) use tokens::TokenRecord;

/// Version of the key layout; a store written by a newer layout is refused, not misread,
/// and an older one is migrated when opened (see `migrate`).
const SCHEMA_VERSION: u32 = 5;

/// Everything that can go wrong below the domain layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption it detected).
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A value could not be encoded (a bug, not bad input).
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// The flush that makes writes durable failed (disk full, I/O error).
    #[error("cannot make write durable: {0}")]
    Durability(String),
    /// The data dir was written by a newer hookd.
    #[error("store schema {found} is newer than this hookd understands ({SCHEMA_VERSION})")]
    Schema {
        /// The version found on disk.
        found: u32,
    },
    /// The data dir itself is unusable.
    #[error("cannot open store at {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Acknowledged writes are missing from the database (see `mark`).
    #[error(
        "acknowledged writes are missing from the database in {path}: the last acknowledged \
         commit was {acked}, but the database ends at {found}, so every trigger, delivery \
         and change acknowledged after that is gone. Restore {path} from a backup (copied \
         while hookd was stopped), or move it away and `hookd admin import` your export into \
         the fresh store; or start once with `hookd serve --accept-data-loss` to carry on \
         with what is left (the loss is logged)"
    )]
    Lost {
        /// The database directory.
        path: PathBuf,
        /// The last acknowledged commit, as the mark file has it.
        acked: String,
        /// The last commit the database holds.
        found: String,
    },
    /// sled cannot read its own files (it failed or panicked at open).
    #[error(
        "the database in {path} is damaged ({detail}); what it still holds cannot be \
         told. Restore {path} from a backup (copied while hookd was stopped), or move it \
         away and `hookd admin import` your export into the fresh store; or start with \
         `hookd serve --accept-data-loss`, which moves it aside to {path}.damaged-TIME and \
         starts an empty store"
    )]
    Damaged {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        detail: String,
    },
    /// A feed of that name exists already.
    #[error("feed {0:?} already exists")]
    FeedExists(String),
    /// No feed of that name.
    #[error("no feed named {0:?}")]
    NoFeed(String),
    /// No such build.
    #[error("no build {0}")]
    NoBuild(u64),
    /// No such token on that feed.
    #[error("feed {feed:?} has no token {token_id:?}")]
    NoToken {
        /// The feed asked about.
        feed: String,
        /// The token id asked about.
        token_id: String,
    },
}

fn durability(e: std::sync::Arc<std::io::Error>) -> StoreError {
    StoreError::Durability(e.to_string())
}

/// Handle to the open database; cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Store {
    /// The database, for counters and flushes.
    db: sled::Db,
    /// Group-commit barrier.
    committer: commit::Committer,
    /// name -> Feed
    feeds: Space,
    /// token id -> TokenRecord
    tokens: Space,
    /// feed \0 token id -> (), so a feed's tokens are one prefix scan
    feed_tokens: Space,
    /// build id -> Build, until every build of its shelf range is final (see `builds`)
    builds: Space,
    /// build id / SHELF_SPAN -> finished builds, in id order
    shelves: Space,
    /// feed \0 first build id -> up to BLOCK_IDS ids, for per-feed listings and retention
    feed_builds: Space,
    /// queue seq -> QueueEntry: the FIFO of builds not yet started
    queue: Space,
    /// feed \0 ref -> build id of its not-yet-started build (coalescing)
    pending: Space,
    /// build id -> (): builds that were running, for crash recovery without scans
    running: Space,
    /// feed -> last build start (ms), for cooldowns
    cooldowns: Space,
    /// feed \0 n -> DeliveryRecord
    deliveries: Space,
    /// feed \0 delivery id -> n, for redelivery
    delivery_ids: Space,
    /// counters and schema version
    meta: Space,
    /// outbox id -> OutboxItem: status posts (and notifications) not yet delivered
    outbox: Space,
    /// The one tree all spaces live in.
    records: sled::Tree,
    /// Serialises every multi-record change (read, then one atomic batch), so racing
    /// deliveries never double-queue and no update is lost.
    write_lock: std::sync::Arc<std::sync::Mutex<()>>,
    /// Deliveries remembered per feed.
    keep_deliveries: usize,
    /// Set by the writer thread once a commit failed (see [`Store::has_failed`]).
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// How to open the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// sled page cache, bytes.
    pub cache_bytes: u64,
    /// Deliveries remembered per feed (history and redelivery ids).
    pub keep_deliveries: usize,
}

/// What opening does when the database lacks acknowledged writes or is unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLoss {
    /// Refuse with [`StoreError::Lost`] / [`StoreError::Damaged`] (the default).
    #[default]
    Refuse,
    /// Log the loss and carry on (`--accept-data-loss`); an unreadable database is
    /// moved aside and a new one started.
    Accept,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store under `dir` with a bounded page cache, refusing a
    /// database that lost acknowledged writes.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        Self::open_checked(dir, options, OnLoss::Refuse)
    }

    /// [`Self::open`], saying what to do about lost or unreadable data.
    pub(crate) fn open_checked(
        dir: &Path,
        options: StoreOptions,
        on_loss: OnLoss,
    ) -> Result<Self, StoreError> {
        let path = crate::paths::db(dir);
        match Self::open_guarded(&path, options, on_loss) {
            Err(StoreError::Damaged { detail, .. }) if on_loss == OnLoss::Accept => {
                let aside = path.with_extension(format!("damaged-{}", crate::clock::now_ms()));
                std::fs::rename(&path, &aside).map_err(|source| StoreError::Open {
                    path: path.clone(),
                    source,
                })?;
                tracing::error!(damaged = %aside.display(), %detail, "the database was unreadable; moved it aside and started an empty one (--accept-data-loss)");
                Self::open_guarded(&path, options, on_loss)
            }
            other => other,
        }
    }

    /// Opens under `catch_unwind`: sled 0.34 panics on some damage ("tried to serialize
    /// Uninitialized"), which must become advice, not a crash.
    fn open_guarded(
        path: &Path,
        options: StoreOptions,
        on_loss: OnLoss,
    ) -> Result<Self, StoreError> {
        // The panic becomes the error below; sled's message would only precede it.
        // Start-up runs nothing else that could panic meanwhile.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::open_at(path, options, on_loss)
        }));
        std::panic::set_hook(hook);
        let damaged = |detail| StoreError::Damaged {
            path: path.to_owned(),
            detail,
        };
        match opened {
            Ok(Err(StoreError::Sled(sled::Error::Corruption { at, .. }))) => Err(damaged(format!(
                "sled read corrupted data at {at:?}: the file was truncated or overwritten"
            ))),
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                Err(damaged(format!("sled panicked: {what}")))
            }
        }
    }

    fn open_at(path: &Path, options: StoreOptions, on_loss: OnLoss) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(path).map_err(open_err)?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let records = db.open_tree("records")?;
        let space = |tag| Space::new(&records, tag);
        let meta = space(b'm');
        let last = Self::check_mark(path, &meta, on_loss)?;
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let write_lock = std::sync::Arc::new(std::sync::Mutex::new(()));
        let disk = commit::Disk {
            data_file: std::fs::File::open(path.join("db")).map_err(open_err)?,
            records: records.clone(),
            meta: meta.clone(),
            lock: write_lock.clone(),
            last,
            broken: None,
            db: db.clone(),
            #[cfg(test)]
            fault: Default::default(),
        };
        let acks = commit::Acks {
            mark: mark::Mark::open(path, last).map_err(open_err)?,
            failed: failed.clone(),
        };
        let committer = commit::Committer::start(disk, acks).map_err(open_err)?;
        let store = Self {
            meta,
            feeds: space(b'f'),
            tokens: space(b't'),
            feed_tokens: space(b'k'),
            builds: space(b'b'),
            shelves: space(b's'),
            feed_builds: space(b'i'),
            queue: space(b'q'),
            pending: space(b'p'),
            running: space(b'r'),
            cooldowns: space(b'c'),
            deliveries: space(b'd'),
            delivery_ids: space(b'u'),
            outbox: space(b'o'),
            records,
            db,
            committer,
            write_lock,
            keep_deliveries: options.keep_deliveries.max(1),
            failed,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Compares the last commit sled holds with the acknowledged mark; returns the
    /// commit to number on from.
    fn check_mark(path: &Path, meta: &Space, on_loss: OnLoss) -> Result<mark::Point, StoreError> {
        let found = match meta.get(keys::COMMIT)? {
            Some(v) => mark::Point::from_bytes(&v)?,
            None => mark::Point::default(),
        };
        let Some(acked) = mark::Mark::read(path)? else {
            return Ok(found);
        };
        if acked.seq <= found.seq {
            return Ok(found);
        }
        if on_loss == OnLoss::Refuse {
            return Err(StoreError::Lost {
                path: path.to_owned(),
                acked: acked.describe(),
                found: found.describe(),
            });
        }
        tracing::error!(
            acknowledged = %acked.describe(),
            found = %found.describe(),
            commits_lost = acked.seq - found.seq,
            "acknowledged writes are missing from the database; carrying on with what is left (--accept-data-loss)"
        );
        // From here on the mark follows what is left, so the next start needs no flag.
        mark::Mark::open(path, found)
            .and_then(|mark| mark.write(found))
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(found)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.meta.get(keys::SCHEMA)? {
            None => {
                self.meta
                    .insert(keys::SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                self.durable_blocking()
            }
            Some(v) => match keys::read_u32(&v)? {
                SCHEMA_VERSION => Ok(()),
                found @ 1..=4 => {
                    if found == 1 {
                        self.migrate_from_v1()?;
                    }
                    if found <= 2 {
                        self.migrate_from_v2()?;
                    }
                    if found <= 3 {
                        self.migrate_from_v3()?;
                    }
                    self.migrate_from_v4()?;
                    self.durable_blocking()?;
                    tracing::info!(from = found, to = SCHEMA_VERSION, "store layout upgraded");
                    Ok(())
                }
                found if found > SCHEMA_VERSION => Err(StoreError::Schema { found }),
                found => Err(StoreError::Corrupt(format!("unknown store schema {found}"))),
            },
        }
    }

    /// Runs `write` on the store's writer thread, over the pending writes of its group
    /// commit, and resolves once the group is on disk: the webhook path's one thread
    /// hop (see `commit` and `group`). Never call the store's own writing methods in
    /// `write` (the writer thread holds the write lock): use the [`Group`]'s.
    pub(crate) async fn write_durable<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Group<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        self.committer
            .run(move |writes| write(&mut Group::new(&store, writes)))
            .await
            .map_err(durability)?
    }

    /// Waits until every write made before the call is on disk (fsync'd), for code
    /// already on a blocking thread.
    pub fn durable_blocking(&self) -> Result<(), StoreError> {
        self.committer.durable_blocking().map_err(durability)
    }

    /// Holds the write lock: every read-then-write of several records goes under it.
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a set of writes atomically (see [`space::apply`]).
    fn apply(&self, writes: Writes) -> Result<(), StoreError> {
        space::apply(&self.records, writes)
    }

    /// Whether a group commit failed. sled 0.34 keeps its first I/O error (a full
    /// disk) for good, so such a store never takes a write again in this process.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the store answers a write (for `/healthz`).
    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        if self.has_failed() {
            return Err(StoreError::Durability(
                "an earlier commit failed; waiting for the disk".to_owned(),
            ));
        }
        self.meta
            .insert(keys::HEALTH, &crate::clock::now_ms().to_be_bytes())?;
        Ok(())
    }

    /// Size of the database on disk, for status output.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::{Store, StoreOptions};

    /// A store in a fresh temp dir; the dir lives as long as the returned guard.
    pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = reopen(&dir);
        (dir, store)
    }

    /// The store in `dir` (made by [`temp_store`]), opened afresh.
    pub(crate) fn reopen(dir: &tempfile::TempDir) -> Store {
        let options = StoreOptions {
            cache_bytes: 4 * 1024 * 1024,
            keep_deliveries: 3,
        };
        Store::open(dir.path(), options).unwrap()
    }
}
