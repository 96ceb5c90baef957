//! Feeds: the build sources hookd knows, and the rules that keep their settings sane.
//!
//! Everything an operator types about a feed is checked here once, so the store,
//! the intake and the runner can trust a [`Feed`] without re-validating it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Default least time between two build starts of a feed (SPEC: 300 s).
pub(crate) const DEFAULT_COOLDOWN_SECS: u64 = 300;
/// Default build timeout: generous, but a hung build must end some day.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 3600;
/// Branch watched when the operator names none.
pub(crate) const DEFAULT_BRANCH: &str = "main";

/// Why a feed setting was refused; the message is shown to the operator as is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    /// The name would be unsafe as a path component or URL part.
    #[error(
        "invalid feed name {0:?}: use 1-63 characters [a-z0-9._-], starting with a letter or digit"
    )]
    BadName(String),
    /// The repository URL is not one hookd can fetch.
    #[error("invalid repository URL {0:?}: {1}")]
    BadRepo(String, &'static str),
    /// A branch pattern is not a usable glob.
    #[error("invalid branch pattern {0:?}: {1}")]
    BadPattern(String, String),
    /// No or an empty build command.
    #[error("a build command is required (--command CMD)")]
    NoCommand,
    /// Timeouts of zero would kill every build at once.
    #[error("timeout must be at least 1 second")]
    ZeroTimeout,
}

/// A validated feed name: `[a-z0-9][a-z0-9._-]{0,62}`, so it is safe in paths and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FeedName(String);

impl FeedName {
    /// Checks a name typed by an operator or read back from the store.
    pub fn parse(name: &str) -> Result<Self, FeedError> {
        let bytes = name.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if first_ok && rest_ok && bytes.len() <= 63 {
            Ok(Self(name.to_owned()))
        } else {
            Err(FeedError::BadName(name.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FeedName {
    type Error = FeedError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<FeedName> for String {
    fn from(value: FeedName) -> Self {
        value.0
    }
}

impl fmt::Display for FeedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a build command is started: argv words, or one string for `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandSpec {
    /// Run directly, no shell involved; a program without `/` is looked up in the
    /// build's own `PATH` (or `/bin:/usr/bin` when it has none).
    Argv(Vec<String>),
    /// Run through `/bin/sh -c`.
    Shell(String),
}

impl CommandSpec {
    /// One word typed = a shell string; several = argv (mirrors `--command` repeated).
    pub(crate) fn from_words(words: Vec<String>) -> Result<Self, FeedError> {
        match words.len() {
            0 => Err(FeedError::NoCommand),
            1 if words[0].trim().is_empty() => Err(FeedError::NoCommand),
            1 => Ok(Self::Shell(words.into_iter().collect())),
            _ if words[0].is_empty() => Err(FeedError::NoCommand),
            _ => Ok(Self::Argv(words)),
        }
    }
}

impl fmt::Display for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shell(s) => write!(f, "sh -c {s:?}"),
            Self::Argv(words) => write!(f, "{words:?}"),
        }
    }
}

/// What to do with a trigger that arrives while the feed cools down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CooldownPolicy {
    /// Record it and queue a build when the cooldown ends.
    #[default]
    Defer,
    /// Answer 429 with Retry-After.
    Reject,
}

impl fmt::Display for CooldownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Defer => "defer",
            Self::Reject => "reject",
        })
    }
}

/// One build source, as stored and as every later stage sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    /// Unique, path-safe name.
    pub name: FeedName,
    /// Where the code is fetched from.
    pub repo: String,
    /// Branch globs to watch (`refs/tags/*` style patterns watch tags).
    pub branches: Vec<String>,
    /// The build command.
    pub command: CommandSpec,
    /// Least seconds between two build starts; 0 disables the cooldown.
    pub cooldown_secs: u64,
    /// Defer or reject triggers during the cooldown.
    pub on_cooldown: CooldownPolicy,
    /// Build timeout.
    pub timeout_secs: u64,
    /// Whether a webhook secret is set (the secret itself lives in its own 0600 file).
    pub has_secret: bool,
    /// Paused feeds record triggers but start no builds.
    pub paused: bool,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Whether `/badge/NAME.svg` and CCTray show it (off by default: a badge tells
    /// the world the feed exists).
    #[serde(default)]
    pub badge: bool,
    /// Whether the config file owns it (`[feeds.NAME]` with `repo`): the CLI then
    /// refuses to edit or remove it.
    #[serde(default)]
    pub declared: bool,
    /// When a declared feed left the config file: its hook URLs answer 404 and it
    /// starts no builds, but its history stays; declaring it again clears this.
    #[serde(default)]
    pub retired_ms: Option<i64>,
    /// Whether a new webhook secret waits next to the current one (its own 0600
    /// file): until the forge is confirmed to sign with it, deliveries signed with
    /// either are accepted, so a rotation never refuses a push.
    #[serde(default)]
    pub secret_pending: bool,
}

impl Feed {
    /// Whether it was declared and has since left the config file.
    pub(crate) fn retired(&self) -> bool {
        self.retired_ms.is_some()
    }
}

/// The one check of a feed's settings, whoever wrote them: `feed add`/`feed edit`, a
/// backup being imported, or a `[feeds.NAME]` table in the config file. (The name was
/// checked when it became a [`FeedName`].)
pub(crate) fn validate(feed: &Feed) -> Result<(), FeedError> {
    validate_repo(&feed.repo)?;
    validate_patterns(&feed.branches)?;
    let no_command = match &feed.command {
        CommandSpec::Shell(s) => s.trim().is_empty(),
        CommandSpec::Argv(words) => words.first().is_none_or(|w| w.is_empty()),
    };
    if no_command {
        return Err(FeedError::NoCommand);
    }
    if feed.timeout_secs == 0 {
        return Err(FeedError::ZeroTimeout);
    }
    Ok(())
}

/// Checks a repository URL: a scheme hookd can fetch, an absolute path, or scp-like `host:path`.
pub(crate) fn validate_repo(url: &str) -> Result<(), FeedError> {
    let bad = |why| Err(FeedError::BadRepo(url.to_owned(), why));
    if url.is_empty() {
        return bad("it is empty");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it contains whitespace or control characters");
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git" | "file") {
            return bad("scheme must be https, http, ssh, git or file");
        }
        if rest.is_empty() || (scheme != "file" && rest.starts_with('/')) {
            return bad("it names no host or path");
        }
        return Ok(());
    }
    if url.starts_with('/') {
        return Ok(());
    }
    match url.split_once(':') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() && !host.contains('/') => Ok(()),
        _ => bad(
            "use a URL (https://, ssh://, git://, file://), user@host:path, or an absolute path",
        ),
    }
}

/// Checks branch globs; an empty list means the default branch.
pub(crate) fn validate_patterns(patterns: &[String]) -> Result<(), FeedError> {
    for p in patterns {
        if p.is_empty() || p.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(FeedError::BadPattern(
                p.clone(),
                "empty or contains whitespace".into(),
            ));
        }
        glob::Pattern::new(p).map_err(|e| FeedError::BadPattern(p.clone(), e.to_string()))?;
    }
    Ok(())
}

/// A repository URL fit for display (feed views, errors, `HOOKD_REPO_URL`): the user-info of `scheme://user:password@host/...` is
/// dropped, since tokens are often put there (`https://TOKEN@host/...`). A bare user
/// name on `ssh://` is kept (it is not a secret and tells which account was used);
/// scp-like `user@host:path` cannot hold a password and is returned as is.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let scheme = &url[..scheme_end];
    let keep_user = scheme.eq_ignore_ascii_case("ssh") && !userinfo.contains(':');
    let kept = if keep_user { &rest[..=at] } else { "" };
    format!("{scheme}://{kept}{}", &rest[at + 1..])
}

/// A valid feed for unit tests: watches `main`, runs `true`, no cooldown.
#[cfg(test)]
pub(crate) fn sample(name: &str) -> Feed {
    Feed {
        name: FeedName::parse(name).expect("test feed name"),
        repo: "/srv/x.git".into(),
        branches: vec![DEFAULT_BRANCH.into()],
        command: CommandSpec::Shell("true".into()),
        cooldown_secs: 0,
        on_cooldown: CooldownPolicy::Defer,
        timeout_secs: 60,
        has_secret: false,
        paused: false,
        created_ms: 0,
        badge: false,
        declared: false,
        retired_ms: None,
        secret_pending: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_safe_in_paths_pass() {
        for ok in ["a", "web", "my-app.prod_2", "0", &"x".repeat(63)] {
            assert!(FeedName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_that_could_escape_a_path_are_refused() {
        for bad in [
            "",
            "../etc",
            "..",
            ".hidden",
            "-x",
            "A",
            "a/b",
            "a b",
            "é",
            &"x".repeat(64),
        ] {
            assert!(FeedName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repo_urls() {
        for ok in [
            "https://github.com/a/b.git",
            "ssh://git@host/x.git",
            "git@github.com:a/b.git",
            "file:///srv/git/x.git",
            "/srv/git/x.git",
            "git://127.0.0.1:9418/x",
        ] {
            assert!(validate_repo(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://x/y",
            "relative/path",
            "https://",
            "a b",
            "https:///x",
        ] {
            assert!(validate_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_refuses_what_no_build_could_use() {
        assert_eq!(validate(&sample("web")), Ok(()));
        let with = |change: fn(&mut Feed)| {
            let mut f = sample("web");
            change(&mut f);
            validate(&f)
        };
        assert!(matches!(
            with(|f| f.repo = "relative".into()),
            Err(FeedError::BadRepo(..))
        ));
        assert!(matches!(
            with(|f| f.branches = vec!["a b".into()]),
            Err(FeedError::BadPattern(..))
        ));
        assert_eq!(
            with(|f| f.command = CommandSpec::Shell(" ".into())),
            Err(FeedError::NoCommand)
        );
        assert_eq!(
            with(|f| f.command = CommandSpec::Argv(vec![])),
            Err(FeedError::NoCommand)
        );
        assert_eq!(with(|f| f.timeout_secs = 0), Err(FeedError::ZeroTimeout));
    }

    #[test]
    fn one_command_word_is_a_shell_string_several_are_argv() {
        assert_eq!(
            CommandSpec::from_words(vec!["make test".into()]),
            Ok(CommandSpec::Shell("make test".into()))
        );
        assert_eq!(
            CommandSpec::from_words(vec!["make".into(), "test".into()]),
            Ok(CommandSpec::Argv(vec!["make".into(), "test".into()]))
        );
        assert_eq!(CommandSpec::from_words(vec![]), Err(FeedError::NoCommand));
        assert_eq!(
            CommandSpec::from_words(vec![" ".into()]),
            Err(FeedError::NoCommand)
        );
    }

    #[test]
    fn redact_url_drops_user_info() {
        assert_eq!(
            redact_url("https://tok@github.com/a/b"),
            "https://github.com/a/b"
        );
        assert_eq!(
            redact_url("https://u:p@h:8443/x?q=a@b"),
            "https://h:8443/x?q=a@b"
        );
        assert_eq!(redact_url("ssh://git@host/x.git"), "ssh://git@host/x.git");
        assert_eq!(redact_url("ssh://git:pw@host/x.git"), "ssh://host/x.git");
        assert_eq!(redact_url("git@host:x.git"), "git@host:x.git");
        assert_eq!(redact_url("/srv/x.git"), "/srv/x.git");
    }
}
