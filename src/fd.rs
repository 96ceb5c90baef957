//! File descriptors hookd holds that a build must never inherit: the one place that
//! marks a descriptor close-on-exec (the listener systemd passes, whatever hookd's
//! parent leaked), so neither `systemd` nor `runner` reaches into the other for it.

use std::io;

/// Marks descriptor `fd` close-on-exec.
pub(crate) fn close_on_exec(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on a plain descriptor number touches no memory of ours.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
