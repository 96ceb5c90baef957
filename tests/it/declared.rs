//! Feeds declared in the config file: applied at start and on SIGHUP (the file replaced
//! by a rename, as editors and `git pull` do), refused whole when broken, retired when
//! removed and revived with the same hook URLs, planned before applying, owned by the
//! file against CLI edits, adopted, and carried by export/import.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{hook_path, wait_for, GitRepo, TestDaemon, BIN};

/// A `[feeds.NAME]` table building `repo` with `command`, plus `extra` lines.
fn table(name: &str, repo: &GitRepo, command: &str, extra: &str) -> String {
    format!(
        "[feeds.{name}]\nrepo = {:?}\ncommand = {command:?}\n{extra}\n",
        repo.url()
    )
}

/// Replaces the config file and sends SIGHUP; returns once the daemon logged the
/// reload's outcome (`applied`: reloaded, else refused).
fn reload(d: &mut TestDaemon, text: &str, applied: bool) {
    d.replace_config(text);
    d.reload(applied);
}

/// `hookd check-config --config FILE --plan --json` against the running daemon.
fn plan_output(d: &TestDaemon, text: &str) -> std::process::Output {
    let file = d.dir.path().join("planned.toml");
    std::fs::write(&file, text).unwrap();
    Command::new(BIN)
        .args(["check-config", "--plan", "--json", "--config"])
        .arg(&file)
        .arg("--socket")
        .arg(d.socket())
        .env_remove("HOOKD_SOCKET")
        .env_remove("HOOKD_CONFIG")
        .output()
        .unwrap()
}

fn plan(d: &TestDaemon, text: &str) -> Value {
    let out = plan_output(d, text);
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hook_of(d: &TestDaemon, name: &str) -> String {
    let tokens = d.admin_json(&["hook-url", name]);
    hook_path(tokens[0]["url"].as_str().expect("a hook URL"))
}

/// Posts a generic trigger that must be accepted; returns the build id.
fn trigger(d: &TestDaemon, hook: &str) -> u64 {
    let reply = d.post(hook, &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.json()["build"].as_u64().unwrap()
}

fn feed(d: &TestDaemon, name: &str) -> Value {
    d.admin_json(&["feed", "show", name])
}

#[test]
fn declared_feeds_build_follow_a_renamed_file_on_sighup_and_survive_kill9() {
    let src = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(src.path().join("repo"));
    let config = |web: &str| {
        table("web", &repo, web, "cooldown = 0") + &table("api", &repo, "true", "cooldown = 0")
    };
    let mut d = TestDaemon::start_with(&config("echo web-v1"));
    let list = d.admin_json(&["feed", "list"]);
    let declared: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap(),
                f["declared"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(declared, [("api", true), ("web", true)]);
    assert!(d.admin_ok(&["feed", "list"]).contains("declared"));
    let web = hook_of(&d, "web");
    let first = trigger(&d, &web);
    assert_eq!(d.wait_build(first, 60)["status"], "succeeded");
    assert!(d.log(first).contains("web-v1"));

    let edited = config("echo web-v2");
    let planned = plan(&d, &edited);
    assert_eq!(
        planned["changes"],
        json!([{"feed": "web", "action": "change", "keys": ["command"], "line": 1}])
    );
    assert_eq!(planned["unchanged"], 1);
    assert_eq!(
        feed(&d, "web")["command"],
        json!({"shell": "echo web-v1"}),
        "a plan applies nothing"
    );
    reload(&mut d, &edited, true);
    assert_eq!(plan(&d, &edited)["changes"], json!([]));
    assert_eq!(hook_of(&d, "web"), web, "the hook URL stays");
    let second = trigger(&d, &web);
    assert_eq!(d.wait_build(second, 60)["status"], "succeeded");
    assert!(d.log(second).contains("web-v2"));

    d.restart();
    assert_eq!(hook_of(&d, "web"), web, "tokens survive kill -9");
    assert_eq!(hook_of(&d, "api").len(), web.len());
    let history = d.admin_json(&["builds", "web"]);
    assert_eq!(history.as_array().unwrap().len(), 2);
    let third = trigger(&d, &web);
    assert_eq!(d.wait_build(third, 60)["status"], "succeeded");
    assert!(d.log(third).contains("web-v2"));
}

#[test]
fn a_broken_file_on_sighup_changes_nothing_and_says_why() {
    let src = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(src.path().join("repo"));
    let good = table("web", &repo, "echo web-v1", "cooldown = 0");
    let notify_path = src.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut d =
        TestDaemon::start_with_env(&good, &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())]);
    let web = hook_of(&d, "web");
    let file = d.config_path().display().to_string();
    let broken = [
        ("[feeds.web\nrepo = \"/x\"\n".to_owned(), "line 1"),
        (good.clone() + "comand = \"echo typo\"\n", "comand"),
        (
            good.replace("echo web-v1", "echo web-v2") + "[feeds.api]\ncommand = \"true\"\n",
            "line 5, feeds.api: sets command but no repo",
        ),
    ];
    for (text, reason) in broken {
        reload(&mut d, &text, false);
        let logs = d.logs();
        let refusal = logs
            .lines()
            .rfind(|l| l.contains("configuration reload refused"))
            .unwrap();
        assert!(refusal.contains(&file), "names the file: {refusal}");
        assert!(logs.contains(reason), "names {reason:?}: {logs}");
        let status = wait_for(30, "the refusal in systemd's status", || {
            let mut buf = [0u8; 4096];
            let n = notify.recv(&mut buf).expect("a notification");
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            message
                .starts_with("STATUS=reload refused")
                .then_some(message)
        });
        assert!(status.contains(&file), "{status}");
        let build = trigger(&d, &web);
        assert_eq!(d.wait_build(build, 60)["status"], "succeeded");
        assert!(
            d.log(build).contains("web-v1"),
            "the old feed keeps building"
        );
    }
    assert_eq!(
        d.admin_json(&["feed", "list"]).as_array().unwrap().len(),
        1,
        "nothing added"
    );
}

#[test]
fn removal_retires_and_redeclaring_revives_with_the_same_hook_url() {
    let src = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(src.path().join("repo"));
    repo.git(&["branch", "dev"]);
    let gate = src.path().join("gate");
    let gated = format!(
        "while [ ! -e '{}' ]; do sleep 0.02; done; echo done",
        gate.display()
    );
    let web = table(
        "web",
        &repo,
        &gated,
        "branches = [\"main\", \"dev\"]\ncooldown = 3600",
    );
    let api = table("api", &repo, "true", "cooldown = 0");
    let mut d = TestDaemon::start_with(&(web.clone() + &api));
    let hook = hook_of(&d, "web");
    let running = trigger(&d, &hook);
    wait_for(60, "the first build runs", || {
        (d.build(running)["status"] == "running").then_some(())
    });
    let deferred = d.post(&hook, &[], b"").json();
    assert_eq!(deferred["status"], "deferred", "{deferred}");
    let queued = d.admin_json(&["trigger", "web", "--branch", "dev", "--force"]);
    assert_eq!(queued["status"], "queued", "{queued}");

    assert_eq!(
        plan(&d, &api)["changes"],
        json!([{"feed": "web", "action": "retire", "keys": [], "line": null}])
    );
    reload(&mut d, &api, true);
    for waiting in [&deferred, &queued] {
        let id = waiting["build"].as_u64().unwrap();
        assert_eq!(d.build(id)["status"], "cancelled", "build {id}");
    }
    assert_eq!(
        d.build(running)["status"],
        "running",
        "a running build finishes"
    );
    assert_eq!(d.post(&hook, &[], b"").status, 404);
    let (_, refused) = d.admin_err(&["trigger", "web"]);
    assert!(refused.contains("retired"), "{refused}");
    let shown = feed(&d, "web");
    assert!(shown["retired"].is_string(), "{shown}");
    assert!(d.admin_ok(&["feed", "list"]).contains("retired"));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(d.wait_build(running, 60)["status"], "succeeded");
    let history = d.admin_json(&["builds", "web"]);
    assert_eq!(
        history.as_array().unwrap().len(),
        3,
        "history stays: {history}"
    );

    let both = web + &api;
    assert_eq!(
        plan(&d, &both)["changes"],
        json!([{"feed": "web", "action": "revive", "keys": [], "line": 1}])
    );
    reload(&mut d, &both, true);
    assert_eq!(hook_of(&d, "web"), hook, "the same hook URL comes back");
    assert!(feed(&d, "web").get("retired").is_none());
    assert_eq!(d.post(&hook, &[], b"").status, 202);
}

#[test]
fn the_cli_refuses_declared_feeds_and_adopt_hands_one_to_the_file() {
    let src = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(src.path().join("repo"));
    let web = table("web", &repo, "true", "cooldown = 0");
    let mut d = TestDaemon::start_with(&web);
    let at = format!("{} line 1", d.config_path().display());
    for args in [
        &["feed", "edit", "web", "--cooldown", "5"][..],
        &["feed", "remove", "web"],
    ] {
        let (code, message) = d.admin_err(args);
        assert_eq!(code, 1);
        assert!(message.contains(&at), "{args:?}: {message}");
    }
    d.admin_ok(&["feed", "pause", "web"]);
    d.admin_ok(&["feed", "resume", "web"]);
    d.admin_ok(&["token", "add", "web", "--label", "gitlab"]);

    let url = repo.url();
    let cli_hook = d.add_feed(
        "cli",
        &["--repo", &url, "--command", "echo cli", "--cooldown", "0"],
    );
    let both = web.clone() + &table("cli", &repo, "echo file", "cooldown = 0");
    let out = plan_output(&d, &both);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("feed adopt cli"));
    reload(&mut d, &both, false);
    assert!(d.logs().contains("hookd admin feed adopt cli"));
    assert_eq!(feed(&d, "cli")["command"], json!({"shell": "echo cli"}));
    assert_eq!(feed(&d, "cli")["declared"], false);

    let adopted = d.admin_ok(&["feed", "adopt", "cli"]);
    assert!(adopted.contains("line 5"), "{adopted}");
    assert_eq!(
        plan(&d, &both)["changes"],
        json!([{"feed": "cli", "action": "change", "keys": ["command"], "line": 5}])
    );
    reload(&mut d, &both, true);
    let cli = feed(&d, "cli");
    assert_eq!(cli["command"], json!({"shell": "echo file"}));
    assert_eq!(cli["declared"], true);
    assert_eq!(hook_of(&d, "cli"), cli_hook, "adopting keeps the hook URL");
    let (_, refused) = d.admin_err(&["feed", "edit", "cli", "--cooldown", "5"]);
    assert!(refused.contains("line 5"), "{refused}");
}

#[test]
fn export_and_import_carry_declared_and_cli_feeds() {
    let src = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(src.path().join("repo"));
    let config = table("web", &repo, "true", "cooldown = 0");
    let a = TestDaemon::start_with(&config);
    let url = repo.url();
    a.add_feed("cli", &["--repo", &url, "--command", "true"]);
    let backup = src.path().join("backup.json");
    a.admin_ok(&["export", "--output", backup.to_str().unwrap()]);

    let mut b = TestDaemon::start();
    b.admin_ok(&["import", backup.to_str().unwrap()]);
    let kinds = |d: &TestDaemon| {
        d.admin_json(&["feed", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].clone(), f["declared"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&b), kinds(&a));
    for name in ["web", "cli"] {
        assert_eq!(hook_of(&b, name), hook_of(&a, name), "{name}");
    }
    assert_eq!(
        plan(&b, &config)["changes"],
        json!([]),
        "the file finds its feed"
    );
    reload(&mut b, &config, true);
    assert_eq!(b.post(&hook_of(&a, "web"), &[], b"").status, 202);
}
