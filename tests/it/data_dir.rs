//! The data dir at start-up: what hookd refuses to make up (the token key) and what it
//! keeps from other users (modes, whatever the umask).

use std::os::unix::fs::PermissionsExt;

use crate::support::{GitRepo, Launch, TestDaemon};

#[test]
fn a_deleted_server_key_is_not_replaced_while_tokens_need_it() {
    let mut d = TestDaemon::start();
    let hook = d.add_unbuilt_feed("keyed", &[]);
    d.admin_ok(&["feed", "pause", "keyed"]);
    d.kill9();
    let key_file = d.data_dir().join("server.key");
    let key = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();

    let (code, stderr) = d.serve_refused();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("server.key is missing") && stderr.contains("backup"),
        "{stderr}"
    );
    assert!(!key_file.exists(), "a new key was made");

    std::fs::write(&key_file, key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.restart();
    assert_eq!(
        d.post(&hook, &[], b"").status,
        202,
        "the old hook URL works again"
    );
}

/// Every path below `dir` (symlinks not followed) with its permission bits.
fn modes_below(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_symlink() {
                continue;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.push((entry.path(), meta.permissions().mode() & 0o7777));
        }
    }
    out
}

#[test]
fn nothing_in_the_data_dir_is_open_to_other_users_whatever_the_umask() {
    let how = Launch {
        umask: Some(0),
        ..Launch::default()
    };
    let mut d = TestDaemon::start_launched("", &[], how);
    let repo = GitRepo::new(d.dir.path().join("repo"));
    let hook = d.add_repo_feed(
        "modes",
        &repo,
        "echo hi > made-by-build; mkdir -p out/deep",
        &["--cooldown", "0"],
    );
    let build = |d: &TestDaemon| {
        let reply = d.post(&hook, &[], b"");
        assert_eq!(reply.status, 202, "{}", reply.body);
        let id = reply.json()["build"].as_u64().unwrap();
        assert_eq!(d.wait_build(id, 60)["status"], "succeeded");
    };
    build(&d);
    // A data dir left open by an earlier install or by hand.
    d.kill9();
    let data = d.data_dir();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.restart();
    repo.commit("README", "again\n", "second commit");
    build(&d);

    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "data dir mode {mode:o}");
    assert!(d.logs().contains("tightened"), "{}", d.logs());
    let open: Vec<String> = modes_below(&data)
        .into_iter()
        .filter(|(_, mode)| mode & 0o007 != 0)
        .map(|(path, mode)| format!("{mode:04o} {}", path.display()))
        .collect();
    assert!(open.is_empty(), "open to other users:\n{}", open.join("\n"));
    assert!(data.join("workspaces/modes/made-by-build").exists());
}
