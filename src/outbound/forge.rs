//! Each forge's commit status request, and what its reply means. Pure: a request is
//! built from the forge-neutral [`StatusPost`], where to post it and the token, and a
//! reply is judged from its status, headers and body. The state maps are total and
//! explicit (no default arm), per `FORGE-STATUS.md`.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::Forge;
use crate::store::{PostState, StatusPost};

/// Where a status goes: the forge, its API base and the repository as it names it.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    /// Which forge.
    pub(crate) forge: Forge,
    /// API base without a trailing slash.
    pub(crate) api_url: &'a str,
    /// `OWNER/NAME`, GitLab's project path, `KEY/slug`, `ORG/PROJECT/REPO`.
    pub(crate) repo: &'a str,
}

/// Path segments are percent-encoded except the unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One path segment, percent-encoded (a repository part, a commit, a hook id).
pub(crate) fn seg(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The repository's parts, each encoded as one path segment.
fn parts(repo: &str) -> Vec<String> {
    repo.split('/').map(seg).collect()
}

/// The forge's word for a hookd state.
pub(crate) fn state_word(forge: Forge, state: PostState) -> &'static str {
    use PostState::*;
    match forge {
        Forge::Github => match state {
            Running => "pending",
            Succeeded => "success",
            Failed => "failure",
            TimedOut => "failure",
            Cancelled => "error",
            Error => "error",
        },
        Forge::Gitlab => match state {
            Running => "running",
            Succeeded => "success",
            Failed => "failed",
            TimedOut => "failed",
            Cancelled => "canceled",
            Error => "failed",
        },
        Forge::Gitea | Forge::Forgejo => match state {
            Running => "pending",
            Succeeded => "success",
            Failed => "failure",
            TimedOut => "failure",
            Cancelled => "failure",
            Error => "error",
        },
        Forge::BitbucketCloud => match state {
            Running => "INPROGRESS",
            Succeeded => "SUCCESSFUL",
            Failed => "FAILED",
            TimedOut => "FAILED",
            Cancelled => "STOPPED",
            Error => "FAILED",
        },
        Forge::BitbucketServer => match state {
            Running => "INPROGRESS",
            Succeeded => "SUCCESSFUL",
            Failed => "FAILED",
            TimedOut => "FAILED",
            Cancelled => "CANCELLED",
            Error => "FAILED",
        },
        Forge::AzureDevops => match state {
            Running => "pending",
            Succeeded => "succeeded",
            Failed => "failed",
            TimedOut => "failed",
            Cancelled => "error",
            Error => "error",
        },
    }
}

/// A branch's short name (`refs/heads/x` → `x`), for the forges that want one.
fn branch_of(git_ref: &str) -> Option<&str> {
    git_ref.strip_prefix("refs/heads/")
}

/// The ref as GitLab names it: a branch or tag's short name.
fn short_ref(git_ref: &str) -> &str {
    branch_of(git_ref)
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(git_ref)
}

/// The status request for `post` on `target`, authenticated with `token`; an error
/// when the repository does not have the forge's shape.
pub(crate) fn request(
    target: &Target<'_>,
    post: &StatusPost,
    token: &str,
) -> Result<Request<Bytes>, String> {
    let state = state_word(target.forge, post.state);
    let sha = seg(&post.commit);
    let api = target.api_url;
    let p = parts(target.repo);
    let shape = || {
        format!(
            "repository {:?} does not fit {}",
            target.repo,
            target.forge.word()
        )
    };
    let (url, body) = match target.forge {
        Forge::Github | Forge::Gitea | Forge::Forgejo => {
            let [owner, name] = p.as_slice() else {
                return Err(shape());
            };
            let mut body = serde_json::json!({
                "state": state,
                "description": post.description,
                "context": post.context,
            });
            if let Some(url) = &post.target_url {
                body["target_url"] = url.as_str().into();
            }
            let url = format!("{api}/repos/{owner}/{name}/statuses/{sha}");
            (url, body)
        }
        Forge::Gitlab => {
            let mut body = serde_json::json!({
                "state": state,
                "ref": short_ref(&post.git_ref),
                "name": post.context,
                "description": cut_to(&post.description, 255),
            });
            if let Some(url) = post.target_url.as_ref().filter(|u| u.len() <= 255) {
                body["target_url"] = url.as_str().into();
            }
            let id = seg(target.repo);
            (format!("{api}/projects/{id}/statuses/{sha}"), body)
        }
        Forge::BitbucketCloud => {
            let [workspace, slug] = p.as_slice() else {
                return Err(shape());
            };
            let link = format!("https://bitbucket.org/{workspace}/{slug}/commits/{sha}");
            let mut body = serde_json::json!({
                "key": post.context,
                "state": state,
                "name": post.context,
                "url": post.target_url.clone().unwrap_or(link),
                "description": post.description,
            });
            if let Some(branch) = branch_of(&post.git_ref) {
                body["refname"] = branch.into();
            }
            let url = format!("{api}/repositories/{workspace}/{slug}/commit/{sha}/statuses/build");
            (url, body)
        }
        Forge::BitbucketServer => {
            let [key, slug] = p.as_slice() else {
                return Err(shape());
            };
            let repo_url = format!("{api}/projects/{key}/repos/{slug}/commits/{sha}");
            let body = serde_json::json!({
                "key": post.context,
                "state": state,
                "name": post.context,
                "url": post.target_url.clone().unwrap_or(repo_url),
                "description": post.description,
                "ref": post.git_ref,
            });
            let url =
                format!("{api}/rest/api/latest/projects/{key}/repos/{slug}/commits/{sha}/builds");
            (url, body)
        }
        Forge::AzureDevops => {
            let [org, project, repo] = p.as_slice() else {
                return Err(shape());
            };
            let (genre, name) = match post.context.rsplit_once('/') {
                Some((genre, name)) => (Some(genre), name),
                None => (None, post.context.as_str()),
            };
            let mut context = serde_json::json!({ "name": name });
            if let Some(genre) = genre {
                context["genre"] = genre.into();
            }
            let mut body = serde_json::json!({
                "state": state,
                "description": post.description,
                "context": context,
            });
            if let Some(url) = &post.target_url {
                body["targetUrl"] = url.as_str().into();
            }
            let url = format!(
                "{api}/{org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses?api-version=7.1"
            );
            (url, body)
        }
    };
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, accept(target.forge))
        .header(
            header::USER_AGENT,
            concat!("hookd/", env!("CARGO_PKG_VERSION")),
        );
    let (name, value) = auth_header(target.forge, token)?;
    builder = builder.header(name, value);
    if target.forge == Forge::Github {
        builder = builder.header("X-GitHub-Api-Version", "2022-11-28");
    }
    builder
        .body(Bytes::from(body.to_string()))
        .map_err(|e| format!("cannot build the request to {}: {e}", redact(&url)))
}

/// The header each forge's API takes `token` in: GitHub and Bitbucket a bearer
/// token, Gitea/Forgejo `token T`, GitLab `PRIVATE-TOKEN`, Azure DevOps Basic auth with
/// the token as password. Marked sensitive, so it never prints.
pub(crate) fn auth_header(forge: Forge, token: &str) -> Result<(HeaderName, HeaderValue), String> {
    let authorization = |text: String| Ok((header::AUTHORIZATION, secret_value(&text)?));
    match forge {
        Forge::Github | Forge::BitbucketCloud | Forge::BitbucketServer => {
            authorization(format!("Bearer {token}"))
        }
        Forge::Gitea | Forge::Forgejo => authorization(format!("token {token}")),
        Forge::Gitlab => Ok((
            HeaderName::from_static("private-token"),
            secret_value(token)?,
        )),
        Forge::AzureDevops => {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(":{token}"));
            authorization(format!("Basic {basic}"))
        }
    }
}

/// The `Accept` each forge documents.
pub(crate) fn accept(forge: Forge) -> &'static str {
    match forge {
        Forge::Github => "application/vnd.github+json",
        Forge::Gitlab
        | Forge::Gitea
        | Forge::Forgejo
        | Forge::BitbucketCloud
        | Forge::BitbucketServer
        | Forge::AzureDevops => "application/json",
    }
}

/// A header value that never prints (hyper's `Debug` of a sensitive value is
/// `Sensitive`); a token with a newline in it is refused without echoing it.
fn secret_value(text: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| "the token file holds characters a header cannot carry".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// A URL for messages: its path, but not its query.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn cut_to(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// What a reply means for the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The forge has it (or already had it).
    Done,
    /// Try again; `after` is what the forge asked for (Retry-After, rate-limit reset).
    Retry {
        /// The wait the forge asked for, if it said.
        after: Option<Duration>,
        /// What to record.
        error: String,
    },
    /// Refused for good; the reply is recorded.
    Failed(String),
}

/// Judges a forge's reply: GitLab's 400 "Cannot transition status" means the state
/// is already set (done); everything else as [`judge_reply`].
pub(crate) fn judge(
    forge: Forge,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now_ms: i64,
) -> Verdict {
    let code = status.as_u16();
    if forge == Forge::Gitlab && code == 400 && body.contains("Cannot transition status") {
        return Verdict::Done;
    }
    judge_reply(status, headers, body, now_ms, "api_url")
}

/// Judges any reply by the outbox's rules: 2xx done; 408/409/425/429 and
/// rate-limited 403s retried when the far side says; other 4xx (and redirects,
/// which name `setting` as the key to check) failed for good; the rest retried.
pub(crate) fn judge_reply(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now_ms: i64,
    setting: &str,
) -> Verdict {
    let code = status.as_u16();
    let reply = format!("HTTP {code}: {}", snippet(body))
        .trim_end()
        .to_owned();
    if status.is_success() {
        return Verdict::Done;
    }
    let after = wait_asked(headers, now_ms);
    let rate_limited = code == 403 && (after.is_some() || out_of_quota(headers));
    if matches!(code, 408 | 409 | 425 | 429) || rate_limited {
        return Verdict::Retry {
            after,
            error: reply,
        };
    }
    if status.is_client_error() {
        return Verdict::Failed(reply);
    }
    if status.is_redirection() {
        let to = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        return Verdict::Failed(format!(
            "HTTP {code}: redirected to {}; check {setting}",
            snippet(redact(to))
        ));
    }
    Verdict::Retry {
        after,
        error: reply,
    }
}

/// A rate-limit header saying no requests are left (GitHub, Gitea: `x-ratelimit-*`;
/// GitLab: `ratelimit-*`).
fn out_of_quota(headers: &HeaderMap) -> bool {
    ["x-ratelimit-remaining", "ratelimit-remaining"]
        .iter()
        .any(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(str::trim) == Some("0"))
}

/// How long the forge asked to wait: `Retry-After` (seconds or an HTTP date), else a
/// rate-limit reset time (Unix seconds) when no requests are left.
fn wait_asked(headers: &HeaderMap, now_ms: i64) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = text("retry-after") {
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = httpdate::parse_http_date(value) {
            let now = std::time::UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64);
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    if out_of_quota(headers) {
        let reset = text("x-ratelimit-reset").or_else(|| text("ratelimit-reset"));
        if let Some(reset) = reset.and_then(|r| r.parse::<i64>().ok()) {
            let wait_ms = (reset * 1000 - now_ms).max(0);
            return Some(Duration::from_millis(wait_ms as u64));
        }
    }
    None
}

/// The start of a reply body, on one line, for the record.
pub(crate) fn snippet(body: &str) -> String {
    let flat: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    flat.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(state: PostState) -> StatusPost {
        StatusPost {
            commit: "a".repeat(40),
            state,
            description: "failed (exit 2) in 1m12s".into(),
            target_url: Some("https://ci.example.com/builds/3".into()),
            context: "hookd/web".into(),
            git_ref: "refs/heads/main".into(),
        }
    }

    fn json(req: &Request<Bytes>) -> serde_json::Value {
        serde_json::from_slice(req.body()).unwrap()
    }

    #[test]
    fn each_forge_gets_its_documented_request() {
        let sha = "a".repeat(40);
        let cases = [
            (
                Forge::Github,
                "https://api.github.com",
                "o/r",
                format!("https://api.github.com/repos/o/r/statuses/{sha}"),
                "Bearer tok",
            ),
            (
                Forge::Gitea,
                "https://git.example.com/api/v1",
                "o/r",
                format!("https://git.example.com/api/v1/repos/o/r/statuses/{sha}"),
                "token tok",
            ),
            (
                Forge::BitbucketCloud,
                "https://api.bitbucket.org/2.0",
                "ws/r",
                format!("https://api.bitbucket.org/2.0/repositories/ws/r/commit/{sha}/statuses/build"),
                "Bearer tok",
            ),
            (
                Forge::BitbucketServer,
                "https://bb.example.com",
                "PROJ/r",
                format!("https://bb.example.com/rest/api/latest/projects/PROJ/repos/r/commits/{sha}/builds"),
                "Bearer tok",
            ),
            (
                Forge::AzureDevops,
                "https://dev.azure.com",
                "org/My Project/r",
                format!("https://dev.azure.com/org/My%20Project/_apis/git/repositories/r/commits/{sha}/statuses?api-version=7.1"),
                "Basic OnRvaw==",
            ),
        ];
        for (forge, api_url, repo, url, auth) in cases {
            let target = Target {
                forge,
                api_url,
                repo,
            };
            let req = request(&target, &post(PostState::Failed), "tok").unwrap();
            assert_eq!(req.method(), Method::POST);
            assert_eq!(req.uri().to_string(), url);
            assert_eq!(req.headers()[header::AUTHORIZATION], auth);
            assert!(
                !format!("{:?}", req.headers()).contains("tok"),
                "the token is a sensitive header"
            );
        }
        let target = Target {
            forge: Forge::Gitlab,
            api_url: "https://gitlab.com/api/v4",
            repo: "g/sub/p",
        };
        let req = request(&target, &post(PostState::Cancelled), "tok").unwrap();
        assert_eq!(
            req.uri().to_string(),
            format!("https://gitlab.com/api/v4/projects/g%2Fsub%2Fp/statuses/{sha}")
        );
        assert_eq!(req.headers()["private-token"], "tok");
        let body = json(&req);
        assert_eq!(
            (&body["state"], &body["ref"], &body["name"]),
            (&"canceled".into(), &"main".into(), &"hookd/web".into())
        );
    }

    #[test]
    fn a_repository_of_the_wrong_shape_is_refused() {
        let target = Target {
            forge: Forge::Github,
            api_url: "https://api.github.com",
            repo: "just-one",
        };
        assert!(request(&target, &post(PostState::Running), "t").is_err());
    }

    #[test]
    fn replies_are_judged_as_documented() {
        let h = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, v.parse().unwrap());
            }
            map
        };
        let judge = |forge, code: u16, headers: &HeaderMap, body: &str| {
            judge(
                forge,
                StatusCode::from_u16(code).unwrap(),
                headers,
                body,
                1_000_000,
            )
        };
        let none = HeaderMap::new();
        assert_eq!(judge(Forge::Github, 201, &none, ""), Verdict::Done);
        assert_eq!(
            judge(
                Forge::Gitlab,
                400,
                &none,
                r#"{"message":"Cannot transition status via :run from :running"}"#
            ),
            Verdict::Done
        );
        assert!(
            matches!(judge(Forge::Gitea, 400, &none, "bad"), Verdict::Failed(e) if e == "HTTP 400: bad")
        );
        assert!(matches!(
            judge(Forge::Github, 401, &none, "Bad credentials"),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            judge(Forge::Github, 404, &none, ""),
            Verdict::Failed(_)
        ));
        for code in [408, 409, 425, 429, 500, 502, 503] {
            assert!(
                matches!(
                    judge(Forge::Github, code, &none, ""),
                    Verdict::Retry { after: None, .. }
                ),
                "{code}"
            );
        }
        assert_eq!(
            judge(Forge::Github, 503, &h(&[("retry-after", "7")]), ""),
            Verdict::Retry {
                after: Some(Duration::from_secs(7)),
                error: "HTTP 503:".into()
            }
        );
        let limited = h(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1060"),
        ]);
        assert!(matches!(
            judge(Forge::Github, 403, &limited, "rate limit"),
            Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(60)
        ));
        assert!(matches!(
            judge(Forge::Github, 403, &none, "forbidden"),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            judge(Forge::Github, 301, &none, ""),
            Verdict::Failed(_)
        ));
    }
}
