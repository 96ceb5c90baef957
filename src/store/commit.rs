//! Group commit on one writer thread: callers hand it a write (a task); it runs every
//! task queued so far, one after another, over one set of pending writes (each task
//! sees the writes of those before it), applies them as one sled batch, flushes once,
//! and only then, once the acknowledged mark has caught up, answers each caller. One
//! thread hop per webhook, no lock contention between writers, one batch and one fsync
//! shared by every write that arrived before it. A group whose batch, flush or mark
//! fails fails every task in it; none is acknowledged. After a failed flush or sync,
//! every later group fails too, until hookd reopens the store (see `Disk::commit`).
//!
//! Two sled 0.34 facts shape this (measured for hookd, see issue 3): awaiting
//! `flush_async` from many tasks at once deadlocks, and sled's flush ends in
//! `sync_file_range`, which does not survive a power cut. So one thread owns flushing,
//! and follows each sled flush with an `fdatasync` of the database file. (Values and
//! nodes over sled's blob threshold go to files of their own, outside that file: the
//! vendored sled fsyncs each of those, and its directory, before its log can name it;
//! see `vendor/README.md`.)
//!
//! Then a second thread moves the acknowledged mark (see `mark`) to the group and
//! answers its callers, while the writer thread goes on with the next group: the
//! mark's `fdatasync` overlaps the next group's batch and sync instead of adding to
//! every group's time (measured for issue 18: the two syncs in a row were most of a
//! group's time at concurrency 64). The mark still never runs ahead of sled's disk
//! (it only learns of a group once sled's files hold it) and no caller hears back
//! before the mark covering its group is on disk. Groups that queue up behind one
//! mark write share the next one.

use std::fs::File;
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

/// The writer and mark threads and the way to reach them; dropping the last handle
/// stops and joins both, so the database is closed when the store is.
#[derive(Debug)]
struct Writer {
    /// Jobs waiting for the writer thread.
    tasks: Option<mpsc::Sender<Task>>,
    /// The writer thread, then the mark thread it feeds (joined in that order).
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Where a test sets the failure the next group meets.
    #[cfg(test)]
    fault: FaultHook,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tasks.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Committer {
    /// Starts the writer thread, which owns `disk` from then on, and the mark thread,
    /// which owns `acks`.
    pub(crate) fn start(disk: Disk, acks: Acks) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Task>();
        let (synced_tx, synced_rx) = mpsc::channel::<Synced>();
        #[cfg(test)]
        let fault = disk.fault.clone();
        let marker = std::thread::Builder::new()
            .name("hookd-mark".into())
            .spawn(move || ack_loop(acks, synced_rx))?;
        let writer = std::thread::Builder::new()
            .name("hookd-writer".into())
            .spawn(move || write_loop(disk, rx, synced_tx))?;
        let inner = Writer {
            tasks: Some(tx),
            threads: vec![writer, marker],
            #[cfg(test)]
            fault,
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

    /// Makes the next group commit fail at `fault`, as a real I/O error there would.
    #[cfg(test)]
    pub(crate) fn fail_next(&self, fault: Fault) {
        *self.inner.fault.lock().unwrap() = Some(fault);
    }

    fn send(&self, task: Task) -> Result<(), Arc<std::io::Error>> {
        let tasks = self.inner.tasks.as_ref().ok_or_else(stopped)?;
        tasks.send(task).map_err(|_| stopped())
    }
}

fn stopped() -> Arc<std::io::Error> {
    Arc::new(std::io::Error::other("store writer has stopped"))
}

/// A group that sled's files hold (or that failed), on its way to the mark thread.
struct Synced {
    /// The group's commit once sled's files hold it; why not, if they do not.
    point: std::io::Result<Point>,
    /// Its callers' answers.
    completions: Vec<Completion>,
}

/// Takes every task queued so far, runs them as one group, hands the group to the mark
/// thread; repeats.
fn write_loop(mut disk: Disk, rx: mpsc::Receiver<Task>, synced: mpsc::Sender<Synced>) {
    while let Ok(first) = rx.recv() {
        let (completions, point) = disk.group(std::iter::once(first).chain(rx.try_iter()));
        if synced.send(Synced { point, completions }).is_err() {
            break;
        }
    }
}

/// Takes every group synced so far, moves the mark over them at once, answers their
/// callers; repeats.
fn ack_loop(mut acks: Acks, rx: mpsc::Receiver<Synced>) {
    while let Ok(first) = rx.recv() {
        acks.settle(std::iter::once(first).chain(rx.try_iter()).collect());
    }
}

/// The acknowledging side, owned by the mark thread.
pub(crate) struct Acks {
    /// The acknowledged mark outside sled.
    pub(crate) mark: Mark,
    /// Set once a commit failed: sled keeps its first I/O error for good, so only a
    /// new process heals the store (see `daemon::heal`).
    pub(crate) failed: Arc<AtomicBool>,
}

impl Acks {
    /// Moves the mark to the last of `groups` that sled's files hold (one `fdatasync`
    /// for all of them), then answers every caller: with the error, those of a group
    /// that failed, and of every group when the mark could not be moved.
    fn settle(&mut self, groups: Vec<Synced>) {
        let last = groups.iter().rev().find_map(|g| g.point.as_ref().ok());
        let marked = match last {
            Some(point) => self.mark.write(*point).map_err(Arc::new),
            None => Ok(()),
        };
        for group in groups {
            let result = match group.point {
                Ok(_) => marked.clone(),
                Err(e) => Err(Arc::new(e)),
            };
            if let Err(e) = &result {
                self.failed(e, group.completions.len());
            }
            for complete in group.completions {
                complete(result.clone());
            }
        }
    }

    fn failed(&self, e: &std::io::Error, writes: usize) {
        self.failed.store(true, Ordering::Relaxed);
        let key = format!("store flush failed: {e}");
        if let Some(repeats) = crate::logging::once_per_interval(&key) {
            tracing::error!(error = %e, writes, repeats, "store flush failed");
        }
    }
}

/// Where a group commit can be made to fail in tests: before its batch is applied
/// (nothing of it reaches sled), or after (sled holds it, unflushed).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The batch is refused.
    Apply,
    /// The flush is refused.
    Flush,
}

/// The failure the next group meets, set by [`Committer::fail_next`].
#[cfg(test)]
pub(crate) type FaultHook = Arc<std::sync::Mutex<Option<Fault>>>;

/// Everything a group commit makes durable in sled, owned by the writer thread.
pub(crate) struct Disk {
    /// The database, for its flush.
    pub(crate) db: sled::Db,
    /// `db/db`, for the `fdatasync` sled's flush does not do.
    pub(crate) data_file: File,
    /// The tree every record lives in, for the group's batch.
    pub(crate) records: sled::Tree,
    /// Where sled keeps the commit number.
    pub(crate) meta: Space,
    /// The store's write lock, held while a group decides and applies its batch, so
    /// no other writer reads or writes in between.
    pub(crate) lock: Arc<std::sync::Mutex<()>>,
    /// The last commit made (or found at open).
    pub(crate) last: Point,
    /// Why a flush or sync failed, once one has: every later group fails too.
    pub(crate) broken: Option<String>,
    /// The failure a test set for the next group.
    #[cfg(test)]
    pub(crate) fault: FaultHook,
}

impl Disk {
    /// Runs `tasks` over one set of pending writes and applies them, with the commit's
    /// number, as one atomic batch, all under the write lock; then makes it durable in
    /// sled's files and returns the commit.
    fn group(
        &mut self,
        tasks: impl Iterator<Item = Task>,
    ) -> (Vec<Completion>, std::io::Result<Point>) {
        let point = self.last.next();
        let (completions, applied) = {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut writes = Writes::default();
            let completions: Vec<Completion> = tasks.map(|task| task(&mut writes)).collect();
            let applied = match &self.broken {
                // The tasks ran (their completions answer the callers), but nothing
                // they staged is applied.
                Some(why) => Err(still_broken(why)),
                None => {
                    writes.insert(&self.meta, keys::COMMIT, &point.to_bytes()[..]);
                    self.apply(writes)
                }
            };
            (completions, applied)
        };
        let result = applied.and_then(|()| {
            self.commit(point)
                .inspect_err(|e| self.broken = Some(e.to_string()))
        });
        (completions, result.map(|()| point))
    }

    /// Applies the group's batch (atomic: all of it or nothing).
    fn apply(&self, writes: Writes) -> std::io::Result<()> {
        #[cfg(test)]
        self.injected(Fault::Apply)?;
        space::apply(&self.records, writes).map_err(std::io::Error::other)
    }

    /// Flushes and syncs every file sled wrote; `point` (applied with the group) is
    /// then the last commit. The mark thread moves the mark to it.
    ///
    /// A failure here is for good (the caller sets `broken`). sled keeps its own first
    /// I/O error, but an `fdatasync` that failed reports it once: Linux may have
    /// dropped the pages it could not write, and the next `fdatasync` succeeds without
    /// them. A later group that then succeeded would acknowledge writes that rest on
    /// the lost ones (a trigger joining a build that is gone). So the store answers no
    /// write until hookd reopens it (see `heal`), from what is really on disk.
    fn commit(&mut self, point: Point) -> std::io::Result<()> {
        #[cfg(test)]
        self.injected(Fault::Flush)?;
        self.db.flush().map_err(std::io::Error::other)?;
        self.data_file.sync_data()?;
        self.last = point;
        Ok(())
    }

    /// The failure a test set for this step of the group, taken (once).
    #[cfg(test)]
    fn injected(&self, at: Fault) -> std::io::Result<()> {
        let mut fault = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        if *fault != Some(at) {
            return Ok(());
        }
        *fault = None;
        Err(std::io::Error::other(format!("injected {at:?} failure")))
    }
}

/// The error of a group refused because an earlier flush failed.
fn still_broken(why: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "an earlier flush failed ({why}); no write is acknowledged until hookd reopens the store"
    ))
}
