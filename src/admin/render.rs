//! Human-readable output of admin replies: tables with a header row and columns as
//! wide as their widest cell, and key/value blocks, made to read in 80 columns.

use std::fmt::Write;

use crate::admin::proto::{
    BuildView, DeliveryView, FeedView, HookStatusView, NotifyResultView, OutboxView, PlanView,
    Reply, TokenView,
};
use crate::feed::CommandSpec;

/// Formats a reply for a terminal.
pub(crate) fn text(reply: &Reply) -> String {
    let mut out = String::new();
    match reply {
        Reply::Error(message) | Reply::Done(message) => {
            let _ = writeln!(out, "{message}");
        }
        Reply::Feed(feed) => feed_block(&mut out, feed),
        Reply::Feeds(feeds) if feeds.is_empty() => {
            out.push_str("no feeds (add one with `hookd admin feed add`)\n")
        }
        Reply::Feeds(feeds) => feeds_table(&mut out, feeds),
        Reply::Tokens(tokens) if tokens.is_empty() => {
            out.push_str("no active tokens (add one with `hookd admin token add`)\n")
        }
        Reply::Tokens(tokens) => tokens_table(&mut out, tokens),
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
            let sections: [(&str, &[BuildView], &str, When); 3] = [
                ("running", &q.running, "STARTED", When::Started),
                ("queued", &q.queued, "QUEUED", When::Queued),
                ("deferred", &q.deferred, "RUNS AT", When::RunAt),
            ];
            for (title, builds, header, when) in sections {
                if !builds.is_empty() {
                    let _ = writeln!(out, "{title}:");
                    queue_table(&mut out, builds, header, when);
                }
            }
        }
        Reply::Builds(builds) if builds.is_empty() => out.push_str("no builds\n"),
        Reply::Builds(builds) => builds_table(&mut out, builds),
        Reply::Build(b) => build_block(&mut out, b),
        Reply::LogChunk(text) => out.push_str(text),
        Reply::LogEnd(_) => {}
        Reply::Deliveries(ds) if ds.is_empty() => out.push_str("no deliveries yet\n"),
        Reply::Deliveries(ds) => deliveries_table(&mut out, ds),
        Reply::Outbox(items) if items.is_empty() => out.push_str("the outbox is empty\n"),
        Reply::Outbox(items) => outbox_table(&mut out, items),
        Reply::HookStatus(view) => hook_status(&mut out, view),
        Reply::Backup(b) => {
            out.push_str(&serde_json::to_string_pretty(b).unwrap_or_default());
            out.push('\n');
        }
        Reply::Plan(plan) => plan_text(&mut out, plan),
        Reply::NotifyTest(results) => notify_table(&mut out, results),
        Reply::Status(s) => {
            let _ = writeln!(out, "hookd {}\nuptime:   {} s\nlisten:   {}\ndata dir: {}\nworkers:  {}\nfeeds:    {}\nrunning:  {}\nqueued:   {}",
                s.version, s.uptime_secs, s.listen, s.data_dir, s.workers, s.feeds, s.running, s.queued);
        }
    }
    out
}

/// A text table: a header row, then rows; every column but the last padded to its
/// widest cell, numbers right-aligned, two spaces between columns.
struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Row>,
}

/// One table row, optionally followed by an indented note line (a reason, a URL)
/// that belongs to it but would not fit as a column.
struct Row {
    cells: Vec<String>,
    note: Option<String>,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            header: columns.iter().map(|(h, _)| *h).collect(),
            right: columns.iter().map(|(_, a)| *a == Align::Right).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>, note: Option<String>) {
        self.rows.push(Row { cells, note });
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(&row.cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        self.line(out, &header, &widths);
        for row in &self.rows {
            self.line(out, &row.cells, &widths);
            if let Some(note) = &row.note {
                wrap(out, note, "    ", WIDTH);
            }
        }
    }

    fn line(&self, out: &mut String, cells: &[String], widths: &[usize]) {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let last = i + 1 == cells.len();
            match (self.right[i], last) {
                (true, _) => {
                    let _ = write!(line, "{cell:>width$}");
                }
                (false, false) => {
                    let _ = write!(line, "{cell:<width$}");
                }
                (false, true) => line.push_str(cell),
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

use Align::{Left, Right};

/// The terminal width tables are made for.
const WIDTH: usize = 80;

/// Writes `text` indented, broken at spaces so no line passes `width` (a single
/// word longer than that, like a URL, keeps its own line).
fn wrap(out: &mut String, text: &str, indent: &str, width: usize) {
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        let used = line.chars().count();
        if used > indent.len() && used + 1 + word.chars().count() > width {
            let _ = writeln!(out, "{line}");
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
}

/// Longest feed or branch name a table shows in full.
const NAME_WIDTH: usize = 16;

fn feeds_table(out: &mut String, feeds: &[FeedView]) {
    let mut t = Table::new(&[
        ("NAME", Left),
        ("STATE", Left),
        ("SOURCE", Left),
        ("COOLDOWN", Left),
        ("REPO", Left),
    ]);
    for f in feeds {
        let cooldown = format!("{} s, {}", f.cooldown_secs, f.on_cooldown);
        let source = if f.declared { "declared" } else { "admin" };
        t.row(
            vec![
                f.name.clone(),
                feed_state(f).into(),
                source.into(),
                cooldown,
                f.repo.clone(),
            ],
            None,
        );
    }
    t.render(out);
}

/// retired (left the config file), paused or active.
fn feed_state(f: &FeedView) -> &'static str {
    match (&f.retired, f.paused) {
        (Some(_), _) => "retired",
        (None, true) => "paused",
        (None, false) => "active",
    }
}

/// `check-config --plan`: one line per feed the file changes, then a count.
fn plan_text(out: &mut String, plan: &PlanView) {
    if plan.changes.is_empty() {
        let _ = writeln!(
            out,
            "no changes: the feeds {} declares are in force ({} unchanged)",
            plan.file, plan.unchanged
        );
        return;
    }
    let mut t = Table::new(&[
        ("ACTION", Left),
        ("FEED", Left),
        ("LINE", Right),
        ("KEYS", Left),
    ]);
    for c in &plan.changes {
        let line = c.line.map(|l| l.to_string()).unwrap_or_default();
        t.row(
            vec![c.action.clone(), c.feed.clone(), line, c.keys.join(", ")],
            None,
        );
    }
    t.render(out);
    let count = |action: &str| plan.changes.iter().filter(|c| c.action == action).count();
    let _ = writeln!(
        out,
        "applying {} would add {}, change {}, retire {}, revive {}; {} unchanged",
        plan.file,
        count("add"),
        count("change"),
        count("retire"),
        count("revive"),
        plan.unchanged
    );
}

fn tokens_table(out: &mut String, tokens: &[TokenView]) {
    let mut t = Table::new(&[
        ("ID", Left),
        ("LABEL", Left),
        ("CREATED", Left),
        ("STATE", Left),
    ]);
    for tok in tokens {
        let state = match &tok.revoked {
            Some(at) => format!("revoked {}", table_time(at)),
            None => "active".into(),
        };
        t.row(
            vec![
                tok.id.clone(),
                short(&tok.label, NAME_WIDTH),
                table_time(&tok.created),
                state,
            ],
            tok.url.clone(),
        );
    }
    t.render(out);
}

/// The status a person should read: a queued build of a paused feed is not merely
/// waiting for a worker.
fn status_text(b: &BuildView) -> String {
    match (b.status.as_str(), b.feed_paused) {
        ("queued", true) => "queued (feed paused)".into(),
        (status, _) => status.into(),
    }
}

/// The cells every build table starts with: ID, FEED, BRANCH, STATUS.
fn build_cells(b: &BuildView) -> Vec<String> {
    vec![
        b.id.to_string(),
        short(&b.feed, NAME_WIDTH),
        short(&b.branch, NAME_WIDTH),
        status_text(b),
    ]
}

fn commit_cell(b: &BuildView) -> String {
    let commit: String = b
        .commit
        .as_deref()
        .map_or("-".into(), |c| c.chars().take(8).collect());
    if b.built_other_commit() {
        format!("{commit}*")
    } else {
        commit
    }
}

/// When a build's newest step happened, saying which step it was.
fn when_text(b: &BuildView) -> String {
    match (&b.started_at, &b.run_at) {
        (Some(started), _) => format!("started {}", table_time(started)),
        (None, Some(run_at)) => format!("runs at {}", table_time(run_at)),
        (None, None) => format!("queued {}", table_time(&b.queued_at)),
    }
}

fn builds_table(out: &mut String, builds: &[BuildView]) {
    let mut t = Table::new(&[
        ("ID", Right),
        ("FEED", Left),
        ("BRANCH", Left),
        ("STATUS", Left),
        ("COMMIT", Left),
        ("TOOK", Right),
        ("WHEN", Left),
    ]);
    for b in builds {
        let took = b
            .duration_secs
            .map_or("-".into(), |s| format!("{} s", s.round()));
        let mut cells = build_cells(b);
        cells.extend([commit_cell(b), took, when_text(b)]);
        t.row(cells, None);
    }
    t.render(out);
    if builds.iter().any(BuildView::built_other_commit) {
        out.push_str(
            "* built another commit than the push named (see `hookd admin build show ID`)\n",
        );
    }
}

#[derive(Clone, Copy)]
enum When {
    Started,
    Queued,
    RunAt,
}

fn queue_table(out: &mut String, builds: &[BuildView], header: &'static str, when: When) {
    let mut t = Table::new(&[
        ("ID", Right),
        ("FEED", Left),
        ("BRANCH", Left),
        ("STATUS", Left),
        (header, Left),
    ]);
    for b in builds {
        let at = match when {
            When::Started => b.started_at.as_deref(),
            When::Queued => Some(b.queued_at.as_str()),
            When::RunAt => b.run_at.as_deref(),
        };
        let mut cells = build_cells(b);
        cells.push(at.map_or("-".into(), table_time));
        t.row(cells, None);
    }
    t.render(out);
}

fn outbox_table(out: &mut String, items: &[OutboxView]) {
    let mut t = Table::new(&[
        ("ID", Right),
        ("FEED", Left),
        ("BUILD", Right),
        ("KIND", Left),
        ("STATUS", Left),
        ("COMMIT", Left),
        ("STATE", Left),
        ("ATTEMPTS", Right),
        ("NEXT", Left),
    ]);
    for item in items {
        t.row(
            vec![
                item.id.to_string(),
                short(&item.feed, NAME_WIDTH),
                item.build.to_string(),
                item.kind.clone(),
                item.status.clone(),
                item.commit.chars().take(12).collect(),
                item.state.clone(),
                item.attempts.to_string(),
                item.next_attempt.as_deref().map_or("-".into(), table_time),
            ],
            item.last_error.as_ref().map(|e| format!("last error: {e}")),
        );
    }
    t.render(out);
}

fn hook_status(out: &mut String, v: &HookStatusView) {
    let _ = writeln!(out, "feed:        {}", v.feed);
    let _ = writeln!(out, "forge:       {} {}", v.forge, v.repo);
    if v.webhooks.is_empty() {
        let _ = writeln!(
            out,
            "webhook:     none of hookd's (`hookd admin hook register {}`)",
            v.feed
        );
    }
    for w in &v.webhooks {
        let active = if w.active { "active" } else { "inactive" };
        let _ = writeln!(
            out,
            "webhook:     {} ({active}), events {}",
            w.id,
            w.events.join(", ")
        );
        let _ = writeln!(out, "url:         {}", w.url);
        if let Some(reply) = &w.last_response {
            let _ = writeln!(out, "last reply:  {reply}");
        }
    }
    out.push_str("hookd's latest deliveries:\n");
    match v.deliveries.is_empty() {
        true => out.push_str("no deliveries yet\n"),
        false => deliveries_table(out, &v.deliveries),
    }
}

fn deliveries_table(out: &mut String, deliveries: &[DeliveryView]) {
    let mut t = Table::new(&[
        ("AT", Left),
        ("PROVIDER", Left),
        ("EVENT", Left),
        ("HTTP", Right),
        ("OUTCOME", Left),
        ("BUILD", Right),
        ("REF", Left),
    ]);
    for d in deliveries {
        let git_ref = d.git_ref.as_deref().map_or("-".into(), |r| {
            short(r.strip_prefix("refs/heads/").unwrap_or(r), NAME_WIDTH)
        });
        t.row(
            vec![
                table_time(&d.at),
                short(&d.provider, 12),
                short(&d.event, 12),
                d.http_status.to_string(),
                d.outcome.clone(),
                d.build.map_or("-".into(), |b| b.to_string()),
                git_ref,
            ],
            d.why(),
        );
    }
    t.render(out);
}

/// `notify test`: what each target answered.
fn notify_table(out: &mut String, results: &[NotifyResultView]) {
    let mut t = Table::new(&[("TARGET", Left), ("KIND", Left), ("RESULT", Left)]);
    for r in results {
        t.row(
            vec![r.target.clone(), r.kind.clone(), r.result.clone()],
            None,
        );
    }
    t.render(out);
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
        match (f.has_secret, f.secret_pending) {
            (true, false) => "set",
            (false, false) => "none",
            (true, true) => "set, rotation pending (the next secret is accepted too)",
            (false, true) => "none, rotation pending (the next secret is accepted too)",
        }
    );
    let _ = writeln!(out, "badge:       {}", if f.badge { "on" } else { "off" });
    let _ = writeln!(out, "state:       {}", feed_state(f));
    if let Some(at) = &f.declared_at {
        let _ = writeln!(out, "declared:    {at}");
    }
    if let Some(at) = &f.retired {
        let _ = writeln!(
            out,
            "retired:     {at} (left the config file; history kept)"
        );
    }
    if let Some(refs) = &f.remote_refs {
        let _ = writeln!(
            out,
            "remote:      answers; watched refs: {}",
            refs.join(", ")
        );
    }
    for t in &f.hook_urls {
        if let Some(url) = &t.url {
            let _ = writeln!(out, "token:       {} (id {})", t.label, t.id);
            let _ = writeln!(out, "hook URL:    {url}");
        }
    }
}

fn build_block(out: &mut String, b: &BuildView) {
    let _ = writeln!(out, "build:     {}", b.id);
    let _ = writeln!(out, "feed:      {}", b.feed);
    let _ = writeln!(out, "ref:       {}", b.git_ref);
    let _ = write!(out, "status:    {}", status_text(b));
    if let Some(code) = b.exit_code {
        let _ = write!(out, " (exit code {code})");
    }
    out.push('\n');
    if let Some(reason) = &b.reason {
        let _ = writeln!(out, "reason:    {reason}");
    }
    let triggers = match b.trigger_count {
        1 => "1 trigger".to_owned(),
        n => format!("{n} triggers"),
    };
    let _ = writeln!(out, "trigger:   {} ({triggers})", b.trigger);
    if let Some(requested) = &b.requested {
        let _ = writeln!(out, "requested: {requested}");
    }
    if let Some(commit) = &b.commit {
        let subject = b.subject.as_deref().unwrap_or("");
        let _ = writeln!(out, "built:     {commit} {subject}");
    }
    if b.built_other_commit() {
        out.push_str(
            "note:      the built commit is not the one the push named: the branch moved\n\
             \x20          on (a later push), or the feed's repository is not the one\n\
             \x20          pushed to (check `hookd admin feed show`)\n",
        );
    }
    let _ = writeln!(out, "queued:    {}", b.queued_at);
    if let Some(t) = &b.run_at {
        let _ = writeln!(out, "run at:    {t} (deferred by the cooldown)");
    }
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

/// An RFC 3339 time as a table shows it: `2026-12-01 01:12` (UTC), to the minute.
fn table_time(rfc3339: &str) -> String {
    let minute = rfc3339.get(..16).unwrap_or(rfc3339);
    minute.replacen('T', " ", 1)
}

/// Cuts text to `max` characters, marking the cut with `…`.
fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some(_) => {
            let keep: String = text.chars().take(max.saturating_sub(1)).collect();
            format!("{keep}…")
        }
        None => text.to_owned(),
    }
}
