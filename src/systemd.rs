//! systemd integration without a library: `sd_notify` is one datagram to the socket
//! named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace), and
//! socket activation is fd 3 when `$LISTEN_PID` is us and `$LISTEN_FDS` is 1.

use std::os::unix::net::UnixDatagram;

/// Sends a state update (`READY=1`, `STOPPING=1`, `STATUS=…`); a no-op outside systemd.
pub(crate) fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&target, state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

fn send(target: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)?,
        None => std::os::unix::net::SocketAddr::from_pathname(std::path::Path::new(target))?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// First fd systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: i32 = 3;

/// Takes the TCP listener systemd passed, if any. Call it before any thread starts:
/// it removes the variables so nothing later mistakes them for its own.
pub fn take_listener() -> std::io::Result<Option<std::net::TcpListener>> {
    use std::os::fd::FromRawFd;
    let pid = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok());
    if pid != Some(std::process::id()) || fds.is_none() {
        return Ok(None);
    }
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: called from main before any other thread exists (see the doc above).
        unsafe { std::env::remove_var(name) };
    }
    if fds != Some(1) {
        return Err(std::io::Error::other(format!(
            "systemd passed {} sockets; hookd takes exactly one (its hook listener)",
            fds.unwrap_or(0)
        )));
    }
    // SAFETY: systemd hands fd 3 over to this process; nothing else owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(LISTEN_FDS_START) };
    // Fails unless fd 3 really is a bound socket.
    listener.local_addr()?;
    // systemd passes it inheritable; a build must never be able to accept hooks on it.
    crate::fd::close_on_exec(LISTEN_FDS_START)?;
    Ok(Some(listener))
}
