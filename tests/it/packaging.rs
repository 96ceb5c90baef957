//! Packaging: the man pages, completions and systemd unit the .deb ships, checked
//! against the real binary that generates them.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::BIN;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hookd.service");

/// Runs hookd and returns its stdout, failing the test on a non-zero exit.
fn hookd(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run hookd");
    assert_success(&out, &format!("hookd {}", args.join(" ")));
    String::from_utf8(out.stdout).expect("hookd prints UTF-8")
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `name` on PATH, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[test]
fn man_prints_roff_naming_every_subcommand() {
    let page = hookd(&["man"]);
    assert!(page.contains(".TH hookd 1"), "no roff title line:\n{page}");
    assert!(
        page.contains(".SH SYNOPSIS"),
        "no SYNOPSIS section:\n{page}"
    );
    // roff escapes the hyphens: hookd\-check\-config(1).
    for sub in ["serve", "check\\-config", "admin", "completions", "man"] {
        let reference = format!("hookd\\-{sub}(1)");
        assert!(page.contains(&reference), "{reference} missing:\n{page}");
    }
}

#[test]
fn man_out_dir_writes_the_pages_hookd_1_refers_to() {
    let dir = tempfile::tempdir().unwrap();
    hookd(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    for page in [
        "hookd.1",
        "hookd-serve.1",
        "hookd-check-config.1",
        "hookd-admin.1",
        "hookd-admin-feed-add.1",
        "hookd-completions.1",
        "hookd-man.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page} not written");
    }
    assert!(
        !dir.path().join("hookd-help.1").exists(),
        "help needs no page"
    );
}

#[test]
fn completions_bash_is_a_bash_completion_script() {
    let script = hookd(&["completions", "bash"]);
    assert!(
        script.contains("_hookd()"),
        "no completion function:\n{script}"
    );
    assert!(script.contains("complete -F _hookd"), "never registered");
    assert!(script.contains("check-config"), "subcommands not offered");
    if let Some(bash) = on_path("bash") {
        let out = Command::new(bash)
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert_success(&out, "bash -n on the completion script");
    }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Some(analyze) = on_path("systemd-analyze") else {
        eprintln!("note: systemd-analyze not found; skipping the unit check");
        return;
    };
    // verify wants ExecStart= to exist and Documentation=man:hookd(1) to resolve: point
    // the unit at the test binary and MANPATH at freshly generated pages.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/hookd "),
        "unit's ExecStart moved"
    );
    let unit_path = dir.path().join("hookd.service");
    std::fs::write(
        &unit_path,
        unit.replace("ExecStart=/usr/bin/hookd ", &format!("ExecStart={BIN} ")),
    )
    .unwrap();
    let man = dir.path().join("man");
    std::fs::create_dir_all(man.join("man1")).unwrap();
    hookd(&["man", "--out-dir", man.join("man1").to_str().unwrap()]);

    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit_path)
        .env("MANPATH", &man)
        .output()
        .expect("run systemd-analyze");
    assert_success(&out, "systemd-analyze verify hookd.service");
    // Unknown keys and bad values are warnings with exit 0: any line naming the unit fails.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains("hookd")).collect();
    assert!(complaints.is_empty(), "systemd-analyze:\n{stderr}");
}
