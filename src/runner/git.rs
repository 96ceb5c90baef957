//! Source code for builds, through libgit2: one bare mirror per feed that holds only
//! the refs the feed builds, fetched incrementally, and a workspace checked out clean
//! from it at the resolved commit. This is the only module that imports `git2`.
//!
//! Layout:
//! - this file: the public API (what the runner calls), the error type and how a remote URL is classified;
//! - `mirror`: the bare mirror — open or re-create it, fetch one ref into it over the
//!   network (`network`) or from a repository on this machine (`local`);
//! - `transfer`: what a network transfer needs (credentials, progress, cancel);
//! - `workspace`: the detached, cleaned checkout and its submodules.
//!
//! Everything here blocks: the runner calls it inside `spawn_blocking`, and a
//! cancellation arrives through the `AtomicBool` it passes.

mod mirror;
mod transfer;
mod workspace;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Where the code comes from, and how to authenticate there.
pub struct Remote<'a> {
    /// As configured: a local path, `file://`, `git://`, `ssh://`, scp-like
    /// `user@host:path`, or `https://`. Shown only through [`redact_url`](crate::feed::redact_url).
    pub url: &'a str,
    /// Used only when the remote asks for them.
    pub credentials: &'a Credentials,
}

/// A feed's credentials, read from the config file at use and never stored or shown.
#[derive(Default)]
pub struct Credentials {
    /// Private key file for `ssh://` and scp-like URLs (no passphrase).
    pub(crate) ssh_key: Option<PathBuf>,
    /// Sent as the HTTPS password; never logged, never put in a URL.
    pub(crate) https_token: Option<String>,
    /// HTTPS user name for the token; `x-access-token` when absent, which GitHub,
    /// Gitea and GitLab all accept for token authentication.
    pub(crate) https_user: Option<String>,
}

/// The commit a build runs, as recorded on the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCommit {
    /// Full hex id.
    pub(crate) id: String,
    /// The first line of the commit message.
    pub(crate) subject: String,
}

/// Why fetching or checking out failed. Every message is fit for the build log and
/// `build show`: URLs are redacted and no secret ever appears.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The ref is not a branch or tag ref; it is checked before anything touches disk.
    #[error("cannot build '{0}': expected refs/heads/<branch> or refs/tags/<tag>")]
    InvalidRef(String),
    /// The remote could not be reached or opened at all.
    #[error("cannot reach the remote {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The remote answered but does not have the ref.
    #[error("{kind} '{name}' not found on remote {url}")]
    RefNotFound {
        kind: &'static str,
        name: String,
        url: String,
    },
    /// The ref names a tree or blob, which cannot be built.
    #[error("'{0}' does not name a commit")]
    NotACommit(String),
    /// Authentication failed or was needed and not configured.
    #[error("authentication failed for {url}: {reason}")]
    Credentials { url: String, reason: String },
    /// The remote answered but the transfer failed part-way.
    #[error("fetching from {url} failed: {reason}")]
    Transfer { url: String, reason: String },
    /// The build was cancelled (or the daemon is shutting down).
    #[error("cancelled")]
    Cancelled,
    /// The mirror was unusable, was deleted and re-cloned once, and is still unusable.
    #[error("the mirror at {path} is corrupt, and re-cloning it did not help: {reason}")]
    CorruptMirror { path: PathBuf, reason: String },
    /// `checkout` was given a commit id that is not a full hex id.
    #[error("'{0}' is not a commit id")]
    InvalidCommit(String),
    /// `checkout` was given a commit that the mirror does not hold.
    #[error("commit {0} is not in the mirror")]
    CommitNotFound(String),
    /// A submodule could not be fetched or checked out.
    #[error("submodule '{name}': {reason}")]
    Submodule { name: String, reason: String },
    /// The workspace could not be prepared, checked out or cleaned.
    #[error("cannot prepare the workspace {path}: {reason}")]
    Workspace { path: PathBuf, reason: String },
    /// Local disk trouble with the mirror (not corruption: re-cloning would not help).
    #[error("cannot write the mirror at {path}: {reason}")]
    Mirror { path: PathBuf, reason: String },
}

/// How long connecting to a server may take before the fetch fails as unreachable.
const CONNECT_TIMEOUT_MS: i32 = 15_000;
/// How long a server may stay silent mid-transfer. A busy server sends progress or
/// keep-alives (git's upload-pack does every 5 s), so a minute of silence is a hung
/// one; without this, a fetch blocked in `recv` would ignore cancel and shutdown.
const SERVER_TIMEOUT_MS: i32 = 60_000;

/// Sets libgit2's process-wide network timeouts. Call it once at daemon start,
/// before any fetch; later calls do nothing.
pub(crate) fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: these options are plain integers in libgit2's global settings; they
        // are written here once, before any fetch runs (and `Once` keeps two
        // writers apart), so no transfer reads them while they change.
        let set = unsafe {
            git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS)
                .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(SERVER_TIMEOUT_MS))
        };
        if let Err(e) = set {
            tracing::warn!(error = %e.message(), "cannot set libgit2's network timeouts");
        }
    });
}

/// Brings the feed's mirror up to date with `git_ref` on the remote and resolves the
/// commit to build: the ref's newest commit now, not the one a push named, because
/// a build that runs later should build what the branch holds when it runs. When the
/// push named a commit the mirror does not hold, a note in `progress` says so.
pub fn fetch(
    remote: &Remote,
    mirror_dir: &Path,
    git_ref: &str,
    expected: Option<&str>,
    progress: &mut dyn Write,
    cancel: &AtomicBool,
) -> Result<ResolvedCommit, GitError> {
    mirror::fetch(remote, mirror_dir, git_ref, expected, progress, cancel)
}

/// Checks `commit` out, detached, into `workspace` (a normal working tree whose
/// objects come from the mirror), removes every file the previous build left, and
/// brings submodules to the commits it records. `credentials` are the feed's: they
/// are offered to submodules on the feed's own host only, never to another host a
/// `.gitmodules` names.
pub fn checkout(
    mirror_dir: &Path,
    workspace: &Path,
    commit: &str,
    credentials: &Credentials,
    progress: &mut dyn Write,
    cancel: &AtomicBool,
) -> Result<(), GitError> {
    workspace::checkout(mirror_dir, workspace, commit, credentials, progress, cancel)
}

/// Checks a feed's repository before the feed is saved, so a typo fails at `feed add`
/// rather than at the first build: a local path must be a git repository; with
/// `list_remote`, a network remote is asked for its refs (the feed's credentials
/// offered). Returns the branch and tag refs it listed, if it asked.
pub(crate) fn probe(remote: &Remote, list_remote: bool) -> Result<Option<Vec<String>>, GitError> {
    match Location::of(remote.url) {
        Location::Local(path) => {
            let unreachable = |reason: String| GitError::Unreachable {
                url: remote.url.to_owned(),
                reason,
            };
            if !path.exists() {
                return Err(unreachable("no such file or directory".into()));
            }
            git2::Repository::open(&path)
                .map(|_| None)
                .map_err(|_| unreachable("it is not a git repository".into()))
        }
        Location::Network if list_remote => transfer::list_refs(remote).map(Some),
        Location::Network => Ok(None),
    }
}

/// How a remote URL is reached: local repositories are read directly (see `local`),
/// everything else goes through a libgit2 transport.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Local(PathBuf),
    Network,
}

impl Location {
    /// Follows git's own rule: `scheme://` is a URL (`file://` is local), a colon
    /// before any slash makes scp-like `host:path` (ssh), anything else is a path.
    fn of(url: &str) -> Location {
        if let Some(path) = url.strip_prefix("file://") {
            return Location::Local(PathBuf::from(path));
        }
        if url.contains("://") {
            return Location::Network;
        }
        match (url.find(':'), url.find('/')) {
            (Some(colon), Some(slash)) if colon < slash => Location::Network,
            (Some(_), None) => Location::Network,
            _ => Location::Local(PathBuf::from(url)),
        }
    }
}

/// The host a network URL reaches, lower-cased, without user-info or port (an
/// `ssh://` URL and its scp-like spelling name the same host); `None` for local
/// repositories, whose access needs no credentials.
fn host_of(url: &str) -> Option<String> {
    if Location::of(url) != Location::Network {
        return None;
    }
    let authority = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())]
        }
        None => &url[..url.find(':')?],
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The kind of a buildable ref, for messages; `None` for anything else.
fn ref_kind(git_ref: &str) -> Option<(&'static str, &str)> {
    let (kind, name) = if let Some(name) = git_ref.strip_prefix("refs/heads/") {
        ("branch", name)
    } else if let Some(name) = git_ref.strip_prefix("refs/tags/") {
        ("tag", name)
    } else {
        return None;
    };
    (!name.is_empty() && git2::Reference::is_valid_name(git_ref)).then_some((kind, name))
}
