//! Human-readable output of admin replies: short tables and key/value blocks.

use std::fmt::Write;

use crate::admin::proto::{BuildView, FeedView, Reply, TokenView};
use crate::feed::CommandSpec;

/// Formats a reply for a terminal.
pub fn text(reply: &Reply) -> String {
    let mut out = String::new();
    match reply {
        Reply::Error(message) | Reply::Done(message) => {
            let _ = writeln!(out, "{message}");
        }
        Reply::Feed(feed) => feed_block(&mut out, feed),
        Reply::Feeds(feeds) if feeds.is_empty() => {
            out.push_str("no feeds (add one with `hookd admin feed add`)\n")
        }
        Reply::Feeds(feeds) => {
            let _ = writeln!(out, "{:<24} {:<8} {:<10} REPO", "NAME", "STATE", "COOLDOWN");
            for f in feeds {
                let state = if f.paused { "paused" } else { "active" };
                let cooldown = format!("{}s/{}", f.cooldown_secs, f.on_cooldown);
                let _ = writeln!(
                    out,
                    "{:<24} {:<8} {:<10} {}",
                    f.name, state, cooldown, f.repo
                );
            }
        }
        Reply::Tokens(tokens) if tokens.is_empty() => {
            out.push_str("no active tokens (add one with `hookd admin token add`)\n")
        }
        Reply::Tokens(tokens) => tokens.iter().for_each(|t| token_line(&mut out, t)),
        Reply::Triggered(t) => {
            let _ = write!(out, "{} build {}", t.status, t.build);
            if let Some(run_at) = &t.run_at {
                let _ = write!(out, " (runs at {run_at})");
            }
            out.push('\n');
        }
        Reply::Queue(q) => {
            if q.running.is_empty() && q.queued.is_empty() && q.deferred.is_empty() {
                out.push_str("queue is empty\n");
            }
            for (title, builds) in [
                ("running", &q.running),
                ("queued", &q.queued),
                ("deferred", &q.deferred),
            ] {
                if !builds.is_empty() {
                    let _ = writeln!(out, "{title}:");
                    builds.iter().for_each(|b| build_line(&mut out, b));
                }
            }
        }
        Reply::Builds(builds) if builds.is_empty() => out.push_str("no builds\n"),
        Reply::Builds(builds) => {
            let _ = writeln!(
                out,
                "{:>7} {:<20} {:<16} {:<11} {:<9} {:<10} STARTED",
                "ID", "FEED", "BRANCH", "STATUS", "TRIGGER", "COMMIT"
            );
            builds.iter().for_each(|b| build_line(&mut out, b));
        }
        Reply::Build(b) => build_block(&mut out, b),
        Reply::LogChunk(text) => out.push_str(text),
        Reply::LogEnd(_) => {}
        Reply::Deliveries(ds) if ds.is_empty() => out.push_str("no deliveries yet\n"),
        Reply::Deliveries(ds) => {
            for d in ds {
                let _ = writeln!(
                    out,
                    "{}  {:<16} {:<12} {} {:<10} {}{}",
                    d.at,
                    d.provider,
                    short(&d.event, 12),
                    d.http_status,
                    d.outcome,
                    d.git_ref.as_deref().unwrap_or("-"),
                    d.reason
                        .as_deref()
                        .map(|r| format!("  ({r})"))
                        .unwrap_or_default(),
                );
            }
        }
        Reply::Backup(b) => {
            out.push_str(&serde_json::to_string_pretty(b).unwrap_or_default());
            out.push('\n');
        }
        Reply::Status(s) => {
            let _ = writeln!(out, "hookd {}\nuptime:   {} s\nlisten:   {}\ndata dir: {}\nworkers:  {}\nfeeds:    {}\nrunning:  {}\nqueued:   {}",
                s.version, s.uptime_secs, s.listen, s.data_dir, s.workers, s.feeds, s.running, s.queued);
        }
    }
    out
}

fn feed_block(out: &mut String, f: &FeedView) {
    let command = match &f.command {
        CommandSpec::Shell(s) => format!("sh -c {s:?}"),
        CommandSpec::Argv(words) => words.join(" "),
    };
    let _ = writeln!(out, "feed:        {}", f.name);
    let _ = writeln!(out, "repo:        {}", f.repo);
    let _ = writeln!(out, "branches:    {}", f.branches.join(", "));
    let _ = writeln!(out, "command:     {command}");
    let _ = writeln!(
        out,
        "cooldown:    {} s ({})",
        f.cooldown_secs, f.on_cooldown
    );
    let _ = writeln!(out, "timeout:     {} s", f.timeout_secs);
    let _ = writeln!(
        out,
        "secret:      {}",
        if f.has_secret { "set" } else { "none" }
    );
    let _ = writeln!(
        out,
        "state:       {}",
        if f.paused { "paused" } else { "active" }
    );
    for t in &f.hook_urls {
        if let Some(url) = &t.url {
            let _ = writeln!(out, "hook URL:    {url}  ({}, id {})", t.label, t.id);
        }
    }
}

fn token_line(out: &mut String, t: &TokenView) {
    match (&t.url, &t.revoked) {
        (_, Some(revoked)) => {
            let _ = writeln!(out, "{}  {:<16} revoked {revoked}", t.id, t.label);
        }
        (Some(url), None) => {
            let _ = writeln!(out, "{}  {:<16} {url}", t.id, t.label);
        }
        (None, None) => {
            let _ = writeln!(out, "{}  {}", t.id, t.label);
        }
    }
}

fn build_line(out: &mut String, b: &BuildView) {
    let commit = b
        .commit
        .as_deref()
        .map(|c| short(c, 10))
        .unwrap_or_else(|| "-".into());
    let when = b
        .started_at
        .as_deref()
        .or(b.run_at.as_deref())
        .unwrap_or(&b.queued_at);
    let _ = writeln!(
        out,
        "{:>7} {:<20} {:<16} {:<11} {:<9} {:<10} {when}",
        b.id,
        short(&b.feed, 20),
        short(&b.branch, 16),
        b.status,
        b.trigger,
        commit
    );
}

fn build_block(out: &mut String, b: &BuildView) {
    let _ = writeln!(out, "build:     {}", b.id);
    let _ = writeln!(out, "feed:      {}", b.feed);
    let _ = writeln!(out, "ref:       {}", b.git_ref);
    let _ = write!(out, "status:    {}", b.status);
    if let Some(code) = b.exit_code {
        let _ = write!(out, " (exit code {code})");
    }
    out.push('\n');
    if let Some(reason) = &b.reason {
        let _ = writeln!(out, "reason:    {reason}");
    }
    let _ = writeln!(
        out,
        "trigger:   {} ({} trigger(s))",
        b.trigger, b.trigger_count
    );
    if let Some(requested) = &b.requested {
        let _ = writeln!(out, "requested: {requested}");
    }
    if let Some(commit) = &b.commit {
        let _ = writeln!(
            out,
            "commit:    {commit} {}",
            b.subject.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(out, "queued:    {}", b.queued_at);
    if let Some(t) = &b.started_at {
        let _ = writeln!(out, "started:   {t}");
    }
    if let Some(t) = &b.finished_at {
        let _ = writeln!(
            out,
            "finished:  {t} ({:.1} s)",
            b.duration_secs.unwrap_or(0.0)
        );
    }
    if let Some(r) = b.retry_of {
        let _ = writeln!(out, "retry of:  {r}");
    }
}

fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}
