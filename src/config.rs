//! Configuration: raw TOML (unknown keys refused, with their line) turned into one
//! validated [`Config`], with command-line overrides applied on top.
//!
//! Every key has a named default, so `hookd serve` runs with no file at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::ConfigArgs;
use crate::feed::FeedName;

mod declared;
mod notify;
mod status;
pub(crate) use declared::{changed_keys, DeclaredFeed, RawCommand, RawFeed};
pub(crate) use notify::{
    ExecTarget, NotifyEvent, NotifyTarget, RawNotify, SigningKey, TargetKind, WebhookFormat,
    WebhookTarget,
};
pub(crate) use status::{Forge, OutboxConfig, StatusConfig};

/// Why a config could not be used; shown to the operator verbatim.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. (The OS error is part of the message, not a
    /// `source`, so `{:#}` does not print it twice.)
    #[error("cannot read config {path}: {error}")]
    Read {
        /// The file named by --config.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// TOML syntax, type or unknown key; the message names the key and its line.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file named by --config.
        path: PathBuf,
        /// toml's message, which includes line and column.
        message: String,
    },
    /// A value that parses but cannot work, named by its key (and, once located in
    /// the file, by the file and line).
    #[error("invalid config {}: {message}", where_(origin, key, *line))]
    Invalid {
        /// The file it came from, when there is one.
        origin: Option<PathBuf>,
        /// The key's path in the file (`["http", "max_body_bytes"]`), or the flag.
        key: Vec<String>,
        /// Line of the key in the file, 1-based.
        line: Option<usize>,
        /// What is wrong with the value.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: &[&str], message: impl Into<String>) -> Self {
        Self::Invalid {
            origin: None,
            key: key.iter().map(|k| k.to_string()).collect(),
            line: None,
            message: message.into(),
        }
    }

    /// Names the file and the key's line in it, so every message reads like toml's
    /// own parse errors. Keys set by a command-line flag keep the flag's name.
    fn located(self, path: &Path, text: &str) -> Self {
        match self {
            Self::Invalid {
                key, message, line, ..
            } if !key.iter().any(|k| k.starts_with("--")) => Self::Invalid {
                line: line.or_else(|| key_line(text, &key)),
                origin: Some(path.to_owned()),
                key,
                message,
            },
            other => other,
        }
    }
}

fn where_(origin: &Option<PathBuf>, key: &[String], line: Option<usize>) -> String {
    let plain = |k: &String| {
        k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    // An array index (`[2]`) follows its array's name without a dot.
    let key = key.iter().fold(String::new(), |mut out, k| {
        if k.starts_with('[') {
            out.push_str(k);
            return out;
        }
        if !out.is_empty() {
            out.push('.');
        }
        if plain(k) {
            out.push_str(k);
        } else {
            out.push_str(&format!("{k:?}"));
        }
        out
    });
    let origin = origin
        .as_ref()
        .map(|p| format!("{}, ", p.display()))
        .unwrap_or_default();
    match line {
        Some(line) => format!("{origin}line {line}, {key}"),
        None => format!("{origin}{key}"),
    }
}

/// The 1-based line where a key (`["builds", "keep_builds"]`) is written; for a key
/// that is not written (a required one left out), the line of the deepest table
/// around it that is.
fn key_line(text: &str, key: &[String]) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut found = None;
    let mut parts = key.iter().peekable();
    while let Some(part) = parts.next() {
        let Some(start) = table.key(part).and_then(|k| k.span()).map(|s| s.start) else {
            break;
        };
        found = Some(line_of(start));
        let item = table.get(part);
        // `[[notify]]` tables: the next part is `[N]`, the Nth table of the array.
        if let Some(array) = item.and_then(|item| item.as_array_of_tables()) {
            let index = parts
                .peek()
                .and_then(|p| p.strip_prefix('[')?.strip_suffix(']'));
            let Some(inner) = index.and_then(|i| array.get(i.parse().ok()?)) else {
                break;
            };
            parts.next();
            found = inner.span().map(|s| line_of(s.start)).or(found);
            table = inner;
            continue;
        }
        match item.and_then(|item| item.as_table_like()) {
            Some(inner) => table = inner,
            None => break,
        }
    }
    found
}

/// The settings file as written: every key optional, unknown keys refused.
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Address the hook endpoint listens on.
    pub(crate) listen: Option<String>,
    /// Base of hook URLs shown to operators (e.g. behind a TLS proxy).
    pub(crate) public_url: Option<String>,
    /// Where the database, mirrors, workspaces and logs live.
    pub(crate) data_dir: Option<PathBuf>,
    /// The admin socket path.
    pub(crate) admin_socket: Option<PathBuf>,
    /// tracing filter, e.g. "info" or "hookd=debug".
    pub(crate) log_level: Option<String>,
    /// Builds that may run at once (at most one per feed).
    pub(crate) workers: Option<usize>,
    /// sled page cache in MiB (sled's own default is 1 GiB).
    pub(crate) store_cache_mb: Option<u64>,
    /// HTTP limits.
    pub(crate) http: RawHttp,
    /// Build execution settings.
    pub(crate) builds: RawBuilds,
    /// The status pages, JSON API and badges.
    pub(crate) web: RawWeb,
    /// How status posts (and notifications) are retried.
    pub(crate) outbox: status::RawOutbox,
    /// Per-feed tables by feed name: credentials for private repositories, and with
    /// `repo` a declared feed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) feeds: BTreeMap<String, RawFeed>,
    /// `[[notify]]` tables: who hears about builds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) notify: Vec<RawNotify>,
}

/// `[http]`: limits against hostile or broken clients.
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHttp {
    /// Largest accepted request body.
    pub(crate) max_body_bytes: Option<u64>,
    /// Time a client has to send its request headers.
    pub(crate) header_timeout_secs: Option<u64>,
    /// Time a client has to send the whole request.
    pub(crate) request_timeout_secs: Option<u64>,
    /// Open connections at most; at the cap the longest idle one gives way.
    pub(crate) max_connections: Option<usize>,
    /// Time a connection may sit idle (no request in progress, nothing received).
    pub(crate) idle_timeout_secs: Option<u64>,
    /// Request body bytes held in memory at once, across all requests.
    pub(crate) body_budget_bytes: Option<u64>,
    /// Accept GitHub's legacy `X-Hub-Signature` (sha1).
    pub(crate) allow_sha1_signatures: Option<bool>,
}

/// `[builds]`: how builds run and how much history is kept.
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawBuilds {
    /// Cap on one build's log file.
    pub(crate) log_max_bytes: Option<u64>,
    /// Builds (with logs) kept per feed.
    pub(crate) keep_builds: Option<usize>,
    /// Deliveries remembered per feed.
    pub(crate) keep_deliveries: Option<usize>,
    /// Time between TERM and KILL when a build is stopped.
    pub(crate) kill_grace_secs: Option<u64>,
    /// Time running builds get to finish on shutdown.
    pub(crate) shutdown_grace_secs: Option<u64>,
    /// Extra environment variables given to every build.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) env: BTreeMap<String, String>,
}

/// `[web]`: the read-only status pages, JSON API and badges.
#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawWeb {
    /// Serve them at all.
    pub(crate) enabled: Option<bool>,
    /// Their own address; empty = on the hook listener.
    pub(crate) listen: Option<String>,
    /// Heading of every page.
    pub(crate) title: Option<String>,
    /// Live streams (event streams, followed logs) open at once, per listener.
    pub(crate) max_streams: Option<usize>,
}

/// The credential keys of `[feeds.NAME]`: secrets for fetching a private repository;
/// never stored in the database.
#[derive(Debug, Deserialize, Serialize, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FeedCredentials {
    /// SSH private key file for ssh:// and scp-like URLs.
    pub(crate) ssh_key: Option<PathBuf>,
    /// File holding an HTTPS token (used as the password).
    pub(crate) https_token_file: Option<PathBuf>,
    /// User name sent with the HTTPS token.
    pub(crate) https_user: Option<String>,
}

/// The validated settings every part of the daemon reads.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Hook endpoint address.
    pub(crate) listen: SocketAddr,
    /// Base of hook URLs, without a trailing slash.
    pub(crate) public_url: String,
    /// Whether `public_url` was set, rather than derived from `listen`.
    pub(crate) public_url_explicit: bool,
    /// Root of all state.
    pub(crate) data_dir: PathBuf,
    /// Admin socket path.
    pub(crate) admin_socket: PathBuf,
    /// tracing filter.
    pub log_level: String,
    /// Concurrent builds.
    pub(crate) workers: usize,
    /// sled cache in bytes.
    pub(crate) store_cache_bytes: u64,
    /// Largest request body.
    pub(crate) max_body_bytes: u64,
    /// Header read deadline.
    pub(crate) header_timeout: Duration,
    /// Whole-request deadline.
    pub(crate) request_timeout: Duration,
    /// Connection cap.
    pub(crate) max_connections: usize,
    /// Idle connections are closed after this.
    pub(crate) idle_timeout: Duration,
    /// Body bytes all requests may hold at once; 503 above.
    pub(crate) body_budget_bytes: u64,
    /// Whether sha1 GitHub signatures are accepted.
    pub(crate) allow_sha1: bool,
    /// Log cap per build.
    pub(crate) log_max_bytes: u64,
    /// Builds kept per feed.
    pub(crate) keep_builds: usize,
    /// Deliveries kept per feed.
    pub(crate) keep_deliveries: usize,
    /// TERM-to-KILL grace.
    pub(crate) kill_grace: Duration,
    /// Shutdown grace for running builds.
    pub(crate) shutdown_grace: Duration,
    /// Extra build environment.
    pub(crate) build_env: BTreeMap<String, String>,
    /// Repository credentials by feed name.
    pub(crate) credentials: BTreeMap<String, FeedCredentials>,
    /// The feeds the file declares (`[feeds.NAME]` with `repo`), by name.
    pub(crate) declared: BTreeMap<FeedName, DeclaredFeed>,
    /// The status pages, JSON API and badges.
    pub(crate) web: WebConfig,
    /// Commit status settings by feed name (`[feeds.NAME.status]`).
    pub(crate) status: BTreeMap<String, StatusConfig>,
    /// How the outbox's sender retries.
    pub(crate) outbox: OutboxConfig,
    /// The `[[notify]]` targets, with their files' contents once read (never printed).
    #[serde(skip)]
    pub(crate) notify: Vec<NotifyTarget>,
    /// The file this came from, for SIGHUP reloads.
    pub source: Option<PathBuf>,
}

/// `[web]` as validated.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WebConfig {
    /// Whether the pages, API and badges are served.
    pub(crate) enabled: bool,
    /// Their own listener; `None` = the hook listener serves them.
    pub(crate) listen: Option<SocketAddr>,
    /// Heading of every page.
    pub(crate) title: String,
    /// Live streams open at once per listener; 503 beyond (read at start).
    pub(crate) max_streams: usize,
}

/// Default page title.
pub(crate) const DEFAULT_WEB_TITLE: &str = "hookd";
/// Default cap on live streams: a team's open pages, with room to spare.
pub(crate) const DEFAULT_WEB_STREAMS: usize = 64;

/// Default hook endpoint.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data dir when neither config nor systemd names one.
pub(crate) const DEFAULT_DATA_DIR: &str = "hookd-data";
/// Default sled cache: enough for hot feeds and the queue head, far from sled's 1 GiB.
pub(crate) const DEFAULT_CACHE_MB: u64 = 16;
/// Default body limit (SPEC: 10 MiB).
pub(crate) const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;
/// Default idle timeout: longer than a client's pause between two requests of a burst,
/// far shorter than the pace at which idle keep-alive clients could hold every slot.
pub(crate) const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 5;
/// Default body budget: six bodies at the default limit, so the daemon stays well
/// under 128 MiB in a burst of large posts.
pub(crate) const DEFAULT_BODY_BUDGET: u64 = 64 * 1024 * 1024;
/// Default log cap (SPEC: 50 MiB).
pub(crate) const DEFAULT_LOG_MAX: u64 = 50 * 1024 * 1024;

impl Config {
    /// Reads the file (if any), applies CLI overrides and validates the result,
    /// including that the credential files it names can be read.
    pub fn load(args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut config = Self::load_settings(args)?;
        let checked = config.read_key_files();
        match (&args.config, checked) {
            (Some(path), Err(e)) => Err(e.located(path, &read_text(path)?)),
            (_, result) => result.map(|()| config),
        }
    }

    /// Checks the credential files and reads the `[[notify]]` targets' URL and
    /// secret files into them: done at start and on each reload, never stored.
    fn read_key_files(&mut self) -> Result<(), ConfigError> {
        self.check_credential_files()?;
        notify::read_files(&mut self.notify)
    }

    /// [`Config::load`] without opening the credential files: enough to find the
    /// admin socket, for a user who may not read the daemon's keys.
    pub(crate) fn load_settings(args: &ConfigArgs) -> Result<Self, ConfigError> {
        let Some(path) = &args.config else {
            return Self::from_raw(RawConfig::default(), args);
        };
        let text = read_text(path)?;
        Self::from_text(path, &text, args)
    }

    /// Settings from a file's text (read by whoever could read it): parsed, checked,
    /// and with each declared feed's line found. Credential files are not opened.
    pub(crate) fn from_text(
        path: &Path,
        text: &str,
        args: &ConfigArgs,
    ) -> Result<Self, ConfigError> {
        let raw = parse_raw(path, text)?;
        let mut config = Self::from_raw(raw, args).map_err(|e| e.located(path, text))?;
        config.locate_declared(text);
        Ok(config)
    }

    /// [`Config::from_text`] plus the check that the credential and secret files it
    /// names can be read, as [`Config::load`] does.
    #[allow(
        dead_code,
        reason = "check-config --plan and feed edit on the declared branch call it"
    )]
    pub(crate) fn from_text_checked(
        path: &Path,
        text: &str,
        args: &ConfigArgs,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::from_text(path, text, args)?;
        config.read_key_files().map_err(|e| e.located(path, text))?;
        Ok(config)
    }

    /// Records the line of each declared feed's table, for messages that send the
    /// operator to it.
    fn locate_declared(&mut self, text: &str) {
        for (name, declared) in &mut self.declared {
            declared.line = key_line(text, &["feeds".into(), name.to_string()]);
        }
    }

    /// Where a declared feed is written: `FILE line N`, for the operator.
    #[allow(
        dead_code,
        reason = "check-config --plan and feed edit on the declared branch call it"
    )]
    pub(crate) fn declared_at(&self, name: &FeedName) -> String {
        let file = self
            .source
            .as_ref()
            .map_or("the config file".to_owned(), |p| p.display().to_string());
        match self.declared.get(name).and_then(|d| d.line) {
            Some(line) => format!("{file} line {line}"),
            None => file,
        }
    }

    /// Every `[feeds.NAME]` key file must exist and be readable by this process:
    /// otherwise the first private fetch would fail, long after the config passed.
    fn check_credential_files(&self) -> Result<(), ConfigError> {
        let secret_files = self
            .declared
            .iter()
            .map(|(name, d)| (name.as_str(), &d.secret_file));
        for (name, secret_file) in secret_files {
            let Some(path) = secret_file else { continue };
            let problem = match std::fs::read_to_string(path) {
                Ok(text) if text.trim().is_empty() => "it is empty".to_owned(),
                Ok(_) => continue,
                Err(e) => e.to_string(),
            };
            return Err(ConfigError::invalid(
                &["feeds", name, "secret_file"],
                format!(
                    "cannot use {} as a webhook secret: {problem}",
                    path.display()
                ),
            ));
        }
        for (name, status) in &self.status {
            let problem = match std::fs::read_to_string(&status.token_file) {
                Ok(text) if text.trim().is_empty() => "it is empty".to_owned(),
                Ok(_) => continue,
                Err(e) => e.to_string(),
            };
            return Err(ConfigError::invalid(
                &["feeds", name, "status", "token_file"],
                format!(
                    "cannot use {} as an API token: {problem}",
                    status.token_file.display()
                ),
            ));
        }
        for (name, credentials) in &self.credentials {
            let files = [
                ("ssh_key", &credentials.ssh_key),
                ("https_token_file", &credentials.https_token_file),
            ];
            for (key, path) in files {
                let Some(path) = path else { continue };
                let readable = std::fs::File::open(path)
                    .and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1]).map(|_| ()));
                if let Err(e) = readable {
                    return Err(ConfigError::invalid(
                        &["feeds", name, key],
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The effective settings as a config file, with the documented keys and units,
    /// so `check-config` output can be pasted back. `public_url` is left out when it
    /// is derived from `listen`, so it keeps following it.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let raw = RawConfig {
            listen: Some(self.listen.to_string()),
            public_url: self.public_url_explicit.then(|| self.public_url.clone()),
            data_dir: Some(self.data_dir.clone()),
            admin_socket: Some(self.admin_socket.clone()),
            log_level: Some(self.log_level.clone()),
            workers: Some(self.workers),
            store_cache_mb: Some(self.store_cache_bytes / (1024 * 1024)),
            http: RawHttp {
                max_body_bytes: Some(self.max_body_bytes),
                header_timeout_secs: Some(self.header_timeout.as_secs()),
                request_timeout_secs: Some(self.request_timeout.as_secs()),
                max_connections: Some(self.max_connections),
                idle_timeout_secs: Some(self.idle_timeout.as_secs()),
                body_budget_bytes: Some(self.body_budget_bytes),
                allow_sha1_signatures: Some(self.allow_sha1),
            },
            builds: RawBuilds {
                log_max_bytes: Some(self.log_max_bytes),
                keep_builds: Some(self.keep_builds),
                keep_deliveries: Some(self.keep_deliveries),
                kill_grace_secs: Some(self.kill_grace.as_secs()),
                shutdown_grace_secs: Some(self.shutdown_grace.as_secs()),
                env: self.build_env.clone(),
            },
            web: RawWeb {
                enabled: Some(self.web.enabled),
                listen: Some(self.web.listen.map(|a| a.to_string()).unwrap_or_default()),
                title: Some(self.web.title.clone()),
                max_streams: Some(self.web.max_streams),
            },
            outbox: self.outbox.to_raw(),
            feeds: self.feed_tables(),
            notify: self.notify.iter().map(RawNotify::from_target).collect(),
        };
        toml::to_string(&raw)
    }

    /// Every `[feeds.NAME]` table as `check-config` prints it.
    fn feed_tables(&self) -> BTreeMap<String, RawFeed> {
        let none = FeedCredentials::default();
        let names = self
            .credentials
            .keys()
            .cloned()
            .chain(self.declared.keys().map(|n| n.to_string()))
            .chain(self.status.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>();
        names
            .into_iter()
            .map(|name| {
                let credentials = self.credentials.get(&name).unwrap_or(&none);
                let declared = FeedName::parse(&name)
                    .ok()
                    .and_then(|n| self.declared.get(&n));
                let raw = RawFeed::from_parts(credentials, declared, self.status.get(&name));
                (name, raw)
            })
            .collect()
    }

    /// Applies overrides and defaults to a parsed file.
    pub(crate) fn from_raw(mut raw: RawConfig, args: &ConfigArgs) -> Result<Self, ConfigError> {
        if let Some(listen) = &args.listen {
            raw.listen = Some(listen.clone());
        }
        if let Some(dir) = &args.data_dir {
            raw.data_dir = Some(dir.clone());
        }
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen_key = if args.listen.is_some() {
            "--listen"
        } else {
            "listen"
        };
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError::invalid(
                &[listen_key],
                format!("{listen_text:?} is not an IP:port address (e.g. 127.0.0.1:8080)"),
            )
        })?;
        let data_dir = raw.data_dir.clone().unwrap_or_else(default_data_dir);
        let public_url = match &raw.public_url {
            Some(url) => validate_public_url(url)?,
            None => format!("http://{listen}"),
        };
        let workers = raw.workers.unwrap_or(1);
        if workers == 0 {
            return Err(ConfigError::invalid(&["workers"], "must be at least 1"));
        }
        let positive = |key: &[&str], v: Option<u64>, default: u64| match v {
            Some(0) => Err(ConfigError::invalid(key, "must be greater than 0")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let declared = declared::declared_feeds(&raw.feeds)?;
        let max_body_bytes = positive(
            &["http", "max_body_bytes"],
            raw.http.max_body_bytes,
            DEFAULT_MAX_BODY,
        )?;
        let body_budget_bytes = raw.http.body_budget_bytes.unwrap_or(DEFAULT_BODY_BUDGET);
        if body_budget_bytes < max_body_bytes {
            return Err(ConfigError::invalid(
                &["http", "body_budget_bytes"],
                format!("must be at least max_body_bytes ({max_body_bytes})"),
            ));
        }
        let log_level = raw.log_level.clone().unwrap_or_else(|| "info".into());
        validate_log_level(&log_level).map_err(|m| ConfigError::invalid(&["log_level"], m))?;
        Ok(Self {
            listen,
            public_url,
            public_url_explicit: raw.public_url.is_some(),
            admin_socket: raw
                .admin_socket
                .clone()
                .unwrap_or_else(|| crate::paths::admin_socket(&data_dir)),
            data_dir,
            log_level,
            workers,
            store_cache_bytes: positive(&["store_cache_mb"], raw.store_cache_mb, DEFAULT_CACHE_MB)?
                * 1024
                * 1024,
            max_body_bytes,
            body_budget_bytes,
            header_timeout: secs(positive(
                &["http", "header_timeout_secs"],
                raw.http.header_timeout_secs,
                10,
            )?),
            request_timeout: secs(positive(
                &["http", "request_timeout_secs"],
                raw.http.request_timeout_secs,
                30,
            )?),
            max_connections: raw.http.max_connections.unwrap_or(1024).max(1),
            idle_timeout: secs(positive(
                &["http", "idle_timeout_secs"],
                raw.http.idle_timeout_secs,
                DEFAULT_IDLE_TIMEOUT_SECS,
            )?),
            allow_sha1: raw.http.allow_sha1_signatures.unwrap_or(false),
            log_max_bytes: positive(
                &["builds", "log_max_bytes"],
                raw.builds.log_max_bytes,
                DEFAULT_LOG_MAX,
            )?,
            keep_builds: raw.builds.keep_builds.unwrap_or(100).max(1),
            keep_deliveries: raw.builds.keep_deliveries.unwrap_or(100).max(1),
            kill_grace: secs(raw.builds.kill_grace_secs.unwrap_or(10)),
            shutdown_grace: secs(raw.builds.shutdown_grace_secs.unwrap_or(30)),
            build_env: raw.builds.env.clone(),
            credentials: raw
                .feeds
                .iter()
                .map(|(name, table)| (name.clone(), table.credentials()))
                .collect(),
            status: status_tables(&raw.feeds)?,
            outbox: status::outbox_config(&raw.outbox)?,
            declared,
            web: web_config(&raw.web)?,
            notify: notify::targets(&raw.notify)?,
            source: args.config.clone(),
        })
    }
}

impl Config {
    /// A build's page, for links sent out (notifications, commit statuses): only when
    /// the web UI is on and `public_url` says where people reach it.
    pub(crate) fn build_page(&self, id: crate::build::BuildId) -> Option<String> {
        (self.web.enabled && self.public_url_explicit)
            .then(|| format!("{}/builds/{id}", self.public_url))
    }

    /// Records the address actually bound (port 0 picks one), which also becomes the
    /// base of hook URLs unless `public_url` was set.
    pub(crate) fn with_bound_addr(mut self, bound: SocketAddr) -> Self {
        self.listen = bound;
        if !self.public_url_explicit {
            self.public_url = format!("http://{bound}");
        }
        self
    }
}

/// Every `[feeds.NAME.status]`, by feed name; a declared feed's repository is
/// derived (or refused) now, an admin-made feed's when a status is sent.
fn status_tables(
    feeds: &BTreeMap<String, RawFeed>,
) -> Result<BTreeMap<String, StatusConfig>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, table) in feeds {
        if let Some(raw) = &table.status {
            FeedName::parse(name)
                .map_err(|e| ConfigError::invalid(&["feeds", name], e.to_string()))?;
            let config = status::status_config(name, raw, table.repo.as_deref())?;
            out.insert(name.clone(), config);
        }
    }
    Ok(out)
}

/// `[web]` with its defaults; `listen` must be an IP:port when set.
fn web_config(raw: &RawWeb) -> Result<WebConfig, ConfigError> {
    let listen = match raw.listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(text.parse().map_err(|_| {
            ConfigError::invalid(
                &["web", "listen"],
                format!("{text:?} is not an IP:port address (e.g. 127.0.0.1:8081)"),
            )
        })?),
    };
    let title = raw
        .title
        .clone()
        .unwrap_or_else(|| DEFAULT_WEB_TITLE.into());
    if title.chars().any(char::is_control) || title.len() > 200 {
        return Err(ConfigError::invalid(
            &["web", "title"],
            "must be at most 200 characters, none of them control characters",
        ));
    }
    let max_streams = raw.max_streams.unwrap_or(DEFAULT_WEB_STREAMS);
    if max_streams == 0 {
        return Err(ConfigError::invalid(
            &["web", "max_streams"],
            "must be at least 1",
        ));
    }
    Ok(WebConfig {
        enabled: raw.enabled.unwrap_or(true),
        listen,
        title,
        max_streams,
    })
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `$STATE_DIRECTORY` under systemd (first entry), else `./hookd-data`.
fn default_data_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

fn validate_public_url(url: &str) -> Result<String, ConfigError> {
    let trimmed = url.trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        || trimmed.len() <= "https://".len()
    {
        return Err(ConfigError::invalid(
            &["public_url"],
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// The level words `log_level` accepts, alone or after `target=`.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `log_level` must be a level or `target=level` directives, comma-separated: a bare
/// word like "verbose" is a valid tracing filter for a target named "verbose", which
/// silently turns every hookd log line off.
fn validate_log_level(filter: &str) -> Result<(), String> {
    let accepted = "expected a level (off, error, warn, info, debug, trace) or \
                    TARGET=LEVEL directives separated by commas, e.g. \"info,hookd=debug\"";
    let is_level = |word: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word.trim()));
    let directives_ok = filter.split(',').all(|d| match d.rsplit_once('=') {
        Some((target, level)) => !target.trim().is_empty() && is_level(level),
        None => is_level(d),
    });
    if !directives_ok || tracing_subscriber::EnvFilter::try_new(filter).is_err() {
        return Err(format!("{filter:?} is not a log filter: {accepted}"));
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })
}

fn parse_raw(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// The settings in force, shared by the daemon's parts; replaced whole on SIGHUP, so a
/// reader holds one consistent [`Config`] for as long as it needs it.
#[derive(Debug, Clone)]
pub(crate) struct LiveConfig(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Config>>>);

impl LiveConfig {
    /// Shares `config` as the settings in force.
    pub(crate) fn new(config: Config) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(config),
        )))
    }

    /// The settings in force now.
    pub(crate) fn get(&self) -> std::sync::Arc<Config> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in reloaded settings.
    pub(crate) fn set(&self, config: Config) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let path = Path::new("t.toml");
        let raw = parse_raw(path, text)?;
        Config::from_raw(raw, &ConfigArgs::default()).map_err(|e| e.located(path, text))
    }

    #[test]
    fn empty_config_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.workers, 1);
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.store_cache_bytes, 16 * 1024 * 1024);
        assert_eq!(c.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.body_budget_bytes, 64 * 1024 * 1024);
        assert!(c.admin_socket.ends_with("admin.sock"));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("workers = 2\n\n[http]\nmax_bdy_bytes = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_bdy_bytes"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse("workers = 0").is_err());
        assert!(parse("log_level = \"verbose\"").is_err());
        assert!(parse("listen = \"nope\"").is_err());
        assert!(parse("public_url = \"ftp://x\"").is_err());
        assert!(parse("[feeds.\"../x\"]").is_err());
        assert!(parse("[http]\nmax_body_bytes = 0").is_err());
        assert!(parse("[http]\nidle_timeout_secs = 0").is_err());
        assert!(parse("[http]\nmax_body_bytes = 2000\nbody_budget_bytes = 1000").is_err());
    }

    #[test]
    fn validation_errors_name_file_key_and_line() {
        let cases = [
            (
                "listen = \"0.0.0.0:1\"\nworkers = 0\n",
                "t.toml, line 2, workers: must be at least 1",
            ),
            (
                "\n[http]\n\nmax_body_bytes = 0\n",
                "t.toml, line 4, http.max_body_bytes: must be",
            ),
            (
                "[builds]\n[feeds.\"../x\"]\n",
                "t.toml, line 2, feeds.\"../x\": ",
            ),
            (
                "log_level = \"verbose\"",
                "t.toml, line 1, log_level: \"verbose\" is not a log filter",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid config {expected}")),
                "{err}"
            );
        }
    }

    #[test]
    fn log_level_takes_levels_and_directives_only() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "hookd=debug,info",
            "hookd::http=trace, warn",
        ] {
            validate_log_level(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["verbose", "hookd", "info,hookd", "hookd=loud", "=info", ""] {
            let err = validate_log_level(bad).unwrap_err();
            assert!(err.contains("TARGET=LEVEL"), "{bad}: {err}");
        }
    }

    #[test]
    fn printed_config_parses_back_to_the_same_settings() {
        let text = "listen = \"127.0.0.1:9000\"\npublic_url = \"https://ci.example.com/\"\n\
                    store_cache_mb = 32\n[http]\nheader_timeout_secs = 5\n\
                    [builds]\nkill_grace_secs = 3\nenv = { A = \"b\" }\n\
                    [feeds.web]\nhttps_user = \"x\"\n";
        let first = parse(text).unwrap();
        let printed = first.to_toml().unwrap();
        for key in [
            "store_cache_mb = 32",
            "kill_grace_secs = 3",
            "header_timeout_secs = 5",
        ] {
            assert!(printed.contains(key), "{key} missing:\n{printed}");
        }
        let again = parse(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(again.to_toml().unwrap(), printed);
        assert_eq!(again.public_url, "https://ci.example.com");
        // A derived public_url stays derived.
        let derived = parse("").unwrap().to_toml().unwrap();
        assert!(!derived.contains("public_url"), "{derived}");
    }

    #[test]
    fn cli_overrides_win() {
        let args = ConfigArgs {
            config: None,
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some("/tmp/x".into()),
        };
        let c = Config::from_raw(toml::from_str("listen = \"0.0.0.0:1\"").unwrap(), &args).unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.admin_socket, PathBuf::from("/tmp/x/admin.sock"));
    }
}
