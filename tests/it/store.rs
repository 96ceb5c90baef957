//! The store's promises at its edges: what a 2xx covers (every file holding the record
//! is synced), bounded records, and damage that is never silent.

use std::process::{Command, Stdio};

use crate::support::{wait_for, TestDaemon};

/// Files in `db/blobs`, where sled puts values and nodes over its blob threshold.
fn blob_files(d: &TestDaemon) -> Vec<String> {
    std::fs::read_dir(d.data_dir().join("db/blobs"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn github_push(git_ref: &str, after: &str, message: &str) -> Vec<u8> {
    serde_json::json!({
        "ref": git_ref,
        "before": "0".repeat(40),
        "after": after,
        "repository": {"clone_url": "https://example.com/r.git"},
        "head_commit": {"id": after, "message": message},
    })
    .to_string()
    .into_bytes()
}

#[test]
fn over_long_fields_and_non_hex_commit_ids_are_refused_with_400() {
    let d = TestDaemon::start();
    let hook = d.add_feed("bounds", &["--repo", "/nonexistent", "--command", "true"]);
    let sha = "a".repeat(40);
    let long_event = "e".repeat(50_000);
    let long_id = "i".repeat(129);
    let long_ref = format!("refs/heads/{}", "b".repeat(250));
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("X-GitHub-Event", &long_event)],
            b"{}".to_vec(),
            "event name",
        ),
        (
            vec![("X-GitHub-Event", "push"), ("X-GitHub-Delivery", &long_id)],
            github_push("refs/heads/main", &sha, "m"),
            "delivery id",
        ),
        (
            vec![("X-GitHub-Event", "push")],
            github_push(&long_ref, &sha, "m"),
            "ref",
        ),
        (
            vec![("X-GitHub-Event", "push")],
            github_push("refs/heads/main", &"z".repeat(40), "m"),
            "40 or 64 hex",
        ),
        (
            vec![("X-GitHub-Event", "push")],
            github_push("refs/heads/main", &"a".repeat(2_000_000), "m"),
            "40 or 64 hex",
        ),
    ];
    for (headers, body, what) in cases {
        let r = d.post(&hook, &headers, &body);
        assert_eq!(r.status, 400, "{what}: {:.200}", r.body);
        let reason = r.json()["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains(what), "{what}: {reason}");
        assert!(r.body.len() < 1024, "the reply quotes the payload");
    }
    assert!(blob_files(&d).is_empty(), "{:?}", blob_files(&d));
}

#[test]
fn the_largest_admissions_the_limits_allow_leave_db_blobs_empty() {
    let d = TestDaemon::start_with("[builds]\nkeep_deliveries = 1000\n");
    let hook = d.add_feed(
        "max",
        &[
            "--repo",
            "/nonexistent",
            "--branch",
            "**",
            "--command",
            "true",
        ],
    );
    d.admin_ok(&["feed", "pause", "max"]);
    let message = "m".repeat(100_000);
    for i in 0..120 {
        let id = format!("{i:0>128}");
        let git_ref = format!("refs/heads/{i:0>244}");
        let sha = format!("{i:0>64}").replace('0', "a");
        let event = format!("{i:e>100}");
        let headers = [("X-GitHub-Event", "push"), ("X-GitHub-Delivery", &id)];
        let r = d.post(&hook, &headers, &github_push(&git_ref, &sha, &message));
        assert_eq!(r.status, 202, "{}", r.body);
        let other_id = format!("{i:x>128}");
        let headers = [
            ("X-GitHub-Event", &*event),
            ("X-GitHub-Delivery", &other_id),
        ];
        let r = d.post(&hook, &headers, b"{}");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let deliveries = d.admin_json(&["deliveries", "max", "--limit", "1000"]);
    assert_eq!(deliveries.as_array().map(Vec::len), Some(240));
    assert!(blob_files(&d).is_empty(), "{:?}", blob_files(&d));
}

/// Whether strace can trace here (installed, and ptrace allowed).
fn strace_works() -> bool {
    Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_record_over_the_blob_threshold_is_fsynced_before_the_reply() {
    if !strace_works() {
        eprintln!("skipped: strace is not installed or may not trace here");
        return;
    }
    let d = TestDaemon::start();
    d.add_feed("big", &["--repo", "/nonexistent", "--command", "true"]);
    let log = d.dir.path().join("strace.log");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&log)
        .arg("-p")
        .arg(d.pid().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strace");
    // Attached once a flush of the daemon's shows in the trace.
    wait_for(30, "strace to attach", || {
        d.admin_ok(&["feed", "pause", "big"]);
        d.admin_ok(&["feed", "resume", "big"]);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("fdatasync(").then_some(())
    });
    // A feed whose command is 300 KB: its record goes to a blob file of its own.
    let word = "w".repeat(100_000);
    d.admin_ok(&[
        "feed",
        "edit",
        "big",
        "--command",
        &word,
        "--command",
        &word,
        "--command",
        &word,
    ]);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    let _ = strace.wait();
    let trace = std::fs::read_to_string(&log).unwrap();
    let blobs = blob_files(&d);
    assert!(!blobs.is_empty(), "sled wrote no blob for a 300 KB record");
    for blob in blobs {
        let path = d.data_dir().join("db/blobs").join(&blob);
        let synced = format!("<{}>", path.display());
        assert!(
            trace
                .lines()
                .any(|l| l.contains("fsync(") && l.contains(&synced)),
            "blob {blob} was never fsynced:\n{trace}"
        );
    }
}
