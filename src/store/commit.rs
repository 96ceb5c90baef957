//! Group commit on one writer thread: callers hand it a write (a task); it runs every
//! task queued so far, one after another, over one set of pending writes (each task
//! sees the writes of those before it), applies them as one sled batch, flushes once,
//! and only then answers each caller. One thread hop per webhook, no lock contention
//! between writers, one batch and one fsync shared by every write that arrived before
//! it. A group whose batch or flush fails fails every task in it; none is acknowledged.
//!
//! Two sled 0.34 facts shape this (measured for hookd, see issue 3): awaiting
//! `flush_async` from many tasks at once deadlocks, and sled's flush ends in
//! `sync_file_range`, which does not survive a power cut. So one thread owns flushing,
//! and follows each sled flush with an `fsync` of every blob file sled wrote since the
//! last one (see [`Blobs`]) and an `fdatasync` of the database file; then it moves the
//! acknowledged mark (see `mark`), and only then answers.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::keys;
use super::mark::{Mark, Point};
use super::space::{self, Space, Writes};

/// The outcome of one flush, shared by every task it covered.
pub(crate) type FlushResult = Result<(), Arc<std::io::Error>>;

/// Called once the flush covering a task is over, with the flush's outcome.
type Completion = Box<dyn FnOnce(FlushResult) + Send>;

/// A write to run on the writer thread: it stages its changes in the group's pending
/// writes and returns what to do once the group is durable.
type Task = Box<dyn FnOnce(&mut Writes) -> Completion + Send>;

/// Handle to the writer thread.
#[derive(Clone, Debug)]
pub(crate) struct Committer {
    inner: Arc<Writer>,
}

/// The writer thread and the way to reach it; dropping the last handle stops and
/// joins the thread, so the database is closed when the store is.
#[derive(Debug)]
struct Writer {
    /// Jobs waiting for the thread.
    tasks: Option<mpsc::Sender<Task>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tasks.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Committer {
    /// Starts the writer thread, which owns `disk` from then on.
    pub(crate) fn start(disk: Disk) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Task>();
        let thread = std::thread::Builder::new()
            .name("hookd-writer".into())
            .spawn(move || write_loop(disk, rx))?;
        let inner = Writer {
            tasks: Some(tx),
            thread: Some(thread),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Runs `write` on the writer thread, under the store's write lock, over the
    /// group's pending writes, and resolves with its result once the group is on disk;
    /// a failed batch or flush turns into `Err` even if the write itself succeeded.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Writes) -> T + Send + 'static,
    ) -> Result<T, Arc<std::io::Error>> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |writes: &mut Writes| {
            let value = write(writes);
            Box::new(move |flushed: FlushResult| {
                let _ = tx.send(flushed.map(|()| value));
            })
        }))?;
        rx.await.map_err(|_| stopped())?
    }

    /// Waits until everything written before this call is on disk (for blocking callers:
    /// admin commands on the blocking pool).
    pub(crate) fn durable_blocking(&self) -> FlushResult {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |_: &mut Writes| {
            Box::new(move |flushed: FlushResult| {
                let _ = tx.send(flushed);
            })
        }))?;
        rx.blocking_recv().map_err(|_| stopped())?
    }

    fn send(&self, task: Task) -> Result<(), Arc<std::io::Error>> {
        let tasks = self.inner.tasks.as_ref().ok_or_else(stopped)?;
        tasks.send(task).map_err(|_| stopped())
    }
}

fn stopped() -> Arc<std::io::Error> {
    Arc::new(std::io::Error::other("store writer has stopped"))
}

/// Takes every task queued so far, runs them as one group, completes them all; repeats.
fn write_loop(mut disk: Disk, rx: mpsc::Receiver<Task>) {
    while let Ok(first) = rx.recv() {
        let (completions, result) = disk.group(std::iter::once(first).chain(rx.try_iter()));
        let result = result.map_err(Arc::new);
        if let Err(e) = &result {
            disk.failed.store(true, Ordering::Relaxed);
            let key = format!("store flush failed: {e}");
            if let Some(repeats) = crate::logging::once_per_interval(&key) {
                tracing::error!(error = %e, writes = completions.len(), repeats, "store flush failed");
            }
        }
        for complete in completions {
            complete(result.clone());
        }
    }
}

/// Everything a group commit makes durable, owned by the writer thread.
pub(crate) struct Disk {
    /// The database, for its flush.
    pub(crate) db: sled::Db,
    /// `db/db`, for the `fdatasync` sled's flush does not do.
    pub(crate) data_file: File,
    /// `db/blobs`, whose new files each commit syncs.
    pub(crate) blobs: Blobs,
    /// The tree every record lives in, for the group's batch.
    pub(crate) records: sled::Tree,
    /// Where sled keeps the commit number.
    pub(crate) meta: Space,
    /// The store's write lock, held while a group decides and applies its batch, so
    /// no other writer reads or writes in between.
    pub(crate) lock: Arc<std::sync::Mutex<()>>,
    /// The acknowledged mark outside sled.
    pub(crate) mark: Mark,
    /// The last commit made (or found at open).
    pub(crate) last: Point,
    /// Set once a commit failed: sled keeps its first I/O error for good, so only a
    /// new process heals the store (see `daemon::heal`).
    pub(crate) failed: Arc<AtomicBool>,
}

impl Disk {
    /// Runs `tasks` over one set of pending writes and applies them, with the commit's
    /// number, as one atomic batch, all under the write lock; then makes it durable.
    fn group(
        &mut self,
        tasks: impl Iterator<Item = Task>,
    ) -> (Vec<Completion>, std::io::Result<()>) {
        let point = self.last.next();
        let (completions, applied) = {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut writes = Writes::default();
            let completions: Vec<Completion> = tasks.map(|task| task(&mut writes)).collect();
            writes.insert(&self.meta, keys::COMMIT, &point.to_bytes()[..]);
            (completions, space::apply(&self.records, writes))
        };
        let result = applied
            .map_err(std::io::Error::other)
            .and_then(|()| self.commit(point));
        (completions, result)
    }

    /// Flushes, syncs every file sled wrote, then moves the acknowledged mark to
    /// `point` (applied with the group): the mark never runs ahead of sled's disk.
    fn commit(&mut self, point: Point) -> std::io::Result<()> {
        self.db.flush().map_err(std::io::Error::other)?;
        self.blobs.sync_new()?;
        self.data_file.sync_data()?;
        self.mark.write(point)?;
        self.last = point;
        Ok(())
    }
}

/// sled writes any value or tree node over its blob threshold (128 KiB) to a file of
/// its own under `db/blobs/`, outside the log its flush covers. hookd's records are
/// bounded far below that, but shelves of builds and operator input (a feed's command)
/// are not, so every group commit syncs the blob files it has not synced yet.
pub(crate) struct Blobs {
    /// `db/blobs`.
    dir: PathBuf,
    /// Names synced already (sled never rewrites a blob file; it writes a new one).
    synced: HashSet<OsString>,
}

impl Blobs {
    /// Treats the files already there as synced: sled's recovery at open read them.
    pub(crate) fn new(dir: PathBuf) -> Self {
        let synced = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.file_name()))
            .collect();
        Self { dir, synced }
    }

    /// fsyncs each blob file not synced before, then the directory that names them.
    /// One `getdents` when there is none (the usual case).
    fn sync_new(&mut self) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut present = HashSet::with_capacity(self.synced.len());
        let mut any_new = false;
        for entry in entries {
            let name = entry?.file_name();
            if !self.synced.contains(&name) {
                match File::open(self.dir.join(&name)) {
                    Ok(file) => file.sync_all()?,
                    // sled removed it meanwhile (its blob collection).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                any_new = true;
            }
            present.insert(name);
        }
        if any_new {
            File::open(&self.dir)?.sync_all()?;
        }
        self.synced = present;
        Ok(())
    }
}
