//! Which notifications a build state change fires: a pure function of the targets,
//! the build and the previous result of the same feed and ref.
//!
//! `broken` and `fixed` compare with the previous build of the same feed *and ref*
//! that succeeded or failed: on a feed that builds several branches, a failing
//! feature branch does not make `main`'s next success "fixed". Builds that ended in
//! `error` (fetch or spawn), `timed_out`, `cancelled` or `interrupted` say nothing
//! about the code and are passed over. Each target gets at most one notification
//! per change, for the most specific event it wants (`broken` over `failed`, `fixed`
//! over `succeeded`).

use crate::build::BuildStatus;
use crate::config::{NotifyEvent, NotifyTarget};
use crate::feed::FeedName;

/// The change being notified.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Moment<'a> {
    /// The build's commit is resolved and its command starts.
    Started,
    /// The build ended with this status.
    Finished(&'a BuildStatus),
}

/// Whether a build's status is a verdict on its code, the kind `broken` and `fixed`
/// compare with.
pub(crate) fn is_verdict(status: &BuildStatus) -> bool {
    matches!(status, BuildStatus::Succeeded | BuildStatus::Failed { .. })
}

/// The events a change matches, most specific first.
fn events(moment: Moment<'_>, previous: Option<&BuildStatus>) -> Vec<NotifyEvent> {
    let previous_failed = matches!(previous, Some(BuildStatus::Failed { .. }));
    let previous_succeeded = matches!(previous, Some(BuildStatus::Succeeded));
    let status = match moment {
        Moment::Started => return vec![NotifyEvent::Started],
        Moment::Finished(status) => status,
    };
    match status {
        BuildStatus::Succeeded if previous_failed => {
            vec![NotifyEvent::Fixed, NotifyEvent::Succeeded]
        }
        BuildStatus::Succeeded => vec![NotifyEvent::Succeeded],
        BuildStatus::Failed { .. } if previous_succeeded => {
            vec![NotifyEvent::Broken, NotifyEvent::Failed]
        }
        BuildStatus::Failed { .. } => vec![NotifyEvent::Failed],
        BuildStatus::Error { .. } => vec![NotifyEvent::Error],
        BuildStatus::TimedOut => vec![NotifyEvent::TimedOut],
        BuildStatus::Cancelled => vec![NotifyEvent::Cancelled],
        // Queued and running are not ends; an interrupted build runs again.
        BuildStatus::Queued | BuildStatus::Running | BuildStatus::Interrupted => Vec::new(),
    }
}

/// Each target covering `feed` that wants this change, with the event it gets.
/// `previous` is the status of the feed and ref's latest earlier verdict
/// ([`is_verdict`]), if any.
pub(crate) fn plan<'a>(
    targets: &'a [NotifyTarget],
    feed: &FeedName,
    moment: Moment<'_>,
    previous: Option<&BuildStatus>,
) -> Vec<(&'a NotifyTarget, NotifyEvent)> {
    let events = events(moment, previous);
    targets
        .iter()
        .filter(|target| target.covers(feed))
        .filter_map(|target| {
            let event = events.iter().find(|e| target.on.contains(e))?;
            Some((target, *event))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::config::{ExecTarget, TargetKind};
    use crate::feed::CommandSpec;

    fn target(name: &str, on: &[NotifyEvent], feeds: Option<&[&str]>) -> NotifyTarget {
        NotifyTarget {
            name: name.into(),
            feeds: feeds.map(|f| f.iter().map(|n| FeedName::parse(n).unwrap()).collect()),
            on: on.iter().copied().collect::<BTreeSet<_>>(),
            kind: TargetKind::Exec(ExecTarget {
                command: CommandSpec::Shell("true".into()),
                timeout: Duration::from_secs(1),
            }),
        }
    }

    fn web() -> FeedName {
        FeedName::parse("web").unwrap()
    }

    /// Runs a feed's results through the plan as the scheduler does, remembering the
    /// previous verdict; returns the events each target got.
    fn run(targets: &[NotifyTarget], results: &[BuildStatus]) -> Vec<(String, NotifyEvent)> {
        let mut previous: Option<BuildStatus> = None;
        let mut got = Vec::new();
        for status in results {
            let fired = plan(targets, &web(), Moment::Finished(status), previous.as_ref());
            got.extend(fired.into_iter().map(|(t, e)| (t.name.clone(), e)));
            if is_verdict(status) {
                previous = Some(status.clone());
            }
        }
        got
    }

    const FAIL: BuildStatus = BuildStatus::Failed { exit_code: 1 };

    #[test]
    fn succeed_fail_fail_succeed_is_broken_once_failed_twice_fixed_once() {
        let targets = [
            target("broken", &[NotifyEvent::Broken], None),
            target("failed", &[NotifyEvent::Failed], None),
            target("fixed", &[NotifyEvent::Fixed], None),
        ];
        let results = [BuildStatus::Succeeded, FAIL, FAIL, BuildStatus::Succeeded];
        let got = run(&targets, &results);
        let count = |name: &str, event| got.iter().filter(|g| **g == (name.into(), event)).count();
        assert_eq!(count("broken", NotifyEvent::Broken), 1);
        assert_eq!(count("failed", NotifyEvent::Failed), 2);
        assert_eq!(count("fixed", NotifyEvent::Fixed), 1);
        assert_eq!(got.len(), 4, "{got:?}");
        // The first failure is the broken one: it comes before the second failure.
        assert_eq!(got[0], ("broken".into(), NotifyEvent::Broken));
    }

    #[test]
    fn one_notification_per_target_for_the_most_specific_event() {
        let all = [
            NotifyEvent::Succeeded,
            NotifyEvent::Failed,
            NotifyEvent::Broken,
            NotifyEvent::Fixed,
        ];
        let targets = [target("all", &all, None)];
        let results = [BuildStatus::Succeeded, FAIL, FAIL, BuildStatus::Succeeded];
        let events: Vec<_> = run(&targets, &results)
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            events,
            [
                NotifyEvent::Succeeded,
                NotifyEvent::Broken,
                NotifyEvent::Failed,
                NotifyEvent::Fixed
            ]
        );
    }

    #[test]
    fn errors_timeouts_and_cancels_are_passed_over_for_broken_and_fixed() {
        let targets = [target(
            "t",
            &[NotifyEvent::Broken, NotifyEvent::Fixed],
            None,
        )];
        let results = [
            FAIL,
            BuildStatus::Error { reason: "x".into() },
            BuildStatus::TimedOut,
            BuildStatus::Cancelled,
            BuildStatus::Interrupted,
            BuildStatus::Succeeded,
        ];
        assert_eq!(run(&targets, &results), [("t".into(), NotifyEvent::Fixed)]);
        // A first build that fails has no success before it: not broken.
        assert!(run(&targets, &[FAIL]).is_empty());
    }

    #[test]
    fn every_end_has_its_event_and_started_its_own() {
        let every = [
            NotifyEvent::Started,
            NotifyEvent::Succeeded,
            NotifyEvent::Failed,
            NotifyEvent::Error,
            NotifyEvent::TimedOut,
            NotifyEvent::Cancelled,
        ];
        let targets = [target("t", &every, None)];
        let fired = |m: Moment<'_>| plan(&targets, &web(), m, None).first().map(|(_, e)| *e);
        assert_eq!(fired(Moment::Started), Some(NotifyEvent::Started));
        let ends = [
            (BuildStatus::Succeeded, Some(NotifyEvent::Succeeded)),
            (FAIL, Some(NotifyEvent::Failed)),
            (
                BuildStatus::Error { reason: "r".into() },
                Some(NotifyEvent::Error),
            ),
            (BuildStatus::TimedOut, Some(NotifyEvent::TimedOut)),
            (BuildStatus::Cancelled, Some(NotifyEvent::Cancelled)),
            (BuildStatus::Interrupted, None),
        ];
        for (status, want) in ends {
            assert_eq!(fired(Moment::Finished(&status)), want, "{status:?}");
        }
    }

    #[test]
    fn targets_cover_their_feeds_only() {
        let targets = [
            target("web-only", &[NotifyEvent::Failed], Some(&["web"])),
            target("api-only", &[NotifyEvent::Failed], Some(&["api"])),
            target("every", &[NotifyEvent::Failed], None),
            target("wants-success", &[NotifyEvent::Succeeded], None),
        ];
        let names: Vec<_> = plan(&targets, &web(), Moment::Finished(&FAIL), None)
            .into_iter()
            .map(|(t, _)| t.name.as_str())
            .collect();
        assert_eq!(names, ["web-only", "every"]);
    }
}
