//! Live views, fed by the scheduler's build updates: `/events` (build state changes,
//! for the overview and feed pages), `/builds/ID/events` (the log as it grows, each
//! chunk's event id the byte offset after it, so a reconnect with `Last-Event-ID`
//! resumes without a gap or a repeat; status changes; `end` once the build is over)
//! and `/builds/ID/log` (the raw log, streamed until the build is over).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use tokio::sync::broadcast::{self, error::RecvError};

use super::stream::{Gone, Sender, Streams};
use super::{error, ReadError, Reply, Source};
use crate::scheduler::{BuildUpdate, Change};

/// Most log bytes read and sent at once.
const CHUNK: usize = 16 * 1024;
/// How often a followed log is read anyway: output a build writes and then sits on
/// may arrive without an update to wake the follower.
const POLL: Duration = Duration::from_millis(250);
/// How often a follower rereads the build, whatever the updates said (a removed feed
/// takes its builds without an update).
const RESYNC: Duration = Duration::from_secs(5);
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
                id,
                offset: from,
                status,
                updates,
                framing,
            };
            tokio::spawn(async move {
                let _ = follow.run(&out).await;
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

/// Whether a status word is a build's last.
fn is_final(status: &str) -> bool {
    !matches!(status, "queued" | "running")
}

/// One Server-Sent Event; `data` is one line of JSON.
fn event(name: &str, id: Option<u64>, data: &str) -> Bytes {
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    Bytes::from(format!("event: {name}\n{id}data: {data}\n\n"))
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

/// How many leading bytes of `bytes` end on a whole UTF-8 character: a character cut
/// by a read waits for the next chunk (event data is text).
fn whole_chars(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(4) {
        let b = bytes[n - back];
        if b & 0xC0 != 0x80 {
            let len = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if back < len { n - back } else { n };
        }
    }
    n
}

/// One build's log followed to its end.
struct Follow {
    source: Arc<dyn Source>,
    id: u64,
    /// Bytes of the log already sent (or shown before the stream started).
    offset: u64,
    /// The build's status word as last seen.
    status: String,
    updates: broadcast::Receiver<BuildUpdate>,
    framing: Framing,
}

impl Follow {
    async fn run(mut self, out: &Sender) -> Result<(), Gone> {
        if self.framing == Framing::Events {
            out.send(preamble()).await?;
            out.send(status_event("status", &self.status)).await?;
        }
        let mut resync = tokio::time::interval(RESYNC);
        resync.reset();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.reset();
        loop {
            // Send everything written so far; only then decide whether the build is
            // over, so output written just before its end is never lost.
            let over = is_final(&self.status);
            self.send_log(out, over).await?;
            if over {
                if self.framing == Framing::Events {
                    out.send(status_event("end", &self.status)).await?;
                }
                return Ok(());
            }
            let before = self.status.clone();
            tokio::select! {
                update = self.updates.recv() => match update {
                    Ok(u) if u.build.0 == self.id => self.apply(u.change),
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.reread().await?,
                    Err(RecvError::Closed) => return Err(Gone),
                },
                _ = resync.tick() => self.reread().await?,
                _ = tokio::time::sleep(POLL) => {}
                _ = keepalive.tick() => if self.framing == Framing::Events {
                    out.send(KEEPALIVE_COMMENT).await?;
                },
                _ = out.ended() => return Err(Gone),
            }
            if self.framing == Framing::Events && self.status != before && !is_final(&self.status) {
                out.send(status_event("status", &self.status)).await?;
            }
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Started => self.status = "running".into(),
            Change::Finished { status } => self.status = status.word().into(),
            _ => {}
        }
    }

    /// The status from the store; a build that is gone (its feed was removed) ends
    /// the stream.
    async fn reread(&mut self) -> Result<(), Gone> {
        match status_of(&self.source, self.id).await {
            Ok(status) => self.status = status,
            Err(ReadError::NotFound(_)) => return Err(Gone),
            Err(ReadError::Unavailable(_)) => {}
        }
        Ok(())
    }

    /// Sends the log from the offset to its current end.
    async fn send_log(&mut self, out: &Sender, over: bool) -> Result<(), Gone> {
        loop {
            let (source, id, offset) = (self.source.clone(), self.id, self.offset);
            let chunk = tokio::task::spawn_blocking(move || source.log_chunk(id, offset, CHUNK))
                .await
                .map_err(|_| Gone)?
                .map_err(|e| {
                    tracing::warn!(build = id, error = %e, "cannot follow a build log");
                    Gone
                })?;
            let keep = match self.framing {
                Framing::Events if !over => whole_chars(&chunk),
                _ => chunk.len(),
            };
            if keep == 0 {
                return Ok(());
            }
            self.offset += keep as u64;
            let bytes = match self.framing {
                Framing::Raw => Bytes::from(chunk),
                Framing::Events => {
                    let text = String::from_utf8_lossy(&chunk[..keep]);
                    let data = serde_json::Value::from(text.as_ref()).to_string();
                    event("log", Some(self.offset), &data)
                }
            };
            out.send(bytes).await?;
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
    fn a_cut_character_waits_for_the_next_chunk() {
        let text = "aé€😀".as_bytes();
        assert_eq!(whole_chars(text), text.len());
        assert_eq!(whole_chars(b""), 0);
        for cut in 0..text.len() {
            let keep = whole_chars(&text[..cut]);
            assert!(std::str::from_utf8(&text[..keep]).is_ok(), "cut {cut}");
            assert!(cut - keep < 4, "cut {cut} kept {keep}");
        }
        assert_eq!(whole_chars(&text[..2]), 1, "half an é");
        assert_eq!(whole_chars(b"a\xff"), 2, "an invalid byte is not held back");
    }

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
    fn last_event_id_wins_over_from() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_offset(&headers, Some("from=7")), 7);
        headers.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(resume_offset(&headers, Some("from=7")), 42);
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(resume_offset(&headers, None), 0);
    }
}
