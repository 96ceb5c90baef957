//! Benchmark (not a test) of the mirror fetch and the checkout against the git
//! command line, on the same generated repository in the same run: first mirror
//! fetch, an incremental fetch of 10 new commits, a fetch with nothing new, and the
//! checkout, over `git daemon` on loopback and from a local path.
//!
//! A `harness = false` bench target rather than an example: `cargo bench` builds it
//! with optimisations (the libgit2 C code is optimised either way, but the Rust
//! side is not in a debug example) and `cargo test` never runs it.
//!
//! Run: `cargo bench --bench git_fetch` (about 20k commits, 2k files, 36 branches);
//! `HOOKD_BENCH_COMMITS=2000 cargo bench --bench git_fetch` for a quick run.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hookd::runner::git::{self, Credentials, Remote};

#[path = "../tests/shared/git_daemon.rs"]
mod git_daemon;
use git_daemon::GitDaemon;

const FILES: usize = 2000;
const BRANCHES: usize = 36;

fn main() {
    let commits: usize = std::env::var("HOOKD_BENCH_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let served = root.join("served.git");
    run(root, &["init", "-q", "--bare", "served.git"]);
    let started = Instant::now();
    let mut clock = 1_600_000_000u64;
    import(&served, &history(commits, &mut clock));
    let objects = run(&served, &["count-objects", "-v"]);
    println!(
        "generated {commits} commits, {FILES} files, {BRANCHES} branches in {:.1?} ({})",
        started.elapsed(),
        objects
            .lines()
            .find(|l| l.starts_with("in-pack"))
            .unwrap_or("")
    );
    let daemon = GitDaemon::serve(root);
    let url = daemon.url("served.git");
    let path = served.display().to_string();
    let mut rows = Vec::new();
    for (label, url, cli_clone_args) in [
        ("git://", url.as_str(), vec!["clone", "-q", "--mirror"]),
        ("path", path.as_str(), vec!["clone", "-q", "--mirror"]),
    ] {
        let work = root.join(label.replace([':', '/'], ""));
        std::fs::create_dir_all(&work).expect("mkdir");
        let mirror = work.join("mirror.git");
        let cli = work.join("cli.git");
        let first = time(|| fetch(url, &mirror));
        let mut args = cli_clone_args.clone();
        args.extend([url, cli.to_str().expect("utf-8 path")]);
        let first_cli = time(|| drop(run(&work, &args)));
        rows.push((format!("{label} first mirror fetch"), first, first_cli));

        import(&served, &more_commits(10, &mut clock));
        let incr = time(|| fetch(url, &mirror));
        let incr_cli = time(|| drop(run(&cli, &["fetch", "-q", url, "main"])));
        rows.push((format!("{label} fetch 10 new commits"), incr, incr_cli));

        let noop = time(|| fetch(url, &mirror));
        let noop_cli = time(|| drop(run(&cli, &["fetch", "-q", url, "main"])));
        rows.push((format!("{label} fetch, nothing new"), noop, noop_cli));
        if label != "git://" {
            continue;
        }
        let sha = run(&served, &["rev-parse", "main"]);
        let ws = work.join("ws");
        let co = time(|| checkout(&mirror, &ws, &sha));
        run(
            &work,
            &[
                "clone",
                "-q",
                "--shared",
                "--no-checkout",
                "cli.git",
                "cliws",
            ],
        );
        let cliws = work.join("cliws");
        let co_cli = time(|| drop(run(&cliws, &["checkout", "-q", "--detach", &sha])));
        rows.push(("checkout into an empty workspace".into(), co, co_cli));
        // The steady state: the next build of a new commit in a used workspace.
        std::fs::write(ws.join("left-by-build.o"), "x").expect("write");
        std::fs::write(cliws.join("left-by-build.o"), "x").expect("write");
        let older = run(&served, &["rev-parse", "main~5"]);
        let again = time(|| checkout(&mirror, &ws, &older));
        let again_cli = time(|| {
            run(&cliws, &["checkout", "-q", "-f", "--detach", &older]);
            run(&cliws, &["clean", "-q", "-ffdx"]);
        });
        rows.push(("checkout + clean, used workspace".into(), again, again_cli));
    }
    println!("\n| step | hookd (libgit2) | git CLI |\n|---|---:|---:|");
    for (step, ours, theirs) in rows {
        println!("| {step} | {} | {} |", ms(ours), ms(theirs));
    }
}

fn fetch(url: &str, mirror: &Path) {
    let creds = Credentials::default();
    let remote = Remote {
        url,
        credentials: &creds,
    };
    let cancel = AtomicBool::new(false);
    git::fetch(
        &remote,
        mirror,
        "refs/heads/main",
        None,
        &mut std::io::sink(),
        &cancel,
    )
    .expect("fetch");
}

fn checkout(mirror: &Path, ws: &Path, sha: &str) {
    git::checkout(
        mirror,
        ws,
        sha,
        &Credentials::default(),
        &mut std::io::sink(),
        &AtomicBool::new(false),
    )
    .expect("checkout");
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn import(repo: &Path, stream: &[u8]) {
    let mut child = Command::new("git")
        .current_dir(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stream)
        .expect("feed fast-import");
    assert!(child.wait().expect("wait").success());
}

fn commit(
    out: &mut Vec<u8>,
    branch: &str,
    from: Option<&str>,
    clock: &mut u64,
    n: usize,
    files: &[usize],
) {
    *clock += 60;
    let msg = format!("commit {n} on {branch}\n");
    let _ = write!(
        out,
        "commit refs/heads/{branch}\ncommitter Bench <b@example.com> {clock} +0000\ndata {}\n{msg}",
        msg.len()
    );
    if let Some(from) = from {
        let _ = writeln!(out, "from {from}");
    }
    for f in files {
        let body = format!(
            "file {f}\nchanged by commit {n} on {branch}\n{}\n",
            "x".repeat(200)
        );
        let _ = write!(
            out,
            "M 100644 inline dir{}/file{f}.txt\ndata {}\n{body}\n",
            f % 40,
            body.len()
        );
    }
}

/// `commits` on main (the first adds every file, each later one changes one), plus
/// side branches forked along the way with newer commits of their own.
fn history(commits: usize, clock: &mut u64) -> Vec<u8> {
    let mut out = Vec::new();
    let all: Vec<usize> = (0..FILES).collect();
    commit(&mut out, "main", None, clock, 0, &all);
    for n in 1..commits {
        commit(&mut out, "main", None, clock, n, &[(n * 7919) % FILES]);
        if n % (commits / BRANCHES).max(1) == 0 && n / (commits / BRANCHES).max(1) <= BRANCHES {
            let _ = writeln!(out, "reset refs/heads/side{n}\nfrom refs/heads/main\n");
        }
    }
    // Side branches get their commits last: they are newer than main's tip.
    for n in 1..commits {
        if n % (commits / BRANCHES).max(1) == 0 && n / (commits / BRANCHES).max(1) <= BRANCHES {
            for k in 0..5 {
                commit(
                    &mut out,
                    &format!("side{n}"),
                    None,
                    clock,
                    k,
                    &[(n + k) % FILES],
                );
            }
        }
    }
    out
}

fn more_commits(count: usize, clock: &mut u64) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..count {
        let from = (k == 0).then_some("refs/heads/main^0");
        commit(&mut out, "main", from, clock, 100_000 + k, &[k % FILES]);
    }
    out
}
