//! The runner: one build from start to status. Fetch the commit into the feed's
//! mirror, check it out clean into the feed's workspace, run the command with the
//! build's environment, and report what happens as [`RunEvent`]s.
//!
//! It is given everything as a plain [`BuildSpec`] and writes no records: the
//! scheduler turns its events into store writes, metrics and published updates.

pub(crate) mod exec;
pub mod git;
pub(crate) mod leftovers;
pub(crate) mod log;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::build::{BuildId, BuildStatus, TriggerKind};
use crate::config::{Config, FeedCredentials};
use crate::feed::Feed;

/// Everything one build needs, as plain values.
#[derive(Debug)]
pub(crate) struct BuildSpec {
    /// The build's id (`HOOKD_BUILD_ID`).
    pub(crate) id: BuildId,
    /// The feed as it stood when the build was claimed.
    pub(crate) feed: Feed,
    /// Full ref to fetch.
    pub(crate) git_ref: String,
    /// Short branch or tag name.
    pub(crate) branch: String,
    /// What caused the build (`HOOKD_TRIGGER`).
    pub(crate) kind: TriggerKind,
    /// The forge of the newest trigger (`HOOKD_PROVIDER`).
    pub(crate) provider: String,
    /// The commit the newest trigger named, if any.
    pub(crate) expected_commit: Option<String>,
    /// Where its log, mirror and workspace live.
    pub(crate) dirs: BuildDirs,
    /// The daemon's data dir: with the build id, it marks the build's processes.
    pub(crate) data_dir: PathBuf,
    /// Operator-set variables added to every build's environment.
    pub(crate) build_env: BTreeMap<String, String>,
    /// The feed's repository credentials.
    pub(crate) credentials: FeedCredentials,
    /// From SIGTERM until SIGKILL.
    pub(crate) kill_grace: Duration,
    /// Most bytes of output the log keeps.
    pub(crate) log_max_bytes: u64,
    /// Fired to stop the build.
    pub(crate) cancel: CancellationToken,
}

/// The files and directories one build uses.
#[derive(Debug, Clone)]
pub(crate) struct BuildDirs {
    /// The build's log file.
    pub(crate) log: PathBuf,
    /// The feed's bare mirror.
    pub(crate) mirror: PathBuf,
    /// The feed's workspace, where the command runs.
    pub(crate) workspace: PathBuf,
}

/// What happens during a build, in order; `Finished` comes last, exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunEvent {
    /// The source step (fetch and checkout) is over, whatever its result.
    Fetched {
        /// How long it took.
        elapsed: Duration,
    },
    /// The fetch resolved the commit to build.
    CommitResolved {
        /// Its id.
        commit: String,
        /// Its subject line.
        subject: String,
    },
    /// The command started in its own process group.
    Started {
        /// The group id (the leader's pid).
        pgid: u32,
    },
    /// The log grew (reported at most once until the previous report was taken).
    LogGrew {
        /// Bytes in the log now.
        len: u64,
    },
    /// The build is over (`Cancelled` also when the daemon's shutdown stopped it).
    Finished {
        /// Its final status.
        status: BuildStatus,
    },
}

/// Where a build's events go. Sending never waits, so a slow reader cannot hold up
/// the build; log growth is coalesced so a chatty build cannot flood the channel.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    tx: UnboundedSender<RunEvent>,
    /// Set while a `LogGrew` is sent and not yet taken.
    log_pending: Arc<AtomicBool>,
}

impl Reporter {
    /// A reporter sending to `tx`.
    pub(crate) fn new(tx: UnboundedSender<RunEvent>) -> Self {
        Self {
            tx,
            log_pending: Arc::default(),
        }
    }

    /// Reports one event; a gone receiver is not the build's problem.
    pub(crate) fn send(&self, event: RunEvent) {
        let _ = self.tx.send(event);
    }

    /// Reports log growth unless a report is still pending.
    fn log_grew(&self, len: u64) {
        if !self.log_pending.swap(true, Ordering::AcqRel) {
            self.send(RunEvent::LogGrew { len });
        }
    }

    /// The receiver's handle for acknowledging `LogGrew` events.
    pub(crate) fn log_ack(&self) -> LogAck {
        LogAck(self.log_pending.clone())
    }
}

/// Held by the receiver of a build's events (it does not keep the channel open).
#[derive(Debug)]
pub(crate) struct LogAck(Arc<AtomicBool>);

impl LogAck {
    /// Called when a `LogGrew` is taken, so the next growth is reported.
    pub(crate) fn taken(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs one build to its end, reporting as it goes; the last event is `Finished`.
pub(crate) async fn run(spec: BuildSpec, report: Reporter) {
    let status = run_to_status(&spec, &report).await;
    report.send(RunEvent::Finished { status });
}

async fn run_to_status(spec: &BuildSpec, report: &Reporter) -> BuildStatus {
    let fetch_started = std::time::Instant::now();
    let fetched = fetch(spec).await;
    report.send(RunEvent::Fetched {
        elapsed: fetch_started.elapsed(),
    });
    let commit = match fetched {
        Ok(commit) => commit,
        Err(status) => return status,
    };
    report.send(RunEvent::CommitResolved {
        commit: commit.id.clone(),
        subject: commit.subject,
    });
    let job = match job(spec, &commit.id, report).await {
        Ok(job) => job,
        Err(e) => return error(&format!("cannot open the build log: {e}")),
    };
    let started = report.clone();
    let outcome = exec::run(job, spec.cancel.clone(), move |pgid| {
        started.send(RunEvent::Started { pgid })
    })
    .await;
    status_of(outcome)
}

/// A build that ended before its command ran.
pub(crate) fn error(reason: &str) -> BuildStatus {
    BuildStatus::Error {
        reason: reason.to_owned(),
    }
}

/// Creates the log, mirror and workspace directories a build needs.
fn prepare_dirs(log: &Path, mirror: &Path, workspace: &Path) -> std::io::Result<()> {
    for dir in [log.parent(), mirror.parent(), Some(workspace)]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(dir)?;
    }
    Ok(())
}

/// `spawn_blocking` inside the caller's span: tokio does not carry spans onto the
/// blocking pool, and what a build's blocking work logs (git, the leftover sweep) must
/// still say which build it was.
pub(crate) fn spawn_blocking<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> tokio::task::JoinHandle<R> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}

/// Fetches and checks out the build's ref; an `Err` is the build's final status.
async fn fetch(spec: &BuildSpec) -> Result<git::ResolvedCommit, BuildStatus> {
    let cancel = &spec.cancel;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, cancel) = (stop.clone(), cancel.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let creds = spec.credentials.clone();
    let repo = spec.feed.repo.clone();
    let BuildDirs {
        log,
        mirror,
        workspace,
    } = spec.dirs.clone();
    let (git_ref, expected) = (spec.git_ref.clone(), spec.expected_commit.clone());
    let flag = stop.clone();
    let result = spawn_blocking(move || -> Result<git::ResolvedCommit, String> {
        prepare_dirs(&log, &mirror, &workspace)
            .map_err(|e| format!("cannot prepare build directories: {e}"))?;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("cannot open the build log: {e}"))?;
        let fetched = (|| {
            let creds = credentials(&creds)
                .map_err(|e| format!("cannot read the feed's credentials: {e}"))?;
            let remote = git::Remote {
                url: &repo,
                credentials: &creds,
            };
            let commit = git::fetch(
                &remote,
                &mirror,
                &git_ref,
                expected.as_deref(),
                &mut out,
                &flag,
            )
            .map_err(|e| e.to_string())?;
            git::checkout(&mirror, &workspace, &commit.id, &creds, &mut out, &flag)
                .map_err(|e| e.to_string())?;
            Ok(commit)
        })();
        if let Err(reason) = &fetched {
            use std::io::Write;
            let _ = writeln!(out, "[hookd] source error: {reason}");
        }
        fetched
    })
    .await;
    watcher.abort();
    match result {
        Ok(Ok(commit)) => Ok(commit),
        Ok(Err(_)) if cancel.is_cancelled() => Err(BuildStatus::Cancelled),
        Ok(Err(reason)) => Err(error(&reason)),
        Err(_) => Err(error("the fetch task failed")),
    }
}

/// Checks a feed's repository as its builds will reach it, with the credentials the
/// config gives that feed name: a local path must be a git repository, and with
/// `list_remote` a network remote must answer. Returns the refs the remote listed,
/// if it was asked. Blocks (git2, files): call it on the blocking pool.
pub(crate) fn check_repo(
    config: &Config,
    feed: &str,
    url: &str,
    list_remote: bool,
) -> Result<Option<Vec<String>>, String> {
    let configured = config.credentials.get(feed).cloned().unwrap_or_default();
    let creds =
        credentials(&configured).map_err(|e| format!("cannot read the feed's credentials: {e}"))?;
    let remote = git::Remote {
        url,
        credentials: &creds,
    };
    git::probe(&remote, list_remote).map_err(|e| e.to_string())
}

/// The feed's credentials from the config; file contents are read here, at use.
fn credentials(c: &FeedCredentials) -> std::io::Result<git::Credentials> {
    let https_token = match &c.https_token_file {
        Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
        None => None,
    };
    Ok(git::Credentials {
        ssh_key: c.ssh_key.clone(),
        https_token,
        https_user: c.https_user.clone(),
    })
}

/// The command, its workspace and its whole environment: nothing else of the
/// daemon's environment leaks in, and payload data arrives only as values.
async fn job(spec: &BuildSpec, commit: &str, report: &Reporter) -> std::io::Result<exec::Job> {
    let workspace = spec.dirs.workspace.clone();
    let mut env = crate::process::base_env(&workspace);
    env.extend(spec.build_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend([
        ("HOOKD_FEED".into(), spec.feed.name.to_string()),
        ("HOOKD_COMMIT".into(), commit.to_owned()),
        ("HOOKD_REF".into(), spec.git_ref.clone()),
        ("HOOKD_BRANCH".into(), spec.branch.clone()),
        (
            "HOOKD_REPO_URL".into(),
            crate::feed::redact_url(&spec.feed.repo),
        ),
        ("HOOKD_TRIGGER".into(), spec.kind.word().into()),
        ("HOOKD_PROVIDER".into(), spec.provider.clone()),
    ]);
    env.extend(leftovers::Marker::env(spec.id.0, &spec.data_dir));
    let mut log = log::LogWriter::open(&spec.dirs.log, spec.log_max_bytes).await?;
    let report = report.clone();
    log.on_growth(move |len| report.log_grew(len));
    Ok(exec::Job {
        command: spec.feed.command.clone(),
        workdir: workspace,
        env,
        timeout: Duration::from_secs(spec.feed.timeout_secs),
        kill_grace: spec.kill_grace,
        log,
        marker: Some(leftovers::Marker::new(spec.id.0, &spec.data_dir)),
    })
}

fn status_of(outcome: exec::Outcome) -> BuildStatus {
    match outcome {
        exec::Outcome::Exited(0) => BuildStatus::Succeeded,
        exec::Outcome::Exited(code) => BuildStatus::Failed { exit_code: code },
        exec::Outcome::Signalled(sig) => BuildStatus::Failed {
            exit_code: 128 + sig,
        },
        exec::Outcome::TimedOut => BuildStatus::TimedOut,
        exec::Outcome::Cancelled => BuildStatus::Cancelled,
        exec::Outcome::SpawnFailed(reason) => BuildStatus::Error {
            reason: format!("cannot start the command: {reason}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_growth_is_reported_once_until_taken() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let report = Reporter::new(tx);
        let ack = report.log_ack();
        report.log_grew(1);
        report.log_grew(2);
        assert_eq!(rx.try_recv().ok(), Some(RunEvent::LogGrew { len: 1 }));
        assert!(
            rx.try_recv().is_err(),
            "coalesced while the first is pending"
        );
        ack.taken();
        report.log_grew(3);
        assert_eq!(rx.try_recv().ok(), Some(RunEvent::LogGrew { len: 3 }));
    }
}
