//! hookd behind Debian's nginx, run by the test as its own process with a temp config
//! in the shape the README shows: `/hooks/` and `/badge/` public, the rest behind
//! basic auth, nginx's default proxy buffering left on. The live log must still
//! arrive line by line (hookd's `X-Accel-Buffering: no` turns buffering off for it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine;

use crate::live::Stream;
use crate::support::{closed_port, http, wait_for, GitRepo, TestDaemon};

const NGINX: &str = "/usr/sbin/nginx";

/// An nginx in front of `upstream`, on an ephemeral loopback port.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// `None` (after saying why) when Debian's nginx is not installed.
    fn start(dir: &Path, upstream: SocketAddr, htpasswd: &Path) -> Option<Self> {
        if !Path::new(NGINX).exists() {
            println!("SKIPPED proxy test: {NGINX} is missing (apt-get install nginx; .ci/run installs it)");
            return None;
        }
        let port = closed_port();
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root).unwrap();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream hookd {{ server {upstream}; }}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"#,
            root = root.display(),
            locations = locations(htpasswd),
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&root)
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut nginx = Nginx { child, addr };
        wait_for(60, "nginx listens", || {
            if let Ok(Some(exit)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
                panic!("nginx exited ({exit}):\n{log}");
            }
            std::net::TcpStream::connect(addr).ok()
        });
        Some(nginx)
    }
}

/// The README's nginx locations, with the test's password file.
fn locations(htpasswd: &Path) -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```nginx\n")
        .expect("the README has an nginx snippet");
    let snippet = &readme[start + "```nginx\n".len()..];
    let snippet = &snippet[..snippet.find("```").unwrap()];
    snippet
        .replace("/etc/nginx/hookd.htpasswd", &htpasswd.display().to_string())
        .replace("http://127.0.0.1:8080", "http://hookd")
}

#[test]
fn pages_and_live_logs_pass_through_nginx() {
    let d = TestDaemon::start();
    let htpasswd = d.dir.path().join("htpasswd");
    let hash = Command::new("openssl")
        .args(["passwd", "-apr1", "s3cret"])
        .output()
        .expect("openssl passwd");
    let line = format!("team:{}", String::from_utf8_lossy(&hash.stdout));
    std::fs::write(&htpasswd, line).unwrap();
    let Some(nginx) = Nginx::start(d.dir.path(), d.addr, &htpasswd) else {
        return;
    };
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let gate = d.dir.path().join("gate");
    let cmd = format!(
        "echo 'line 1'; echo 'line 2'; while [ ! -e '{}' ]; do sleep 0.02; done; echo 'line 3'",
        gate.display()
    );
    let hook = d.add_repo_feed("proxied", &repo, &cmd, &["--cooldown", "0"]);
    d.admin_ok(&["feed", "edit", "proxied", "--badge", "on"]);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("team:s3cret")
    );
    let authed = [("Authorization", auth.as_str())];

    // Public: the hook and the badges. Everything else asks for the password.
    let reply = http(nginx.addr, "POST", &hook, &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["build"].as_u64().unwrap();
    assert_eq!(
        http(nginx.addr, "GET", "/badge/proxied.svg", &[], b"").status,
        200
    );
    for path in ["/", "/api/v1/feeds", &format!("/builds/{id}/events")] {
        assert_eq!(
            http(nginx.addr, "GET", path, &[], b"").status,
            401,
            "{path}"
        );
    }
    let page = http(nginx.addr, "GET", "/feeds/proxied", &authed, b"");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("/builds/{id}")),
        "{}",
        page.body
    );

    // The live log comes through while the build still waits at its gate.
    let mut events = Stream::open(nginx.addr, &format!("/builds/{id}/events"), &authed);
    assert_eq!(events.status, 200);
    let mut log = String::new();
    while !log.contains("line 2\n") {
        let event = events.next_event().expect("the stream stays open");
        if event.name == "log" {
            log.push_str(&serde_json::from_str::<String>(&event.data).unwrap());
        }
    }
    let mut raw = Stream::open(nginx.addr, &format!("/builds/{id}/log"), &authed);
    assert_eq!(raw.status, 200);
    let early = raw.read_until(|t| t.contains("line 2\n"));
    assert!(early.contains("line 2\n"), "{early}");
    assert_eq!(
        d.build(id)["status"],
        "running",
        "both arrived before the end"
    );
    std::fs::write(&gate, "").unwrap();
    let end = loop {
        let event = events.next_event().expect("an end event");
        match event.name.as_str() {
            "log" => log.push_str(&serde_json::from_str::<String>(&event.data).unwrap()),
            "end" => break event.data,
            _ => {}
        }
    };
    assert_eq!(end, r#"{"status":"succeeded"}"#);
    assert_eq!(log, d.log(id));
    assert_eq!(raw.read_to_end(), d.log(id));
}
