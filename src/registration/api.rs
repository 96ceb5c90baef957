//! Each forge's webhook API, pure: the request for each call (list, get, create,
//! update, delete), the hooks a reply lists, and what a refusal means for the
//! operator (the token scope each forge needs). Checked against the forges' own
//! documentation: GitHub REST "Repository webhooks", Gitea's swagger
//! (`CreateHookOption`, `EditHookOption`), GitLab "Project webhooks", Bitbucket Cloud
//! "Webhooks" (`/2.0/repositories/{workspace}/{repo_slug}/hooks`), Bitbucket Data
//! Center "Repository webhooks" (`/rest/api/latest/projects/{key}/repos/{slug}/webhooks`),
//! Azure DevOps "Subscriptions - Create" (a service hook: publisher `tfs`, event
//! `git.push`, consumer `webHooks`, action `httpRequest`, the secret as the Basic-auth
//! password), which names the project and repository by id (`Call::Repository`).

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};

use crate::config::Forge;
use crate::outbound::forge::{accept, auth_header, seg, snippet};
use crate::secret::Secret;

/// Where the webhook lives and who asks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site<'a> {
    /// Which forge.
    pub(crate) forge: Forge,
    /// API base without a trailing slash.
    pub(crate) api_url: &'a str,
    /// The repository as the forge's API names it.
    pub(crate) repo: &'a str,
    /// The API token (`token_file`).
    pub(crate) token: &'a Secret,
}

/// What our webhook must be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    /// The hook URL, with its token.
    pub(crate) url: &'a str,
    /// The webhook secret the forge signs (or sends) with.
    pub(crate) secret: &'a Secret,
    /// Whether tag pushes are wanted too (GitLab has its own switch; the other
    /// forges send tag pushes as push events).
    pub(crate) tags: bool,
    /// Azure DevOps: the project's and the repository's ids (`Call::Repository`).
    pub(crate) azure: Option<(&'a str, &'a str)>,
}

/// One API call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call<'a> {
    /// The repository's webhooks.
    List,
    /// One webhook.
    Get(&'a str),
    /// A new webhook.
    Create(Wanted<'a>),
    /// A webhook set to `Wanted`.
    Update(&'a str, Wanted<'a>),
    /// A webhook removed.
    Delete(&'a str),
    /// Azure DevOps: the repository, for its and its project's ids.
    Repository,
}

impl Call<'_> {
    /// What the call does, for messages.
    pub(crate) fn doing(&self) -> &'static str {
        match self {
            Self::List => "list the repository's webhooks",
            Self::Get(_) => "read the webhook",
            Self::Create(_) => "create the webhook",
            Self::Update(..) => "update the webhook",
            Self::Delete(_) => "delete the webhook",
            Self::Repository => "look the repository up",
        }
    }
}

/// A webhook as the forge shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForgeHook {
    /// The forge's id for it.
    pub(crate) id: String,
    /// Where it delivers.
    pub(crate) url: String,
    /// Whether the forge delivers to it.
    pub(crate) active: bool,
    /// The events it is sent for, in the forge's words.
    pub(crate) events: Vec<String>,
    /// The last delivery's response, where the API tells it (GitHub `last_response`).
    pub(crate) last_response: Option<String>,
}

/// Why a registration cannot go on with this forge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// The repository has a shape the forge's API cannot name.
    #[error("repository {repo:?} does not fit {forge}")]
    Shape {
        /// The forge's word.
        forge: &'static str,
        /// The repository as configured.
        repo: String,
    },
    /// A reply that was not what the API documents.
    #[error("{forge} answered {doing} with something unexpected: {why}")]
    Unexpected {
        /// The forge's word.
        forge: &'static str,
        /// What was asked.
        doing: &'static str,
        /// What was wrong with it.
        why: String,
    },
    /// The request could not be built (a token a header cannot carry).
    #[error("{0}")]
    Request(String),
}

/// The request for `call`.
pub(crate) fn request(site: &Site<'_>, call: Call<'_>) -> Result<Request<Bytes>, ApiError> {
    let hooks = hooks_url(site)?;
    let (method, url, body) = match call {
        Call::List => (Method::GET, list_url(site.forge, &hooks), None),
        Call::Get(id) => (Method::GET, format!("{hooks}/{}", seg(id)), None),
        Call::Create(wanted) => (Method::POST, hooks, Some(body(site.forge, wanted, true))),
        Call::Update(id, wanted) => {
            let method = match site.forge {
                Forge::Github | Forge::Gitea | Forge::Forgejo => Method::PATCH,
                _ => Method::PUT,
            };
            let url = format!("{hooks}/{}", seg(id));
            (method, url, Some(body(site.forge, wanted, false)))
        }
        Call::Delete(id) => (Method::DELETE, format!("{hooks}/{}", seg(id)), None),
        Call::Repository => (Method::GET, repository_url(site)?, None),
    };
    // Azure DevOps wants the API version on every call.
    let url = match site.forge {
        Forge::AzureDevops if url.contains('?') => format!("{url}&api-version=7.1"),
        Forge::AzureDevops => format!("{url}?api-version=7.1"),
        _ => url,
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(&url)
        .header(header::ACCEPT, accept(site.forge))
        .header(
            header::USER_AGENT,
            concat!("hookd/", env!("CARGO_PKG_VERSION")),
        );
    let (name, value) = auth_header(site.forge, site.token.expose()).map_err(ApiError::Request)?;
    builder = builder.header(name, value);
    if site.forge == Forge::Github {
        builder = builder.header("X-GitHub-Api-Version", "2022-11-28");
    }
    let bytes = match body {
        Some(json) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    builder
        .body(bytes)
        .map_err(|e| ApiError::Request(format!("cannot build the request: {e}")))
}

/// `…/hooks` of the repository.
fn hooks_url(site: &Site<'_>) -> Result<String, ApiError> {
    let api = site.api_url;
    let parts: Vec<String> = site.repo.split('/').map(seg).collect();
    match (site.forge, parts.as_slice()) {
        (Forge::Github | Forge::Gitea | Forge::Forgejo, [owner, name]) => {
            Ok(format!("{api}/repos/{owner}/{name}/hooks"))
        }
        (Forge::Gitlab, _) => Ok(format!("{api}/projects/{}/hooks", seg(site.repo))),
        (Forge::BitbucketCloud, [workspace, slug]) => {
            Ok(format!("{api}/repositories/{workspace}/{slug}/hooks"))
        }
        (Forge::BitbucketServer, [key, slug]) => Ok(format!(
            "{api}/rest/api/latest/projects/{key}/repos/{slug}/webhooks"
        )),
        (Forge::AzureDevops, [org, _, _]) => Ok(format!("{api}/{org}/_apis/hooks/subscriptions")),
        (Forge::Github | Forge::Gitea | Forge::Forgejo, _)
        | (Forge::BitbucketCloud | Forge::BitbucketServer | Forge::AzureDevops, _) => {
            Err(ApiError::Shape {
                forge: site.forge.word(),
                repo: site.repo.to_owned(),
            })
        }
    }
}

/// Azure DevOps: `{org}/{project}/_apis/git/repositories/{repo}`.
fn repository_url(site: &Site<'_>) -> Result<String, ApiError> {
    let parts: Vec<String> = site.repo.split('/').map(seg).collect();
    match (site.forge, parts.as_slice()) {
        (Forge::AzureDevops, [org, project, repo]) => Ok(format!(
            "{}/{org}/{project}/_apis/git/repositories/{repo}",
            site.api_url
        )),
        _ => Err(ApiError::Shape {
            forge: site.forge.word(),
            repo: site.repo.to_owned(),
        }),
    }
}

/// The project's and the repository's ids in Azure DevOps' repository reply.
pub(crate) fn parse_repository(body: &str) -> Result<(String, String), ApiError> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match (v["project"]["id"].as_str(), v["id"].as_str()) {
        (Some(project), Some(repo)) => Ok((project.to_owned(), repo.to_owned())),
        _ => Err(ApiError::Unexpected {
            forge: Forge::AzureDevops.word(),
            doing: Call::Repository.doing(),
            why: snippet(body),
        }),
    }
}

/// The list call, with the largest page each forge allows (one page holds every
/// webhook a repository has in practice; GitHub allows 20 per event).
fn list_url(forge: Forge, hooks: &str) -> String {
    match forge {
        Forge::Gitea | Forge::Forgejo => format!("{hooks}?limit=50"),
        Forge::BitbucketCloud => format!("{hooks}?pagelen=100"),
        Forge::BitbucketServer => format!("{hooks}?limit=100"),
        Forge::Github | Forge::Gitlab => format!("{hooks}?per_page=100"),
        // The subscriptions of the organization's git pushes to web hooks.
        Forge::AzureDevops => format!(
            "{hooks}?publisherId=tfs&eventType=git.push&consumerId=webHooks&consumerActionId=httpRequest"
        ),
    }
}

/// The name or description of the webhooks hookd makes, where the forge wants one.
const MARKER: &str = "hookd";

/// The JSON body of a create (`new`) or update. GitHub and Gitea share the shape
/// (`config` with url, content type and secret; `events`; `active`); a new one also
/// names its kind (GitHub `name: "web"`, Gitea `type: "gitea"`, which Forgejo takes).
fn body(forge: Forge, wanted: Wanted<'_>, new: bool) -> serde_json::Value {
    let (kind, insecure_ssl) = match forge {
        Forge::Github => (("name", "web"), Some("0")),
        Forge::Gitea | Forge::Forgejo => (("type", "gitea"), None),
        Forge::AzureDevops => {
            let (project, repository) = wanted.azure.unwrap_or_default();
            return serde_json::json!({
                "publisherId": "tfs",
                "eventType": "git.push",
                "resourceVersion": "1.0",
                "consumerId": "webHooks",
                "consumerActionId": "httpRequest",
                "publisherInputs": { "projectId": project, "repository": repository },
                "consumerInputs": {
                    "url": wanted.url,
                    "basicAuthUsername": MARKER,
                    "basicAuthPassword": wanted.secret.expose(),
                },
            });
        }
        Forge::Gitlab => {
            return serde_json::json!({
                "url": wanted.url,
                "token": wanted.secret.expose(),
                "push_events": true,
                "tag_push_events": wanted.tags,
                "enable_ssl_verification": true,
            })
        }
        // A push event covers tags on both Bitbucket flavours.
        Forge::BitbucketCloud => {
            return serde_json::json!({
                "description": MARKER,
                "url": wanted.url,
                "active": true,
                "secret": wanted.secret.expose(),
                "events": ["repo:push"],
            })
        }
        Forge::BitbucketServer => {
            return serde_json::json!({
                "name": MARKER,
                "url": wanted.url,
                "active": true,
                "events": ["repo:refs_changed"],
                "configuration": { "secret": wanted.secret.expose() },
            })
        }
    };
    let mut config = serde_json::json!({
        "url": wanted.url,
        "content_type": "json",
        "secret": wanted.secret.expose(),
    });
    if let Some(no) = insecure_ssl {
        config["insecure_ssl"] = no.into();
    }
    let mut body = serde_json::json!({ "active": true, "events": ["push"], "config": config });
    if new {
        body[kind.0] = kind.1.into();
    }
    body
}

/// The webhooks a list reply names.
pub(crate) fn parse_list(forge: Forge, body: &str) -> Result<Vec<ForgeHook>, ApiError> {
    let unexpected = |why: String| ApiError::Unexpected {
        forge: forge.word(),
        doing: Call::List.doing(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| unexpected(format!("not JSON ({e})")))?;
    // Bitbucket pages its lists (`{"values": [...]}`), Azure DevOps wraps them
    // (`{"count": N, "value": [...]}`).
    let items = value
        .as_array()
        .or_else(|| value["values"].as_array())
        .or_else(|| value["value"].as_array())
        .ok_or_else(|| unexpected("not a list of webhooks".into()))?;
    let hooks = items.iter().map(|item| (item, parse_hook(forge, item)));
    match forge {
        // The organization's subscriptions include other consumers' (no URL).
        Forge::AzureDevops => Ok(hooks.filter_map(|(_, hook)| hook).collect()),
        _ => hooks
            .map(|(item, hook)| hook.ok_or_else(|| unexpected(snippet(&item.to_string()))))
            .collect(),
    }
}

/// One webhook of a get or create reply.
pub(crate) fn parse_one(forge: Forge, call: Call<'_>, body: &str) -> Result<ForgeHook, ApiError> {
    serde_json::from_str(body)
        .ok()
        .and_then(|v: serde_json::Value| parse_hook(forge, &v))
        .ok_or_else(|| ApiError::Unexpected {
            forge: forge.word(),
            doing: call.doing(),
            why: snippet(body),
        })
}

fn parse_hook(forge: Forge, v: &serde_json::Value) -> Option<ForgeHook> {
    let id = match v.get("uuid").unwrap_or(&v["id"]) {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    let strings = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let hook = match forge {
        Forge::Gitlab => {
            let on = |key: &str| v[key].as_bool() == Some(true);
            let events = [("push_events", "push"), ("tag_push_events", "tag_push")]
                .iter()
                .filter(|(key, _)| on(key))
                .map(|(_, word)| word.to_string())
                .collect();
            ForgeHook {
                id,
                url: v["url"].as_str()?.to_owned(),
                // `alert_status` is GitLab's view of a failing hook (16.x and later).
                active: v["alert_status"]
                    .as_str()
                    .is_none_or(|status| status == "executable"),
                events,
                last_response: None,
            }
        }
        Forge::AzureDevops => ForgeHook {
            id,
            url: v["consumerInputs"]["url"].as_str()?.to_owned(),
            active: v["status"].as_str() == Some("enabled"),
            events: strings(&serde_json::json!([v["eventType"]])),
            last_response: None,
        },
        Forge::BitbucketCloud | Forge::BitbucketServer => ForgeHook {
            id,
            url: v["url"].as_str()?.to_owned(),
            active: v["active"].as_bool().unwrap_or(false),
            events: strings(&v["events"]),
            last_response: None,
        },
        _ => ForgeHook {
            id,
            url: v["config"]["url"].as_str()?.to_owned(),
            active: v["active"].as_bool().unwrap_or(false),
            events: strings(&v["events"]),
            last_response: last_response(&v["last_response"]),
        },
    };
    Some(hook)
}

/// GitHub's `last_response` (`{"code":200,"status":"active","message":"OK"}`); `None`
/// before the first delivery (`status` "unused") or where the forge has none.
fn last_response(v: &serde_json::Value) -> Option<String> {
    let status = v["status"].as_str()?;
    if status == "unused" {
        return None;
    }
    let code = v["code"].as_u64().map(|c| format!("HTTP {c}"));
    let message = v["message"].as_str().filter(|m| !m.is_empty());
    let parts: Vec<&str> = [code.as_deref(), Some(status), message]
        .into_iter()
        .flatten()
        .collect();
    Some(parts.join(", "))
}

/// Whether GitHub's last delivery (the ping) got a 2xx from hookd.
pub(crate) fn delivered(hook: &ForgeHook) -> Option<bool> {
    let text = hook.last_response.as_deref()?;
    Some(text.starts_with("HTTP 2"))
}

/// The token scope each forge needs to manage webhooks, as its documentation names it.
pub(crate) fn scope(forge: Forge) -> &'static str {
    match forge {
        Forge::Github => {
            "a classic token with the admin:repo_hook scope, or a fine-grained token with \
             \"Webhooks: read and write\" on the repository"
        }
        Forge::Gitea | Forge::Forgejo => {
            "a token with the write:repository scope, of a user with admin rights on the \
             repository"
        }
        Forge::Gitlab => "a token with the api scope, of a user with the Maintainer role",
        Forge::BitbucketCloud => {
            "a repository access token with the webhook scope (\"Webhooks: Read and write\")"
        }
        Forge::BitbucketServer => "an HTTP access token with repository admin permission",
        Forge::AzureDevops => {
            "a personal access token with the \"Service Hooks (Read & write)\" scope \
             (vso.hooks_write) and \"Code (Read)\", of a project administrator"
        }
    }
}

/// The operator's message for a refused call: what failed, the forge's words, and
/// what to fix (the scope, the repository).
pub(crate) fn refusal(site: &Site<'_>, call: Call<'_>, status: StatusCode, body: &str) -> String {
    let forge = site.forge.word();
    let said = format!(
        "{forge} answered HTTP {}: {}",
        status.as_u16(),
        snippet(body)
    );
    let fix = match status.as_u16() {
        401 => format!(
            "the token in token_file is not valid (expired or revoked?); it must be {}",
            scope(site.forge)
        ),
        403 => format!(
            "the token may not manage this repository's webhooks; it must be {}",
            scope(site.forge)
        ),
        404 => format!(
            "either repository {:?} does not exist on {} or the token may not see it; check \
             repo in [feeds.NAME.status], and that the token is {}",
            site.repo,
            site.api_url,
            scope(site.forge)
        ),
        _ => "see the forge's message".to_owned(),
    };
    format!("cannot {} ({said}): {fix}", call.doing())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret {
        Secret::new(text.into()).unwrap()
    }

    fn site<'a>(forge: Forge, api: &'a str, repo: &'a str, token: &'a Secret) -> Site<'a> {
        Site {
            forge,
            api_url: api,
            repo,
            token,
        }
    }

    #[test]
    fn github_calls_are_the_documented_ones() {
        let (token, hook_secret) = (secret("ghp_x"), secret("s3"));
        let s = site(Forge::Github, "https://api.github.com", "octo/web", &token);
        let wanted = Wanted {
            url: "https://ci.example.com/hooks/T",
            secret: &hook_secret,
            tags: true,
            azure: None,
        };
        let r = request(&s, Call::Create(wanted)).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "https://api.github.com/repos/octo/web/hooks");
        assert_eq!(r.headers()["authorization"], "Bearer ghp_x");
        assert_eq!(r.headers()["accept"], "application/vnd.github+json");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "name": "web", "active": true, "events": ["push"],
                "config": {"url": "https://ci.example.com/hooks/T", "content_type": "json",
                           "secret": "s3", "insecure_ssl": "0"}
            })
        );
        let r = request(&s, Call::Update("12", wanted)).unwrap();
        assert_eq!(
            (r.method(), r.uri().to_string().as_str()),
            (
                &Method::PATCH,
                "https://api.github.com/repos/octo/web/hooks/12"
            )
        );
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert!(body.get("name").is_none(), "{body}");
        let r = request(&s, Call::List).unwrap();
        assert_eq!(
            r.uri(),
            "https://api.github.com/repos/octo/web/hooks?per_page=100"
        );
        assert!(r.body().is_empty() && r.headers().get("content-type").is_none());
        let r = request(&s, Call::Delete("12")).unwrap();
        assert_eq!(r.method(), Method::DELETE);
    }

    #[test]
    fn gitea_and_gitlab_calls_are_the_documented_ones() {
        let (token, hook_secret) = (secret("tok"), secret("s3"));
        let wanted = Wanted {
            url: "https://ci.example.com/hooks/T",
            secret: &hook_secret,
            tags: false,
            azure: None,
        };
        let gitea = site(
            Forge::Forgejo,
            "https://git.example.com/api/v1",
            "o/r",
            &token,
        );
        let r = request(&gitea, Call::Create(wanted)).unwrap();
        assert_eq!(r.uri(), "https://git.example.com/api/v1/repos/o/r/hooks");
        assert_eq!(r.headers()["authorization"], "token tok");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["type"], "gitea");
        assert_eq!(body["config"]["content_type"], "json");
        assert_eq!(body["events"], serde_json::json!(["push"]));
        let r = request(&gitea, Call::Update("4", wanted)).unwrap();
        assert_eq!(r.method(), Method::PATCH);

        let gitlab = site(
            Forge::Gitlab,
            "https://gitlab.com/api/v4",
            "g/sub/p",
            &token,
        );
        let r = request(&gitlab, Call::Update("7", wanted)).unwrap();
        assert_eq!(
            (r.method(), r.uri().to_string().as_str()),
            (
                &Method::PUT,
                "https://gitlab.com/api/v4/projects/g%2Fsub%2Fp/hooks/7"
            )
        );
        assert_eq!(r.headers()["private-token"], "tok");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"url": "https://ci.example.com/hooks/T", "token": "s3",
                "push_events": true, "tag_push_events": false,
                "enable_ssl_verification": true})
        );
        let az = site(
            Forge::AzureDevops,
            "https://dev.azure.com",
            "org/My Project/r",
            &token,
        );
        let r = request(&az, Call::Repository).unwrap();
        assert_eq!(
            r.uri(),
            "https://dev.azure.com/org/My%20Project/_apis/git/repositories/r?api-version=7.1"
        );
        let azure = Wanted {
            azure: Some(("p-id", "r-id")),
            ..wanted
        };
        let r = request(&az, Call::Create(azure)).unwrap();
        assert_eq!(
            r.uri(),
            "https://dev.azure.com/org/_apis/hooks/subscriptions?api-version=7.1"
        );
        assert_eq!(r.headers()["authorization"], "Basic OnRvaw==");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            (&body["eventType"], &body["consumerActionId"]),
            (&"git.push".into(), &"httpRequest".into())
        );
        assert_eq!(body["publisherInputs"]["repository"], "r-id");
        assert_eq!(body["consumerInputs"]["basicAuthPassword"], "s3");
        let listed = r#"{"count":2,"value":[{"id":"s-1","status":"enabled","eventType":"git.push",
            "consumerInputs":{"url":"https://ci.example.com/hooks/T"}},
            {"id":"s-2","consumerId":"slack","consumerInputs":{}}]}"#;
        let hooks = parse_list(Forge::AzureDevops, listed).unwrap();
        assert_eq!(hooks.len(), 1);
        assert_eq!((hooks[0].id.as_str(), hooks[0].active), ("s-1", true));
        assert_eq!(hooks[0].events, ["git.push"]);
        assert_eq!(
            parse_repository(r#"{"id":"r-id","project":{"id":"p-id"}}"#).unwrap(),
            ("p-id".to_owned(), "r-id".to_owned())
        );
        let bad = site(Forge::Github, "https://api.github.com", "o/r/x", &token);
        assert!(matches!(
            request(&bad, Call::List),
            Err(ApiError::Shape { .. })
        ));
    }

    #[test]
    fn bitbucket_calls_are_the_documented_ones() {
        let (token, hook_secret) = (secret("tok"), secret("s3"));
        let wanted = Wanted {
            url: "https://ci.example.com/hooks/T",
            secret: &hook_secret,
            tags: true,
            azure: None,
        };
        let cloud = site(
            Forge::BitbucketCloud,
            "https://api.bitbucket.org/2.0",
            "ws/r",
            &token,
        );
        let r = request(&cloud, Call::Create(wanted)).unwrap();
        assert_eq!(
            r.uri(),
            "https://api.bitbucket.org/2.0/repositories/ws/r/hooks"
        );
        assert_eq!(r.headers()["authorization"], "Bearer tok");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"description": "hookd", "url": "https://ci.example.com/hooks/T",
                "active": true, "secret": "s3", "events": ["repo:push"]})
        );
        let r = request(&cloud, Call::Update("{a-b}", wanted)).unwrap();
        assert_eq!(
            (r.method(), r.uri().to_string().as_str()),
            (
                &Method::PUT,
                "https://api.bitbucket.org/2.0/repositories/ws/r/hooks/%7Ba-b%7D"
            )
        );
        let server = site(
            Forge::BitbucketServer,
            "https://bb.example.com",
            "PROJ/r",
            &token,
        );
        let r = request(&server, Call::List).unwrap();
        assert_eq!(
            r.uri(),
            "https://bb.example.com/rest/api/latest/projects/PROJ/repos/r/webhooks?limit=100"
        );
        let r = request(&server, Call::Create(wanted)).unwrap();
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["events"], serde_json::json!(["repo:refs_changed"]));
        assert_eq!(body["configuration"]["secret"], "s3");
        let listed = r#"{"size":1,"limit":100,"isLastPage":true,"start":0,"values":[{"id":7,
            "name":"hookd","url":"https://ci.example.com/hooks/T","active":true,
            "events":["repo:refs_changed"]}]}"#;
        let hooks = parse_list(Forge::BitbucketServer, listed).unwrap();
        assert_eq!((hooks[0].id.as_str(), hooks[0].active), ("7", true));
        let listed = r#"{"pagelen":100,"values":[{"uuid":"{a-b}","url":"u","active":false,
            "events":["repo:push"],"description":"hookd"}]}"#;
        let hooks = parse_list(Forge::BitbucketCloud, listed).unwrap();
        assert_eq!(
            (hooks[0].id.as_str(), hooks[0].url.as_str()),
            ("{a-b}", "u")
        );
    }

    #[test]
    fn listed_hooks_are_read_per_forge() {
        let github = r#"[{"type":"Repository","id":12345678,"name":"web","active":true,
            "events":["push","pull_request"],"config":{"content_type":"json",
            "insecure_ssl":"0","url":"https://example.com/webhook"},
            "last_response":{"code":502,"status":"failed","message":"timed out"}},
            {"id":2,"active":false,"events":["push"],"config":{"url":"u"},
            "last_response":{"code":null,"status":"unused","message":null}}]"#;
        let hooks = parse_list(Forge::Github, github).unwrap();
        assert_eq!(hooks[0].id, "12345678");
        assert_eq!(hooks[0].url, "https://example.com/webhook");
        assert_eq!(
            hooks[0].last_response.as_deref(),
            Some("HTTP 502, failed, timed out")
        );
        assert_eq!(delivered(&hooks[0]), Some(false));
        assert_eq!(
            (hooks[1].active, hooks[1].last_response.clone()),
            (false, None)
        );
        let gitlab = r#"[{"id":1,"url":"http://example.com/hook","push_events":true,
            "tag_push_events":true,"alert_status":"executable"}]"#;
        let hooks = parse_list(Forge::Gitlab, gitlab).unwrap();
        assert_eq!(hooks[0].events, ["push", "tag_push"]);
        assert!(hooks[0].active);
        assert!(parse_list(Forge::Github, "{}").is_err());
        assert!(parse_list(Forge::Github, r#"[{"id":1}]"#).is_err());
    }

    #[test]
    fn refusals_name_the_scope_to_grant() {
        let token = secret("t");
        let s = site(Forge::Github, "https://api.github.com", "o/r", &token);
        let said = refusal(
            &s,
            Call::List,
            StatusCode::NOT_FOUND,
            r#"{"message":"Not Found"}"#,
        );
        assert!(
            said.starts_with("cannot list the repository's webhooks (github answered HTTP 404"),
            "{said}"
        );
        assert!(
            said.contains("admin:repo_hook") && said.contains("\"o/r\""),
            "{said}"
        );
        let s = site(Forge::Gitlab, "https://gitlab.com/api/v4", "g/p", &token);
        let said = refusal(
            &s,
            Call::Create(Wanted {
                url: "u",
                secret: &token,
                tags: false,
                azure: None,
            }),
            StatusCode::FORBIDDEN,
            "",
        );
        assert!(
            said.contains("api scope") && said.contains("Maintainer"),
            "{said}"
        );
    }
}
