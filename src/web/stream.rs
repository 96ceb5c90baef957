//! Reply bodies, whole or streamed. A streamed body is fed by a task through a small
//! bounded channel, so a follower that reads slowly holds at most a few chunks: its
//! task waits (the log file or the scheduler's bounded broadcast is the buffer), and
//! one that stops reading altogether is dropped. The number of streams open at once
//! is capped.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::tail::Tails;

/// Chunks queued between a stream's task and its connection.
const QUEUED_CHUNKS: usize = 4;

/// How long a follower may leave a chunk unread before its stream is closed (its
/// browser reconnects and resumes from where it got to).
const SLOW_FOLLOWER: Duration = Duration::from_secs(30);

/// A reply body: whole, or streamed by a task while it lasts.
#[derive(Debug)]
pub(crate) enum Body {
    /// The whole body at once.
    Whole(Full<Bytes>),
    /// Chunks as a task sends them; the body ends when the task drops its [`Sender`].
    Stream(
        mpsc::Receiver<Bytes>,
        #[expect(
            dead_code,
            reason = "never read: held only to be dropped with the body"
        )]
        Option<Held>,
    ),
}

/// Something a streamed body keeps alive as long as it lasts.
pub(crate) struct Held {
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

impl Body {
    /// Keeps `guard` alive while a streamed body lasts (the HTTP side's mark that
    /// the request is in progress); a whole body drops it at once.
    pub(crate) fn holding(self, guard: impl Send + Sync + 'static) -> Self {
        match self {
            Self::Stream(rx, _) => Self::Stream(
                rx,
                Some(Held {
                    _guard: Box::new(guard),
                }),
            ),
            whole => whole,
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::Whole(Full::new(bytes))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Whole(full) => Pin::new(full).poll_frame(cx),
            Self::Stream(rx, _) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Whole(full) => full.is_end_stream(),
            Self::Stream(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Whole(full) => full.size_hint(),
            Self::Stream(..) => SizeHint::default(),
        }
    }
}

/// The streams of one listener: at most `max` at once, all ended at shutdown.
#[derive(Debug)]
pub(crate) struct Streams {
    /// One permit per stream that may be open.
    permits: Arc<Semaphore>,
    /// Fired at shutdown: every stream ends, so the drain does not wait on them.
    shutdown: CancellationToken,
    /// The log readers the build streams share.
    pub(super) tails: Arc<Tails>,
}

impl Streams {
    /// Room for `max` streams, each ended when `shutdown` fires.
    pub(crate) fn new(max: usize, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            tails: Tails::new(shutdown.clone()),
            shutdown,
        })
    }

    /// A new stream's two ends; `None` when `max` streams are open.
    pub(super) fn open(&self) -> Option<(Sender, Body)> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
        let sender = Sender {
            tx,
            _permit: permit,
            shutdown: self.shutdown.clone(),
        };
        Some((sender, Body::Stream(rx, None)))
    }
}

/// The follower went away, stopped reading, or the daemon is stopping: the stream ends.
#[derive(Debug)]
pub(super) struct Gone;

/// A stream's task end; its slot is free again once it is dropped.
#[derive(Debug)]
pub(super) struct Sender {
    tx: mpsc::Sender<Bytes>,
    _permit: OwnedSemaphorePermit,
    /// Daemon shutdown.
    shutdown: CancellationToken,
}

impl Sender {
    /// Queues a chunk, waiting for room at most [`SLOW_FOLLOWER`].
    pub(super) async fn send(&self, chunk: impl Into<Bytes>) -> Result<(), Gone> {
        tokio::select! {
            sent = tokio::time::timeout(SLOW_FOLLOWER, self.tx.send(chunk.into())) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Gone),
                Err(_) => {
                    tracing::debug!("a follower stopped reading; closing its stream");
                    Err(Gone)
                }
            },
            _ = self.shutdown.cancelled() => Err(Gone),
        }
    }

    /// Resolves when the stream should end without anything more to send: the
    /// follower closed its connection, or the daemon is stopping.
    pub(super) async fn ended(&self) {
        tokio::select! {
            _ = self.tx.closed() => {}
            _ = self.shutdown.cancelled() => {}
        }
    }
}
