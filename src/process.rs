//! The primitives hookd's child processes share (builds, `exec` notifications): the
//! little of the daemon's environment they inherit, descriptors closed on exec, and
//! signals to a whole process group.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};

use tokio::process::Command;

use crate::feed::CommandSpec;

/// The daemon's `PATH`, `HOME` (else `home`) and `LANG` (else `C.UTF-8`): all a
/// command started by hookd inherits of hookd's own environment (builds, and the
/// `exec` notifications).
pub(crate) fn base_env(home: &Path) -> Vec<(String, String)> {
    vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        (
            "HOME".into(),
            std::env::var("HOME").unwrap_or_else(|_| home.display().to_string()),
        ),
        (
            "LANG".into(),
            std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into()),
        ),
    ]
}

/// In a child (a build, an `exec` notification) before exec: marks every descriptor above 2 close-on-exec,
/// so even one a library opened without the flag, on another thread during the
/// fork, never reaches the child. Best effort (Linux 5.11+); hookd's own descriptors
/// are close-on-exec anyway.
fn close_all_on_exec() {
    // SAFETY: close_range(2) with plain integers; async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Sends `signal` to process group `pgid`; a group that is already gone is fine.
pub(crate) fn killpg(pgid: i32, signal: libc::c_int) {
    // Group ids 0 and 1 would mean our own group and init's.
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    if unsafe { libc::killpg(pgid, signal) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, signal, error = %e, "cannot signal a process group");
        }
    }
}

/// Children hookd spawned (build leaders, `exec` notifications) whose exit status
/// tokio still waits for: the reaper of adopted orphans (`runner::leftovers`) must
/// never take it.
static LEADERS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

pub(crate) fn leaders() -> MutexGuard<'static, BTreeSet<i32>> {
    // The set stays consistent whatever panicked while holding it.
    LEADERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A child leading its own process group, known to the reaper until dropped (once
/// tokio has its status).
pub(crate) struct Leader(Option<i32>);

impl Leader {
    /// Spawns `cmd` as a known leader. The set stays locked across the spawn,
    /// so the reaper never sees the leader before it is known.
    pub(crate) fn spawn(
        cmd: &mut tokio::process::Command,
    ) -> io::Result<(tokio::process::Child, Leader)> {
        let mut known = leaders();
        let child = cmd.spawn()?;
        let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
        if let Some(pid) = pid {
            known.insert(pid);
        }
        Ok((child, Leader(pid)))
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            leaders().remove(&pid);
        }
    }
}

/// The command `spec` names (argv words run directly, a string by `/bin/sh -c`) set
/// up as hookd runs every child: exactly `env`, in `workdir`, in its own process
/// group, `stdin` as given, stdout and stderr piped, no descriptor of hookd's beyond
/// 0-2, killed if dropped. Also the program's name, for messages; `None` for an
/// empty argv.
pub(crate) fn child(
    spec: &CommandSpec,
    env: Vec<(String, String)>,
    workdir: &Path,
    stdin: Stdio,
) -> Option<(Command, String)> {
    let (mut cmd, program) = match spec {
        CommandSpec::Argv(argv) => {
            let (program, args) = argv.split_first()?;
            let mut cmd = Command::new(program);
            cmd.args(args);
            (cmd, program.clone())
        }
        CommandSpec::Shell(script) => {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(script);
            (cmd, "/bin/sh".to_owned())
        }
    };
    cmd.env_clear()
        .envs(env)
        .current_dir(workdir)
        .process_group(0)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the hook runs between fork and exec and makes one system call.
    unsafe {
        cmd.pre_exec(|| {
            close_all_on_exec();
            Ok(())
        });
    }
    Some((cmd, program))
}
