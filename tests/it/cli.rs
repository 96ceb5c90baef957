//! The command line as a new user meets it: help that reads in 80 columns, usage
//! errors with exit 2, quiet ends on a closed pipe, and clear socket errors.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};

use crate::support::{GitRepo, TestDaemon, BIN};

fn hookd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("HOOKD_SOCKET")
        .env_remove("HOOKD_CONFIG")
        .output()
        .expect("run hookd")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The subcommands a help page lists under "Commands:" (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // A wrapped description continues deeper in; names sit two spaces in.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every help page, short and long, of every subcommand: (command words, page).
fn all_help_pages() -> Vec<(String, String)> {
    let mut pages = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(words) = todo.pop() {
        for flag in ["-h", "--help"] {
            let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
            args.push(flag);
            let out = hookd(&args);
            assert!(out.status.success(), "hookd {args:?}: {}", stderr(&out));
            let page = stdout(&out);
            if flag == "--help" {
                for sub in subcommands(&page) {
                    let mut next = words.clone();
                    next.push(sub);
                    todo.push(next);
                }
            }
            pages.push((args.join(" "), page));
        }
    }
    pages
}

#[test]
fn every_help_page_fits_80_columns() {
    let pages = all_help_pages();
    assert!(pages.len() > 50, "walked only {} pages", pages.len());
    for (command, page) in &pages {
        for line in page.lines() {
            assert!(
                line.chars().count() <= 80,
                "hookd {command}: line of {} columns:\n{line}",
                line.chars().count()
            );
        }
    }
}

#[test]
fn feed_add_help_shows_required_flags_defaults_and_globals_apart() {
    let help = stdout(&hookd(&["admin", "feed", "add", "--help"]));
    assert!(
        help.contains("Usage: hookd admin feed add [OPTIONS] --repo <URL> --command <CMD> <NAME>"),
        "{help}"
    );
    for default in [
        "[default: main]",
        "[default: 300]",
        "[default: defer]",
        "[default: 3600]",
    ] {
        assert!(help.contains(default), "{default} missing:\n{help}");
    }
    let (own, global) = help
        .split_once("Global options:")
        .unwrap_or_else(|| panic!("no global heading:\n{help}"));
    for flag in ["--socket", "--json", "--config"] {
        assert!(!own.contains(flag), "{flag} among the feed flags:\n{help}");
        assert!(
            global.contains(flag),
            "{flag} not under its heading:\n{help}"
        );
    }
    // Every admin subcommand keeps the globals under their heading.
    let builds = stdout(&hookd(&["admin", "builds", "--help"]));
    let (own, _) = builds.split_once("Global options:").expect("heading");
    assert!(!own.contains("--socket"), "{builds}");
    assert!(own.contains("[default: 20]"), "{builds}");
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &["admin", "feed", "add", "web", "--command", "true"],
        &["admin", "feed", "add", "web", "--repo", "/r"],
        &["admin", "feed", "add"],
        &[
            "admin",
            "feed",
            "add",
            "web",
            "--repo",
            "/r",
            "--command",
            "true",
            "--timeout",
            "0",
        ],
        &["admin", "feed", "edit", "web", "--timeout", "0"],
        &["admin", "builds", "--limit", "many"],
        &["admin", "nope"],
        &["completions", "tcsh"],
    ];
    for args in cases {
        let out = hookd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--help"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE,
/// as `hookd … | head` does once head has read its lines.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two fresh descriptors; we own both.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fds[0] is ours and used nowhere else.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is a fresh descriptor owned by nothing else.
    Stdio::from(unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

fn into_closed_pipe(command: &mut Command) -> Output {
    command
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .env_remove("HOOKD_SOCKET")
        .output()
        .expect("run hookd")
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.add_repo_feed("web", &repo, "true", &[]);
    let socket = d.socket();
    let socket = socket.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["completions", "bash"],
        &["man"],
        &["check-config"],
        &["admin", "--socket", socket, "--json", "queue"],
        &["admin", "--socket", socket, "feed", "list"],
        &["admin", "--socket", socket, "--json", "feed", "list"],
    ];
    for args in cases {
        let out = into_closed_pipe(Command::new(BIN).args(*args));
        assert_eq!(
            (out.status.code(), stderr(&out).as_str()),
            (Some(0), ""),
            "hookd {args:?}"
        );
    }
}

#[test]
fn socket_errors_name_the_absolute_path_once_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let run = |socket: &str| {
        let out = Command::new(BIN)
            .args(["admin", "--socket", socket, "status"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        stderr(&out)
    };
    let absolute = |name: &str| dir.path().join(name).display().to_string();

    let err = run("nothing.sock");
    assert!(err.contains("hookd is not running"), "{err}");
    assert_eq!(err.matches(&absolute("nothing.sock")).count(), 1, "{err}");
    assert!(err.contains("hookd serve"), "{err}");

    // A socket file left behind by a daemon that is gone.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("stale.sock")).unwrap());
    let err = run("stale.sock");
    assert!(err.contains("hookd is not running"), "{err}");
    assert_eq!(err.matches(&absolute("stale.sock")).count(), 1, "{err}");

    std::fs::write(dir.path().join("file.sock"), "").unwrap();
    let err = run("file.sock");
    assert!(err.contains("is not a hookd socket"), "{err}");
    assert_eq!(err.matches(&absolute("file.sock")).count(), 1, "{err}");

    // Something listens but speaks another protocol.
    let other = std::os::unix::net::UnixListener::bind(dir.path().join("other.sock")).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (mut conn, _) = other.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&conn).read_line(&mut line).unwrap();
        conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
    });
    let err = run("other.sock");
    server.join().unwrap();
    assert!(err.contains("is not a hookd socket"), "{err}");
    assert!(!err.contains("not running"), "{err}");
}

#[test]
fn feed_remove_counts_builds_in_english() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.add_repo_feed("one", &repo, "true", &[]);
    let build = d.admin_json(&["trigger", "one"])["build"].as_u64().unwrap();
    d.wait_build(build, 60);
    assert_eq!(
        d.admin_ok(&["feed", "remove", "one"]),
        "feed one removed (1 build deleted)\n"
    );
    d.add_repo_feed("none", &repo, "true", &[]);
    assert_eq!(
        d.admin_ok(&["feed", "remove", "none"]),
        "feed none removed (0 builds deleted)\n"
    );
}

#[test]
fn the_quick_start_leaves_nothing_for_git_to_track() {
    let root = env!("CARGO_MANIFEST_DIR");
    for path in ["web.secret", "hookd-data/admin.sock"] {
        let out = Command::new("git")
            .args(["check-ignore", "-q", "--no-index", path])
            .current_dir(root)
            .status()
            .unwrap();
        assert!(out.success(), "{path} is not ignored by .gitignore");
    }
}

/// Every line of a table fits an 80-column terminal.
fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "over 80 columns:\n{text}");
    }
}

fn github_push(commit: &str, delivery: &str) -> (Vec<(&'static str, String)>, String) {
    let zeros = "0".repeat(40);
    let body = format!(
        r#"{{"ref":"refs/heads/main","before":"{zeros}1","after":"{commit}","repository":{{"full_name":"you/web"}},"head_commit":{{"message":"x"}}}}"#
    );
    let headers = vec![
        ("X-GitHub-Event", "push".to_owned()),
        ("Content-Type", "application/json".to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
    ];
    (headers, body)
}

#[test]
fn builds_show_requested_and_built_commits_deferral_and_pause_as_they_are() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed("web", &repo, "true", &["--cooldown", "3600"]);
    // A push naming a commit the repository does not have: its branch head is built.
    let missing = "1111111111111111111111111111111111111111";
    let (headers, body) = github_push(missing, "d-1");
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(d.post(&hook, &headers, body.as_bytes()).status, 202);
    let first = d.wait_build(1, 60);
    assert_eq!(first["requested"], missing);
    assert_eq!(first["commit"], repo.head().as_str());
    let show = d.admin_ok(&["build", "show", "1"]);
    assert!(show.contains(&format!("requested: {missing}\n")), "{show}");
    assert!(
        show.contains(&format!("built:     {} ", repo.head())),
        "{show}"
    );
    assert!(
        show.contains("note:      the built commit is not the one"),
        "{show}"
    );
    let builds = d.admin_ok(&["builds"]);
    assert!(builds.starts_with("ID  FEED  BRANCH  STATUS"), "{builds}");
    assert!(
        builds.contains(&format!("{}*", &repo.head()[..8])),
        "{builds}"
    );
    assert!(builds.contains("started "), "{builds}");
    assert!(builds.contains("* built another commit"), "{builds}");

    // The cooldown defers the next one: its run_at is shown as what it is.
    let reply = d.post(&hook, &[], b"").json();
    assert_eq!(reply["status"], "deferred");
    assert_eq!(d.build(2)["run_at"], reply["run_at"]);
    let show = d.admin_ok(&["build", "show", "2"]);
    assert!(
        show.contains(&format!("run at:    {}", reply["run_at"].as_str().unwrap())),
        "{show}"
    );
    assert!(d.admin_ok(&["builds"]).contains("runs at "));
    let queue = d.admin_ok(&["queue"]);
    assert!(
        queue.contains("deferred:\nID  FEED  BRANCH  STATUS  RUNS AT"),
        "{queue}"
    );

    // A paused feed's queued build says why it waits.
    d.admin_ok(&["feed", "pause", "web"]);
    assert_eq!(d.admin_json(&["trigger", "web", "--force"])["build"], 2);
    assert_eq!(d.build(2)["feed_paused"], true);
    let show = d.admin_ok(&["build", "show", "2"]);
    assert!(show.contains("status:    queued (feed paused)\n"), "{show}");
    let queue = d.admin_ok(&["queue"]);
    assert!(queue.contains("queued (feed paused)"), "{queue}");
    assert_fits(&queue);

    // Cancelled before it started: the table says when it was queued, not "started".
    d.admin_ok(&["cancel", "2"]);
    let builds = d.admin_ok(&["builds"]);
    let row = builds
        .lines()
        .find(|l| l.trim_start().starts_with("2 "))
        .unwrap();
    assert!(
        row.contains("cancelled") && row.contains("queued 2"),
        "{builds}"
    );
    assert_fits(&builds);
}

#[test]
fn deliveries_and_tokens_are_tables_with_headers_and_build_ids() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let secret = d.dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let hook = d.add_repo_feed(
        "web",
        &repo,
        "true",
        &["--secret-file", secret.to_str().unwrap()],
    );
    assert_eq!(d.post(&hook, &[], b"").status, 401);
    let queued = d.post(&hook, &[("Authorization", "Bearer s3cret")], b"");
    assert_eq!(queued.status, 202, "{}", queued.body);
    let build = queued.json()["build"].as_u64().unwrap();

    let json = d.admin_json(&["deliveries", "web"]);
    assert_eq!(json[0]["build"], build);
    assert_eq!(json[1]["build"], serde_json::Value::Null);
    let text = d.admin_ok(&["deliveries", "web"]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["AT", "PROVIDER", "EVENT", "HTTP", "OUTCOME", "BUILD", "REF"]
    );
    let queued_row = lines.next().unwrap();
    assert!(
        queued_row.contains(" 202  queued ") && queued_row.contains(&format!(" {build}  main")),
        "{text}"
    );
    let refused_row = lines.next().unwrap();
    assert!(refused_row.contains(" 401  unauthorized  "), "{text}");
    assert_fits(&text);

    let tokens = d.admin_ok(&["token", "list", "web"]);
    assert_eq!(
        tokens
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ID", "LABEL", "CREATED", "STATE"]
    );
    assert!(tokens.contains("  default  "), "{tokens}");
    assert_fits(&tokens);
}

#[test]
fn a_repository_the_builds_cannot_use_is_refused_at_feed_add_and_edit() {
    let d = TestDaemon::start();
    let missing = d.dir.path().join("no-such-repo");
    let missing = missing.to_str().unwrap();
    let (code, err) = d.admin_err(&["feed", "add", "web", "--repo", missing, "--command", "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "cannot reach the remote {missing}: no such file or directory"
        )),
        "{err}"
    );
    let plain = d.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let plain = plain.to_str().unwrap();
    let (_, err) = d.admin_err(&["feed", "add", "web", "--repo", plain, "--command", "true"]);
    assert!(err.contains("it is not a git repository"), "{err}");
    let file_url = format!("file://{missing}");
    let (_, err) = d.admin_err(&[
        "feed",
        "add",
        "web",
        "--repo",
        &file_url,
        "--command",
        "true",
    ]);
    assert!(err.contains("no such file or directory"), "{err}");
    assert_eq!(d.admin_json(&["feed", "list"]), serde_json::json!([]));

    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.add_repo_feed("web", &repo, "true", &[]);
    let (_, err) = d.admin_err(&["feed", "edit", "web", "--repo", missing]);
    assert!(err.contains("no such file or directory"), "{err}");
    assert_eq!(d.admin_json(&["feed", "show", "web"])["repo"], repo.url());
}

#[test]
fn check_lists_a_network_remote_before_the_feed_is_saved() {
    let d = TestDaemon::start();
    let served = d.dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let work = GitRepo::new(d.dir.path().join("work"));
    work.git(&[
        "clone",
        "-q",
        "--bare",
        ".",
        served.join("web.git").to_str().unwrap(),
    ]);
    let git = crate::support::GitDaemon::serve(&served);
    let url = git.url("web.git");

    let text = d.admin_ok(&[
        "feed",
        "add",
        "web",
        "--repo",
        &url,
        "--command",
        "true",
        "--check",
    ]);
    assert!(
        text.contains("remote:      answers; watched refs: refs/heads/main\n"),
        "{text}"
    );
    let (code, err) = d.admin_err(&[
        "feed",
        "add",
        "other",
        "--repo",
        &url,
        "--command",
        "true",
        "--branch",
        "dev",
        "--check",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("lists no ref the feed watches (dev); its branches: main"),
        "{err}"
    );
    let nobody = format!("git://127.0.0.1:{}/web.git", crate::support::closed_port());
    let (_, err) = d.admin_err(&[
        "feed",
        "add",
        "other",
        "--repo",
        &nobody,
        "--command",
        "true",
        "--check",
    ]);
    assert!(err.contains("cannot reach the remote"), "{err}");
    // Without --check a network URL is taken as given.
    d.add_feed("other", &["--repo", &nobody, "--command", "true"]);
}
