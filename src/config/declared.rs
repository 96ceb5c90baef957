//! Declared feeds: a `[feeds.NAME]` table with a `repo` key declares a feed, checked by
//! the same rule as `feed add` ([`feed::validate`]) and remembered with its line, so a
//! refusal can say where to change it. A table without `repo` only carries credentials.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, FeedCredentials};
use crate::feed::{self, CommandSpec, CooldownPolicy, Feed, FeedError, FeedName};

/// `[feeds.NAME]` as written: credential keys, and the keys that declare a feed.
#[derive(Debug, Deserialize, Serialize, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawFeed {
    /// SSH private key file for ssh:// and scp-like URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ssh_key: Option<PathBuf>,
    /// File holding an HTTPS token (used as the password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) https_token_file: Option<PathBuf>,
    /// User name sent with the HTTPS token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) https_user: Option<String>,
    /// Repository URL; its presence declares the feed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) repo: Option<String>,
    /// Branch globs to watch (default `["main"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) branches: Option<Vec<String>>,
    /// A string for `/bin/sh -c`, or a list of argv words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<RawCommand>,
    /// Least seconds between two build starts (default 300, 0 = off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cooldown: Option<u64>,
    /// `defer` or `reject` a trigger during the cooldown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) on_cooldown: Option<CooldownPolicy>,
    /// Build timeout in seconds (default 3600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<u64>,
    /// File holding the webhook secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret_file: Option<PathBuf>,
    /// Show the build status badge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) badge: Option<bool>,
    /// Start no builds; when absent, `feed pause`/`resume` decide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paused: Option<bool>,
    /// `[feeds.NAME.status]`: commit statuses on the forge (for a declared feed or
    /// one made with `feed add`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<super::status::RawStatus>,
}

/// A build command as written: one string for the shell, or argv words.
#[derive(Debug, Deserialize, Serialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum RawCommand {
    /// Run by `/bin/sh -c`.
    Shell(String),
    /// Run directly.
    Argv(Vec<String>),
}

/// One feed the config file declares, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DeclaredFeed {
    /// The feed as the file wants it (`created_ms` 0, `has_secret` from `secret_file`,
    /// `paused` from the file or false).
    pub(crate) feed: Feed,
    /// Whether the file says `paused`; when it does not, the stored state stays.
    pub(crate) paused_set: bool,
    /// Where the webhook secret is read from.
    pub(crate) secret_file: Option<PathBuf>,
    /// Line of its `[feeds.NAME]` table, once located in the file.
    pub(crate) line: Option<usize>,
}

impl RawFeed {
    /// The credential keys alone.
    pub(crate) fn credentials(&self) -> FeedCredentials {
        FeedCredentials {
            ssh_key: self.ssh_key.clone(),
            https_token_file: self.https_token_file.clone(),
            https_user: self.https_user.clone(),
        }
    }

    /// The table as `check-config` prints it: credentials plus the effective
    /// declaration, defaults written out.
    pub(crate) fn from_parts(
        credentials: &FeedCredentials,
        declared: Option<&DeclaredFeed>,
        status: Option<&super::status::StatusConfig>,
    ) -> Self {
        let mut raw = Self {
            ssh_key: credentials.ssh_key.clone(),
            https_token_file: credentials.https_token_file.clone(),
            https_user: credentials.https_user.clone(),
            status: status.map(super::status::StatusConfig::to_raw),
            ..Self::default()
        };
        if let Some(d) = declared {
            let f = &d.feed;
            raw.repo = Some(f.repo.clone());
            raw.branches = Some(f.branches.clone());
            raw.command = Some(match &f.command {
                CommandSpec::Shell(s) => RawCommand::Shell(s.clone()),
                CommandSpec::Argv(w) => RawCommand::Argv(w.clone()),
            });
            raw.cooldown = Some(f.cooldown_secs);
            raw.on_cooldown = Some(f.on_cooldown);
            raw.timeout = Some(f.timeout_secs);
            raw.secret_file = d.secret_file.clone();
            raw.badge = Some(f.badge);
            raw.paused = d.paused_set.then_some(f.paused);
        }
        raw
    }

    /// Keys that only a declaration uses, present in this table.
    fn declaring_keys(&self) -> Vec<&'static str> {
        let present = [
            ("branches", self.branches.is_some()),
            ("command", self.command.is_some()),
            ("cooldown", self.cooldown.is_some()),
            ("on_cooldown", self.on_cooldown.is_some()),
            ("timeout", self.timeout.is_some()),
            ("secret_file", self.secret_file.is_some()),
            ("badge", self.badge.is_some()),
            ("paused", self.paused.is_some()),
        ];
        present
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            .collect()
    }
}

/// The settings in which a stored feed differs from its declaration, by config key
/// (`secret` when one has a webhook secret and the other not; whether the text of a
/// kept secret changed is for the caller, who reads the files).
pub(crate) fn changed_keys(old: &Feed, declared: &DeclaredFeed) -> Vec<&'static str> {
    let new = &declared.feed;
    let differs = [
        ("repo", old.repo != new.repo),
        ("branches", old.branches != new.branches),
        ("command", old.command != new.command),
        ("cooldown", old.cooldown_secs != new.cooldown_secs),
        ("on_cooldown", old.on_cooldown != new.on_cooldown),
        ("timeout", old.timeout_secs != new.timeout_secs),
        ("secret", old.has_secret != new.has_secret),
        ("badge", old.badge != new.badge),
        ("paused", declared.paused_set && old.paused != new.paused),
    ];
    differs
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
}

/// The feeds the `[feeds.*]` tables declare, by name; an error names the key.
pub(super) fn declared_feeds(
    tables: &BTreeMap<String, RawFeed>,
) -> Result<BTreeMap<FeedName, DeclaredFeed>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, raw) in tables {
        let feed_name = FeedName::parse(name)
            .map_err(|e| ConfigError::invalid(&["feeds", name], e.to_string()))?;
        let Some(repo) = &raw.repo else {
            let keys = raw.declaring_keys();
            if !keys.is_empty() {
                return Err(ConfigError::invalid(
                    &["feeds", name],
                    format!(
                        "sets {} but no repo: a table declares a feed only with `repo = URL`",
                        keys.join(", ")
                    ),
                ));
            }
            continue;
        };
        out.insert(feed_name.clone(), declared(feed_name, repo, raw)?);
    }
    Ok(out)
}

fn declared(name: FeedName, repo: &str, raw: &RawFeed) -> Result<DeclaredFeed, ConfigError> {
    let table = name.to_string();
    let invalid = |k: &str, message: String| ConfigError::Invalid {
        origin: None,
        key: ["feeds", table.as_str(), k]
            .into_iter()
            .filter(|part| !part.is_empty())
            .map(String::from)
            .collect(),
        line: None,
        message,
    };
    let command = match &raw.command {
        None => return Err(invalid("command", "a build command is required".into())),
        Some(RawCommand::Shell(s)) => CommandSpec::Shell(s.clone()),
        Some(RawCommand::Argv(words)) => CommandSpec::Argv(words.clone()),
    };
    if raw.branches.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid("branches", "must list at least one pattern".into()));
    }
    let paused = raw.paused.unwrap_or(false);
    let feed = Feed {
        name,
        repo: repo.to_owned(),
        branches: raw
            .branches
            .clone()
            .unwrap_or_else(|| vec![feed::DEFAULT_BRANCH.into()]),
        command,
        cooldown_secs: raw.cooldown.unwrap_or(feed::DEFAULT_COOLDOWN_SECS),
        on_cooldown: raw.on_cooldown.unwrap_or_default(),
        timeout_secs: raw.timeout.unwrap_or(feed::DEFAULT_TIMEOUT_SECS),
        has_secret: raw.secret_file.is_some(),
        paused,
        created_ms: 0,
        badge: raw.badge.unwrap_or(false),
        declared: true,
        retired_ms: None,
        secret_pending: false,
    };
    feed::validate(&feed).map_err(|e| {
        let k = match &e {
            FeedError::BadName(_) => "",
            FeedError::BadRepo(..) => "repo",
            FeedError::BadPattern(..) => "branches",
            FeedError::NoCommand => "command",
            FeedError::ZeroTimeout => "timeout",
        };
        let message = match e {
            FeedError::NoCommand => "a build command is required".into(),
            other => other.to_string(),
        };
        invalid(k, message)
    })?;
    Ok(DeclaredFeed {
        feed,
        paused_set: raw.paused.is_some(),
        secret_file: raw.secret_file.clone(),
        line: None,
    })
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

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_table_with_repo_declares_a_feed_with_defaults_and_its_line() {
        let c = parse(
            "workers = 1\n\n[feeds.web]\nrepo = \"/srv/web.git\"\ncommand = \"make\"\n\n\
             [feeds.creds]\nhttps_user = \"x\"\n",
        )
        .unwrap();
        assert_eq!(c.declared.len(), 1, "a table without repo declares nothing");
        let web = &c.declared[&FeedName::parse("web").unwrap()];
        assert_eq!(web.line, Some(3));
        assert_eq!(web.feed.branches, ["main"]);
        assert_eq!(web.feed.command, CommandSpec::Shell("make".into()));
        assert_eq!(web.feed.cooldown_secs, feed::DEFAULT_COOLDOWN_SECS);
        assert_eq!(web.feed.timeout_secs, feed::DEFAULT_TIMEOUT_SECS);
        assert_eq!(web.feed.on_cooldown, CooldownPolicy::Defer);
        assert!(!web.feed.has_secret && !web.feed.badge && !web.paused_set);
        assert!(c.credentials.contains_key("creds") && c.credentials.contains_key("web"));
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "[feeds.api]\nrepo = \"https://example.com/a.git\"\nbranches = [\"main\", \"refs/tags/v*\"]\n\
             command = [\"make\", \"test\"]\ncooldown = 0\non_cooldown = \"reject\"\ntimeout = 60\n\
             badge = true\npaused = true\nhttps_user = \"u\"\n",
        )
        .unwrap();
        let api = &c.declared[&FeedName::parse("api").unwrap()];
        assert_eq!(api.feed.branches, ["main", "refs/tags/v*"]);
        assert_eq!(
            api.feed.command,
            CommandSpec::Argv(vec!["make".into(), "test".into()])
        );
        assert_eq!(api.feed.cooldown_secs, 0);
        assert_eq!(api.feed.on_cooldown, CooldownPolicy::Reject);
        assert_eq!(api.feed.timeout_secs, 60);
        assert!(api.feed.badge && api.feed.paused && api.paused_set);
        assert_eq!(c.credentials["api"].https_user.as_deref(), Some("u"));
    }

    #[test]
    fn refusals_name_file_line_and_key() {
        let cases = [
            (
                "[feeds.web]\ncommand = \"make\"\n",
                "t.toml, line 1, feeds.web: sets command but no repo",
            ),
            (
                "[feeds.web]\nrepo = \"/srv/x\"\n",
                "t.toml, line 1, feeds.web.command: a build command is required",
            ),
            (
                "[feeds.web]\nrepo = \"relative\"\ncommand = \"make\"\n",
                "t.toml, line 2, feeds.web.repo: invalid repository URL",
            ),
            (
                "[feeds.web]\nrepo = \"/x\"\ncommand = \"make\"\nbranches = [\"a b\"]\n",
                "t.toml, line 4, feeds.web.branches: invalid branch pattern",
            ),
            (
                "[feeds.web]\nrepo = \"/x\"\ncommand = \"make\"\nbranches = []\n",
                "t.toml, line 4, feeds.web.branches: must list at least one pattern",
            ),
            (
                "[feeds.web]\nrepo = \"/x\"\ncommand = []\n",
                "t.toml, line 3, feeds.web.command: a build command is required",
            ),
            (
                "[feeds.web]\nrepo = \"/x\"\ncommand = \"  \"\n",
                "t.toml, line 3, feeds.web.command: a build command is required",
            ),
            (
                "[feeds.web]\nrepo = \"/x\"\ncommand = \"make\"\n\ntimeout = 0\n",
                "t.toml, line 5, feeds.web.timeout: timeout must be at least 1 second",
            ),
        ];
        for (text, expected) in cases {
            let err = error(text);
            assert!(
                err.starts_with(&format!("invalid config {expected}")),
                "{text:?}: {err}"
            );
        }
        // Unknown keys and wrong types are toml's own errors, with the line.
        let err = error("[feeds.web]\nrepo = \"/x\"\ncomand = \"make\"\n");
        assert!(err.contains("comand") && err.contains("line 3"), "{err}");
        let err = error("[feeds.web]\nrepo = \"/x\"\ncommand = \"make\"\ncooldown = \"5m\"\n");
        assert!(err.contains("line 4"), "{err}");
        let err = error("[feeds.web]\nrepo = \"/x\"\ncommand = \"make\"\non_cooldown = \"wait\"\n");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn changed_keys_name_what_the_file_changes() {
        let c = parse(
            "[feeds.web]\nrepo = \"/srv/x.git\"\ncommand = \"true\"\ncooldown = 0\ntimeout = 60\n",
        )
        .unwrap();
        let declared = &c.declared[&FeedName::parse("web").unwrap()];
        let stored = Feed {
            created_ms: 5,
            paused: true,
            ..crate::feed::sample("web")
        };
        assert!(
            changed_keys(&stored, declared).is_empty(),
            "creation time, and pause state the file does not set, are no change"
        );
        let old = Feed {
            repo: "/srv/y.git".into(),
            command: CommandSpec::Shell("make".into()),
            has_secret: true,
            badge: true,
            ..stored
        };
        assert_eq!(
            changed_keys(&old, declared),
            ["repo", "command", "secret", "badge"]
        );
        let c = parse("[feeds.web]\nrepo = \"/srv/x.git\"\ncommand = \"true\"\ncooldown = 0\ntimeout = 60\npaused = false\n")
            .unwrap();
        let declared = &c.declared[&FeedName::parse("web").unwrap()];
        assert_eq!(changed_keys(&old, declared)[4..], ["paused"]);
    }

    #[test]
    fn printed_declarations_parse_back_the_same() {
        let text = "[feeds.web]\nrepo = \"/srv/web.git\"\ncommand = [\"make\", \"all\"]\n\
                    cooldown = 5\nssh_key = \"/k\"\n[feeds.api]\nrepo = \"/srv/api.git\"\n\
                    command = \"true\"\npaused = false\n";
        let first = parse(text).unwrap();
        let printed = first.to_toml().unwrap();
        let again = parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        let feeds = |c: &Config| {
            c.declared
                .values()
                .map(|d| (d.feed.clone(), d.paused_set, d.secret_file.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(feeds(&again), feeds(&first));
        assert_eq!(again.credentials, first.credentials);
        assert!(printed.contains("timeout = 3600"), "{printed}");
    }
}
