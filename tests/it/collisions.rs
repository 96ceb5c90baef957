//! Many webhooks at once, colliding inside the daemon's group commits (one sled batch
//! per group): the replies and what is stored are what one-by-one admissions give,
//! and a kill -9 in the middle of them loses nothing acknowledged.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Duration;

use crate::support::{parse_reply, paused_feed, wait_for, GitRepo, HttpReply, TestDaemon};

/// Posts a generic trigger per idempotency key, all at once (one thread each);
/// returns the replies in key order.
fn post_at_once(d: &TestDaemon, hook: &str, keys: &[String]) -> Vec<HttpReply> {
    let start = Barrier::new(keys.len());
    std::thread::scope(|s| {
        let threads: Vec<_> = keys
            .iter()
            .map(|key| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    d.post(hook, &[("Idempotency-Key", key)], b"")
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// `n` times the same key, then `n` keys of their own.
fn keys(n: usize) -> Vec<String> {
    let same = std::iter::repeat_n("same".to_owned(), n);
    same.chain((0..n).map(|i| format!("key-{i}"))).collect()
}

#[test]
fn one_delivery_id_and_one_ref_at_once_answer_as_one_by_one() {
    let d = TestDaemon::start();
    // Paused: every trigger is admitted, none starts, so each joins the one build.
    let hook = paused_feed(&d, "web");
    let n = 16;
    let replies = post_at_once(&d, &hook, &keys(n));
    let build = replies[0].json()["build"].as_u64().expect("a build");
    for r in &replies {
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.json()["build"].as_u64(), Some(build), "{}", r.body);
    }
    // A redelivery gets the first reply again, byte for byte, whatever came first.
    for r in &replies[1..n] {
        assert_eq!((r.status, &r.body), (replies[0].status, &replies[0].body));
    }
    // One of the n + 1 deliveries queued the build; every other one joined it.
    let words: Vec<String> = replies[n - 1..]
        .iter()
        .map(|r| r.json()["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        words.iter().filter(|w| *w == "queued").count(),
        1,
        "{words:?}"
    );
    assert_eq!(
        words.iter().filter(|w| *w == "coalesced").count(),
        n,
        "{words:?}"
    );
    let shown = d.build(build);
    assert_eq!(shown["trigger_count"], n as u64 + 1, "{shown}");
    let deliveries = d.admin_json(&["deliveries", "web", "--limit", "100"]);
    let listed = deliveries.as_array().unwrap();
    assert_eq!(listed.len(), n + 1, "{deliveries}");
    let same = listed.iter().filter(|r| r["delivery_id"] == "same").count();
    assert_eq!(same, 1, "{deliveries}");
    let builds = d.admin_json(&["builds", "web"]);
    assert_eq!(builds.as_array().unwrap().len(), 1, "{builds}");
}

#[test]
fn triggers_at_once_in_a_cooldown_join_one_deferred_build() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed(
        "slow",
        &repo,
        "true",
        &["--cooldown", "3600", "--on-cooldown", "defer"],
    );
    let first = d.post(&hook, &[], b"");
    assert_eq!(first.status, 202, "{}", first.body);
    let started = first.json()["build"].as_u64().unwrap();
    d.wait_build(started, 60);
    let n = 12;
    let replies = post_at_once(&d, &hook, &keys(n));
    // The first admitted defers a new build to the cooldown's end; each later one
    // (redelivery or not) gets that same reply.
    assert_eq!(replies[0].status, 202, "{}", replies[0].body);
    assert_eq!(
        replies[0].json()["status"],
        "deferred",
        "{}",
        replies[0].body
    );
    for r in &replies {
        assert_eq!((r.status, &r.body), (replies[0].status, &replies[0].body));
    }
    let deferred = replies[0].json()["build"].as_u64().unwrap();
    assert_eq!(d.build(deferred)["trigger_count"], n as u64 + 1);
    let builds = d.admin_json(&["builds", "slow"]);
    assert_eq!(builds.as_array().unwrap().len(), 2, "{builds}");
}

/// Posts a generic trigger; `None` once the daemon is gone (no whole reply).
fn try_post(addr: SocketAddr, hook: &str, key: &str) -> Option<HttpReply> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "POST {hook} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\nIdempotency-Key: {key}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let whole = String::from_utf8_lossy(&raw).contains("\r\n\r\n");
    whole.then(|| parse_reply(&raw))
}

#[test]
fn a_kill_9_among_many_webhooks_at_once_loses_nothing_acknowledged() {
    let mut d = TestDaemon::start_with("[builds]\nkeep_deliveries = 100000\n");
    let feeds = ["f0", "f1", "f2"];
    let hooks: Vec<String> = feeds.iter().map(|name| paused_feed(&d, name)).collect();
    let addr = d.addr;
    let acked = AtomicUsize::new(0);
    let threads = 12;
    // (feed, key, reply) of every 202, per thread.
    let acknowledged: Vec<(usize, String, HttpReply)> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..threads)
            .map(|t| {
                let (hooks, acked) = (&hooks, &acked);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    // Bounded: the daemon is killed long before this runs out.
                    for n in 0..5_000 {
                        // Every third post redelivers the one before.
                        let k = n - usize::from(n % 3 == 2);
                        let (feed, key) = ((t + k) % hooks.len(), format!("t{t}-{k}"));
                        let Some(reply) = try_post(addr, &hooks[feed], &key) else {
                            break;
                        };
                        if reply.status == 202 {
                            acked.fetch_add(1, Ordering::SeqCst);
                            mine.push((feed, key, reply));
                        }
                    }
                    mine
                })
            })
            .collect();
        wait_for(120, "300 acknowledged webhooks", || {
            (acked.load(Ordering::SeqCst) >= 300).then_some(())
        });
        d.kill9();
        senders
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    d.restart();
    let builds = d.admin_json(&["builds", "--limit", "100000"]);
    let kept: HashSet<u64> = builds
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    for (i, name) in feeds.iter().enumerate() {
        let listed = d.admin_json(&["deliveries", name, "--limit", "100000"]);
        let ids: HashSet<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["delivery_id"].as_str())
            .collect();
        for (_, key, reply) in acknowledged.iter().filter(|(f, ..)| *f == i) {
            let build = reply.json()["build"].as_u64().unwrap();
            assert!(kept.contains(&build), "acknowledged build {build} was lost");
            assert!(
                ids.contains(key.as_str()),
                "acknowledged delivery {key} was lost"
            );
        }
    }
    // A redelivery after the restart still gets the acknowledged reply.
    let (feed, key, reply) = &acknowledged[acknowledged.len() / 2];
    let again = d.post(&hooks[*feed], &[("Idempotency-Key", key)], b"");
    assert_eq!((again.status, &again.body), (reply.status, &reply.body));
}
