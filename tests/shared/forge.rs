//! A local forge API for tests: a plain HTTP/1.1 server on 127.0.0.1 that accepts
//! exactly one forge's documented commit status request (method, path, auth header
//! form, JSON fields and allowed state values, per `FORGE-STATUS.md` and the forges'
//! API descriptions) and records every request it got, with what it answered.
//!
//! A request that does not match is answered 422 with the reason and recorded as
//! rejected, so a test asserts `rejected()` is empty. Replies can be scripted
//! (`script`: the next requests get these answers whatever they are) and held
//! (`hold`: requests are read and recorded but never answered, as a forge that hangs).
//! GitLab's trap is modelled: the same state posted twice for a commit and name
//! answers 400 "Cannot transition status".

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use base64::Engine as _;

#[path = "forge_hooks.rs"]
mod hooks;

/// The forges whose status API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    Github,
    Gitlab,
    Gitea,
    Forgejo,
    BitbucketCloud,
    BitbucketServer,
    AzureDevops,
}

impl ForgeKind {
    /// The word of `[feeds.NAME.status] forge`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Gitea => "gitea",
            Self::Forgejo => "forgejo",
            Self::BitbucketCloud => "bitbucket-cloud",
            Self::BitbucketServer => "bitbucket-server",
            Self::AzureDevops => "azure-devops",
        }
    }

    /// The API base path under the server's address (as the hosted forge has it).
    pub fn api_path(self) -> &'static str {
        match self {
            Self::Github => "",
            Self::Gitlab => "/api/v4",
            Self::Gitea | Self::Forgejo => "/api/v1",
            Self::BitbucketCloud => "/2.0",
            Self::BitbucketServer => "",
            Self::AzureDevops => "",
        }
    }

    /// A repository in the forge's form, for `repo =`.
    pub fn repo(self) -> &'static str {
        match self {
            Self::Github | Self::Gitea | Self::Forgejo => "octo/web",
            Self::Gitlab => "group/sub/web",
            Self::BitbucketCloud => "team/web",
            Self::BitbucketServer => "PROJ/web",
            Self::AzureDevops => "org/Main Project/web",
        }
    }

    /// The forge's states, as its API description lists them.
    fn states(self) -> &'static [&'static str] {
        match self {
            Self::Github => &["error", "failure", "pending", "success"],
            Self::Gitlab => &[
                "pending", "running", "success", "failed", "canceled", "skipped",
            ],
            Self::Gitea | Self::Forgejo => &["pending", "success", "error", "failure", "warning"],
            Self::BitbucketCloud => &["INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"],
            Self::BitbucketServer => {
                &["INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "UNKNOWN"]
            }
            Self::AzureDevops => &[
                "notSet",
                "pending",
                "succeeded",
                "failed",
                "error",
                "notApplicable",
                "partiallySucceeded",
            ],
        }
    }
}

/// What the server did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It matched the documented request and was answered 2xx.
    Accepted,
    /// It did not match: answered 422 with this reason.
    Rejected(String),
    /// Answered with a scripted status.
    Scripted(u16),
    /// Read and never answered.
    Held,
    /// GitLab's repeated-state 400.
    Repeated,
    /// Wrong or missing token: 401, as the forges answer.
    Unauthorized,
    /// Taken (the state is set) but the connection closed without a reply, as when a
    /// reply is lost on the way.
    Lost,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub verdict: Verdict,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The forge's state word in the body.
    pub fn state(&self) -> String {
        self.json()["state"].as_str().unwrap_or_default().to_owned()
    }

    /// The commit id in the path.
    pub fn commit(&self) -> Option<String> {
        self.target
            .split(['/', '?'])
            .find(|seg| seg.len() == 40 && seg.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_owned)
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    pub fn new(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Canned {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_owned(),
        }
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Canned>,
    hold: bool,
    /// (commit, context, state) already set, for GitLab's repeated-state reply.
    set: Vec<(String, String, String)>,
    /// The server was dropped: accept no more.
    stopped: bool,
    /// Requests still to take without replying.
    lose: usize,
    /// The repository's webhooks and what hookd answered their deliveries.
    hooks: hooks::Hooks,
    /// A plain webhook receiver: every request is accepted with 200 `{}`.
    plain: bool,
}

/// The server; it stops accepting when dropped.
pub struct ForgeServer {
    pub kind: ForgeKind,
    pub addr: SocketAddr,
    token: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl ForgeServer {
    /// A server on a port the kernel picks, expecting `token`.
    pub fn start(kind: ForgeKind, token: &str) -> Self {
        Self::start_on(kind, token, 0)
    }

    /// A server on `port` (0: any), e.g. one a test kept closed until now.
    pub fn start_on(kind: ForgeKind, token: &str, port: u16) -> Self {
        Self::start_scripted(kind, token, port, Vec::new())
    }

    /// [`ForgeServer::start_on`] whose first requests get the `script`ed answers
    /// (in place before the first connection is accepted).
    pub fn start_scripted(kind: ForgeKind, token: &str, port: u16, script: Vec<Canned>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the forge server");
        let addr = listener.local_addr().unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        state.0.lock().unwrap().script = script.into();
        let (shared, token_owned) = (state.clone(), token.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (shared, token) = (shared.clone(), token_owned.clone());
                if shared.0.lock().map_or(true, |s| s.stopped) {
                    break;
                }
                std::thread::spawn(move || serve(kind, &token, stream, &shared));
            }
        });
        ForgeServer {
            kind,
            addr,
            token: token.to_owned(),
            state,
        }
    }

    /// A plain webhook receiver (for notifications) on `port` (0: any): every request
    /// is recorded and, unless scripted or held, answered 200 `{}`.
    pub fn start_plain_on(port: u16) -> Self {
        let server = Self::start_on(ForgeKind::Github, "", port);
        server.lock().plain = true;
        server
    }

    /// [`ForgeServer::start_plain_on`] a port the kernel picks.
    pub fn start_plain() -> Self {
        Self::start_plain_on(0)
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://{}{}", self.addr, self.kind.api_path())
    }

    /// The `[feeds.FEED.status]` table for this server.
    pub fn status_table(&self, feed: &str, token_file: &std::path::Path) -> String {
        format!(
            "[feeds.{feed}.status]\nforge = \"{}\"\napi_url = \"{}\"\nrepo = \"{}\"\ntoken_file = \"{}\"\n",
            self.kind.word(),
            self.api_url(),
            self.kind.repo(),
            token_file.display()
        )
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The accepted requests so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.verdict == Verdict::Accepted)
            .collect()
    }

    /// The requests that did not match the documented form.
    pub fn rejected(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| matches!(r.verdict, Verdict::Rejected(_)))
            .collect()
    }

    /// The next requests get these answers, in order.
    pub fn script(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        self.lock()
            .script
            .push_back(Canned::new(status, headers, body));
    }

    /// The next `n` requests are judged and taken, but their replies are lost (the
    /// connection closes without one).
    pub fn lose_replies(&self, n: usize) {
        self.lock().lose = n;
    }

    /// Holds (true) or answers (false) requests from now on; releasing answers the
    /// held ones as usual if their connection is still open.
    pub fn hold(&self, hold: bool) {
        self.lock().hold = hold;
        self.state.1.notify_all();
    }

    /// Polls until `cond` holds over the received requests or `secs` pass.
    pub fn wait_until(&self, secs: u64, what: &str, cond: impl Fn(&[Received]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if cond(&self.lock().received) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the forge to receive {what}; it got {:#?}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ForgeServer {
    fn drop(&mut self) {
        self.lock().stopped = true;
        self.hold(false);
        // Wake the accept loop so it sees it is alone and stops.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one connection: requests until the client closes it (keep-alive).
fn serve(kind: ForgeKind, token: &str, stream: TcpStream, shared: &Arc<(Mutex<State>, Condvar)>) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    while let Some((method, target, headers, body)) = read_request(&mut reader) {
        let mut received = Received {
            method,
            target,
            headers,
            body,
            verdict: Verdict::Accepted,
        };
        let mut jobs = Vec::new();
        let (status, extra, reply) = {
            let mut state = shared.0.lock().unwrap_or_else(|e| e.into_inner());
            if state.hold {
                received.verdict = Verdict::Held;
                state.received.push(received);
                let _held = shared
                    .1
                    .wait_while(state, |s| s.hold)
                    .unwrap_or_else(|e| e.into_inner());
                return;
            }
            let answer = match state.script.pop_front() {
                Some(canned) => {
                    received.verdict = Verdict::Scripted(canned.status);
                    (canned.status, canned.headers, canned.body)
                }
                None if state.plain => (200, Vec::new(), "{}".to_owned()),
                None if hooks::is_hook_call(&received.target) => {
                    let (status, body, todo) =
                        hooks::judge(kind, token, &mut received, &mut state.hooks);
                    jobs = todo;
                    (status, Vec::new(), body)
                }
                None => judge(kind, token, &mut received, &mut state),
            };
            if state.lose > 0 && received.verdict == Verdict::Accepted {
                state.lose -= 1;
                received.verdict = Verdict::Lost;
                state.received.push(received);
                return;
            }
            state.received.push(received);
            answer
        };
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reply.len()
        );
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        hooks::run_before_reply(kind, &mut jobs, shared);
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(reply.as_bytes()).is_err()
        {
            return;
        }
        hooks::run_after_reply(kind, jobs, shared);
    }
}

type Request = (String, String, Vec<(String, String)>, String);

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let (method, target) = (words.next()?.to_owned(), words.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((
        method,
        target,
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Checks a request against the forge's documentation; the answer to send.
fn judge(
    kind: ForgeKind,
    token: &str,
    received: &mut Received,
    state: &mut State,
) -> (u16, Vec<(String, String)>, String) {
    match check(kind, token, received) {
        Err(reason) if reason == UNAUTHORIZED => {
            received.verdict = Verdict::Unauthorized;
            let body = serde_json::json!({ "message": "Bad credentials" }).to_string();
            (401, Vec::new(), body)
        }
        Err(reason) => {
            received.verdict = Verdict::Rejected(reason.clone());
            (
                422,
                Vec::new(),
                serde_json::json!({ "message": reason }).to_string(),
            )
        }
        Ok(()) if kind == ForgeKind::Gitlab => {
            let body = received.json();
            let key = (
                received.commit().unwrap_or_default(),
                body["name"].as_str().unwrap_or("default").to_owned(),
                received.state(),
            );
            if state.set.last() == Some(&key) {
                received.verdict = Verdict::Repeated;
                let message = format!("Cannot transition status via :{0} from :{0}", key.2);
                return (
                    400,
                    Vec::new(),
                    serde_json::json!({ "message": message }).to_string(),
                );
            }
            state.set.push(key);
            (201, Vec::new(), received.body.clone())
        }
        Ok(()) if kind == ForgeKind::BitbucketServer => (204, Vec::new(), String::new()),
        Ok(()) => (201, Vec::new(), received.body.clone()),
    }
}

/// `check`'s reason for a request whose credentials are not the expected ones.
const UNAUTHORIZED: &str = "missing or wrong credentials";

/// The documented request, or why this one is not it.
fn check(kind: ForgeKind, token: &str, r: &Received) -> Result<(), String> {
    if r.method != "POST" {
        return Err(format!("method {} is not POST", r.method));
    }
    let content_type = r.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(format!("content-type {content_type:?} is not JSON"));
    }
    let body: serde_json::Value =
        serde_json::from_str(&r.body).map_err(|e| format!("body is not JSON: {e}"))?;
    let object = body.as_object().ok_or("body is not a JSON object")?;
    let sha = r.commit().ok_or("no 40-hex commit id in the path")?;
    let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
    let auth = r.header("authorization").unwrap_or_default();
    let (want_path, fields, required, auth_ok): (String, &[&str], &[&str], bool) = match kind {
        ForgeKind::Github => (
            format!("/repos/octo/web/statuses/{sha}"),
            &["state", "target_url", "description", "context"],
            &["state"],
            auth == format!("Bearer {token}") && r.header("user-agent").is_some(),
        ),
        ForgeKind::Gitea | ForgeKind::Forgejo => (
            format!("/api/v1/repos/octo/web/statuses/{sha}"),
            &["state", "target_url", "description", "context"],
            &["state"],
            auth == format!("token {token}"),
        ),
        ForgeKind::Gitlab => (
            format!("/api/v4/projects/group%2Fsub%2Fweb/statuses/{sha}"),
            &[
                "state",
                "ref",
                "name",
                "context",
                "target_url",
                "description",
                "coverage",
                "pipeline_id",
            ],
            &["state"],
            r.header("private-token") == Some(token) || auth == format!("Bearer {token}"),
        ),
        ForgeKind::BitbucketCloud => (
            format!("/2.0/repositories/team/web/commit/{sha}/statuses/build"),
            &["key", "state", "name", "url", "description", "refname"],
            &["key", "state", "url"],
            auth == format!("Bearer {token}"),
        ),
        ForgeKind::BitbucketServer => (
            format!("/rest/api/latest/projects/PROJ/repos/web/commits/{sha}/builds"),
            &[
                "key",
                "state",
                "url",
                "buildNumber",
                "description",
                "duration",
                "lastUpdated",
                "name",
                "ref",
                "parent",
                "testResults",
            ],
            &["key", "state", "url"],
            auth == format!("Bearer {token}"),
        ),
        ForgeKind::AzureDevops => {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(":{token}"));
            (
                format!("/org/Main%20Project/_apis/git/repositories/web/commits/{sha}/statuses"),
                &["state", "description", "targetUrl", "context"],
                &["state", "context"],
                auth == format!("Basic {basic}"),
            )
        }
    };
    if path != want_path {
        return Err(format!("path {path} is not {want_path}"));
    }
    if kind == ForgeKind::AzureDevops && !query.split('&').any(|p| p.starts_with("api-version=")) {
        return Err("no api-version in the query".into());
    }
    if !auth_ok {
        return Err(UNAUTHORIZED.into());
    }
    if let Some(extra) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(format!("unknown field {extra:?}"));
    }
    if let Some(missing) = required.iter().find(|k| !object.contains_key(**k)) {
        return Err(format!("missing field {missing:?}"));
    }
    let state = body["state"].as_str().ok_or("state is not a string")?;
    if !kind.states().contains(&state) {
        return Err(format!("state {state:?} is not one of {:?}", kind.states()));
    }
    for (key, value) in object {
        let text_ok = match key.as_str() {
            "context" if kind == ForgeKind::AzureDevops => {
                value["name"].is_string()
                    && value
                        .as_object()
                        .is_some_and(|o| o.keys().all(|k| k == "name" || k == "genre"))
            }
            "buildNumber" | "duration" | "lastUpdated" | "pipeline_id" | "coverage" => {
                value.is_number() || value.is_string()
            }
            _ => value.is_string(),
        };
        if !text_ok {
            return Err(format!("field {key:?} has the wrong type: {value}"));
        }
    }
    Ok(())
}
