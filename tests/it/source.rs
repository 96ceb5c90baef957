//! Source code for builds, end to end: real `git push`es into a bare repository
//! whose post-receive hook calls the hook URL, served as a path and by `git-daemon`
//! on 127.0.0.1; what the build's command then finds in its workspace; and how
//! fetch failures end a build without stopping the next one.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{closed_port, wait_for, GitDaemon, GitRepo, TestDaemon};

const ZERO_ID: &str = "0000000000000000000000000000000000000000";

/// A bare repository with a post-receive hook that posts one generic trigger per
/// pushed branch to the hook URL (deletions are not built) and appends the
/// daemon's reply to `replies`; and a working repository that pushes to it.
struct PushedRepo {
    work: GitRepo,
    replies: PathBuf,
}

/// An empty bare repository at `path`: `feed add` checks that a local one exists
/// (`PushedRepo::new` re-initialises it harmlessly).
fn init_bare(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    GitRepo {
        path: path.to_owned(),
    }
    .git(&["init", "-q", "--bare", "-b", "main"]);
}

impl PushedRepo {
    /// Everything lives in `root/NAME.git`, `root/NAME-work`, `root/NAME-replies`.
    fn new(root: &Path, name: &str, hook_url: &str) -> Self {
        let bare = root.join(format!("{name}.git"));
        init_bare(&bare);
        let replies = root.join(format!("{name}-replies"));
        let hook = bare.join("hooks").join("post-receive");
        std::fs::write(&hook, post_receive(hook_url, &replies)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let work = GitRepo::new(root.join(format!("{name}-work")));
        work.git(&["remote", "add", "origin", bare.to_str().unwrap()]);
        PushedRepo { work, replies }
    }

    /// Commits `pushed.txt` with `content` on the current branch; returns the id.
    fn commit(&self, content: &str) -> String {
        self.work.commit("pushed.txt", content, content)
    }

    /// `git push ARGS…`; returns the build the hook's last reply names.
    fn push(&self, args: &[&str]) -> u64 {
        let before = self.replies().len();
        let mut all = vec!["push", "-q", "origin"];
        all.extend_from_slice(args);
        self.work.git(&all);
        let replies = self.replies();
        assert!(
            replies.len() > before,
            "the post-receive hook did not post (replies: {replies:?})"
        );
        let reply: serde_json::Value = serde_json::from_str(replies.last().unwrap())
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {replies:?}"));
        assert!(
            matches!(reply["status"].as_str(), Some("queued" | "coalesced")),
            "{reply}"
        );
        reply["build"].as_u64().expect("build id")
    }

    /// The daemon's replies so far, one JSON document each.
    fn replies(&self) -> Vec<String> {
        std::fs::read_to_string(&self.replies)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The hook script: `curl` where it exists, else python3's standard library.
fn post_receive(hook_url: &str, replies: &Path) -> String {
    let has_curl = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let post = if has_curl {
        r#"curl -sS -X POST "$url""#
    } else {
        r#"python3 -c 'import sys, urllib.request as u; sys.stdout.write(u.urlopen(u.Request(sys.argv[1], method="POST")).read().decode())' "$url""#
    };
    format!(
        r#"#!/bin/sh
# One generic trigger per pushed branch; a deleted branch is not built.
while read old new ref; do
  case "$ref" in refs/heads/*) ;; *) continue ;; esac
  if [ "$new" = {ZERO_ID} ]; then continue; fi
  url='{hook_url}?branch='"${{ref#refs/heads/}}"
  {{ {post}; echo; }} >> '{replies}'
done
"#,
        replies = replies.display()
    )
}

/// A build command (for `/bin/sh -c`) that writes `HOOKD_COMMIT` and then the
/// workspace's `pushed.txt` to `DIR/evidence-BUILD_ID`.
fn evidence_command(dir: &Path) -> String {
    format!(
        "{{ echo \"$HOOKD_COMMIT\"; cat pushed.txt; }} > '{}/evidence-'\"$HOOKD_BUILD_ID\"",
        dir.display()
    )
}

/// What [`evidence_command`] recorded for build `id`: (commit, pushed.txt).
fn evidence(dir: &Path, id: u64) -> (String, String) {
    let text = std::fs::read_to_string(dir.join(format!("evidence-{id}")))
        .unwrap_or_else(|e| panic!("build {id} left no evidence: {e}"));
    let (commit, file) = text.split_once('\n').unwrap_or((&text, ""));
    (commit.to_owned(), file.trim_end().to_owned())
}

fn full_hook_url(d: &TestDaemon, hook: &str) -> String {
    format!("http://{}{hook}", d.addr)
}

/// Waits for build `id` and asserts that it succeeded, showing its log if not.
fn assert_succeeds(d: &TestDaemon, id: u64) {
    let build = d.wait_build(id, 60);
    assert_eq!(
        build["status"],
        "succeeded",
        "build {id}: {build}\nlog:\n{}",
        d.log(id)
    );
}

/// Adds feed `name` for `url` that watches every branch and records evidence in
/// the daemon's temp dir; returns the full hook URL.
fn evidence_feed(d: &TestDaemon, name: &str, url: &str) -> String {
    let cmd = evidence_command(d.dir.path());
    let hook = d.add_feed(
        name,
        &[
            "--repo",
            url,
            "--command",
            &cmd,
            "--cooldown",
            "0",
            "--branch",
            "*",
        ],
    );
    full_hook_url(d, &hook)
}

#[test]
fn a_real_push_builds_the_pushed_commit_with_the_pushed_file() {
    let d = TestDaemon::start();
    // The hook URL is known only once the feed exists, and the feed names the
    // repository: the bare repository's path is fixed first.
    let root = d.dir.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    let url = root.join("app.git").display().to_string();
    init_bare(&root.join("app.git"));
    let hook = evidence_feed(&d, "app", &url);
    let repo = PushedRepo::new(&root, "app", &hook);

    let first = repo.commit("one");
    let id = repo.push(&["main"]);
    assert_succeeds(&d, id);
    assert_eq!(evidence(d.dir.path(), id), (first.clone(), "one".into()));
    assert_eq!(d.build(id)["commit"], first.as_str());

    let second = repo.commit("two");
    let id = repo.push(&["main"]);
    assert_succeeds(&d, id);
    assert_eq!(evidence(d.dir.path(), id), (second, "two".into()));
}

#[test]
fn files_left_by_a_build_are_gone_in_the_next() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    repo.commit(".gitignore", "*.log\nbuild/\n", "ignore build output");
    let dir = d.dir.path().display().to_string();
    // Records what it finds of the files a build leaves, and README as it is,
    // then leaves them: untracked, ignored (file and directory), and an edit.
    let cmd = format!(
        "for f in untracked.txt out.log build/obj.o nested/.git; do \
           if [ -e \"$f\" ]; then echo \"left: $f\"; fi; \
         done > '{dir}/seen-'\"$HOOKD_BUILD_ID\"; \
         cat README >> '{dir}/seen-'\"$HOOKD_BUILD_ID\"; \
         echo x > untracked.txt; echo x > out.log; mkdir -p build nested/.git; \
         echo x > build/obj.o; echo changed > README"
    );
    let hook = d.add_repo_feed("clean", &repo, &cmd, &["--cooldown", "0"]);
    let seen = |id: u64| std::fs::read_to_string(d.dir.path().join(format!("seen-{id}"))).unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let reply = d.post(&hook, &[], b"");
        assert_eq!(reply.status, 202, "{}", reply.body);
        let id = reply.json()["build"].as_u64().unwrap();
        assert_succeeds(&d, id);
        ids.push(id);
    }
    let workspace = d.data_dir().join("workspaces").join("clean");
    assert!(
        workspace.join("untracked.txt").exists(),
        "the test must look at the workspace the builds used"
    );
    assert_eq!(seen(ids[0]), "hello\n");
    assert_eq!(seen(ids[1]), "hello\n", "build {} saw leftovers", ids[1]);
}

/// Force-push and branch re-creation, against the same bare repository reached
/// as `url`.
fn rewritten_history_builds(d: &TestDaemon, root: &Path, url: &str) {
    let hook = evidence_feed(d, "rewrite", url);
    let repo = PushedRepo::new(root, "rewrite", &hook);
    let dir = d.dir.path();

    let base = repo.commit("base");
    let id = repo.push(&["main"]);
    assert_succeeds(d, id);
    assert_eq!(evidence(dir, id).0, base);
    repo.commit("doomed");
    let id = repo.push(&["main"]);
    assert_succeeds(d, id);

    // History rewritten: the old tip is no longer an ancestor.
    repo.work.git(&["reset", "-q", "--hard", &base]);
    let rewritten = repo.commit("rewritten");
    let id = repo.push(&["--force", "main"]);
    assert_succeeds(d, id);
    assert_eq!(evidence(dir, id), (rewritten, "rewritten".into()));

    // A branch built, deleted, then re-created elsewhere in history.
    repo.work.git(&["checkout", "-q", "-b", "topic"]);
    let topic = repo.commit("topic one");
    let id = repo.push(&["topic"]);
    assert_succeeds(d, id);
    assert_eq!(evidence(dir, id), (topic, "topic one".into()));
    repo.work.git(&["push", "-q", "origin", ":topic"]);
    repo.work.git(&["checkout", "-q", "main"]);
    repo.work.git(&["branch", "-q", "-D", "topic"]);
    repo.work.git(&["checkout", "-q", "--orphan", "topic"]);
    let recreated = repo.commit("topic two");
    let id = repo.push(&["topic"]);
    assert_succeeds(d, id);
    assert_eq!(evidence(dir, id), (recreated, "topic two".into()));
}

#[test]
fn force_push_and_recreated_branch_build_from_a_local_path() {
    let d = TestDaemon::start();
    let root = d.dir.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    let url = root.join("rewrite.git").display().to_string();
    init_bare(&root.join("rewrite.git"));
    rewritten_history_builds(&d, &root, &url);
}

#[test]
fn force_push_and_recreated_branch_build_over_git_daemon() {
    let d = TestDaemon::start();
    let root = d.dir.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    let server = GitDaemon::serve(&root);
    rewritten_history_builds(&d, &root, &server.url("rewrite.git"));
}

#[test]
fn a_real_push_builds_over_git_daemon() {
    let d = TestDaemon::start();
    let root = d.dir.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    let server = GitDaemon::serve(&root);
    let url = server.url("served.git");
    let hook = evidence_feed(&d, "served", &url);
    let repo = PushedRepo::new(&root, "served", &hook);

    let first = repo.commit("over the wire");
    let id = repo.push(&["main"]);
    assert_succeeds(&d, id);
    assert_eq!(evidence(d.dir.path(), id), (first, "over the wire".into()));
    assert!(d.log(id).contains("fetched"), "{}", d.log(id));

    // The second fetch is incremental and still lands on the new commit.
    let second = repo.commit("again");
    let id = repo.push(&["main"]);
    assert_succeeds(&d, id);
    assert_eq!(evidence(d.dir.path(), id), (second, "again".into()));
    assert_eq!(d.build(id)["subject"], "again");
}

#[test]
fn submodules_are_checked_out_at_the_recorded_commit() {
    let d = TestDaemon::start();
    let lib = GitRepo::new(d.dir.path().join("lib"));
    lib.commit("lib.txt", "lib v1\n", "lib v1");
    let app = GitRepo::new(d.dir.path().join("app"));
    app.git(&["submodule", "add", "-q", &lib.url(), "vendor/lib"]);
    app.git(&["commit", "-q", "-m", "add lib"]);
    let out = d.dir.path().join("sub");
    let cmd = format!(
        "cat vendor/lib/lib.txt > '{}-'\"$HOOKD_BUILD_ID\"",
        out.display()
    );
    let hook = d.add_repo_feed("super", &app, &cmd, &["--cooldown", "0"]);
    let seen = |id: u64| {
        std::fs::read_to_string(format!("{}-{id}", out.display()))
            .unwrap_or_else(|e| panic!("build {id} did not read the submodule: {e}"))
    };
    let build = |d: &TestDaemon| {
        let reply = d.post(&hook, &[], b"");
        assert_eq!(reply.status, 202, "{}", reply.body);
        let id = reply.json()["build"].as_u64().unwrap();
        assert_succeeds(d, id);
        id
    };
    assert_eq!(seen(build(&d)), "lib v1\n");

    // The library moves on, but the superproject still records v1 until it is bumped.
    lib.commit("lib.txt", "lib v2\n", "lib v2");
    assert_eq!(seen(build(&d)), "lib v1\n");
    let sub = GitRepo {
        path: app.path.join("vendor/lib"),
    };
    sub.git(&["pull", "-q", "origin", "main"]);
    app.git(&["commit", "-q", "-am", "bump lib"]);
    assert_eq!(seen(build(&d)), "lib v2\n");
}

/// Asserts that build `id` ended as `error` with a reason containing every one of
/// `words`, and that the log says the same.
fn assert_source_error(d: &TestDaemon, id: u64, words: &[&str]) {
    let build = d.wait_build(id, 60);
    assert_eq!(build["status"], "error", "{build}");
    let reason = build["reason"].as_str().expect("a reason").to_owned();
    let log = d.log(id);
    for word in words {
        assert!(reason.contains(word), "{word:?} not in reason {reason:?}");
        assert!(log.contains(word), "{word:?} not in log:\n{log}");
    }
}

#[test]
fn an_unreachable_remote_ends_the_build_as_error_and_the_next_build_runs() {
    let d = TestDaemon::start();
    let dead = format!("git://127.0.0.1:{}/gone.git", closed_port());
    let hook = d.add_feed(
        "dead",
        &["--repo", &dead, "--command", "true", "--cooldown", "0"],
    );
    let reply = d.post(&hook, &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["build"].as_u64().unwrap();
    assert_source_error(&d, id, &["cannot reach the remote", &dead]);

    // The worker is free and the feed is fine once its remote is.
    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.admin_ok(&["feed", "edit", "dead", "--repo", &repo.url()]);
    let reply = d.post(&hook, &[], b"");
    let id = reply.json()["build"].as_u64().unwrap();
    assert_succeeds(&d, id);
}

#[test]
fn a_missing_branch_ends_the_build_as_error_and_the_next_build_runs() {
    let d = TestDaemon::start();
    let root = d.dir.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    let server = GitDaemon::serve(&root);
    let repo = GitRepo::new(root.join("repo"));
    // Once over the network, once from the path: both say which branch is missing.
    for (feed, url) in [("net", server.url("repo")), ("path", repo.url())] {
        let hook = d.add_feed(
            feed,
            &[
                "--repo",
                &url,
                "--command",
                "true",
                "--cooldown",
                "0",
                "--branch",
                "*",
            ],
        );
        let reply = d.post(&format!("{hook}?branch=nope"), &[], b"");
        assert_eq!(reply.status, 202, "{}", reply.body);
        let id = reply.json()["build"].as_u64().unwrap();
        assert_source_error(&d, id, &["branch 'nope' not found"]);

        let reply = d.post(&format!("{hook}?branch=main"), &[], b"");
        let id = reply.json()["build"].as_u64().unwrap();
        assert_succeeds(&d, id);
        assert_eq!(d.build(id)["commit"], repo.head().as_str());
    }
    wait_for(30, "nothing left queued", || {
        let queue = d.admin_json(&["queue"]);
        (queue["queued"].as_array().is_some_and(Vec::is_empty)).then_some(())
    });
}
