//! systemd integration without a library: `sd_notify` is one datagram to the socket
//! named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).

use std::os::unix::net::UnixDatagram;

/// Sends a state update (`READY=1`, `STOPPING=1`, `STATUS=…`); a no-op outside systemd.
pub fn notify(state: &str) {
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
