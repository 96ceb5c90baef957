//! `git-daemon` serving a directory on 127.0.0.1: the one harness for everything that
//! fetches over `git://`. The unit tests (src/runner/git/tests.rs), the integration
//! tests (tests/it/support.rs) and the git_fetch bench are separate crates, so each
//! includes this file by `#[path]`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `git-daemon` serving every repository below a root, read-only, until dropped.
pub struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    /// Serves `root` on a free loopback port. git-daemon cannot report a port it
    /// picked itself, so one is chosen and released first; if someone takes it before
    /// git-daemon binds, git-daemon exits and another port is tried. "Ready to rumble"
    /// (printed with `--verbose` once it listens) is the readiness signal.
    pub fn serve(root: &Path) -> Self {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind 127.0.0.1:0")
                .port();
            let mut child = Command::new(program())
                .args([
                    "--verbose",
                    "--reuseaddr",
                    "--export-all",
                    "--informative-errors",
                ])
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", root.display()))
                .arg(root)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn git-daemon");
            let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
            let ready = lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains("Ready to rumble"));
            if ready {
                // Keep draining, so the daemon never blocks on a full pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return GitDaemon { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git-daemon would not start");
    }

    /// `git://127.0.0.1:PORT/NAME`, NAME relative to the served root.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

/// The `git-daemon` program itself (from `git --exec-path`): `git daemon` runs it as
/// a child, and killing that wrapper would leave the server running with our pipes.
fn program() -> PathBuf {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git --exec-path");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-daemon")
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
