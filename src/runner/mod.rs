//! The runner: one build from start to status. Fetch the commit into the feed's
//! mirror, check it out clean into the feed's workspace, run the command with the
//! build's environment, and say how it ended. Paths derive from the feed name and
//! build id only, never from payload data.

pub mod exec;
pub mod git;
pub mod leftovers;
pub mod log;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::build::{Build, BuildId, BuildStatus};
use crate::config::{Config, FeedCredentials};
use crate::feed::Feed;
use crate::paths;

/// Runs one claimed build to its final status (`Cancelled` also when the daemon's
/// shutdown stopped it; the scheduler tells the two apart).
pub async fn run_build(app: &App, build: Build, cancel: CancellationToken) -> BuildStatus {
    let config = app.config();
    let store = app.store.clone();
    let name = build.feed.clone();
    let feed = match tokio::task::spawn_blocking(move || store.feed(name.as_str())).await {
        Ok(Ok(Some(feed))) => feed,
        Ok(Ok(None)) => return error("the feed was removed"),
        _ => return error("cannot read the feed from the store"),
    };
    let log = paths::log(&config.data_dir, build.id);
    let fetch_started = std::time::Instant::now();
    let fetched = fetch(app, &config, &feed, &build, &log, &cancel).await;
    app.metrics
        .fetch(fetch_started.elapsed().as_micros() as u64);
    let commit = match fetched {
        Ok(commit) => commit,
        Err(status) => return status,
    };
    let job = match job(&config, &feed, &build, &commit, &log).await {
        Ok(job) => job,
        Err(e) => return error(&format!("cannot open the build log: {e}")),
    };
    let (pgid_tx, pgid_rx) = tokio::sync::oneshot::channel();
    record_pgid(app, build.id, pgid_rx);
    let outcome = exec::run(job, cancel, move |pgid| {
        let _ = pgid_tx.send(pgid);
    })
    .await;
    status_of(outcome)
}

fn error(reason: &str) -> BuildStatus {
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

/// What the fetch resolved, for the environment and the record.
struct Resolved {
    id: String,
}

/// Fetches and checks out the build's ref; an `Err` is the build's final status.
async fn fetch(
    app: &App,
    config: &Config,
    feed: &Feed,
    build: &Build,
    log: &Path,
    cancel: &CancellationToken,
) -> Result<Resolved, BuildStatus> {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, cancel) = (stop.clone(), cancel.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let creds = config
        .credentials
        .get(feed.name.as_str())
        .cloned()
        .unwrap_or_default();
    let (repo, mirror, workspace) = (
        feed.repo.clone(),
        paths::mirror(&config.data_dir, &feed.name),
        paths::workspace(&config.data_dir, &feed.name),
    );
    let (git_ref, expected, log) = (
        build.git_ref.clone(),
        build.triggers.newest_commit().map(str::to_owned),
        log.to_owned(),
    );
    let flag = stop.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<git::ResolvedCommit, String> {
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
    let commit = match result {
        Ok(Ok(commit)) => commit,
        Ok(Err(_)) if cancel.is_cancelled() => return Err(BuildStatus::Cancelled),
        Ok(Err(reason)) => return Err(error(&reason)),
        Err(_) => return Err(error("the fetch task failed")),
    };
    let (store, id, sha, subject) = (
        app.store.clone(),
        build.id,
        commit.id.clone(),
        crate::build::truncate_marked(commit.subject.clone(), crate::build::MAX_SUBJECT_BYTES),
    );
    let saved = tokio::task::spawn_blocking(move || {
        store.update_build(id, |b| {
            b.commit = Some(sha.clone());
            b.subject = Some(subject.clone());
        })
    })
    .await;
    if !matches!(saved, Ok(Ok(_))) {
        tracing::warn!(build = build.id.0, "cannot record the resolved commit");
    }
    Ok(Resolved { id: commit.id })
}

/// Checks a feed's repository as its builds will reach it, with the credentials the
/// config gives that feed name: a local path must be a git repository, and with
/// `list_remote` a network remote must answer. Returns the refs the remote listed,
/// if it was asked. Blocks (git2, files): call it on the blocking pool.
pub fn check_repo(
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
async fn job(
    config: &Config,
    feed: &Feed,
    build: &Build,
    commit: &Resolved,
    log: &Path,
) -> std::io::Result<exec::Job> {
    let workspace = paths::workspace(&config.data_dir, &feed.name);
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        (
            "HOME".into(),
            std::env::var("HOME").unwrap_or_else(|_| workspace.display().to_string()),
        ),
        (
            "LANG".into(),
            std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into()),
        ),
    ];
    env.extend(config.build_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let provider = build
        .triggers
        .latest
        .last()
        .map(|t| t.provider.clone())
        .unwrap_or_default();
    env.extend([
        ("HOOKD_FEED".into(), feed.name.to_string()),
        ("HOOKD_COMMIT".into(), commit.id.clone()),
        ("HOOKD_REF".into(), build.git_ref.clone()),
        ("HOOKD_BRANCH".into(), build.branch.clone()),
        ("HOOKD_REPO_URL".into(), git::redact_url(&feed.repo)),
        ("HOOKD_TRIGGER".into(), build.kind.word().into()),
        ("HOOKD_PROVIDER".into(), provider),
    ]);
    env.extend(leftovers::Marker::env(build.id.0, &config.data_dir));
    Ok(exec::Job {
        command: feed.command.clone(),
        workdir: workspace,
        env,
        timeout: Duration::from_secs(feed.timeout_secs),
        kill_grace: config.kill_grace,
        log: log::LogWriter::open(log, config.log_max_bytes).await?,
        marker: Some(leftovers::Marker::new(build.id.0, &config.data_dir)),
    })
}

/// Persists the build's process group as soon as it exists, for crash recovery.
fn record_pgid(app: &App, id: BuildId, rx: tokio::sync::oneshot::Receiver<u32>) {
    let store = app.store.clone();
    tokio::spawn(async move {
        let Ok(pgid) = rx.await else { return };
        let saved = tokio::task::spawn_blocking(move || {
            // A build that already ended (a fast command) has no group left to record.
            store.update_build(id, |b| {
                if b.status == BuildStatus::Running {
                    b.pgid = i32::try_from(pgid).ok();
                }
            })?;
            store.durable_blocking()
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!(build = id.0, "cannot record the build's process group");
        }
    });
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
