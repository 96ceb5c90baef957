//! The build engine through the real daemon: FIFO, per-feed exclusion, coalescing,
//! cooldown, execution environment, timeouts, cancel, logs, retention, crash recovery.

use std::path::Path;

use crate::support::{wait_for, GitRepo, Launch, TestDaemon};

/// A feed whose builds append "FEED BUILD TRIGGER" to `record` and then wait until
/// the file `gate` exists (so tests can hold builds running).
fn gated_command(record: &Path, gate: &Path) -> String {
    format!(
        "echo \"$HOOKD_FEED $HOOKD_BUILD_ID $HOOKD_TRIGGER\" >> '{}'; while [ ! -e '{}' ]; do sleep 0.02; done",
        record.display(),
        gate.display()
    )
}

fn ids_in(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn queued_id(reply: &crate::support::HttpReply) -> u64 {
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.json()["build"].as_u64().expect("build id")
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn builds_start_in_trigger_order_across_feeds() {
    let d = TestDaemon::start_with("workers = 1\n");
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let (record, gate) = (d.dir.path().join("record"), d.dir.path().join("gate"));
    let cmd = gated_command(&record, &gate);
    let hooks: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| d.add_repo_feed(n, &repo, &cmd, &["--cooldown", "0"]))
        .collect();
    let first = queued_id(&d.post(&hooks[0], &[], b""));
    wait_for(30, "first build running", || {
        (ids_in(&record).len() == 1).then_some(())
    });
    let later: Vec<u64> = [2, 1, 0]
        .iter()
        .map(|i| queued_id(&d.post(&hooks[*i], &[], b"")))
        .collect();
    let queue = d.admin_json(&["queue"]);
    assert_eq!(queue["running"][0]["id"], first);
    let waiting: Vec<u64> = queue["queued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(waiting, later);
    std::fs::write(&gate, "").unwrap();
    for id in &later {
        assert_eq!(d.wait_build(*id, 60)["status"], "succeeded");
    }
    let order: Vec<String> = ids_in(&record)
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["a", "c", "b", "a"]);
}

#[test]
fn at_most_one_build_per_feed_even_with_free_workers() {
    let d = TestDaemon::start_with("workers = 2\n");
    let repo = GitRepo::new(d.dir.path().join("repo"));
    repo.git(&["branch", "dev"]);
    let (record, gate) = (d.dir.path().join("record"), d.dir.path().join("gate"));
    let cmd = gated_command(&record, &gate);
    let a = d.add_repo_feed("a", &repo, &cmd, &["--cooldown", "0", "--branch", "*"]);
    let b = d.add_repo_feed("b", &repo, &cmd, &["--cooldown", "0"]);
    let a_main = queued_id(&d.post(&a, &[], b""));
    let a_dev = queued_id(&d.post(&format!("{a}?branch=dev"), &[], b""));
    let b_main = queued_id(&d.post(&b, &[], b""));
    wait_for(30, "two builds running", || {
        (ids_in(&record).len() == 2).then_some(())
    });
    let queue = d.admin_json(&["queue"]);
    let running: Vec<u64> = queue["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(running.len(), 2);
    assert!(
        running.contains(&a_main) && running.contains(&b_main),
        "{queue}"
    );
    assert_eq!(
        queue["queued"][0]["id"], a_dev,
        "a's second build waits for a's first"
    );
    std::fs::write(&gate, "").unwrap();
    assert_eq!(d.wait_build(a_dev, 60)["status"], "succeeded");
}

#[test]
fn pushes_during_a_queued_build_coalesce_into_it() {
    let d = TestDaemon::start_with("workers = 1\n");
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let (record, gate) = (d.dir.path().join("record"), d.dir.path().join("gate"));
    let cmd = gated_command(&record, &gate);
    let blocker = d.add_repo_feed("blocker", &repo, &cmd, &["--cooldown", "0"]);
    let hook = d.add_repo_feed("x", &repo, "true", &["--cooldown", "0"]);
    queued_id(&d.post(&blocker, &[], b""));
    let id = queued_id(&d.post(&hook, &[], b""));
    for _ in 0..3 {
        let r = d.post(&hook, &[], b"");
        assert_eq!(
            (
                r.status,
                r.json()["status"].as_str(),
                r.json()["build"].as_u64()
            ),
            (202, Some("coalesced"), Some(id))
        );
    }
    std::fs::write(&gate, "").unwrap();
    let build = d.wait_build(id, 60);
    assert_eq!(build["trigger_count"], 4);
}

#[test]
fn cooldown_defers_then_builds_the_last_push() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let out = d.dir.path().join("commits");
    let cmd = format!(
        "echo \"$HOOKD_BUILD_ID $HOOKD_TRIGGER $HOOKD_COMMIT\" >> '{}'",
        out.display()
    );
    // The cooldown must outlast the test's steps inside it on a busy machine.
    let hook = d.add_repo_feed("cool", &repo, &cmd, &["--cooldown", "20"]);
    let first = queued_id(&d.post(&hook, &[], b""));
    assert_eq!(d.wait_build(first, 60)["status"], "succeeded");
    repo.commit("f", "2", "second");
    let second = d.post(&hook, &[], b"");
    assert_eq!(second.json()["status"], "deferred", "{}", second.body);
    assert!(second.json()["run_at"].as_str().unwrap().ends_with('Z'));
    let last = repo.commit("f", "3", "third");
    let third = d.post(&hook, &[], b"");
    assert_eq!(third.json()["status"], "deferred");
    assert_eq!(
        third.json()["build"],
        second.json()["build"],
        "deferred triggers coalesce"
    );
    let queue = d.admin_json(&["queue"]);
    assert_eq!(queue["deferred"][0]["id"], second.json()["build"]);
    assert!(queue["deferred"][0]["run_at"].is_string());
    let deferred = d.wait_build(second.json()["build"].as_u64().unwrap(), 60);
    assert_eq!(deferred["status"], "succeeded");
    let lines = std::fs::read_to_string(&out).unwrap();
    let last_line = lines.lines().last().unwrap();
    assert!(last_line.ends_with(&format!("deferred {last}")), "{lines}");
    assert_eq!(
        lines.lines().count(),
        2,
        "one build now, one later: {lines}"
    );
}

/// Parses an RFC 3339 time from the admin output.
fn time_of(value: &serde_json::Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(value.as_str().expect("a time")).expect("RFC 3339")
}

#[test]
fn a_clock_set_back_defers_the_next_build_by_one_cooldown_at_most() {
    let ahead = Launch {
        faketime: Some("+1d"),
        ..Launch::default()
    };
    let mut d = TestDaemon::start_launched("", &[], ahead);
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed("clock", &repo, "true", &["--cooldown", "15"]);
    let first = queued_id(&d.post(&hook, &[], b""));
    let built = d.wait_build(first, 60);
    assert_eq!(built["status"], "succeeded");
    let half_day = std::time::Duration::from_secs(12 * 3600);
    assert!(
        time_of(&built["started_at"]) > std::time::SystemTime::now() + half_day,
        "faketime did not move the daemon's clock: {built}"
    );
    d.restart_launched(Launch::default());
    let before = std::time::SystemTime::now();
    let second = d.post(&hook, &[], b"");
    assert_eq!(second.json()["status"], "deferred", "{}", second.body);
    let queue = d.admin_json(&["queue"]);
    assert_eq!(queue["deferred"][0]["id"], second.json()["build"]);
    // now + the 15 s cooldown, and 1 s for the reply's whole seconds.
    let latest = before + std::time::Duration::from_secs(16);
    for run_at in [&second.json()["run_at"], &queue["deferred"][0]["run_at"]] {
        assert!(
            time_of(run_at) <= latest,
            "run_at {run_at} is past now + cooldown ({})",
            humantime::format_rfc3339_seconds(latest)
        );
    }
    let id = second.json()["build"].as_u64().unwrap();
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
}

#[test]
fn reject_policy_answers_429_with_retry_after() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed(
        "strict",
        &repo,
        "true",
        &["--cooldown", "300", "--on-cooldown", "reject"],
    );
    let id = queued_id(&d.post(&hook, &[], b""));
    d.wait_build(id, 60);
    let r = d.post(&hook, &[], b"");
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let (_, err) = d.admin_err(&["trigger", "strict"]);
    assert!(err.contains("cooling down"), "{err}");
    let forced = d.admin_json(&["trigger", "strict", "--force"]);
    assert_eq!(forced["status"], "queued");
    let deliveries = d.admin_json(&["deliveries", "strict"]);
    assert_eq!(deliveries[0]["outcome"], "rejected");
}

#[test]
fn the_build_sees_its_environment_and_nothing_else() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let env_file = d.dir.path().join("env");
    let cmd = format!(
        "env | sort > '{}'; cat > /dev/null; echo on-stderr >&2",
        env_file.display()
    );
    let hook = d.add_repo_feed("envy", &repo, &cmd, &["--cooldown", "0"]);
    let id = queued_id(&d.post(&hook, &[], b""));
    assert_eq!(
        d.wait_build(id, 60)["status"],
        "succeeded",
        "stdin is /dev/null, so cat ends"
    );
    let env = std::fs::read_to_string(&env_file).unwrap();
    for expected in [
        "HOOKD_FEED=envy",
        &format!("HOOKD_BUILD_ID={id}"),
        "HOOKD_REF=refs/heads/main",
        "HOOKD_BRANCH=main",
        "HOOKD_TRIGGER=hook",
        "HOOKD_PROVIDER=generic",
        &format!("HOOKD_COMMIT={}", repo.head()),
        &format!("HOOKD_DATA_DIR={}", d.data_dir().display()),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing in:\n{env}"
        );
    }
    assert!(
        !env.contains("RUST_LOG"),
        "the daemon's environment leaked:\n{env}"
    );
    assert!(d.log(id).contains("on-stderr"), "stderr goes to the log");
}

#[test]
fn an_injection_branch_name_is_only_ever_a_value() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let evil = "$(touch${IFS}pwned)";
    repo.git(&["branch", evil]);
    let seen = d.dir.path().join("seen");
    let cmd = format!("printf %s \"$HOOKD_BRANCH\" > '{}'", seen.display());
    let hook = d.add_repo_feed("inj", &repo, &cmd, &["--cooldown", "0", "--branch", "*"]);
    let id = queued_id(&d.post(
        &format!("{hook}?branch=%24%28touch%24%7BIFS%7Dpwned%29"),
        &[],
        b"",
    ));
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), evil);
    let pwned: Vec<_> = crate::support::files_below(d.dir.path())
        .into_iter()
        .filter(|p| p.ends_with("pwned"))
        .collect();
    assert!(pwned.is_empty(), "{pwned:?}");
}

#[test]
fn timeout_and_cancel_kill_the_whole_process_group() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let pidfile = d.dir.path().join("pid");
    let cmd = format!("sleep 1000 & echo $! > '{}'; sleep 1000", pidfile.display());
    let hook = d.add_repo_feed("slow", &repo, &cmd, &["--cooldown", "0", "--timeout", "1"]);
    let id = queued_id(&d.post(&hook, &[], b""));
    assert_eq!(d.wait_build(id, 60)["status"], "timed_out");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(30, "backgrounded child killed", || {
        (!pid_alive(pid)).then_some(())
    });

    std::fs::remove_file(&pidfile).unwrap();
    d.admin_ok(&["feed", "edit", "slow", "--timeout", "600"]);
    let id = queued_id(&d.post(&hook, &[], b""));
    let pid: i32 = wait_for(30, "build started", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    d.admin_ok(&["cancel", &id.to_string()]);
    assert_eq!(d.wait_build(id, 60)["status"], "cancelled");
    wait_for(30, "backgrounded child killed", || {
        (!pid_alive(pid)).then_some(())
    });
    let (_, err) = d.admin_err(&["cancel", &id.to_string()]);
    assert!(err.contains("not queued or running"), "{err}");
}

#[test]
fn removing_a_feed_stops_its_running_build_quietly() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let pidfile = d.dir.path().join("pid");
    let cmd = format!("sleep 1000 & echo $! > '{}'; sleep 1000", pidfile.display());
    let hook = d.add_repo_feed("doomed", &repo, &cmd, &["--cooldown", "0"]);
    let id = queued_id(&d.post(&hook, &[], b""));
    let pid: i32 = wait_for(30, "build started", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    d.admin_ok(&["feed", "remove", "doomed"]);
    wait_for(30, "backgrounded child killed", || {
        (!pid_alive(pid)).then_some(())
    });
    wait_for(30, "build end noted", || {
        d.logs()
            .contains("build ended after its feed was removed")
            .then_some(())
    });
    assert!(
        !d.logs().contains("cannot record build end"),
        "{}",
        d.logs()
    );
    let (_, err) = d.admin_err(&["build", "show", &id.to_string()]);
    assert!(err.contains(&format!("no build {id}")), "{err}");
}

#[test]
fn a_queued_build_can_be_cancelled() {
    let d = TestDaemon::start_with("workers = 1\n");
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let (record, gate) = (d.dir.path().join("record"), d.dir.path().join("gate"));
    let blocker = d.add_repo_feed(
        "blocker",
        &repo,
        &gated_command(&record, &gate),
        &["--cooldown", "0"],
    );
    let hook = d.add_repo_feed("victim", &repo, "true", &["--cooldown", "0"]);
    queued_id(&d.post(&blocker, &[], b""));
    let id = queued_id(&d.post(&hook, &[], b""));
    assert!(d
        .admin_ok(&["cancel", &id.to_string()])
        .contains("cancelled"));
    assert_eq!(d.build(id)["status"], "cancelled");
    // A new push queues a new build rather than joining the cancelled one.
    assert_ne!(queued_id(&d.post(&hook, &[], b"")), id);
    std::fs::write(&gate, "").unwrap();
}

#[test]
fn failures_keep_their_exit_code_and_logs_are_kept() {
    let d = TestDaemon::start_with("[builds]\nlog_max_bytes = 2000\nkeep_builds = 2\n");
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed(
        "noisy",
        &repo,
        "echo to-stdout; echo to-stderr >&2; head -c 5000 /dev/zero | tr '\\0' x; exit 3",
        &["--cooldown", "0"],
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = queued_id(&d.post(&hook, &[], b""));
        let b = d.wait_build(id, 60);
        assert_eq!(
            (b["status"].as_str(), b["exit_code"].as_i64()),
            (Some("failed"), Some(3))
        );
        ids.push(id);
    }
    let log = d.log(ids[2]);
    // stdout and stderr are drained concurrently: which fills the cap first is a race,
    // so only stdout's own order is asserted here (stderr is checked without a cap).
    assert!(log.contains("to-stdout"), "{log}");
    assert!(log.contains("truncated"), "cap marker missing: {log}");
    assert!(log.len() < 2500, "log not capped: {} bytes", log.len());
    let listed: Vec<u64> = d
        .admin_json(&["builds", "noisy"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, [ids[2], ids[1]], "retention keeps the newest 2");
    assert!(
        !d.data_dir().join(format!("logs/{}.log", ids[0])).exists(),
        "pruned build's log deleted"
    );
    let (_, err) = d.admin_err(&["log", &ids[0].to_string()]);
    assert!(err.contains("no build"), "{err}");
}

#[test]
fn log_follow_streams_until_the_build_ends() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let gate = d.dir.path().join("gate");
    let cmd = format!(
        "echo before; while [ ! -e '{}' ]; do sleep 0.02; done; echo after",
        gate.display()
    );
    let hook = d.add_repo_feed("follow", &repo, &cmd, &["--cooldown", "0"]);
    let id = queued_id(&d.post(&hook, &[], b""));
    wait_for(30, "build running", || {
        (d.build(id)["status"] == "running").then_some(())
    });
    let child = std::process::Command::new(crate::support::BIN)
        .args(["admin", "--socket"])
        .arg(d.socket())
        .args(["log", "--follow", &id.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(30, "'before' in the log", || {
        d.log(id).contains("before").then_some(())
    });
    std::fs::write(&gate, "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("before") && text.contains("after"), "{text}");
}

#[test]
fn admin_log_keeps_characters_cut_by_its_reads_whole() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let gate = d.dir.path().join("gate");
    // 270 kB of three-byte characters: of any three 64 KiB read boundaries in it, two
    // cut a character. Then half a character while the build waits.
    let cmd = format!(
        "yes '€€€€€€€€€€' | head -n 9000 | tr -d '\\n'; echo; echo waiting; printf '\\342\\202'; \
         while [ ! -e '{}' ]; do sleep 0.02; done; printf '\\254\\n'",
        gate.display()
    );
    let hook = d.add_repo_feed("text", &repo, &cmd, &["--cooldown", "0"]);
    let id = queued_id(&d.post(&hook, &[], b""));
    let file = d.data_dir().join("logs").join(format!("{id}.log"));
    wait_for(60, "the build waits after half a character", || {
        let log = std::fs::read(&file).unwrap_or_default();
        log.ends_with(b"waiting\n\xe2\x82").then_some(())
    });
    let mut child = std::process::Command::new(crate::support::BIN)
        .args(["admin", "--socket"])
        .arg(d.socket())
        .args(["log", "--follow", &id.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut followed = Vec::new();
    while !followed.ends_with(b"waiting\n") {
        let n = std::io::BufRead::read_until(&mut out, b'\n', &mut followed).unwrap();
        assert!(n > 0, "the follow ended early");
    }
    std::fs::write(&gate, "").unwrap();
    std::io::Read::read_to_end(&mut out, &mut followed).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
    let log = std::fs::read(&file).unwrap();
    assert!(log.ends_with("waiting\n€\n".as_bytes()));
    assert!(followed == log, "log --follow sends every character whole");
    assert!(
        d.log(id).as_bytes() == log,
        "log sends every character whole"
    );
}

#[test]
fn kill_9_during_a_build_reruns_it_once_and_reaps_its_processes() {
    let mut d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let (record, gate) = (d.dir.path().join("record"), d.dir.path().join("gate"));
    let pidfile = d.dir.path().join("pid");
    let cmd = format!(
        "echo $$ > '{}'; {}",
        pidfile.display(),
        gated_command(&record, &gate)
    );
    let hook = d.add_repo_feed("crash", &repo, &cmd, &["--cooldown", "0"]);
    let id = queued_id(&d.post(&hook, &[], b""));
    // The pgid must be recorded before the crash for the reaper to find the group.
    let pid: i32 = wait_for(30, "build running with its pgid recorded", || {
        let recorded = d.build(id)["pgid"].is_i64();
        let pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.filter(|_| recorded)
    });
    d.kill9();
    assert!(pid_alive(pid), "the build outlives a kill -9 of the daemon");
    d.restart();
    wait_for(30, "orphaned build reaped", || {
        (!pid_alive(pid)).then_some(())
    });
    assert_eq!(d.build(id)["status"], "interrupted");
    let builds = d.admin_json(&["builds", "crash"]);
    let retry = builds
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["retry_of"] == id)
        .expect("a retry")
        .clone();
    assert_eq!(retry["trigger"], "retry");
    std::fs::write(&gate, "").unwrap();
    assert_eq!(
        d.wait_build(retry["id"].as_u64().unwrap(), 60)["status"],
        "succeeded"
    );
    let runs: Vec<String> = ids_in(&record);
    assert_eq!(
        runs,
        [
            format!("crash {id} hook"),
            format!("crash {} retry", retry["id"])
        ]
    );
}

#[test]
fn deferred_triggers_survive_kill_9_and_still_fire() {
    let mut d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    // Long enough that the deferred build is still waiting after the restart.
    let hook = d.add_repo_feed("later", &repo, "true", &["--cooldown", "20"]);
    let first = queued_id(&d.post(&hook, &[], b""));
    d.wait_build(first, 60);
    let deferred = d.post(&hook, &[], b"");
    assert_eq!(deferred.json()["status"], "deferred");
    d.kill9();
    d.restart();
    let id = deferred.json()["build"].as_u64().unwrap();
    assert_eq!(d.admin_json(&["queue"])["deferred"][0]["id"], id);
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
}

#[test]
fn build_history_survives_kill_9_and_ids_carry_on() {
    let mut d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed(
        "hist",
        &repo,
        "echo built-$HOOKD_BUILD_ID",
        &["--cooldown", "0"],
    );
    // More than one shelf's worth (16 ids), so finished builds are packed.
    let ids: Vec<u64> = (0..20)
        .map(|_| {
            let id = queued_id(&d.post(&hook, &[], b""));
            assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
            id
        })
        .collect();
    d.restart(); // kill -9, then a fresh start on the same data dir
    let listed: Vec<u64> = d
        .admin_json(&["builds", "hist", "--limit", "100"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert_eq!(d.build(ids[2])["status"], "succeeded");
    assert!(d.log(ids[2]).contains(&format!("built-{}", ids[2])));
    let next = queued_id(&d.post(&hook, &[], b""));
    assert_eq!(next, ids[19] + 1, "ids are never handed out twice");
    assert_eq!(d.wait_build(next, 60)["status"], "succeeded");
}
