//! The pages in a real browser: Debian's `chromium`, driven through `chromedriver`
//! (Debian's `chromium-driver`) over its W3C WebDriver HTTP API on loopback. Nothing
//! here downloads a browser: without the packages the test says so and skips.
//!
//! `HOOKD_SCREENSHOTS=docs cargo test --test it browser` also saves the README's
//! screenshots (PNG, taken by this browser) into `docs/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::support::{closed_port, wait_for, GitRepo, TestDaemon};
use crate::web::gated_feed;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of a W3C WebDriver element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver command: its HTTP status and the reply's `value`. chromedriver keeps
/// connections open, so the reply is read by its length, not to the end.
fn webdriver(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut tcp = TcpStream::connect(addr).expect("connect to chromedriver");
    tcp.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(body.as_bytes()).unwrap();
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
        }
    }
    let mut reply = vec![0; length];
    reader.read_exact(&mut reply).unwrap();
    let reply: Value = serde_json::from_slice(&reply).expect("a JSON reply");
    (status, reply["value"].clone())
}

/// A chromedriver process on an ephemeral loopback port.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    /// Starts chromedriver; `None` (after saying why) when Debian's packages are absent.
    fn start(dir: &Path) -> Option<Self> {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            if !Path::new(path).exists() {
                println!(
                    "SKIPPED browser test: {path} is missing (apt-get install chromium chromium-driver; .ci/run installs {package})"
                );
                return None;
            }
        }
        let port = closed_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let driver = Driver { child, addr };
        wait_for(60, "chromedriver answers", || {
            std::net::TcpStream::connect(addr).ok()?;
            let (status, ready) = webdriver(addr, "GET", "/status", None);
            (status == 200 && ready["ready"] == true).then_some(())
        });
        Some(driver)
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let (status, value) = webdriver(self.addr, method, path, Some(body));
        assert_eq!(status, 200, "{method} {path}: {value}");
        value
    }

    /// A headless browser session with its own profile.
    fn session(&self, profile: &Path) -> Session<'_> {
        self.session_with(profile, true)
    }

    /// A headless browser session with its own profile; `javascript: false` blocks
    /// every page's scripts (Chromium's content setting), as a user who turned it off.
    fn session_with(&self, profile: &Path, javascript: bool) -> Session<'_> {
        let setting = if javascript { 1 } else { 2 };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--window-size=1100,760",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "profile.managed_default_content_settings.javascript": setting,
                },
            },
        }}});
        let value = self.call("POST", "/session", &caps);
        let id = value["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Session { driver: self, id }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver.call(method, &path, body)
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", &json!({ "url": url }));
    }

    /// Runs `script` in the page and returns its value.
    fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": [] }),
        )
    }

    /// An element's text as the page shows it now.
    fn text(&self, id: &str) -> String {
        let script =
            format!("var e = document.getElementById('{id}'); return e ? e.textContent : '';");
        self.eval(&script).as_str().unwrap_or_default().to_owned()
    }

    /// An element's text as WebDriver reads it (no script of the page involved).
    fn element_text(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            &json!({ "using": "css selector", "value": css }),
        );
        let id = found[ELEMENT_KEY].as_str().expect("an element id");
        let text = self.call("GET", &format!("/element/{id}/text"), &json!({}));
        text.as_str().unwrap_or_default().to_owned()
    }

    /// The page's title as WebDriver reads it.
    fn title(&self) -> String {
        let title = self.call("GET", "/title", &json!({}));
        title.as_str().unwrap_or_default().to_owned()
    }

    /// Loads `url` as an image in the current page (same origin, so the canvas it is
    /// drawn on can be read): its natural size and the colour of a pixel `right`
    /// pixels left of its right edge, halfway down, as Chromium rendered it.
    fn rendered_image(&self, url: &str, right: u32) -> Value {
        let script = format!(
            "var done = arguments[arguments.length - 1];
             var img = new Image();
             img.onload = function () {{
               var c = document.createElement('canvas');
               c.width = img.naturalWidth; c.height = img.naturalHeight;
               var g = c.getContext('2d');
               g.drawImage(img, 0, 0);
               var p = g.getImageData(img.naturalWidth - {right}, img.naturalHeight / 2, 1, 1).data;
               done({{ width: img.naturalWidth, height: img.naturalHeight, rgb: [p[0], p[1], p[2]] }});
             }};
             img.onerror = function () {{ done({{ error: 'not an image' }}); }};
             img.src = {url};",
            url = Value::from(url),
        );
        self.call(
            "POST",
            "/execute/async",
            &json!({ "script": script, "args": [] }),
        )
    }

    /// Waits until the page's event stream is connected: from then on, every change
    /// reaches the page.
    fn wait_live(&self) {
        wait_for(60, "the page's event stream connects", || {
            (self.eval("return document.documentElement.dataset.live || ''") == "open")
                .then_some(())
        });
    }

    /// Marks the loaded document; the mark is gone if the page reloads.
    fn mark(&self) {
        self.eval("window.hookdTestMark = 42; return null;");
    }

    fn still_marked(&self) -> bool {
        self.eval("return window.hookdTestMark || 0") == 42
    }

    fn resize(&self, width: u32, height: u32) {
        let rect = json!({ "width": width, "height": height });
        self.call("POST", "/window/rect", &rect);
    }

    fn screenshot(&self, file: &Path) {
        let png = self.call("GET", "/screenshot", &json!({}));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(file, bytes).unwrap();
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.id);
        let _ = webdriver(self.driver.addr, "DELETE", &path, None);
    }
}

/// Where screenshots go when asked for (`HOOKD_SCREENSHOTS=DIR`, relative to the crate).
fn screenshot_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HOOKD_SCREENSHOTS")?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

#[test]
fn pages_follow_new_builds_and_live_logs_without_reload() {
    let d = TestDaemon::start_with("[web]\ntitle = \"hookd on build-box\"\n");
    let Some(driver) = Driver::start(d.dir.path()) else {
        return;
    };
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let gates = d.dir.path().join("gates");
    std::fs::create_dir(&gates).unwrap();
    // Lines, a wait for this build's first gate, a line, a wait for its second gate,
    // then more lines, the last one markup that must stay text.
    let gate = |id: u64, n: u32| gates.join(format!("{id}.{n}"));
    let wait = |n: u32| {
        format!(
            "while [ ! -e '{}/'$HOOKD_BUILD_ID.{n} ]; do sleep 0.02; done",
            gates.display()
        )
    };
    let cmd = format!(
        "echo 'building web'; echo 'line 1'; echo 'line 2'; {}; echo 'line 3'; {}; \
         for i in 4 5; do echo \"line $i\"; done; echo '<script>alert(1)</script>'",
        wait(1),
        wait(2)
    );
    let hook = d.add_repo_feed("web", &repo, &cmd, &["--cooldown", "0"]);
    d.add_repo_feed("docs", &repo, "true", &[]);
    let base = format!("http://{}", d.addr);
    let browser = driver.session(&d.dir.path().join("profile"));
    let shots = screenshot_dir();

    // The overview shows a new build running, then its result, without a reload.
    browser.open(&format!("{base}/"));
    browser.wait_live();
    browser.mark();
    let reply = d.post(&hook, &[], b"");
    let first = reply.json()["build"].as_u64().unwrap();
    wait_for(60, "the overview shows the build running", || {
        let feeds = browser.text("feeds");
        (d.build(first)["status"] == "running" && feeds.contains(&format!("#{first} main")))
            .then_some(())
    });
    std::fs::write(gate(first, 1), "").unwrap();
    std::fs::write(gate(first, 2), "").unwrap();
    wait_for(60, "the overview shows the build's result", || {
        let feeds = browser.text("feeds");
        feeds.contains(&format!("#{first} succeeded")).then_some(())
    });
    assert!(browser.still_marked(), "the overview was not reloaded");

    // A build page shows lines while the build runs, then the rest and the status.
    let second = d.post(&hook, &[], b"").json()["build"].as_u64().unwrap();
    wait_for(60, "the second build waits at its gate", || {
        d.log(second).contains("line 2\n").then_some(())
    });
    browser.open(&format!("{base}/builds/{second}"));
    browser.wait_live();
    browser.mark();
    assert!(browser.text("log").contains("line 2\n"));
    assert!(browser.text("build").contains("running"));
    std::fs::write(gate(second, 1), "").unwrap();
    wait_for(60, "the page shows a line printed after it loaded", || {
        browser.text("log").contains("line 3\n").then_some(())
    });
    assert_eq!(
        d.build(second)["status"],
        "running",
        "the line came before the build ended (it waits for its second gate)"
    );
    assert!(browser.text("build").contains("running"));
    std::fs::write(gate(second, 2), "").unwrap();
    wait_for(60, "the page shows the build succeeded", || {
        browser.text("build").contains("succeeded").then_some(())
    });
    assert!(browser.still_marked(), "the build page was not reloaded");
    assert_eq!(
        browser.text("log"),
        d.log(second),
        "every line once, in order"
    );
    assert!(browser.text("log").contains("<script>alert(1)</script>"));
    assert_eq!(
        browser.eval("return document.querySelectorAll('#log *').length"),
        0,
        "the log is text only"
    );
    if let Some(dir) = &shots {
        browser.resize(1100, 1250);
        browser.screenshot(&dir.join("build.png"));
        browser.resize(1100, 320);
        browser.open(&format!("{base}/"));
        browser.screenshot(&dir.join("overview.png"));
    }
}

#[test]
fn pages_render_with_javascript_off() {
    let d = TestDaemon::start();
    let Some(driver) = Driver::start(d.dir.path()) else {
        return;
    };
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let gate = d.dir.path().join("gate");
    let cmd = format!(
        "echo 'line 1'; echo '<b>line 2</b>'; while [ ! -e '{}' ]; do sleep 0.02; done; echo 'line 3'",
        gate.display()
    );
    let hook = d.add_repo_feed("nojs", &repo, &cmd, &["--cooldown", "0"]);
    let first = d.post(&hook, &[], b"").json()["build"].as_u64().unwrap();
    wait_for(60, "the first build waits at its gate", || {
        d.log(first).contains("line 2").then_some(())
    });
    let base = format!("http://{}", d.addr);
    let browser = driver.session_with(&d.dir.path().join("profile"), false);
    // Scripts are off: an inline script that would retitle its page does not run.
    browser.open("data:text/html,<title>off</title><script>document.title='on'</script>");
    assert_eq!(browser.title(), "off", "JavaScript is disabled");

    // A running build's page shows what it printed so far, from the server.
    browser.open(&format!("{base}/builds/{first}"));
    let log = browser.element_text("#log");
    assert!(log.ends_with("line 1\n<b>line 2</b>"), "{log}");
    assert!(browser.element_text("#build").contains("running"));
    browser.open(&format!("{base}/"));
    let feeds = browser.element_text("#feeds");
    assert!(
        feeds.contains("nojs") && feeds.contains(&format!("#{first} main")),
        "the overview shows the feed and its running build: {feeds}"
    );

    std::fs::write(&gate, "").unwrap();
    assert_eq!(d.wait_build(first, 60)["status"], "succeeded");
    browser.open(&format!("{base}/"));
    let feeds = browser.element_text("#feeds");
    assert!(feeds.contains(&format!("#{first} succeeded")), "{feeds}");
    browser.open(&format!("{base}/feeds/nojs"));
    let builds = browser.element_text("#builds");
    assert!(
        builds.contains(&format!("#{first}")) && builds.contains("succeeded"),
        "{builds}"
    );
    assert!(browser.element_text("#deliveries").contains("queued"));
    browser.open(&format!("{base}/builds/{first}"));
    assert!(browser.element_text("#build").contains("succeeded"));
    let log = browser.element_text("#log");
    assert_eq!(log, d.log(first).trim_end(), "the whole log");
    assert!(
        log.ends_with("line 1\n<b>line 2</b>\nline 3"),
        "the markup a build printed is shown as text: {log}"
    );
}

/// The badge's colour class as rendered: which of red, green and blue dominates, or
/// grey when none does.
fn hue(rgb: &Value) -> &'static str {
    let c: Vec<i64> = (0..3).map(|i| rgb[i].as_i64().unwrap()).collect();
    let (r, g, b) = (c[0], c[1], c[2]);
    if (r - g).abs() < 24 && (g - b).abs() < 24 {
        "grey"
    } else if r > g && r > b {
        "red"
    } else if g > r && g > b {
        "green"
    } else {
        "blue"
    }
}

#[test]
fn the_badge_renders_in_chromium_through_its_states() {
    let d = TestDaemon::start();
    let Some(driver) = Driver::start(d.dir.path()) else {
        return;
    };
    let (hook, gate, fail, _) = gated_feed(&d, "shown", &["--cooldown", "0", "--badge", "on"]);
    let browser = driver.session(&d.dir.path().join("profile"));
    browser.open(&format!("http://{}/", d.addr));
    // Each state: the badge as an image Chromium decoded and drew, and the colour of
    // its message half (a few pixels in from the right edge).
    let badge = |n: u32| {
        let drawn = browser.rendered_image(&format!("/badge/shown.svg?n={n}"), 3);
        assert!(drawn["error"].is_null(), "{drawn}");
        assert_eq!(drawn["height"], 20, "{drawn}");
        assert!(drawn["width"].as_u64().unwrap() > 40, "{drawn}");
        (hue(&drawn["rgb"]), drawn["width"].as_u64().unwrap())
    };
    let (unknown, unknown_width) = badge(1);
    assert_eq!(unknown, "grey");
    let running = d.post(&hook, &[], b"").json()["build"].as_u64().unwrap();
    wait_for(60, "the build runs", || {
        (d.build(running)["status"] == "running").then_some(())
    });
    assert_eq!(badge(2).0, "blue", "running");
    std::fs::write(&gate, "").unwrap();
    assert_eq!(d.wait_build(running, 60)["status"], "succeeded");
    let (passing, passing_width) = badge(3);
    assert_eq!(passing, "green");
    assert_ne!(
        passing_width, unknown_width,
        "the message changed with the state"
    );
    std::fs::write(&fail, "").unwrap();
    let failing = d.post(&hook, &[], b"").json()["build"].as_u64().unwrap();
    assert_eq!(d.wait_build(failing, 60)["status"], "failed");
    assert_eq!(badge(4).0, "red", "failing");
    // Opened on its own, the badge is an SVG document Chromium shows.
    browser.open(&format!("http://{}/badge/shown.svg", d.addr));
    assert_eq!(
        browser.eval("return document.documentElement.localName"),
        "svg"
    );
    assert_eq!(browser.title(), "build: failing");
}
