//! Web benchmark (`cargo bench --bench web`), against the real hookd on loopback:
//!
//! - render latency of the overview, a feed page with 100 builds, a build page and a
//!   badge (one request per connection, sequential; p50/p99);
//! - 200 live-log followers (`/builds/ID/events`) of a build writing about 1 MB/s,
//!   while 16 clients post to the hook endpoint: its p50/p99 with and without the
//!   followers, the daemon's peak resident memory, and what each follower received.
//!
//! The followers stand in for browsers on other machines, so they run as one event
//! loop on one thread (as wrk runs its connections), not as 200 threads that would
//! crowd the daemon off the two cores it shares with them.
//! `HOOKD_BENCH_FOLLOWER_THREADS=1` runs them on a thread each instead, as the figures
//! before 2026-12-02 did.
//!
//! `HOOKD_BENCH_SECS` (default 10) sets the seconds of each hook load phase,
//! `HOOKD_BENCH_FOLLOWERS` (default 200) the followers, `HOOKD_BENCH_BIN` another
//! hookd binary to measure (e.g. one built from an older commit, to compare in turns
//! on the same machine).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQUESTS: usize = 1000;
const HOOK_CLIENTS: usize = 16;

fn main() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = env("HOOKD_BENCH_SECS", 10);
    let followers = env("HOOKD_BENCH_FOLLOWERS", 200) as usize;
    let work = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(work.path(), followers + 16);
    let repo = git_repo(&work.path().join("repo"));

    d.admin(&["feed", "add", "pages", "--repo", &repo, "--command", "true"]);
    d.admin(&["feed", "edit", "pages", "--cooldown", "0", "--badge", "on"]);
    // One at a time: triggers that find a build still queued would join it.
    for _ in 0..100 {
        let id = d.json(&["trigger", "pages"])["build"].as_u64().unwrap();
        wait(60, "a build finished", || {
            d.json(&["build", "show", &id.to_string()])["status"] == "succeeded"
        });
    }
    let last = d.json(&["builds", "pages", "--limit", "1"])[0]["id"]
        .as_u64()
        .unwrap();
    println!("render latency, {REQUESTS} sequential requests each (new connection per request):");
    println!(
        "{:<28} {:>8} {:>8} {:>8}",
        "path", "p50 ms", "p99 ms", "bytes"
    );
    for path in [
        "/".to_owned(),
        "/feeds/pages".to_owned(),
        format!("/builds/{last}"),
        "/badge/pages.svg".to_owned(),
        "/api/v1/feeds/pages/builds?limit=100".to_owned(),
    ] {
        let bytes = get(d.addr, &path).len();
        let times: Vec<f64> = (0..REQUESTS)
            .map(|_| {
                let t = Instant::now();
                get(d.addr, &path);
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        let (p50, p99) = percentiles(times);
        println!("{path:<28} {p50:>8.2} {p99:>8.2} {bytes:>8}");
    }

    d.admin(&[
        "feed",
        "add",
        "hooked",
        "--repo",
        &repo,
        "--command",
        "true",
    ]);
    d.admin(&["feed", "pause", "hooked"]);
    let urls = String::from_utf8_lossy(&d.run(&["hook-url", "hooked"]).stdout).into_owned();
    let hook = urls[urls.find("/hooks/").expect("a hook URL")..]
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let idle = rss_mib(d.pid());
    let quiet = hook_load(d.addr, &hook, secs, d.pid());
    // About 1 MB/s of log: 750,000 random bytes a second, base64 in 76-column lines.
    let writes = secs + 10;
    let loud = format!(
        "i=0; while [ $i -lt {writes} ]; do head -c 750000 /dev/urandom | base64 -w 76; sleep 1; i=$((i+1)); done"
    );
    d.admin(&["feed", "add", "loud", "--repo", &repo, "--command", &loud]);
    let id = d.json(&["trigger", "loud"])["build"].as_u64().unwrap();
    wait(60, "the loud build runs", || {
        d.json(&["build", "show", &id.to_string()])["status"] == "running"
    });
    let path = format!("/builds/{id}/events");
    let readers = if std::env::var("HOOKD_BENCH_FOLLOWER_THREADS").is_ok() {
        let readers: Vec<_> = (0..followers)
            .map(|_| {
                let (addr, path) = (d.addr, path.clone());
                std::thread::spawn(move || follow(addr, &path))
            })
            .collect();
        std::thread::spawn(move || readers.into_iter().map(|r| r.join().unwrap()).collect())
    } else {
        let (addr, path) = (d.addr, path.clone());
        std::thread::spawn(move || follow_all(addr, &path, followers))
    };
    let loaded = hook_load(d.addr, &hook, secs, d.pid());
    let got: Vec<(u64, bool)> = readers.join().unwrap();
    let log_len = std::fs::metadata(d.data.join("logs").join(format!("{id}.log")))
        .map(|m| m.len())
        .unwrap_or(0);
    let ended = got.iter().filter(|(_, end)| *end).count();
    let least = got.iter().map(|(n, _)| *n).min().unwrap_or(0);

    println!(
        "\nhook endpoint, {HOOK_CLIENTS} clients for {secs} s (paused feed, generic trigger):"
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>13}",
        "", "req/s", "p50 ms", "p99 ms", "peak RSS MiB"
    );
    for (name, run) in [
        ("no followers", &quiet),
        (&*format!("{followers} followers of ~1 MB/s"), &loaded),
    ] {
        println!(
            "{name:<34} {:>8.0} {:>8.2} {:>8.2} {:>13.1}",
            run.rate, run.p50, run.p99, run.peak_rss
        );
    }
    println!(
        "idle resident memory {idle:.1} MiB; log {log_len} bytes; {ended} of {followers} followers got the end event, the least log data received {least} bytes"
    );
}

/// A daemon on loopback with its own data dir.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    data: std::path::PathBuf,
    socket: std::path::PathBuf,
}

impl Daemon {
    fn start(dir: &Path, streams: usize) -> Self {
        let data = dir.join("data");
        let config = dir.join("hookd.toml");
        let text = format!(
            "[web]\nmax_streams = {streams}\n[http]\nmax_connections = 4096\n[builds]\nlog_max_bytes = 1073741824\n"
        );
        std::fs::write(&config, text).unwrap();
        let child = Command::new(hookd())
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start hookd");
        let mut d = Daemon {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            socket: data.join("admin.sock"),
            data,
        };
        wait(30, "hookd answers", || d.run(&["status"]).status.success());
        d.addr = d.json(&["status"])["listen"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        d
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(hookd())
            .arg("admin")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .output()
            .expect("run hookd admin")
    }

    fn admin(&self, args: &[&str]) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_slice(&self.run(args).stdout).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hookd binary measured: `HOOKD_BENCH_BIN`, else the one built with the bench.
fn hookd() -> std::ffi::OsString {
    std::env::var_os("HOOKD_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_hookd").into())
}

/// A one-commit repository; its path.
fn git_repo(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.com")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.com")
            .output()
            .expect("git")
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README"), "bench\n").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", "first"]);
    dir.display().to_string()
}

fn wait(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request on its own connection; the whole reply.
fn request(addr: SocketAddr, method: &str, path: &str) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply);
    reply
}

fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    request(addr, "GET", path)
}

/// Most a follower reads at once.
const READ_BUF: usize = 64 * 1024;
/// How long a follower waits for its stream to say anything.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The request a follower sends.
fn follow_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
}

/// What one follower has received: its byte count, and the last bytes, where `end`
/// shows up.
#[derive(Default)]
struct Received {
    total: u64,
    tail: Vec<u8>,
}

impl Received {
    fn take(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.tail.extend_from_slice(bytes);
        let keep = self.tail.len().saturating_sub(256);
        self.tail.drain(..keep);
    }

    /// Bytes received, and whether the `end` event came.
    fn done(self) -> (u64, bool) {
        let ended = String::from_utf8_lossy(&self.tail).contains("event: end");
        (self.total, ended)
    }
}

/// Reads a build's event stream to its end, on a thread of its own
/// (`HOOKD_BENCH_FOLLOWER_THREADS`): bytes received, and whether `end` came.
fn follow(addr: SocketAddr, path: &str) -> (u64, bool) {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    tcp.write_all(follow_request(path).as_bytes()).unwrap();
    let (mut got, mut buf) = (Received::default(), vec![0; READ_BUF]);
    while let Ok(n @ 1..) = tcp.read(&mut buf) {
        got.take(&buf[..n]);
    }
    got.done()
}

/// `n` followers of `path` on one thread (an event loop), as a load generator runs
/// many connections: what each received and whether it saw the `end` event.
fn follow_all(addr: SocketAddr, path: &str, n: usize) -> Vec<(u64, bool)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let head = follow_request(path);
    rt.block_on(async move {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let head = head.clone();
                tokio::spawn(async move {
                    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    tcp.write_all(head.as_bytes()).await.unwrap();
                    let (mut got, mut buf) = (Received::default(), vec![0; READ_BUF]);
                    loop {
                        let read = tokio::time::timeout(READ_TIMEOUT, tcp.read(&mut buf));
                        let Ok(Ok(n @ 1..)) = read.await else { break };
                        got.take(&buf[..n]);
                    }
                    got.done()
                })
            })
            .collect();
        let mut got = Vec::with_capacity(n);
        for task in tasks {
            got.push(task.await.expect("follower"));
        }
        got
    })
}

/// What one hook load phase measured.
struct Load {
    rate: f64,
    p50: f64,
    p99: f64,
    peak_rss: f64,
}

/// `HOOK_CLIENTS` clients posting generic triggers for `secs`, sampling the daemon's
/// resident memory meanwhile.
fn hook_load(addr: SocketAddr, hook: &str, secs: u64, pid: u32) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let clients: Vec<_> = (0..HOOK_CLIENTS)
        .map(|_| {
            let hook = hook.to_owned();
            std::thread::spawn(move || {
                let mut times = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let reply = request(addr, "POST", &hook);
                    assert!(reply.starts_with(b"HTTP/1.1 202"), "a 202");
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                times
            })
        })
        .collect();
    let times: Vec<f64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let rate = times.len() as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let peak_rss = sampler.join().unwrap();
    let (p50, p99) = percentiles(times);
    Load {
        rate,
        p50,
        p99,
        peak_rss,
    }
}

fn percentiles(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.50), at(0.99))
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
