//! The web side's live views through the real daemon, read by a raw HTTP client as a
//! browser would: `/builds/ID/events` (log chunks by byte offset, resumed with
//! `Last-Event-ID` without a gap or a repeat, then `end`), `/events` (build state
//! changes), `/builds/ID/log` streamed while the build runs, and the stream cap.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::{http, wait_for, GitRepo, TestDaemon};

/// One Server-Sent Event (or a `retry:` preamble, which has no event name).
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub name: String,
    pub id: Option<u64>,
    pub data: String,
    pub retry: bool,
}

/// A streamed reply read as it arrives: status, headers, then the chunked body.
pub struct Stream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body bytes received and not yet taken.
    pending: Vec<u8>,
    /// The last chunk has been read.
    done: bool,
}

impl Stream {
    /// Sends a GET and reads the reply's head.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(tcp);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut stream = Stream {
            reader,
            status,
            headers,
            pending: Vec::new(),
            done: false,
        };
        if stream.header("transfer-encoding") != Some("chunked") {
            // A whole reply (an error): its body is what is left.
            let mut rest = Vec::new();
            let _ = stream.reader.read_to_end(&mut rest);
            stream.pending = rest;
            stream.done = true;
        }
        stream
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads one more chunk of the body; false at its end.
    fn fill(&mut self) -> bool {
        if self.done {
            return false;
        }
        let mut size = String::new();
        if self.reader.read_line(&mut size).unwrap_or(0) == 0 {
            self.done = true;
            return false;
        }
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).expect("chunk");
        chunk.truncate(size);
        self.done = size == 0;
        self.pending.extend_from_slice(&chunk);
        !self.done
    }

    /// The next event; `None` when the stream ended. Comments (keep-alives) are skipped.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(at) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..at + 2).collect();
                let text = String::from_utf8(block).expect("events are UTF-8");
                let mut event = Event::default();
                let mut data = Vec::new();
                for line in text.lines() {
                    match line.split_once(": ") {
                        Some(("event", v)) => event.name = v.to_owned(),
                        Some(("id", v)) => event.id = Some(v.parse().expect("numeric id")),
                        Some(("data", v)) => data.push(v.to_owned()),
                        Some(("retry", _)) => event.retry = true,
                        _ => assert!(
                            line.is_empty() || line.starts_with(':'),
                            "unexpected line {line:?}"
                        ),
                    }
                }
                event.data = data.join("\n");
                if event.name.is_empty() && !event.retry {
                    continue;
                }
                return Some(event);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Body bytes until `cond` holds for everything read so far (or the body ends).
    pub fn read_until(&mut self, cond: impl Fn(&str) -> bool) -> String {
        while !cond(&String::from_utf8_lossy(&self.pending)) && self.fill() {}
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// The rest of the body.
    pub fn read_to_end(&mut self) -> String {
        while self.fill() {}
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// A log event's text.
fn log_text(event: &Event) -> String {
    serde_json::from_str::<String>(&event.data).expect("log data is a JSON string")
}

fn status_of(event: &Event) -> String {
    let v: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    v["status"].as_str().unwrap().to_owned()
}

/// Reads a build's event stream until `stop` holds for the log so far (or `end`);
/// checks that each log event's id is the byte offset after it. Returns the log text,
/// the last id and the end event's status, if one came.
fn read_log(
    s: &mut Stream,
    mut offset: u64,
    stop: impl Fn(&str) -> bool,
) -> (String, u64, Option<String>) {
    let mut text = String::new();
    while let Some(event) = s.next_event() {
        match event.name.as_str() {
            "log" => {
                let chunk = log_text(&event);
                offset += chunk.len() as u64;
                assert_eq!(event.id, Some(offset), "a log event's id is its end offset");
                text.push_str(&chunk);
                if stop(&text) {
                    return (text, offset, None);
                }
            }
            "status" => assert!(!status_of(&event).is_empty()),
            "end" => return (text, offset, Some(status_of(&event))),
            "" if event.retry => {}
            other => panic!("unexpected event {other}: {event:?}"),
        }
    }
    let tail = &text.as_bytes()[text.len().saturating_sub(200)..];
    panic!(
        "the stream ended without an end event; {} bytes of log so far, ending {:?}",
        text.len(),
        String::from_utf8_lossy(tail)
    )
}

/// A feed whose build prints `first` lines, waits for the gate file, sleeps past the
/// daemon's 1 s idle timeout, then prints `second` lines.
fn gated_build(d: &TestDaemon, first: u32, second: u32) -> (u64, std::path::PathBuf) {
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let gate = d.dir.path().join("gate");
    let cmd = format!(
        "for i in $(seq 1 {first}); do echo \"line $i\"; done; \
         while [ ! -e '{}' ]; do sleep 0.02; done; sleep 1.5; \
         for i in $(seq {} {}); do echo \"line $i\"; done",
        gate.display(),
        first + 1,
        first + second
    );
    let hook = d.add_repo_feed("live", &repo, &cmd, &["--cooldown", "0"]);
    let reply = d.post(&hook, &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    (reply.json()["build"].as_u64().unwrap(), gate)
}

const IDLE_1S: &str = "[http]\nidle_timeout_secs = 1\n";

#[test]
fn build_events_resume_from_last_event_id_without_gap_or_repeat() {
    let d = TestDaemon::start_with(IDLE_1S);
    let (id, gate) = gated_build(&d, 5, 5);
    let path = format!("/builds/{id}/events");
    let mut first = Stream::open(d.addr, &path, &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("text/event-stream"));
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    assert_eq!(first.header("x-accel-buffering"), Some("no"));
    assert_eq!(
        first.header("content-security-policy"),
        Some("default-src 'self'")
    );
    let (before, last_id, end) = read_log(&mut first, 0, |t| t.contains("line 5\n"));
    assert_eq!(end, None, "the build waits at its gate");
    drop(first);

    // The rest of the build happens while nobody listens; the reconnect resumes.
    std::fs::write(&gate, "").unwrap();
    let last = last_id.to_string();
    let mut second = Stream::open(d.addr, &path, &[("Last-Event-ID", &last)]);
    assert_eq!(second.status, 200);
    let (after, _, end) = read_log(&mut second, last_id, |_| false);
    assert_eq!(end.as_deref(), Some("succeeded"));
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
    let log = d.log(id);
    assert_eq!(format!("{before}{after}"), log, "no line lost or repeated");
    for n in 1..=10 {
        assert_eq!(log.matches(&format!("line {n}\n")).count(), 1, "{log}");
    }

    // A finished build's stream: its log from the offset asked for, then the end.
    let mut again = Stream::open(d.addr, &format!("{path}?from=3"), &[]);
    let (rest, _, end) = read_log(&mut again, 3, |_| false);
    assert_eq!(rest, log[3..]);
    assert_eq!(end.as_deref(), Some("succeeded"));
    assert_eq!(again.next_event().map(|e| e.name), None, "the stream ends");

    let missing = http(d.addr, "GET", "/builds/999/events", &[], b"");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["status"], "not_found");
}

#[test]
fn the_raw_log_streams_while_the_build_runs() {
    let d = TestDaemon::start_with(IDLE_1S);
    let (id, gate) = gated_build(&d, 3, 3);
    let mut log = Stream::open(d.addr, &format!("/builds/{id}/log"), &[]);
    assert_eq!(log.status, 200);
    assert_eq!(
        log.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let early = log.read_until(|t| t.contains("line 3\n"));
    assert!(
        early.contains("line 3\n") && !early.contains("line 4"),
        "{early}"
    );
    assert_eq!(
        d.build(id)["status"],
        "running",
        "sent before the build ended"
    );
    std::fs::write(&gate, "").unwrap();
    let whole = log.read_to_end();
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
    assert_eq!(whole, d.log(id));
}

#[test]
fn events_tell_each_build_state_change() {
    let d = TestDaemon::start_with(IDLE_1S);
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed("ev", &repo, "sleep 1.5; echo done", &["--cooldown", "0"]);
    let mut events = Stream::open(d.addr, "/events", &[]);
    assert_eq!(events.status, 200);
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    // The preamble is sent once the stream listens: nothing after it is missed.
    assert!(events.next_event().unwrap().retry);
    let reply = d.post(&hook, &[], b"");
    let id = reply.json()["build"].as_u64().unwrap();
    let mut changes = Vec::new();
    while let Some(event) = events.next_event() {
        assert_eq!(event.name, "build", "{event:?}");
        let v: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(v["build"], id);
        assert_eq!(v["feed"], "ev");
        let change = format!("{} {}", v["change"].as_str().unwrap(), v["status"]);
        let finished = v["change"] == "finished";
        changes.push(change);
        if finished {
            break;
        }
    }
    // Queued may be published just after a worker took the build: no order but the end.
    for change in [
        "queued \"queued\"",
        "started \"running\"",
        "commit \"running\"",
    ] {
        assert!(changes.iter().any(|c| c == change), "{changes:?}");
    }
    assert_eq!(changes.last().unwrap(), "finished \"succeeded\"");
}

#[test]
fn streams_beyond_the_cap_get_503_until_one_closes() {
    let d = TestDaemon::start_with("[web]\nmax_streams = 2\n");
    let mut open: Vec<Stream> = (0..2)
        .map(|_| {
            let mut s = Stream::open(d.addr, "/events", &[]);
            assert_eq!(s.status, 200);
            assert!(s.next_event().unwrap().retry);
            s
        })
        .collect();
    let refused = http(d.addr, "GET", "/events", &[], b"");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert_eq!(refused.json()["status"], "unavailable");
    // Pages are not streams: they are still served.
    assert_eq!(http(d.addr, "GET", "/", &[], b"").status, 200);
    open.pop();
    wait_for(30, "a closed stream frees its slot", || {
        let mut s = Stream::open(d.addr, "/events", &[]);
        (s.status == 200 && s.next_event().is_some_and(|e| e.retry)).then_some(())
    });
}

/// Whether `text` ends with `line` followed by a newline, looking at its end only (a
/// follower's text grows to megabytes).
fn ends_with_line(text: &str, line: &str) -> bool {
    text.as_bytes().ends_with(format!("{line}\n").as_bytes())
}

#[test]
fn followers_behind_or_joining_late_get_every_byte_once() {
    let d = TestDaemon::start();
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let (burst, end) = (d.dir.path().join("burst"), d.dir.path().join("end"));
    let wait = |gate: &std::path::Path| {
        format!("while [ ! -e '{}' ]; do sleep 0.02; done", gate.display())
    };
    // A burst of 16 MB, far beyond what the build's shared reader keeps for a follower
    // that does not read plus the socket buffers; multi-byte characters in it, so
    // pieces and file reads cut through characters. The marker lines have spaces,
    // which base64 has not.
    let cmd = format!(
        "echo 'burst next'; {}; head -c 12000000 /dev/urandom | base64 -w 76 | sed 's/+/€/g'; \
         echo 'burst over'; {}; echo 'build over'",
        wait(&burst),
        wait(&end)
    );
    let hook = d.add_repo_feed("loud", &repo, &cmd, &["--cooldown", "0"]);
    let id = d.post(&hook, &[], b"").json()["build"].as_u64().unwrap();
    let path = format!("/builds/{id}/events");
    // A stops reading before the burst.
    let mut a = Stream::open(d.addr, &path, &[]);
    let (a_start, a_offset, _) = read_log(&mut a, 0, |t| ends_with_line(t, "burst next"));
    // B reads the raw log as it comes.
    let mut b = Stream::open(d.addr, &format!("/builds/{id}/log"), &[]);
    let b = std::thread::spawn(move || b.read_to_end());
    std::fs::write(&burst, "").unwrap();
    // C joins where A stopped, while the reader moves on; once C has the line after
    // the burst, the reader has sent the whole burst past A.
    let last = a_offset.to_string();
    let mut c = Stream::open(d.addr, &path, &[("Last-Event-ID", &last)]);
    let (past_burst, told) = std::sync::mpsc::channel();
    let c = std::thread::spawn(move || {
        let (early, offset, _) = read_log(&mut c, a_offset, |t| ends_with_line(t, "burst over"));
        past_burst.send(()).unwrap();
        let (rest, _, end) = read_log(&mut c, offset, |_| false);
        (format!("{early}{rest}"), end)
    });
    told.recv_timeout(Duration::from_secs(120))
        .expect("C gets past the burst");
    std::fs::write(&end, "").unwrap();
    let (a_rest, _, a_end) = read_log(&mut a, a_offset, |_| false);
    assert_eq!(a_end.as_deref(), Some("succeeded"));
    assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
    // The file itself (`hookd admin log` decodes its 64 KiB reads one by one, so it
    // mangles a character cut between two).
    let file = d.data_dir().join("logs").join(format!("{id}.log"));
    let log = String::from_utf8(std::fs::read(file).unwrap()).expect("the log is UTF-8");
    assert!(log.len() > 16_000_000 && ends_with_line(&log, "build over"));
    assert!(
        format!("{a_start}{a_rest}") == log,
        "A, behind by far more than the reader keeps, got every byte once"
    );
    let (c_text, c_end) = c.join().unwrap();
    assert_eq!(c_end.as_deref(), Some("succeeded"));
    assert!(
        c_text == log[a_offset as usize..],
        "C, joining in the middle, got every byte from where it asked once"
    );
    assert!(b.join().unwrap() == log, "the raw log, whole");
    wait_for(30, "the daemon says A fell behind", || {
        d.logs().contains("a follower fell behind").then_some(())
    });
}
