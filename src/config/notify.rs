//! `[[notify]]`: who hears about builds. Each table names the feeds it covers (all by
//! default), the events it wants and how to reach it: a signed `webhook` (URL and
//! secret in files, read at start and on each reload, never stored nor logged) or an
//! `exec` command. Checked here into [`NotifyTarget`]s; what fires is decided by
//! `outbound::notify::plan`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{ConfigError, RawCommand};
use crate::feed::{CommandSpec, FeedName};
use crate::secret::Secret;

/// Default time an `exec` notification may run before its process group is killed.
pub(crate) const DEFAULT_EXEC_TIMEOUT_SECS: u64 = 30;

/// Shortest signing key the Standard Webhooks spec allows (24 to 64 random bytes).
const MIN_KEY_BYTES: usize = 24;

/// Longest URL accepted from a `url_file`.
const MAX_URL_BYTES: usize = 2048;

/// One `[[notify]]` table as written; every key is checked against its `kind` later.
#[derive(Debug, Deserialize, Serialize, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawNotify {
    /// Name in `admin notify test` and `admin outbox` (default `notify-N`, N from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// Feeds covered; absent = every feed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) feeds: Option<Vec<String>>,
    /// Events that notify.
    pub(crate) on: Vec<NotifyEvent>,
    /// `webhook` or `exec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    /// webhook: file holding the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url_file: Option<PathBuf>,
    /// webhook: file holding the `whsec_…` signing secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret_file: Option<PathBuf>,
    /// webhook: `standard` (default) or `slack`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<WebhookFormat>,
    /// exec: the command (a string for `/bin/sh -c`, or argv words).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<RawCommand>,
    /// exec: seconds before the command's process group is killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<u64>,
}

/// What happened to a build, as `on` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NotifyEvent {
    /// A worker took the build.
    Started,
    /// It succeeded.
    Succeeded,
    /// Its command failed.
    Failed,
    /// It failed, and the previous result of its feed and ref was a success.
    Broken,
    /// It succeeded, and the previous result of its feed and ref was a failure.
    Fixed,
    /// Fetch, checkout or spawn failed.
    Error,
    /// It ran past its timeout.
    TimedOut,
    /// An operator cancelled it.
    Cancelled,
}

impl NotifyEvent {
    /// The word in `on`, the payload's `type` and `HOOKD_EVENT`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Broken => "broken",
            Self::Fixed => "fixed",
            Self::Error => "error",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The body a webhook target is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WebhookFormat {
    /// The build as JSON, signed per Standard Webhooks.
    #[default]
    Standard,
    /// An incoming-webhook `{"text": …}` message (Slack, Mattermost, Discord's /slack).
    Slack,
}

/// One validated `[[notify]]` table.
#[derive(Debug, Clone)]
pub(crate) struct NotifyTarget {
    /// Its name (unique in the file).
    pub(crate) name: String,
    /// Feeds covered; `None` = every feed.
    pub(crate) feeds: Option<BTreeSet<FeedName>>,
    /// Events that notify.
    pub(crate) on: BTreeSet<NotifyEvent>,
    /// How it is reached.
    pub(crate) kind: TargetKind,
}

impl NotifyTarget {
    /// Whether it covers builds of `feed`.
    pub(crate) fn covers(&self, feed: &FeedName) -> bool {
        self.feeds.as_ref().is_none_or(|feeds| feeds.contains(feed))
    }
}

/// How a target is reached.
#[derive(Debug, Clone)]
pub(crate) enum TargetKind {
    /// An HTTP POST.
    Webhook(WebhookTarget),
    /// A local command.
    Exec(ExecTarget),
}

/// `kind = "webhook"`.
#[derive(Debug, Clone)]
pub(crate) struct WebhookTarget {
    /// Where the URL is read from.
    pub(crate) url_file: PathBuf,
    /// Where the signing secret is read from (optional with `format = "slack"`).
    pub(crate) secret_file: Option<PathBuf>,
    /// The body's shape.
    pub(crate) format: WebhookFormat,
    /// The files' contents, once [`super::Config::load`] read them.
    pub(crate) keys: Option<WebhookKeys>,
}

/// What a webhook target's files hold.
#[derive(Debug, Clone)]
pub(crate) struct WebhookKeys {
    /// The URL (Slack's incoming-webhook URLs are themselves secrets).
    pub(crate) url: Secret,
    /// The decoded signing key, when there is a secret file.
    pub(crate) key: Option<SigningKey>,
}

/// A Standard Webhooks signing key: the bytes behind `whsec_<base64>`.
#[derive(Clone)]
pub(crate) struct SigningKey(Vec<u8>);

impl SigningKey {
    /// The key bytes, for computing a signature only.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Reads `whsec_<base64>` (the prefix optional, padding optional), as the spec
    /// writes secrets; refuses keys shorter than it allows.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let bytes = engine
            .decode(encoded)
            .map_err(|_| "it does not hold whsec_ followed by base64".to_owned())?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "its key is {} bytes; Standard Webhooks keys are 24 to 64 random bytes \
                 (make one with: echo \"whsec_$(openssl rand -base64 32)\")",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `kind = "exec"`.
#[derive(Debug, Clone)]
pub(crate) struct ExecTarget {
    /// What runs.
    pub(crate) command: CommandSpec,
    /// Until its process group is killed.
    pub(crate) timeout: Duration,
}

/// Checks every `[[notify]]` table; an error names `notify[N]` and the key.
pub(super) fn targets(raw: &[RawNotify]) -> Result<Vec<NotifyTarget>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (index, table) in raw.iter().enumerate() {
        let target = target(index, table)?;
        if !names.insert(target.name.clone()) {
            let message = format!("another [[notify]] table is named {:?}", target.name);
            return Err(invalid(index, "name", message));
        }
        out.push(target);
    }
    Ok(out)
}

/// The error for key `key` of the `index`th table (`""` for the table itself).
fn invalid(index: usize, key: &str, message: impl Into<String>) -> ConfigError {
    let position = format!("[{index}]");
    let path: Vec<&str> = ["notify", position.as_str(), key]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect();
    ConfigError::invalid(&path, message)
}

fn target(index: usize, raw: &RawNotify) -> Result<NotifyTarget, ConfigError> {
    let name = match &raw.name {
        Some(name) => {
            FeedName::parse(name).map_err(|_| {
                invalid(
                    index,
                    "name",
                    "must be 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                )
            })?;
            name.clone()
        }
        None => format!("notify-{}", index + 1),
    };
    let feeds = match &raw.feeds {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(invalid(
                index,
                "feeds",
                "must name at least one feed (leave it out for all feeds)",
            ))
        }
        Some(list) => Some(
            list.iter()
                .map(|f| FeedName::parse(f).map_err(|e| invalid(index, "feeds", e.to_string())))
                .collect::<Result<BTreeSet<_>, _>>()?,
        ),
    };
    if raw.on.is_empty() {
        return Err(invalid(index, "on", "must list at least one of started, succeeded, failed, broken, fixed, error, timed_out, cancelled"));
    }
    let kind = match raw.kind.as_deref() {
        Some("webhook") => TargetKind::Webhook(webhook(index, raw)?),
        Some("exec") => TargetKind::Exec(exec(index, raw)?),
        Some(other) => {
            return Err(invalid(
                index,
                "kind",
                format!("{other:?} is not a kind: expected \"webhook\" or \"exec\""),
            ))
        }
        None => {
            return Err(invalid(
                index,
                "",
                "needs kind = \"webhook\" or kind = \"exec\"",
            ))
        }
    };
    Ok(NotifyTarget {
        name,
        feeds,
        on: raw.on.iter().copied().collect(),
        kind,
    })
}

/// Refuses the keys of the other kind, so a typo'd table does not half-work.
fn refuse_keys(index: usize, kind: &str, keys: &[(&str, bool)]) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(invalid(
            index,
            key,
            format!("is not a key of kind = {kind:?}"),
        )),
        None => Ok(()),
    }
}

fn webhook(index: usize, raw: &RawNotify) -> Result<WebhookTarget, ConfigError> {
    refuse_keys(
        index,
        "webhook",
        &[
            ("command", raw.command.is_some()),
            ("timeout", raw.timeout.is_some()),
        ],
    )?;
    let Some(url_file) = raw.url_file.clone() else {
        return Err(invalid(
            index,
            "",
            "kind = \"webhook\" needs url_file (a file holding the URL)",
        ));
    };
    let format = raw.format.unwrap_or_default();
    if format == WebhookFormat::Standard && raw.secret_file.is_none() {
        return Err(invalid(
            index,
            "",
            "kind = \"webhook\" needs secret_file (a file holding whsec_<base64>) unless format = \"slack\"",
        ));
    }
    Ok(WebhookTarget {
        url_file,
        secret_file: raw.secret_file.clone(),
        format,
        keys: None,
    })
}

fn exec(index: usize, raw: &RawNotify) -> Result<ExecTarget, ConfigError> {
    refuse_keys(
        index,
        "exec",
        &[
            ("url_file", raw.url_file.is_some()),
            ("secret_file", raw.secret_file.is_some()),
            ("format", raw.format.is_some()),
        ],
    )?;
    let command = match &raw.command {
        Some(RawCommand::Shell(s)) if !s.trim().is_empty() => CommandSpec::Shell(s.clone()),
        Some(RawCommand::Argv(words)) if words.first().is_some_and(|w| !w.is_empty()) => {
            CommandSpec::Argv(words.clone())
        }
        Some(_) => return Err(invalid(index, "command", "must not be empty")),
        None => return Err(invalid(index, "", "kind = \"exec\" needs command")),
    };
    let timeout = match raw.timeout {
        Some(0) => return Err(invalid(index, "timeout", "must be at least 1 second")),
        Some(secs) => secs,
        None => DEFAULT_EXEC_TIMEOUT_SECS,
    };
    Ok(ExecTarget {
        command,
        timeout: Duration::from_secs(timeout),
    })
}

/// Reads every webhook target's files into it. The errors name the file and what is
/// wrong with it, never what it holds.
pub(super) fn read_files(targets: &mut [NotifyTarget]) -> Result<(), ConfigError> {
    for (index, target) in targets.iter_mut().enumerate() {
        let TargetKind::Webhook(hook) = &mut target.kind else {
            continue;
        };
        let url = read_secret(index, "url_file", &hook.url_file)?;
        check_url(url.expose()).map_err(|problem| {
            let file = hook.url_file.display();
            invalid(index, "url_file", format!("cannot use {file}: {problem}"))
        })?;
        let key = match &hook.secret_file {
            None => None,
            Some(path) => {
                let text = read_secret(index, "secret_file", path)?;
                let key = SigningKey::parse(text.expose()).map_err(|problem| {
                    let file = path.display();
                    invalid(
                        index,
                        "secret_file",
                        format!("cannot use {file}: {problem}"),
                    )
                })?;
                Some(key)
            }
        };
        hook.keys = Some(WebhookKeys { url, key });
    }
    Ok(())
}

/// A file's trimmed text as a [`Secret`].
fn read_secret(index: usize, key: &str, path: &std::path::Path) -> Result<Secret, ConfigError> {
    let problem = match std::fs::read_to_string(path) {
        Ok(text) => match Secret::new(text.trim().to_owned()) {
            Ok(secret) => return Ok(secret),
            Err(_) => "it is empty".to_owned(),
        },
        Err(e) => e.to_string(),
    };
    let file = path.display();
    Err(invalid(index, key, format!("cannot use {file}: {problem}")))
}

/// A webhook URL must be http(s), one line, of sane length.
fn check_url(url: &str) -> Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
    if !scheme_ok
        || url.len() > MAX_URL_BYTES
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("it must hold one http:// or https:// URL");
    }
    Ok(())
}

impl RawNotify {
    /// The table as `check-config` prints it: defaults written out, files by path.
    pub(crate) fn from_target(target: &NotifyTarget) -> Self {
        let mut raw = Self {
            name: Some(target.name.clone()),
            feeds: target
                .feeds
                .as_ref()
                .map(|feeds| feeds.iter().map(ToString::to_string).collect()),
            on: target.on.iter().copied().collect(),
            ..Self::default()
        };
        match &target.kind {
            TargetKind::Webhook(hook) => {
                raw.kind = Some("webhook".into());
                raw.url_file = Some(hook.url_file.clone());
                raw.secret_file = hook.secret_file.clone();
                raw.format = Some(hook.format);
            }
            TargetKind::Exec(exec) => {
                raw.kind = Some("exec".into());
                raw.command = Some(match &exec.command {
                    CommandSpec::Shell(s) => RawCommand::Shell(s.clone()),
                    CommandSpec::Argv(w) => RawCommand::Argv(w.clone()),
                });
                raw.timeout = Some(exec.timeout.as_secs());
            }
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;
    use crate::cli::ConfigArgs;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(Path::new("t.toml"), text, &ConfigArgs::default())
    }

    fn checked(text: &str) -> Result<Config, ConfigError> {
        Config::from_text_checked(Path::new("t.toml"), text, &ConfigArgs::default())
    }

    /// A key file in `dir` holding `text`, as a TOML string.
    fn file(dir: &Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        format!("{:?}", path.display().to_string())
    }

    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn webhook_and_exec_tables_are_read_with_their_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (url, secret) = (
            file(dir.path(), "url", "https://hooks.example.com/x\n"),
            file(dir.path(), "secret", KEY),
        );
        let text = format!(
            "[[notify]]\non = [\"broken\", \"fixed\"]\nkind = \"webhook\"\nurl_file = {url}\n\
             secret_file = {secret}\n\n[[notify]]\nname = \"mail\"\nfeeds = [\"web\"]\n\
             on = [\"failed\"]\nkind = \"exec\"\ncommand = [\"/usr/sbin/sendmail\", \"-t\"]\n"
        );
        let config = checked(&text).unwrap();
        let [hook, mail] = &config.notify[..] else {
            panic!("{:?}", config.notify)
        };
        assert_eq!(hook.name, "notify-1");
        assert!(hook.feeds.is_none());
        assert_eq!(hook.on, [NotifyEvent::Broken, NotifyEvent::Fixed].into());
        let TargetKind::Webhook(w) = &hook.kind else {
            panic!()
        };
        assert_eq!(w.format, WebhookFormat::Standard);
        let keys = w.keys.as_ref().expect("files read by from_text_checked");
        assert_eq!(keys.url.expose(), "https://hooks.example.com/x");
        assert_eq!(keys.key.as_ref().map(|k| k.expose().len()), Some(24));
        assert!(
            !format!("{config:?}").contains("hooks.example.com"),
            "URL never printed"
        );
        assert_eq!(mail.name, "mail");
        assert!(mail.covers(&FeedName::parse("web").unwrap()));
        assert!(!mail.covers(&FeedName::parse("api").unwrap()));
        let TargetKind::Exec(e) = &mail.kind else {
            panic!()
        };
        assert_eq!(e.timeout, Duration::from_secs(DEFAULT_EXEC_TIMEOUT_SECS));
        // Printed back by check-config, it parses to the same tables.
        let printed = config.to_toml().unwrap();
        let again = checked(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(again.to_toml().unwrap(), printed);
        assert!(printed.contains("[[notify]]") && !printed.contains("hooks.example.com"));
    }

    #[test]
    fn refusals_name_file_line_and_key() {
        let cases = [
            (
                "[[notify]]\non = [\"failed\"]\n",
                "t.toml, line 1, notify[0]: needs kind = \"webhook\" or kind = \"exec\"",
            ),
            (
                "[[notify]]\non = [\"failed\"]\nkind = \"exec\"\ncommand = \"x\"\n\n[[notify]]\n\
                 on = [\"failed\"]\nkind = \"mail\"\n",
                "t.toml, line 8, notify[1].kind: \"mail\" is not a kind",
            ),
            (
                "[[notify]]\non = []\nkind = \"exec\"\ncommand = \"x\"\n",
                "t.toml, line 2, notify[0].on: must list at least one of",
            ),
            (
                "[[notify]]\non = [\"failed\"]\nkind = \"webhook\"\n",
                "t.toml, line 1, notify[0]: kind = \"webhook\" needs url_file",
            ),
            (
                "[[notify]]\non = [\"failed\"]\nkind = \"webhook\"\nurl_file = \"/u\"\n",
                "t.toml, line 1, notify[0]: kind = \"webhook\" needs secret_file",
            ),
            (
                "[[notify]]\non = [\"failed\"]\nkind = \"webhook\"\nurl_file = \"/u\"\n\
                 format = \"slack\"\ntimeout = 5\n",
                "t.toml, line 6, notify[0].timeout: is not a key of kind = \"webhook\"",
            ),
            (
                "[[notify]]\non = [\"failed\"]\nkind = \"exec\"\ncommand = \"x\"\nurl_file = \"/u\"\n",
                "t.toml, line 5, notify[0].url_file: is not a key of kind = \"exec\"",
            ),
            (
                "[[notify]]\non = [\"failed\"]\nkind = \"exec\"\ncommand = \"x\"\ntimeout = 0\n",
                "t.toml, line 5, notify[0].timeout: must be at least 1 second",
            ),
            (
                "[[notify]]\non = [\"failed\"]\nkind = \"exec\"\ncommand = []\n",
                "t.toml, line 4, notify[0].command: must not be empty",
            ),
            (
                "[[notify]]\non = [\"failed\"]\nkind = \"exec\"\ncommand = \"x\"\nfeeds = []\n",
                "t.toml, line 5, notify[0].feeds: must name at least one feed",
            ),
            (
                "[[notify]]\nname = \"a\"\non = [\"failed\"]\nkind = \"exec\"\ncommand = \"x\"\n\
                 [[notify]]\nname = \"a\"\non = [\"failed\"]\nkind = \"exec\"\ncommand = \"x\"\n",
                "t.toml, line 7, notify[1].name: another [[notify]] table is named \"a\"",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid config {expected}")),
                "{text:?}: {err}"
            );
        }
        // Unknown keys and unknown events are toml's own errors, with the line.
        let err = parse("[[notify]]\non = [\"failed\"]\nkind = \"exec\"\ncomand = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("comand") && err.contains("line 4"), "{err}");
        let err = parse("[[notify]]\non = [\"faild\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("faild") && err.contains("line 2") && err.contains("broken"),
            "{err}"
        );
    }

    #[test]
    fn key_files_are_checked_without_showing_what_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        // Each case its own files: the cases are all written before the first is read.
        let table = |url: &str, secret: &str| {
            format!(
                "[[notify]]\non = [\"failed\"]\nkind = \"webhook\"\nurl_file = {}\nsecret_file = {}\n",
                file(dir.path(), &format!("url-{}", url.len()), url),
                file(dir.path(), &format!("secret-{}", secret.len()), secret)
            )
        };
        let cases = [
            (
                table("ftp://sekrit-host/x", KEY),
                "line 4, notify[0].url_file: cannot use",
                "one http:// or https:// URL",
            ),
            (
                table("https://h/x", "whsec_!!sekrit!!"),
                "line 5, notify[0].secret_file: cannot use",
                "base64",
            ),
            (
                table("https://h/x", "whsec_c2VrcmV0"),
                "line 5, notify[0].secret_file: cannot use",
                "24 to 64 random bytes",
            ),
            (
                table("https://h/x", "  \n"),
                "line 5, notify[0].secret_file: cannot use",
                "it is empty",
            ),
        ];
        for (text, place, problem) in cases {
            let err = checked(&text).unwrap_err().to_string();
            assert!(err.contains(place) && err.contains(problem), "{err}");
            assert!(
                !err.contains("sekrit") && !err.contains("c2VjcmV0"),
                "{err}"
            );
        }
        let missing = "[[notify]]\non = [\"failed\"]\nkind = \"webhook\"\nurl_file = \"/nonexistent/u\"\nformat = \"slack\"\n";
        let err = checked(missing).unwrap_err().to_string();
        assert!(
            err.contains("line 4, notify[0].url_file: cannot use /nonexistent/u"),
            "{err}"
        );
        // A Slack target needs no secret; its URL is read all the same.
        let slack = format!(
            "[[notify]]\non = [\"failed\"]\nkind = \"webhook\"\nurl_file = {}\nformat = \"slack\"\n",
            file(dir.path(), "slack-url", "https://hooks.slack.com/services/T/B/x")
        );
        let config = checked(&slack).unwrap();
        let TargetKind::Webhook(w) = &config.notify[0].kind else {
            panic!()
        };
        assert!(w.keys.as_ref().is_some_and(|k| k.key.is_none()));
    }
}
