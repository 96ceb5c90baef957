//! The feed's workspace: a normal repository whose `.git` borrows the mirror's
//! objects through `objects/info/alternates` (so a checkout copies no history),
//! with the build's commit checked out detached and nothing else left in it.
//!
//! Cleaning is done by hookd, not only by libgit2: before and after the checkout,
//! every path the index does not track is deleted (untracked, ignored, nested
//! repositories, directories of removed submodules). libgit2's own
//! remove-untracked/remove-ignored leave nested repositories and cost a full
//! ignore-rule scan; one directory walk against the index is cheaper and certain.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use git2::build::CheckoutBuilder;
use git2::{Commit, Oid, Repository, RepositoryOpenFlags, SubmoduleUpdateOptions};

use super::transfer::{self, Auth, Progress};
use super::{Credentials, GitError};

/// Index mode of a submodule entry (a "gitlink").
const GITLINK: u32 = 0o160000;
/// Submodules of submodules of ...: deeper than this is a loop or a mistake.
const MAX_SUBMODULE_DEPTH: usize = 8;

pub(super) fn checkout(
    mirror_dir: &Path,
    workspace: &Path,
    commit: &str,
    creds: &Credentials,
    out: &mut dyn Write,
    cancel: &AtomicBool,
) -> Result<(), GitError> {
    if cancel.load(Ordering::Relaxed) {
        return Err(GitError::Cancelled);
    }
    let oid = Oid::from_str(commit)
        .ok()
        .filter(|_| commit.len() == 40)
        .ok_or_else(|| GitError::InvalidCommit(commit.to_owned()))?;
    let ws_err = |reason: String| GitError::Workspace {
        path: workspace.to_owned(),
        reason,
    };
    let repo = open_workspace(workspace, mirror_dir).map_err(ws_err)?;
    let target = repo
        .find_commit(oid)
        .map_err(|_| GitError::CommitNotFound(commit.to_owned()))?;
    clean_checkout(&repo, &target).map_err(ws_err)?;
    if has_gitmodules(&target) {
        // Relative submodule URLs resolve against "origin"; the mirror knows the
        // feed's URL (redacted: no secret lands in the workspace's config).
        let url = Repository::open_bare(mirror_dir)
            .and_then(|m| m.config()?.get_string("hookd.url"))
            .map_err(|e| ws_err(format!("cannot read the mirror's URL: {}", e.message())))?;
        // libgit2 joins "file:///a/b" and "../c" into "file://a/c": give it a path.
        let base = url.strip_prefix("file://").unwrap_or(&url);
        repo.config()
            .and_then(|mut c| c.set_str("remote.origin.url", base))
            .map_err(|e| ws_err(e.message().to_owned()))?;
        // The feed's credentials go only to submodules on the feed's own host: a
        // `.gitmodules` may name any host, and an HTTPS token is sent in the clear.
        let feed_host = super::host_of(base);
        let progress = RefCell::new(Progress::new(out));
        let sub = SubmoduleAuth { feed_host, creds };
        submodules(&repo, &sub, &progress, cancel, 1)?;
    }
    Ok(())
}

/// Opens the workspace repository, or makes one (discarding a broken one): the
/// workspace is disposable, and everything in it is rebuilt from the mirror.
fn open_workspace(workspace: &Path, mirror_dir: &Path) -> Result<Repository, String> {
    std::fs::create_dir_all(workspace).map_err(|e| e.to_string())?;
    let workspace = std::fs::canonicalize(workspace).map_err(|e| e.to_string())?;
    let objects = std::fs::canonicalize(mirror_dir.join("objects"))
        .map_err(|e| format!("the mirror has no object store: {e}"))?;
    let git_dir = workspace.join(".git");
    let none: [&std::ffi::OsStr; 0] = [];
    let usable = Repository::open_ext(&workspace, RepositoryOpenFlags::NO_SEARCH, none)
        .ok()
        .filter(|r| {
            r.workdir().and_then(|w| std::fs::canonicalize(w).ok()) == Some(workspace.clone())
        });
    if usable.is_none() {
        remove_path(&git_dir).map_err(|e| format!("cannot delete {}: {e}", git_dir.display()))?;
        Repository::init(&workspace).map_err(|e| e.message().to_owned())?;
    }
    let alternates = git_dir.join("objects").join("info").join("alternates");
    let wanted = format!("{}\n", objects.display());
    if std::fs::read_to_string(&alternates).ok().as_deref() != Some(wanted.as_str()) {
        std::fs::write(&alternates, wanted).map_err(|e| e.to_string())?;
    }
    // Opened again so that libgit2 reads the alternates as they are now.
    Repository::open_ext(&workspace, RepositoryOpenFlags::NO_SEARCH, none)
        .map_err(|e| e.message().to_owned())
}

/// Makes the working tree exactly `commit`: leftovers swept against the old index,
/// a forced checkout, then a sweep against the new index for what the checkout
/// cannot see (directories of submodules the commit no longer has).
fn clean_checkout(repo: &Repository, commit: &Commit<'_>) -> Result<(), String> {
    sweep(repo)?;
    let mut opts = CheckoutBuilder::new();
    opts.force();
    repo.checkout_tree(commit.as_object(), Some(&mut opts))
        .map_err(|e| format!("checkout of {} failed: {}", commit.id(), e.message()))?;
    repo.set_head_detached(commit.id())
        .map_err(|e| e.message().to_owned())?;
    sweep(repo)
}

/// Deletes every path in the working tree that the index does not track.
fn sweep(repo: &Repository) -> Result<(), String> {
    let root = repo.workdir().ok_or("the workspace repository is bare")?;
    let index = repo.index().map_err(|e| e.message().to_owned())?;
    let mut files = HashSet::new();
    let mut dirs = HashSet::new();
    let mut gitlinks = HashSet::new();
    for entry in index.iter() {
        let path = entry.path;
        for (i, b) in path.iter().enumerate() {
            if *b == b'/' {
                dirs.insert(path[..i].to_vec());
            }
        }
        if entry.mode == GITLINK {
            gitlinks.insert(path);
        } else {
            files.insert(path);
        }
    }
    let tracked = Tracked {
        files,
        dirs,
        gitlinks,
    };
    sweep_dir(root, &[], &tracked).map_err(|e| format!("cannot clean the workspace: {e}"))
}

struct Tracked {
    files: HashSet<Vec<u8>>,
    dirs: HashSet<Vec<u8>>,
    gitlinks: HashSet<Vec<u8>>,
}

fn sweep_dir(dir: &Path, rel: &[u8], tracked: &Tracked) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if rel.is_empty() && name == ".git" {
            continue;
        }
        let mut path = rel.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        let is_dir = entry.file_type()?.is_dir();
        if is_dir && tracked.gitlinks.contains(&path) {
            // A submodule: cleaned as a repository of its own.
            continue;
        }
        if is_dir && tracked.dirs.contains(&path) {
            sweep_dir(&entry.path(), &path, tracked)?;
        } else if is_dir || !tracked.files.contains(&path) {
            remove_path(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes a file or a whole tree; a build may have left directories without
/// write permission, which are opened up and tried again.
fn remove_path(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up(path);
            std::fs::remove_dir_all(path)
        }
        other => other,
    }
}

/// Gives the owner full access to every directory under `path` (best effort).
fn open_up(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&entry.path());
            }
        }
    }
}

fn has_gitmodules(commit: &Commit<'_>) -> bool {
    commit
        .tree()
        .is_ok_and(|t| t.get_name(".gitmodules").is_some())
}

/// Initialises, fetches and cleanly checks out every submodule of `repo`, then
/// theirs. libgit2's update checks out only when a submodule's HEAD moves, so the
/// clean checkout is done here again, as for the workspace itself.
fn submodules(
    repo: &Repository,
    auth: &SubmoduleAuth<'_>,
    progress: &RefCell<Progress<'_>>,
    cancel: &AtomicBool,
    depth: usize,
) -> Result<(), GitError> {
    let fail = |name: &str, reason: String| GitError::Submodule {
        name: name.to_owned(),
        reason,
    };
    if depth > MAX_SUBMODULE_DEPTH {
        return Err(fail("?", "submodules nest deeper than 8 levels".into()));
    }
    let list = repo
        .submodules()
        .map_err(|e| fail(".gitmodules", e.message().to_owned()))?;
    for mut sm in list {
        if cancel.load(Ordering::Relaxed) {
            return Err(GitError::Cancelled);
        }
        let name = sm.name().unwrap_or("?").to_owned();
        let Some(target) = sm.index_id() else {
            continue;
        };
        progress
            .borrow_mut()
            .note(&format!("submodule {name}: updating to {target}"));
        // Re-read each time: .gitmodules may have moved the submodule's URL.
        sm.init(true)
            .and_then(|()| sm.sync())
            .map_err(|e| fail(&name, transfer::redact_text(e.message())))?;
        // After init the parent's config holds the URL resolved (relative URLs
        // against the parent's remote): that is the host the fetch goes to.
        let url = repo
            .config()
            .and_then(|c| c.get_string(&format!("submodule.{name}.url")))
            .ok()
            .or_else(|| sm.url().map(str::to_owned))
            .unwrap_or_default();
        let creds = auth.for_url(&url);
        let answered = Auth::default();
        let fetch = transfer::fetch_options(creds, &answered, progress, cancel);
        let mut opts = SubmoduleUpdateOptions::new();
        opts.fetch(fetch);
        if let Err(e) = sm.update(true, Some(&mut opts)) {
            let e = transfer::transfer_error(&e, &url, creds, &answered, cancel);
            return Err(match e {
                GitError::Cancelled => e,
                other => fail(&name, other.to_string()),
            });
        }
        let sub = sm.open().map_err(|e| fail(&name, e.message().to_owned()))?;
        let commit = sub
            .find_commit(target)
            .map_err(|_| fail(&name, format!("commit {target} was not fetched")))?;
        clean_checkout(&sub, &commit).map_err(|reason| fail(&name, reason))?;
        if has_gitmodules(&commit) {
            submodules(&sub, auth, progress, cancel, depth + 1)?;
        }
    }
    Ok(())
}

/// Which credentials a submodule's fetch may use.
pub(super) struct SubmoduleAuth<'a> {
    /// The host of the feed's URL; `None` for a local feed.
    pub(super) feed_host: Option<String>,
    /// The feed's credentials, configured for that host.
    pub(super) creds: &'a Credentials,
}

impl SubmoduleAuth<'_> {
    /// The feed's credentials for a URL on the feed's host, none elsewhere.
    pub(super) fn for_url(&self, url: &str) -> &Credentials {
        static NONE: Credentials = Credentials {
            ssh_key: None,
            https_token: None,
            https_user: None,
        };
        match (&self.feed_host, super::host_of(url)) {
            (Some(feed), Some(sub)) if *feed == sub => self.creds,
            _ => &NONE,
        }
    }
}
