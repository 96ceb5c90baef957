//! The hook endpoint against hostile or broken clients, and durability of its 2xx.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{parse_reply, paused_feed, wait_for, GitRepo, TestDaemon};

#[test]
fn oversized_body_is_refused_from_content_length_without_reading_it() {
    let d = TestDaemon::start_with("[http]\nmax_body_bytes = 1000\n");
    let hook = d.add_unbuilt_feed("lim", &[]);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Announce 1 GB and send none of it: the reply must come anyway.
    write!(
        s,
        "POST {hook} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let reply = parse_reply(&raw);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.json()["status"], "too_large");
}

#[test]
fn an_unknown_token_is_answered_without_reading_the_body() {
    let d = TestDaemon::start();
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Announce a body within the limit and send none of it: the 404 comes anyway,
    // and the connection is closed since its body was never read.
    write!(
        s,
        "POST /hooks/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let reply = parse_reply(&raw);
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.header("connection"), Some("close"));
}

#[test]
fn oversized_chunked_body_is_cut_off_as_it_passes_the_limit() {
    let d = TestDaemon::start_with("[http]\nmax_body_bytes = 1000\n");
    let hook = d.add_unbuilt_feed("lim", &[]);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {hook} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'a'; 600];
    for _ in 0..2 {
        write!(s, "{:x}\r\n", chunk.len()).unwrap();
        s.write_all(&chunk).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    // No terminating chunk: the server must not wait for the rest.
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert_eq!(parse_reply(&raw).status, 413);
    let deliveries = d.admin_json(&["builds", "lim"]);
    assert!(
        deliveries.as_array().unwrap().is_empty(),
        "nothing queued from a refused body"
    );
}

#[test]
fn a_client_that_trickles_its_headers_is_dropped() {
    let d = TestDaemon::start_with("[http]\nheader_timeout_secs = 1\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.write_all(b"POST /hooks/x HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let closed = wait_for(20, "the server to drop the trickling client", || {
        // One byte of a header line at a time, never finishing the headers.
        if s.write_all(b"X").is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => Some(started.elapsed()),
            Ok(_) => Some(started.elapsed()),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                None
            }
            Err(_) => Some(started.elapsed()),
        }
    });
    assert!(closed < Duration::from_secs(15), "{closed:?}");
    // The daemon still serves others.
    assert_eq!(
        crate::support::http(d.addr, "GET", "/healthz", &[], b"").status,
        200
    );
}

#[test]
fn every_acknowledged_trigger_survives_kill_9() {
    let mut d = TestDaemon::start_with("workers = 1\n");
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let gate = d.dir.path().join("gate");
    let cmd = format!("while [ ! -e '{}' ]; do sleep 0.02; done", gate.display());
    let hooks: Vec<String> = (0..20)
        .map(|i| d.add_repo_feed(&format!("f{i}"), &repo, &cmd, &["--cooldown", "0"]))
        .collect();
    let ids: Vec<u64> = hooks
        .iter()
        .map(|h| {
            let r = d.post(h, &[], b"");
            assert_eq!(r.status, 202);
            r.json()["build"].as_u64().unwrap()
        })
        .collect();
    d.kill9();
    d.restart();
    for id in ids {
        let b = d.build(id);
        assert!(
            matches!(
                b["status"].as_str(),
                Some("queued" | "running" | "interrupted")
            ),
            "{b}"
        );
    }
    std::fs::write(&gate, "").unwrap();
}

/// Sends `GET /healthz` on a keep-alive connection and reads exactly its reply.
fn keep_alive_health(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s
            .read(&mut buf)
            .expect("a reply on the keep-alive connection");
        assert!(n > 0, "closed before replying");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .expect("content-length");
            if body.len() >= len {
                return parse_reply(&raw).status;
            }
        }
    }
}

/// Whether the server closed the connection (EOF or reset) before the read timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout (which also bounds the wait for a next request) is long: only
    // the idle timeout can close the connection within the read timeout below.
    let d = TestDaemon::start_with("[http]\nidle_timeout_secs = 1\nheader_timeout_secs = 60\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(keep_alive_health(&mut s), 200);
    assert!(
        closed_by_server(&mut s),
        "an idle keep-alive connection stayed open past the idle timeout"
    );
}

#[test]
fn idle_and_header_trickling_clients_at_the_cap_do_not_keep_a_delivery_waiting() {
    // Neither timeout frees a slot during the test: only giving way at the cap can.
    let d = TestDaemon::start_with(
        "[http]\nmax_connections = 4\nidle_timeout_secs = 60\nheader_timeout_secs = 60\n",
    );
    let hook = paused_feed(&d, "cap");
    let mut held: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            if i % 2 == 0 {
                // A keep-alive client between two requests.
                assert_eq!(keep_alive_health(&mut s), 200);
            } else {
                // A client still sending its headers.
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
            }
            s
        })
        .collect();
    // The delivery must be answered (before the support client's 30 s read timeout;
    // without giving way it would wait 60 s in the backlog).
    let reply = d.post(&hook, &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    // The connection that gave way was the one idle longest: the first keep-alive one.
    held[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(closed_by_server(&mut held[0]), "{}", d.logs());
}

#[test]
fn bodies_over_the_memory_budget_get_503_with_retry_after_until_it_frees() {
    let d = TestDaemon::start_with("[http]\nmax_body_bytes = 100000\nbody_budget_bytes = 150000\n");
    let hook = paused_feed(&d, "budget");
    let json = |len: usize| {
        let mut body = br#"{"pad":""#.to_vec();
        body.resize(len - 2, b' ');
        body.extend_from_slice(br#""}"#);
        body
    };
    let kept = json(60_000);
    let json_type = [("Content-Type", "application/json")];
    // A forge's delivery whose body arrives slowly holds 100,000 bytes of the budget
    // (once the daemon has its headers: until then the other post may come first).
    let (slow, refused) = wait_for(20, "a kept body to be refused for the budget", || {
        let mut slow = TcpStream::connect(d.addr).unwrap();
        write!(
            slow,
            "POST {hook} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"ref\":"
        )
        .unwrap();
        let reply = d.post(&hook, &json_type, &kept);
        (reply.status == 503).then_some((slow, reply))
    });
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["status"], "unavailable");
    assert!(
        refused.header("retry-after").is_some(),
        "{:?}",
        refused.headers
    );
    // A generic trigger's body is not kept, so it is not refused for memory.
    let generic = d.post(&hook, &[], &vec![b'x'; 90_000]);
    assert_eq!(generic.status, 202, "{}", generic.body);
    // Once the slow delivery is gone, its share is free again.
    drop(slow);
    let later = wait_for(20, "the budget to free", || {
        let reply = d.post(&hook, &json_type, &kept);
        (reply.status != 503).then_some(reply)
    });
    assert_eq!(later.status, 202, "{}", later.body);
}
