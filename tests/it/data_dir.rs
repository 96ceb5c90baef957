//! The data dir at start-up: what hookd refuses to make up (the token key) and what it
//! keeps from other users (modes, whatever the umask).

use std::os::unix::fs::PermissionsExt;

use crate::support::TestDaemon;

#[test]
fn a_deleted_server_key_is_not_replaced_while_tokens_need_it() {
    let mut d = TestDaemon::start();
    let hook = d.add_feed("keyed", &["--repo", "/srv/x.git", "--command", "true"]);
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
