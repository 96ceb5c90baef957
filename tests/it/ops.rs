//! Operating the daemon: signals (drain, reload), systemd readiness, metrics.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::support::{wait_for, GitRepo, TestDaemon};

#[test]
fn sigterm_drains_and_the_interrupted_build_reruns_after_restart() {
    let mut d = TestDaemon::start_with("[builds]\nshutdown_grace_secs = 1\nkill_grace_secs = 1\n");
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let (record, gate) = (d.dir.path().join("record"), d.dir.path().join("gate"));
    let cmd = format!(
        "echo \"$HOOKD_BUILD_ID $HOOKD_TRIGGER\" >> '{}'; while [ ! -e '{}' ]; do sleep 0.02; done",
        record.display(),
        gate.display()
    );
    let hook = d.add_repo_feed("drain", &repo, &cmd, &["--cooldown", "0"]);
    let id = d.post(&hook, &[], b"").json()["build"].as_u64().unwrap();
    wait_for(30, "build running", || {
        std::fs::read_to_string(&record)
            .ok()
            .filter(|s| !s.is_empty())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(
        d.wait_exit(20),
        Some(0),
        "clean exit after the grace:\n{}",
        d.logs()
    );
    d.restart();
    assert_eq!(d.build(id)["status"], "interrupted");
    std::fs::write(&gate, "").unwrap();
    let retry = wait_for(30, "retry build", || {
        d.admin_json(&["builds", "drain"])
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["retry_of"] == id)
            .cloned()
    });
    assert_eq!(
        d.wait_build(retry["id"].as_u64().unwrap(), 60)["status"],
        "succeeded"
    );
}

#[test]
fn sighup_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one() {
    let mut d = TestDaemon::start_with("[http]\nmax_body_bytes = 1000\n");
    let hook = d.add_unbuilt_feed("hup", &[]);
    d.admin_ok(&["feed", "pause", "hup"]);
    let body = vec![b' '; 500];
    assert_eq!(d.post(&hook, &[], &body).status, 202);

    d.set_config("[http]\nmax_body_bytes = 100\n");
    d.signal(libc::SIGHUP);
    wait_for(20, "reload", || {
        d.logs().contains("configuration reloaded").then_some(())
    });
    assert_eq!(d.post(&hook, &[], &body).status, 413);

    d.set_config("[http]\nmax_body_bytes = 100000\nnot_a_key = 1\n");
    d.signal(libc::SIGHUP);
    wait_for(20, "refused reload", || {
        d.logs().contains("reload refused").then_some(())
    });
    assert!(d.logs().contains("not_a_key"), "the reason names the key");
    assert_eq!(d.post(&hook, &[], &body).status, 413, "old config kept");
    assert_eq!(
        d.post(&hook, &[], b"").status,
        202,
        "queue and daemon unharmed"
    );
}

#[test]
fn ready_is_sent_to_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let d = TestDaemon::start_with_env("", &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).expect("a notification");
    let message = String::from_utf8_lossy(&buf[..n]);
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");
    drop(d);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(' ').next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_parse_as_prometheus_text_and_move() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed("m", &repo, "true", &["--cooldown", "0"]);
    let scrape = || crate::support::http(d.addr, "GET", "/metrics", &[], b"").body;
    let before = scrape();
    for line in before.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        assert!(name.starts_with("hookd_"), "{line}");
    }
    let id = d.post(&hook, &[], b"").json()["build"].as_u64().unwrap();
    d.wait_build(id, 60);
    d.post(
        &hook,
        &[
            ("X-GitHub-Event", "ping"),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    );
    let after = wait_for(30, "build counted", || {
        let text = scrape();
        (metric(&text, "hookd_builds_total{status=\"succeeded\"}") == 1.0).then_some(text)
    });
    assert_eq!(
        metric(
            &after,
            "hookd_deliveries_total{provider=\"generic\",outcome=\"queued\"}"
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "hookd_deliveries_total{provider=\"github\",outcome=\"pong\"}"
        ),
        1.0,
        "{after}"
    );
    assert_eq!(metric(&after, "hookd_build_duration_seconds_count"), 1.0);
    assert_eq!(metric(&after, "hookd_up"), 1.0);
}

#[test]
fn export_then_import_into_an_empty_daemon_keeps_feeds_and_hook_urls() {
    let a = TestDaemon::start();
    let secret = a.dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let hook = a.add_feed(
        "web",
        &[
            "--repo",
            "https://forge.invalid/web.git",
            "--command",
            "make test",
            "--cooldown",
            "7",
            "--secret-file",
            secret.to_str().unwrap(),
        ],
    );
    a.add_unbuilt_feed("api", &[]);
    let extra = a.admin_json(&["token", "add", "web", "--label", "gitlab"]);
    let revoked_id = extra[0]["id"].as_str().unwrap().to_owned();
    a.admin_ok(&["token", "revoke", "web", &revoked_id]);
    let backup = a.dir.path().join("backup.json");
    a.admin_ok(&["export", "--output", backup.to_str().unwrap()]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&backup).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a backup holds secrets");

    let b = TestDaemon::start();
    b.admin_ok(&["import", backup.to_str().unwrap()]);
    let feeds = b.admin_json(&["feed", "list"]);
    assert_eq!(feeds.as_array().unwrap().len(), 2);
    let web = b.admin_json(&["feed", "show", "web"]);
    assert_eq!(
        (web["cooldown_secs"].as_u64(), web["has_secret"].as_bool()),
        (Some(7), Some(true))
    );
    let urls = b.admin_json(&["hook-url", "web"]);
    assert_eq!(
        urls.as_array().unwrap().len(),
        1,
        "the revoked token stays revoked"
    );
    assert_eq!(
        crate::support::hook_path(urls[0]["url"].as_str().unwrap()),
        hook,
        "same hook URL"
    );
    // The restored URL works and the restored secret is enforced.
    b.admin_ok(&["feed", "pause", "web"]);
    assert_eq!(b.post(&hook, &[], b"").status, 401);
    let auth = [("Authorization", "Bearer s3cret")];
    assert_eq!(b.post(&hook, &auth, b"").status, 202);
    // Import refuses a daemon that already has feeds.
    let (_, err) = b.admin_err(&["import", backup.to_str().unwrap()]);
    assert!(err.contains("without feeds"), "{err}");
}

#[test]
fn socket_activation_uses_the_listener_systemd_passes() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let data = dir.path().join("data");
    let mut cmd = std::process::Command::new("sh");
    // `exec` keeps sh's pid, so $$ is the daemon's pid, as systemd sets it.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" serve --data-dir \"$1\"")
        .arg(crate::support::BIN)
        .arg(&data)
        .stderr(std::process::Stdio::null());
    // SAFETY: dup2 and fcntl are async-signal-safe; they run in the child between fork
    // and exec. When the listener already is fd 3, dup2 is a no-op that would leave
    // close-on-exec set, so the flag is cleared explicitly.
    unsafe {
        cmd.pre_exec(move || {
            if (fd != 3 && libc::dup2(fd, 3) == -1) || libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let socket = data.join("admin.sock");
    let status = wait_for(30, "daemon ready", || {
        let out = std::process::Command::new(crate::support::BIN)
            .args(["admin", "--json", "--socket"])
            .arg(&socket)
            .arg("status")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
    });
    assert_eq!(status["listen"].as_str(), Some(addr.to_string().as_str()));
    assert_eq!(
        crate::support::http(addr, "GET", "/healthz", &[], b"").status,
        200
    );
    let _ = child.kill();
    let _ = child.wait();
}
