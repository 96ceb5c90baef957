//! Group commit: many writers, one flush in flight, every writer answered once the
//! flush that covers its write has reached the disk.
//!
//! Two sled 0.34 facts shape this (measured for hookd, see issue 3): awaiting
//! `flush_async` from many tasks at once deadlocks, and sled's flush ends in
//! `sync_file_range`, which does not survive a power cut. So one thread owns flushing,
//! and follows each sled flush with an `fdatasync` of the database file.

use std::fs::File;
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

/// The answer every waiter of one flush gets.
type FlushResult = Result<(), Arc<std::io::Error>>;

/// Hands write barriers to the flusher thread.
#[derive(Clone, Debug)]
pub(crate) struct Committer {
    inner: Arc<Flusher>,
}

/// The flusher thread and the way to reach it; dropping the last handle stops and
/// joins the thread, so the database is closed when the store is.
#[derive(Debug)]
struct Flusher {
    /// Each message is one writer waiting for its write to be durable.
    waiters: Option<mpsc::Sender<oneshot::Sender<FlushResult>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.waiters.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Committer {
    /// Starts the flusher thread for `db`, whose data file is `data_file`.
    pub(crate) fn start(db: sled::Db, data_file: File) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<oneshot::Sender<FlushResult>>();
        let thread = std::thread::Builder::new()
            .name("hookd-flush".into())
            .spawn(move || flush_loop(db, data_file, rx))?;
        let inner = Flusher {
            waiters: Some(tx),
            thread: Some(thread),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    fn send(&self, waiter: oneshot::Sender<FlushResult>) -> Result<(), Arc<std::io::Error>> {
        let waiters = self.inner.waiters.as_ref().ok_or_else(stopped)?;
        waiters.send(waiter).map_err(|_| stopped())
    }

    /// Waits until everything written before this call is on disk.
    pub(crate) async fn durable(&self) -> FlushResult {
        let (tx, rx) = oneshot::channel();
        self.send(tx)?;
        rx.await.map_err(|_| stopped())?
    }

    /// [`Self::durable`] for blocking callers (admin commands on the blocking pool).
    pub(crate) fn durable_blocking(&self) -> FlushResult {
        let (tx, rx) = oneshot::channel();
        self.send(tx)?;
        rx.blocking_recv().map_err(|_| stopped())?
    }
}

fn stopped() -> Arc<std::io::Error> {
    Arc::new(std::io::Error::other("store flusher has stopped"))
}

/// Takes every waiter queued so far, flushes once, answers them all; repeats.
fn flush_loop(db: sled::Db, data_file: File, rx: mpsc::Receiver<oneshot::Sender<FlushResult>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let result = db
            .flush()
            .map(drop)
            .map_err(std::io::Error::other)
            .and_then(|()| data_file.sync_data())
            .map_err(Arc::new);
        if let Err(e) = &result {
            tracing::error!(error = %e, waiters = batch.len(), "store flush failed");
        }
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
    }
}
