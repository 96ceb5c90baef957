//! The forge server's webhook API (`…/hooks`): accepts exactly the documented list,
//! get, create, update and delete calls of GitHub ("Repository webhooks"),
//! Gitea/Forgejo (swagger `CreateHookOption`/`EditHookOption`), GitLab ("Project
//! webhooks"), Bitbucket Cloud ("Webhooks"), Bitbucket Data Center ("Repository
//! webhooks") and Azure DevOps (service hook subscriptions, "Subscriptions - Create",
//! with the repository lookup that gives their ids), keeps the webhooks, and delivers to them as the forge would: GitHub
//! pings a new webhook after answering, and records what
//! hookd answered in `last_response`; a test asks for signed pushes.
//!
//! A token given to [`ForgeServer::limit_token`] authenticates but lacks the webhook
//! scope: every webhook call with it gets the forge's own 403.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};

use super::{ForgeKind, ForgeServer, Received, State, Verdict};

/// A webhook the forge holds.
#[derive(Debug, Clone)]
pub struct StoredHook {
    pub id: u64,
    pub url: String,
    pub secret: String,
    /// GitHub/Gitea `events`; GitLab `push` and `tag_push` when switched on.
    pub events: Vec<String>,
    pub active: bool,
    /// GitHub's `last_response`: hookd's status and body for the last delivery.
    pub last: Option<(u16, String)>,
}

/// One delivery the forge made, and hookd's answer.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub hook: u64,
    /// "ping" or "push".
    pub event: String,
    /// The secret it was signed (or sent) with.
    pub secret: String,
    pub status: u16,
    pub body: String,
}

#[derive(Default)]
pub(super) struct Hooks {
    list: Vec<StoredHook>,
    next_id: u64,
    delivered: Vec<Delivered>,
    /// Authenticates, lacks the scope.
    limited: Option<String>,
    /// May read webhooks but not change them (a fine-grained GitHub token with
    /// "Webhooks: read-only").
    read_only: Option<String>,
    /// The next update delivers a push signed with the old secret before it answers,
    /// as a delivery already on its way when the secret changed.
    push_during_update: bool,
    next_delivery: u64,
}

/// A delivery to make.
pub(super) struct Job {
    hook: u64,
    url: String,
    secret: String,
    event: &'static str,
    before_reply: bool,
}

pub(super) fn is_hook_call(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or(target);
    path.contains("/hooks")
        || path.contains("/webhooks")
        || (path.contains("/_apis/git/repositories/") && !path.contains("/commits/"))
}

/// Azure DevOps' repository, as the lookup answers it.
const AZURE_REPOSITORY: &str = "/org/Main%20Project/_apis/git/repositories/web";
const AZURE_PROJECT_ID: &str = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c";
const AZURE_REPO_ID: &str = "5febef5a-833d-4e14-b9c0-14cb638f91e6";

/// The GUID form of a webhook's number (Bitbucket Cloud wraps it in braces).
fn guid(id: u64) -> String {
    format!("{id:08}-0000-4000-8000-000000000000")
}

fn base(kind: ForgeKind) -> &'static str {
    match kind {
        ForgeKind::Github => "/repos/octo/web/hooks",
        ForgeKind::Gitea | ForgeKind::Forgejo => "/api/v1/repos/octo/web/hooks",
        ForgeKind::Gitlab => "/api/v4/projects/group%2Fsub%2Fweb/hooks",
        ForgeKind::BitbucketCloud => "/2.0/repositories/team/web/hooks",
        ForgeKind::BitbucketServer => "/rest/api/latest/projects/PROJ/repos/web/webhooks",
        ForgeKind::AzureDevops => "/org/_apis/hooks/subscriptions",
    }
}

/// The forge's 403 for a token without the webhook scope.
fn scope_refusal(kind: ForgeKind) -> String {
    let message = match kind {
        ForgeKind::Github => "Resource not accessible by personal access token",
        ForgeKind::Gitlab => "insufficient_scope",
        ForgeKind::AzureDevops => {
            "TF400813: The user is not authorized to access this resource (the token lacks \
             the Service Hooks scope)."
        }
        ForgeKind::BitbucketCloud => {
            return serde_json::json!({"type": "error", "error": {
                "message": "Your credentials lack one or more required privilege scopes.",
                "detail": {"required": ["webhook"], "granted": ["repository"]}}})
            .to_string()
        }
        ForgeKind::BitbucketServer => {
            return serde_json::json!({"errors": [{"context": null, "message":
                "You are not permitted to access this resource",
                "exceptionName": "com.atlassian.bitbucket.AuthorisationException"}]})
            .to_string()
        }
        _ => "token does not have at least one of required scope(s): [write:repository]",
    };
    serde_json::json!({ "message": message }).to_string()
}

fn authenticated(kind: ForgeKind, r: &Received, token: &str) -> bool {
    let auth = r.header("authorization").unwrap_or_default();
    match kind {
        ForgeKind::Github => auth == format!("Bearer {token}") && r.header("user-agent").is_some(),
        ForgeKind::Gitea | ForgeKind::Forgejo => auth == format!("token {token}"),
        ForgeKind::Gitlab => r.header("private-token") == Some(token),
        ForgeKind::BitbucketCloud | ForgeKind::BitbucketServer => auth == format!("Bearer {token}"),
        ForgeKind::AzureDevops => {
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(":{token}"));
            auth == format!("Basic {basic}")
        }
    }
}

/// Answers one webhook call: (status, body, deliveries to make).
pub(super) fn judge(
    kind: ForgeKind,
    token: &str,
    r: &mut Received,
    hooks: &mut Hooks,
) -> (u16, String, Vec<Job>) {
    let holds = |t: &Option<String>| t.as_deref().is_some_and(|t| authenticated(kind, r, t));
    if holds(&hooks.limited) || (holds(&hooks.read_only) && r.method != "GET") {
        // Azure DevOps answers a token without the scope with 401.
        let status = if kind == ForgeKind::AzureDevops {
            401
        } else {
            403
        };
        r.verdict = Verdict::Scripted(status);
        return (status, scope_refusal(kind), Vec::new());
    }
    match handle(kind, token, r, hooks) {
        Ok(answer) => answer,
        Err(reason) => {
            r.verdict = Verdict::Rejected(reason.clone());
            let body = serde_json::json!({ "message": reason }).to_string();
            (422, body, Vec::new())
        }
    }
}

fn handle(
    kind: ForgeKind,
    token: &str,
    r: &Received,
    hooks: &mut Hooks,
) -> Result<(u16, String, Vec<Job>), String> {
    if !authenticated(kind, r, token) {
        return Err("missing or malformed credentials".into());
    }
    let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
    if kind == ForgeKind::AzureDevops {
        if !query.split('&').any(|p| p == "api-version=7.1") {
            return Err("no api-version=7.1 in the query".into());
        }
        if path == AZURE_REPOSITORY && r.method == "GET" {
            let repo = serde_json::json!({"id": AZURE_REPO_ID, "name": "web",
                "project": {"id": AZURE_PROJECT_ID, "name": "Main Project"}});
            return Ok((200, repo.to_string(), Vec::new()));
        }
    }
    let rest = path
        .strip_prefix(base(kind))
        .ok_or_else(|| format!("path {path} is not under {}", base(kind)))?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let known_query = |allowed: &[&str]| {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .all(|p| allowed.contains(&p.split('=').next().unwrap_or("")))
    };
    match (r.method.as_str(), segments.as_slice()) {
        ("GET", []) => {
            let allowed = [
                "per_page",
                "page",
                "limit",
                "pagelen",
                "start",
                "api-version",
                "publisherId",
                "eventType",
                "consumerId",
                "consumerActionId",
            ];
            if !known_query(&allowed) {
                return Err(format!("unknown query {query}"));
            }
            let list: Vec<_> = hooks.list.iter().map(|h| view(kind, h)).collect();
            let page = match kind {
                ForgeKind::BitbucketCloud => {
                    serde_json::json!({"pagelen": 100, "size": list.len(), "page": 1, "values": list})
                }
                ForgeKind::BitbucketServer => serde_json::json!({"size": list.len(),
                    "limit": 100, "isLastPage": true, "start": 0, "values": list}),
                ForgeKind::AzureDevops => {
                    // Another consumer's subscription in the same organization.
                    let mut list = list;
                    list.push(serde_json::json!({"id": guid(1), "publisherId": "tfs",
                        "eventType": "workitem.created", "consumerId": "slack",
                        "consumerActionId": "postMessageToChannel", "status": "enabled",
                        "consumerInputs": {}}));
                    serde_json::json!({"count": list.len(), "value": list})
                }
                _ => serde_json::Value::Array(list),
            };
            Ok((200, page.to_string(), Vec::new()))
        }
        ("POST", []) => {
            let body = json_object(r)?;
            let hook = created(kind, &body, hooks)?;
            let mut jobs = Vec::new();
            if kind == ForgeKind::Github {
                jobs.push(job(&hook, "ping", false));
            }
            let answer = view(kind, &hook).to_string();
            hooks.list.push(hook);
            Ok((201, answer, jobs))
        }
        ("GET", [id]) => {
            let hook = find(hooks, id)?;
            Ok((200, view(kind, hook).to_string(), Vec::new()))
        }
        ("PATCH", [id]) if patches(kind) => update(kind, r, hooks, id),
        ("PUT", [id]) if !patches(kind) => update(kind, r, hooks, id),
        ("DELETE", [id]) => {
            let gone = find(hooks, id)?.id;
            hooks.list.retain(|h| h.id != gone);
            Ok((204, String::new(), Vec::new()))
        }
        (method, _) => Err(format!("{method} {path} is not a documented webhook call")),
    }
}

/// Azure DevOps' subscription body: a `git.push` of the repository to a web hook,
/// the secret as the Basic-auth password. Returns url, secret, events.
fn azure(
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<(String, String, Vec<String>), String> {
    only(
        body,
        &[
            "publisherId",
            "eventType",
            "resourceVersion",
            "consumerId",
            "consumerActionId",
            "publisherInputs",
            "consumerInputs",
            "scope",
        ],
    )?;
    let fixed = [
        ("publisherId", "tfs"),
        ("eventType", "git.push"),
        ("consumerId", "webHooks"),
        ("consumerActionId", "httpRequest"),
    ];
    for (key, want) in fixed {
        if body.get(key).and_then(|v| v.as_str()) != Some(want) {
            return Err(format!("{key} must be {want:?}"));
        }
    }
    let publisher = body
        .get("publisherInputs")
        .and_then(|p| p.as_object())
        .ok_or("publisherInputs is required")?;
    only(
        publisher,
        &["projectId", "repository", "branch", "pushedBy"],
    )?;
    if publisher.get("projectId").and_then(|p| p.as_str()) != Some(AZURE_PROJECT_ID) {
        return Err("publisherInputs.projectId is not the project's id".into());
    }
    if let Some(repo) = publisher.get("repository") {
        if repo.as_str() != Some(AZURE_REPO_ID) {
            return Err("publisherInputs.repository is not the repository's id".into());
        }
    }
    let consumer = body
        .get("consumerInputs")
        .and_then(|c| c.as_object())
        .ok_or("consumerInputs is required")?;
    only(
        consumer,
        &[
            "url",
            "basicAuthUsername",
            "basicAuthPassword",
            "httpHeaders",
            "resourceDetailsToSend",
            "messagesToSend",
            "detailedMessagesToSend",
            "acceptUntrustedCerts",
        ],
    )?;
    let url = consumer["url"]
        .as_str()
        .ok_or("consumerInputs.url is required")?;
    let secret = consumer
        .get("basicAuthPassword")
        .map(|p| p.as_str().ok_or("basicAuthPassword is not a string"))
        .transpose()?
        .unwrap_or_default();
    Ok((url.to_owned(), secret.to_owned(), vec!["git.push".into()]))
}

/// GitHub and Gitea change a webhook with PATCH, the others with PUT.
fn patches(kind: ForgeKind) -> bool {
    matches!(
        kind,
        ForgeKind::Github | ForgeKind::Gitea | ForgeKind::Forgejo
    )
}

/// Bitbucket's webhook body: Cloud `description`, `url`, `active`, `secret`,
/// `events` (`repo:push`); Data Center `name`, `url`, `active`, `events`
/// (`repo:refs_changed`), `configuration.secret`. Returns url, secret, events.
fn bitbucket(
    kind: ForgeKind,
    body: &serde_json::Map<String, serde_json::Value>,
    old: Option<&StoredHook>,
) -> Result<(String, String, Vec<String>), String> {
    let (allowed, label, push, secret): (&[&str], _, _, _) = match kind {
        ForgeKind::BitbucketCloud => (
            &[
                "description",
                "url",
                "active",
                "secret",
                "events",
                "skip_cert_verification",
            ],
            "description",
            "repo:push",
            body.get("secret"),
        ),
        _ => (
            &[
                "name",
                "url",
                "active",
                "events",
                "configuration",
                "sslVerificationRequired",
            ],
            "name",
            "repo:refs_changed",
            body.get("configuration").map(|c| &c["secret"]),
        ),
    };
    only(body, allowed)?;
    if !body.get(label).is_some_and(|l| l.is_string()) {
        return Err(format!("{label} is required"));
    }
    if let Some(c) = body.get("configuration") {
        only(
            c.as_object().ok_or("configuration is not an object")?,
            &["secret", "createdBy"],
        )?;
    }
    let url = body["url"].as_str().ok_or("url is required")?.to_owned();
    let events = events(body.get("events"))?.ok_or("events are required")?;
    if events.iter().any(|e| e != push) {
        return Err(format!("events {events:?} are not [{push:?}]"));
    }
    let secret = match secret {
        Some(s) => s.as_str().ok_or("secret is not a string")?.to_owned(),
        None => old.map(|h| h.secret.clone()).unwrap_or_default(),
    };
    Ok((url, secret, events))
}

fn json_object(r: &Received) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let content_type = r.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(format!("content-type {content_type:?} is not JSON"));
    }
    match serde_json::from_str(&r.body) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        _ => Err("body is not a JSON object".into()),
    }
}

fn only(
    object: &serde_json::Map<String, serde_json::Value>,
    allowed: &[&str],
) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(format!("unknown field {extra:?}")),
        None => Ok(()),
    }
}

/// The documented `config` of GitHub and Gitea: `url` and `content_type` (json or
/// form), a string `secret`; GitHub's `insecure_ssl` "0" or "1".
fn config(kind: ForgeKind, c: &serde_json::Value) -> Result<(String, Option<String>), String> {
    let c = c.as_object().ok_or("config is not an object")?;
    let allowed: &[&str] = match kind {
        ForgeKind::Github => &["url", "content_type", "secret", "insecure_ssl"],
        _ => &["url", "content_type", "secret"],
    };
    only(c, allowed)?;
    let url = c["url"].as_str().ok_or("config.url is missing")?;
    match c.get("content_type").and_then(|v| v.as_str()) {
        Some("json" | "form") => {}
        None if kind == ForgeKind::Github => {}
        other => return Err(format!("config.content_type {other:?} is not json or form")),
    }
    if let Some(ssl) = c.get("insecure_ssl") {
        if !matches!(ssl.as_str(), Some("0" | "1")) {
            return Err(format!("config.insecure_ssl {ssl} is not \"0\" or \"1\""));
        }
    }
    let secret = match c.get("secret") {
        None => None,
        Some(s) => Some(
            s.as_str()
                .ok_or("config.secret is not a string")?
                .to_owned(),
        ),
    };
    Ok((url.to_owned(), secret))
}

fn events(v: Option<&serde_json::Value>) -> Result<Option<Vec<String>>, String> {
    const KNOWN: &[&str] = &[
        "push",
        "create",
        "delete",
        "pull_request",
        "release",
        "*",
        "repo:push",
        "repo:refs_changed",
        "repo:modified",
    ];
    let Some(v) = v else { return Ok(None) };
    let list = v.as_array().ok_or("events is not an array")?;
    let words: Option<Vec<String>> = list.iter().map(|e| e.as_str().map(str::to_owned)).collect();
    let words = words.ok_or("events are not strings")?;
    match words.iter().find(|w| !KNOWN.contains(&w.as_str())) {
        Some(odd) => Err(format!("unknown event {odd:?}")),
        None => Ok(Some(words)),
    }
}

fn gitlab_flags(
    body: &serde_json::Map<String, serde_json::Value>,
    old: Option<&StoredHook>,
) -> Result<(String, String, Vec<String>), String> {
    only(
        body,
        &[
            "url",
            "token",
            "name",
            "description",
            "push_events",
            "push_events_branch_filter",
            "tag_push_events",
            "merge_requests_events",
            "enable_ssl_verification",
        ],
    )?;
    let url = body["url"].as_str().ok_or("url is required")?.to_owned();
    for key in ["push_events", "tag_push_events", "enable_ssl_verification"] {
        if body.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("{key} is not a boolean"));
        }
    }
    let token = match body.get("token") {
        Some(t) => t.as_str().ok_or("token is not a string")?.to_owned(),
        None => old.map(|h| h.secret.clone()).unwrap_or_default(),
    };
    let on = |key: &str, default: bool| body.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
    let mut events = Vec::new();
    if on("push_events", true) {
        events.push("push".to_owned());
    }
    if on("tag_push_events", false) {
        events.push("tag_push".to_owned());
    }
    Ok((url, token, events))
}

fn created(
    kind: ForgeKind,
    body: &serde_json::Map<String, serde_json::Value>,
    hooks: &mut Hooks,
) -> Result<StoredHook, String> {
    hooks.next_id += 1;
    let id = 1000 + hooks.next_id;
    let (url, secret, events, active) = match kind {
        ForgeKind::Gitlab => {
            let (url, token, events) = gitlab_flags(body, None)?;
            (url, token, events, true)
        }
        ForgeKind::BitbucketCloud | ForgeKind::BitbucketServer => {
            let (url, secret, events) = bitbucket(kind, body, None)?;
            let active = body.get("active").and_then(|a| a.as_bool()).unwrap_or(true);
            (url, secret, events, active)
        }
        ForgeKind::AzureDevops => {
            let (url, secret, events) = azure(body)?;
            (url, secret, events, true)
        }
        _ => {
            let allowed: &[&str] = match kind {
                ForgeKind::Github => &["name", "config", "events", "active"],
                _ => &[
                    "type",
                    "config",
                    "events",
                    "active",
                    "branch_filter",
                    "authorization_header",
                ],
            };
            only(body, allowed)?;
            if kind == ForgeKind::Github && body.get("name").is_some_and(|n| n != "web") {
                return Err("name must be \"web\"".into());
            }
            if kind != ForgeKind::Github
                && !matches!(
                    body.get("type").and_then(|t| t.as_str()),
                    Some("gitea" | "forgejo" | "gogs")
                )
            {
                return Err("type must be gitea, forgejo or gogs".into());
            }
            let (url, secret) = config(kind, body.get("config").ok_or("config is required")?)?;
            let events = events(body.get("events"))?.unwrap_or_else(|| vec!["push".into()]);
            let active = body.get("active").and_then(|a| a.as_bool()).unwrap_or(true);
            (url, secret.unwrap_or_default(), events, active)
        }
    };
    Ok(StoredHook {
        id,
        url,
        secret,
        events,
        active,
        last: None,
    })
}

fn update(
    kind: ForgeKind,
    r: &Received,
    hooks: &mut Hooks,
    id: &str,
) -> Result<(u16, String, Vec<Job>), String> {
    let body = json_object(r)?;
    let old = find(hooks, id)?.clone();
    let mut new = old.clone();
    match kind {
        ForgeKind::Gitlab => {
            let (url, token, events) = gitlab_flags(&body, Some(&old))?;
            (new.url, new.secret, new.events) = (url, token, events);
        }
        ForgeKind::AzureDevops => {
            let (url, secret, events) = azure(&body)?;
            (new.url, new.secret, new.events) = (url, secret, events);
        }
        ForgeKind::BitbucketCloud | ForgeKind::BitbucketServer => {
            let (url, secret, events) = bitbucket(kind, &body, Some(&old))?;
            (new.url, new.secret, new.events) = (url, secret, events);
            if let Some(a) = body.get("active") {
                new.active = a.as_bool().ok_or("active is not a boolean")?;
            }
        }
        _ => {
            let allowed: &[&str] = match kind {
                ForgeKind::Github => &["config", "events", "add_events", "remove_events", "active"],
                _ => &[
                    "config",
                    "events",
                    "active",
                    "branch_filter",
                    "authorization_header",
                ],
            };
            only(&body, allowed)?;
            if let Some(c) = body.get("config") {
                let (url, secret) = config(kind, c)?;
                new.url = url;
                // GitHub and Gitea keep the old secret when none is sent.
                new.secret = secret.unwrap_or(old.secret.clone());
            }
            if let Some(list) = events(body.get("events"))? {
                new.events = list;
            }
            if let Some(a) = body.get("active") {
                new.active = a.as_bool().ok_or("active is not a boolean")?;
            }
        }
    }
    let mut jobs = Vec::new();
    if std::mem::take(&mut hooks.push_during_update) {
        let mut in_flight = job(&old, "push", true);
        in_flight.url = old.url.clone();
        jobs.push(in_flight);
    }
    let answer = view(kind, &new).to_string();
    if let Some(slot) = hooks.list.iter_mut().find(|h| h.id == old.id) {
        *slot = new;
    }
    Ok((200, answer, jobs))
}

/// The webhook a path segment names: its number, or Bitbucket Cloud's `{uuid}`
/// (percent-encoded or not).
fn find<'h>(hooks: &'h Hooks, id: &str) -> Result<&'h StoredHook, String> {
    let id = id.replace("%7B", "{").replace("%7D", "}");
    hooks
        .list
        .iter()
        .find(|h| {
            let guid = guid(h.id);
            h.id.to_string() == id || id == guid || id == format!("{{{guid}}}")
        })
        .ok_or_else(|| format!("no webhook {id}"))
}

fn job(hook: &StoredHook, event: &'static str, before_reply: bool) -> Job {
    Job {
        hook: hook.id,
        url: hook.url.clone(),
        secret: hook.secret.clone(),
        event,
        before_reply,
    }
}

/// A webhook as the forge's API shows it (secrets never).
fn view(kind: ForgeKind, h: &StoredHook) -> serde_json::Value {
    match kind {
        ForgeKind::Gitlab => serde_json::json!({
            "id": h.id, "url": h.url,
            "push_events": h.events.iter().any(|e| e == "push"),
            "tag_push_events": h.events.iter().any(|e| e == "tag_push"),
            "enable_ssl_verification": true, "alert_status": "executable",
        }),
        ForgeKind::Github => {
            let last = match &h.last {
                None => serde_json::json!({"code": null, "status": "unused", "message": null}),
                Some((code, _)) if (200..300).contains(code) => {
                    serde_json::json!({"code": code, "status": "active", "message": "OK"})
                }
                Some((code, body)) => {
                    serde_json::json!({"code": code, "status": "failed", "message": body})
                }
            };
            serde_json::json!({
                "type": "Repository", "id": h.id, "name": "web", "active": h.active,
                "events": h.events,
                "config": {"content_type": "json", "insecure_ssl": "0", "url": h.url,
                           "secret": "********"},
                "last_response": last,
            })
        }
        ForgeKind::AzureDevops => serde_json::json!({
            "id": guid(h.id), "publisherId": "tfs", "eventType": "git.push",
            "resourceVersion": "1.0", "consumerId": "webHooks",
            "consumerActionId": "httpRequest", "status": "enabled",
            "publisherInputs": {"projectId": AZURE_PROJECT_ID, "repository": AZURE_REPO_ID},
            "consumerInputs": {"url": h.url, "basicAuthUsername": "hookd",
                               "basicAuthPassword": "********"},
        }),
        ForgeKind::BitbucketCloud => serde_json::json!({
            "uuid": format!("{{{}}}", guid(h.id)),
            "url": h.url, "description": "hookd", "subject_type": "repository",
            "active": h.active, "events": h.events, "secret_set": !h.secret.is_empty(),
        }),
        ForgeKind::BitbucketServer => serde_json::json!({
            "id": h.id, "name": "hookd", "url": h.url, "active": h.active,
            "events": h.events, "configuration": {}, "scopeType": "repository",
        }),
        _ => serde_json::json!({
            "id": h.id, "type": "gitea", "active": h.active, "events": h.events,
            "config": {"url": h.url, "content_type": "json"},
        }),
    }
}

/// Makes the deliveries due before the reply.
pub(super) fn run_before_reply(
    kind: ForgeKind,
    jobs: &mut Vec<Job>,
    shared: &Arc<(Mutex<State>, Condvar)>,
) {
    let (now, later): (Vec<Job>, Vec<Job>) = jobs.drain(..).partition(|j| j.before_reply);
    *jobs = later;
    for job in now {
        deliver(kind, &job, shared);
    }
}

/// Makes the deliveries due after the reply, as the forge does: in the background.
pub(super) fn run_after_reply(
    kind: ForgeKind,
    jobs: Vec<Job>,
    shared: &Arc<(Mutex<State>, Condvar)>,
) {
    if jobs.is_empty() {
        return;
    }
    let shared = shared.clone();
    std::thread::spawn(move || {
        for job in jobs {
            deliver(kind, &job, &shared);
        }
    });
}

fn deliver(kind: ForgeKind, job: &Job, shared: &(Mutex<State>, Condvar)) -> (u16, String) {
    let n = {
        let mut state = shared.0.lock().unwrap_or_else(|e| e.into_inner());
        state.hooks.next_delivery += 1;
        state.hooks.next_delivery
    };
    let (headers, body) = delivery(kind, job, n);
    let (status, reply) = post(&job.url, &headers, &body).unwrap_or((0, "no reply".into()));
    let mut state = shared.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hook) = state.hooks.list.iter_mut().find(|h| h.id == job.hook) {
        hook.last = Some((status, reply.clone()));
    }
    state.hooks.delivered.push(Delivered {
        hook: job.hook,
        event: job.event.to_owned(),
        secret: job.secret.clone(),
        status,
        body: reply.clone(),
    });
    (status, reply)
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The headers and body the forge sends for `job`: its push fixture, or GitHub's ping.
fn delivery(kind: ForgeKind, job: &Job, n: u64) -> (Vec<(String, String)>, Vec<u8>) {
    let fixture = |name: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks");
        std::fs::read(dir.join(name)).unwrap()
    };
    let id = format!("00000000-0000-4000-8000-{n:012}");
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let mut add = |name: &str, value: String| headers.push((name.to_owned(), value));
    let body = match kind {
        ForgeKind::Github => {
            let body = match job.event {
                "ping" => serde_json::json!({"zen": "Keep it logically awesome.",
                    "hook_id": job.hook, "hook": {"type": "Repository", "id": job.hook}})
                .to_string()
                .into_bytes(),
                _ => fixture("github/push.json"),
            };
            add("X-GitHub-Event", job.event.to_owned());
            add("X-GitHub-Delivery", id);
            add("X-GitHub-Hook-ID", job.hook.to_string());
            add(
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex(&job.secret, &body)),
            );
            body
        }
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            let body = fixture("gitea/push.json");
            add("X-Gitea-Event", "push".into());
            add("X-Gitea-Delivery", id);
            add("X-Gitea-Signature", hmac_hex(&job.secret, &body));
            body
        }
        ForgeKind::BitbucketCloud | ForgeKind::BitbucketServer => {
            let (event, file, id_header) = match kind {
                ForgeKind::BitbucketCloud => (
                    "repo:push",
                    "bitbucket-cloud/repo-push.json",
                    "X-Request-UUID",
                ),
                _ => (
                    "repo:refs_changed",
                    "bitbucket-server/refs-changed.json",
                    "X-Request-Id",
                ),
            };
            let body = fixture(file);
            add("X-Event-Key", event.into());
            add(id_header, id);
            add(
                "X-Hub-Signature",
                format!("sha256={}", hmac_hex(&job.secret, &body)),
            );
            body
        }
        ForgeKind::AzureDevops => {
            use base64::Engine as _;
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("hookd:{}", job.secret));
            add("Authorization", format!("Basic {basic}"));
            fixture("azure-devops/git-push.json")
        }
        _ => {
            add("X-Gitlab-Event", "Push Hook".into());
            add("X-Gitlab-Event-UUID", id);
            add("X-Gitlab-Token", job.secret.clone());
            fixture("gitlab/push.json")
        }
    };
    (headers, body)
}

/// POSTs to an `http://IP:PORT/PATH` URL with the tests' HTTP client; the reply's
/// status and body.
fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let reply = crate::support::http(authority.parse().ok()?, "POST", path, &headers, body);
    Some((reply.status, reply.body))
}

impl ForgeServer {
    /// The webhooks the forge holds now.
    pub fn webhooks(&self) -> Vec<StoredHook> {
        self.lock().hooks.list.clone()
    }

    /// Every delivery made so far, with hookd's answers.
    pub fn deliveries(&self) -> Vec<Delivered> {
        self.lock().hooks.delivered.clone()
    }

    /// `token` authenticates from now on but lacks the webhook scope.
    pub fn limit_token(&self, token: &str) {
        self.lock().hooks.limited = Some(token.to_owned());
    }

    /// `token` may read webhooks from now on, but not create, change or delete them.
    pub fn read_only_token(&self, token: &str) {
        self.lock().hooks.read_only = Some(token.to_owned());
    }

    /// The next update first delivers a push signed with the webhook's old secret,
    /// and only then answers.
    pub fn push_during_next_update(&self) {
        self.lock().hooks.push_during_update = true;
    }

    /// Delivers a signed push to webhook `id` now, as the forge would on a push;
    /// hookd's status and body. `secret` overrides the webhook's own.
    pub fn deliver_push(&self, id: u64, secret: Option<&str>) -> (u16, String) {
        let hook = self
            .webhooks()
            .into_iter()
            .find(|h| h.id == id)
            .expect("the webhook exists");
        let mut job = job(&hook, "push", false);
        if let Some(secret) = secret {
            job.secret = secret.to_owned();
        }
        deliver(self.kind, &job, &self.state)
    }

    /// Polls until `n` deliveries were made.
    pub fn wait_deliveries(&self, n: usize, secs: u64) -> Vec<Delivered> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.deliveries();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {n} deliveries; got {got:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}
