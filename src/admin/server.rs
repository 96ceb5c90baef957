//! The admin socket: a Unix socket created 0660 whose peers are checked by uid/gid
//! (SO_PEERCRED), answering one JSON request per connection.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::admin::commands;
use crate::admin::proto::{Reply, Request};
use crate::app::App;
use crate::build::{BuildId, BuildStatus};
use crate::scheduler::{BuildUpdate, Change};

/// Largest request line accepted (a feed spec with a secret fits easily).
const MAX_REQUEST: u64 = 1024 * 1024;
/// How long a client has to send its request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How often a followed log is read for output written since the last update.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a follower rereads the build from the store, whatever the updates said.
const FOLLOW_RESYNC: Duration = Duration::from_secs(5);

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketError {
    /// A live daemon already answers there.
    #[error("another hookd is already listening on {0}")]
    InUse(String),
    /// Binding or chmod failed.
    #[error("cannot create admin socket {path}: {source}")]
    Io {
        /// The socket path.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Binds the socket (replacing a stale one left by a crash) with mode 0660.
pub(crate) async fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let shown = path.display().to_string();
    let io = |source| SocketError::Io {
        path: shown.clone(),
        source,
    };
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(SocketError::InUse(shown));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    Ok(listener)
}

/// Serves admin connections until `shutdown`.
pub(crate) async fn serve(listener: UnixListener, app: App, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &app, &shutdown).await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn connection(
    stream: UnixStream,
    app: &App,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if !peer_allowed(cred.uid(), cred.gid()) {
        tracing::warn!(
            uid = cred.uid(),
            "admin connection refused: not root, the daemon's user or its group"
        );
        let reply = Reply::Error(
            "permission denied: you must be root, the daemon's user, or in its group".into(),
        );
        return send(&mut write, &reply).await;
    }
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_DEADLINE, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    }
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => return send(&mut write, &Reply::Error(format!("malformed request: {e}"))).await,
    };
    match request {
        Request::Log { id, follow } => {
            stream_log(app, BuildId(id), follow, &mut write, shutdown).await
        }
        other => {
            let reply = commands::execute(app, other).await;
            send(&mut write, &reply).await
        }
    }
}

async fn send(write: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await
}

/// Sends the log in chunks; with `follow`, keeps sending until the build is over.
///
/// Following listens to the scheduler's build updates (subscribed before the store is
/// read, so the end cannot slip between the two); a follower that lagged behind them,
/// and every [`FOLLOW_RESYNC`] anyway (a removed feed takes its builds without an
/// update), rereads the build from the store.
async fn stream_log(
    app: &App,
    id: BuildId,
    follow: bool,
    write: &mut (impl AsyncWriteExt + Unpin),
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let data_dir = app.config().data_dir.clone();
    let mut updates = app.scheduler.subscribe();
    let mut status = match build_status(app, id).await {
        Ok(status) => status,
        Err(reply) => return send(write, &reply).await,
    };
    let mut offset = 0u64;
    let mut resync = tokio::time::interval(FOLLOW_RESYNC);
    resync.reset();
    loop {
        // Read everything written so far; only then decide whether the build is over,
        // so output written just before the end is never lost.
        let hold = follow && !status.is_final();
        offset = send_output(&data_dir, id, offset, hold, write).await?;
        if status.is_final() || !follow {
            return send(write, &Reply::LogEnd(status.word().to_owned())).await;
        }
        tokio::select! {
            update = updates.recv() => match update {
                Ok(BuildUpdate { build, change: Change::Finished { status: end }, .. }) if build == id => {
                    status = end;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => match build_status(app, id).await {
                    Ok(now) => status = now,
                    Err(reply) => return send(write, &reply).await,
                },
                Err(broadcast::error::RecvError::Closed) => {
                    return send(write, &Reply::LogEnd("daemon stopping".into())).await
                }
            },
            _ = resync.tick() => match build_status(app, id).await {
                Ok(now) => status = now,
                Err(reply) => return send(write, &reply).await,
            },
            // Output a build writes and then sits on arrives without an update to wake us.
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = shutdown.cancelled() => return send(write, &Reply::LogEnd("daemon stopping".into())).await,
        }
    }
}

/// The build's status from the store, or the error reply to end the stream with.
async fn build_status(app: &App, id: BuildId) -> Result<BuildStatus, Reply> {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || store.build(id)).await {
        Ok(Ok(Some(b))) => Ok(b.status),
        Ok(Ok(None)) => Err(Reply::Error(format!("no build {id}"))),
        _ => Err(Reply::Error("store unavailable".into())),
    }
}

/// Sends the log from `offset` to its current end; returns the new offset. A log
/// that cannot be read sends nothing more. Each chunk is text: a character cut by a
/// read waits for the next, and with `hold` (a followed build not over) so does one
/// cut by the log's end.
async fn send_output(
    data_dir: &Path,
    id: BuildId,
    mut offset: u64,
    hold: bool,
    write: &mut (impl AsyncWriteExt + Unpin),
) -> std::io::Result<u64> {
    const MAX: usize = 64 * 1024;
    loop {
        let dir = data_dir.to_owned();
        let read = move || crate::paths::read_log(&dir, id, offset, MAX);
        let chunk = match tokio::task::spawn_blocking(read).await {
            Ok(Ok(chunk)) => chunk,
            _ => Vec::new(),
        };
        let keep = if hold || chunk.len() == MAX {
            crate::paths::whole_chars(&chunk)
        } else {
            chunk.len()
        };
        if keep == 0 {
            return Ok(offset);
        }
        offset += keep as u64;
        let text = String::from_utf8_lossy(&chunk[..keep]).into_owned();
        send(write, &Reply::LogChunk(text)).await?;
    }
}

/// Root, the daemon's own user, or a member of the daemon's group.
fn peer_allowed(uid: u32, gid: u32) -> bool {
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    let (my_uid, my_gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    uid == 0 || uid == my_uid || gid == my_gid || user_in_group(uid, my_gid)
}

/// Whether `uid`'s supplementary groups include `gid` (getpwuid_r + getgrouplist).
fn user_in_group(uid: u32, gid: u32) -> bool {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for the sizes given; result is checked before use.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return false;
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: pw_name points into `buf`, alive here; groups has `count` slots.
    let rc =
        unsafe { libc::getgrouplist(pwd.pw_name, pwd.pw_gid, groups.as_mut_ptr(), &mut count) };
    if rc < 0 {
        return false;
    }
    groups.truncate(count.max(0) as usize);
    groups.contains(&gid)
}
