//! An `exec` target: the command runs with the build's `HOOKD_*` variables, the
//! notification's JSON on stdin, in its own process group (killed whole on timeout
//! and once the command exits, as a build's is), with nothing from the payload on
//! its command line. Its output is kept only to explain a failure.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::config::ExecTarget;
use crate::process::{killpg, Leader};

/// Most output bytes kept to explain a failure (the end of it).
const OUTPUT_KEPT: usize = 1024;

/// How long output is still read after the command exited and its group was killed.
const DRAIN_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExecError {
    /// It could not be started: retrying will not help until the config changes.
    #[error("cannot start the command: {0}")]
    Spawn(String),
    /// It exited non-zero or died of a signal; `output` is the end of what it printed.
    #[error("the command {how}{}", if output.is_empty() { String::new() } else { format!(": {output}") })]
    Failed {
        /// "exited 3", "was killed by signal 9".
        how: String,
        /// The end of its stdout and stderr.
        output: String,
    },
    /// It ran past its timeout and its process group was killed.
    #[error("the command timed out after {0}s; its process group was killed")]
    TimedOut(u64),
}

/// Runs the target's command in `workdir` with exactly `env`, `stdin` on its stdin.
pub(crate) async fn run(
    target: &ExecTarget,
    env: Vec<(String, String)>,
    workdir: &Path,
    stdin: Vec<u8>,
) -> Result<(), ExecError> {
    let Some((mut cmd, program)) =
        crate::process::child(&target.command, env, workdir, Stdio::piped())
    else {
        return Err(ExecError::Spawn("the command is empty".into()));
    };
    // Known to the reaper of adopted orphans, which must leave its status to tokio.
    let (mut child, _leader) =
        Leader::spawn(&mut cmd).map_err(|e| ExecError::Spawn(format!("{program}: {e}")))?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .unwrap_or(0);
    let input = child.stdin.take();
    tokio::spawn(async move {
        if let Some(mut pipe) = input {
            // A command that does not read its stdin is fine.
            let _ = pipe.write_all(&stdin).await;
        }
    });
    let out = tokio::spawn(tail(child.stdout.take()));
    let err = tokio::spawn(tail(child.stderr.take()));
    let waited = tokio::time::timeout(target.timeout, child.wait()).await;
    // Whatever it started goes with it, whether it ended or ran out of time.
    killpg(pgid, libc::SIGKILL);
    let status = match waited {
        Err(_) => {
            let _ = child.wait().await;
            return Err(ExecError::TimedOut(target.timeout.as_secs()));
        }
        Ok(Err(e)) => return Err(ExecError::Spawn(format!("cannot wait for {program}: {e}"))),
        Ok(Ok(status)) => status,
    };
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    for reader in [out, err] {
        if let Ok(Ok(text)) = tokio::time::timeout(DRAIN_AFTER_EXIT, reader).await {
            output.push_str(&text);
        }
    }
    let how = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "failed".to_owned(),
    };
    Err(ExecError::Failed {
        how,
        output: output.trim().to_owned(),
    })
}

/// Reads a pipe to its end, keeping the last [`OUTPUT_KEPT`] bytes as text.
async fn tail(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        let excess = kept.len().saturating_sub(OUTPUT_KEPT);
        kept.drain(..excess);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::feed::CommandSpec;

    fn target(script: &str, timeout_secs: u64) -> ExecTarget {
        ExecTarget {
            command: CommandSpec::Shell(script.into()),
            timeout: Duration::from_secs(timeout_secs),
        }
    }

    #[tokio::test]
    async fn the_command_gets_exactly_its_env_and_the_body_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let script = "env > env.txt; cat > stdin.txt";
        let env = vec![
            ("HOOKD_STATUS".into(), "failed".into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ];
        run(&target(script, 10), env, dir.path(), b"{\"a\":1}".to_vec())
            .await
            .unwrap();
        let env = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
        assert!(env.lines().any(|l| l == "HOOKD_STATUS=failed"), "{env}");
        assert!(!env.contains("CARGO"), "nothing of the parent's env: {env}");
        let stdin = std::fs::read_to_string(dir.path().join("stdin.txt")).unwrap();
        assert_eq!(stdin, "{\"a\":1}");
    }

    #[tokio::test]
    async fn a_failure_says_how_it_ended_with_the_end_of_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &target("echo no route >&2; exit 3", 10),
            vec![],
            dir.path(),
            vec![],
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "the command exited 3: no route");
        let err = run(
            &ExecTarget {
                command: CommandSpec::Argv(vec!["/nonexistent/notify".into()]),
                timeout: Duration::from_secs(1),
            },
            vec![],
            dir.path(),
            vec![],
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ExecError::Spawn(_)), "{err:?}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = "sleep 300 & echo $! > child.pid; wait";
        let err = run(&target(script, 1), vec![], dir.path(), vec![])
            .await
            .unwrap_err();
        assert_eq!(err, ExecError::TimedOut(1));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child is gone (or a zombie waiting for this test to reap it).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone =
                state.is_empty() || state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'));
            if gone {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{pid} still runs: {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
