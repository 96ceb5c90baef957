//! TestDaemon: the real `hookd` binary on an ephemeral port with a temp data dir,
//! driven through its real admin CLI and a plain HTTP/1.1 client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../shared/git_daemon.rs"]
mod git_daemon;
pub use git_daemon::GitDaemon;

#[path = "../shared/forge.rs"]
pub mod forge;

pub const BIN: &str = env!("CARGO_BIN_EXE_hookd");

/// The proxy settings hookd's outbox reads (hyper-util's `Matcher::from_env`).
const PROXY_VARS: [&str; 8] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Polls `cond` until it holds or `secs` pass; panics with `what` on timeout.
pub fn wait_for<T>(secs: u64, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A reply as the forge would see it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request and reads the whole reply (the connection is closed after).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (e.g. 413) and close before reading the whole body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_reply(&raw)
}

pub fn parse_reply(raw: &[u8]) -> HttpReply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP reply: {text:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpReply {
        status,
        headers,
        body,
    }
}

/// A chunked body's content (streamed replies have no length).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").expect("chunk end");
    }
    out
}

/// How the daemon process is started, beyond its config and environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Launch {
    /// The daemon's umask (the test process's own stays untouched).
    pub umask: Option<u32>,
    /// Started by `systemd-socket-activate` holding the hook port, instead of `--listen`.
    pub socket_activated: bool,
    /// Started by a parent that leaks a descriptor (fd 9, a copy of stderr), as
    /// shells and some supervisors do.
    pub leaked_fd: bool,
    /// Started with libfaketime preloaded (Debian's `faketime`) and this offset
    /// (`+1d`): its clocks are that far off. (The `faketime` wrapper forks, so a kill
    /// would not reach the daemon.)
    pub faketime: Option<&'static str>,
}

/// A running daemon with its own data dir.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<Child>,
    config: String,
    env: Vec<(String, String)>,
    how: Launch,
}

impl TestDaemon {
    /// Starts with an empty config (embedded defaults).
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts with the given config file text.
    pub fn start_with(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    /// Starts with a config and extra environment for the daemon.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_launched(config, env, Launch::default())
    }

    /// Starts with a config, extra environment, and the given way of launching
    /// (kept for restarts).
    pub fn start_launched(config: &str, env: &[(&str, &str)], how: Launch) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut d = TestDaemon {
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            child: None,
            config: config.to_owned(),
            env,
            how,
        };
        d.launch();
        d
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket(&self) -> PathBuf {
        self.data_dir().join("admin.sock")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// Everything the daemon logged so far (all runs).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("hookd.toml")
    }

    fn launch(&mut self) {
        std::fs::write(self.config_path(), &self.config).unwrap();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .unwrap();
        let (mut cmd, port) = self.command();
        cmd.arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .env("RUST_LOG", "hookd=debug,info");
        // The outbox honours proxies from the environment: only a test's own reach it.
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("HOOKD_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn hookd");
        self.child = Some(child);
        if let Some(port) = port {
            // systemd-socket-activate execs hookd on the first connection.
            wait_for(30, "systemd-socket-activate listens", || {
                if let Some(Ok(Some(exit))) = self.child.as_mut().map(|c| c.try_wait()) {
                    panic!("systemd-socket-activate exited ({exit}):\n{}", self.logs());
                }
                TcpStream::connect(("127.0.0.1", port)).ok()
            });
        }
        let status = wait_for(30, "daemon answers on its admin socket", || {
            if let Some(Ok(Some(exit))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("hookd exited early ({exit}):\n{}", self.logs());
            }
            let out = self.admin(&["--json", "status"]);
            out.status
                .success()
                .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
        });
        self.addr = status["listen"].as_str().unwrap().parse().unwrap();
    }

    /// `hookd serve` as this daemon is launched, and the port systemd-socket-activate
    /// holds when socket-activated.
    fn command(&self) -> (Command, Option<u16>) {
        let (mut cmd, port) = if self.how.socket_activated {
            let port = closed_port();
            let mut cmd = Command::new("systemd-socket-activate");
            // It passes on only the environment named with -E.
            cmd.arg("-l").arg(format!("127.0.0.1:{port}"));
            for name in ["PATH", "HOME", "RUST_LOG"] {
                cmd.args(["-E", name]);
            }
            for (name, _) in &self.env {
                cmd.args(["-E", name]);
            }
            cmd.args([BIN, "serve"]);
            (cmd, Some(port))
        } else {
            let mut cmd = Command::new(BIN);
            cmd.args(["serve", "--listen", "127.0.0.1:0"]);
            (cmd, None)
        };
        if let Some(offset) = self.how.faketime {
            cmd.env("LD_PRELOAD", libfaketime()).env("FAKETIME", offset);
        }
        let Launch {
            umask, leaked_fd, ..
        } = self.how;
        use std::os::unix::process::CommandExt;
        // SAFETY: umask(2) and dup2(2) are async-signal-safe; they run between fork
        // and exec. dup2 leaves the copy inheritable.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(mask) = umask {
                    libc::umask(mask as libc::mode_t);
                }
                if leaked_fd && libc::dup2(2, 9) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        (cmd, port)
    }

    /// Starts `hookd serve` on this daemon's config and data dir (which must not be
    /// running) expecting it to refuse: returns its exit code and stderr. Panics if it
    /// is still running after 30 s.
    pub fn serve_refused(&self) -> (Option<i32>, String) {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("HOOKD_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookd");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hookd started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status.code(), stderr)
    }

    /// Runs `hookd admin --socket S ARGS…`.
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("admin")
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env_remove("HOOKD_SOCKET")
            .env_remove("HOOKD_CONFIG")
            .output()
            .expect("run hookd admin")
    }

    /// `admin` that must succeed; returns stdout.
    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "hookd admin {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `admin --json` that must succeed.
    pub fn admin_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.admin_ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// `admin` that must fail; returns (exit code, stderr).
    pub fn admin_err(&self, args: &[&str]) -> (i32, String) {
        let out = self.admin(args);
        assert!(
            !out.status.success(),
            "hookd admin {args:?} unexpectedly succeeded"
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Adds a feed and returns its hook path (`/hooks/TOKEN`).
    pub fn add_feed(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["feed", "add", name];
        args.extend_from_slice(extra);
        let feed = self.admin_json(&args);
        hook_path(feed["hook_urls"][0]["url"].as_str().expect("hook url"))
    }

    /// A feed whose builds are not the point (hook replies, tokens, limits): its
    /// repository `https://forge.invalid/NAME.git` is never reached, its command is
    /// `true`; `extra` flags added. Returns its hook path.
    pub fn add_unbuilt_feed(&self, name: &str, extra: &[&str]) -> String {
        let url = format!("https://forge.invalid/{name}.git");
        let mut args = vec!["--repo", url.as_str(), "--command", "true"];
        args.extend_from_slice(extra);
        self.add_feed(name, &args)
    }

    /// A feed building `repo` with `command` (plus `extra` flags); returns its hook path.
    pub fn add_repo_feed(
        &self,
        name: &str,
        repo: &GitRepo,
        command: &str,
        extra: &[&str],
    ) -> String {
        let url = repo.url();
        let mut args = vec!["--repo", url.as_str(), "--command", command];
        args.extend_from_slice(extra);
        self.add_feed(name, &args)
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
        http(self.addr, "POST", path, headers, body)
    }

    pub fn build(&self, id: u64) -> serde_json::Value {
        self.admin_json(&["build", "show", &id.to_string()])
    }

    /// Waits until build `id` has a final status; returns the build.
    pub fn wait_build(&self, id: u64, secs: u64) -> serde_json::Value {
        wait_for(secs, &format!("build {id} to finish"), || {
            let b = self.build(id);
            (!matches!(b["status"].as_str(), Some("queued" | "running"))).then_some(b)
        })
    }

    pub fn log(&self, id: u64) -> String {
        self.admin_ok(&["log", &id.to_string()])
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, as a crash or power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid() as i32;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, sig) };
    }

    /// Waits for the daemon to exit; returns its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = wait_for(secs, "daemon exit", || child.try_wait().unwrap());
        status.code()
    }

    /// Starts the daemon again on the same data dir (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Starts the daemon again on the same data dir, launched the given way.
    pub fn restart_launched(&mut self, how: Launch) {
        self.kill9();
        self.how = how;
        self.launch();
    }

    /// Sends SIGHUP; returns once the daemon logged the reload's outcome (`applied`:
    /// reloaded, else refused).
    pub fn reload(&self, applied: bool) {
        let needle = match applied {
            true => "configuration reloaded",
            false => "configuration reload refused",
        };
        let count = || self.logs().matches(needle).count();
        let before = count();
        self.signal(libc::SIGHUP);
        wait_for(30, needle, || (count() > before).then_some(()));
    }

    /// Replaces the config file as an editor or `git pull` does: the new text is
    /// written to a temporary name and renamed over the file.
    pub fn replace_config(&mut self, config: &str) {
        self.config = config.to_owned();
        let tmp = self.dir.path().join(".hookd.toml.new");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    pub fn set_config(&mut self, config: &str) {
        self.config = config.to_owned();
        std::fs::write(self.config_path(), config).unwrap();
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
        kill_builds_in(self.dir.path());
    }
}

/// Kills the process group of every process working in `dir`: builds that a
/// SIGKILLed daemon left running (a restarted daemon would kill them; a test's last
/// one is not restarted, and a build waiting on a gate would otherwise outlive the test).
fn kill_builds_in(dir: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    // SAFETY: getpgid(0) reads this process's own group.
    let ours = unsafe { libc::getpgid(0) };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let in_dir = std::fs::read_link(entry.path().join("cwd"));
        if !in_dir.is_ok_and(|cwd| cwd.starts_with(dir)) {
            continue;
        }
        // SAFETY: getpgid and kill on a pid read from /proc; one that is gone fails.
        let group = unsafe { libc::getpgid(pid) };
        if group > 1 && group != ours {
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

/// A feed that admits triggers but never builds; returns its hook path.
pub fn paused_feed(d: &TestDaemon, name: &str) -> String {
    let hook = d.add_unbuilt_feed(name, &["--cooldown", "0"]);
    d.admin_ok(&["feed", "pause", name]);
    hook
}

/// `http://127.0.0.1:PORT/hooks/TOKEN` → `/hooks/TOKEN`.
/// Debian's libfaketime (package `faketime`), under the multiarch library directory.
pub fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .unwrap()
        .map(|e| e.unwrap().path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime.so.1 (install the faketime package)")
}

pub fn hook_path(url: &str) -> String {
    let at = url.find("/hooks/").expect("hook path in url");
    url[at..].to_owned()
}

/// Every file below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The recorded webhook deliveries (`tests/fixtures/webhooks`).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

/// A fixture's `.headers` file as (name, value) pairs.
pub fn fixture_headers(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(": ").or_else(|| l.split_once(':')))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// A real git repository made by the test, driven with the git CLI.
pub struct GitRepo {
    pub path: PathBuf,
}

impl GitRepo {
    /// `git init` with a first commit on `main`.
    pub fn new(path: PathBuf) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let repo = GitRepo { path };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.commit("README", "hello\n", "first commit");
        repo
    }

    /// Runs git in the repository; returns trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=hookd test",
                "-c",
                "user.email=test@hookd.invalid",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "protocol.file.allow=always",
            ])
            .args(args)
            .current_dir(&self.path)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.path)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Writes a file, commits it, returns the new commit id.
    pub fn commit(&self, file: &str, content: &str, message: &str) -> String {
        let path = self.path.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, content).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn url(&self) -> String {
        self.path.display().to_string()
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound once by the kernel's choice,
/// then released): connecting to it is refused.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
