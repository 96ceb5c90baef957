//! The web side through the real daemon: the JSON API against `hookd admin --json`,
//! badges (status sequence, ETag, no probing), escaping of build output, no secret on
//! any page, and where the pages are served.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::live::Stream;
use crate::support::{closed_port, http, wait_for, GitRepo, HttpReply, TestDaemon};

fn get(addr: SocketAddr, path: &str) -> HttpReply {
    http(addr, "GET", path, &[], b"")
}

/// A JSON API reply that must be 200.
fn api(d: &TestDaemon, path: &str) -> serde_json::Value {
    let reply = get(d.addr, path);
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()
}

/// The admin view of a feed as the API shows it: hook URLs are never on the web.
fn without_hook_urls(mut feed: serde_json::Value) -> serde_json::Value {
    feed["hook_urls"] = serde_json::json!([]);
    feed
}

fn queued_id(reply: &HttpReply) -> u64 {
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.json()["build"].as_u64().expect("build id")
}

#[test]
fn api_replies_are_the_admin_json() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let gate = d.dir.path().join("gate");
    let cmd = format!("while [ ! -e '{}' ]; do sleep 0.02; done", gate.display());
    let hook = d.add_repo_feed("web", &repo, &cmd, &["--cooldown", "0"]);
    d.add_repo_feed("api", &repo, "true", &[]);
    let first = queued_id(&d.post(&hook, &[], b""));
    // Running its command: the commit, subject and process group are filled in after
    // the build starts, so comparing two reads before then races the runner.
    wait_for(30, "build running its command", || {
        let b = d.build(first);
        (b["status"] == "running" && !b["commit"].is_null() && !b["pgid"].is_null()).then_some(())
    });
    let second = queued_id(&d.post(&hook, &[], b""));

    let feeds: Vec<_> = d
        .admin_json(&["feed", "list"])
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .map(without_hook_urls)
        .collect();
    assert_eq!(api(&d, "/api/v1/feeds"), serde_json::Value::Array(feeds));
    assert_eq!(
        api(&d, "/api/v1/feeds/web"),
        without_hook_urls(d.admin_json(&["feed", "show", "web"]))
    );
    assert_eq!(api(&d, "/api/v1/queue"), d.admin_json(&["queue"]));
    assert_eq!(api(&d, "/api/v1/builds/2"), d.build(second));
    std::fs::write(&gate, "").unwrap();
    d.wait_build(second, 60);
    assert_eq!(
        api(&d, "/api/v1/feeds/web/builds"),
        d.admin_json(&["builds", "web"])
    );
    assert_eq!(
        api(&d, "/api/v1/feeds/web/builds?limit=1"),
        d.admin_json(&["builds", "web", "--limit", "1"])
    );
    assert_eq!(api(&d, &format!("/api/v1/builds/{first}")), d.build(first));
    assert_eq!(
        api(&d, "/api/v1/feeds/web/deliveries"),
        d.admin_json(&["deliveries", "web"])
    );
    assert_eq!(
        api(&d, "/api/v1/feeds/web/deliveries")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let mut status = api(&d, "/api/v1/status");
    let mut admin = d.admin_json(&["status"]);
    for s in [&mut status, &mut admin] {
        s.as_object_mut().unwrap().remove("uptime_secs");
    }
    assert_eq!(status, admin);

    for (path, code) in [
        ("/api/v1/feeds/nope", 404),
        ("/api/v1/feeds/nope/builds", 404),
        ("/api/v1/feeds/NOT..A..NAME/deliveries", 404),
        ("/api/v1/builds/999", 404),
        ("/api/v1/nothing", 404),
    ] {
        let reply = get(d.addr, path);
        assert_eq!(reply.status, code, "{path}");
        assert_eq!(reply.json()["status"], "not_found", "{path}");
    }
    let post = http(d.addr, "POST", "/api/v1/feeds", &[], b"");
    assert_eq!(post.status, 405);
    assert_eq!(post.json()["status"], "method_not_allowed");
    assert_eq!(http(d.addr, "DELETE", "/feeds/web", &[], b"").status, 405);
    let head = http(d.addr, "HEAD", "/api/v1/feeds", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    let reply = get(d.addr, "/api/v1/feeds");
    assert_eq!(
        reply.header("content-security-policy"),
        Some("default-src 'self'")
    );
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
}

/// The badge's message word.
fn badge_word(d: &TestDaemon, path: &str) -> String {
    let reply = get(d.addr, path);
    assert_eq!(reply.status, 200, "{path}");
    assert_eq!(reply.header("cache-control"), Some("no-cache"));
    let json_path = path.replacen(".svg", ".json", 1);
    let endpoint = get(d.addr, &json_path).json();
    assert_eq!(endpoint["schemaVersion"], 1);
    let word = endpoint["message"].as_str().unwrap().to_owned();
    assert!(
        reply.body.contains(&format!(">{word}</text>")),
        "{path}: {}",
        reply.body
    );
    word
}

fn xmllint(file: &Path) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg(file)
        .output()
        .expect("run xmllint (libxml2-utils)");
    assert!(
        out.status.success(),
        "xmllint {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A feed whose builds wait for the file `gate`, then fail if the file `fail` exists:
/// its hook path, `gate`, `fail` and its repository.
pub fn gated_feed(
    d: &TestDaemon,
    name: &str,
    extra: &[&str],
) -> (String, PathBuf, PathBuf, GitRepo) {
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let (gate, fail) = (d.dir.path().join("gate"), d.dir.path().join("fail"));
    let cmd = format!(
        "while [ ! -e '{}' ]; do sleep 0.02; done; test ! -e '{}'",
        gate.display(),
        fail.display()
    );
    let hook = d.add_repo_feed(name, &repo, &cmd, extra);
    (hook, gate, fail, repo)
}

#[test]
fn badges_follow_the_newest_build_of_opted_in_feeds_only() {
    let d = TestDaemon::start();
    let (hook, gate, fail, repo) = gated_feed(&d, "pub", &["--cooldown", "0"]);
    let other = d.add_repo_feed("priv", &repo, "true", &["--cooldown", "0"]);
    assert_eq!(d.admin_json(&["feed", "show", "pub"])["badge"], false);
    d.admin_ok(&["feed", "edit", "pub", "--badge", "on"]);
    assert_eq!(d.admin_json(&["feed", "show", "pub"])["badge"], true);

    assert_eq!(badge_word(&d, "/badge/pub.svg"), "unknown");
    let running = queued_id(&d.post(&hook, &[], b""));
    wait_for(30, "build running", || {
        (d.build(running)["status"] == "running").then_some(())
    });
    assert_eq!(badge_word(&d, "/badge/pub.svg"), "running");
    std::fs::write(&gate, "").unwrap();
    d.wait_build(running, 60);
    assert_eq!(badge_word(&d, "/badge/pub.svg"), "passing");
    assert_eq!(badge_word(&d, "/badge/pub.svg?branch=main"), "passing");
    assert_eq!(badge_word(&d, "/badge/pub.svg?branch=dev"), "unknown");
    let passing = get(d.addr, "/badge/pub.svg");
    let etag = passing.header("etag").expect("an ETag").to_owned();
    let again = http(
        d.addr,
        "GET",
        "/badge/pub.svg",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(again.status, 304);
    assert_eq!(again.body, "");
    std::fs::write(&fail, "").unwrap();
    let failing = queued_id(&d.post(&hook, &[], b""));
    assert_eq!(d.wait_build(failing, 60)["status"], "failed");
    assert_eq!(badge_word(&d, "/badge/pub.svg"), "failing");
    let changed = http(
        d.addr,
        "GET",
        "/badge/pub.svg",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(changed.status, 200, "a changed badge is sent again");

    let svg = d.dir.path().join("badge.svg");
    std::fs::write(&svg, get(d.addr, "/badge/pub.svg").body).unwrap();
    xmllint(&svg);

    // An opted-out feed with a build and no feed at all: the same bytes.
    let built = queued_id(&d.post(&other, &[], b""));
    assert_eq!(d.wait_build(built, 60)["status"], "succeeded");
    let hidden = get(d.addr, "/badge/priv.svg");
    let absent = get(d.addr, "/badge/nope.svg");
    assert_eq!(hidden.status, 200);
    assert_eq!(absent.status, 200);
    assert_eq!(hidden.body, absent.body);
    assert_eq!(hidden.header("etag"), absent.header("etag"));
    assert!(hidden.body.contains(">unknown</text>"));
    assert_eq!(
        get(d.addr, "/badge/priv.json").body,
        get(d.addr, "/badge/nope.json").body
    );
    std::fs::write(&svg, hidden.body).unwrap();
    xmllint(&svg);

    let cc = get(d.addr, "/cc.xml");
    assert_eq!(cc.status, 200);
    assert!(cc.body.contains("name=\"pub\""), "{}", cc.body);
    assert!(
        cc.body.contains("lastBuildStatus=\"Failure\""),
        "{}",
        cc.body
    );
    assert!(!cc.body.contains("priv"), "{}", cc.body);
    let xml = d.dir.path().join("cc.xml");
    std::fs::write(&xml, cc.body).unwrap();
    xmllint(&xml);

    d.admin_ok(&["feed", "edit", "pub", "--badge", "off"]);
    assert_eq!(get(d.addr, "/badge/pub.svg").body, absent.body);
}

#[test]
fn build_output_is_shown_as_text() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed(
        "web",
        &repo,
        "echo '<script>alert(1)</script>'",
        &["--cooldown", "0"],
    );
    let id = queued_id(&d.post(&hook, &[], b""));
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
    let page = get(d.addr, &format!("/builds/{id}"));
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'self'")
    );
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    // The one script is hookd's own, from its own origin.
    assert_eq!(page.body.matches("<script").count(), 1, "{}", page.body);
    assert!(page
        .body
        .contains("<script src=\"/app.js\" defer></script>"));
    let script = get(d.addr, "/app.js");
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(script.body.contains("EventSource"), "{}", script.body);
    assert!(page.body.contains("succeeded"));
    assert!(page.body.contains(&repo.head()));
    let log = get(d.addr, &format!("/builds/{id}/log"));
    assert_eq!(
        log.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(log.body, d.log(id));
    assert!(log.body.contains("<script>alert(1)</script>"));
    for path in ["/", "/feeds/web", "/feeds/web?page=1"] {
        let reply = get(d.addr, path);
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.body.contains(&format!("/builds/{id}")) || path.ends_with("page=1"),
            "{path}: {}",
            reply.body
        );
    }
    assert_eq!(get(d.addr, "/feeds/nope").status, 404);
    assert_eq!(get(d.addr, "/builds/999").status, 404);
}

/// Every web path worth asking for, for feed `name` and build `id`.
fn crawl(d: &TestDaemon, names: &[&str], ids: &[u64]) -> Vec<(String, String)> {
    let mut paths: Vec<String> = [
        "/",
        "/api/v1/feeds",
        "/api/v1/queue",
        "/api/v1/status",
        "/cc.xml",
        "/style.css",
        "/app.js",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    for name in names {
        for p in [
            "/feeds/{}",
            "/api/v1/feeds/{}",
            "/api/v1/feeds/{}/builds",
            "/api/v1/feeds/{}/deliveries",
            "/badge/{}.svg",
            "/badge/{}.json",
        ] {
            paths.push(p.replace("{}", name));
        }
    }
    // Finished builds: their event streams end by themselves after `end`.
    for id in ids {
        for p in [
            "/builds/{}",
            "/builds/{}/log",
            "/builds/{}/events",
            "/api/v1/builds/{}",
        ] {
            paths.push(p.replace("{}", &id.to_string()));
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let reply = get(d.addr, &p);
            assert_eq!(reply.status, 200, "{p}: {}", reply.body);
            let text = format!("{:?}\n{}", reply.headers, reply.body);
            (p, text)
        })
        .collect()
}

/// The headers and events of a `/events` stream, read up to the `finished` change of
/// each of `ids` (a bounded prefix: the stream itself never ends).
fn changes_until_finished(events: &mut Stream, ids: &[u64]) -> String {
    let mut text = format!("{:?}\n", events.headers);
    let mut unfinished = ids.to_vec();
    while !unfinished.is_empty() {
        let event = events.next_event().expect("the stream goes on");
        text.push_str(&format!("event: {}\ndata: {}\n\n", event.name, event.data));
        let v: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
        if v["change"] == "finished" {
            unfinished.retain(|id| v["build"] != *id);
        }
    }
    text
}

#[test]
fn no_page_shows_a_token_secret_or_credential() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("https.token");
    std::fs::write(&token_file, "HTTPS-TOKEN-7f3a\n").unwrap();
    let config = format!(
        "[feeds.private]\nhttps_token_file = \"{}\"\nhttps_user = \"USERNAME-9c1e\"\n",
        token_file.display()
    );
    let d = TestDaemon::start_with(&config);
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let secret_file = d.dir.path().join("webhook.secret");
    std::fs::write(&secret_file, "WEBHOOK-SECRET-41d2\n").unwrap();
    let public = d.add_repo_feed(
        "public",
        &repo,
        "echo built",
        &[
            "--cooldown",
            "0",
            "--secret-file",
            &secret_file.display().to_string(),
        ],
    );
    let private = d.add_feed(
        "private",
        &[
            "--repo",
            "https://USERINFO-ab12:PASSWORD-e5f6@127.0.0.1:1/x.git",
            "--command",
            "true",
            "--cooldown",
            "0",
        ],
    );
    d.admin_ok(&["feed", "edit", "public", "--badge", "on"]);
    d.admin_ok(&["feed", "edit", "private", "--badge", "on"]);
    // The overview's stream, open before the builds: it tells every change of them.
    let mut events = Stream::open(d.addr, "/events", &[]);
    assert_eq!(events.status, 200);
    assert!(events.next_event().expect("the preamble").retry);
    let a = d.admin_json(&["trigger", "public"])["build"]
        .as_u64()
        .unwrap();
    let b = d.admin_json(&["trigger", "private"])["build"]
        .as_u64()
        .unwrap();
    d.wait_build(a, 60);
    d.wait_build(b, 60);
    // An unsigned delivery is refused and recorded.
    assert_eq!(d.post(&public, &[], b"{}").status, 401);
    let tokens: Vec<String> = [public, private]
        .iter()
        .map(|h| h.trim_start_matches("/hooks/").to_owned())
        .collect();
    let mut forbidden = vec![
        "HTTPS-TOKEN-7f3a",
        "USERNAME-9c1e",
        "WEBHOOK-SECRET-41d2",
        "USERINFO-ab12",
        "PASSWORD-e5f6",
        "/hooks/",
    ];
    forbidden.extend(tokens.iter().map(String::as_str));
    let mut pages = crawl(&d, &["public", "private"], &[a, b]);
    pages.push((
        "/events".into(),
        changes_until_finished(&mut events, &[a, b]),
    ));
    for id in [a, b] {
        let path = format!("/builds/{id}/events");
        let (_, stream) = pages.iter().find(|(p, _)| *p == path).expect("crawled");
        assert!(stream.contains("event: end"), "{path}: {stream}");
    }
    assert!(
        pages
            .iter()
            .any(|(p, text)| p == "/feeds/public" && text.contains("401")),
        "the refused delivery is listed"
    );
    for (path, text) in &pages {
        for secret in &forbidden {
            assert!(!text.contains(secret), "{path} shows {secret}:\n{text}");
        }
    }
}

#[test]
fn web_listen_moves_the_pages_off_the_hook_port() {
    let port = closed_port();
    let d = TestDaemon::start_with(&format!(
        "[web]\nlisten = \"127.0.0.1:{port}\"\ntitle = \"Builds <of> us\"\n"
    ));
    let web: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let page = get(web, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Builds &lt;of&gt; us"), "{}", page.body);
    assert_eq!(get(web, "/api/v1/status").status, 200);
    assert_eq!(
        get(web, "/healthz").status,
        404,
        "the web listener serves only the web side"
    );
    assert_eq!(http(web, "POST", "/hooks/abc", &[], b"").status, 404);
    assert_eq!(get(d.addr, "/").status, 404);
    assert_eq!(get(d.addr, "/api/v1/status").status, 404);
    assert_eq!(get(d.addr, "/badge/x.svg").status, 404);
    assert_eq!(get(d.addr, "/healthz").status, 200);
    let checked = Command::new(crate::support::BIN)
        .args(["check-config", "--config"])
        .arg(d.config_path())
        .output()
        .unwrap();
    let effective = String::from_utf8_lossy(&checked.stdout);
    assert!(
        effective.contains("[web]")
            && effective.contains(&format!("listen = \"127.0.0.1:{port}\"")),
        "{effective}"
    );

    let off = TestDaemon::start_with("[web]\nenabled = false\n");
    for path in ["/", "/api/v1/feeds", "/badge/x.svg", "/cc.xml"] {
        assert_eq!(get(off.addr, path).status, 404, "{path}");
    }
    assert_eq!(get(off.addr, "/healthz").status, 200);
}

#[test]
fn feed_add_takes_the_badge_switch_and_feed_show_tells_it() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let url = repo.url();
    d.add_feed(
        "shown",
        &["--repo", &url, "--command", "true", "--badge", "on"],
    );
    d.add_feed("hidden", &["--repo", &url, "--command", "true"]);
    assert_eq!(d.admin_json(&["feed", "show", "shown"])["badge"], true);
    assert_eq!(d.admin_json(&["feed", "show", "hidden"])["badge"], false);
    let shown = d.admin_ok(&["feed", "show", "shown"]);
    assert!(shown.contains("\nbadge:       on\n"), "{shown}");
    let hidden = d.admin_ok(&["feed", "show", "hidden"]);
    assert!(hidden.contains("\nbadge:       off\n"), "{hidden}");
    let cc = get(d.addr, "/cc.xml").body;
    assert!(
        cc.contains("name=\"shown\"") && !cc.contains("hidden"),
        "{cc}"
    );
    d.admin_ok(&["feed", "edit", "shown", "--badge", "off"]);
    let edited = d.admin_ok(&["feed", "show", "shown"]);
    assert!(edited.contains("\nbadge:       off\n"), "{edited}");
}
