//! Notifications through the real daemon: `[[notify]]` webhooks received by a local
//! HTTP server and verified by an independent Standard Webhooks implementation (the
//! `standardwebhooks` package from PyPI, run by `tests/helpers/verify_standard_webhook.py`
//! from the venv `.ci/run` makes under `target/`), `exec` targets, real builds that
//! succeed and fail, a `kill -9` before the notification, and `admin notify test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::forge::{ForgeServer, Received};
use crate::support::{closed_port, files_below, wait_for, GitRepo, TestDaemon};

/// A secret in the spec's form (24 random bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A path no log, reply or store file may ever show: the secret part of the URL.
const URL_SECRET: &str = "T0SECRET/B0SECRET/xoxSECRETPATH";

/// The venv's python with `standardwebhooks`, or `None` after saying why the test
/// skips (as the browser test does without chromium).
fn verifier() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/webhooks-venv/bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        println!(
            "SKIPPED standard webhooks verification: {} cannot import standardwebhooks \
             (.ci/run makes it: python3 -m venv target/webhooks-venv && target/webhooks-venv/bin/pip install standardwebhooks)",
            python.display()
        );
        return None;
    }
    Some(python)
}

/// Runs the independent verifier on one received request: the payload it verified,
/// or why it refused.
fn verify(python: &Path, dir: &Path, secret_file: &Path, got: &Received) -> Result<Value, String> {
    let headers: serde_json::Map<String, Value> = got
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    let request = dir.join("request.json");
    let doc = serde_json::json!({ "headers": headers, "body": got.body });
    std::fs::write(&request, doc.to_string()).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/verify_standard_webhook.py");
    let out = Command::new(python)
        .arg(script)
        .arg(secret_file)
        .arg(&request)
        .output()
        .expect("run the verifier");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match out.status.success() {
        true => serde_json::from_str(&text).map_err(|e| format!("{e}: {text}")),
        false => Err(text),
    }
}

/// Writes the key files of a webhook target into the daemon's dir; returns the
/// `[[notify]]` table.
fn webhook_table(
    d: &TestDaemon,
    server: &ForgeServer,
    name: &str,
    on: &str,
    extra: &str,
) -> String {
    let url_file = d.dir.path().join(format!("{name}.url"));
    let secret_file = d.dir.path().join(format!("{name}.secret"));
    std::fs::write(&url_file, format!("http://{}/{URL_SECRET}\n", server.addr)).unwrap();
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    format!(
        "[[notify]]\nname = \"{name}\"\non = [{on}]\nkind = \"webhook\"\nurl_file = \"{}\"\n\
         secret_file = \"{}\"\n{extra}\n",
        url_file.display(),
        secret_file.display()
    )
}

/// A daemon with `config`, and a repository whose feed `web` runs `command`.
fn daemon(config: &str, command: &str) -> (TestDaemon, GitRepo) {
    let d = TestDaemon::start_with(config);
    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.add_repo_feed("web", &repo, command, &["--cooldown", "0"]);
    (d, repo)
}

/// Triggers a build of `web` and waits for its end; returns its id.
fn build(d: &TestDaemon) -> u64 {
    let id = d.admin_json(&["trigger", "web"])["build"].as_u64().unwrap();
    d.wait_build(id, 60);
    id
}

/// Waits until the outbox holds nothing: every notification is delivered.
fn outbox_drained(d: &TestDaemon) {
    wait_for(60, "the outbox to be empty", || {
        let items = d.admin_json(&["outbox"]);
        items.as_array().is_some_and(Vec::is_empty).then_some(())
    });
}

#[test]
fn a_webhook_notification_is_verified_by_an_independent_standard_webhooks_library() {
    let server = ForgeServer::start_plain();
    let d = TestDaemon::start();
    let table = webhook_table(&d, &server, "hook", "\"succeeded\"", "");
    let mut d = d;
    d.set_config(&format!("public_url = \"https://ci.example.com\"\n{table}"));
    d.restart();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.add_repo_feed("web", &repo, "true", &["--cooldown", "0"]);
    let commit = repo.commit("f", "1", "Add f");
    let id = build(&d);
    server.wait_until(60, "one notification", |got| got.len() == 1);
    outbox_drained(&d);
    let got = &server.received()[0];
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("POST", &*format!("/{URL_SECRET}"))
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("webhook-id"), Some(&*format!("hookd-{id}-1")));
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["type"], "build.succeeded");
    let data = &body["data"];
    assert_eq!(data["feed"], "web");
    assert_eq!(data["build"], id);
    assert_eq!(data["status"], "succeeded");
    assert_eq!(data["previous_status"], Value::Null);
    assert_eq!(data["ref"], "refs/heads/main");
    assert_eq!(data["commit"], commit);
    assert_eq!(data["subject"], "Add f");
    assert_eq!(data["trigger"], "manual");
    assert_eq!(data["url"], format!("https://ci.example.com/builds/{id}"));
    assert!(data["duration_ms"].as_i64().is_some(), "{data}");

    let Some(python) = verifier() else { return };
    let secret_file = d.dir.path().join("hook.secret");
    let verified = verify(&python, d.dir.path(), &secret_file, got).expect("verified");
    assert_eq!(verified, body);
    // The verifier refuses what hookd did not sign: it is a real check.
    let mut forged = got.clone();
    forged.body = got.body.replace("succeeded", "failed");
    let refused = verify(&python, d.dir.path(), &secret_file, &forged).unwrap_err();
    assert!(refused.contains("No matching signature"), "{refused}");
}

#[test]
fn builds_that_succeed_fail_fail_succeed_notify_broken_once_failed_twice_fixed_once() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("fail");
    let table = |event: &str| {
        let log = dir.path().join(format!("{event}.log"));
        format!(
            "[[notify]]\nname = \"{event}\"\non = [\"{event}\"]\nkind = \"exec\"\n\
             command = 'echo \"$HOOKD_BUILD_ID $HOOKD_EVENT $HOOKD_STATUS $HOOKD_PREVIOUS_STATUS\" >> {}'\n",
            log.display()
        )
    };
    let config = ["broken", "failed", "fixed"].map(table).concat();
    let command = format!("test ! -e {}", flag.display());
    let (d, _repo) = daemon(&config, &command);
    let mut ids = Vec::new();
    for fail in [false, true, true, false] {
        match fail {
            true => std::fs::write(&flag, "").unwrap(),
            false => {
                let _ = std::fs::remove_file(&flag);
            }
        }
        ids.push(build(&d));
    }
    let statuses: Vec<_> = ids
        .iter()
        .map(|id| d.build(*id)["status"].clone())
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "failed", "succeeded"]);
    outbox_drained(&d);
    // Sorted: notifications of different builds may be sent side by side.
    let lines = |event: &str| {
        let text =
            std::fs::read_to_string(dir.path().join(format!("{event}.log"))).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort_by_key(|l| l.split(' ').next().and_then(|id| id.parse::<u64>().ok()));
        lines
    };
    let (second, third, fourth) = (ids[1], ids[2], ids[3]);
    assert_eq!(
        lines("broken"),
        [format!("{second} broken failed succeeded")]
    );
    assert_eq!(
        lines("failed"),
        [
            format!("{second} failed failed succeeded"),
            // The second failure's previous result is the first failure.
            format!("{third} failed failed failed"),
        ]
    );
    assert_eq!(lines("fixed"), [format!("{fourth} fixed succeeded failed")]);
}

#[test]
fn an_exec_target_gets_the_build_environment_and_the_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let (env_file, stdin_file) = (dir.path().join("env"), dir.path().join("stdin.json"));
    let config = format!(
        "[[notify]]\non = [\"failed\"]\nkind = \"exec\"\n\
         command = [\"/bin/sh\", \"-c\", \"env > {}; cat > {}; echo $$ > {2}/pid; cat /proc/$$/stat > {2}/stat\"]\n\
         timeout = 20\n",
        env_file.display(),
        stdin_file.display(),
        dir.path().display()
    );
    let (d, repo) = daemon(&config, "exit 3");
    let commit = repo.head();
    let id = build(&d);
    outbox_drained(&d);
    let env = std::fs::read_to_string(&env_file).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    assert_eq!(var("HOOKD_FEED").as_deref(), Some("web"));
    assert_eq!(var("HOOKD_BUILD_ID"), Some(id.to_string()));
    assert_eq!(var("HOOKD_COMMIT"), Some(commit.clone()));
    assert_eq!(var("HOOKD_REF").as_deref(), Some("refs/heads/main"));
    assert_eq!(var("HOOKD_BRANCH").as_deref(), Some("main"));
    assert_eq!(var("HOOKD_TRIGGER").as_deref(), Some("manual"));
    assert_eq!(var("HOOKD_STATUS").as_deref(), Some("failed"));
    assert_eq!(var("HOOKD_PREVIOUS_STATUS").as_deref(), Some(""));
    assert_eq!(var("HOOKD_EVENT").as_deref(), Some("failed"));
    assert_eq!(var("HOOKD_REPO_URL"), Some(repo.url()));
    assert!(
        var("RUST_LOG").is_none(),
        "nothing of the daemon's own environment: {env}"
    );
    let body: Value = serde_json::from_str(&std::fs::read_to_string(&stdin_file).unwrap()).unwrap();
    assert_eq!(body["type"], "build.failed");
    assert_eq!(body["data"]["exit_code"], 3);
    assert_eq!(body["data"]["commit"], commit);
    // It ran in its own process group: the shell leads it.
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    let stat = std::fs::read_to_string(dir.path().join("stat")).unwrap();
    let pgrp = stat.rsplit(") ").next().unwrap().split(' ').nth(2).unwrap();
    assert_eq!(pgrp, pid.trim(), "{stat}");
}

#[test]
fn a_slack_target_gets_one_text_message() {
    let server = ForgeServer::start_plain();
    let d = TestDaemon::start();
    let url_file = d.dir.path().join("slack.url");
    std::fs::write(
        &url_file,
        format!("http://{}/services/{URL_SECRET}", server.addr),
    )
    .unwrap();
    let config = format!(
        "public_url = \"https://ci.example.com\"\n[[notify]]\non = [\"failed\", \"broken\"]\n\
         kind = \"webhook\"\nformat = \"slack\"\nurl_file = \"{}\"\n",
        url_file.display()
    );
    let mut d = d;
    d.set_config(&config);
    d.restart();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.add_repo_feed("web", &repo, "exit 2", &["--cooldown", "0"]);
    let id = build(&d);
    server.wait_until(60, "the message", |got| got.len() == 1);
    let got = &server.received()[0];
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert!(
        got.header("webhook-signature").is_none(),
        "no secret, no signature"
    );
    let body: Value = serde_json::from_str(&got.body).unwrap();
    let short = &repo.head()[..10];
    let want = format!("web #{id} failed (exit 2) on main ({short} first commit) in ");
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with(&want), "{text}");
    assert!(
        text.ends_with(&format!(" <https://ci.example.com/builds/{id}|build page>")),
        "{text}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
}

#[test]
fn a_notification_owed_at_kill_9_is_sent_once_after_the_restart() {
    // The receiver is down when the build ends: the notification waits in the outbox.
    let port = closed_port();
    let mut d = TestDaemon::start();
    let url_file = d.dir.path().join("hook.url");
    let secret_file = d.dir.path().join("hook.secret");
    std::fs::write(&url_file, format!("http://127.0.0.1:{port}/{URL_SECRET}")).unwrap();
    std::fs::write(&secret_file, SECRET).unwrap();
    d.set_config(&format!(
        "[[notify]]\nname = \"hook\"\non = [\"succeeded\"]\nkind = \"webhook\"\n\
         url_file = \"{}\"\nsecret_file = \"{}\"\n",
        url_file.display(),
        secret_file.display()
    ));
    d.restart();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.add_repo_feed("web", &repo, "true", &["--cooldown", "0"]);
    let id = build(&d);
    let item = wait_for(60, "a refused attempt recorded", || {
        let items = d.admin_json(&["outbox"]);
        let item = items.as_array()?.first()?.clone();
        (item["attempts"].as_u64()? >= 1).then_some(item)
    });
    assert_eq!(item["kind"], "notify", "{item}");
    d.kill9();
    let server = ForgeServer::start_plain_on(port);
    d.restart();
    server.wait_until(60, "the notification", |got| !got.is_empty());
    outbox_drained(&d);
    let got = server.received();
    assert_eq!(got.len(), 1, "exactly once: {got:#?}");
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["data"]["build"], id);
    assert_eq!(
        got[0].header("webhook-id"),
        Some(&*format!("hookd-{id}-{}", item["id"]))
    );
    no_secret_anywhere(&d, &[URL_SECRET, SECRET]);
}

#[test]
fn notify_test_sends_a_sample_to_each_target_and_prints_each_result() {
    let server = ForgeServer::start_plain();
    let d = TestDaemon::start();
    let table = webhook_table(&d, &server, "hook", "\"broken\"", "feeds = [\"web\"]");
    let config = format!(
        "{table}[[notify]]\nname = \"mail\"\nfeeds = [\"web\"]\non = [\"fixed\"]\nkind = \"exec\"\n\
         command = \"echo mail relay down >&2; exit 75\"\n\
         [[notify]]\nname = \"other-feed\"\nfeeds = [\"api\"]\non = [\"failed\"]\n\
         kind = \"exec\"\ncommand = \"true\"\n"
    );
    let mut d = d;
    d.set_config(&config);
    d.restart();
    d.add_unbuilt_feed("web", &[]);
    let (code, err) = d.admin_err(&["notify", "test", "web"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("1 of the feed's notification targets failed"),
        "{err}"
    );
    let out = d.admin(&["notify", "test", "web"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("TARGET") && lines[0].contains("RESULT"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("hook ") && lines[1].ends_with(" sent"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("mail ")
            && lines[2].ends_with("failed: the command exited 75: mail relay down"),
        "{text}"
    );
    // Sent now, not through the outbox; signed like the real ones.
    server.wait_until(30, "two samples", |got| got.len() == 2);
    assert!(d.admin_json(&["outbox"]).as_array().unwrap().is_empty());
    let got = &server.received()[0];
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["data"]["feed"].as_str()),
        (Some("build.broken"), Some("web"))
    );
    if let Some(python) = verifier() {
        verify(
            &python,
            d.dir.path(),
            &d.dir.path().join("hook.secret"),
            got,
        )
        .expect("verified");
    }
    let out = d.admin(&["--json", "notify", "test", "web"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["target"], "hook");
    assert_eq!(json[0]["ok"], true);
    let (_, err) = d.admin_err(&["notify", "test", "nope"]);
    assert!(err.contains("nope"), "{err}");
    d.add_unbuilt_feed("lonely", &[]);
    let (_, err) = d.admin_err(&["notify", "test", "lonely"]);
    assert!(
        err.contains("no [[notify]] table of the config file covers feed lonely"),
        "{err}"
    );
    no_secret_anywhere(&d, &[URL_SECRET, SECRET]);
}

/// No log line, admin reply or store file shows any of `secrets`.
fn no_secret_anywhere(d: &TestDaemon, secrets: &[&str]) {
    let replies = [
        d.admin(&["--json", "outbox"]),
        d.admin(&["outbox"]),
        d.admin(&["--json", "status"]),
    ];
    let mut seen = vec![("the daemon's log".to_owned(), d.logs().into_bytes())];
    for reply in replies {
        seen.push((
            "an admin reply".to_owned(),
            [reply.stdout, reply.stderr].concat(),
        ));
    }
    for file in files_below(&d.data_dir()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        seen.push((file.display().to_string(), bytes));
    }
    for (what, bytes) in seen {
        for secret in secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{what} shows a secret ({secret})");
        }
    }
}

#[test]
fn broken_and_fixed_compare_with_the_same_ref_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let config = format!(
        "[[notify]]\non = [\"succeeded\", \"failed\", \"broken\", \"fixed\"]\nkind = \"exec\"\n\
         command = 'echo \"$HOOKD_BUILD_ID $HOOKD_BRANCH $HOOKD_EVENT $HOOKD_PREVIOUS_STATUS\" >> {}'\n",
        log.display()
    );
    let d = TestDaemon::start_with(&config);
    let repo = GitRepo::new(d.dir.path().join("repo"));
    repo.git(&["branch", "feature"]);
    // Builds of `feature` fail, builds of `main` fail only when the flag is there.
    let flag = dir.path().join("main-fails");
    let command = format!(
        "test \"$HOOKD_BRANCH\" = main && test ! -e {}",
        flag.display()
    );
    let extra = ["--cooldown", "0", "--branch", "main", "--branch", "feature"];
    d.add_repo_feed("web", &repo, &command, &extra);
    let build_of = |branch: &str| {
        let id = d.admin_json(&["trigger", "web", "--branch", branch])["build"]
            .as_u64()
            .unwrap();
        d.wait_build(id, 60);
        id
    };
    let main_ok = build_of("main");
    let feature_bad = build_of("feature");
    std::fs::write(&flag, "").unwrap();
    let main_bad = build_of("main");
    std::fs::remove_file(&flag).unwrap();
    let main_fixed = build_of("main");
    outbox_drained(&d);
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort_by_key(|l| l.split(' ').next().and_then(|id| id.parse::<u64>().ok()));
    assert_eq!(
        lines,
        [
            format!("{main_ok} main succeeded "),
            // No success of `feature` before it: a failure, not broken.
            format!("{feature_bad} feature failed "),
            // main's previous result is main's own success, not feature's failure.
            format!("{main_bad} main broken succeeded"),
            format!("{main_fixed} main fixed failed"),
        ]
    );
}

#[test]
fn url_and_secret_files_are_read_again_on_sighup() {
    let (first, second) = (ForgeServer::start_plain(), ForgeServer::start_plain());
    let d = TestDaemon::start();
    let table = webhook_table(&d, &first, "hook", "\"succeeded\"", "");
    let mut d = d;
    d.set_config(&table);
    d.restart();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    d.add_repo_feed("web", &repo, "true", &["--cooldown", "0"]);
    build(&d);
    first.wait_until(60, "the first notification", |got| got.len() == 1);
    // The operator points the target elsewhere, with a new secret, and reloads.
    let new_secret = "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQga2V5IDEyMzQ=";
    std::fs::write(
        d.dir.path().join("hook.url"),
        format!("http://{}/new-SECRETPATH2", second.addr),
    )
    .unwrap();
    std::fs::write(d.dir.path().join("hook.secret"), new_secret).unwrap();
    d.reload(true);
    build(&d);
    second.wait_until(60, "the notification after the reload", |got| {
        got.len() == 1
    });
    outbox_drained(&d);
    assert_eq!(first.received().len(), 1);
    let got = &second.received()[0];
    assert_eq!(got.target, "/new-SECRETPATH2");
    if let Some(python) = verifier() {
        let secret_file = d.dir.path().join("hook.secret");
        verify(&python, d.dir.path(), &secret_file, got).expect("signed with the new secret");
    }
    // A reload with a secret that cannot work is refused whole; the old one stays.
    std::fs::write(d.dir.path().join("hook.secret"), "not a secret").unwrap();
    d.reload(false);
    let line = d
        .logs()
        .lines()
        .rfind(|l| l.contains("configuration reload refused"))
        .unwrap()
        .to_owned();
    assert!(line.contains("notify[0].secret_file"), "{line}");
    assert!(!line.contains("not a secret"), "{line}");
    no_secret_anywhere(&d, &[URL_SECRET, SECRET, new_secret, "new-SECRETPATH2"]);
}
