//! TEMP
use std::path::PathBuf;
use std::time::Duration;
pub enum BuildCommand {
    Argv(Vec<String>),
    Shell(String),
}
pub struct Job {
    pub command: BuildCommand,
    pub workdir: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub log: crate::runner::log::LogWriter,
}
pub enum Outcome {
    Exited(i32),
    Signalled(i32),
    TimedOut,
    Cancelled,
    SpawnFailed(String),
}
pub async fn run(
    job: Job,
    cancel: tokio_util::sync::CancellationToken,
    on_spawn: impl FnOnce(u32),
) -> Outcome {
    let mut cmd = match &job.command {
        BuildCommand::Shell(s) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(s);
            c
        }
        BuildCommand::Argv(w) => {
            let mut c = tokio::process::Command::new(&w[0]);
            c.args(&w[1..]);
            c
        }
    };
    cmd.env_clear()
        .envs(job.env.clone())
        .current_dir(&job.workdir)
        .process_group(0)
        .stdin(std::process::Stdio::null());
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&job.log.0)
        .unwrap();
    cmd.stdout(f.try_clone().unwrap()).stderr(f);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::SpawnFailed(e.to_string()),
    };
    on_spawn(child.id().unwrap_or(0));
    tokio::select! { s = child.wait() => match s.unwrap().code() { Some(c) => Outcome::Exited(c), None => Outcome::Signalled(9) }, _ = cancel.cancelled() => { let _ = child.kill().await; Outcome::Cancelled }, _ = tokio::time::sleep(job.timeout) => { let _ = child.kill().await; Outcome::TimedOut } }
}
pub fn reap_orphans(_pgid: i32, _m: (&str, &str)) -> usize {
    0
}
