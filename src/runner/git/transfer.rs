//! What every libgit2 network transfer here needs: credentials that are offered at
//! most once each (libgit2 asks again after every rejection, forever), progress
//! lines for the build log at a modest rate, cancel checks, and the mapping of
//! libgit2 errors to [`GitError`] with secrets scrubbed from their text.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, RemoteCallbacks};

use super::{Credentials, GitError};
use crate::feed::redact_url;

/// How often a long transfer reports; more would swamp the build log.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// The build log plus the time of the last progress line.
pub(super) struct Progress<'w> {
    out: &'w mut dyn Write,
    last: Option<Instant>,
}

impl<'w> Progress<'w> {
    pub(super) fn new(out: &'w mut dyn Write) -> Self {
        Progress { out, last: None }
    }

    /// A line for the build log. A log that cannot be written must not fail the
    /// fetch (the runner reports log trouble itself), so write errors are dropped.
    pub(super) fn note(&mut self, line: &str) {
        let _ = writeln!(self.out, "[git] {line}");
        let _ = self.out.flush();
    }

    /// A progress line, unless one was written less than `PROGRESS_EVERY` ago.
    fn tick(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < PROGRESS_EVERY)
        {
            return;
        }
        if self.last.is_none() {
            // The first callback comes right after the connection: wait a period
            // so that quick fetches print only their summary.
            self.last = Some(now);
            return;
        }
        self.last = Some(now);
        self.note(&line());
    }
}

/// "12.3 MiB", for progress lines.
pub(super) fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What the credential callback did, so that a failed fetch can say why.
#[derive(Default)]
pub(super) struct Auth {
    /// Credential types already offered; libgit2 asks again after a rejection.
    offered: Cell<u32>,
    /// Requests made: a hard cap in case a transport asks with changing types.
    asked: Cell<u32>,
    /// Set when the remote rejected what was offered.
    rejected: Cell<bool>,
    /// Set when the remote wanted credentials that the feed does not configure.
    missing: Cell<Option<&'static str>>,
}

impl Auth {
    /// One answer to libgit2's credential request; `Err` stops the transfer.
    pub(super) fn answer(
        &self,
        creds: &Credentials,
        user_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        self.asked.set(self.asked.get() + 1);
        let kind = if allowed.contains(CredentialType::SSH_KEY) {
            CredentialType::SSH_KEY
        } else if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            CredentialType::USER_PASS_PLAINTEXT
        } else if allowed.contains(CredentialType::USERNAME) {
            CredentialType::USERNAME
        } else {
            self.missing
                .set(Some("a credential type hookd does not support"));
            return Err(git2::Error::from_str("unsupported credential type"));
        };
        if self.offered.get() & kind.bits() != 0 || self.asked.get() > 4 {
            self.rejected.set(true);
            return Err(git2::Error::from_str("credentials rejected"));
        }
        self.offered.set(self.offered.get() | kind.bits());
        let ssh_user = user_from_url.unwrap_or("git");
        if kind == CredentialType::USERNAME {
            return Cred::username(ssh_user);
        }
        if kind == CredentialType::SSH_KEY {
            let Some(key) = &creds.ssh_key else {
                self.missing.set(Some("an SSH key"));
                return Err(git2::Error::from_str("no ssh key configured"));
            };
            return Cred::ssh_key(ssh_user, None, key, None);
        }
        let Some(token) = &creds.https_token else {
            self.missing.set(Some("an HTTPS token"));
            return Err(git2::Error::from_str("no https token configured"));
        };
        let user = creds.https_user.as_deref().unwrap_or("x-access-token");
        Cred::userpass_plaintext(user, token)
    }
}

/// Fetch options for one transfer: credentials, progress to `progress`, cancel.
pub(super) fn fetch_options<'a>(
    creds: &'a Credentials,
    auth: &'a Auth,
    progress: &'a RefCell<Progress<'_>>,
    cancel: &'a AtomicBool,
) -> FetchOptions<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |_url, user, allowed| auth.answer(creds, user, allowed));
    callbacks.transfer_progress(move |stats| {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        if let Ok(mut p) = progress.try_borrow_mut() {
            p.tick(|| {
                format!(
                    "received {}/{} objects ({}), indexed {}",
                    stats.received_objects(),
                    stats.total_objects(),
                    mib(stats.received_bytes()),
                    stats.indexed_objects()
                )
            });
        }
        true
    });
    // The server's "Counting objects" chatter is not worth the log space, but it
    // arrives while the server works, which is when cancel most needs an ear.
    callbacks.sideband_progress(move |_| !cancel.load(Ordering::Relaxed));
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks)
        .download_tags(git2::AutotagOption::None)
        .update_fetchhead(false);
    opts
}

/// Removes anything secret from a libgit2 message: the configured URL (which may
/// carry user-info), any other URL's user-info, and the token itself.
pub(super) fn scrub(message: &str, url: &str, creds: &Credentials) -> String {
    let mut text = if url.is_empty() {
        message.to_owned()
    } else {
        message.replace(url, &redact_url(url))
    };
    text = redact_text(&text);
    if let Some(token) = creds.https_token.as_deref().filter(|t| !t.is_empty()) {
        text = text.replace(token, "***");
    }
    text
}

/// Redacts every URL in a free text (words split on spaces and quotes).
pub(super) fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if c == ' ' || c == '\'' || c == '"' {
            out.push_str(&redact_url(&word));
            word.clear();
            out.push(c);
        } else {
            word.push(c);
        }
    }
    out.push_str(&redact_url(&word));
    out
}

/// The error a failed network transfer means, judged by what the callbacks saw
/// first (cancel, credentials) and then by libgit2's class and code.
pub(super) fn transfer_error(
    e: &git2::Error,
    url: &str,
    creds: &Credentials,
    auth: &Auth,
    cancel: &AtomicBool,
) -> GitError {
    if cancel.load(Ordering::Relaxed) {
        return GitError::Cancelled;
    }
    let shown = redact_url(url);
    if let Some(what) = auth.missing.get() {
        return GitError::Credentials {
            url: shown,
            reason: format!("the remote asks for {what}, and the feed configures none"),
        };
    }
    if auth.rejected.get() || e.code() == ErrorCode::Auth {
        return GitError::Credentials {
            url: shown,
            reason: "the remote rejected the configured credentials".into(),
        };
    }
    let reason = scrub(e.message(), url, creds);
    match (e.class(), e.code()) {
        (_, ErrorCode::Certificate) | (ErrorClass::Net | ErrorClass::Ssl | ErrorClass::Os, _) => {
            GitError::Unreachable { url: shown, reason }
        }
        (ErrorClass::Ssh, _) if e.message().contains("connect") => {
            GitError::Unreachable { url: shown, reason }
        }
        _ => GitError::Transfer { url: shown, reason },
    }
}

/// The branch and tag refs a network remote advertises (`git ls-remote`), asked with
/// the feed's credentials and the usual timeouts.
pub(super) fn list_refs(remote: &super::Remote) -> Result<Vec<String>, GitError> {
    let creds = remote.credentials;
    let auth = Auth::default();
    let never = AtomicBool::new(false);
    let failed = |e: &git2::Error| transfer_error(e, remote.url, creds, &auth, &never);
    let mut detached = git2::Remote::create_detached(remote.url).map_err(|e| failed(&e))?;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_url, user, allowed| auth.answer(creds, user, allowed));
    let connection = detached
        .connect_auth(git2::Direction::Fetch, Some(callbacks), None)
        .map_err(|e| failed(&e))?;
    let heads = connection.list().map_err(|e| failed(&e))?;
    Ok(heads
        .iter()
        .map(|head| head.name().to_owned())
        .filter(|name| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        .filter(|name| !name.ends_with("^{}"))
        .collect())
}
