//! A burst of large posts: 64 clients each POST a 9.9 MiB body to the hook at once,
//! and hookd's resident memory during the burst, at its end and after it settles.
//!
//! Two bursts: generic triggers with an opaque body (never held in memory) and JSON
//! bodies (held, so the body budget answers 503 past it). `HOOKD_BENCH_SETTLE_SECS`
//! sets how long to wait before the last reading (default 60).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{rss_mib, Target, SECRET};

/// Clients posting at once.
const CLIENTS: usize = 64;
/// Each body: 9.9 MiB, just under the default 10 MiB limit.
const BODY_BYTES: usize = 99 * 1024 * 1024 / 10;

/// What one burst showed.
pub struct Burst {
    /// Which bodies.
    name: &'static str,
    /// Replies by status code (0: no reply).
    statuses: BTreeMap<u16, usize>,
    /// Highest resident memory sampled during the burst.
    peak_mib: f64,
    /// Resident memory once every client had its reply.
    end_mib: f64,
    /// Resident memory after the settle time.
    settled_mib: f64,
    /// The settle time.
    settle: Duration,
}

/// Runs both bursts against a hook whose feed takes `Authorization: Bearer SECRET`.
pub async fn run(target: &Target) -> Vec<Burst> {
    let settle = Duration::from_secs(
        std::env::var("HOOKD_BENCH_SETTLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    let opaque = Arc::new(vec![b'x'; BODY_BYTES]);
    let mut json = br#"{"pad":""#.to_vec();
    json.resize(BODY_BYTES - 2, b'x');
    json.extend_from_slice(br#""}"#);
    vec![
        burst(target, "generic, opaque body", opaque, settle).await,
        burst(target, "JSON body (held)", Arc::new(json), settle).await,
    ]
}

async fn burst(target: &Target, name: &'static str, body: Arc<Vec<u8>>, settle: Duration) -> Burst {
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, pid) = (peak.clone(), target.pid);
        tokio::spawn(async move {
            loop {
                let kib = (rss_mib(pid).0 * 1024.0) as u64;
                peak.fetch_max(kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, path, body) = (target.addr, target.path.clone(), body.clone());
            tokio::spawn(async move { post(addr, &path, &body).await })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for client in clients {
        let status = client.await.unwrap_or(0);
        *statuses.entry(status).or_insert(0) += 1;
    }
    sampler.abort();
    let end_mib = rss_mib(target.pid).0;
    let settled_at = Instant::now() + settle;
    tokio::time::sleep_until(settled_at.into()).await;
    Burst {
        name,
        statuses,
        peak_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        end_mib,
        settled_mib: rss_mib(target.pid).0,
        settle,
    }
}

/// One post on a fresh connection; the reply's status, 0 if none came.
async fn post(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return 0;
    };
    let content_type = if body.first() == Some(&b'{') {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {SECRET}\r\n{content_type}Content-Length: {}\r\n\r\n",
        body.len()
    );
    // A refused post is answered before its body is read: keep going to the reply.
    if stream.write_all(head.as_bytes()).await.is_ok() {
        let _ = stream.write_all(body).await;
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Prints the bursts as one table.
pub fn report(bursts: &[Burst]) {
    println!(
        "\nburst: {CLIENTS} clients at once, {:.1} MiB body each",
        BODY_BYTES as f64 / 1048576.0
    );
    println!(
        "{:<22} {:<24} {:>9} {:>9} {:>14}",
        "body", "replies", "peak MiB", "end MiB", "settled MiB"
    );
    for b in bursts {
        let replies: Vec<String> = b.statuses.iter().map(|(s, n)| format!("{n}x{s}")).collect();
        println!(
            "{:<22} {:<24} {:>9.1} {:>9.1} {:>9.1} ({}s)",
            b.name,
            replies.join(" "),
            b.peak_mib,
            b.end_mib,
            b.settled_mib,
            b.settle.as_secs()
        );
    }
}
