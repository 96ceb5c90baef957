//! Open connections: the cap, the idle timeout, which connection gives way when the
//! cap is reached, and the drain at shutdown.
//!
//! A connection is *idle* while no request is in progress on it; idle ones are closed
//! after the idle timeout. At the cap, a new connection is still accepted and the
//! connection idle the longest is closed to make room (as common reverse proxies reuse their keep-alive
//! connections when they run short): a crowd of keep-alive or header-trickling clients
//! cannot keep a forge's delivery waiting, and no request in progress is ever cut off.
//! Only when every connection is busy with a request do new ones wait in the backlog.

use std::collections::HashMap;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Body;
use hyper::server::conn::http1::Connection;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Connections open at once that count as a burst: when the last of them closes, the
/// memory they used is handed back to the system.
const BURST: usize = 16;

/// How long a closed idle connection gets to finish its goodbye (flush, FIN) before it
/// is dropped outright.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Every open connection, for the cap, eviction and the drain.
pub(crate) struct Slots {
    /// Time zero for the activity stamps.
    epoch: Instant,
    /// Open connections by id.
    open: Mutex<HashMap<u64, Arc<SlotState>>>,
    /// Ids for new connections.
    next_id: AtomicU64,
    /// Wakes the accept loop (a connection closed or became idle) and the drain.
    changed: Notify,
    /// Most connections open at once since they were last all closed.
    peak: AtomicUsize,
}

/// What the accept loop and the connection's own task know about one connection.
struct SlotState {
    /// Requests whose handler is running.
    active: AtomicUsize,
    /// Microseconds after the epoch of the last byte received or request finished.
    last_activity: AtomicU64,
    /// Set once the connection is asked to close (evicted); it is no longer a candidate.
    evicted: AtomicBool,
    /// Tells the connection's task it was evicted.
    evict: CancellationToken,
}

/// A connection's state with the registry it belongs to.
#[derive(Clone)]
struct Handle {
    slots: Arc<Slots>,
    state: Arc<SlotState>,
}

impl Handle {
    /// Notes that something happened on the connection: it is not idle from now.
    fn touch(&self) {
        let now = self.slots.now_us();
        self.state.last_activity.store(now, Ordering::Relaxed);
    }
}

/// One connection's place among the open ones; freed when dropped.
pub(crate) struct Slot {
    id: u64,
    handle: Handle,
}

impl Slots {
    /// No connections yet.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            changed: Notify::new(),
            peak: AtomicUsize::new(0),
        })
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<SlotState>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a new connection may be accepted: under the cap, or some connection
    /// is idle and can give way.
    pub(crate) async fn room(&self, max: usize) {
        loop {
            let changed = self.changed.notified();
            {
                let open = self.lock();
                if open.len() < max || open.values().any(|s| s.evictable()) {
                    return;
                }
            }
            changed.await;
        }
    }

    /// Registers a new connection; at the cap, the connection idle the longest is told
    /// to close.
    pub(crate) fn take(self: &Arc<Self>, max: usize) -> Slot {
        let state = Arc::new(SlotState {
            active: AtomicUsize::new(0),
            last_activity: AtomicU64::new(self.now_us()),
            evicted: AtomicBool::new(false),
            evict: CancellationToken::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut open = self.lock();
        let live = open
            .values()
            .filter(|s| !s.evicted.load(Ordering::Relaxed))
            .count();
        if live >= max {
            let oldest = open
                .iter()
                .filter(|(_, s)| s.evictable())
                .min_by_key(|(id, s)| (s.last_activity.load(Ordering::Relaxed), **id));
            if let Some((_, victim)) = oldest {
                victim.evicted.store(true, Ordering::Relaxed);
                victim.evict.cancel();
                tracing::debug!("connection cap reached: closing the longest idle connection");
            }
        }
        open.insert(id, state.clone());
        self.peak.fetch_max(open.len(), Ordering::Relaxed);
        Slot {
            id,
            handle: Handle {
                slots: self.clone(),
                state,
            },
        }
    }

    /// Waits until every connection has closed.
    pub(crate) async fn drained(&self) {
        loop {
            let changed = self.changed.notified();
            if self.lock().is_empty() {
                return;
            }
            changed.await;
        }
    }
}

impl SlotState {
    fn evictable(&self) -> bool {
        self.active.load(Ordering::Relaxed) == 0 && !self.evicted.load(Ordering::Relaxed)
    }
}

impl Slot {
    /// What the connection's service uses to mark its requests in progress.
    pub(crate) fn requests(&self) -> Requests {
        Requests(self.handle.clone())
    }

    fn active(&self) -> bool {
        self.handle.state.active.load(Ordering::Relaxed) > 0
    }

    /// When the connection will have been idle for `timeout`, if nothing changes.
    fn idle_deadline(&self, timeout: Duration) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        if self.active() {
            return now + timeout;
        }
        let last = self.handle.state.last_activity.load(Ordering::Relaxed);
        let idle = Duration::from_micros(self.handle.slots.now_us().saturating_sub(last));
        now + timeout.saturating_sub(idle)
    }

    /// Wraps the connection's stream so that every byte received counts as activity.
    pub(crate) fn watch<S>(&self, stream: S) -> TokioIo<Watched<S>> {
        TokioIo::new(Watched {
            inner: stream,
            handle: self.handle.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = &self.handle.slots;
        let mut open = slots.lock();
        open.remove(&self.id);
        let burst_over = open.is_empty() && slots.peak.swap(0, Ordering::Relaxed) >= BURST;
        drop(open);
        slots.changed.notify_one();
        if burst_over {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(crate::allocator::release);
            }
        }
    }
}

/// Marks requests in progress on one connection.
#[derive(Clone)]
pub(crate) struct Requests(Handle);

impl Requests {
    /// A request has started; it is in progress until the guard drops.
    pub(crate) fn start(&self) -> RequestGuard {
        self.0.state.active.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.0.clone())
    }
}

/// A request in progress on a connection; the connection is idle again once every
/// guard has dropped.
pub(crate) struct RequestGuard(Handle);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.state.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.slots.changed.notify_one();
        }
    }
}

/// Why a connection's task stops serving it.
enum Ending {
    /// hyper finished with it (client closed, error, or a graceful close completed).
    Done(Result<(), hyper::Error>),
    /// Asked to close: evicted, idle too long, or shutdown.
    Close(&'static str),
}

/// Serves one connection until it ends, closing it when idle for `idle_timeout`, when
/// evicted at the cap, or at shutdown (after its request in progress, if any).
pub(crate) async fn drive<S, B>(
    conn: Connection<TokioIo<Watched<tokio::net::TcpStream>>, S>,
    slot: Slot,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<(), hyper::Error>
where
    S: HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = pin!(conn);
    let evict = slot.handle.state.evict.clone();
    let why = loop {
        let ending = tokio::select! {
            done = conn.as_mut() => Ending::Done(done),
            _ = evict.cancelled() => Ending::Close("evicted at the connection cap"),
            _ = shutdown.cancelled() => Ending::Close("shutting down"),
            _ = tokio::time::sleep_until(slot.idle_deadline(idle_timeout)) => {
                if slot.active() || slot.idle_deadline(idle_timeout) > tokio::time::Instant::now() {
                    continue;
                }
                Ending::Close("idle")
            }
        };
        match ending {
            Ending::Done(result) => return result,
            Ending::Close(why) => break why,
        }
    };
    tracing::debug!(reason = why, "closing connection");
    conn.as_mut().graceful_shutdown();
    // A request in progress finishes (hyper closes after it); an idle connection closes
    // at once, or is dropped after the grace if its client sits on half a request.
    loop {
        tokio::select! {
            done = conn.as_mut() => return done,
            _ = tokio::time::sleep(CLOSE_GRACE) => if !slot.active() { return Ok(()) },
        }
    }
}

/// A stream that stamps its connection's activity on every byte received.
pub(crate) struct Watched<S> {
    inner: S,
    handle: Handle,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.handle.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
