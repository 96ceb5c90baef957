//! The HTML pages: overview, feed, build. Server-rendered and complete without
//! JavaScript; every value goes through [`Html`]'s escaping.

use http::StatusCode;

use super::html::Html;
use super::{
    with_type, ReadError, Reply, Source, BUILDS_PER_PAGE, DELIVERIES_SHOWN, PAGE_LOG_BYTES,
};
use crate::admin::proto::{BuildView, QueueOut};
use crate::clock::{now_ms, parse_rfc3339};

fn page_reply(html: Html) -> Reply {
    with_type(
        StatusCode::OK,
        html.finish().into_bytes(),
        "text/html; charset=utf-8",
    )
}

/// "5 s", "3 min", "2 h", "4 d".
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// How long ago an RFC 3339 time was.
fn ago(time: &str) -> String {
    parse_rfc3339(time).map_or_else(String::new, |ms| {
        format!("{} ago", span((now_ms() - ms) / 1000))
    })
}

fn short(commit: &Option<String>) -> String {
    commit
        .as_deref()
        .map(|c| c.chars().take(12).collect())
        .unwrap_or_default()
}

fn duration(b: &BuildView) -> String {
    b.duration_secs
        .map(|d| span(d.round() as i64))
        .unwrap_or_default()
}

/// `/`: every feed with its state, last build, running build and waiting builds.
pub(super) fn overview(source: &dyn Source) -> Result<Reply, ReadError> {
    let site = source.title();
    let feeds = source.feeds()?;
    let queue = source.queue()?;
    let mut h = Html::page(&site, &site);
    h.tag("<table id=\"feeds\">").head_row(&[
        "Feed",
        "Branches",
        "State",
        "Last build",
        "Commit",
        "Finished",
        "Took",
        "Running",
        "Waiting",
    ]);
    for feed in &feeds {
        let recent = source.builds(&feed.name, 0, 10)?;
        let last = recent.iter().find(|b| b.finished_at.is_some());
        h.row(|h| {
            h.tag("<td>")
                .link(&format!("/feeds/{}", feed.name), &feed.name)
                .tag("</td>");
            h.cell(&feed.branches.join(", "));
            h.cell(if feed.paused { "paused" } else { "active" });
            match last {
                Some(b) => {
                    h.tag("<td>")
                        .link(&format!("/builds/{}", b.id), &format!("#{}", b.id))
                        .tag(" ");
                    h.status(&b.status).tag("</td>");
                    h.cell(&short(&b.commit));
                    h.cell(&b.finished_at.as_deref().map(ago).unwrap_or_default());
                    h.cell(&duration(b));
                }
                None => {
                    h.cell("none").cell("").cell("").cell("");
                }
            }
            running_cell(h, &queue, &feed.name);
            waiting_cell(h, &queue, &feed.name);
        });
    }
    h.tag("</table>");
    if feeds.is_empty() {
        h.tag("<p>No feeds yet: add one with <code>hookd admin feed add</code>.</p>");
    }
    Ok(page_reply(h))
}

fn running_cell(h: &mut Html, queue: &QueueOut, feed: &str) {
    h.tag("<td>");
    for b in queue.running.iter().filter(|b| b.feed == feed) {
        h.link(&format!("/builds/{}", b.id), &format!("#{}", b.id))
            .tag(" ")
            .text(&b.branch);
        if let Some(started) = &b.started_at {
            let elapsed = parse_rfc3339(started).map(|s| span((now_ms() - s) / 1000));
            h.tag(", ").text(&elapsed.unwrap_or_default());
        }
    }
    h.tag("</td>");
}

fn waiting_cell(h: &mut Html, queue: &QueueOut, feed: &str) {
    let queued = queue.queued.iter().filter(|b| b.feed == feed).count();
    let deferred: Vec<_> = queue.deferred.iter().filter(|b| b.feed == feed).collect();
    h.tag("<td>").text(&format!("{queued} queued"));
    if !deferred.is_empty() {
        h.text(&format!(", {} deferred", deferred.len()));
        if let Some(run_at) = deferred.iter().filter_map(|b| b.run_at.as_deref()).min() {
            h.text(&format!(" (runs at {run_at})"));
        }
    }
    h.tag("</td>");
}

/// `/feeds/NAME`: its builds, a page at a time, and its recent deliveries with what
/// each became and why.
pub(super) fn feed(source: &dyn Source, name: &str, page: usize) -> Result<Reply, ReadError> {
    let feed = source.feed(name)?;
    let skip = page.saturating_mul(BUILDS_PER_PAGE);
    let builds = source.builds(name, skip, BUILDS_PER_PAGE + 1)?;
    let deliveries = source.deliveries(name, DELIVERIES_SHOWN)?;
    let mut h = Html::page(&source.title(), &format!("Feed {}", feed.name));
    h.tag("<p>").text(&format!(
        "{} · watches {} · {}",
        feed.repo,
        feed.branches.join(", "),
        if feed.paused { "paused" } else { "active" }
    ));
    h.tag("</p><h2>Builds</h2><table id=\"builds\">")
        .head_row(&[
            "Build", "Status", "Ref", "Commit", "Trigger", "Queued", "Took",
        ]);
    for b in builds.iter().take(BUILDS_PER_PAGE) {
        h.row(|h| {
            h.tag("<td>")
                .link(&format!("/builds/{}", b.id), &format!("#{}", b.id))
                .tag("</td><td>");
            h.status(&b.status).tag("</td>");
            h.cell(&b.branch)
                .cell(&short(&b.commit))
                .cell(&b.trigger)
                .cell(&ago(&b.queued_at));
            h.cell(&duration(b));
        });
    }
    h.tag("</table><p>");
    if page > 0 {
        h.link(&format!("/feeds/{name}?page={}", page - 1), "newer");
        h.tag(" ");
    }
    if builds.len() > BUILDS_PER_PAGE {
        h.link(&format!("/feeds/{name}?page={}", page + 1), "older");
    }
    h.tag("</p><h2>Deliveries</h2><table id=\"deliveries\">")
        .head_row(&["At", "Provider", "Event", "Ref", "Reply", "Became", "Why"]);
    for d in &deliveries {
        h.row(|h| {
            h.cell(&d.at).cell(&d.provider).cell(&d.event);
            h.cell(d.git_ref.as_deref().unwrap_or(""));
            h.cell(&d.http_status.to_string());
            h.tag("<td>").text(&d.outcome);
            if let Some(id) = d.build {
                h.tag(" ").link(&format!("/builds/{id}"), &format!("#{id}"));
            }
            h.tag("</td>").cell(d.why().as_deref().unwrap_or(""));
        });
    }
    h.tag("</table>");
    Ok(page_reply(h))
}

/// `/builds/ID`: everything about one build and the end of its log.
pub(super) fn build(source: &dyn Source, id: u64) -> Result<Reply, ReadError> {
    let b = source.build(id)?;
    let log = source.log_tail(id, PAGE_LOG_BYTES)?;
    let mut h = Html::page(&source.title(), &format!("Build #{id}"));
    h.tag("<dl id=\"build\"><dt>Status</dt><dd>")
        .status(&b.status);
    if let Some(code) = b.exit_code {
        h.text(&format!(" (exit code {code})"));
    }
    if let Some(reason) = &b.reason {
        h.text(&format!(" ({reason})"));
    }
    h.tag("</dd><dt>Feed</dt><dd>")
        .link(&format!("/feeds/{}", b.feed), &b.feed);
    h.tag("</dd><dt>Ref</dt><dd>").text(&b.git_ref);
    h.tag("</dd><dt>Commit requested</dt><dd>")
        .text(b.requested.as_deref().unwrap_or("(none named)"));
    h.tag("</dd><dt>Commit built</dt><dd>")
        .text(b.commit.as_deref().unwrap_or("(not yet)"));
    if let Some(subject) = &b.subject {
        h.tag(" ").text(subject);
    }
    h.tag("</dd><dt>Trigger</dt><dd>")
        .text(&format!("{} ({} trigger(s))", b.trigger, b.trigger_count));
    if let Some(provider) = &b.provider {
        h.tag("</dd><dt>Provider</dt><dd>").text(provider);
    }
    if !b.delivery_ids.is_empty() {
        h.tag("</dd><dt>Deliveries</dt><dd>")
            .text(&b.delivery_ids.join(", "));
    }
    h.tag("</dd><dt>Queued</dt><dd>").text(&b.queued_at);
    if let Some(run_at) = &b.run_at {
        h.tag("</dd><dt>Runs at</dt><dd>").text(run_at);
    }
    h.tag("</dd><dt>Started</dt><dd>")
        .text(b.started_at.as_deref().unwrap_or(""));
    h.tag("</dd><dt>Finished</dt><dd>")
        .text(b.finished_at.as_deref().unwrap_or(""));
    h.tag("</dd><dt>Took</dt><dd>").text(&duration(&b));
    h.tag("</dd></dl><h2>Log</h2><p>")
        .link(&format!("/builds/{id}/log"), "raw log");
    if log.start > 0 {
        h.text(" (only the end is shown here)");
    }
    // The page's script follows the log from where the page ends (`data-from`).
    h.tag("</p><pre id=\"log\" data-build=\"")
        .text(&id.to_string())
        .tag("\" data-status=\"")
        .text(&b.status)
        .tag("\" data-from=\"")
        .text(&log.end().to_string())
        .tag("\">")
        .text(&String::from_utf8_lossy(&log.bytes))
        .tag("</pre>");
    Ok(page_reply(h))
}
