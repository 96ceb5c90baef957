//! The feed's bare mirror: opened (or created, or re-created when corrupt), then
//! brought up to date with exactly one ref.
//!
//! Why only the built refs: libgit2 offers the server "haves" from every local ref,
//! newest first, and gives up after a while; a mirror holding every branch spends
//! them on side branches and then downloads history again (measured: 25k objects
//! for 10 new commits with all branches held, 70 with only the built one).
//!
//! Why local repositories are not fetched: libgit2's local transport ignores the
//! refspec, walks every branch of the source and recomputes every delta (3.7 s where
//! git took 36 ms). A repository on this machine is instead shared the way
//! `git clone --shared` does: the mirror's `objects/info/alternates` names the
//! source's object store and the mirror's ref is set to the source's ref. That costs
//! nothing, and each fetch re-reads the ref, so a force-push and even a `gc` in the
//! source are harmless to the next build.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use git2::{ErrorClass, ErrorCode, ObjectType, Oid, Repository, RepositoryOpenFlags};

use super::transfer::{self, mib, Auth, Progress};
use super::{ref_kind, GitError, Location, Remote, ResolvedCommit};
use crate::feed::redact_url;

/// Config key holding the (redacted) URL a mirror was made from: a feed whose URL
/// changes gets a fresh mirror instead of one sharing the old source's objects.
const URL_KEY: &str = "hookd.url";

/// Why one attempt failed: a corrupt mirror earns one re-clone, the rest is final.
enum Failure {
    Corrupt(String),
    Final(GitError),
}

impl From<GitError> for Failure {
    fn from(e: GitError) -> Self {
        Failure::Final(e)
    }
}

pub(super) fn fetch(
    remote: &Remote,
    mirror_dir: &Path,
    git_ref: &str,
    expected: Option<&str>,
    out: &mut dyn Write,
    cancel: &AtomicBool,
) -> Result<ResolvedCommit, GitError> {
    let Some((kind, name)) = ref_kind(git_ref) else {
        return Err(GitError::InvalidRef(git_ref.to_owned()));
    };
    let progress = RefCell::new(Progress::new(out));
    let mut recloned = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(GitError::Cancelled);
        }
        let attempt = attempt(remote, mirror_dir, git_ref, (kind, name), &progress, cancel)
            .and_then(|(repo, tip)| resolve(&repo, tip, expected, &mut progress.borrow_mut()));
        match attempt {
            Ok(resolved) => return Ok(resolved),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Corrupt(reason)) if recloned => {
                return Err(GitError::CorruptMirror {
                    path: mirror_dir.to_owned(),
                    reason,
                })
            }
            Err(Failure::Corrupt(reason)) => {
                progress.borrow_mut().note(&format!(
                    "the mirror {} is unusable ({reason}); deleting it and cloning again",
                    mirror_dir.display()
                ));
                tracing::warn!(mirror = %mirror_dir.display(), %reason, "re-cloning a corrupt mirror");
                remove_dir(mirror_dir)?;
                recloned = true;
            }
        }
    }
}

/// One try: open the mirror and bring `git_ref` up to date; returns the ref's target.
fn attempt(
    remote: &Remote,
    mirror_dir: &Path,
    git_ref: &str,
    (kind, name): (&'static str, &str),
    progress: &RefCell<Progress<'_>>,
    cancel: &AtomicBool,
) -> Result<(Repository, Oid), Failure> {
    let shown = redact_url(remote.url);
    let not_found = || GitError::RefNotFound {
        kind,
        name: name.to_owned(),
        url: shown.clone(),
    };
    match Location::of(remote.url) {
        Location::Local(path) => {
            let source = open_source(&path, &shown)?;
            let tip = match source.find_reference(git_ref).and_then(|r| r.resolve()) {
                Ok(r) => r.target().ok_or_else(not_found)?,
                Err(e) if e.code() == ErrorCode::NotFound => return Err(not_found().into()),
                Err(e) => return Err(unreachable(&shown, &e).into()),
            };
            let objects = source.commondir().join("objects");
            let repo = open_mirror(mirror_dir, &shown, Some(&objects), progress)?;
            repo.reference(git_ref, tip, true, "hookd: fetch from a local repository")
                .map_err(corrupt)?;
            Ok((repo, tip))
        }
        Location::Network => {
            let repo = open_mirror(mirror_dir, &shown, None, progress)?;
            let tip = fetch_network(&repo, remote, git_ref, progress, cancel)?;
            let Some(tip) = tip else {
                // A deleted branch: drop the stale ref, so a mirror holds only refs
                // that exist (a re-created branch then negotiates from nothing stale).
                if let Ok(mut stale) = repo.find_reference(git_ref) {
                    let _ = stale.delete();
                }
                return Err(not_found().into());
            };
            Ok((repo, tip))
        }
    }
}

/// Fetches `+git_ref:git_ref` (forced: force-pushes and re-created branches just
/// replace the ref). `None` when the remote does not advertise the ref.
fn fetch_network(
    repo: &Repository,
    remote: &Remote,
    git_ref: &str,
    progress: &RefCell<Progress<'_>>,
    cancel: &AtomicBool,
) -> Result<Option<Oid>, Failure> {
    let creds = remote.credentials;
    let auth = Auth::default();
    // Anonymous: the URL (which may carry user-info) is never written to config.
    let mut origin = repo
        .remote_anonymous(remote.url)
        .map_err(|e| GitError::Unreachable {
            url: redact_url(remote.url),
            reason: transfer::scrub(e.message(), remote.url, creds),
        })?;
    let mut opts = transfer::fetch_options(creds, &auth, progress, cancel);
    let refspec = format!("+{git_ref}:{git_ref}");
    if let Err(e) = origin.fetch(&[&refspec], Some(&mut opts), Some("hookd: fetch")) {
        if is_corruption(&e) && !cancel.load(Ordering::Relaxed) {
            return Err(Failure::Corrupt(e.message().to_owned()));
        }
        return Err(transfer::transfer_error(&e, remote.url, creds, &auth, cancel).into());
    }
    drop(opts);
    let stats = origin.stats();
    if stats.received_objects() > 0 {
        progress.borrow_mut().note(&format!(
            "fetched {} objects ({}) from {}",
            stats.received_objects(),
            mib(stats.received_bytes()),
            redact_url(remote.url)
        ));
    }
    // The advertisement outlives the connection (libgit2 keeps it after fetch).
    let heads = origin.list().map_err(|e| GitError::Transfer {
        url: redact_url(remote.url),
        reason: transfer::scrub(e.message(), remote.url, creds),
    })?;
    let Some(advertised) = heads.iter().find(|h| h.name() == git_ref).map(|h| h.oid()) else {
        return Ok(None);
    };
    // The ref must now hold what the remote advertised; anything else means the
    // mirror did not take the update.
    match repo.refname_to_id(git_ref) {
        Ok(id) if id == advertised => Ok(Some(id)),
        Ok(id) => Err(Failure::Corrupt(format!(
            "{git_ref} is {id} after the fetch, the remote has {advertised}"
        ))),
        Err(e) => Err(corrupt(e)),
    }
}

/// Opens a repository on this machine as a source; failing that, it is unreachable.
fn open_source(path: &Path, shown: &str) -> Result<Repository, GitError> {
    let none: [&std::ffi::OsStr; 0] = [];
    Repository::open_ext(path, RepositoryOpenFlags::NO_SEARCH, none)
        .map_err(|e| unreachable(shown, &e))
}

fn unreachable(shown: &str, e: &git2::Error) -> GitError {
    GitError::Unreachable {
        url: shown.to_owned(),
        reason: transfer::redact_text(e.message()),
    }
}

/// Opens the mirror, creating it when absent and re-creating it when it was made
/// for another URL. `shared` is the object store of a local source to borrow.
fn open_mirror(
    dir: &Path,
    shown: &str,
    shared: Option<&Path>,
    progress: &RefCell<Progress<'_>>,
) -> Result<Repository, Failure> {
    let exists = dir.join("HEAD").exists() || dir.join("objects").exists();
    if exists {
        let repo = Repository::open_bare(dir).map_err(corrupt)?;
        let made_for = repo.config().and_then(|c| c.get_string(URL_KEY)).ok();
        if made_for.as_deref() != Some(shown) {
            drop(repo);
            progress.borrow_mut().note(&format!(
                "the mirror was made for another repository URL; starting a fresh one for {shown}"
            ));
            remove_dir(dir)?;
            return create_mirror(dir, shown, shared);
        }
        set_alternates(dir, shared)?;
        // Reopened so that libgit2 reads the alternates written just now.
        return Repository::open_bare(dir).map_err(corrupt);
    }
    if dir.exists() {
        // A directory that is no repository (a crash during creation, or stray
        // files): nothing in it is worth keeping.
        remove_dir(dir)?;
    }
    progress
        .borrow_mut()
        .note(&format!("creating the mirror {}", dir.display()));
    create_mirror(dir, shown, shared)
}

fn create_mirror(dir: &Path, shown: &str, shared: Option<&Path>) -> Result<Repository, Failure> {
    let mirror_err = |e: &dyn std::fmt::Display| GitError::Mirror {
        path: dir.to_owned(),
        reason: e.to_string(),
    };
    let repo = Repository::init_bare(dir).map_err(|e| mirror_err(&e.message()))?;
    repo.config()
        .and_then(|mut c| c.set_str(URL_KEY, shown))
        .map_err(|e| mirror_err(&e.message()))?;
    drop(repo);
    set_alternates(dir, shared)?;
    Ok(Repository::open_bare(dir).map_err(|e| mirror_err(&e.message()))?)
}

/// Makes `objects/info/alternates` name exactly `shared` (or removes it), written
/// only when it differs so that a mirror in use is not touched needlessly.
fn set_alternates(dir: &Path, shared: Option<&Path>) -> Result<(), GitError> {
    let file = dir.join("objects").join("info").join("alternates");
    let wanted = match shared {
        Some(objects) => {
            let objects = std::fs::canonicalize(objects).unwrap_or_else(|_| objects.to_owned());
            Some(format!("{}\n", objects.display()))
        }
        None => None,
    };
    let current = std::fs::read_to_string(&file).ok();
    if current == wanted {
        return Ok(());
    }
    let result = match &wanted {
        Some(text) => std::fs::create_dir_all(dir.join("objects").join("info"))
            .and_then(|()| std::fs::write(&file, text)),
        None => std::fs::remove_file(&file),
    };
    result.map_err(|e| GitError::Mirror {
        path: dir.to_owned(),
        reason: format!("cannot write {}: {e}", file.display()),
    })
}

/// Peels the fetched ref to its commit and records the subject; notes a pushed
/// commit that the mirror lacks or that is no longer the ref's newest.
fn resolve(
    repo: &Repository,
    tip: Oid,
    expected: Option<&str>,
    progress: &mut Progress<'_>,
) -> Result<ResolvedCommit, Failure> {
    let mut peeled = repo.find_object(tip, None).map_err(corrupt)?;
    // Annotated tags (even tags of tags) peel to what they name.
    while peeled.kind() == Some(ObjectType::Tag) {
        peeled = peeled
            .into_tag()
            .map_err(|_| GitError::NotACommit(tip.to_string()))?
            .target()
            .map_err(corrupt)?;
    }
    let commit = peeled.into_commit().map_err(|o| {
        GitError::NotACommit(format!("{tip} ({})", o.kind().map_or("?", |k| k.str())))
    })?;
    // A commit whose tree cannot be read would fail the checkout: catch it here,
    // where a re-clone can still repair it.
    commit.tree().map_err(corrupt)?;
    let id = commit.id().to_string();
    if let Some(pushed) = expected.filter(|p| !p.eq_ignore_ascii_case(&id)) {
        progress.note(&pushed_note(repo, pushed, &id));
    }
    let subject = String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned();
    Ok(ResolvedCommit { id, subject })
}

/// What the log says when the push named `pushed` and the build runs `id`: a tag
/// object (some forges send one for an annotated tag) is peeled, not "missing".
fn pushed_note(repo: &Repository, pushed: &str, id: &str) -> String {
    let object = Oid::from_str(pushed)
        .ok()
        .filter(|_| pushed.len() >= 40)
        .and_then(|oid| repo.find_object(oid, None).ok());
    let Some(object) = object else {
        return format!(
            "pushed commit {pushed} not found on the remote; building {id}, the branch's newest commit"
        );
    };
    if object.kind() != Some(ObjectType::Tag) {
        return format!(
            "the branch has moved on since the push of {pushed}; building {id}, its newest commit"
        );
    }
    match object.peel_to_commit() {
        Ok(peeled) if peeled.id().to_string() == id => {
            format!("tag object {pushed} peeled to commit {id}")
        }
        Ok(peeled) => format!(
            "tag object {pushed} peeled to commit {}; the tag has moved on since, building {id}",
            peeled.id()
        ),
        Err(_) => format!("tag object {pushed} names no commit; building {id}"),
    }
}

/// libgit2 errors that mean the local mirror is damaged, as opposed to the
/// network, the remote or the credentials.
fn is_corruption(e: &git2::Error) -> bool {
    matches!(
        e.class(),
        ErrorClass::Odb
            | ErrorClass::Zlib
            | ErrorClass::Object
            | ErrorClass::Reference
            | ErrorClass::Repository
            | ErrorClass::Index
            | ErrorClass::Config
    )
}

fn corrupt(e: git2::Error) -> Failure {
    Failure::Corrupt(transfer::redact_text(e.message()))
}

fn remove_dir(dir: &Path) -> Result<(), GitError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(GitError::Mirror {
            path: PathBuf::from(dir),
            reason: format!("cannot delete it: {e}"),
        }),
        _ => Ok(()),
    }
}
