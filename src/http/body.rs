//! Request bodies: read within the size limit and the request deadline, held in memory
//! only when the provider needs them, and then only within the budget of body bytes all
//! requests may hold at once.
//!
//! A generic trigger's body is never used, so once its first bytes show it is one, the
//! rest is counted (for the size limit) and dropped as it arrives. Any other body is
//! kept: its declared length is reserved from the budget before a byte is read (a
//! chunked body reserves as it arrives), so a burst of large posts is answered 503
//! instead of growing the daemon without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Over `max_body_bytes`, declared or as it arrived.
    #[error("request body is over the size limit")]
    TooLarge,
    /// Keeping it would take the bodies held at once over the budget.
    #[error("request bodies in memory are at their budget")]
    OverBudget,
    /// Not complete within the request deadline.
    #[error("request body took too long")]
    Timeout,
    /// The client broke off or sent a malformed body.
    #[error("request body could not be read: {0}")]
    Unreadable(hyper::Error),
}

/// The body bytes all requests hold in memory at once, against `body_budget_bytes`.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Bytes reserved now.
    in_use: AtomicU64,
}

impl Budget {
    /// Reserves `bytes` if that keeps the total within `limit`.
    fn reserve(self: &Arc<Self>, bytes: u64, limit: u64) -> Option<Reservation> {
        let mut reservation = Reservation {
            budget: self.clone(),
            bytes: 0,
        };
        reservation.grow(bytes, limit).then_some(reservation)
    }
}

/// Budget held by one body; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    /// Adds `bytes` to the reservation if the total stays within `limit`.
    fn grow(&mut self, bytes: u64, limit: u64) -> bool {
        let grown = self
            .budget
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            });
        if grown.is_ok() {
            self.bytes += bytes;
        }
        grown.is_ok()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The limits one body is read under.
pub(crate) struct Limits {
    /// Largest body (`max_body_bytes`).
    pub(crate) max_bytes: u64,
    /// Bytes all kept bodies may hold at once (`body_budget_bytes`).
    pub(crate) budget_bytes: u64,
    /// The whole body must arrive within this.
    pub(crate) deadline: Duration,
}

/// A body as the intake gets it: the bytes it needs (empty for a generic trigger's),
/// and the budget they hold until this is dropped.
pub(crate) struct ReadBody {
    /// What the intake reads.
    pub(crate) bytes: Bytes,
    /// Keeps the bytes counted against the budget while they live.
    _reservation: Option<Reservation>,
}

/// Reads a request body under `limits`, keeping it only if the provider needs it.
pub(crate) async fn read(
    body: Incoming,
    headers: &HeaderMap,
    budget: &Arc<Budget>,
    limits: &Limits,
) -> Result<ReadBody, BodyError> {
    let declared = declared_length(headers);
    if declared.is_some_and(|len| len > limits.max_bytes) {
        return Err(BodyError::TooLarge);
    }
    let reader = Reader {
        body,
        headers,
        declared,
        budget,
        limits,
    };
    tokio::time::timeout(limits.deadline, reader.run())
        .await
        .unwrap_or(Err(BodyError::Timeout))
}

/// The body length the client announced, if any.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// One body being read.
struct Reader<'a> {
    body: Incoming,
    headers: &'a HeaderMap,
    declared: Option<u64>,
    budget: &'a Arc<Budget>,
    limits: &'a Limits,
}

/// What is being done with the bytes so far.
enum Sink {
    /// Not yet known whether the body is needed: only blanks so far, which no provider
    /// that can do without headers reads (JSON ignores them).
    Undecided,
    /// Needed: kept within the reservation.
    Keep(BytesMut, Reservation),
    /// Not needed: only counted.
    Drop,
}

impl Reader<'_> {
    async fn run(mut self) -> Result<ReadBody, BodyError> {
        let mut sink = if crate::hook::body_needed(self.headers, None) {
            self.keep()?
        } else {
            Sink::Undecided
        };
        let mut seen: u64 = 0;
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(BodyError::Unreadable)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            seen += data.len() as u64;
            if seen > self.limits.max_bytes {
                return Err(BodyError::TooLarge);
            }
            sink = self.take(sink, &data)?;
        }
        Ok(match sink {
            // Only blanks: as good as empty for every provider.
            Sink::Undecided | Sink::Drop => ReadBody {
                bytes: Bytes::new(),
                _reservation: None,
            },
            Sink::Keep(bytes, reservation) => ReadBody {
                bytes: bytes.freeze(),
                _reservation: Some(reservation),
            },
        })
    }

    /// Puts one frame where it belongs, deciding on its first non-blank byte.
    fn take(&self, sink: Sink, data: &[u8]) -> Result<Sink, BodyError> {
        match sink {
            Sink::Undecided => {
                let start = data.iter().position(|b| !b.is_ascii_whitespace());
                match start {
                    None => Ok(Sink::Undecided),
                    Some(i) if crate::hook::body_needed(self.headers, Some(data[i])) => {
                        let sink = self.keep()?;
                        self.take(sink, &data[i..])
                    }
                    Some(_) => Ok(Sink::Drop),
                }
            }
            Sink::Keep(mut bytes, mut reservation) => {
                let needed = (bytes.len() + data.len()) as u64;
                let more = needed.saturating_sub(reservation.bytes);
                if more > 0 && !reservation.grow(more, self.limits.budget_bytes) {
                    return Err(BodyError::OverBudget);
                }
                bytes.extend_from_slice(data);
                Ok(Sink::Keep(bytes, reservation))
            }
            Sink::Drop => Ok(Sink::Drop),
        }
    }

    /// Starts keeping the body: reserves what it declared and allocates that once (a
    /// chunked body reserves as it arrives).
    fn keep(&self) -> Result<Sink, BodyError> {
        let size = self.declared.unwrap_or(0);
        let reservation = self
            .budget
            .reserve(size, self.limits.budget_bytes)
            .ok_or(BodyError::OverBudget)?;
        let bytes = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
        Ok(Sink::Keep(bytes, reservation))
    }
}
