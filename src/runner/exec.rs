//! Runs one build command and says how it ended.
//!
//! The command runs in its own process group with stdin on `/dev/null`, exactly the
//! environment it is given, and stdout and stderr drained together into the build's
//! log. Everything it starts lives and dies with it: a timeout or cancel sends
//! SIGTERM to the whole group and SIGKILL after a grace period, and once the leader
//! has exited whatever it left behind in the group is killed too, and so is every
//! process that left the group but still carries the build's marker (see
//! [`super::leftovers`]). If the daemon dies anyway, recovery finds them again.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, ChildStdout};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fd::close_on_exec;
use crate::feed::CommandSpec;
use crate::process::killpg;
use crate::process::Leader;
use crate::runner::leftovers::{kill_escaped, Marker};
use crate::runner::log::{LogError, LogWriter};

/// How long output is still read after the leader exited and the group was
/// killed. Pipes outlive that only when a process left the group (`setsid`,
/// a daemonising tool) while holding them, and the build must not wait for it.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Size of each pipe's read buffer.
const READ_CHUNK: usize = 64 * 1024;

/// Makes this process fit to start builds: every descriptor it inherited (beyond 0,
/// 1 and 2) is marked close-on-exec, so a build sees nothing of its parent's, as it
/// sees nothing of hookd's own (Rust opens everything close-on-exec); and it becomes
/// a child subreaper, so a build's orphans come to it. Call it once at start-up,
/// after taking any descriptors meant for the daemon.
pub(crate) fn init() -> io::Result<()> {
    super::leftovers::become_subreaper()?;
    let inherited: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in inherited {
        // The directory just read is closed by now; its number may be gone or reused.
        match close_on_exec(fd) {
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
            other => other?,
        }
    }
    Ok(())
}

/// One run of a build command.
pub(crate) struct Job {
    /// What to run.
    pub(crate) command: CommandSpec,
    /// The working directory; it must exist.
    pub(crate) workdir: PathBuf,
    /// The complete environment: nothing of the daemon's own leaks into a build.
    pub(crate) env: Vec<(String, String)>,
    /// From the start of the command until SIGTERM.
    pub(crate) timeout: Duration,
    /// From SIGTERM until SIGKILL.
    pub(crate) kill_grace: Duration,
    /// Where stdout, stderr and hookd's notes go.
    pub(crate) log: LogWriter,
    /// The environment entries that mark the build's processes (they are in `env`
    /// too): whatever carries them is killed when the run ends.
    pub(crate) marker: Option<Marker>,
}

/// Shows variable names only: values may hold the build's secrets.
impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("command", &self.command)
            .field("workdir", &self.workdir)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("log", &self.log.path())
            .field("marker", &self.marker)
            .finish()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The command exited by itself with this code.
    Exited(i32),
    /// The command was killed by this signal, not by hookd.
    Signalled(i32),
    /// hookd stopped it because it ran past its timeout.
    TimedOut,
    /// hookd stopped it because the cancel token fired.
    Cancelled,
    /// It never ran; the reason is also in the log.
    SpawnFailed(String),
}

/// Runs `job` to its end, killing its whole process group on timeout, on `cancel`,
/// and when the future is dropped, and then every process still carrying the job's
/// marker. `on_spawn` gets the process group id (the leader's pid) as soon as it
/// exists, so the caller can persist it for [`super::leftovers::reap_orphans`].
pub(crate) async fn run(
    job: Job,
    cancel: CancellationToken,
    on_spawn: impl FnOnce(u32),
) -> Outcome {
    let Job {
        command,
        workdir,
        env,
        timeout,
        kill_grace,
        log,
        marker,
    } = job;
    let mut sink = Sink { log, broken: false };
    if cancel.is_cancelled() {
        sink.note("[hookd] cancelled before the command started")
            .await;
        sink.finish().await;
        return Outcome::Cancelled;
    }

    // Spawning would fail anyway, but with an error that does not say which path
    // was missing.
    match tokio::fs::metadata(&workdir).await {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            let reason = format!("working directory {} is not a directory", workdir.display());
            return spawn_failed(sink, reason).await;
        }
        Err(e) => {
            let reason = format!("working directory {}: {e}", workdir.display());
            return spawn_failed(sink, reason).await;
        }
    }
    let Some((mut cmd, program)) = crate::process::child(&command, env, &workdir, Stdio::null())
    else {
        return spawn_failed(sink, "the command is empty".to_owned()).await;
    };
    let program = program.as_str();
    let (mut child, _leader) = match Leader::spawn(&mut cmd) {
        Ok(spawned) => spawned,
        Err(e) => return spawn_failed(sink, format!("{program}: {e}")).await,
    };
    // A freshly spawned child always has a pid, and pids fit in an i32.
    let Some((pid, pgid)) = child
        .id()
        .and_then(|pid| Some((pid, i32::try_from(pid).ok()?)))
    else {
        return spawn_failed(sink, "the process has no usable pid".to_owned()).await;
    };
    let mut group = Group {
        pgid,
        armed: true,
        marker: marker.clone(),
    };
    tracing::info!(pgid, program, "build command started");
    on_spawn(pid);

    let mut pipes = Pipes {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        out_buf: vec![0; READ_CHUNK],
        err_buf: vec![0; READ_CHUNK],
    };
    let timed_out = tokio::time::sleep(timeout);
    tokio::pin!(timed_out);
    let mut stop: Option<Stop> = None;
    let mut kill_at: Option<Instant> = None;

    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            (stream, read) = pipes.read() => {
                let bytes = pipes.settle(stream, read);
                sink.output(bytes).await;
            }
            () = &mut timed_out, if stop.is_none() => {
                tracing::warn!(pgid, timeout_secs = timeout.as_secs(), "build timed out; terminating its process group");
                sink.note(&format!("[hookd] timed out after {timeout:?}, sending SIGTERM to the process group")).await;
                stop = Some(Stop::TimedOut);
                group.signal(libc::SIGTERM);
                kill_at = Some(Instant::now() + kill_grace);
            }
            () = cancel.cancelled(), if stop.is_none() => {
                tracing::info!(pgid, "build cancelled; terminating its process group");
                sink.note("[hookd] cancelled, sending SIGTERM to the process group").await;
                stop = Some(Stop::Cancelled);
                group.signal(libc::SIGTERM);
                kill_at = Some(Instant::now() + kill_grace);
            }
            () = sleep_until(kill_at) => {
                tracing::warn!(pgid, grace_secs = kill_grace.as_secs(), "build survived SIGTERM; killing its process group");
                sink.note(&format!("[hookd] still running {kill_grace:?} after SIGTERM, sending SIGKILL to the process group")).await;
                group.signal(libc::SIGKILL);
                kill_at = None;
            }
        }
    };
    // The build is over once its leader is: nothing it started may outlive it.
    group.kill_remaining();
    if let Some(marker) = marker {
        let killed = super::spawn_blocking(move || kill_escaped(&marker))
            .await
            .unwrap_or(0);
        if killed > 0 {
            sink.note(&format!("[hookd] killed {killed} processes that outlived the command (they still carried HOOKD_BUILD_ID)")).await;
        }
    }

    let drain_limit = tokio::time::sleep(DRAIN_AFTER_EXIT);
    tokio::pin!(drain_limit);
    while pipes.is_open() {
        tokio::select! {
            (stream, read) = pipes.read() => {
                let bytes = pipes.settle(stream, read);
                sink.output(bytes).await;
            }
            () = &mut drain_limit => {
                tracing::warn!(pgid, "build output still open after the command exited; a process left its group");
                sink.note(&format!("[hookd] output still open {DRAIN_AFTER_EXIT:?} after the command exited (a process left the group?); no longer reading it")).await;
                break;
            }
        }
    }

    let outcome = match (stop, status) {
        (Some(Stop::TimedOut), _) => Outcome::TimedOut,
        (Some(Stop::Cancelled), _) => Outcome::Cancelled,
        (None, Ok(status)) => outcome_of(status),
        (None, Err(e)) => {
            let reason = format!("cannot wait for the command: {e}");
            sink.note(&format!("[hookd] {reason}")).await;
            Outcome::SpawnFailed(reason)
        }
    };
    tracing::info!(pgid, outcome = ?outcome, "build command ended");
    sink.finish().await;
    outcome
}

/// Why hookd stopped the command itself.
#[derive(Debug, Clone, Copy)]
enum Stop {
    TimedOut,
    Cancelled,
}

fn outcome_of(status: ExitStatus) -> Outcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exited(code),
        (None, Some(signal)) => Outcome::Signalled(signal),
        // Unix reports one or the other; keep something recognisable regardless.
        (None, None) => Outcome::Exited(-1),
    }
}

async fn spawn_failed(mut sink: Sink, reason: String) -> Outcome {
    tracing::warn!(reason = %reason, "cannot start build command");
    sink.note(&format!("[hookd] cannot start the command: {reason}"))
        .await;
    sink.finish().await;
    Outcome::SpawnFailed(reason)
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The build's process group, killed when dropped so an abandoned run (its future
/// dropped mid-build) leaves nothing behind.
struct Group {
    pgid: i32,
    /// Off once the group has been killed after its leader exited: signalling a
    /// group id whose members are all gone could hit an unrelated group reusing it.
    armed: bool,
    /// The build's marker, for what left the group when the run is abandoned.
    marker: Option<Marker>,
}

impl Group {
    fn signal(&self, signal: libc::c_int) {
        if self.armed {
            killpg(self.pgid, signal);
        }
    }

    /// Kills whatever the exited leader left in the group, then disarms.
    fn kill_remaining(&mut self) {
        self.signal(libc::SIGKILL);
        self.armed = false;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.armed {
            self.signal(libc::SIGKILL);
            // Blocking, but only for a run abandoned mid-build.
            if let Some(marker) = &self.marker {
                kill_escaped(marker);
            }
        }
    }
}

/// Which pipe a read came from.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// The command's stdout and stderr, read together so that neither can fill up and
/// block the command while the other is being waited on.
struct Pipes {
    /// `None` once closed.
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out_buf: Vec<u8>,
    err_buf: Vec<u8>,
}

impl Pipes {
    fn is_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    /// Waits until either pipe has output or closes; never completes once both are
    /// closed. Cancel-safe: a read that loses a `select!` consumes nothing, so the
    /// bytes are handed to the log only after the read won (see [`Pipes::settle`]).
    async fn read(&mut self) -> (Stream, io::Result<usize>) {
        tokio::select! {
            read = read_some(&mut self.stdout, &mut self.out_buf) => (Stream::Stdout, read),
            read = read_some(&mut self.stderr, &mut self.err_buf) => (Stream::Stderr, read),
        }
    }

    /// Turns a finished read into the bytes it produced, closing the pipe at end of
    /// file or on error.
    fn settle(&mut self, stream: Stream, read: io::Result<usize>) -> &[u8] {
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(stream = ?stream, error = %e, "cannot read build output");
                0
            }
        };
        match stream {
            Stream::Stdout if n == 0 => self.stdout = None,
            Stream::Stderr if n == 0 => self.stderr = None,
            _ => {}
        }
        match stream {
            Stream::Stdout => &self.out_buf[..n],
            Stream::Stderr => &self.err_buf[..n],
        }
    }
}

async fn read_some<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

/// The log as the run sees it: a failing log (disk full) must not stop the pipes
/// from draining or the build from finishing, so errors are reported once and
/// output is dropped from then on.
struct Sink {
    log: LogWriter,
    broken: bool,
}

impl Sink {
    async fn output(&mut self, bytes: &[u8]) {
        if !self.broken {
            let written = self.log.write(bytes).await;
            self.check(written);
        }
    }

    async fn note(&mut self, line: &str) {
        if !self.broken {
            let written = self.log.write_line(line).await;
            self.check(written);
        }
    }

    async fn finish(mut self) {
        if !self.broken {
            let flushed = self.log.flush().await;
            self.check(flushed);
        }
    }

    fn check(&mut self, result: Result<(), LogError>) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "build log failed; dropping further output");
            self.broken = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    const LONG: Duration = Duration::from_secs(60);
    /// Upper bound for any single run in these tests, so a bug fails instead of hanging.
    const HANG: Duration = Duration::from_secs(90);

    async fn job(dir: &Path, command: CommandSpec) -> Job {
        Job {
            command,
            workdir: dir.to_owned(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            timeout: LONG,
            kill_grace: Duration::from_secs(10),
            log: LogWriter::open(&dir.join("build.log"), 50 << 20)
                .await
                .unwrap(),
            marker: None,
        }
    }

    fn sh(script: &str) -> CommandSpec {
        CommandSpec::Shell(script.to_owned())
    }

    fn argv(words: &[&str]) -> CommandSpec {
        CommandSpec::Argv(words.iter().map(|w| w.to_string()).collect())
    }

    fn log_of(dir: &Path) -> String {
        String::from_utf8_lossy(&std::fs::read(dir.join("build.log")).unwrap()).into_owned()
    }

    async fn run_to_end(job: Job) -> Outcome {
        tokio::time::timeout(HANG, run(job, CancellationToken::new(), |_| {}))
            .await
            .expect("run did not finish")
    }

    /// Polls `check` until it holds, failing the test after a generous deadline.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether `pid` is a live process (a zombie is dead: it awaits only reaping,
    /// which in a container's pid namespace may never come).
    fn alive(pid: i32) -> bool {
        match std::fs::read(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let close = stat.iter().rposition(|&b| b == b')').unwrap();
                !matches!(stat.get(close + 2), Some(b'Z' | b'X'))
            }
            Err(_) => false,
        }
    }

    fn pid_in(path: &Path) -> Option<i32> {
        let text = std::fs::read_to_string(path).ok()?;
        text.strip_suffix('\n')?.parse().ok()
    }

    /// Runs `job` on its own task, reporting the pgid through the returned cell.
    fn start(
        job: Job,
        cancel: CancellationToken,
    ) -> (tokio::task::JoinHandle<Outcome>, Arc<AtomicU32>) {
        let pgid = Arc::new(AtomicU32::new(0));
        let seen = pgid.clone();
        let handle = tokio::spawn(run(job, cancel, move |p| seen.store(p, Ordering::SeqCst)));
        (handle, pgid)
    }

    #[tokio::test]
    async fn exit_code_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            run_to_end(job(dir.path(), sh("exit 3")).await).await,
            Outcome::Exited(3)
        );
        assert_eq!(
            run_to_end(job(dir.path(), argv(&["/bin/false"])).await).await,
            Outcome::Exited(1)
        );
        assert_eq!(
            run_to_end(job(dir.path(), argv(&["true"])).await).await,
            Outcome::Exited(0)
        );
    }

    #[tokio::test]
    async fn death_by_signal_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = run_to_end(job(dir.path(), sh("kill -9 $$")).await).await;
        assert_eq!(outcome, Outcome::Signalled(libc::SIGKILL));
    }

    #[tokio::test]
    async fn argv_is_passed_verbatim_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let command = argv(&["/bin/echo", "a  b", "$HOME;*", "`id`"]);
        assert_eq!(
            run_to_end(job(dir.path(), command).await).await,
            Outcome::Exited(0)
        );
        assert_eq!(log_of(dir.path()), "a  b $HOME;* `id`\n");
    }

    #[tokio::test]
    async fn shell_command_runs_under_sh_in_the_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let command = sh("echo $((1+2)); pwd -P");
        assert_eq!(
            run_to_end(job(dir.path(), command).await).await,
            Outcome::Exited(0)
        );
        let expected = format!("3\n{}\n", dir.path().canonicalize().unwrap().display());
        assert_eq!(log_of(dir.path()), expected);
    }

    #[tokio::test]
    async fn environment_is_exactly_the_given_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = job(dir.path(), argv(&["env"])).await;
        job.env.push(("HOOKD_BUILD_ID".into(), "42".into()));
        job.env.push(("FOO".into(), "bar baz".into()));
        assert_eq!(run_to_end(job).await, Outcome::Exited(0));
        let mut lines: Vec<String> = log_of(dir.path()).lines().map(str::to_owned).collect();
        lines.sort();
        assert_eq!(
            lines,
            ["FOO=bar baz", "HOOKD_BUILD_ID=42", "PATH=/usr/bin:/bin"]
        );
    }

    #[tokio::test]
    async fn stdin_is_dev_null() {
        let dir = tempfile::tempdir().unwrap();
        // `cat` on an open stdin would wait for the 60 s timeout.
        let started = std::time::Instant::now();
        assert_eq!(
            run_to_end(job(dir.path(), argv(&["cat"])).await).await,
            Outcome::Exited(0)
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        let command = sh("readlink /proc/self/fd/0");
        assert_eq!(
            run_to_end(job(dir.path(), command).await).await,
            Outcome::Exited(0)
        );
        assert!(log_of(dir.path()).ends_with("/dev/null\n"));
    }

    #[tokio::test]
    async fn a_descriptor_opened_without_close_on_exec_never_reaches_the_build() {
        let dir = tempfile::tempdir().unwrap();
        // dup(2) makes a copy without close-on-exec, as a careless library would.
        // SAFETY: plain descriptor numbers; the copy is closed below.
        let leaked = unsafe { libc::dup(2) };
        assert!(leaked > 2);
        let outcome = run_to_end(job(dir.path(), sh("ls /proc/$$/fd; true")).await).await;
        // SAFETY: the copy made above.
        unsafe { libc::close(leaked) };
        assert_eq!(outcome, Outcome::Exited(0));
        let fds: Vec<String> = log_of(dir.path()).lines().map(str::to_owned).collect();
        assert!(!fds.contains(&leaked.to_string()), "{fds:?}");
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_drained_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        // Both streams at once, and stderr first on its own: a reader that
        // finished one pipe before the other would deadlock on either.
        let script = "head -c 5000000 /dev/zero >&2 & head -c 5000000 /dev/zero; wait; \
                      head -c 3000000 /dev/zero >&2; head -c 3000000 /dev/zero";
        let (handle, pgid) = start(job(dir.path(), sh(script)).await, CancellationToken::new());
        let outcome = tokio::time::timeout(HANG, handle).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Exited(0));
        assert_eq!(
            std::fs::metadata(dir.path().join("build.log"))
                .unwrap()
                .len(),
            16_000_000
        );
        assert_ne!(pgid.load(Ordering::SeqCst), 0, "on_spawn was not called");
    }

    #[tokio::test]
    async fn log_cap_writes_marker_and_keeps_draining() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = job(
            dir.path(),
            sh("head -c 500000 /dev/zero | tr '\\0' a; echo done >&2; exit 4"),
        )
        .await;
        job.log = LogWriter::open(&dir.path().join("build.log"), 1000)
            .await
            .unwrap();
        assert_eq!(run_to_end(job).await, Outcome::Exited(4));
        let log = std::fs::read(dir.path().join("build.log")).unwrap();
        let marker = b"\n[hookd: log truncated at 1000 bytes; further output discarded]\n";
        assert_eq!(&log[..1000], [b'a'; 1000].as_slice());
        assert_eq!(&log[1000..], marker.as_slice());
    }

    #[tokio::test]
    async fn timeout_kills_leader_and_background_grandchild() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = job(dir.path(), sh("sleep 1000 & echo $! > pidfile; sleep 1000")).await;
        job.timeout = Duration::from_secs(2);
        let (handle, pgid) = start(job, CancellationToken::new());
        let outcome = tokio::time::timeout(HANG, handle).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::TimedOut);
        let leader = pgid.load(Ordering::SeqCst) as i32;
        let grandchild = pid_in(&dir.path().join("pidfile")).expect("pidfile written");
        eventually("leader and grandchild gone", || {
            !alive(leader) && !alive(grandchild)
        })
        .await;
        assert!(log_of(dir.path()).contains("[hookd] timed out after 2s"));
    }

    #[tokio::test]
    async fn cancel_kills_leader_and_background_grandchild() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), sh("sleep 1000 & echo $! > pidfile; sleep 1000")).await;
        let cancel = CancellationToken::new();
        let (handle, pgid) = start(job, cancel.clone());
        let pidfile = dir.path().join("pidfile");
        eventually("pidfile written", || pid_in(&pidfile).is_some()).await;
        cancel.cancel();
        let outcome = tokio::time::timeout(HANG, handle).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Cancelled);
        let leader = pgid.load(Ordering::SeqCst) as i32;
        let grandchild = pid_in(&pidfile).unwrap();
        eventually("leader and grandchild gone", || {
            !alive(leader) && !alive(grandchild)
        })
        .await;
        assert!(log_of(dir.path()).contains("[hookd] cancelled"));
    }

    #[tokio::test]
    async fn command_ignoring_term_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        // Ignored signals stay ignored across fork and exec: the sleep ignores TERM too.
        let script = "trap '' TERM; sleep 1000 & echo $! > pidfile; wait";
        let mut job = job(dir.path(), sh(script)).await;
        job.kill_grace = Duration::from_secs(1);
        let cancel = CancellationToken::new();
        let (handle, pgid) = start(job, cancel.clone());
        let pidfile = dir.path().join("pidfile");
        eventually("pidfile written", || pid_in(&pidfile).is_some()).await;
        let cancelled_at = std::time::Instant::now();
        cancel.cancel();
        let outcome = tokio::time::timeout(HANG, handle).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Cancelled);
        assert!(
            cancelled_at.elapsed() >= Duration::from_secs(1),
            "ended before the grace"
        );
        let leader = pgid.load(Ordering::SeqCst) as i32;
        let grandchild = pid_in(&pidfile).unwrap();
        eventually("leader and grandchild gone", || {
            !alive(leader) && !alive(grandchild)
        })
        .await;
        assert!(log_of(dir.path()).contains("sending SIGKILL to the process group"));
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), sh("sleep 1000 & echo $! > pidfile; sleep 1000")).await;
        let (handle, pgid) = start(job, CancellationToken::new());
        let pidfile = dir.path().join("pidfile");
        eventually("pidfile written", || pid_in(&pidfile).is_some()).await;
        handle.abort();
        assert!(handle.await.unwrap_err().is_cancelled());
        let leader = pgid.load(Ordering::SeqCst) as i32;
        let grandchild = pid_in(&pidfile).unwrap();
        eventually("leader and grandchild gone", || {
            !alive(leader) && !alive(grandchild)
        })
        .await;
    }

    #[tokio::test]
    async fn normal_exit_with_lingering_background_child_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        // The background sleep holds stdout and stderr open.
        let command = sh("sleep 1000 & echo $! > pidfile; echo done");
        let started = std::time::Instant::now();
        assert_eq!(
            run_to_end(job(dir.path(), command).await).await,
            Outcome::Exited(0)
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        let grandchild = pid_in(&dir.path().join("pidfile")).unwrap();
        eventually("grandchild gone", || !alive(grandchild)).await;
        assert_eq!(log_of(dir.path()), "done\n");
    }

    #[tokio::test]
    async fn escaped_process_holding_the_pipes_does_not_hang_the_build() {
        let dir = tempfile::tempdir().unwrap();
        // `setsid` leaves the group (not being a group leader, it does not fork),
        // so killing the group misses it and its pipes stay open. The pidfile is
        // written from inside the new session, so the leader exits only after that.
        let command = sh(
            "setsid sh -c 'echo $$ > pidfile.tmp; mv pidfile.tmp pidfile; exec sleep 1000' & \
             while [ ! -s pidfile ]; do sleep 0.01; done; echo done",
        );
        assert_eq!(
            run_to_end(job(dir.path(), command).await).await,
            Outcome::Exited(0)
        );
        let escaped = pid_in(&dir.path().join("pidfile")).unwrap();
        // SAFETY: plain integers; the pid is the test's own grandchild.
        unsafe { libc::kill(escaped, libc::SIGKILL) };
        let log = log_of(dir.path());
        assert!(log.starts_with("done\n"), "{log}");
        assert!(log.contains("no longer reading it"), "{log}");
    }

    #[tokio::test]
    async fn spawn_failures_are_reported_and_logged() {
        let dir = tempfile::tempdir().unwrap();
        let missing = argv(&["/nonexistent/hookd-test-program"]);
        let Outcome::SpawnFailed(reason) = run_to_end(job(dir.path(), missing).await).await else {
            panic!("missing program ran");
        };
        assert!(
            reason.contains("/nonexistent/hookd-test-program"),
            "{reason}"
        );
        assert!(log_of(dir.path()).contains(&reason));

        let mut job_without_dir = job(dir.path(), argv(&["true"])).await;
        job_without_dir.workdir = dir.path().join("no-such-dir");
        let Outcome::SpawnFailed(reason) = run_to_end(job_without_dir).await else {
            panic!("ran without its working directory");
        };
        assert!(reason.contains("no-such-dir"), "{reason}");
        assert!(log_of(dir.path()).contains(&reason));

        let empty = run_to_end(job(dir.path(), argv(&[])).await).await;
        assert!(matches!(empty, Outcome::SpawnFailed(_)), "{empty:?}");
    }

    #[tokio::test]
    async fn already_cancelled_run_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let job = job(dir.path(), sh("touch started")).await;
        let outcome = run(job, cancel, |_| panic!("spawned")).await;
        assert_eq!(outcome, Outcome::Cancelled);
        assert!(!dir.path().join("started").exists());
    }

    #[tokio::test]
    async fn job_debug_hides_environment_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = job(dir.path(), argv(&["true"])).await;
        job.env.push(("API_TOKEN".into(), "s3cr3t".into()));
        let shown = format!("{job:?}");
        assert!(
            shown.contains("API_TOKEN") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn run_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = tokio::sync::oneshot::channel::<u32>();
        let future = run(
            job(dir.path(), argv(&["true"])).await,
            CancellationToken::new(),
            move |p| {
                let _ = tx.send(p);
            },
        );
        assert_send(&future);
    }
}
