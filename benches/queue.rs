//! Build-queue benchmark (`cargo bench --bench queue`).
//!
//! Through the store's own API: admits `HOOKD_BENCH_BUILDS` builds (default 100,000)
//! over 1,000 feeds, then claims and finishes them all, reporting rates and latency
//! percentiles; then admits coalescing webhook deliveries the way the hook endpoint does
//! (with delivery records) with and without a durable flush each. Then grows the
//! store to `HOOKD_BENCH_RECORDS` build records (default 1,000,000) and times the real
//! daemon's start-up on it (spawn to admin socket answering) and its resident memory.
//! Finally, on a fresh daemon with an idle worker, times the delay from a hook's 202 to
//! the build command's start (fetch of a one-commit local repository included).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookd::build::{BuildId, BuildStatus, Trigger, TriggerKind};

use hookd::clock::now_ms;
use hookd::feed::{CommandSpec, CooldownPolicy, Feed, FeedName};
use hookd::reply::HookReply;
use hookd::store::{AdmitRequest, DeliveryRecord, Pick, Store, StoreOptions};

const FEEDS: usize = 1000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn feed(i: usize) -> Feed {
    Feed {
        name: FeedName::parse(&format!("feed-{i}")).expect("valid name"),
        repo: "/srv/git/x.git".into(),
        branches: vec!["*".into()],
        command: CommandSpec::Shell("true".into()),
        cooldown_secs: 0,
        on_cooldown: CooldownPolicy::Defer,
        timeout_secs: 60,
        has_secret: false,
        paused: false,
        created_ms: now_ms(),
        badge: false,
        declared: false,
        retired_ms: None,
        secret_pending: false,
    }
}

fn trigger(n: usize) -> Trigger {
    Trigger {
        accepted_ms: now_ms(),
        kind: TriggerKind::Hook,
        provider: "github".into(),
        event: "push".into(),
        delivery_id: Some(format!("delivery-{n}")),
        commit: Some(format!("{n:040x}")),
    }
}

fn percentiles(mut micros: Vec<u64>) -> String {
    micros.sort_unstable();
    let at = |p: f64| {
        micros
            .get(((micros.len() as f64 * p) as usize).min(micros.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    format!(
        "p50 {} µs, p99 {} µs, max {} µs",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

fn main() {
    let builds = env_usize("HOOKD_BENCH_BUILDS", 100_000);
    let records = env_usize("HOOKD_BENCH_RECORDS", 1_000_000);
    // HOOKD_BENCH_KEEP=DIR keeps the populated store in DIR for profiling start-up.
    let temp = tempfile::Builder::new()
        .prefix("hookd-bench")
        .tempdir_in(
            std::env::var_os("HOOKD_BENCH_KEEP").map_or_else(std::env::temp_dir, Into::into),
        )
        .expect("temp dir");
    let (dir, _cleanup) = match std::env::var_os("HOOKD_BENCH_KEEP") {
        Some(_) => (temp.keep(), None),
        None => (temp.path().to_owned(), Some(temp)),
    };
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let store = Store::open(
        &data,
        StoreOptions {
            cache_bytes: 16 << 20,
            keep_deliveries: 100,
        },
    )
    .expect("open store");
    let feeds: Vec<Feed> = (0..FEEDS).map(feed).collect();
    for f in &feeds {
        store.add_feed(f).expect("add feed");
    }

    println!("queue: {builds} builds over {FEEDS} feeds");
    let (secs, lat) = admit_distinct(&store, &feeds, 0, builds);
    println!(
        "  enqueue  {:>9.0} builds/s  ({})",
        builds as f64 / secs,
        percentiles(lat)
    );
    let (secs, lat) = drain(&store);
    println!(
        "  dequeue  {:>9.0} builds/s  ({}; claim, commit, pgid, finish, retention)",
        lat.len() as f64 / secs,
        percentiles(lat)
    );

    let n = builds.min(20_000);
    let (secs, lat) = admit_coalescing(&store, &feeds[0], n, false);
    println!(
        "  webhook admission, coalescing, no flush: {:>7.0}/s ({})",
        n as f64 / secs,
        percentiles(lat)
    );
    let n = builds.min(2_000);
    let (secs, lat) = admit_coalescing(&store, &feeds[1], n, true);
    println!(
        "  webhook admission, coalescing, fsync each (no group commit): {:>5.0}/s ({})",
        n as f64 / secs,
        percentiles(lat)
    );

    let have = builds + 2;
    if records > have {
        // Builds flow through as on a busy box: queued in rounds of 10,000, each round
        // run to the end, so the history grows while the queue stays short.
        let t = Instant::now();
        let mut made = have;
        while made < records {
            let round = (records - made).min(10_000);
            admit_distinct(&store, &feeds, made, round);
            drain(&store);
            made += round;
        }
        store.durable_blocking().expect("flush");
        println!(
            "\ngrew the store to {records} build records in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let size = store.size_on_disk();
    drop(store);
    startup(&data, records, size);
    first_build_latency(&dir);
}

/// Claims, runs the bookkeeping of and finishes every queued build; returns seconds and
/// per-build latencies.
fn drain(store: &Store) -> (f64, Vec<u64>) {
    let started = Instant::now();
    let mut lat = Vec::new();
    let busy = HashSet::new();
    loop {
        let t = Instant::now();
        match store
            .claim_next(&busy, &Default::default(), now_ms())
            .expect("claim")
        {
            Pick::Start(b) => {
                // What the scheduler writes for a real build: the resolved commit, the
                // process group, the end, then retention (nothing is old enough here).
                store
                    .update_build(b.id, |b| {
                        b.commit = Some(format!("{:040x}", b.id.0));
                        b.subject = Some("Fix the frobnicator".into());
                    })
                    .expect("commit");
                store
                    .update_build(b.id, |b| b.pgid = Some(4242))
                    .expect("pgid");
                store
                    .finish(b.id, BuildStatus::Succeeded, now_ms())
                    .expect("finish");
                store.prune_builds(b.feed.as_str(), 100_000).expect("prune");
                lat.push(t.elapsed().as_micros() as u64);
            }
            _ => break,
        }
    }
    (started.elapsed().as_secs_f64(), lat)
}

/// Admits `count` builds on distinct refs (no coalescing) round-robin over the feeds.
fn admit_distinct(store: &Store, feeds: &[Feed], offset: usize, count: usize) -> (f64, Vec<u64>) {
    let mut lat = Vec::with_capacity(count);
    let started = Instant::now();
    for i in offset..offset + count {
        let feed = &feeds[i % feeds.len()];
        let req = AdmitRequest {
            feed,
            git_ref: format!("refs/heads/b{i}"),
            branch: format!("b{i}"),
            trigger: trigger(i),
            force: false,
            now_ms: now_ms(),
        };
        let t = Instant::now();
        store.admit(&req, None).expect("admit");
        lat.push(t.elapsed().as_micros() as u64);
    }
    (started.elapsed().as_secs_f64(), lat)
}

/// Admits pushes to one branch with delivery records, as the hook endpoint does.
fn admit_coalescing(store: &Store, feed: &Feed, count: usize, durable: bool) -> (f64, Vec<u64>) {
    let mut lat = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let req = AdmitRequest {
            feed,
            git_ref: "refs/heads/main".into(),
            branch: "main".into(),
            trigger: trigger(i),
            force: false,
            now_ms: now_ms(),
        };
        let record = DeliveryRecord {
            at_ms: now_ms(),
            provider: "github".into(),
            event: "push".into(),
            delivery_id: Some(format!("{}-{i}", feed.name)),
            git_ref: Some("refs/heads/main".into()),
            commit: Some(format!("{i:040x}")),
            reply: HookReply::Pong,
            outcome: String::new(),
            reason: None,
        };
        let t = Instant::now();
        store.admit(&req, Some(record)).expect("admit");
        if durable {
            store.durable_blocking().expect("flush");
        }
        lat.push(t.elapsed().as_micros() as u64);
    }
    (started.elapsed().as_secs_f64(), lat)
}

fn admin(socket: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .arg("admin")
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn wait_ready(socket: &Path) -> Duration {
    let started = Instant::now();
    while admin(socket, &["status"]).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

/// Times the real daemon's start-up on the populated store, and its memory: three
/// starts, each stopped with SIGTERM, because sled replays on the first start everything
/// written since the store was last opened.
fn startup(data: &Path, records: usize, size: u64) {
    println!(
        "\nstart-up with {records} build records ({:.0} MiB on disk), spawn to the admin socket answering (the admin client's own start included):",
        size as f64 / 1048576.0
    );
    for run in 1..=3 {
        let child = Command::new(env!("CARGO_BIN_EXE_hookd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start hookd");
        let socket = data.join("admin.sock");
        let took = wait_ready(&socket);
        let rss = rss_mib(child.id());
        println!(
            "  start {run}: {:>5.0} ms, {rss:.1} MiB resident",
            took.as_secs_f64() * 1000.0
        );
        stop(child);
    }
}

/// Stops a daemon the way systemd does and waits for it.
fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// From a hook's 202 to the command's first instruction, with an idle worker.
fn first_build_latency(dir: &Path) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.name=b", "-c", "user.email=b@b"])
            .args(args)
            .current_dir(&repo)
            .output()
            .map(|o| o.status.success());
        assert!(matches!(ok, Ok(true)), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("f"), "x").expect("file");
    git(&["add", "f"]);
    git(&["commit", "-q", "-m", "one"]);
    let data = dir.join("latency");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("start hookd");
    let socket = data.join("admin.sock");
    wait_ready(&socket);
    let status = admin(&socket, &["status"]).expect("status");
    let addr: std::net::SocketAddr = status["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("addr");
    let stamp = dir.join("stamp");
    // date +%s%N: the command's start in ns.
    let cmd = format!("date +%s%N >> '{}'", stamp.display());
    let repo_url = repo.display().to_string();
    let feed = admin(
        &socket,
        &[
            "feed",
            "add",
            "lat",
            "--repo",
            &repo_url,
            "--command",
            &cmd,
            "--cooldown",
            "0",
        ],
    )
    .expect("feed add");
    let url = feed["hook_urls"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let path = &url[url.find("/hooks/").expect("path")..];
    let mut delays = Vec::new();
    for i in 0..20 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        let acked = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        assert!(reply.contains(" 202 "), "{reply}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let started: u128 = loop {
            let text = std::fs::read_to_string(&stamp).unwrap_or_default();
            if let Some(line) = text.lines().nth(i) {
                break line.trim().parse().expect("stamp");
            }
            assert!(Instant::now() < deadline, "build did not start");
            std::thread::sleep(Duration::from_millis(1));
        };
        delays.push((started.saturating_sub(acked) / 1000) as u64);
        // Let the build finish so the next trigger finds the worker idle.
        let build = BuildId(i as u64 + 1);
        while admin(&socket, &["build", "show", &build.0.to_string()])
            .is_some_and(|b| b["status"] == "running" || b["status"] == "queued")
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    println!("\n202 to command start, idle worker, local one-commit repo (fetch + checkout included): {}", percentiles(delays));
    let _ = child.kill();
    let _ = child.wait();
}

/// Resident memory of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
