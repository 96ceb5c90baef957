//! Load benchmark of the hook endpoint (`cargo bench --bench hook_load`).
//!
//! Starts the real hookd (release build) on loopback with a paused feed that has a
//! webhook secret, then posts a realistic signed GitHub push (the fixture body, a fresh
//! delivery id per request, so redelivery memory never short-cuts it) at concurrency
//! 1, 16 and 64, and prints requests/s, p50/p99 latency and resident memory. In the same
//! run it does the same against adnanh/webhook (`apt-get install webhook`) with a
//! payload-hmac-sha256 rule, when that binary is installed.
//!
//! Then it measures hookd's memory in a burst of large posts (see `burst`).
//!
//! `HOOKD_BENCH_SECS` sets the seconds per concurrency level (default 5).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "hook_load/burst.rs"]
mod burst;

use hmac::Mac;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "It's a Secret to Everybody";
const LEVELS: [usize; 3] = [1, 16, 64];

/// One server under test.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    path: String,
    pid: u32,
}

/// What one concurrency level measured.
struct Run {
    concurrency: usize,
    requests: usize,
    errors: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mib: f64,
}

fn main() {
    let secs: u64 = std::env::var("HOOKD_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let body =
        Arc::new(std::fs::read(fixture("github/push.json")).expect("read the GitHub push fixture"));
    let work = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let (mut hookd, target) = start_hookd(work.path());
    let idle = rss_mib(target.pid).0;
    println!("hookd idle resident memory: {idle:.1} MiB");
    report(&target, &rt.block_on(measure(&target, &body, secs)));
    burst::report(&rt.block_on(burst::run(&target)));
    let _ = hookd.kill();
    let _ = hookd.wait();

    match start_webhook(work.path()) {
        Some((mut webhook, target)) => {
            report(&target, &rt.block_on(measure(&target, &body, secs)));
            let _ = webhook.kill();
            let _ = webhook.wait();
        }
        None => println!(
            "\nadnanh/webhook not installed (apt-get install webhook): skipped the comparison"
        ),
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/webhooks")
        .join(name)
}

fn start_hookd(dir: &Path) -> (Child, Target) {
    let bin = env!("CARGO_BIN_EXE_hookd");
    let data = dir.join("hookd-data");
    let socket = data.join("admin.sock");
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("start hookd");
    let admin = |args: &[&str]| {
        Command::new(bin)
            .arg("admin")
            .arg("--socket")
            .arg(&socket)
            .arg("--json")
            .args(args)
            .output()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match admin(&["status"]) {
            Ok(out) if out.status.success() => {
                break serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .expect("status JSON")
            }
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                panic!("hookd did not start");
            }
        }
    };
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).expect("write secret");
    let secret_arg = secret.display().to_string();
    let out = admin(&[
        "feed",
        "add",
        "bench",
        "--repo",
        "https://github.com/woodpecker-ci/woodpecker.git",
        "--command",
        "true",
        "--cooldown",
        "0",
        "--secret-file",
        &secret_arg,
    ])
    .expect("feed add");
    let feed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("feed JSON");
    // Paused: every trigger is admitted durably, but the bench measures intake, not builds.
    admin(&["feed", "pause", "bench"]).expect("pause");
    let url = feed["hook_urls"][0]["url"].as_str().expect("hook url");
    let path = url[url.find("/hooks/").expect("hook path")..].to_owned();
    let addr = status["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("addr");
    let pid = child.id();
    (
        child,
        Target {
            name: "hookd",
            addr,
            path,
            pid,
        },
    )
}

fn start_webhook(dir: &Path) -> Option<(Child, Target)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let hooks = dir.join("hooks.json");
    let config = serde_json::json!([{
        "id": "bench",
        "execute-command": "/bin/true",
        "include-command-output-in-response": false,
        "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": SECRET,
            "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}
    }]);
    std::fs::write(&hooks, config.to_string()).ok()?;
    let mut child = Command::new("webhook")
        .arg("-hooks")
        .arg(&hooks)
        .args(["-ip", "127.0.0.1", "-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id();
    Some((
        child,
        Target {
            name: "webhook",
            addr,
            path: "/hooks/bench".into(),
            pid,
        },
    ))
}

async fn measure(target: &Target, body: &Arc<Vec<u8>>, secs: u64) -> Vec<Run> {
    let mut runs = Vec::new();
    for concurrency in LEVELS {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(secs);
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let (peak, pid) = (peak.clone(), target.pid);
            tokio::spawn(async move {
                loop {
                    let rss = (rss_mib(pid).0 * 1024.0) as u64;
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let workers: Vec<_> = (0..concurrency)
            .map(|w| {
                let (addr, path, body) = (target.addr, target.path.clone(), body.clone());
                tokio::spawn(async move { client(addr, path, body, w, deadline).await })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut errors = 0;
        for w in workers {
            let (lat, err) = w.await.unwrap_or_default();
            latencies.extend(lat);
            errors += err;
        }
        sampler.abort();
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        runs.push(Run {
            concurrency,
            requests: latencies.len(),
            errors,
            secs: elapsed,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            peak_rss_mib: peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        });
    }
    runs
}

/// One keep-alive connection posting signed pushes until the deadline; returns
/// per-request latencies (µs) of 2xx replies and the count of other outcomes.
async fn client(
    addr: SocketAddr,
    path: String,
    body: Arc<Vec<u8>>,
    worker: usize,
    deadline: Instant,
) -> (Vec<u64>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut conn: Option<TcpStream> = None;
    let mut n = 0u64;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac key");
    mac.update(&body);
    let signature = hex::encode(mac.finalize().into_bytes());
    while Instant::now() < deadline {
        n += 1;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: bench-{worker}-{n}-{}\r\nX-Hub-Signature-256: sha256={signature}\r\nContent-Length: {}\r\n\r\n",
            std::process::id(),
            body.len()
        );
        let started = Instant::now();
        let stream = match conn.as_mut() {
            Some(s) => s,
            None => match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn.insert(s)
                }
                Err(_) => {
                    errors += 1;
                    continue;
                }
            },
        };
        match exchange(stream, head.as_bytes(), &body).await {
            Ok(status) if (200..300).contains(&status) => {
                latencies.push(started.elapsed().as_micros() as u64)
            }
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
    }
    (latencies, errors)
}

/// Writes one request and reads one response (Content-Length framed); returns the status.
async fn exchange(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> std::io::Result<u16> {
    stream.write_all(head).await?;
    stream.write_all(body).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok(status);
    }
}

/// (current, peak) resident memory of a process in MiB, from /proc.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report(target: &Target, runs: &[Run]) {
    println!("\n{} on {}", target.name, target.addr);
    println!(
        "{:>11} {:>10} {:>9} {:>9} {:>9} {:>8} {:>12}",
        "concurrency", "requests", "req/s", "p50 ms", "p99 ms", "errors", "peak RSS MiB"
    );
    for r in runs {
        println!(
            "{:>11} {:>10} {:>9.0} {:>9.2} {:>9.2} {:>8} {:>12.1}",
            r.concurrency,
            r.requests,
            r.requests as f64 / r.secs,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            r.peak_rss_mib
        );
    }
    println!("process peak RSS (VmHWM): {:.1} MiB", rss_mib(target.pid).1);
}
