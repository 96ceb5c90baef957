//! The README's first sections, run as written: the install command as root and as a
//! sudoer, and the quick start's blocks against a real daemon, each reply compared byte
//! for byte with the one the README prints.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::{wait_for, GitRepo, BIN};

const README: &str = include_str!("../../README.md");

/// The text of `## TITLE` up to the next `## ` heading.
fn section(title: &str) -> &'static str {
    let start = README
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has no section {title:?}"));
    let rest = &README[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The ```sh blocks of a section, in order.
fn sh_blocks(text: &str) -> Vec<&str> {
    text.split("```sh\n")
        .skip(1)
        .map(|b| b.split("\n```").next().expect("closed block"))
        .collect()
}

#[test]
fn the_install_command_works_as_root_and_as_a_sudoer() {
    let block = sh_blocks(section("Run it and test it"))[0];
    for (uid, with_sudo, expected) in [("0", false, ""), ("0", true, ""), ("1000", true, "sudo ")] {
        let stubs = tempfile::tempdir().unwrap();
        let log = stubs.path().join("log");
        let stub = |name: &str, body: &str| {
            let path = stubs.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        stub("id", &format!("echo {uid}"));
        stub("apt-get", "echo \"apt-get $*\" >> \"$LOG\"");
        stub("cargo", "echo \"cargo $*\" >> \"$LOG\"");
        if with_sudo {
            stub("sudo", "printf 'sudo ' >> \"$LOG\"; exec \"$@\"");
        }
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(block)
            .env_clear()
            .env("PATH", stubs.path())
            .env("LOG", &log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "uid {uid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ran = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = ran.lines().collect();
        assert_eq!(lines.len(), 3, "uid {uid}:\n{ran}");
        assert_eq!(lines[0], format!("{expected}apt-get update"), "uid {uid}");
        assert!(
            lines[1].starts_with(&format!("{expected}apt-get install -y ")),
            "uid {uid}: {ran}"
        );
        assert_eq!(lines[2], "cargo run --release -- serve", "uid {uid}");
    }
}

/// One command of a block, with the replies the README prints right after it.
struct Step {
    command: String,
    replies: Vec<String>,
}

/// Splits a block into commands (continuation lines joined) and their `# {` replies;
/// other comments are prose.
fn steps(block: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut pending = String::new();
    let mut after_command = false;
    for line in block.lines() {
        if line.is_empty() {
            after_command = false;
            continue;
        }
        if let Some(reply) = line.strip_prefix("# {") {
            assert!(after_command, "reply without a command: {line}");
            let step = steps.last_mut().expect("a command");
            step.replies.push(format!("{{{reply}"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        pending.push_str(line);
        if line.ends_with('\\') {
            pending.push('\n');
            continue;
        }
        steps.push(Step {
            command: std::mem::take(&mut pending),
            replies: Vec::new(),
        });
        after_command = true;
    }
    steps
}

/// `actual` is `expected` with each `<time>` an RFC 3339 UTC time.
fn matches(expected: &str, actual: &str) -> bool {
    let mut rest = actual;
    for (i, piece) in expected.split("<time>").enumerate() {
        if i > 0 {
            let Some(time) = rest.get(..20) else {
                return false;
            };
            let shape_ok = time.bytes().enumerate().all(|(j, c)| match j {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'Z',
                _ => c.is_ascii_digit(),
            });
            if !shape_ok {
                return false;
            }
            rest = &rest[20..];
        }
        let Some(after) = rest.strip_prefix(piece) else {
            return false;
        };
        rest = after;
    }
    rest.is_empty()
}

/// `hookd serve` with no config in `dir`, as the first README command runs it (but
/// on a port of the kernel's choice).
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> (Served, String) {
    let log = std::fs::File::create(dir.join("../serve.log")).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("HOOKD_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let served = Served(child);
    let listen = wait_for(30, "the README's daemon answers", || {
        let out = Command::new(BIN)
            .args(["admin", "--json", "status"])
            .current_dir(dir)
            .env_remove("HOOKD_SOCKET")
            .env_remove("HOOKD_CONFIG")
            .output()
            .ok()?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        status["listen"].as_str().map(str::to_owned)
    });
    (served, listen)
}

#[test]
fn the_quick_start_runs_as_written_and_its_replies_are_real() {
    let top = tempfile::tempdir().unwrap();
    // "In the clone": a repository with a main branch, where the daemon was started.
    let clone = GitRepo::new(top.path().join("hookd"));
    let (_daemon, listen) = serve(&clone.path);

    const CARGO_HOOKD: &str = "hookd() { cargo run -q --release -- \"$@\"; }";
    let blocks = sh_blocks(section("Quick start"));
    assert!(blocks.len() >= 2, "quick start and scripts blocks");
    assert!(blocks[0].starts_with(CARGO_HOOKD), "{}", blocks[0]);
    let define = format!("hookd() {{ '{BIN}' \"$@\"; }}");
    let mut token: Option<String> = None;
    let mut assignments = String::new();
    let mut compared = 0;
    for step in blocks.iter().flat_map(|b| steps(b)) {
        if step.command == CARGO_HOOKD {
            continue;
        }
        let mut command = step.command.replace("127.0.0.1:8080", &listen);
        if command.contains("<token>") {
            let token = token.as_deref().expect("a hook URL printed before its use");
            command = command.replace("<token>", token);
        }
        // A plain assignment (`sig=$(…)`) holds for the commands after it.
        if command.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        }) {
            assignments.push_str(&command);
            assignments.push('\n');
            continue;
        }
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{define}\n{assignments}{command}"))
            .current_dir(&clone.path)
            .env_remove("HOOKD_SOCKET")
            .env_remove("HOOKD_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{command}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(at) = stdout.find(&format!("http://{listen}/hooks/")) {
            let url = stdout[at..].split_whitespace().next().unwrap();
            token = Some(url.rsplit('/').next().unwrap().to_owned());
        }
        for expected in &step.replies {
            assert!(
                matches(expected, stdout.trim_end_matches('\n')),
                "{command}\nREADME: {expected}\nreal:   {stdout}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 5, "only {compared} replies compared");
}

#[test]
fn reply_shapes_match_with_times_only_where_marked() {
    assert!(matches(
        r#"{"run_at":"<time>"}"#,
        r#"{"run_at":"2026-12-01T01:59:27Z"}"#
    ));
    assert!(!matches(r#"{"run_at":"<time>"}"#, r#"{"run_at":"soon"}"#));
    assert!(!matches(r#"{"build":1}"#, r#"{"build":1} "#));
}

/// Dotted paths of every value in a TOML table (`http.max_body_bytes`).
fn key_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) => key_paths(inner, &format!("{path}."), out),
            _ => out.push(path),
        }
    }
}

#[test]
fn the_config_reference_is_a_real_config_and_documents_every_printed_key() {
    let reference = section("Config reference")
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a toml block");
    let raw: Result<hookd::config::RawConfig, _> = toml::from_str(reference);
    assert!(raw.is_ok(), "README config reference: {}", raw.unwrap_err());
    let mut documented = Vec::new();
    key_paths(&toml::from_str(reference).unwrap(), "", &mut documented);

    let out = Command::new(BIN)
        .arg("check-config")
        .env_remove("HOOKD_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let mut keys = Vec::new();
    key_paths(&printed, "", &mut keys);
    for key in keys {
        assert!(
            documented.contains(&key),
            "check-config prints {key}, which the README's config reference lacks"
        );
    }
}
