//! What a build cannot reach or leave behind: the daemon's descriptors (hook socket,
//! store, admin socket) and processes that outlive the build.

use crate::support::{GitRepo, Launch, TestDaemon};

/// The descriptors a build's shell holds, as `ls /proc/$$/fd` lists them (`; true`
/// keeps the shell from exec'ing `ls`, whose own directory descriptor would show).
const LIST_FDS: &str = "ls /proc/$$/fd; true";

/// Runs one build of `LIST_FDS` and returns the descriptors it saw.
fn descriptors_of_a_build(d: &TestDaemon) -> Vec<String> {
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_feed(
        "fds",
        &[
            "--repo",
            &repo.url(),
            "--command",
            LIST_FDS,
            "--cooldown",
            "0",
        ],
    );
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
