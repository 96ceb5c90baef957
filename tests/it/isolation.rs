//! What a build cannot reach or leave behind: the daemon's descriptors (hook socket,
//! store, admin socket) and processes that outlive the build.

use crate::support::{wait_for, GitRepo, Launch, TestDaemon};

/// The descriptors a build's shell holds, as `ls /proc/$$/fd` lists them (`; true`
/// keeps the shell from exec'ing `ls`, whose own directory descriptor would show).
const LIST_FDS: &str = "ls /proc/$$/fd; true";

/// Runs one build of `LIST_FDS` and returns the descriptors it saw.
fn descriptors_of_a_build(d: &TestDaemon) -> Vec<String> {
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed("fds", &repo, LIST_FDS, &["--cooldown", "0"]);
    let reply = d.post(&hook, &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["build"].as_u64().unwrap();
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded", "{}", d.log(id));
    d.log(id)
        .lines()
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_build_holds_only_stdin_stdout_and_stderr() {
    let how = Launch {
        leaked_fd: true,
        ..Launch::default()
    };
    let d = TestDaemon::start_launched("", &[], how);
    assert_eq!(descriptors_of_a_build(&d), ["0", "1", "2"]);
}

#[test]
fn a_socket_activated_build_cannot_reach_the_hook_socket() {
    if std::process::Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-socket-activate is not installed (Debian package systemd)");
        return;
    }
    let how = Launch {
        socket_activated: true,
        ..Launch::default()
    };
    let d = TestDaemon::start_launched("", &[], how);
    assert!(d.logs().contains("listening socket passed by systemd"));
    assert_eq!(descriptors_of_a_build(&d), ["0", "1", "2"]);
}

/// Three processes a build starts to outlive it, each running `sleep` with a random
/// marker in its argv (so parallel tests never see each other's): one in the
/// background of the build's group, one `setsid` out of it, one `setsid` and double
/// forked. Whatever a test leaves alive is killed when this is dropped.
struct Escapees {
    marker: String,
    /// The escapees' pids, one a line, written by the build.
    started: std::path::PathBuf,
}

impl Escapees {
    fn new(dir: &std::path::Path) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Escapees {
            marker: format!("{}{nanos:09}", std::process::id()),
            started: dir.join("escapees"),
        }
    }

    /// Shell that starts the three and returns once all three run `sleep`.
    fn script(&self) -> String {
        let (m, started) = (&self.marker, self.started.display());
        format!(
            "sleep 3011.{m} & echo $! >> '{started}'; \
             setsid sleep 3012.{m} & echo $! >> '{started}'; \
             setsid sh -c \"sleep 3013.{m} & echo \\$! >> '{started}'\" & \
             until [ \"$(cat '{started}' 2>/dev/null | wc -l)\" -ge 3 ]; do sleep 0.01; done; \
             for p in $(cat '{started}'); do until grep -qa '{m}' /proc/$p/cmdline; do sleep 0.01; done; done"
        )
    }

    /// Live (not zombie) escapees: `sleep` with the marker in its argument (the build's
    /// shell has the marker in its script too, and is not one).
    fn alive(&self) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let argv: Vec<String> = cmdline
                    .split(|&b| b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                argv.first().is_some_and(|a| a.ends_with("sleep"))
                    && argv.get(1).is_some_and(|a| a.ends_with(&self.marker))
                    && !zombie(*pid)
            })
            .collect()
    }

    /// Waits until all three run.
    fn wait_running(&self) {
        wait_for(30, "the escapees to run", || {
            (self.alive().len() == 3).then_some(())
        });
    }

    /// Waits until none is left.
    fn wait_gone(&self, after: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.alive().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "processes of the build still run after {after}: {:?}",
                self.alive()
            );
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
}

impl Drop for Escapees {
    fn drop(&mut self) {
        for pid in self.alive() {
            // SAFETY: plain kill(2) of a process this test started (its marker is unique).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
}

/// Children of `pid` that exited and were never reaped.
fn zombie_children(pid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str())
        })
        .collect()
}

/// A daemon with feed `esc` running `script` (timeout `timeout` seconds); returns
/// the daemon and the feed's hook path.
fn escape_feed(config: &str, script: &str, timeout: &str) -> (TestDaemon, String) {
    let d = TestDaemon::start_with(config);
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed(
        "esc",
        &repo,
        script,
        &["--cooldown", "0", "--timeout", timeout],
    );
    (d, hook)
}

fn trigger(d: &TestDaemon, hook: &str) -> u64 {
    let reply = d.post(hook, &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.json()["build"].as_u64().unwrap()
}

#[test]
fn nothing_a_build_started_outlives_its_normal_end() {
    let dir = tempfile::tempdir().unwrap();
    let esc = Escapees::new(dir.path());
    let (d, hook) = escape_feed("", &esc.script(), "600");
    let id = trigger(&d, &hook);
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded", "{}", d.log(id));
    esc.wait_gone("the build succeeded");
    let log = d.log(id);
    assert!(log.contains("processes that outlived the command"), "{log}");
    // The double-forked one was adopted by hookd (a subreaper) and must be reaped.
    wait_for(20, "adopted processes reaped", || {
        zombie_children(d.pid()).is_empty().then_some(())
    });
    // The daemon's own line about them says which build they were (the sweep runs
    // on the blocking pool, inside the build's span).
    let line = wait_for(20, "the daemon's line about the leftovers", || {
        d.logs()
            .lines()
            .find(|l| l.contains("killed processes that outlived their build"))
            .map(str::to_owned)
    });
    let span = format!("build{{feed=esc build={id}}}");
    assert!(line.contains(&span), "no {span} in: {line}");
}

#[test]
fn nothing_a_build_started_outlives_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let esc = Escapees::new(dir.path());
    let (d, hook) = escape_feed("", &format!("{}; sleep 1000", esc.script()), "2");
    let id = trigger(&d, &hook);
    esc.wait_running();
    assert_eq!(d.wait_build(id, 60)["status"], "timed_out");
    esc.wait_gone("the timeout");
}

#[test]
fn nothing_a_build_started_outlives_its_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let esc = Escapees::new(dir.path());
    let (d, hook) = escape_feed("", &format!("{}; sleep 1000", esc.script()), "600");
    let id = trigger(&d, &hook);
    esc.wait_running();
    d.admin_ok(&["cancel", &id.to_string()]);
    assert_eq!(d.wait_build(id, 60)["status"], "cancelled");
    esc.wait_gone("the cancel");
}

#[test]
fn nothing_a_build_started_outlives_a_sigterm_of_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let esc = Escapees::new(dir.path());
    let config = "[builds]\nshutdown_grace_secs = 1\nkill_grace_secs = 1\n";
    let (mut d, hook) = escape_feed(config, &format!("{}; sleep 1000", esc.script()), "600");
    trigger(&d, &hook);
    esc.wait_running();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(30), Some(0), "{}", d.logs());
    esc.wait_gone("the daemon stopped");
}

#[test]
fn nothing_a_build_started_outlives_a_crash_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let esc = Escapees::new(dir.path());
    // The retry after the restart must not start escapees of its own.
    let script = format!(
        "[ \"$HOOKD_TRIGGER\" = retry ] && exit 0; {}; sleep 1000",
        esc.script()
    );
    let (mut d, hook) = escape_feed("", &script, "600");
    let id = trigger(&d, &hook);
    esc.wait_running();
    wait_for(30, "the build's process group recorded", || {
        d.build(id)["pgid"].is_i64().then_some(())
    });
    d.kill9();
    assert_eq!(
        esc.alive().len(),
        3,
        "the build outlives a kill -9 of the daemon"
    );
    d.restart();
    esc.wait_gone("recovery");
    assert_eq!(d.build(id)["status"], "interrupted");
}
