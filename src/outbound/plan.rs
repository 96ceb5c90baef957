//! Which outbox items a build state change produces: pure functions of the changed
//! build and the settings in force, called by the scheduler inside the store write
//! that makes the change (so the items land in the same batch).
//!
//! A commit status is posted when the commit is resolved (`running`) and when the
//! build ends (its final state), on that commit; nothing while a build is queued or
//! deferred (a coalesced build may build a newer commit, and the older one would stay
//! pending forever), and nothing for an interrupted build, which runs again and leaves
//! its running state in place.

use super::notify::{self, Moment};
use crate::build::{Build, BuildStatus};
use crate::config::Config;
use crate::store::{Outgoing, PostState, StatusPost};

/// Longest description sent (GitHub's limit is not documented; GitLab's is 255).
const MAX_DESCRIPTION: usize = 140;

/// The items of a build whose commit was just resolved: its `running` status and
/// the `started` notifications (`notices`: what [`notify::context`] read).
pub(crate) fn on_commit(
    build: &Build,
    config: &Config,
    notices: &notify::Context,
) -> Vec<Outgoing> {
    let mut items: Vec<_> = status_post(build, config).into_iter().collect();
    items.extend(notify::items(config, build, Moment::Started, notices));
    items
}

/// The items of a build that just ended: its final status and its notifications.
pub(crate) fn on_finish(
    build: &Build,
    config: &Config,
    notices: &notify::Context,
) -> Vec<Outgoing> {
    let mut items: Vec<_> = status_post(build, config).into_iter().collect();
    items.extend(notify::items(
        config,
        build,
        Moment::Finished(&build.status),
        notices,
    ));
    items
}

/// The status post for the build as it stands, if its feed posts statuses, its
/// commit is known and its state is one that posts.
fn status_post(build: &Build, config: &Config) -> Option<Outgoing> {
    let settings = config.status.get(build.feed.as_str())?;
    let commit = build.commit.clone()?;
    let state = PostState::of(&build.status)?;
    let target_url = config.build_page(build.id);
    Some(Outgoing::Status(StatusPost {
        commit,
        state,
        description: description(build),
        target_url,
        context: settings.context.clone(),
        git_ref: build.git_ref.clone(),
    }))
}

/// One short line for the forge's UI: "failed (exit 2) in 1m12s", "timed out after 10m".
pub(crate) fn description(build: &Build) -> String {
    let took = match (build.started_ms, build.finished_ms) {
        (Some(start), Some(end)) => span((end - start).max(0) / 1000),
        _ => String::new(),
    };
    let text = match &build.status {
        BuildStatus::Queued | BuildStatus::Running => format!("build {} running", build.id),
        BuildStatus::Succeeded => format!("succeeded in {took}"),
        BuildStatus::Failed { exit_code } => format!("failed (exit {exit_code}) in {took}"),
        BuildStatus::TimedOut => format!("timed out after {took}"),
        BuildStatus::Cancelled => format!("cancelled after {took}"),
        BuildStatus::Interrupted => format!("interrupted after {took}"),
        BuildStatus::Error { reason } => format!("error: {reason}"),
    };
    cut(text)
}

/// Seconds as "1h2m", "1m12s", "10m", "5s".
pub(crate) fn span(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let parts = [(h, "h"), (m, "m"), (s, "s")];
    let text: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_owned()
    } else {
        text
    }
}

/// At most [`MAX_DESCRIPTION`] characters, one line.
fn cut(text: String) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(MAX_DESCRIPTION - 1) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(status: BuildStatus, secs: i64) -> Build {
        Build {
            id: crate::build::BuildId(7),
            feed: crate::feed::FeedName::parse("web").unwrap(),
            git_ref: "refs/heads/main".into(),
            branch: "main".into(),
            status,
            kind: crate::build::TriggerKind::Manual,
            triggers: Default::default(),
            queue_seq: 7,
            queued_ms: 0,
            started_ms: Some(1_000),
            finished_ms: Some(1_000 + secs * 1000),
            commit: None,
            subject: None,
            pgid: None,
            retry_of: None,
        }
    }

    #[test]
    fn descriptions_say_how_it_ended_and_how_long_it_took() {
        let cases = [
            (
                BuildStatus::Failed { exit_code: 2 },
                72,
                "failed (exit 2) in 1m12s",
            ),
            (BuildStatus::TimedOut, 600, "timed out after 10m"),
            (BuildStatus::Succeeded, 3_725, "succeeded in 1h2m5s"),
            (BuildStatus::Succeeded, 0, "succeeded in 0s"),
            (BuildStatus::Cancelled, 5, "cancelled after 5s"),
        ];
        for (status, secs, want) in cases {
            assert_eq!(description(&ended(status, secs)), want);
        }
        let long = BuildStatus::Error {
            reason: "x".repeat(500) + "\nsecond line",
        };
        let text = description(&ended(long, 1));
        assert_eq!(text.chars().count(), MAX_DESCRIPTION);
        assert!(text.starts_with("error: xxx") && text.ends_with('…'));
    }

    #[test]
    fn only_feeds_with_a_status_table_and_a_commit_post() {
        let text = "public_url = \"https://ci.example.com\"\n\
                    [feeds.web.status]\nforge = \"github\"\nrepo = \"o/r\"\ntoken_file = \"/t\"\n";
        let config = crate::config::Config::from_text(
            std::path::Path::new("t.toml"),
            text,
            &Default::default(),
        )
        .unwrap();
        let mut build = ended(BuildStatus::Succeeded, 3);
        assert!(
            on_finish(&build, &config, &Default::default()).is_empty(),
            "no commit, no post"
        );
        build.commit = Some("a".repeat(40));
        let items: [Outgoing; 1] = on_finish(&build, &config, &Default::default())
            .try_into()
            .unwrap();
        let [Outgoing::Status(post)] = items else {
            panic!("{items:?}")
        };
        assert_eq!(post.state, PostState::Succeeded);
        assert_eq!(post.context, "hookd/web");
        assert_eq!(
            post.target_url.as_deref(),
            Some("https://ci.example.com/builds/7")
        );
        build.status = BuildStatus::Interrupted;
        assert!(
            on_finish(&build, &config, &Default::default()).is_empty(),
            "interrupted: no post"
        );
        build.feed = crate::feed::FeedName::parse("other").unwrap();
        build.status = BuildStatus::Running;
        assert!(
            on_commit(&build, &config, &Default::default()).is_empty(),
            "no status table"
        );
    }
}
