//! Commit statuses through the outbox: real builds of a real repository, posted to a
//! local server that accepts exactly each forge's documented request
//! (`tests/shared/forge.rs`).

use std::path::PathBuf;

use crate::support::forge::{Canned, ForgeKind, ForgeServer, Received, Verdict};
use crate::support::{closed_port, files_below, http, wait_for, GitRepo, TestDaemon};

/// The token every test forge expects; it must never show up anywhere else.
const TOKEN: &str = "tok-3c1d9e0b7a52f4e8";

/// Seconds any one wait may take: generous, for a loaded machine running tests in
/// parallel (every wait polls for an exact state, so it ends as soon as that holds).
const WAIT: u64 = 120;

/// A daemon whose feed `web` (made with `feed add`) builds a fresh repository and
/// posts statuses per `[feeds.web.status]` to `forge` with `token`.
struct Setup {
    d: TestDaemon,
    repo: GitRepo,
    /// Holds the token file, outside the data dir.
    keys: tempfile::TempDir,
}

impl Setup {
    /// `extra` goes on top of the config; the token file holds `token`.
    fn new(forge: &ForgeServer, extra: &str, token: &str) -> Self {
        Self::at(
            &forge.status_table("web", &PathBuf::from("TOKEN_FILE")),
            extra,
            token,
        )
    }

    /// With the status table `table` (its token file written `TOKEN_FILE`).
    fn at(table: &str, extra: &str, token: &str) -> Self {
        Self::with_env(table, extra, token, &[])
    }

    /// [`Setup::at`] with extra environment for the daemon.
    fn with_env(table: &str, extra: &str, token: &str, env: &[(&str, &str)]) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let token_file = keys.path().join("forge.token");
        write_token(&token_file, token);
        let table = table.replace("TOKEN_FILE", &token_file.display().to_string());
        let d = TestDaemon::start_with_env(&format!("{extra}\n{table}"), env);
        let repo = GitRepo::new(d.dir.path().join("repo"));
        // The command runs what the test last wrote to build.cmd.
        let cmd = d.dir.path().join("build.cmd");
        std::fs::write(&cmd, "true").unwrap();
        let command = format!("sh -c \"$(cat '{}')\"", cmd.display());
        d.add_repo_feed("web", &repo, &command, &["--cooldown", "0"]);
        Setup { d, repo, keys }
    }

    fn token_file(&self) -> PathBuf {
        self.keys.path().join("forge.token")
    }

    /// The next builds wait for `gate-TAG` (when gated), then exit `code`.
    fn command(&self, tag: &str, gated: bool, code: i32) -> PathBuf {
        let gate = self.d.dir.path().join(format!("gate-{tag}"));
        let wait = match gated {
            true => format!("while [ ! -e '{}' ]; do sleep 0.05; done; ", gate.display()),
            false => String::new(),
        };
        std::fs::write(
            self.d.dir.path().join("build.cmd"),
            format!("{wait}exit {code}"),
        )
        .unwrap();
        gate
    }

    /// A new commit and a build of it; returns (build id, commit).
    fn trigger(&self, tag: &str) -> (u64, String) {
        let commit = self.repo.commit("file", tag, tag);
        let reply = self.d.admin_json(&["trigger", "web", "--force"]);
        (reply["build"].as_u64().unwrap(), commit)
    }

    /// Waits until the outbox is empty: everything owed was delivered.
    fn wait_outbox_empty(&self) {
        wait_for(WAIT, "the outbox to empty", || {
            let items = self.d.admin_json(&["outbox"]);
            items.as_array().unwrap().is_empty().then_some(())
        });
    }

    /// Waits for the outbox items as `admin outbox --json` lists them, until `cond`.
    fn wait_outbox(
        &self,
        what: &str,
        cond: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        wait_for(WAIT, what, || {
            let items = self.d.admin_json(&["outbox"]);
            let items = items.as_array().unwrap().clone();
            cond(&items).then_some(items)
        })
    }
}

impl Drop for Setup {
    /// A failing test shows what the daemon logged (the outbox's attempts).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("daemon log:\n{}", self.d.logs());
        }
    }
}

fn write_token(path: &std::path::Path, token: &str) {
    std::fs::write(path, format!("{token}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The requests for `commit` with verdict `verdict`.
fn of(got: &[Received], commit: &str, verdict: Verdict) -> Vec<Received> {
    got.iter()
        .filter(|r| r.commit().as_deref() == Some(commit) && r.verdict == verdict)
        .cloned()
        .collect()
}

/// One build gated until its running post arrived, exiting `code`; returns the build
/// id, its commit and the accepted posts for that commit (running, then final).
fn gated_build(
    s: &Setup,
    forge: &ForgeServer,
    tag: &str,
    code: i32,
) -> (u64, String, Vec<Received>) {
    let gate = s.command(tag, true, code);
    let (id, commit) = s.trigger(tag);
    forge.wait_until(WAIT, "the running post", |got| {
        !of(got, &commit, Verdict::Accepted).is_empty()
    });
    std::fs::write(&gate, "").unwrap();
    s.d.wait_build(id, WAIT);
    forge.wait_until(WAIT, "the final post", |got| {
        of(got, &commit, Verdict::Accepted).len() == 2
    });
    (
        id,
        commit.clone(),
        of(&forge.accepted(), &commit, Verdict::Accepted),
    )
}

fn states(posts: &[Received]) -> Vec<String> {
    posts.iter().map(Received::state).collect()
}

#[test]
fn github_gets_pending_then_success_or_failure_on_the_resolved_commit() {
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    let s = Setup::new(&forge, "public_url = \"https://ci.example.com\"", TOKEN);
    let (id, commit, posts) = gated_build(&s, &forge, "ok", 0);
    assert_eq!(states(&posts), ["pending", "success"], "{posts:#?}");
    let last = posts[1].json();
    assert_eq!(last["context"], "hookd/web");
    assert_eq!(
        last["target_url"],
        format!("https://ci.example.com/builds/{id}")
    );
    let description = last["description"].as_str().unwrap();
    assert!(description.starts_with("succeeded in "), "{last}");
    assert_eq!(s.d.build(id)["commit"], commit.as_str());

    let (_, _, posts) = gated_build(&s, &forge, "bad", 2);
    assert_eq!(states(&posts), ["pending", "failure"], "{posts:#?}");
    let description = posts[1].json()["description"].as_str().unwrap().to_owned();
    assert!(
        description.starts_with("failed (exit 2) in "),
        "{description}"
    );
    assert!(forge.rejected().is_empty(), "{:#?}", forge.rejected());
    s.wait_outbox_empty();
}

/// Each forge: a succeeding and a failing build, with the states of its own map.
fn forge_round(kind: ForgeKind, running: &str, success: &str, failure: &str) {
    let forge = ForgeServer::start(kind, TOKEN);
    let s = Setup::new(&forge, "", TOKEN);
    let (_, _, posts) = gated_build(&s, &forge, "ok", 0);
    assert_eq!(states(&posts), [running, success], "{posts:#?}");
    let (_, _, posts) = gated_build(&s, &forge, "bad", 2);
    assert_eq!(states(&posts), [running, failure], "{posts:#?}");
    assert!(forge.rejected().is_empty(), "{:#?}", forge.rejected());
    s.wait_outbox_empty();
}

#[test]
fn gitlab_gets_running_then_success_or_failed() {
    forge_round(ForgeKind::Gitlab, "running", "success", "failed");
}

#[test]
fn gitea_gets_pending_then_success_or_failure() {
    forge_round(ForgeKind::Gitea, "pending", "success", "failure");
}

#[test]
fn forgejo_gets_pending_then_success_or_failure() {
    forge_round(ForgeKind::Forgejo, "pending", "success", "failure");
}

#[test]
fn bitbucket_cloud_gets_inprogress_then_successful_or_failed() {
    forge_round(
        ForgeKind::BitbucketCloud,
        "INPROGRESS",
        "SUCCESSFUL",
        "FAILED",
    );
}

#[test]
fn bitbucket_server_gets_inprogress_then_successful_or_failed() {
    forge_round(
        ForgeKind::BitbucketServer,
        "INPROGRESS",
        "SUCCESSFUL",
        "FAILED",
    );
}

#[test]
fn azure_devops_gets_pending_then_succeeded_or_failed() {
    forge_round(ForgeKind::AzureDevops, "pending", "succeeded", "failed");
}

#[test]
fn gitlab_repeated_state_400_counts_as_done() {
    let forge = ForgeServer::start(ForgeKind::Gitlab, TOKEN);
    let s = Setup::new(&forge, "", TOKEN);
    // GitLab takes the running state, but the reply is lost: hookd posts it again and
    // GitLab answers 400 "Cannot transition status", which is done, not retried.
    forge.lose_replies(1);
    let gate = s.command("ok", true, 0);
    let (id, commit) = s.trigger("ok");
    forge.wait_until(WAIT, "the repeated running post", |got| {
        !of(got, &commit, Verdict::Repeated).is_empty()
    });
    s.wait_outbox("the running post to be done", |items| items.is_empty());
    std::fs::write(&gate, "").unwrap();
    s.d.wait_build(id, WAIT);
    s.wait_outbox_empty();
    forge.wait_until(WAIT, "the final post", |got| {
        !of(got, &commit, Verdict::Accepted).is_empty()
    });
    let seen: Vec<_> = forge
        .received()
        .iter()
        .filter(|r| r.commit().as_deref() == Some(commit.as_str()))
        .map(|r| (r.state(), r.verdict.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("running".to_owned(), Verdict::Lost),
            ("running".to_owned(), Verdict::Repeated),
            ("success".to_owned(), Verdict::Accepted),
        ]
    );
}

#[test]
fn a_forge_down_then_answering_503_gets_the_final_post_once_it_recovers() {
    let port = closed_port();
    let table = format!(
        "[feeds.web.status]\nforge = \"github\"\napi_url = \"http://127.0.0.1:{port}\"\n\
         repo = \"octo/web\"\ntoken_file = \"TOKEN_FILE\"\n"
    );
    let s = Setup::at(&table, "", TOKEN);
    s.command("ok", false, 0);
    let (id, commit) = s.trigger("ok");
    s.d.wait_build(id, WAIT);
    // Connection refused, twice at least, for the final post (the running one, never
    // sent, was replaced by it).
    let items = s.wait_outbox("two refused attempts", |items| {
        items.len() == 1
            && items[0]["status"] == "succeeded"
            && items[0]["attempts"].as_u64() >= Some(2)
    });
    assert_eq!(items[0]["status"], "succeeded");
    let error = items[0]["last_error"].as_str().unwrap();
    assert!(error.contains("refused"), "{error}");
    // The forge comes back, first answering 503 with Retry-After.
    let busy = Canned::new(503, &[("Retry-After", "1")], r#"{"message":"busy"}"#);
    let forge = ForgeServer::start_scripted(ForgeKind::Github, TOKEN, port, vec![busy]);
    s.wait_outbox_empty();
    let got: Vec<_> = forge
        .received()
        .iter()
        .map(|r| (r.state(), r.verdict.clone(), r.commit()))
        .collect();
    let c = Some(commit);
    assert_eq!(
        got,
        [
            ("success".to_owned(), Verdict::Scripted(503), c.clone()),
            ("success".to_owned(), Verdict::Accepted, c),
        ]
    );
}

#[test]
fn kill_9_between_the_end_and_its_post_posts_it_once_after_restart() {
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    let mut s = Setup::new(&forge, "", TOKEN);
    let gate = s.command("ok", true, 0);
    let (id, commit) = s.trigger("ok");
    forge.wait_until(WAIT, "the running post", |got| {
        !of(got, &commit, Verdict::Accepted).is_empty()
    });
    // The forge takes the final post but never answers; the daemon dies meanwhile.
    forge.hold(true);
    std::fs::write(&gate, "").unwrap();
    forge.wait_until(WAIT, "the final post, held", |got| {
        !of(got, &commit, Verdict::Held).is_empty()
    });
    s.d.kill9();
    forge.hold(false);
    s.d.restart();
    assert_eq!(s.d.build(id)["status"], "succeeded");
    s.wait_outbox_empty();
    let finals: Vec<_> = of(&forge.received(), &commit, Verdict::Accepted)
        .iter()
        .map(Received::state)
        .collect();
    assert_eq!(finals, ["pending", "success"], "{:#?}", forge.received());
}

#[test]
fn a_401_is_kept_as_failed_retried_after_a_reload_and_no_token_leaks() {
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    let wrong = "wrong-token-5d41402abc4b2a76";
    let s = Setup::new(&forge, "", wrong);
    // The build waits until its running post was refused, so that post is attempted
    // (not replaced by the final one first).
    let gate = s.command("ok", true, 0);
    let (id, commit) = s.trigger("ok");
    forge.wait_until(WAIT, "the refused running post", |got| {
        !of(got, &commit, Verdict::Unauthorized).is_empty()
    });
    std::fs::write(&gate, "").unwrap();
    s.d.wait_build(id, WAIT);
    // The running post and the final one are refused for good, once each.
    let items = s.wait_outbox("both posts failed", |items| {
        items.len() == 2 && items.iter().all(|i| i["state"] == "failed")
    });
    for item in &items {
        assert_eq!(item["attempts"], 1);
        assert_eq!(item["commit"], commit.as_str());
        let error = item["last_error"].as_str().unwrap();
        assert_eq!(error, r#"HTTP 401: {"message":"Bad credentials"}"#);
        assert!(item["next_attempt"].is_null());
    }
    let text = s.d.admin_ok(&["outbox"]);
    assert!(
        text.starts_with(
            "ID  FEED  BUILD  KIND    STATUS     COMMIT        STATE   ATTEMPTS  NEXT\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    last error: HTTP 401: {\"message\":\"Bad credentials\"}\n"),
        "{text}"
    );
    let metrics = http(s.d.addr, "GET", "/metrics", &[], b"").body;
    assert!(metrics.contains("hookd_outbox_pending 0\n"), "{metrics}");
    assert!(
        metrics.contains("hookd_outbox_sent_total{kind=\"status\",outcome=\"failed\"} 2\n"),
        "{metrics}"
    );

    // The operator fixes the token, reloads, retries the final post and drops the other.
    write_token(&s.token_file(), TOKEN);
    s.d.signal(libc::SIGHUP);
    wait_for(WAIT, "the reload", || {
        s.d.logs().contains("configuration reloaded").then_some(())
    });
    let (running, last) = (items[0]["id"].to_string(), items[1]["id"].to_string());
    assert_eq!(items[1]["status"], "succeeded");
    let out = s.d.admin_ok(&["outbox", "retry", &last]);
    assert_eq!(out, format!("outbox item {last} will be sent again now\n"));
    forge.wait_until(WAIT, "the retried post", |got| {
        !of(got, &commit, Verdict::Accepted).is_empty()
    });
    s.wait_outbox("the retried post to be done", |items| items.len() == 1);
    s.d.admin_ok(&["outbox", "drop", &running]);
    s.wait_outbox_empty();
    let (code, err) = s.d.admin_err(&["outbox", "drop", &running]);
    assert_eq!(
        (code, err.trim_end()),
        (1, format!("hookd: no outbox item {running}").as_str())
    );
    assert_eq!(
        states(&of(&forge.received(), &commit, Verdict::Accepted)),
        ["success"]
    );
    let metrics = http(s.d.addr, "GET", "/metrics", &[], b"").body;
    assert!(
        metrics.contains("hookd_outbox_sent_total{kind=\"status\",outcome=\"sent\"} 1\n"),
        "{metrics}"
    );

    // Neither token appears in a log line, an admin reply or a file of the data dir.
    let replies = [
        s.d.admin_ok(&["--json", "outbox"]),
        s.d.admin_ok(&["--json", "feed", "show", "web"]),
        s.d.admin_ok(&["--json", "build", "show", &id.to_string()]),
    ];
    for secret in [TOKEN, wrong] {
        assert!(!s.d.logs().contains(secret), "a log line holds a token");
        for reply in &replies {
            assert!(!reply.contains(secret), "an admin reply holds a token");
        }
        for file in files_below(&s.d.data_dir()) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{} holds a token", file.display());
        }
    }
}

#[test]
fn a_post_that_goes_through_brings_its_forges_backlog_forward() {
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    let s = Setup::new(&forge, "", TOKEN);
    let gate = s.command("a", true, 0);
    let (a, first) = s.trigger("a");
    forge.wait_until(WAIT, "the first build's running post", |got| {
        !of(got, &first, Verdict::Accepted).is_empty()
    });
    // The final post of the first build is told to come back in an hour.
    forge.script(503, &[("Retry-After", "3600")], "");
    std::fs::write(&gate, "").unwrap();
    s.d.wait_build(a, WAIT);
    s.wait_outbox("the final post to wait an hour", |items| {
        items.len() == 1 && items[0]["attempts"] == 1
    });
    // The next build's post goes through: the waiting one goes now, not in an hour.
    let gate = s.command("b", true, 0);
    let (b, second) = s.trigger("b");
    forge.wait_until(WAIT, "the first build's final post", |got| {
        of(got, &first, Verdict::Accepted).len() == 2
    });
    std::fs::write(&gate, "").unwrap();
    s.d.wait_build(b, WAIT);
    s.wait_outbox_empty();
    assert_eq!(
        states(&of(&forge.received(), &first, Verdict::Accepted)),
        ["pending", "success"]
    );
    assert_eq!(
        states(&of(&forge.received(), &second, Verdict::Accepted)),
        ["pending", "success"]
    );
}

/// The proxy's log: each request line with its `Proxy-Authorization`.
type Tunnels = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A forward proxy that only tunnels (`CONNECT`), as a corporate HTTPS proxy does;
/// records each request line with its `Proxy-Authorization`.
struct ConnectProxy {
    addr: std::net::SocketAddr,
    seen: Tunnels,
}

impl ConnectProxy {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Tunnels = Default::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap_or_default();
                    let mut auth = None;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((n, v)) = h.split_once(':') {
                            if n.eq_ignore_ascii_case("proxy-authorization") {
                                auth = Some(v.trim().to_owned());
                            }
                        }
                    }
                    let line = line.trim().to_owned();
                    log.lock().unwrap().push((line.clone(), auth));
                    let target = line.split(' ').nth(1).unwrap_or_default().to_owned();
                    let Ok(upstream) = std::net::TcpStream::connect(&target) else {
                        let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                        return;
                    };
                    let _ = (&client).write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
                    let mut down_w = client;
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut reader, &mut up_w);
                        let _ = up_w.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut up_r, &mut down_w);
                    let _ = down_w.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        ConnectProxy { addr, seen }
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn posts_go_through_the_proxy_the_environment_names_unless_no_proxy_exempts_them() {
    use base64::Engine as _;
    let forge = ForgeServer::start(ForgeKind::Github, TOKEN);
    let proxy = ConnectProxy::start();
    let proxy_url = format!("http://hookd:s3cret@{}", proxy.addr);
    // The forge is reached as 127.0.0.1 (proxied) by `web`, as localhost (exempt) by
    // `direct`.
    let port = forge.addr.port();
    let direct_table = format!(
        "[feeds.direct.status]\nforge = \"github\"\napi_url = \"http://localhost:{port}\"\n\
         repo = \"octo/web\"\ntoken_file = \"TOKEN_FILE\"\n"
    );
    let table = format!(
        "{}{direct_table}",
        forge.status_table("web", &PathBuf::from("TOKEN_FILE"))
    );
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("NO_PROXY", "localhost"),
    ];
    let s = Setup::with_env(&table, "", TOKEN, &env);
    let (_, commit, posts) = gated_build(&s, &forge, "ok", 0);
    assert_eq!(states(&posts), ["pending", "success"], "{posts:#?}");
    let basic = base64::engine::general_purpose::STANDARD.encode("hookd:s3cret");
    let tunnel = (
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1"),
        Some(format!("Basic {basic}")),
    );
    assert!(proxy.seen().contains(&tunnel), "{:?}", proxy.seen());

    // The exempt feed posts straight to the forge: the proxy sees nothing new.
    let tunnels = proxy.seen().len();
    let cmd = s.d.dir.path().join("build.cmd");
    let command = format!("sh -c \"$(cat '{}')\"", cmd.display());
    s.d.add_repo_feed("direct", &s.repo, &command, &["--cooldown", "0"]);
    s.command("direct", false, 0);
    let id = s.d.admin_json(&["trigger", "direct", "--force"])["build"]
        .as_u64()
        .unwrap();
    s.d.wait_build(id, WAIT);
    s.wait_outbox_empty();
    let direct = of(&forge.received(), &commit, Verdict::Accepted)
        .into_iter()
        .filter(|r| r.json()["context"] == "hookd/direct")
        .map(|r| r.state())
        .collect::<Vec<_>>();
    // Its running post may have been replaced by the final one before it went out.
    assert_eq!(
        direct.last().map(String::as_str),
        Some("success"),
        "{direct:?}"
    );
    assert_eq!(proxy.seen().len(), tunnels, "{:?}", proxy.seen());
}
