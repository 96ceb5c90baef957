//! Commit status settings: `[feeds.NAME.status]` (which forge, where its API is, which
//! repository, the token file, the context) and `[outbox]` (how the sender retries).
//!
//! A status table works for any feed of that name: one the file declares (`repo` in
//! the same `[feeds.NAME]`) or one made with `hookd admin feed add` (a `[feeds.NAME]`
//! table holding only credentials and `status`). The token itself is never part of
//! the config: `outbound` reads the file at start and on SIGHUP.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The forges hookd posts commit statuses to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Forge {
    /// GitHub and GitHub Enterprise Server.
    Github,
    /// GitLab (hosted or self-managed).
    Gitlab,
    /// Gitea.
    Gitea,
    /// Forgejo (Gitea's API).
    Forgejo,
    /// Bitbucket Cloud.
    BitbucketCloud,
    /// Bitbucket Server / Data Center.
    BitbucketServer,
    /// Azure DevOps Services (or Server, with its own `api_url`).
    AzureDevops,
}

impl Forge {
    /// The word used in the config file.
    pub(crate) fn word(self) -> &'static str {
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

    /// The hosted service's API, where there is one; self-hosted forges have none.
    fn default_api_url(self) -> Option<&'static str> {
        match self {
            Self::Github => Some("https://api.github.com"),
            Self::Gitlab => Some("https://gitlab.com/api/v4"),
            Self::BitbucketCloud => Some("https://api.bitbucket.org/2.0"),
            Self::AzureDevops => Some("https://dev.azure.com"),
            Self::Gitea | Self::Forgejo | Self::BitbucketServer => None,
        }
    }

    /// What `repo` looks like for this forge, for messages.
    fn repo_form(self) -> &'static str {
        match self {
            Self::Github | Self::Gitea | Self::Forgejo => "OWNER/NAME",
            Self::Gitlab => "GROUP/PROJECT (any depth) or the numeric project id",
            Self::BitbucketCloud => "WORKSPACE/REPO_SLUG",
            Self::BitbucketServer => "PROJECT_KEY/REPO_SLUG",
            Self::AzureDevops => "ORGANIZATION/PROJECT/REPOSITORY",
        }
    }

    /// How many path segments `repo` has (`None`: GitLab, any depth of two or more,
    /// or one numeric id).
    fn repo_segments(self) -> Option<usize> {
        match self {
            Self::Github | Self::Gitea | Self::Forgejo => Some(2),
            Self::BitbucketCloud | Self::BitbucketServer => Some(2),
            Self::AzureDevops => Some(3),
            Self::Gitlab => None,
        }
    }
}

/// `[feeds.NAME.status]` as written.
#[derive(Debug, Deserialize, Serialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatus {
    /// Which forge.
    pub(crate) forge: Forge,
    /// Its API base; defaults for the hosted forges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) api_url: Option<String>,
    /// The repository as the forge's API names it; derived from the feed's URL when
    /// left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) repo: Option<String>,
    /// File holding the API token (read at start and on SIGHUP, never stored).
    pub(crate) token_file: PathBuf,
    /// Status context; default `hookd/NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) context: Option<String>,
}

/// One feed's status settings, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct StatusConfig {
    /// Which forge.
    pub(crate) forge: Forge,
    /// API base without a trailing slash.
    pub(crate) api_url: String,
    /// The repository, when written (else derived from the feed's URL when sent).
    pub(crate) repo: Option<String>,
    /// The token file.
    pub(crate) token_file: PathBuf,
    /// The status context.
    pub(crate) context: String,
}

impl StatusConfig {
    /// The table as `check-config` prints it, defaults written out.
    pub(crate) fn to_raw(&self) -> RawStatus {
        RawStatus {
            forge: self.forge,
            api_url: Some(self.api_url.clone()),
            repo: self.repo.clone(),
            token_file: self.token_file.clone(),
            context: Some(self.context.clone()),
        }
    }

    /// The repository to post to: `repo` as written, else derived from the feed's
    /// repository URL; an error says why it cannot be and what to write.
    pub(crate) fn repo_for(&self, feed_url: &str) -> Result<String, String> {
        match &self.repo {
            Some(repo) => Ok(repo.clone()),
            None => derive_repo(self.forge, feed_url),
        }
    }
}

/// Validates one `[feeds.NAME.status]`; `feed_url` is the repository of a feed the
/// same file declares, whose `repo` is then derived (or refused) now.
pub(crate) fn status_config(
    name: &str,
    raw: &RawStatus,
    feed_url: Option<&str>,
) -> Result<StatusConfig, ConfigError> {
    let invalid = |k: &str, m: String| ConfigError::invalid(&["feeds", name, "status", k], m);
    let api_url = match (&raw.api_url, raw.forge.default_api_url()) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(url)) => url.to_owned(),
        (None, None) => {
            return Err(invalid(
                "api_url",
                format!(
                    "{} is self-hosted: api_url is required (e.g. {})",
                    raw.forge.word(),
                    example_api(raw.forge)
                ),
            ))
        }
    };
    let scheme_ok = api_url.starts_with("https://") || api_url.starts_with("http://");
    if !scheme_ok || api_url.contains(char::is_whitespace) || api_url.contains(['?', '#']) {
        return Err(invalid(
            "api_url",
            format!("{api_url:?} must be an http:// or https:// URL without query or fragment"),
        ));
    }
    if let Some(repo) = &raw.repo {
        check_repo(raw.forge, repo).map_err(|m| invalid("repo", m))?;
    } else if let Some(url) = feed_url {
        derive_repo(raw.forge, url).map_err(|m| invalid("repo", m))?;
    }
    let context = raw
        .context
        .clone()
        .unwrap_or_else(|| format!("hookd/{name}"));
    if context.trim().is_empty() || context.len() > 100 || context.contains(char::is_control) {
        return Err(invalid(
            "context",
            "must be 1 to 100 characters, none of them control characters".into(),
        ));
    }
    Ok(StatusConfig {
        forge: raw.forge,
        api_url,
        repo: raw.repo.clone(),
        token_file: raw.token_file.clone(),
        context,
    })
}

fn example_api(forge: Forge) -> &'static str {
    match forge {
        Forge::Gitea | Forge::Forgejo => "https://git.example.com/api/v1",
        Forge::BitbucketServer => "https://bitbucket.example.com",
        Forge::Github => "https://github.example.com/api/v3",
        Forge::Gitlab => "https://gitlab.example.com/api/v4",
        Forge::BitbucketCloud => "https://api.bitbucket.org/2.0",
        Forge::AzureDevops => "https://dev.azure.com",
    }
}

/// `repo` must have the forge's shape, each part a plain path segment.
fn check_repo(forge: Forge, repo: &str) -> Result<(), String> {
    let parts: Vec<&str> = repo.split('/').collect();
    let plain = |p: &&str| {
        !p.is_empty()
            && *p != "."
            && *p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~ ".contains(c))
    };
    let count_ok = match forge.repo_segments() {
        Some(n) => parts.len() == n,
        None => parts.len() >= 2 || repo.chars().all(|c| c.is_ascii_digit()),
    };
    if count_ok && parts.iter().all(plain) {
        return Ok(());
    }
    Err(format!(
        "{repo:?} is not a {} repository: write {}",
        forge.word(),
        forge.repo_form()
    ))
}

/// The repository path of a clone URL: `https://host/a/b.git`, `ssh://git@host:7999/a/b`,
/// `git@host:a/b.git` → `a/b`.
fn url_path(url: &str) -> Option<String> {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => url.split_once(':')?.1,
    };
    let path = rest.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (!path.is_empty()).then(|| path.to_owned())
}

/// The repository a forge's API names, from the feed's clone URL, where the URL says
/// it: GitHub, Gitea/Forgejo, Bitbucket Cloud `OWNER/NAME`; GitLab the whole path;
/// Bitbucket Server `/scm/KEY/slug` (or `KEY/slug` over ssh); Azure DevOps
/// `ORG/PROJECT/_git/REPO` (or ssh `v3/ORG/PROJECT/REPO`).
pub(crate) fn derive_repo(forge: Forge, url: &str) -> Result<String, String> {
    let cannot = || {
        format!(
            "cannot tell the {} repository from the feed's URL {}: set repo = \"{}\"",
            forge.word(),
            crate::feed::redact_url(url),
            forge.repo_form()
        )
    };
    if url.starts_with('/') || url.starts_with("file:") {
        return Err(cannot());
    }
    let path = url_path(url).ok_or_else(cannot)?;
    let parts: Vec<&str> = path.split('/').collect();
    let derived = match (forge, parts.as_slice()) {
        (Forge::Gitlab, _) => path.clone(),
        (Forge::BitbucketServer, ["scm", key, slug]) | (Forge::BitbucketServer, [key, slug]) => {
            format!("{key}/{slug}")
        }
        (Forge::AzureDevops, [org, project, "_git", repo])
        | (Forge::AzureDevops, ["v3", org, project, repo]) => format!("{org}/{project}/{repo}"),
        (Forge::AzureDevops | Forge::BitbucketServer, _) => return Err(cannot()),
        (Forge::Github | Forge::Gitea | Forge::Forgejo | Forge::BitbucketCloud, _) => {
            match parts.as_slice() {
                [.., owner, name] => format!("{owner}/{name}"),
                _ => return Err(cannot()),
            }
        }
    };
    check_repo(forge, &derived).map_err(|_| cannot())?;
    Ok(derived)
}

/// `[outbox]` as written.
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawOutbox {
    /// Longest wait between two attempts (humantime: "1d", "6h"); default a day.
    pub(crate) max_backoff: Option<String>,
    /// Posts in flight at once (and connections kept per host).
    pub(crate) concurrency: Option<usize>,
    /// Seconds to set up a connection (TCP, proxy tunnel).
    pub(crate) connect_timeout_secs: Option<u64>,
    /// Seconds for one whole attempt: connect, send, read the reply.
    pub(crate) request_timeout_secs: Option<u64>,
}

/// `[outbox]` validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct OutboxConfig {
    /// Longest wait between two attempts.
    pub(crate) max_backoff: Duration,
    /// Posts in flight at once.
    pub(crate) concurrency: usize,
    /// Connection setup deadline.
    pub(crate) connect_timeout: Duration,
    /// Whole-attempt deadline.
    pub(crate) request_timeout: Duration,
}

/// Default cap on the wait between attempts: a forge down for a day is retried at
/// least daily.
pub(crate) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(86_400);
/// Default posts in flight.
pub(crate) const DEFAULT_CONCURRENCY: usize = 4;

impl OutboxConfig {
    /// `[outbox]` as `check-config` prints it.
    pub(crate) fn to_raw(self) -> RawOutbox {
        RawOutbox {
            max_backoff: Some(humantime::format_duration(self.max_backoff).to_string()),
            concurrency: Some(self.concurrency),
            connect_timeout_secs: Some(self.connect_timeout.as_secs()),
            request_timeout_secs: Some(self.request_timeout.as_secs()),
        }
    }
}

/// Validates `[outbox]`.
pub(crate) fn outbox_config(raw: &RawOutbox) -> Result<OutboxConfig, ConfigError> {
    let max_backoff = match &raw.max_backoff {
        None => DEFAULT_MAX_BACKOFF,
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1))
            .ok_or_else(|| {
                ConfigError::invalid(
                    &["outbox", "max_backoff"],
                    format!("{text:?} is not a duration of at least 1s (e.g. \"1d\", \"6h\")"),
                )
            })?,
    };
    let positive = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(ConfigError::invalid(
            &["outbox", key],
            "must be greater than 0",
        )),
        v => Ok(v.unwrap_or(default)),
    };
    Ok(OutboxConfig {
        max_backoff,
        concurrency: positive(
            "concurrency",
            raw.concurrency.map(|c| c as u64),
            DEFAULT_CONCURRENCY as u64,
        )? as usize,
        connect_timeout: Duration::from_secs(positive(
            "connect_timeout_secs",
            raw.connect_timeout_secs,
            10,
        )?),
        request_timeout: Duration::from_secs(positive(
            "request_timeout_secs",
            raw.request_timeout_secs,
            30,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_are_derived_where_the_url_says_them() {
        let cases = [
            (Forge::Github, "https://github.com/o/r.git", Ok("o/r")),
            (Forge::Github, "git@github.com:o/r.git", Ok("o/r")),
            (
                Forge::Gitea,
                "ssh://git@git.example.com:2222/o/r",
                Ok("o/r"),
            ),
            (
                Forge::Gitlab,
                "https://gitlab.com/g/sub/p.git",
                Ok("g/sub/p"),
            ),
            (
                Forge::BitbucketCloud,
                "git@bitbucket.org:ws/slug.git",
                Ok("ws/slug"),
            ),
            (
                Forge::BitbucketServer,
                "https://bb.example.com/scm/PROJ/repo.git",
                Ok("PROJ/repo"),
            ),
            (
                Forge::BitbucketServer,
                "ssh://git@bb.example.com:7999/proj/repo.git",
                Ok("proj/repo"),
            ),
            (
                Forge::AzureDevops,
                "https://org@dev.azure.com/org/Proj/_git/repo",
                Ok("org/Proj/repo"),
            ),
            (
                Forge::AzureDevops,
                "git@ssh.dev.azure.com:v3/org/Proj/repo",
                Ok("org/Proj/repo"),
            ),
            (Forge::Github, "/srv/git/r.git", Err(())),
            (Forge::AzureDevops, "https://example.com/a/b", Err(())),
            (Forge::Github, "https://github.com/r.git", Err(())),
        ];
        for (forge, url, want) in cases {
            let got = derive_repo(forge, url);
            assert_eq!(got.as_deref().map_err(|_| ()), want, "{url}");
        }
        let err = derive_repo(Forge::Github, "/srv/r.git").unwrap_err();
        assert!(err.contains("set repo = \"OWNER/NAME\""), "{err}");
    }

    #[test]
    fn api_url_defaults_only_for_hosted_forges() {
        let raw = |forge| RawStatus {
            forge,
            api_url: None,
            repo: Some("o/r".into()),
            token_file: "/t".into(),
            context: None,
        };
        let gh = status_config("web", &raw(Forge::Github), None).unwrap();
        assert_eq!(gh.api_url, "https://api.github.com");
        assert_eq!(gh.context, "hookd/web");
        let err = status_config("web", &raw(Forge::Gitea), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_url is required"), "{err}");
        let bad_repo = RawStatus {
            repo: Some("o/r/x".into()),
            ..raw(Forge::Github)
        };
        assert!(status_config("web", &bad_repo, None).is_err());
    }

    #[test]
    fn status_tables_are_checked_with_file_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t");
        let check = |text: &str| {
            let path = std::path::Path::new("t.toml");
            super::super::Config::from_text_checked(path, text, &Default::default())
                .map(|c| c.status)
                .map_err(|e| e.to_string())
        };
        let table = |extra: &str| {
            format!(
                "[feeds.web]\nrepo = \"/srv/web.git\"\ncommand = \"make\"\n\n\
                 [feeds.web.status]\nforge = \"github\"\ntoken_file = \"{}\"\n{extra}",
                token.display()
            )
        };
        let err = check(&table("repo = \"o/r\"\n")).unwrap_err();
        assert!(
            err.contains("t.toml, line 7, feeds.web.status.token_file: cannot use"),
            "{err}"
        );
        std::fs::write(&token, "secret-token\n").unwrap();
        let err = check(&table("")).unwrap_err();
        assert!(
            err.contains("line 5, feeds.web.status.repo: cannot tell the github repository"),
            "{err}"
        );
        let err = check(&table("repo = \"o/r\"\ncolour = \"red\"\n")).unwrap_err();
        assert!(err.contains("colour") && err.contains("line 9"), "{err}");
        let status = check(&table("repo = \"o/r\"\n")).unwrap();
        assert_eq!(status["web"].context, "hookd/web");
        assert!(!format!("{status:?}").contains("secret-token"));
    }

    #[test]
    fn outbox_defaults_and_refusals() {
        let c = outbox_config(&RawOutbox::default()).unwrap();
        assert_eq!(c.max_backoff, DEFAULT_MAX_BACKOFF);
        let raw = RawOutbox {
            max_backoff: Some("6h".into()),
            ..RawOutbox::default()
        };
        assert_eq!(
            outbox_config(&raw).unwrap().max_backoff,
            Duration::from_secs(6 * 3600)
        );
        let bad = RawOutbox {
            max_backoff: Some("soon".into()),
            ..RawOutbox::default()
        };
        assert!(outbox_config(&bad).is_err());
    }
}
