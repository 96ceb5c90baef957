//! What a build leaves behind, found and killed wherever it went.
//!
//! Killing the build's process group misses a process that left it (`setsid`, a
//! double fork, a daemonising tool). Such a process still carries the build's marker
//! in its environment — `HOOKD_BUILD_ID` and `HOOKD_DATA_DIR`, which every build
//! process inherits — so when a build ends, and at recovery for the builds a crash
//! interrupted, every process of our uid carrying it is killed (the rule Jenkins
//! uses). A build that means to leave a service behind clears the marker
//! (`env -u HOOKD_BUILD_ID`) or hands it to a service manager (`systemd-run --user`).
//!
//! hookd is a child subreaper, so orphans of a running build are re-parented to it
//! instead of init; [`reap_adopted`] collects their exit status, leaving the build
//! leaders' own to tokio.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tokio_util::sync::CancellationToken;

/// The environment variable naming the build.
const BUILD_ID: &str = "HOOKD_BUILD_ID";
/// The environment variable naming the data dir, since build ids repeat across data
/// dirs (two daemons of one user, parallel tests).
const DATA_DIR: &str = "HOOKD_DATA_DIR";

/// Rounds of find-and-kill at a build's end: a process that forks while it is being
/// killed leaves a child for the next round.
const KILL_ROUNDS: usize = 16;

/// The marker of one build's processes: exact `KEY=VALUE` entries of their environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// `HOOKD_BUILD_ID=N`.
    id: Vec<u8>,
    /// `HOOKD_DATA_DIR=/abs/path`.
    data_dir: Vec<u8>,
}

impl Marker {
    /// The marker of build `id` of the daemon whose data dir is `data_dir`.
    pub(crate) fn new(id: u64, data_dir: &Path) -> Self {
        let [(k1, v1), (k2, v2)] = Self::env(id, data_dir);
        Marker {
            id: format!("{k1}={v1}").into_bytes(),
            data_dir: format!("{k2}={v2}").into_bytes(),
        }
    }

    /// The environment entries that carry the marker, for the build's environment.
    pub(crate) fn env(id: u64, data_dir: &Path) -> [(String, String); 2] {
        // Absolute without touching the disk, the same at every start of one config.
        let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        [
            (BUILD_ID.to_owned(), id.to_string()),
            (DATA_DIR.to_owned(), dir.display().to_string()),
        ]
    }

    /// Whether `environ` (a `/proc/PID/environ`) holds the whole marker.
    fn carried_by(&self, environ: &[u8]) -> bool {
        let has = |wanted: &[u8]| environ.split(|&b| b == 0).any(|entry| entry == wanted);
        has(&self.id) && has(&self.data_dir)
    }
}

/// One process, as `/proc/PID/stat` and the owner of `/proc/PID` describe it.
#[derive(Debug, Clone, Copy)]
struct Process {
    pid: i32,
    /// One letter: `R`, `S`, `Z`…
    state: u8,
    ppid: i32,
    pgrp: i32,
    uid: u32,
}

impl Process {
    fn zombie(&self) -> bool {
        matches!(self.state, b'Z' | b'X')
    }

    /// The process's environment; empty when it is gone or not ours to read.
    fn environ(&self) -> Vec<u8> {
        std::fs::read(format!("/proc/{}/environ", self.pid)).unwrap_or_default()
    }
}

/// Every process `/proc` lists; processes come and go during the scan, and one
/// that cannot be read is skipped.
fn processes() -> io::Result<Vec<Process>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let (Ok(meta), Ok(stat)) = (entry.metadata(), std::fs::read(entry.path().join("stat")))
        else {
            continue;
        };
        if let Some((state, ppid, pgrp)) = stat_fields(&stat) {
            out.push(Process {
                pid,
                state,
                ppid,
                pgrp,
                uid: meta.uid(),
            });
        }
    }
    Ok(out)
}

/// State, parent and process group (fields 3 to 5) of a `/proc/PID/stat` line. The
/// command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn stat_fields(stat: &[u8]) -> Option<(u8, i32, i32)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Crash recovery: kills process group `pgid` if it still holds a process carrying
/// the build's id (builds before `HOOKD_DATA_DIR` carry only that). A group id alone
/// proves nothing after a restart (ids are reused), so a group without such a
/// process is left alone. Returns how many marked processes were found.
///
/// Blocking: it reads `/proc`; call it from `spawn_blocking` in async code.
pub(crate) fn reap_orphans(pgid: i32, marker: &Marker) -> usize {
    // SAFETY: getpgrp has no arguments and cannot fail.
    if pgid <= 1 || pgid == unsafe { libc::getpgrp() } {
        return 0;
    }
    let all = match processes() {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(pgid, error = %e, "cannot scan /proc for leftover build processes");
            return 0;
        }
    };
    let matched = all
        .iter()
        .filter(|p| p.pgrp == pgid)
        .filter(|p| p.environ().split(|&b| b == 0).any(|e| e == marker.id))
        .count();
    if matched > 0 {
        tracing::warn!(
            pgid,
            processes = matched,
            "killing leftover build process group"
        );
        crate::process::killpg(pgid, libc::SIGKILL);
    }
    matched
}

/// Kills every process of our uid that carries `marker`, however it left the
/// build's process group; returns how many were killed.
///
/// Blocking: it reads `/proc`; call it from `spawn_blocking` in async code.
pub(crate) fn kill_escaped(marker: &Marker) -> usize {
    // SAFETY: no arguments; these cannot fail.
    let (me, uid) = (unsafe { libc::getpid() }, unsafe { libc::geteuid() });
    let mut killed = BTreeSet::new();
    for _ in 0..KILL_ROUNDS {
        let all = match processes() {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "cannot scan /proc for processes a build left behind");
                return killed.len();
            }
        };
        let marked: Vec<i32> = all
            .iter()
            .filter(|p| p.uid == uid && p.pid != me && !p.zombie())
            .filter(|p| marker.carried_by(&p.environ()))
            .map(|p| p.pid)
            .collect();
        if marked.is_empty() {
            break;
        }
        for &pid in &marked {
            // SAFETY: kill takes plain integers; the process carries the build's marker.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        killed.extend(marked);
    }
    if !killed.is_empty() {
        tracing::warn!(
            processes = killed.len(),
            "killed processes that outlived their build"
        );
    }
    killed.len()
}

/// Makes hookd a child subreaper: orphans of a build come to hookd instead of init,
/// so they stay under its eye until they are killed and reaped.
pub(crate) fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Collects the exit status of adopted orphans until `shutdown`: on every SIGCHLD,
/// each exited child that is not a build leader is reaped.
pub(crate) async fn reap_adopted(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut exits = match signal(SignalKind::child()) {
        Ok(exits) => exits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGCHLD; adopted processes stay zombies");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = exits.recv() => {
                if tokio::task::spawn_blocking(reap_adopted_now).await.is_err() {
                    tracing::warn!("the reaper of adopted processes failed");
                }
            }
            () = shutdown.cancelled() => break,
        }
    }
}

/// Reaps every exited child that is not a build leader; returns how many.
fn reap_adopted_now() -> usize {
    let known = crate::process::leaders();
    // SAFETY: no arguments; cannot fail.
    let me = unsafe { libc::getpid() };
    let Ok(all) = processes() else { return 0 };
    let mut reaped = 0;
    for p in all.iter().filter(|p| p.ppid == me && p.zombie()) {
        if known.contains(&p.pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid on one exited child of ours, not one tokio waits for.
        if unsafe { libc::waitpid(p.pid, &mut status, libc::WNOHANG) } == p.pid {
            reaped += 1;
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{ExitStatus, Stdio};
    use std::time::Duration;

    fn detached_group(env: &[(&str, &str)]) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 1000 & sleep 1000"])
            .env_clear()
            .envs(env.iter().copied())
            .env("PATH", "/usr/bin:/bin")
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn wait_for_exit(child: &mut std::process::Child) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn unique_dir() -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/hookd-leftovers-test/{}", std::process::id()))
    }

    #[test]
    fn reap_orphans_kills_only_a_group_carrying_the_marker() {
        let id = u64::from(std::process::id()) * 10;
        let marker = Marker::new(id, &unique_dir());
        let mut marked = detached_group(&[(BUILD_ID, &id.to_string())]);
        let mut other_build = detached_group(&[(BUILD_ID, &format!("{id}0"))]);
        let mut unmarked = detached_group(&[]);

        for child in [&other_build, &unmarked] {
            assert_eq!(reap_orphans(child.id() as i32, &marker), 0);
        }
        assert!(reap_orphans(marked.id() as i32, &marker) >= 1);
        let status = wait_for_exit(&mut marked).expect("marked group killed");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        for child in [&mut other_build, &mut unmarked] {
            assert!(
                child.try_wait().unwrap().is_none(),
                "an unmarked group was killed"
            );
            crate::process::killpg(child.id() as i32, libc::SIGKILL);
            wait_for_exit(child).unwrap();
        }
    }

    #[test]
    fn reap_orphans_never_touches_our_own_or_special_groups() {
        // SAFETY: no arguments.
        let own = unsafe { libc::getpgrp() };
        for pgid in [-1, 0, 1, own] {
            assert_eq!(reap_orphans(pgid, &Marker::new(1, &unique_dir())), 0);
        }
    }

    #[test]
    fn kill_escaped_needs_the_whole_marker() {
        let id = u64::from(std::process::id()) * 10 + 1;
        let dir = unique_dir();
        let [(k1, v1), (k2, v2)] = Marker::env(id, &dir);
        let mut marked = detached_group(&[(&k1, &v1), (&k2, &v2)]);
        let mut other_dir = detached_group(&[(&k1, &v1), (&k2, "/elsewhere")]);
        let mut id_only = detached_group(&[(&k1, &v1)]);
        // The group's leader and its background sleep, once both run.
        let marker = Marker::new(id, &dir);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while kill_escaped_dry_run(&marker) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "marked processes never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(kill_escaped(&marker) >= 2);
        let status = wait_for_exit(&mut marked).expect("marked process killed");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(kill_escaped(&marker), 0);
        for child in [&mut other_dir, &mut id_only] {
            assert!(
                child.try_wait().unwrap().is_none(),
                "an unmarked process was killed"
            );
            crate::process::killpg(child.id() as i32, libc::SIGKILL);
            wait_for_exit(child).unwrap();
        }
    }

    /// How many live processes carry `marker`.
    fn kill_escaped_dry_run(marker: &Marker) -> usize {
        processes()
            .unwrap()
            .iter()
            .filter(|p| !p.zombie() && marker.carried_by(&p.environ()))
            .count()
    }

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis() {
        assert_eq!(
            stat_fields(b"42 (make) S 1 4242 4242 0 -1"),
            Some((b'S', 1, 4242))
        );
        assert_eq!(
            stat_fields(b"42 (a) b (c)) R 7 99 99 0"),
            Some((b'R', 7, 99))
        );
        assert_eq!(stat_fields(b"42 (weird ) 1 2) Z 1 5 5"), Some((b'Z', 1, 5)));
        assert_eq!(stat_fields(b"42 (x"), None);
        assert_eq!(stat_fields(b"garbage"), None);
    }
}
