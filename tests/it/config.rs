//! `hookd check-config` as an operator uses it: effective settings that can be pasted
//! back, and every refusal naming the file, the key and its line.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::BIN;

fn check_config(path: &Path) -> Output {
    Command::new(BIN)
        .arg("check-config")
        .arg("--config")
        .arg(path)
        .env_remove("HOOKD_CONFIG")
        .output()
        .expect("run hookd check-config")
}

fn refusal(dir: &Path, text: &str) -> String {
    let path = dir.join("hookd.toml");
    std::fs::write(&path, text).unwrap();
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(1), "accepted:\n{text}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_config_prints_settings_that_paste_back() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("web.token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let first = dir.path().join("first.toml");
    std::fs::write(
        &first,
        format!(
            "store_cache_mb = 32\nlog_level = \"hookd=debug,info\"\n\
             [http]\nrequest_timeout_secs = 9\n\
             [builds]\nkill_grace_secs = 4\nenv = {{ CARGO_HOME = \"/c\" }}\n\
             [feeds.web]\nhttps_token_file = {:?}\n",
            token.display()
        ),
    )
    .unwrap();
    let out = check_config(&first);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.starts_with("# config OK: "), "{printed}");
    for documented in [
        "store_cache_mb = 32\n",
        "request_timeout_secs = 9\n",
        "kill_grace_secs = 4\n",
        "allow_sha1_signatures = false\n",
        "CARGO_HOME = \"/c\"",
    ] {
        assert!(printed.contains(documented), "{documented}:\n{printed}");
    }
    for internal in [
        "store_cache_bytes",
        "allow_sha1 ",
        "kill_grace ",
        "nanos",
        "build_env",
    ] {
        assert!(!printed.contains(internal), "{internal}:\n{printed}");
    }
    // Pasted back as a config, it is accepted and means the same.
    let second = dir.path().join("second.toml");
    std::fs::write(&second, &printed).unwrap();
    let out = check_config(&second);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reprinted = String::from_utf8(out.stdout).unwrap();
    let settings = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(settings(&reprinted), settings(&printed));
}

#[test]
fn a_log_level_that_would_silence_the_daemon_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = refusal(dir.path(), "workers = 2\nlog_level = \"verbose\"\n");
    let path = dir.path().join("hookd.toml").display().to_string();
    assert!(
        err.contains(&format!(
            "{path}, line 2, log_level: \"verbose\" is not a log filter"
        )),
        "{err}"
    );
    assert!(err.contains("TARGET=LEVEL"), "{err}");
    // serve refuses it too, instead of running without a single log line.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("hookd.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log_level"));
}

#[test]
fn missing_or_unreadable_credential_files_are_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml").display().to_string();
    let missing = dir.path().join("missing_key");
    let err = refusal(
        dir.path(),
        &format!(
            "[feeds.web]\nhttps_user = \"u\"\nssh_key = {:?}\n",
            missing.display()
        ),
    );
    assert!(
        err.contains(&format!(
            "{path}, line 3, feeds.web.ssh_key: cannot read {}",
            missing.display()
        )),
        "{err}"
    );
    // A directory where the token file should be cannot be read either.
    let err = refusal(
        dir.path(),
        &format!(
            "[feeds.api]\nhttps_token_file = {:?}\n",
            dir.path().display()
        ),
    );
    assert!(
        err.contains(&format!(
            "{path}, line 2, feeds.api.https_token_file: cannot read"
        )),
        "{err}"
    );
}

#[test]
fn every_refusal_names_file_key_and_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml").display().to_string();
    let cases = [
        (
            "listen = \"127.0.0.1:1\"\nworkers = 0\n",
            "line 2, workers: must be at least 1",
        ),
        (
            "listen = \"nowhere\"\n",
            "line 1, listen: \"nowhere\" is not an IP:port",
        ),
        (
            "[http]\n\nmax_body_bytes = 0\n",
            "line 3, http.max_body_bytes: must be",
        ),
        ("public_url = \"ftp://x\"\n", "line 1, public_url: "),
        ("[feeds.\"Web\"]\n", "line 1, feeds.Web: "),
    ];
    for (text, expected) in cases {
        let err = refusal(dir.path(), text);
        assert!(
            err.starts_with(&format!("hookd: invalid config {path}, {expected}")),
            "{text}: {err}"
        );
    }
    // A missing file is reported once, not twice over.
    let out = check_config(&dir.path().join("absent.toml"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}
