//! The store's promises at its edges: what a 2xx covers (every file holding the record
//! is synced), bounded records, and damage that is never silent.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{wait_for, TestDaemon, BIN};

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
    let hook = d.add_unbuilt_feed("bounds", &[]);
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
    let hook = d.add_unbuilt_feed("max", &["--branch", "**"]);
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
    d.add_unbuilt_feed("big", &[]);
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

/// A daemon started by hand, so a refusal to start can be seen.
struct Serve {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Serve {
    fn spawn(d: &TestDaemon, extra: &[&str], log: &Path) -> Self {
        let _ = std::fs::remove_file(d.socket());
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(d.config_path())
            .arg("--data-dir")
            .arg(d.data_dir())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn hookd");
        Serve {
            child,
            socket: d.socket(),
        }
    }

    /// Ready (admin socket answers), or exited with this code.
    fn outcome(&mut self) -> Result<(), i32> {
        wait_for(60, "hookd to be ready or exit", || {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Err(status.code().unwrap_or(-1)));
            }
            let status = Command::new(BIN)
                .args(["admin", "--socket"])
                .arg(&self.socket)
                .arg("status")
                .output()
                .ok()?;
            status.status.success().then_some(Ok(()))
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stopped daemon whose store acknowledged `count` triggers (each a queued build).
fn acknowledged_store(count: usize) -> TestDaemon {
    let mut d = TestDaemon::start_with("[builds]\nkeep_builds = 100000\n");
    let hook = d.add_unbuilt_feed("f", &["--branch", "**"]);
    d.admin_ok(&["feed", "pause", "f"]);
    for i in 0..count {
        let r = d.post(&format!("{hook}?branch=b{i}"), &[], b"");
        assert_eq!(r.status, 202, "{}", r.body);
    }
    d.kill9();
    d
}

fn queued_builds(socket: &Path) -> usize {
    let out = Command::new(BIN)
        .args(["admin", "--json", "--socket"])
        .arg(socket)
        .args(["builds", "f", "--limit", "100000"])
        .output()
        .unwrap();
    let builds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    builds.as_array().map_or(0, Vec::len)
}

/// Damages `db/db` after `count` acknowledged triggers, then checks the promise: hookd
/// either refuses to start with advice, or starts with every acknowledged trigger. With
/// `--accept-data-loss` it starts, logs the loss, and takes triggers again.
fn damage_is_never_silent(count: usize, damage: impl FnOnce(&Path)) -> bool {
    let d = acknowledged_store(count);
    damage(&d.data_dir().join("db/db"));
    let log = d.dir.path().join("refused.log");
    let mut plain = Serve::spawn(&d, &[], &log);
    let refused = match plain.outcome() {
        Ok(()) => {
            assert_eq!(
                queued_builds(&d.socket()),
                count,
                "hookd started without a word but acknowledged triggers are gone"
            );
            false
        }
        Err(code) => {
            let text = std::fs::read_to_string(&log).unwrap();
            assert_ne!(code, 0);
            assert!(text.contains("Restore"), "{text}");
            assert!(text.contains("hookd serve --accept-data-loss"), "{text}");
            assert!(
                text.contains("acknowledged writes are missing") || text.contains("is damaged"),
                "{text}"
            );
            true
        }
    };
    drop(plain);
    let log = d.dir.path().join("accepted.log");
    let mut accepting = Serve::spawn(&d, &["--accept-data-loss"], &log);
    assert_eq!(
        accepting.outcome(),
        Ok(()),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    if refused {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("--accept-data-loss"),
            "the loss is not logged: {text}"
        );
    }
    drop(accepting);
    // The next start needs no flag: the mark now matches what is left.
    let log = d.dir.path().join("again.log");
    let mut again = Serve::spawn(&d, &[], &log);
    assert_eq!(
        again.outcome(),
        Ok(()),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    refused
}

#[test]
fn a_truncated_database_is_refused_with_advice_and_starts_with_the_flag() {
    let refused = damage_is_never_silent(1500, |db| {
        let len = std::fs::metadata(db).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
        file.set_len(len / 3).unwrap();
    });
    assert!(refused, "two thirds of the log are gone: hookd must refuse");
}

#[test]
fn flipped_bytes_in_the_database_are_never_silent() {
    // Where the flips land decides whether acknowledged records are hit (sled's log
    // also holds stale segments), so either outcome is right as long as it is not silent.
    damage_is_never_silent(1500, |db| {
        let mut bytes = std::fs::read(db).unwrap();
        let len = bytes.len();
        // 64 bytes spread over the newer half of the log.
        for i in 0..64 {
            let at = len / 2 + (i * 7919 * 13) % (len / 2);
            bytes[at] ^= 0xff;
        }
        std::fs::write(db, bytes).unwrap();
    });
}

#[test]
fn four_kib_overwritten_in_the_middle_of_the_database_is_never_silent() {
    damage_is_never_silent(1500, |db| {
        let len = std::fs::metadata(db).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
        use std::os::unix::fs::FileExt;
        file.write_all_at(&[0x5a; 4096], len / 2 / 4096 * 4096)
            .unwrap();
    });
}

/// Mounts a tmpfs of `size` at `dir` (root only); `Err` says why not.
fn mount_small_fs(dir: &Path, size: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Unmounts on drop, killing the daemon first.
struct SmallFs<'a> {
    dir: std::path::PathBuf,
    serve: Option<Serve>,
    _owner: &'a TestDaemon,
}

impl Drop for SmallFs<'_> {
    fn drop(&mut self) {
        drop(self.serve.take());
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x66u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let small = [0x66u8; 512];
    while file.write_all(&small).is_ok() {}
    path
}

#[test]
fn a_full_disk_heals_without_a_restart_and_loses_nothing_acknowledged() {
    // The TestDaemon only lends its temp dir and config; the data dir is a small tmpfs.
    let owner = TestDaemon::start();
    let dir = owner.dir.path().join("small");
    if let Err(why) = mount_small_fs(&dir, "8m") {
        eprintln!("skipped: cannot mount a small file system here ({why})");
        return;
    }
    let data = dir.join("data");
    let log = owner.dir.path().join("small.log");
    let socket = data.join("admin.sock");
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut fs = SmallFs {
        dir: dir.clone(),
        serve: Some(Serve {
            child,
            socket: socket.clone(),
        }),
        _owner: &owner,
    };
    let serve = fs.serve.as_mut().unwrap();
    assert_eq!(
        serve.outcome(),
        Ok(()),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let admin = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["admin", "--json", "--socket"])
            .arg(&socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let status = admin(&["status"]);
    let addr: std::net::SocketAddr = status["listen"].as_str().unwrap().parse().unwrap();
    let feed = admin(&[
        "feed",
        "add",
        "f",
        "--repo",
        "https://forge.invalid/nonexistent.git",
        "--branch",
        "**",
        "--command",
        "true",
    ]);
    let hook = crate::support::hook_path(feed["hook_urls"][0]["url"].as_str().unwrap());
    admin(&["feed", "pause", "f"]);
    let post =
        |i: usize| crate::support::http(addr, "POST", &format!("{hook}?branch=b{i}"), &[], b"");
    let health = || crate::support::http(addr, "GET", "/healthz", &[], b"").status;

    let filler = fill(&dir);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..3000 {
        let reply = post(i);
        match reply.status {
            202 => acknowledged.push(reply.json()["build"].as_u64().unwrap()),
            503 => refused += 1,
            other => panic!("trigger {i} answered {other}"),
        }
        if refused >= 200 {
            break;
        }
    }
    assert!(refused >= 200, "the disk never filled up");
    assert_eq!(health(), 503);
    // A delivery still arriving when space returns: half its body is sent now.
    let mut in_flight = std::net::TcpStream::connect(addr).unwrap();
    let head =
        format!("POST {hook}?branch=late HTTP/1.1\r\nHost: hookd\r\nContent-Length: 4\r\n\r\nha");
    in_flight.write_all(head.as_bytes()).unwrap();
    std::fs::remove_file(filler).unwrap();

    // Healing stops accepting and answers what it accepted before restarting in place.
    wait_for(30, "the restart in place to begin", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("restarting hookd in place").then_some(())
    });
    in_flight.write_all(b"lf").unwrap();
    let mut raw = Vec::new();
    let _ = in_flight.read_to_end(&mut raw);
    assert!(
        raw.starts_with(b"HTTP/1.1 202 ") || raw.starts_with(b"HTTP/1.1 503 "),
        "a delivery in flight at the restart must be answered: {:?}",
        String::from_utf8_lossy(&raw)
    );

    // Within 10 s of space returning: /healthz 200 and triggers 202 again.
    wait_for(30, "/healthz 200 after space returned", || {
        (health() == 200).then_some(())
    });
    let next = wait_for(30, "a trigger 202 after space returned", || {
        let r = std::panic::catch_unwind(|| post(100_000));
        r.ok().filter(|r| r.status == 202)
    });
    acknowledged.push(next.json()["build"].as_u64().unwrap());
    // A trigger answered 503 may have reached the disk anyway; one answered 202 must.
    let builds = admin(&["builds", "f", "--limit", "100000"]);
    let kept: Vec<u64> = builds
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["id"].as_u64())
        .collect();
    for id in &acknowledged {
        assert!(
            kept.contains(id),
            "acknowledged build {id} was lost: {kept:?}"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let errors = text.lines().filter(|l| l.contains("ERROR")).count();
    assert!(
        errors <= 10,
        "{errors} error lines for one full disk:\n{text}"
    );
    fs.serve.take();
}
