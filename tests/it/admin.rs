//! Feeds, tokens and the admin CLI: lifecycle, errors, persistence, token secrecy.

use std::process::Command;

use crate::support::{files_below, hook_path, TestDaemon, BIN};

#[test]
fn feed_lifecycle_through_the_cli() {
    let d = TestDaemon::start();
    let feed = d.admin_json(&[
        "feed",
        "add",
        "web",
        "--repo",
        "https://example.com/web.git",
        "--branch",
        "main",
        "--branch",
        "release/*",
        "--command",
        "make test",
        "--cooldown",
        "0",
        "--timeout",
        "60",
    ]);
    assert_eq!(feed["name"], "web");
    assert_eq!(feed["branches"], serde_json::json!(["main", "release/*"]));
    let url = feed["hook_urls"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://{}/hooks/", d.addr)),
        "{url}"
    );

    let list = d.admin_json(&["feed", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    // --json is global: accepted after the subcommand too.
    let shown = d.admin_json(&["feed", "show", "web"]);
    let shown_after: serde_json::Value =
        serde_json::from_str(&d.admin_ok(&["feed", "show", "web", "--json"])).unwrap();
    assert_eq!(shown["repo"], shown_after["repo"]);

    let edited = d.admin_json(&[
        "feed",
        "edit",
        "web",
        "--cooldown",
        "30",
        "--on-cooldown",
        "reject",
    ]);
    assert_eq!(edited["cooldown_secs"], 30);
    assert_eq!(edited["on_cooldown"], "reject");
    assert_eq!(
        edited["repo"], "https://example.com/web.git",
        "edit keeps what it was not told"
    );

    assert_eq!(
        d.admin_json(&["feed", "pause", "web"])["message"],
        "feed web paused"
    );
    assert_eq!(d.admin_json(&["feed", "show", "web"])["paused"], true);
    d.admin_ok(&["feed", "resume", "web"]);
    assert_eq!(d.admin_json(&["feed", "show", "web"])["paused"], false);

    let text = d.admin_ok(&["feed", "list"]);
    assert!(text.contains("web") && text.contains("active"), "{text}");

    d.admin_ok(&["feed", "remove", "web"]);
    let (code, err) = d.admin_err(&["feed", "show", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("no feed named \"web\""), "{err}");
    assert_eq!(
        d.post(&hook_path(url), &[], b"").status,
        404,
        "a removed feed's hook is gone"
    );
}

#[test]
fn tokens_are_revocable_one_by_one() {
    let d = TestDaemon::start();
    let first = d.add_unbuilt_feed("app", &["--cooldown", "0"]);
    let added = d.admin_json(&["token", "add", "app", "--label", "gitlab"]);
    let second = hook_path(added[0]["url"].as_str().unwrap());
    assert_ne!(first, second);

    let tokens = d.admin_json(&["token", "list", "app"]);
    assert_eq!(tokens.as_array().unwrap().len(), 2);
    let first_id = tokens[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(tokens[0]["label"], "default");

    assert_eq!(d.post(&first, &[], b"").status, 202);
    d.admin_ok(&["token", "revoke", "app", &first_id]);
    let revoked = d.post(&first, &[], b"");
    assert_eq!(revoked.status, 404);
    assert_eq!(
        d.post(&second, &[], b"").status,
        202,
        "the other token still works"
    );

    // Unknown and revoked tokens look the same.
    let unknown = d.post(
        "/hooks/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &[],
        b"",
    );
    assert_eq!(
        (unknown.status, unknown.body.clone()),
        (revoked.status, revoked.body.clone())
    );
    assert_eq!(d.post("/hooks/x", &[], b"").body, revoked.body);

    // hook-url shows only active URLs, again at any time.
    let urls = d.admin_json(&["hook-url", "app"]);
    assert_eq!(urls.as_array().unwrap().len(), 1);
    assert_eq!(hook_path(urls[0]["url"].as_str().unwrap()), second);

    let (_, err) = d.admin_err(&["token", "revoke", "app", "0011223344556677"]);
    assert!(err.contains("has no token"), "{err}");
    let (_, err) = d.admin_err(&["token", "revoke", "app", "nothex"]);
    assert!(err.contains("not a token id"), "{err}");
}

#[test]
fn feeds_and_tokens_survive_kill_9() {
    let mut d = TestDaemon::start();
    let hook = d.add_unbuilt_feed("keep", &["--cooldown", "0"]);
    d.kill9();
    d.restart();
    assert_eq!(d.admin_json(&["feed", "show", "keep"])["name"], "keep");
    let urls = d.admin_json(&["hook-url", "keep"]);
    assert_eq!(
        hook_path(urls[0]["url"].as_str().unwrap()),
        hook,
        "same token after restart"
    );
    assert_eq!(d.post(&hook, &[], b"").status, 202);
}

#[test]
fn no_file_in_the_data_dir_contains_a_token() {
    let mut d = TestDaemon::start();
    let hook = d.add_unbuilt_feed("secret", &[]);
    let token = hook.trim_start_matches("/hooks/").to_owned();
    d.post(&hook, &[], b"");
    d.kill9();
    let needle = token.as_bytes();
    for file in files_below(&d.data_dir()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "token found in {}",
            file.display()
        );
    }
    assert!(
        !d.logs().contains(&token),
        "token found in the daemon's log"
    );
    let key = d.data_dir().join("server.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn admin_socket_is_group_only() {
    let d = TestDaemon::start();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.socket()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o660);
}

/// `feed add NAME --repo REPO --command true EXTRA…`
fn feed_add<'a>(name: &'a str, repo: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [
        &["feed", "add", name, "--repo", repo, "--command", "true"][..],
        extra,
    ]
    .concat()
}

#[test]
fn bad_input_gets_clear_errors() {
    let d = TestDaemon::start();
    let x = "https://forge.invalid/x.git";
    let cases: &[(Vec<&str>, &str)] = &[
        (feed_add("../etc", x, &[]), "invalid feed name"),
        (feed_add("Web", x, &[]), "invalid feed name"),
        (feed_add("ok", "ftp://x/y", &[]), "invalid repository URL"),
        (
            feed_add("ok", "relative/path", &[]),
            "invalid repository URL",
        ),
        (
            feed_add("ok", x, &["--branch", "[oops"]),
            "invalid branch pattern",
        ),
        (vec!["feed", "show", "nope"], "no feed named"),
        (
            vec!["token", "add", "nope", "--label", "x"],
            "no feed named",
        ),
        (vec!["build", "show", "999"], "no build 999"),
    ];
    for (args, expected) in cases {
        let (code, err) = d.admin_err(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    d.admin_ok(&feed_add("dup", x, &[]));
    let (_, err) = d.admin_err(&feed_add("dup", x, &[]));
    assert!(err.contains("already exists"), "{err}");
    // Nothing half-created by the refusals.
    assert_eq!(d.admin_json(&["feed", "list"]).as_array().unwrap().len(), 1);
    let empty = d.dir.path().join("empty-secret");
    std::fs::write(&empty, "\n").unwrap();
    let (_, err) = d.admin_err(&feed_add(
        "s",
        x,
        &["--secret-file", empty.to_str().unwrap()],
    ));
    assert!(err.contains("empty"), "{err}");
    // Usage errors exit 2.
    let (code, _) = d.admin_err(&["feed", "add"]);
    assert_eq!(code, 2);
}

#[test]
fn daemon_not_running_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nothing.sock");
    let out = Command::new(BIN)
        .args(["admin", "--socket"])
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hookd is not running") && err.contains("hookd serve"),
        "{err}"
    );
}

#[test]
fn bad_config_is_refused_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookd.toml");
    std::fs::write(&config, "workers = 2\n[http]\nmax_body = 5\n").unwrap();
    let check = || {
        Command::new(BIN)
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_body") && err.contains("line 3"), "{err}");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "serve refuses it too");
    std::fs::write(&config, "workers = 2\n").unwrap();
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn healthz_answers_and_unknown_paths_do_not() {
    let d = TestDaemon::start();
    let ok = crate::support::http(d.addr, "GET", "/healthz", &[], b"");
    assert_eq!((ok.status, ok.json()["status"].as_str()), (200, Some("ok")));
    assert_eq!(
        crate::support::http(d.addr, "GET", "/nope", &[], b"").status,
        404
    );
    assert_eq!(
        crate::support::http(d.addr, "GET", "/hooks/abc", &[], b"").status,
        405
    );
}

#[test]
fn a_refused_duplicate_add_leaves_the_existing_secret_alone() {
    let d = TestDaemon::start();
    let (a, b) = (d.dir.path().join("a"), d.dir.path().join("b"));
    std::fs::write(&a, "first-secret").unwrap();
    std::fs::write(&b, "second-secret").unwrap();
    let hook = d.add_unbuilt_feed("sec", &["--secret-file", a.to_str().unwrap()]);
    d.admin_ok(&["feed", "pause", "sec"]);
    let (_, err) = d.admin_err(&[
        "feed",
        "add",
        "sec",
        "--repo",
        "https://forge.invalid/x.git",
        "--command",
        "true",
        "--secret-file",
        b.to_str().unwrap(),
    ]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        d.post(&hook, &[("Authorization", "Bearer first-secret")], b"")
            .status,
        202
    );
    assert_eq!(
        d.post(&hook, &[("Authorization", "Bearer second-secret")], b"")
            .status,
        401
    );
}
