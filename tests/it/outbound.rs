//! Commit statuses through the outbox: real builds of a real repository, posted to a
//! local server that accepts exactly each forge's documented request.

use std::path::{Path, PathBuf};

use crate::support::forge::{ForgeKind, ForgeServer, Received, Verdict};
use crate::support::{wait_for, GitRepo, TestDaemon};

/// The token every test forge expects; it must never show up anywhere else.
const TOKEN: &str = "tok-3c1d9e0b7a52f4e8";

/// A build command that waits for `gate` to exist, then exits with `code`: the test
/// sees the `running` post arrive before the build may end (otherwise the final post
/// could replace it before it was sent).
fn gated(gate: &Path, code: i32) -> String {
    format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; exit {code}",
        gate.display()
    )
}

/// A token file (0600) in the daemon's temp dir.
fn token_file(d: &TestDaemon) -> PathBuf {
    let path = d.dir.path().join("forge.token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A daemon with `[feeds.web.status]` pointing at `forge`, and a feed `web` (made
/// with `feed add`) building a fresh repository; `extra` goes on top of the config.
fn daemon_with(forge: &ForgeServer, extra: &str) -> (TestDaemon, GitRepo) {
    let mut d = TestDaemon::start();
    let token = token_file(&d);
    let config = format!("{extra}\n{}", forge.status_table("web", &token));
    d.set_config(&config);
    d.restart();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    (d, repo)
}

/// Runs one build gated on `gate-TAG`; returns its id, its commit and the posts the
/// forge accepted for it (running first, then the final one).
fn build_through(
    d: &TestDaemon,
    forge: &ForgeServer,
    repo: &GitRepo,
    tag: &str,
) -> (u64, String, Vec<Received>) {
    let gate = d.dir.path().join(format!("gate-{tag}"));
    let commit = repo.commit("file", tag, tag);
    let id = d.admin_json(&["trigger", "web", "--force"])["build"]
        .as_u64()
        .unwrap();
    let for_commit = |r: &Received| r.commit().as_deref() == Some(commit.as_str());
    forge.wait_until(60, "the running post", |got| {
        got.iter()
            .any(|r| for_commit(r) && r.verdict == Verdict::Accepted)
    });
    std::fs::write(&gate, "").unwrap();
    d.wait_build(id, 60);
    forge.wait_until(60, "the final post", |got| {
        got.iter()
            .filter(|r| for_commit(r) && r.verdict == Verdict::Accepted)
            .count()
            == 2
    });
    let posts = forge
        .accepted()
        .into_iter()
        .filter(for_commit)
        .collect::<Vec<_>>();
    (id, commit, posts)
}

fn add_web_feed(d: &TestDaemon, repo: &GitRepo, command: &str) {
    d.add_repo_feed("web", repo, command, &["--cooldown", "0"]);
}

#[test]
fn github_gets_pending_then_success_or_failure_on_the_resolved_commit() {
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    let (d, repo) = daemon_with(&forge, "public_url = \"https://ci.example.com\"");
    let gate = d.dir.path().join("gate-ok");
    let fail_gate = d.dir.path().join("gate-bad");
    // The command reads which gate and exit code from a file the test writes.
    let script = d.dir.path().join("build.sh");
    std::fs::write(&script, "sh -c \"$(cat \"$0.cmd\")\"\n").unwrap();
    add_web_feed(&d, &repo, &format!("sh {}", script.display()));

    std::fs::write(d.dir.path().join("build.sh.cmd"), gated(&gate, 0)).unwrap();
    let (id, commit, posts) = build_through(&d, &forge, &repo, "ok");
    let states: Vec<_> = posts.iter().map(Received::state).collect();
    assert_eq!(states, ["pending", "success"], "{posts:#?}");
    let last = posts[1].json();
    assert_eq!(last["context"], "hookd/web");
    assert_eq!(
        last["target_url"],
        format!("https://ci.example.com/builds/{id}")
    );
    assert!(
        last["description"]
            .as_str()
            .unwrap()
            .starts_with("succeeded in "),
        "{last}"
    );
    assert_eq!(d.build(id)["commit"], commit.as_str());

    std::fs::write(d.dir.path().join("build.sh.cmd"), gated(&fail_gate, 2)).unwrap();
    let (_, _, posts) = build_through(&d, &forge, &repo, "bad");
    let states: Vec<_> = posts.iter().map(Received::state).collect();
    assert_eq!(states, ["pending", "failure"], "{posts:#?}");
    let description = posts[1].json()["description"].as_str().unwrap().to_owned();
    assert!(
        description.starts_with("failed (exit 2) in "),
        "{description}"
    );
    assert!(forge.rejected().is_empty(), "{:#?}", forge.rejected());
    wait_for(30, "the outbox to empty", || {
        let items = d.admin_json(&["outbox"]);
        items.as_array().unwrap().is_empty().then_some(())
    });
}
