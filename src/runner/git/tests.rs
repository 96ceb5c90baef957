//! Tests against real repositories made with the `git` command line in temporary
//! directories, served as paths, `file://` and by `git daemon` on 127.0.0.1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

#[path = "../../../tests/shared/git_daemon.rs"]
mod git_daemon;
use git_daemon::GitDaemon;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "protocol.file.allow=always",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare "remote" repository and a working clone that pushes to it.
struct Origin {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    work: PathBuf,
}

impl Origin {
    fn new() -> Origin {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let bare = root.join("repo.git");
        git(&root, &["init", "--bare", "-q", "repo.git"]);
        git(&root, &["init", "-q", "work"]);
        let work = root.join("work");
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Origin {
            _dir: dir,
            root,
            bare,
            work,
        }
    }

    /// Commits `files` on the current branch and pushes it as `main`; returns the id.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (name, body) in files {
            let path = self.work.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(
            &self.work,
            &["push", "-q", "-f", "origin", "HEAD:refs/heads/main"],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

fn no_creds() -> Credentials {
    Credentials::default()
}

/// Fetches `main` of `url` into `mirror`, returning the result and the log text.
fn fetch_main(
    url: &str,
    mirror: &Path,
    expected: Option<&str>,
) -> (Result<ResolvedCommit, GitError>, String) {
    fetch_ref(url, mirror, "refs/heads/main", expected)
}

/// Fetches `git_ref` of `url` into the mirror `dir`; (result, log).
fn fetch_ref(
    url: &str,
    dir: &Path,
    git_ref: &str,
    expected: Option<&str>,
) -> (Result<ResolvedCommit, GitError>, String) {
    let creds = no_creds();
    let remote = Remote {
        url,
        credentials: &creds,
    };
    let mut log = Vec::new();
    let cancel = AtomicBool::new(false);
    let r = fetch(&remote, dir, git_ref, expected, &mut log, &cancel);
    (r, String::from_utf8_lossy(&log).into_owned())
}

fn checkout_into(mirror: &Path, ws: &Path, commit: &str) {
    let mut log = Vec::new();
    checkout(
        mirror,
        ws,
        commit,
        &no_creds(),
        &mut log,
        &AtomicBool::new(false),
    )
    .unwrap_or_else(|e| panic!("checkout: {e}; log: {}", String::from_utf8_lossy(&log)));
}

#[test]
fn file_url_and_plain_path_fetch_and_check_out() {
    let origin = Origin::new();
    let data = tempfile::tempdir().unwrap();
    for (i, url) in [origin.file_url(), origin.bare.display().to_string()]
        .iter()
        .enumerate()
    {
        let first = origin.commit(&[("a.txt", url)], "first commit");
        let mirror = data.path().join(format!("m{i}.git"));
        let (r, _) = fetch_main(url, &mirror, Some(&first));
        let r = r.unwrap();
        assert_eq!(r.id, first);
        assert_eq!(r.subject, "first commit");
        let second = origin.commit(&[("b.txt", "two")], "second");
        let (r, log) = fetch_main(url, &mirror, Some(&second));
        assert_eq!(r.unwrap().id, second, "{log}");
        let ws = data.path().join(format!("ws{i}"));
        checkout_into(&mirror, &ws, &second);
        assert_eq!(std::fs::read_to_string(ws.join("b.txt")).unwrap(), "two");
    }
}

#[test]
fn git_daemon_incremental_force_push_and_recreated_branch() {
    let origin = Origin::new();
    let first = origin.commit(&[("a.txt", "1")], "one");
    let daemon = GitDaemon::serve(&origin.root);
    let url = daemon.url("repo.git");
    let data = tempfile::tempdir().unwrap();
    let mirror = data.path().join("m.git");
    let (r, log) = fetch_main(&url, &mirror, Some(&first));
    assert_eq!(r.unwrap().id, first, "{log}");
    assert!(log.contains("fetched"), "{log}");

    // Incremental: only the new commit travels.
    let second = origin.commit(&[("b.txt", "2")], "two");
    let (r, log) = fetch_main(&url, &mirror, Some(&second));
    assert_eq!(r.unwrap().id, second);
    assert!(log.contains("fetched 3 objects"), "{log}");

    // No-op fetch.
    let (r, log) = fetch_main(&url, &mirror, Some(&second));
    assert_eq!(r.unwrap().id, second);
    assert!(!log.contains("fetched"), "{log}");

    // Force-push rewriting history.
    git(&origin.work, &["reset", "-q", "--hard", &first]);
    let rewritten = origin.commit(&[("c.txt", "3")], "rewritten");
    let (r, _) = fetch_main(&url, &mirror, None);
    assert_eq!(r.unwrap().id, rewritten);

    // Deleted: a clear error naming the branch and the remote.
    git(&origin.bare, &["update-ref", "-d", "refs/heads/main"]);
    let (r, _) = fetch_main(&url, &mirror, None);
    let e = r.unwrap_err();
    assert!(matches!(e, GitError::RefNotFound { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("branch 'main' not found on remote {url}")
    );

    // Re-created with unrelated history.
    git(&origin.work, &["checkout", "-q", "--orphan", "fresh"]);
    let recreated = origin.commit(&[("d.txt", "4")], "recreated");
    let (r, _) = fetch_main(&url, &mirror, None);
    assert_eq!(r.unwrap().id, recreated);
    let ws = data.path().join("ws");
    checkout_into(&mirror, &ws, &recreated);
    assert!(ws.join("d.txt").exists());
}

#[test]
fn missing_branch_is_a_clear_error() {
    let origin = Origin::new();
    origin.commit(&[("a", "a")], "a");
    let data = tempfile::tempdir().unwrap();
    let creds = no_creds();
    let url = origin.file_url();
    let remote = Remote {
        url: &url,
        credentials: &creds,
    };
    let e = fetch(
        &remote,
        &data.path().join("m.git"),
        "refs/heads/nope",
        None,
        &mut Vec::new(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("branch 'nope' not found on remote {url}")
    );
    let e = fetch(
        &remote,
        &data.path().join("m.git"),
        "main",
        None,
        &mut Vec::new(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(e, GitError::InvalidRef(_)), "{e:?}");
}

#[test]
fn unreachable_remotes_are_reported_with_redacted_urls() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let (r, _) = fetch_main(&url, &data.path().join("a.git"), None);
    assert!(matches!(r, Err(GitError::Unreachable { .. })), "{r:?}");
    let (r, _) = fetch_main("/nonexistent/repo.git", &data.path().join("b.git"), None);
    assert!(matches!(r, Err(GitError::Unreachable { .. })), "{r:?}");

    let url = format!("http://user:hunter2@127.0.0.1:{port}/repo.git");
    let (r, log) = fetch_main(&url, &data.path().join("c.git"), None);
    let text = format!("{} {log}", r.unwrap_err());
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/repo.git")),
        "{text}"
    );
}

#[test]
fn missing_pushed_commit_is_noted() {
    let origin = Origin::new();
    let head = origin.commit(&[("a", "a")], "a");
    let data = tempfile::tempdir().unwrap();
    let pushed = "0123456789abcdef0123456789abcdef01234567";
    let (r, log) = fetch_main(&origin.file_url(), &data.path().join("m.git"), Some(pushed));
    assert_eq!(r.unwrap().id, head);
    assert!(
        log.contains(&format!(
            "pushed commit {pushed} not found on the remote; building {head}, the branch's newest commit"
        )),
        "{log}"
    );
}

/// An origin whose `v1` is an annotated tag: (origin, tagged commit, tag object).
fn tagged_origin() -> (Origin, String, String) {
    let origin = Origin::new();
    let head = origin.commit(&[("a", "a")], "tagged");
    git(&origin.work, &["tag", "-a", "-m", "release", "v1"]);
    git(&origin.work, &["push", "-q", "origin", "v1"]);
    let tag_object = git(&origin.work, &["rev-parse", "v1"]);
    assert_ne!(tag_object, head);
    (origin, head, tag_object)
}

/// Fetches `refs/tags/v1` of `url` into a new mirror `dir`; (result, log).
fn fetch_v1(
    url: &str,
    dir: &Path,
    expected: Option<&str>,
) -> (Result<ResolvedCommit, GitError>, String) {
    fetch_ref(url, dir, "refs/tags/v1", expected)
}

#[test]
fn annotated_tags_peel_to_their_commit() {
    let (origin, head, _) = tagged_origin();
    let daemon = GitDaemon::serve(&origin.root);
    let data = tempfile::tempdir().unwrap();
    for (i, url) in [daemon.url("repo.git"), origin.file_url()]
        .iter()
        .enumerate()
    {
        let (r, _) = fetch_v1(url, &data.path().join(format!("m{i}.git")), None);
        assert_eq!(r.unwrap().id, head);
    }
}

/// Some forges name an annotated tag's object instead of its commit: the log says
/// it was peeled, not that the pushed commit is missing (issue 17).
#[test]
fn a_pushed_tag_object_is_noted_as_peeled() {
    let (origin, head, tag_object) = tagged_origin();
    let data = tempfile::tempdir().unwrap();
    let (r, log) = fetch_v1(
        &origin.file_url(),
        &data.path().join("a.git"),
        Some(&tag_object),
    );
    assert_eq!(r.unwrap().id, head);
    assert!(
        log.contains(&format!("tag object {tag_object} peeled to commit {head}")),
        "{log}"
    );
    assert!(!log.contains("not found"), "{log}");
    let (r, log) = fetch_v1(&origin.file_url(), &data.path().join("b.git"), Some(&head));
    assert_eq!(r.unwrap().id, head);
    assert!(
        !log.contains("peeled") && !log.contains("not found"),
        "{log}"
    );
}

/// A tag moved (force-pushed) after the push named its old tag object: the log
/// says which commit that object named and that the tag's newest is built.
#[test]
fn a_pushed_tag_object_of_a_moved_tag_is_noted() {
    let (origin, old, tag_object) = tagged_origin();
    let data = tempfile::tempdir().unwrap();
    let mirror = data.path().join("m.git");
    fetch_v1(&origin.file_url(), &mirror, None).0.unwrap();
    let new = origin.commit(&[("b", "b")], "retagged");
    git(&origin.work, &["tag", "-f", "-a", "-m", "again", "v1"]);
    git(&origin.work, &["push", "-q", "-f", "origin", "v1"]);
    let (r, log) = fetch_v1(&origin.file_url(), &mirror, Some(&tag_object));
    assert_eq!(r.unwrap().id, new);
    let note = format!(
        "tag object {tag_object} peeled to commit {old}; the tag has moved on since, building {new}"
    );
    assert!(log.contains(&note), "{log}");
}

#[test]
fn checkout_removes_everything_the_previous_build_left() {
    let origin = Origin::new();
    let first = origin.commit(
        &[
            (".gitignore", "*.o\nbuild/\n"),
            ("keep.txt", "keep"),
            ("gone.txt", "gone"),
            ("dir/inner.txt", "inner"),
        ],
        "first",
    );
    std::fs::remove_file(origin.work.join("gone.txt")).unwrap();
    std::fs::remove_dir_all(origin.work.join("dir")).unwrap();
    let second = origin.commit(&[], "second");
    let data = tempfile::tempdir().unwrap();
    let mirror = data.path().join("m.git");
    fetch_main(&origin.file_url(), &mirror, None).0.unwrap();
    let ws = data.path().join("ws");
    checkout_into(&mirror, &ws, &first);
    // What a build leaves behind.
    std::fs::write(ws.join("untracked.txt"), "x").unwrap();
    std::fs::write(ws.join("main.o"), "x").unwrap();
    std::fs::create_dir_all(ws.join("build/deep")).unwrap();
    std::fs::write(ws.join("build/deep/out"), "x").unwrap();
    std::fs::write(ws.join("dir/made.o"), "x").unwrap();
    std::fs::write(ws.join("keep.txt"), "changed").unwrap();
    git(&ws, &["init", "-q", "nested"]);
    std::fs::write(ws.join("nested/file"), "x").unwrap();

    checkout_into(&mirror, &ws, &second);
    let mut left: Vec<_> = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [".git", ".gitignore", "keep.txt"]);
    assert_eq!(
        std::fs::read_to_string(ws.join("keep.txt")).unwrap(),
        "keep"
    );
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]), second);
    assert_eq!(git(&ws, &["status", "--porcelain", "--ignored"]), "");

    // Back to the first commit: its files return.
    checkout_into(&mirror, &ws, &first);
    assert_eq!(
        std::fs::read_to_string(ws.join("dir/inner.txt")).unwrap(),
        "inner"
    );
}

#[test]
fn submodules_are_checked_out_from_relative_urls() {
    let origin = Origin::new();
    git(&origin.root, &["init", "-q", "--bare", "sub.git"]);
    git(&origin.root, &["clone", "-q", "sub.git", "subwork"]);
    let subwork = origin.root.join("subwork");
    std::fs::write(subwork.join("lib.txt"), "from the submodule").unwrap();
    git(&subwork, &["add", "-A"]);
    git(&subwork, &["commit", "-q", "-m", "sub"]);
    git(&subwork, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    origin.commit(&[("a", "a")], "base");
    git(
        &origin.work,
        &["submodule", "add", "-q", "../sub.git", "vendor/sub"],
    );
    // The relative URL must resolve against the remote, not the work clone.
    let head = origin.commit(&[], "add submodule");
    let data = tempfile::tempdir().unwrap();
    let mirror = data.path().join("m.git");
    fetch_main(&origin.file_url(), &mirror, None).0.unwrap();
    let ws = data.path().join("ws");
    checkout_into(&mirror, &ws, &head);
    let lib = ws.join("vendor/sub/lib.txt");
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), "from the submodule");
    // A second build: leftovers inside the submodule go too.
    std::fs::write(ws.join("vendor/sub/junk"), "x").unwrap();
    std::fs::write(&lib, "changed").unwrap();
    checkout_into(&mirror, &ws, &head);
    assert!(!ws.join("vendor/sub/junk").exists());
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), "from the submodule");
}

#[test]
fn corrupt_mirror_is_recloned_once() {
    let origin = Origin::new();
    origin.commit(&[("a", "a")], "a");
    let daemon = GitDaemon::serve(&origin.root);
    let url = daemon.url("repo.git");
    let data = tempfile::tempdir().unwrap();
    let mirror = data.path().join("m.git");
    fetch_main(&url, &mirror, None).0.unwrap();

    // Unopenable: its config is garbage.
    std::fs::write(mirror.join("config"), "[[[ not a config").unwrap();
    let (r, log) = fetch_main(&url, &mirror, None);
    assert!(r.is_ok(), "{r:?} {log}");
    assert!(log.contains("deleting it and cloning again"), "{log}");

    // Damaged objects: every pack overwritten.
    let head = origin.commit(&[("b", "b")], "b");
    for entry in std::fs::read_dir(mirror.join("objects/pack")).unwrap() {
        std::fs::write(entry.unwrap().path(), "garbage").unwrap();
    }
    for entry in std::fs::read_dir(mirror.join("objects")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().len() == 2 {
            std::fs::remove_dir_all(path).unwrap();
        }
    }
    // libgit2 finds none of its objects, so it fetches everything again (or the
    // mirror is re-cloned): either way the build gets a good commit.
    let (r, log) = fetch_main(&url, &mirror, None);
    assert_eq!(
        r.map(|c| c.id).map_err(|e| e.to_string()),
        Ok(head.clone()),
        "{log}"
    );
    checkout_into(&mirror, &data.path().join("ws"), &head);
    assert!(data.path().join("ws/b").exists());

    // The objects directory replaced by a file.
    std::fs::remove_dir_all(mirror.join("objects")).unwrap();
    std::fs::write(mirror.join("objects"), "x").unwrap();
    let (r, log) = fetch_main(&url, &mirror, None);
    assert_eq!(
        r.map(|c| c.id).map_err(|e| e.to_string()),
        Ok(head),
        "{log}"
    );
    assert!(log.contains("deleting it and cloning again"), "{log}");
}

/// A build log that asks for cancellation as soon as anything is written to it.
struct CancelOnWrite<'a>(&'a AtomicBool);

impl Write for CancelOnWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.store(true, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn cancel_stops_fetch_and_checkout() {
    let origin = Origin::new();
    let head = origin.commit(&[("a", "a")], "a");
    let daemon = GitDaemon::serve(&origin.root);
    let url = daemon.url("repo.git");
    let data = tempfile::tempdir().unwrap();
    let creds = no_creds();
    let remote = Remote {
        url: &url,
        credentials: &creds,
    };
    let mirror = data.path().join("m.git");
    // Cancelled mid-way: the note "creating the mirror" flips the flag, and the
    // transfer's callbacks must notice.
    let cancel = AtomicBool::new(false);
    let r = fetch(
        &remote,
        &mirror,
        "refs/heads/main",
        None,
        &mut CancelOnWrite(&cancel),
        &cancel,
    );
    assert!(matches!(r, Err(GitError::Cancelled)), "{r:?}");
    // Cancelled before starting.
    let r = fetch(
        &remote,
        &mirror,
        "refs/heads/main",
        None,
        &mut Vec::new(),
        &cancel,
    );
    assert!(matches!(r, Err(GitError::Cancelled)), "{r:?}");
    let r = checkout(
        &mirror,
        &data.path().join("ws"),
        &head,
        &creds,
        &mut Vec::new(),
        &cancel,
    );
    assert!(matches!(r, Err(GitError::Cancelled)), "{r:?}");
    // And it recovers.
    let (r, _) = fetch_main(&url, &mirror, None);
    assert_eq!(r.unwrap().id, head);
}

#[test]
fn locations_follow_gits_rules() {
    assert_eq!(
        Location::of("file:///srv/x"),
        Location::Local("/srv/x".into())
    );
    assert_eq!(Location::of("/srv/x"), Location::Local("/srv/x".into()));
    assert_eq!(Location::of("./a:b"), Location::Local("./a:b".into()));
    assert_eq!(Location::of("git@host:x.git"), Location::Network);
    assert_eq!(Location::of("https://h/x"), Location::Network);
}

#[test]
fn credentials_are_offered_once_then_reported_rejected() {
    use git2::CredentialType as T;
    let creds = Credentials {
        https_token: Some("s3cret".into()),
        ..Credentials::default()
    };
    let auth = transfer::Auth::default();
    assert!(auth.answer(&creds, None, T::USER_PASS_PLAINTEXT).is_ok());
    assert!(auth.answer(&creds, None, T::USER_PASS_PLAINTEXT).is_err());
    let e = git2::Error::from_str("auth failed for https://x-access-token:s3cret@h/");
    let e = transfer::transfer_error(&e, "https://h/", &creds, &auth, &AtomicBool::new(false));
    assert!(matches!(e, GitError::Credentials { .. }), "{e:?}");
    assert!(!e.to_string().contains("s3cret"));
    assert_eq!(
        transfer::scrub("bad https://x:s3cret@h/ s3cret", "https://h/", &creds),
        "bad https://h/ ***"
    );
    // Nothing configured: said plainly.
    let none = Credentials::default();
    let auth = transfer::Auth::default();
    assert!(auth.answer(&none, Some("git"), T::SSH_KEY).is_err());
    let e = git2::Error::from_str("x");
    let e = transfer::transfer_error(&e, "ssh://h/x", &none, &auth, &AtomicBool::new(false));
    assert!(e.to_string().contains("asks for an SSH key"), "{e}");
}

#[test]
fn hosts_compare_across_url_spellings() {
    for (url, host) in [
        ("https://TOKEN@GitHub.com/a/b.git", Some("github.com")),
        ("https://user:pw@example.com:8443/a", Some("example.com")),
        ("ssh://git@github.com:22/a/b", Some("github.com")),
        ("git@github.com:a/b.git", Some("github.com")),
        ("git://[::1]:9418/a", Some("::1")),
        ("/srv/git/a.git", None),
        ("file:///srv/git/a.git", None),
        ("../sibling.git", None),
    ] {
        assert_eq!(host_of(url).as_deref(), host, "{url}");
    }
}

#[test]
fn submodules_get_the_feeds_credentials_on_the_feeds_host_only() {
    let creds = Credentials {
        https_token: Some("s3cret".into()),
        ..Credentials::default()
    };
    let auth = workspace::SubmoduleAuth {
        feed_host: host_of("https://git.example.com/org/app.git"),
        creds: &creds,
    };
    let token = |url: &str| auth.for_url(url).https_token.clone();
    assert_eq!(
        token("https://git.example.com/org/lib.git").as_deref(),
        Some("s3cret")
    );
    assert_eq!(token("https://evil.example.net/org/lib.git"), None);
    assert_eq!(token("/srv/git/lib.git"), None);
    let local = workspace::SubmoduleAuth {
        feed_host: None,
        creds: &creds,
    };
    assert!(local
        .for_url("https://git.example.com/x")
        .https_token
        .is_none());
}

#[test]
fn init_sets_the_network_timeouts_once() {
    init();
    init();
    // SAFETY: reads of libgit2's global integer options.
    let (connect, server) = unsafe {
        (
            git2::opts::get_server_connect_timeout_in_milliseconds().unwrap(),
            git2::opts::get_server_timeout_in_milliseconds().unwrap(),
        )
    };
    assert_eq!((connect, server), (CONNECT_TIMEOUT_MS, SERVER_TIMEOUT_MS));
}
