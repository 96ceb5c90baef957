//! Healing after a full disk. sled 0.34 keeps its first I/O error for good, so once a
//! group commit fails, hookd answers 503 (and `/healthz` 503) until the disk takes
//! writes again, then stops accepting, answers the requests it already accepted, and
//! re-executes itself in place: the same pid, the same listening socket (handed over as
//! under socket activation, so no delivery is refused or cut off), and a store opened
//! afresh from what is on disk, which holds every acknowledged write (the acknowledged
//! mark checks that at open). No service manager is needed.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often a failed store's disk is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Room the disk must have again: two of sled's 512 KiB log segments.
const PROBE_BYTES: usize = 1024 * 1024;

/// Waits until a commit failed and the data dir takes `PROBE_BYTES` again: `true` then,
/// `false` if hookd stops first. The daemon drains its listeners and calls `reexec`.
pub(crate) async fn room_returned(
    store: Store,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) -> bool {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tick.tick() => {}
        }
        if !store.has_failed() {
            continue;
        }
        let dir = data_dir.clone();
        let room = tokio::task::spawn_blocking(move || probe(&dir)).await;
        if matches!(room, Ok(Ok(()))) {
            return true;
        }
    }
}

/// Writes, syncs and removes `PROBE_BYTES` in the data dir.
fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".space-probe");
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&vec![0; PROBE_BYTES])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    written
}

/// Replaces this process with a fresh hookd (same arguments), passing the hook socket
/// as fd 3 with `LISTEN_PID`/`LISTEN_FDS` (see `systemd::take_listener`). Returns only
/// on failure.
pub(crate) fn reexec(listener: &OwnedFd) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    const FIRST_PASSED_FD: i32 = 3;
    let fd = listener.as_raw_fd();
    // SAFETY: dup2 and fcntl on descriptors this process owns; fd 3 is replaced just
    // before exec, which closes every other descriptor (all are close-on-exec).
    let handed_over = unsafe {
        (fd == FIRST_PASSED_FD || libc::dup2(fd, FIRST_PASSED_FD) == FIRST_PASSED_FD)
            && libc::fcntl(FIRST_PASSED_FD, libc::F_SETFD, 0) == 0
    };
    if !handed_over {
        return std::io::Error::last_os_error();
    }
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new("/proc/self/exe");
    if let Some(argv0) = args.next() {
        command.arg0(argv0);
    }
    command
        .args(args)
        .env("LISTEN_PID", std::process::id().to_string())
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_FDNAMES")
        .exec()
}
