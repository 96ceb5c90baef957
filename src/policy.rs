//! The scheduling rules as pure functions over plain values: what becomes of a trigger
//! (coalesce, defer, reject, queue; cooldown and `--force`) and when a queued build
//! may start. The store reads the facts, calls these under its write lock, and
//! persists the decision in one atomic batch; it decides nothing itself.

use crate::build::TriggerKind;
use crate::feed::{CooldownPolicy, Feed};

/// What a trigger for a ref with no build pending becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewBuild {
    /// Cooldown policy `reject`: refuse, and say when to try again.
    Reject {
        /// Seconds until the cooldown ends (Retry-After), at least 1.
        retry_after_secs: u64,
    },
    /// Queue a new build of this kind, startable from `run_at_ms` (deferred) or now.
    Queue {
        /// The trigger's own kind, or `Deferred` when the cooldown holds it back.
        kind: TriggerKind,
        /// Not before this time, Unix ms; `None` = as soon as a worker is free.
        run_at_ms: Option<i64>,
    },
}

/// Decides a trigger for a ref with no pending build: the feed's last start and its
/// cooldown policy say whether it is queued, deferred or rejected; `force` skips it.
pub(crate) fn admit_new(
    feed: &Feed,
    last_start_ms: Option<i64>,
    kind: TriggerKind,
    force: bool,
    now_ms: i64,
) -> NewBuild {
    let cooling = cooling_until(feed, last_start_ms, now_ms).filter(|_| !force);
    match (cooling, feed.on_cooldown) {
        (Some(until), CooldownPolicy::Reject) => NewBuild::Reject {
            retry_after_secs: ((until - now_ms + 999) / 1000).max(1) as u64,
        },
        (Some(until), CooldownPolicy::Defer) => NewBuild::Queue {
            kind: TriggerKind::Deferred,
            run_at_ms: Some(until),
        },
        (None, _) => NewBuild::Queue {
            kind,
            run_at_ms: None,
        },
    }
}

/// A queued build's facts for the policy: when it may run and whether it skips the cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiting {
    /// Not before this time (deferred by the cooldown), Unix ms.
    pub(crate) run_at_ms: Option<i64>,
    /// Ignores the cooldown (`trigger --force`, retries).
    pub(crate) force: bool,
}

/// What a trigger joining a pending build does to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Join {
    /// The pending build's facts after the join (a forced trigger forces it).
    pub(crate) waiting: Waiting,
    /// Whether `waiting` changed and must be written back.
    pub(crate) changed: bool,
    /// `Some(t)`: the build is still deferred until `t`; `None`: it coalesced.
    pub(crate) deferred_until: Option<i64>,
}

/// Decides a trigger for a ref whose build is still queued: it joins that build; a
/// forced trigger lifts the deferral.
pub(crate) fn join(pending: Waiting, force: bool, now_ms: i64) -> Join {
    let mut waiting = pending;
    let changed = force && !pending.force;
    if changed {
        waiting = Waiting {
            run_at_ms: None,
            force: true,
        };
    }
    let deferred_until = waiting.run_at_ms.filter(|t| *t > now_ms && !waiting.force);
    Join {
        waiting,
        changed,
        deferred_until,
    }
}

fn cooldown_ms(feed: &Feed) -> i64 {
    i64::try_from(feed.cooldown_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// A feed's last start as the rules count it: one stamped after now (by a wall clock
/// that was ahead and has been set back) counts as now, so no stored time holds a feed
/// longer than one cooldown. The store writes the counted start back.
pub(crate) fn counted_start(last_start_ms: Option<i64>, now_ms: i64) -> Option<i64> {
    last_start_ms.map(|t| t.min(now_ms))
}

/// The cooldown end for a feed whose last build started at `last_start_ms`, if still
/// ahead; never later than now + the cooldown.
pub(crate) fn cooling_until(feed: &Feed, last_start_ms: Option<i64>, now_ms: i64) -> Option<i64> {
    let until = counted_start(last_start_ms, now_ms)?.saturating_add(cooldown_ms(feed));
    (feed.cooldown_secs > 0 && until > now_ms).then_some(until)
}

/// A deferral as the rules count it: never later than now + the feed's cooldown,
/// whatever the stored time says. The store writes the counted time back.
pub(crate) fn counted_run_at(feed: &Feed, run_at_ms: Option<i64>, now_ms: i64) -> Option<i64> {
    run_at_ms.map(|t| t.min(now_ms.saturating_add(cooldown_ms(feed))))
}

/// A feed's last build start as the claim rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LastStart {
    /// No start recorded.
    Unknown,
    /// As stored: wall time stamped then, by a clock that may have moved since.
    Stored(i64),
    /// A start this process made, timed on the monotonic clock and given in the wall
    /// time of now (now minus how long ago it really was): true across wall-clock
    /// jumps, so it alone decides the wait. It replaces the stored deferral, which is a
    /// cooldown end in the wall time of its admission, never later than this start's.
    Measured(i64),
}

impl LastStart {
    /// The stored time, or `Unknown`.
    pub(crate) fn stored(last_start_ms: Option<i64>) -> Self {
        last_start_ms.map_or(Self::Unknown, Self::Stored)
    }
}

/// When a queued build may start at the earliest, if that is still ahead: the later
/// of its deferral and its feed's cooldown, each as counted, unless it is forced. A
/// start this process measured counts instead of both stored times.
pub(crate) fn not_before(
    waiting: Waiting,
    feed: &Feed,
    last: LastStart,
    now_ms: i64,
) -> Option<i64> {
    if waiting.force {
        return None;
    }
    let (run_at_ms, last_start_ms) = match last {
        LastStart::Unknown => (waiting.run_at_ms, None),
        LastStart::Stored(t) => (waiting.run_at_ms, Some(t)),
        LastStart::Measured(t) => (None, Some(t)),
    };
    counted_run_at(feed, run_at_ms, now_ms)
        .into_iter()
        .chain(cooling_until(feed, last_start_ms, now_ms))
        .max()
        .filter(|t| *t > now_ms)
}

/// Whether a queued build counts as deferred in the queue's (due, deferred) counts.
pub(crate) fn is_deferred(waiting: Waiting, now_ms: i64) -> bool {
    matches!(waiting.run_at_ms, Some(t) if t > now_ms && !waiting.force)
}

/// Claim eligibility of the first waiting build of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eligibility {
    /// Start it now.
    Start,
    /// Its feed is running, paused or gone: look at later builds of other feeds.
    Skip,
    /// Not before this time; later builds of the same feed must not overtake it.
    Wait(i64),
}

/// Decides whether a queued build may start now: at most one build per feed, none for
/// a paused, retired or removed feed, none before its deferral or the feed's cooldown ends.
pub(crate) fn eligibility(
    waiting: Waiting,
    feed: Option<&Feed>,
    feed_busy: bool,
    last: LastStart,
    now_ms: i64,
) -> Eligibility {
    let Some(feed) = feed.filter(|f| !feed_busy && !f.paused && !f.retired()) else {
        return Eligibility::Skip;
    };
    match not_before(waiting, feed, last, now_ms) {
        Some(t) => Eligibility::Wait(t),
        None => Eligibility::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(cooldown_secs: u64, on_cooldown: CooldownPolicy) -> Feed {
        Feed {
            cooldown_secs,
            on_cooldown,
            ..crate::feed::sample("web")
        }
    }

    const HOOK: TriggerKind = TriggerKind::Hook;

    #[test]
    fn new_trigger_queues_defers_or_rejects_by_cooldown() {
        let defer = feed(60, CooldownPolicy::Defer);
        let reject = feed(60, CooldownPolicy::Reject);
        let queued = NewBuild::Queue {
            kind: HOOK,
            run_at_ms: None,
        };
        assert_eq!(admit_new(&defer, None, HOOK, false, 1000), queued);
        assert_eq!(admit_new(&defer, Some(0), HOOK, false, 60_000), queued);
        assert_eq!(
            admit_new(&defer, Some(0), HOOK, false, 1000),
            NewBuild::Queue {
                kind: TriggerKind::Deferred,
                run_at_ms: Some(60_000)
            }
        );
        assert_eq!(
            admit_new(&reject, Some(0), HOOK, false, 1000),
            NewBuild::Reject {
                retry_after_secs: 59
            }
        );
        assert_eq!(
            admit_new(&reject, Some(0), HOOK, false, 59_999),
            NewBuild::Reject {
                retry_after_secs: 1
            },
            "rounded up, never 0"
        );
        assert_eq!(
            admit_new(&reject, Some(0), HOOK, true, 1000),
            queued,
            "--force"
        );
        let none = feed(0, CooldownPolicy::Reject);
        assert_eq!(admit_new(&none, Some(999), HOOK, false, 1000), queued);
    }

    #[test]
    fn joining_coalesces_or_stays_deferred_and_force_lifts_the_deferral() {
        let deferred = Waiting {
            run_at_ms: Some(5000),
            force: false,
        };
        let j = join(deferred, false, 1000);
        assert_eq!((j.changed, j.deferred_until), (false, Some(5000)));
        let j = join(deferred, false, 5000);
        assert_eq!(j.deferred_until, None, "due now: coalesced");
        let j = join(deferred, true, 1000);
        assert!(j.changed);
        assert_eq!(
            j.waiting,
            Waiting {
                run_at_ms: None,
                force: true
            }
        );
        assert_eq!(j.deferred_until, None);
        let forced = j.waiting;
        assert!(!join(forced, true, 1000).changed, "already forced");
    }

    #[test]
    fn eligibility_honours_busy_paused_deferral_and_cooldown() {
        let f = feed(10, CooldownPolicy::Defer);
        let due = Waiting {
            run_at_ms: None,
            force: false,
        };
        assert_eq!(
            eligibility(due, Some(&f), false, LastStart::Unknown, 0),
            Eligibility::Start
        );
        assert_eq!(
            eligibility(due, Some(&f), true, LastStart::Unknown, 0),
            Eligibility::Skip
        );
        assert_eq!(
            eligibility(due, None, false, LastStart::Unknown, 0),
            Eligibility::Skip
        );
        let paused = Feed {
            paused: true,
            ..f.clone()
        };
        assert_eq!(
            eligibility(due, Some(&paused), false, LastStart::Unknown, 0),
            Eligibility::Skip
        );
        let retired = Feed {
            retired_ms: Some(1),
            ..f.clone()
        };
        assert_eq!(
            eligibility(due, Some(&retired), false, LastStart::Unknown, 0),
            Eligibility::Skip
        );
        assert_eq!(
            eligibility(due, Some(&f), false, LastStart::Stored(1000), 2000),
            Eligibility::Wait(11_000),
            "cooling down"
        );
        let deferred = Waiting {
            run_at_ms: Some(11_500),
            force: false,
        };
        assert_eq!(
            eligibility(deferred, Some(&f), false, LastStart::Stored(1000), 2000),
            Eligibility::Wait(11_500),
            "the later of deferral and cooldown"
        );
        let forced = Waiting {
            run_at_ms: Some(20_000),
            force: true,
        };
        assert_eq!(
            eligibility(forced, Some(&f), false, LastStart::Stored(1000), 2000),
            Eligibility::Start
        );
        assert!(is_deferred(deferred, 2000));
        assert!(!is_deferred(deferred, 20_000));
        assert!(!is_deferred(forced, 2000));
    }

    #[test]
    fn no_stored_time_holds_a_build_past_now_plus_the_cooldown() {
        let f = Feed {
            cooldown_secs: 60,
            ..crate::feed::sample("a")
        };
        let (now, day) = (10 * 86_400_000, 86_400_000);
        // Started and deferred by a daemon whose clock was a day ahead.
        let ahead = Waiting {
            run_at_ms: Some(now + day + 60_000),
            force: false,
        };
        assert_eq!(cooling_until(&f, Some(now + day), now), Some(now + 60_000));
        assert_eq!(
            not_before(ahead, &f, LastStart::Stored(now + day), now),
            Some(now + 60_000)
        );
        assert_eq!(
            not_before(ahead, &f, LastStart::Unknown, now),
            Some(now + 60_000)
        );
        // Once both are written back as counted, the end stays put.
        let counted = Waiting {
            run_at_ms: counted_run_at(&f, ahead.run_at_ms, now),
            force: false,
        };
        assert_eq!(
            not_before(counted, &f, LastStart::Stored(now), now + 30_000),
            Some(now + 60_000)
        );
        assert_eq!(
            not_before(counted, &f, LastStart::Stored(now), now + 60_000),
            None
        );
        // Times that are not ahead are kept as they are.
        let fair = Waiting {
            run_at_ms: Some(now + 20_000),
            force: false,
        };
        assert_eq!(
            not_before(fair, &f, LastStart::Stored(now - 40_000), now),
            Some(now + 20_000)
        );
        assert_eq!(counted_start(Some(now - 1), now), Some(now - 1));
    }

    #[test]
    fn a_start_this_process_measured_decides_the_wait_whatever_the_wall_clock_did() {
        let f = Feed {
            cooldown_secs: 60,
            ..crate::feed::sample("a")
        };
        let (start, day) = (10 * 86_400_000, 86_400_000);
        // Deferred at the start's cooldown end, in the wall time of then.
        let deferred = Waiting {
            run_at_ms: Some(start + 60_000),
            force: false,
        };
        // 20 s after the start the wall clock jumps a day ahead: the stored times say
        // the cooldown is long over (the wait shrank to nothing) ...
        let now = start + day + 20_000;
        assert_eq!(
            eligibility(deferred, Some(&f), false, LastStart::Stored(start), now),
            Eligibility::Start
        );
        // ... the start measured 20 s ago leaves 40 s.
        let measured = LastStart::Measured(now - 20_000);
        assert_eq!(
            eligibility(deferred, Some(&f), false, measured, now),
            Eligibility::Wait(now + 40_000)
        );
        // 20 s after the start the wall clock is set a day back: the stored times
        // hold the build for a whole cooldown from now (stretched by 20 s) ...
        let now = start - day + 20_000;
        assert_eq!(
            not_before(deferred, &f, LastStart::Stored(start), now),
            Some(now + 60_000)
        );
        // ... the measured start leaves 40 s.
        let measured = LastStart::Measured(now - 20_000);
        assert_eq!(not_before(deferred, &f, measured, now), Some(now + 40_000));
        // A cooldown this process measured as over is over, and forced builds wait
        // for nothing.
        let over = LastStart::Measured(now - 60_000);
        assert_eq!(not_before(deferred, &f, over, now), None);
        let forced = Waiting {
            force: true,
            ..deferred
        };
        assert_eq!(not_before(forced, &f, measured, now), None);
    }
}
