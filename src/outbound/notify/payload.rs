//! A notification's content: the [`Notice`] made from a build when it changes, and
//! what is sent from it: the JSON body (a Standard Webhooks `{type, timestamp,
//! data}` envelope), the Slack-style `{"text": …}` message, and the `HOOKD_*`
//! variables of an `exec` target. Rendering is a pure function of the stored notice,
//! so a retry sends the same bytes.

use serde::Serialize;

use crate::build::{Build, BuildStatus};
use crate::clock::rfc3339;
use crate::config::NotifyEvent;
use crate::notice::Notice;

/// What a notice says besides the build record itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    /// The status of the feed and ref's previous verdict (see `plan`).
    pub(crate) previous: Option<BuildStatus>,
    /// The feed's repository URL, credentials removed.
    pub(crate) repo_url: String,
    /// The build's page, when there is one to link to.
    pub(crate) url: Option<String>,
    /// When the change happened, Unix ms.
    pub(crate) at_ms: i64,
}

/// The notice for `target` of a build as it stands (`running` for `started`).
pub(crate) fn notice(target: &str, event: NotifyEvent, build: &Build, context: &Context) -> Notice {
    let (exit_code, reason) = match &build.status {
        BuildStatus::Failed { exit_code } => (Some(*exit_code), None),
        BuildStatus::Error { reason } => (None, Some(reason.clone())),
        _ => (None, None),
    };
    let provider = build.triggers.latest.last().map(|t| t.provider.clone());
    Notice {
        target: target.to_owned(),
        event,
        at_ms: context.at_ms,
        feed: build.feed.clone(),
        build: build.id,
        status: build.status.word().to_owned(),
        exit_code,
        reason,
        previous_status: context.previous.as_ref().map(|s| s.word().to_owned()),
        git_ref: build.git_ref.clone(),
        branch: build.branch.clone(),
        commit: build.commit.clone(),
        subject: build.subject.clone(),
        trigger: build.kind.word().to_owned(),
        provider: provider.unwrap_or_default(),
        repo_url: context.repo_url.clone(),
        started_ms: build.started_ms,
        finished_ms: build.finished_ms,
        url: context.url.clone(),
    }
}

/// The JSON body: `{"type": "build.EVENT", "timestamp": …, "data": {…}}`.
pub(crate) fn json(notice: &Notice) -> Vec<u8> {
    let body = Envelope {
        kind: format!("build.{}", notice.event.word()),
        timestamp: rfc3339(notice.at_ms),
        data: Data::of(notice),
    };
    // Plain strings, numbers and options: serialising cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    data: Data<'a>,
}

/// The build as the JSON body describes it.
#[derive(Serialize)]
struct Data<'a> {
    event: &'static str,
    feed: &'a str,
    build: u64,
    status: &'a str,
    exit_code: Option<i32>,
    reason: Option<&'a str>,
    previous_status: Option<&'a str>,
    #[serde(rename = "ref")]
    git_ref: &'a str,
    branch: &'a str,
    commit: Option<&'a str>,
    subject: Option<&'a str>,
    trigger: &'a str,
    provider: &'a str,
    repo_url: &'a str,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: Option<i64>,
    url: Option<&'a str>,
}

impl<'a> Data<'a> {
    fn of(n: &'a Notice) -> Self {
        Self {
            event: n.event.word(),
            feed: n.feed.as_str(),
            build: n.build.0,
            status: &n.status,
            exit_code: n.exit_code,
            reason: n.reason.as_deref(),
            previous_status: n.previous_status.as_deref(),
            git_ref: &n.git_ref,
            branch: &n.branch,
            commit: n.commit.as_deref(),
            subject: n.subject.as_deref(),
            trigger: &n.trigger,
            provider: &n.provider,
            repo_url: &n.repo_url,
            started_at: n.started_ms.map(rfc3339),
            finished_at: n.finished_ms.map(rfc3339),
            duration_ms: duration_ms(n),
            url: n.url.as_deref(),
        }
    }
}

fn duration_ms(n: &Notice) -> Option<i64> {
    Some((n.finished_ms? - n.started_ms?).max(0))
}

/// The Slack-style body: `{"text": "web #12 broken: failed (exit 2) on main …"}`.
pub(crate) fn slack(notice: &Notice) -> Vec<u8> {
    let body = serde_json::json!({ "text": slack_text(notice) });
    body.to_string().into_bytes()
}

/// One line for a chat channel, with `&`, `<` and `>` escaped as Slack requires.
pub(crate) fn slack_text(n: &Notice) -> String {
    let mut what = match (n.exit_code, &n.reason) {
        (Some(code), _) => format!("{} (exit {code})", n.status),
        (None, Some(reason)) => format!("{}: {}", n.status, first_line(reason)),
        (None, None) => n.status.clone(),
    };
    if matches!(n.event, NotifyEvent::Broken | NotifyEvent::Fixed) {
        what = format!("{}: {what}", n.event.word());
    }
    if n.event == NotifyEvent::Started {
        what = "started".into();
    }
    let mut text = format!("{} #{} {what} on {}", n.feed, n.build, n.branch);
    if let Some(commit) = &n.commit {
        let short = commit.get(..10).unwrap_or(commit);
        match &n.subject {
            Some(subject) => text.push_str(&format!(" ({short} {})", first_line(subject))),
            None => text.push_str(&format!(" ({short})")),
        }
    }
    if let Some(ms) = duration_ms(n) {
        text.push_str(&format!(" in {}", crate::outbound::plan::span(ms / 1000)));
    }
    let mut text = escape(&text);
    if let Some(url) = &n.url {
        text.push_str(&format!(" <{}|build page>", escape(url)));
    }
    text
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Slack's three control characters in message text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The variables an `exec` target gets besides `PATH`, `HOME` and `LANG`: the
/// build's own `HOOKD_*` set, plus `HOOKD_STATUS`, `HOOKD_PREVIOUS_STATUS`,
/// `HOOKD_EVENT` and `HOOKD_BUILD_URL` (empty when unknown).
pub(crate) fn env(n: &Notice) -> Vec<(String, String)> {
    let or_empty = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        ("HOOKD_FEED", n.feed.to_string()),
        ("HOOKD_BUILD_ID", n.build.to_string()),
        ("HOOKD_COMMIT", or_empty(&n.commit)),
        ("HOOKD_REF", n.git_ref.clone()),
        ("HOOKD_BRANCH", n.branch.clone()),
        ("HOOKD_REPO_URL", n.repo_url.clone()),
        ("HOOKD_TRIGGER", n.trigger.clone()),
        ("HOOKD_PROVIDER", n.provider.clone()),
        ("HOOKD_STATUS", n.status.clone()),
        ("HOOKD_PREVIOUS_STATUS", or_empty(&n.previous_status)),
        ("HOOKD_EVENT", n.event.word().to_owned()),
        ("HOOKD_BUILD_URL", or_empty(&n.url)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{BuildId, TriggerKind};
    use crate::feed::FeedName;

    pub(crate) fn sample(event: NotifyEvent) -> Notice {
        Notice {
            target: "chat".into(),
            event,
            at_ms: 1_764_547_200_000,
            feed: FeedName::parse("web").unwrap(),
            build: BuildId(12),
            status: "failed".into(),
            exit_code: Some(2),
            reason: None,
            previous_status: Some("succeeded".into()),
            git_ref: "refs/heads/main".into(),
            branch: "main".into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            subject: Some("Fix <the> & build\nbody".into()),
            trigger: TriggerKind::Hook.word().into(),
            provider: "github".into(),
            repo_url: "https://example.com/web.git".into(),
            started_ms: Some(1_764_547_128_000),
            finished_ms: Some(1_764_547_200_000),
            url: Some("https://ci.example.com/builds/12".into()),
        }
    }

    #[test]
    fn json_is_a_standard_webhooks_envelope_describing_the_build() {
        let body: serde_json::Value =
            serde_json::from_slice(&json(&sample(NotifyEvent::Broken))).unwrap();
        assert_eq!(body["type"], "build.broken");
        assert_eq!(body["timestamp"], "2025-12-01T00:00:00Z");
        let data = &body["data"];
        let want = serde_json::json!({
            "event": "broken", "feed": "web", "build": 12, "status": "failed",
            "exit_code": 2, "reason": null, "previous_status": "succeeded",
            "ref": "refs/heads/main", "branch": "main",
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "subject": "Fix <the> & build\nbody", "trigger": "hook", "provider": "github",
            "repo_url": "https://example.com/web.git",
            "started_at": "2025-11-30T23:58:48Z", "finished_at": "2025-12-01T00:00:00Z",
            "duration_ms": 72000, "url": "https://ci.example.com/builds/12",
        });
        assert_eq!(*data, want);
    }

    #[test]
    fn slack_text_is_one_escaped_line_with_the_link() {
        let body: serde_json::Value =
            serde_json::from_slice(&slack(&sample(NotifyEvent::Broken))).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 1, "only text: {body}");
        assert_eq!(
            body["text"],
            "web #12 broken: failed (exit 2) on main (0123456789 Fix &lt;the&gt; &amp; build) \
             in 1m12s <https://ci.example.com/builds/12|build page>"
        );
        let mut started = sample(NotifyEvent::Started);
        (started.status, started.exit_code, started.finished_ms) = ("running".into(), None, None);
        (started.url, started.commit) = (None, None);
        assert_eq!(slack_text(&started), "web #12 started on main");
    }

    #[test]
    fn exec_env_has_the_build_variables_and_the_statuses() {
        let env = env(&sample(NotifyEvent::Failed));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOOKD_STATUS"), Some("failed"));
        assert_eq!(get("HOOKD_PREVIOUS_STATUS"), Some("succeeded"));
        assert_eq!(get("HOOKD_EVENT"), Some("failed"));
        assert_eq!(get("HOOKD_BUILD_ID"), Some("12"));
        assert_eq!(get("HOOKD_REF"), Some("refs/heads/main"));
        assert!(env.iter().all(|(k, _)| k.starts_with("HOOKD_")));
    }
}
