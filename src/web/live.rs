//! Live views, fed by the scheduler's build updates: `/events` (build state changes,
//! for the overview and feed pages), `/builds/ID/events` (the log as it grows, each
//! chunk's event id the byte offset after it, so a reconnect with `Last-Event-ID`
//! resumes without a gap or a repeat; status changes; `end` once the build is over)
//! and `/builds/ID/log` (the raw log, streamed until the build is over).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use tokio::sync::broadcast::{self, error::RecvError};

use super::stream::{Gone, Sender, Streams};
use super::tail::{self, is_final, Joined, Note, Piece, Tails, READ};
use super::{error, ReadError, Reply, Source};
use crate::scheduler::{BuildUpdate, Change};

/// A comment this often keeps proxies from closing a quiet stream.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// What a browser waits before reconnecting a stream that broke.
const RETRY_MS: u64 = 2000;
/// `Retry-After` when every stream slot is taken.
const FULL_RETRY_AFTER_SECS: &str = "5";

/// A live path.
#[derive(Debug, Clone, Copy)]
pub(super) enum Live {
    /// `/events`.
    Events,
    /// `/builds/ID/events`.
    BuildEvents(u64),
    /// `/builds/ID/log`.
    Log(u64),
}

/// How a followed log goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Server-Sent Events: `log`, `status` and `end` events.
    Events,
    /// The bytes themselves.
    Raw,
}

/// Answers a live path: checks the build, takes a stream slot and starts the task
/// that feeds the stream. `head` answers with the headers only.
pub(super) async fn answer(
    source: &Arc<dyn Source>,
    streams: &Streams,
    live: Live,
    headers: &HeaderMap,
    query: Option<&str>,
    head: bool,
) -> Reply {
    // Subscribe before reading the build, so its end cannot slip between the two.
    let updates = source.subscribe();
    let (id, framing) = match live {
        Live::Events => (None, Framing::Events),
        Live::BuildEvents(id) => (Some(id), Framing::Events),
        Live::Log(id) => (Some(id), Framing::Raw),
    };
    let status = match id {
        Some(id) => match status_of(source, id).await {
            Ok(status) => Some(status),
            Err(e) => return super::read_error(e),
        },
        None => None,
    };
    let mut response = Response::new(Bytes::new().into());
    let content_type = match framing {
        Framing::Events => "text/event-stream",
        Framing::Raw => "text/plain; charset=utf-8",
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx passes the stream on as it comes instead of buffering it.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if head {
        return response;
    }
    let Some((out, body)) = streams.open() else {
        let mut full = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams open; try again shortly",
        );
        full.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(FULL_RETRY_AFTER_SECS),
        );
        return full;
    };
    *response.body_mut() = body;
    let source = source.clone();
    match (id, status) {
        (Some(id), Some(status)) => {
            let from = resume_offset(headers, query);
            let follow = Follow {
                source,
                tails: streams.tails.clone(),
                id,
                offset: from,
                status,
                framing,
            };
            tokio::spawn(async move {
                let _ = follow.run(&out, updates).await;
            });
        }
        _ => {
            tokio::spawn(async move {
                let _ = build_changes(updates, &out).await;
            });
        }
    }
    response
}

/// Where a log stream starts: `Last-Event-ID` (a browser reconnecting), else
/// `?from=N` (a page that already shows the log up to N), else the start.
fn resume_offset(headers: &HeaderMap, query: Option<&str>) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| super::query_param(query, "from").and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The build's status word, read on the blocking pool.
async fn status_of(source: &Arc<dyn Source>, id: u64) -> Result<String, ReadError> {
    let source = source.clone();
    tokio::task::spawn_blocking(move || source.build(id).map(|b| b.status))
        .await
        .unwrap_or_else(|_| Err(ReadError::Unavailable("daemon is shutting down".into())))
}

/// One Server-Sent Event; `data` is one line of JSON.
fn event(name: &str, id: Option<u64>, data: &str) -> Bytes {
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    Bytes::from(format!("event: {name}\n{id}data: {data}\n\n"))
}

/// A `log` event: `text` as a JSON string, its id the offset `end` just past it.
fn log_event(text: &[u8], end: u64) -> Bytes {
    let text = String::from_utf8_lossy(text);
    let data = serde_json::Value::from(text.as_ref()).to_string();
    event("log", Some(end), &data)
}

/// The `log` events of `pieces` of `chunk` (read at offset `from`), one after
/// another in one buffer, so they go out in one write.
pub(super) fn log_events(chunk: &[u8], from: u64, pieces: &[Range<usize>]) -> Bytes {
    let mut out = BytesMut::new();
    for range in pieces {
        let end = from + range.end as u64;
        out.extend_from_slice(&log_event(&chunk[range.clone()], end));
    }
    out.freeze()
}

fn status_event(name: &str, status: &str) -> Bytes {
    event(
        name,
        None,
        &serde_json::json!({ "status": status }).to_string(),
    )
}

/// The first bytes of an event stream: the reconnect delay.
fn preamble() -> Bytes {
    Bytes::from(format!("retry: {RETRY_MS}\n\n"))
}

const KEEPALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// One build's log followed to its end: the pieces its reader shares while they
/// continue where this follower is, the file itself where they do not.
struct Follow {
    source: Arc<dyn Source>,
    tails: Arc<Tails>,
    id: u64,
    /// Bytes of the log already sent (or shown before the stream started).
    offset: u64,
    /// The status last sent.
    status: String,
    framing: Framing,
}

impl Follow {
    /// Follows a build that is not over (`updates` subscribed before its `status`
    /// was read), or sends the whole log of one that is.
    async fn run(
        mut self,
        out: &Sender,
        updates: broadcast::Receiver<BuildUpdate>,
    ) -> Result<(), Gone> {
        if is_final(&self.status) {
            drop(updates);
            self.start(out).await?;
            return self.finish(out, self.status.clone()).await;
        }
        let joined = match self
            .tails
            .join(&self.source, self.id, self.status.clone(), updates)
            .await
        {
            Ok(joined) => joined,
            Err(e) => {
                tracing::warn!(build = self.id, error = %e, "cannot follow a build log");
                return Err(Gone);
            }
        };
        let Joined {
            mut notes,
            position,
            status,
            shared,
        } = joined;
        self.status = status;
        self.start(out).await?;
        self.send_file(out, Some(position)).await?;
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.reset();
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Ok(Note::Log(piece)) => self.send_piece(out, &piece).await?,
                    Ok(Note::Status(status)) => self.send_status(out, status).await?,
                    Ok(Note::Over(status)) => return self.finish(out, status).await,
                    Ok(Note::Gone) | Err(RecvError::Closed) => return Err(Gone),
                    // Pieces were dropped: the next one tells where to read the file
                    // from. A status change may have been dropped too.
                    Err(RecvError::Lagged(_)) => {
                        tracing::debug!(build = self.id, "a follower fell behind the build's reader; it reads the log file");
                        let status = shared.status();
                        if !is_final(&status) {
                            self.send_status(out, status).await?;
                        }
                    }
                },
                _ = keepalive.tick() => if self.framing == Framing::Events {
                    out.send(KEEPALIVE_COMMENT).await?;
                },
                _ = out.ended() => return Err(Gone),
            }
        }
    }

    /// The event stream's start: the reconnect delay and the status.
    async fn start(&self, out: &Sender) -> Result<(), Gone> {
        if self.framing == Framing::Events {
            out.send(preamble()).await?;
            out.send(status_event("status", &self.status)).await?;
        }
        Ok(())
    }

    /// The rest of the log of a build that is over, then `end`.
    async fn finish(&mut self, out: &Sender, status: String) -> Result<(), Gone> {
        self.send_file(out, None).await?;
        if self.framing == Framing::Events {
            out.send(status_event("end", &status)).await?;
        }
        Ok(())
    }

    async fn send_status(&mut self, out: &Sender, status: String) -> Result<(), Gone> {
        if status != self.status {
            if self.framing == Framing::Events {
                out.send(status_event("status", &status)).await?;
            }
            self.status = status;
        }
        Ok(())
    }

    /// A shared piece: sent as it is when it starts where this follower is, skipped
    /// when already sent, else the file up to its end instead.
    async fn send_piece(&mut self, out: &Sender, piece: &Piece) -> Result<(), Gone> {
        if piece.end <= self.offset {
            return Ok(());
        }
        if piece.start != self.offset {
            return self.send_file(out, Some(piece.end)).await;
        }
        let bytes = match self.framing {
            Framing::Events => piece.events.clone(),
            Framing::Raw => piece.raw.clone(),
        };
        out.send(bytes).await?;
        self.offset = piece.end;
        Ok(())
    }

    /// Sends the log from the offset to `upto` (the end of a shared piece, on a whole
    /// character), or to its end (`None`: the build is over), read from the file.
    async fn send_file(&mut self, out: &Sender, upto: Option<u64>) -> Result<(), Gone> {
        loop {
            let max = match upto {
                Some(upto) if upto <= self.offset => return Ok(()),
                Some(upto) => usize::try_from(upto - self.offset).map_or(READ, |n| n.min(READ)),
                None => READ,
            };
            let chunk = {
                let _permit = self.tails.read_permit().await.ok_or(Gone)?;
                tail::read_log(&self.source, self.id, self.offset, max).await
            }
            .map_err(|e| {
                tracing::warn!(build = self.id, error = %e, "cannot follow a build log");
                Gone
            })?;
            // Text up to a piece's end or to the end of a finished log is whole; else a
            // character cut by this read waits for the next.
            let at_boundary = match upto {
                Some(upto) => self.offset + chunk.len() as u64 == upto,
                None => chunk.len() < max,
            };
            let read = chunk.len();
            let (bytes, taken) = match self.framing {
                Framing::Events => {
                    let pieces = tail::cut(&chunk, !at_boundary);
                    let taken = pieces.last().map_or(0, |r| r.end);
                    (log_events(&chunk, self.offset, &pieces), taken)
                }
                Framing::Raw => (Bytes::from(chunk), read),
            };
            if taken == 0 {
                return Ok(());
            }
            out.send(bytes).await?;
            self.offset += taken as u64;
            if read < max {
                return Ok(());
            }
        }
    }
}

/// `/events`: every change of a build's state (not its log growth), and `resync` when
/// this follower fell behind the updates and should reread the page.
async fn build_changes(
    mut updates: broadcast::Receiver<BuildUpdate>,
    out: &Sender,
) -> Result<(), Gone> {
    out.send(preamble()).await?;
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.reset();
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Ok(u) => {
                    if let Some(data) = change_data(&u) {
                        out.send(event("build", None, &data)).await?;
                    }
                }
                Err(RecvError::Lagged(_)) => out.send(event("resync", None, "{}")).await?,
                Err(RecvError::Closed) => return Err(Gone),
            },
            _ = keepalive.tick() => out.send(KEEPALIVE_COMMENT).await?,
            _ = out.ended() => return Err(Gone),
        }
    }
}

/// The `build` event of an update a page shows; `None` for log growth and process
/// groups.
fn change_data(u: &BuildUpdate) -> Option<String> {
    let (change, status) = match &u.change {
        Change::Queued => ("queued", "queued"),
        Change::Coalesced => ("coalesced", "queued"),
        Change::Started => ("started", "running"),
        Change::Commit { .. } => ("commit", "running"),
        Change::Finished { status } => ("finished", status.word()),
        Change::Log { .. } | Change::ProcessGroup { .. } => return None,
    };
    let data = serde_json::json!({
        "build": u.build.0,
        "feed": u.feed.as_str(),
        "change": change,
        "status": status,
    });
    Some(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_line_of_data() {
        assert_eq!(
            event("log", Some(12), "\"a\\nb\""),
            Bytes::from("event: log\nid: 12\ndata: \"a\\nb\"\n\n")
        );
        assert_eq!(
            status_event("end", "succeeded"),
            Bytes::from("event: end\ndata: {\"status\":\"succeeded\"}\n\n")
        );
    }

    #[test]
    fn a_read_goes_out_as_its_events_in_one_buffer() {
        let chunk = b"ab\ncdef";
        let events = log_events(chunk, 100, &[0..3, 3..5]);
        assert_eq!(
            events,
            Bytes::from(
                "event: log\nid: 103\ndata: \"ab\\n\"\n\nevent: log\nid: 105\ndata: \"cd\"\n\n"
            ),
            "each event's id is the offset just past its own text"
        );
        assert!(log_events(chunk, 0, &[]).is_empty());
    }

    #[test]
    fn last_event_id_wins_over_from() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_offset(&headers, Some("from=7")), 7);
        headers.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(resume_offset(&headers, Some("from=7")), 42);
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(resume_offset(&headers, None), 0);
    }
}
