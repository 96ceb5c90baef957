//! One reader per followed build that is not over: it reads each new piece of the log
//! once, encodes its event once, and hands the same bytes to every follower (a
//! broadcast of [`Bytes`]), so a hundred followers cost one read and one encoding,
//! not a hundred. A follower that is not where a piece starts (it joined at another
//! offset, or fell behind and the broadcast dropped pieces) reads the file itself up
//! to where that piece ends, so nothing is lost or repeated. Those reads, the only
//! per-follower file work, are bounded and run on the blocking pool.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::{ReadError, Source};
use crate::paths::whole_chars;
use crate::scheduler::{BuildUpdate, Change};

/// Most log bytes in one event.
pub(super) const CHUNK: usize = 16 * 1024;
/// Most log bytes read from the file at once (and in one broadcast piece).
pub(super) const READ: usize = 4 * CHUNK;
/// Pieces a follower may fall behind by before it reads the file instead (4 MiB of
/// log at most, held only while some follower has not taken it).
const PIECES_KEPT: usize = 64;
/// Followers' own file reads under way at once (each holds up to [`READ`] bytes).
const FOLLOWER_READS: usize = 4;
/// How often a build's log is read anyway: output a build writes and then sits on
/// may arrive without an update to wake the reader.
const POLL: Duration = Duration::from_millis(250);
/// How often the reader rereads the build, whatever the updates said (a removed feed
/// takes its builds without an update).
const RESYNC: Duration = Duration::from_secs(5);

/// One piece of a build's log (one read of the file), encoded once for every
/// follower. A follower sends it with one write: a burst of output costs each
/// follower a wake-up and a write per read, not per event.
#[derive(Debug, Clone)]
pub(super) struct Piece {
    /// Offset of its first byte in the log.
    pub(super) start: u64,
    /// Offset just past its last byte (the last `log` event's id).
    pub(super) end: u64,
    /// The bytes, for the raw log.
    pub(super) raw: Bytes,
    /// Its `log` events, for the event stream.
    pub(super) events: Bytes,
}

/// What a build's reader tells its followers, in order.
#[derive(Debug, Clone)]
pub(super) enum Note {
    /// The log grew by this piece.
    Log(Piece),
    /// The build's status changed and it is not over.
    Status(String),
    /// The build is over with this status; every piece of its log was sent before.
    Over(String),
    /// The build is gone (its feed was removed).
    Gone,
}

/// What joining a build's reader gives a follower.
pub(super) struct Joined {
    /// The reader's notes from the moment of joining.
    pub(super) notes: broadcast::Receiver<Note>,
    /// Where the reader's pieces continue: the follower reads the file up to here.
    pub(super) position: u64,
    /// The build's status as the reader knows it.
    pub(super) status: String,
    /// The reader, to ask for its status again after falling behind.
    pub(super) shared: Arc<Shared>,
}

/// A reader's state its followers may look at.
#[derive(Debug)]
pub(super) struct Shared {
    notes: broadcast::Sender<Note>,
    /// End of the last piece sent.
    position: AtomicU64,
    /// The build's status as last seen.
    status: Mutex<String>,
}

impl Shared {
    /// The build's status as the reader last saw it.
    pub(super) fn status(&self) -> String {
        lock(&self.status).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The readers of one listener, by build, and the bound on followers' own reads.
#[derive(Debug)]
pub(crate) struct Tails {
    /// The reader of each followed build that is not over. A reader leaves it (under
    /// this lock) before its last note, and only a follower that joins under it gets
    /// notes, so no follower joins a reader that has stopped.
    readers: Mutex<HashMap<u64, Arc<Shared>>>,
    /// Permits for followers' own file reads.
    reads: Semaphore,
    /// Daemon shutdown: readers stop.
    shutdown: CancellationToken,
}

impl Tails {
    pub(crate) fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            readers: Mutex::new(HashMap::new()),
            reads: Semaphore::new(FOLLOWER_READS),
            shutdown,
        })
    }

    /// Joins the reader of build `id`, starting one if it has none. `status` is the
    /// build's status (not over) read after `updates` subscribed, so a new reader
    /// misses no change.
    pub(super) async fn join(
        self: &Arc<Self>,
        source: &Arc<dyn Source>,
        id: u64,
        status: String,
        updates: broadcast::Receiver<BuildUpdate>,
    ) -> Result<Joined, ReadError> {
        if let Some(joined) = self.joined(id) {
            return Ok(joined);
        }
        let position = start_position(source, id).await?;
        let shared = {
            let mut readers = lock(&self.readers);
            if let Some(shared) = readers.get(&id) {
                // Another follower started one meanwhile.
                return Ok(joined(shared));
            }
            let shared = Arc::new(Shared {
                notes: broadcast::channel(PIECES_KEPT).0,
                position: AtomicU64::new(position),
                status: Mutex::new(status),
            });
            readers.insert(id, shared.clone());
            shared
        };
        let joined = joined(&shared);
        let reader = Reader {
            tails: self.clone(),
            source: source.clone(),
            id,
            shared,
            updates,
        };
        tokio::spawn(reader.run());
        Ok(joined)
    }

    fn joined(&self, id: u64) -> Option<Joined> {
        lock(&self.readers).get(&id).map(joined)
    }

    /// Takes the reader of `id` out if it has no follower left; true if it did.
    fn leave_if_unfollowed(&self, id: u64, shared: &Shared) -> bool {
        let mut readers = lock(&self.readers);
        if shared.notes.receiver_count() > 0 {
            return false;
        }
        readers.remove(&id);
        true
    }

    fn leave(&self, id: u64) {
        lock(&self.readers).remove(&id);
    }

    /// A permit for one of a follower's own file reads.
    pub(super) async fn read_permit(&self) -> Option<SemaphorePermit<'_>> {
        self.reads.acquire().await.ok()
    }
}

/// Subscribes to a reader; called under the readers' lock.
fn joined(shared: &Arc<Shared>) -> Joined {
    Joined {
        notes: shared.notes.subscribe(),
        position: shared.position.load(Ordering::Acquire),
        status: shared.status(),
        shared: shared.clone(),
    }
}

/// Where a new reader starts: the log's current end, less a character cut by a write
/// in progress (a piece's event data is whole text).
async fn start_position(source: &Arc<dyn Source>, id: u64) -> Result<u64, ReadError> {
    let source = source.clone();
    let tail = tokio::task::spawn_blocking(move || source.log_tail(id, 3))
        .await
        .unwrap_or_else(|_| Err(ReadError::Unavailable("daemon is shutting down".into())))?;
    Ok(tail.start + whole_chars(&tail.bytes) as u64)
}

/// Whether a status word is a build's last.
pub(super) fn is_final(status: &str) -> bool {
    !matches!(status, "queued" | "running")
}

/// One build's reader: reads the log as it grows and tells the followers.
struct Reader {
    tails: Arc<Tails>,
    source: Arc<dyn Source>,
    id: u64,
    shared: Arc<Shared>,
    updates: broadcast::Receiver<BuildUpdate>,
}

impl Reader {
    async fn run(mut self) {
        let mut resync = tokio::time::interval(RESYNC);
        resync.reset();
        loop {
            // Read everything written so far; only then decide whether the build is
            // over, so output written just before its end goes out before `Over`.
            let status = self.shared.status();
            let over = is_final(&status);
            if let Err(e) = self.read_new(over).await {
                tracing::warn!(build = self.id, error = %e, "cannot follow a build log");
                self.tails.leave(self.id);
                return;
            }
            if over {
                self.tails.leave(self.id);
                let _ = self.shared.notes.send(Note::Over(status));
                return;
            }
            if self.tails.leave_if_unfollowed(self.id, &self.shared) {
                return;
            }
            if self.wait(&mut resync).await.is_err() {
                return;
            }
        }
    }

    /// Waits for something that may have changed the build or its log: an update of
    /// this build (updates of others, e.g. every webhook's admission, are passed over
    /// without reading the file), a resync, or the poll interval. `Err`: stop.
    async fn wait(&mut self, resync: &mut tokio::time::Interval) -> Result<(), ()> {
        let poll = tokio::time::sleep(POLL);
        tokio::pin!(poll);
        loop {
            tokio::select! {
                update = self.updates.recv() => match update {
                    Ok(u) if u.build.0 == self.id => {
                        self.apply(u.change);
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return self.reread().await,
                    Err(RecvError::Closed) => {
                        self.tails.leave(self.id);
                        return Err(());
                    }
                },
                _ = resync.tick() => return self.reread().await,
                _ = &mut poll => return Ok(()),
                _ = self.tails.shutdown.cancelled() => {
                    self.tails.leave(self.id);
                    return Err(());
                }
            }
        }
    }

    fn apply(&self, change: Change) {
        match change {
            Change::Started => self.set_status("running".into()),
            Change::Finished { status } => self.set_status(status.word().into()),
            _ => {}
        }
    }

    /// Records a status; a change of a build not over is told at once (its end is
    /// told after the last of its log).
    fn set_status(&self, status: String) {
        let mut now = lock(&self.shared.status);
        if *now == status {
            return;
        }
        now.clone_from(&status);
        drop(now);
        if !is_final(&status) {
            let _ = self.shared.notes.send(Note::Status(status));
        }
    }

    /// The status from the store; a build that is gone is told and the reader stops
    /// (`Err`).
    async fn reread(&self) -> Result<(), ()> {
        let source = self.source.clone();
        let id = self.id;
        let read = tokio::task::spawn_blocking(move || source.build(id).map(|b| b.status)).await;
        match read {
            Ok(Ok(status)) => self.set_status(status),
            Ok(Err(ReadError::NotFound(_))) | Err(_) => {
                self.tails.leave(self.id);
                let _ = self.shared.notes.send(Note::Gone);
                return Err(());
            }
            Ok(Err(ReadError::Unavailable(_))) => {}
        }
        Ok(())
    }

    /// Sends the log from the last piece's end to its current end (a character cut at
    /// the end waits for the next read unless the build is over).
    async fn read_new(&self, over: bool) -> Result<(), ReadError> {
        loop {
            let from = self.shared.position.load(Ordering::Acquire);
            let chunk = read_log(&self.source, self.id, from, READ).await?;
            let hold = !over || chunk.len() == READ;
            let pieces = cut(&chunk, hold);
            if pieces.is_empty() {
                return Ok(());
            }
            let chunk = Bytes::from(chunk);
            let taken = pieces.last().map_or(0, |r| r.end);
            let end = from + taken as u64;
            let piece = Piece {
                start: from,
                end,
                raw: chunk.slice(..taken),
                events: super::live::log_events(&chunk, from, &pieces),
            };
            let _ = self.shared.notes.send(Note::Log(piece));
            self.shared.position.store(end, Ordering::Release);
            if chunk.len() < READ {
                return Ok(());
            }
        }
    }
}

/// Up to `max` bytes of a build's log from `offset`, read on the blocking pool.
pub(super) async fn read_log(
    source: &Arc<dyn Source>,
    id: u64,
    offset: u64,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    let source = source.clone();
    tokio::task::spawn_blocking(move || source.log_chunk(id, offset, max))
        .await
        .unwrap_or_else(|_| Err(ReadError::Unavailable("daemon is shutting down".into())))
}

/// Splits what was read into events of at most [`CHUNK`] bytes, each ending on a
/// whole UTF-8 character; with `hold`, a character cut at the very end is left for
/// the next read (without, the rest goes out as it is: the build is over).
pub(super) fn cut(bytes: &[u8], hold: bool) -> Vec<Range<usize>> {
    let end = if hold {
        whole_chars(bytes)
    } else {
        bytes.len()
    };
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < end {
        let mut next = (at + CHUNK).min(end);
        if next < end {
            next = at + whole_chars(&bytes[at..next]);
            if next == at {
                // Not text: no character to keep whole.
                next = (at + CHUNK).min(end);
            }
        }
        pieces.push(at..next);
        at = next;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_whole_text_of_at_most_a_chunk() {
        // Three-byte characters never line up with the chunk size.
        let text = "€".repeat(3 * CHUNK / 3 + 5);
        let bytes = text.as_bytes();
        for hold in [true, false] {
            let pieces = cut(bytes, hold);
            assert_eq!(pieces.first().map(|r| r.start), Some(0));
            assert_eq!(pieces.last().map(|r| r.end), Some(bytes.len()));
            for pair in pieces.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "no gap, no overlap");
            }
            for piece in &pieces {
                assert!(piece.len() <= CHUNK);
                assert!(std::str::from_utf8(&bytes[piece.clone()]).is_ok());
            }
        }
        let cut_short = &bytes[..bytes.len() - 1];
        assert_eq!(
            cut(cut_short, true).last().map(|r| r.end),
            Some(bytes.len() - 3),
            "the cut character waits"
        );
        assert_eq!(
            cut(cut_short, false).last().map(|r| r.end),
            Some(bytes.len() - 1),
            "unless the build is over"
        );
        assert!(cut(b"", true).is_empty());
    }
}
