//! Deciding what a delivery asks for, given the feed's branch patterns: build, pong, or
//! ignore with a reason the sender and `hookd admin deliveries` can read.
//!
//! Patterns are globs matched like git refspecs and most CIs: `*` does not cross `/`
//! (`release/*` matches `release/1.0`, `*` does not match `feature/x`), `**` spans any
//! depth (`feature/**`). A plain pattern matches branch names; one starting with
//! `refs/` matches the full ref, which is how a feed watches tags (`refs/tags/v*`).

use glob::{MatchOptions, Pattern};

use crate::hook::event::{Delivery, PushEvent};

const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

const SKIP_MARKERS: [&str; 2] = ["[skip ci]", "[ci skip]"];

/// The feed's branch patterns, borrowed from its config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchRules<'a> {
    pub(crate) patterns: &'a [String],
}

impl<'a> WatchRules<'a> {
    /// A feed's branch patterns as the rules that judge every trigger's ref.
    pub(crate) fn of(feed: &'a crate::feed::Feed) -> Self {
        Self {
            patterns: &feed.branches,
        }
    }
}

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Queue a build of `git_ref`; `branch` is its short name (tag name for tags), the
    /// value of `HOOKD_BRANCH`; `commit` is the pushed commit if the forge said.
    Build {
        git_ref: String,
        branch: String,
        commit: Option<String>,
    },
    /// A test delivery: answer `{"status":"pong"}`.
    Pong,
    /// A generic trigger named no ref and the feed has no default: a 400 that says
    /// how to name one.
    NeedsRef(NoDefaultRef),
    /// Nothing to build; the reason goes into the 200 reply and the delivery log.
    Ignore(String),
}

/// A trigger that names no ref (`curl -X POST URL`, `hookd admin trigger NAME`) on a
/// feed whose patterns give it nothing to build by default: hookd never builds a ref
/// the feed does not watch, so the caller must name one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the feed watches no branch to build by default (it watches {})", .patterns.join(", "))]
pub(crate) struct NoDefaultRef {
    /// The feed's patterns, to show what it does watch.
    pub(crate) patterns: Vec<String>,
}

/// The full ref a trigger that names none builds: the first literal branch pattern
/// (`main`, `refs/heads/trunk`), else the first literal full ref (`refs/tags/v1`), else
/// `refs/heads/main` if a glob watches it. A feed that watches only globbed tags (or
/// only globbed branches that main does not match) has no default.
pub(crate) fn implicit_ref(rules: &WatchRules) -> Result<String, NoDefaultRef> {
    let literal = |pattern: &&String| !pattern.contains(['*', '?', '[', ']']);
    let as_ref = |pattern: &String| match pattern.strip_prefix("refs/") {
        Some(_) => pattern.clone(),
        None => format!("refs/heads/{pattern}"),
    };
    let literals: Vec<String> = rules.patterns.iter().filter(literal).map(as_ref).collect();
    let branch = literals.iter().find(|r| r.starts_with("refs/heads/"));
    branch
        .or(literals.first())
        .cloned()
        .or_else(|| Some("refs/heads/main".to_owned()).filter(|main| rules.watches(main)))
        .ok_or_else(|| NoDefaultRef {
            patterns: rules.patterns.to_vec(),
        })
}

/// The short name of a full ref (branch or tag name), the value of `HOOKD_BRANCH`.
pub(crate) fn short_name(git_ref: &str) -> &str {
    RefName::of(git_ref).short()
}

/// Decides what `delivery` asks for under `rules`.
pub(crate) fn decide(delivery: &Delivery, rules: &WatchRules) -> Decision {
    match delivery {
        Delivery::Push(push) => decide_push(push, rules),
        Delivery::Ping { .. } => Decision::Pong,
        Delivery::Other { event, .. } => Decision::Ignore(format!("event {event} ignored")),
    }
}

/// One ref change of a push and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeDecision {
    /// The full ref it changed.
    pub(crate) git_ref: String,
    /// The commit pushed to it, if the forge said.
    pub(crate) commit: Option<String>,
    /// Build it (`Build`) or not (`Ignore`, with the reason).
    pub(crate) decision: Decision,
}

/// Decides every ref change of a push on its own, in payload order (Bitbucket and
/// Azure DevOps send all the refs one push changed in one delivery). A ref named a
/// second time is ignored, since its first change already stands for it.
pub(crate) fn decide_changes(push: &PushEvent, rules: &WatchRules) -> Vec<ChangeDecision> {
    let mut decided: Vec<ChangeDecision> = Vec::new();
    for change in push.changes() {
        let git_ref = change.git_ref.clone().unwrap_or_default();
        let decision = if decided.iter().any(|d| d.git_ref == git_ref) {
            Decision::Ignore(format!("{git_ref} is named earlier in this delivery"))
        } else {
            match decide_push(change, rules) {
                Decision::NeedsRef(none) => Decision::Ignore(none.to_string()),
                decision => decision,
            }
        };
        decided.push(ChangeDecision {
            git_ref,
            commit: change.commit.clone(),
            decision,
        });
    }
    decided
}

/// Decides one ref change of a push.
fn decide_push(push: &PushEvent, rules: &WatchRules) -> Decision {
    let Some(git_ref) = push.git_ref.as_deref() else {
        return match implicit_ref(rules) {
            Ok(git_ref) => Decision::Build {
                branch: short_name(&git_ref).to_owned(),
                git_ref,
                commit: push.commit.clone(),
            },
            Err(none) => Decision::NeedsRef(none),
        };
    };
    let name = RefName::of(git_ref);
    if push.deleted {
        return Decision::Ignore(format!("{name} was deleted"));
    }
    if !rules.watches(git_ref) {
        return Decision::Ignore(name.unwatched());
    }
    if let Some(marker) = skip_marker(push.head_message.as_deref()) {
        return Decision::Ignore(format!("head commit message contains {marker}"));
    }
    Decision::Build {
        git_ref: git_ref.to_owned(),
        branch: name.short().to_owned(),
        commit: push.commit.clone(),
    }
}

impl WatchRules<'_> {
    /// Whether any pattern matches this full ref.
    pub(crate) fn watches(&self, git_ref: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| pattern_matches(pattern, git_ref))
    }
}

fn pattern_matches(pattern: &str, git_ref: &str) -> bool {
    let subject = if pattern.starts_with("refs/") {
        Some(git_ref)
    } else {
        git_ref.strip_prefix("refs/heads/")
    };
    let Some(subject) = subject else {
        return false;
    };
    Pattern::new(pattern).is_ok_and(|compiled| compiled.matches_with(subject, MATCH))
}

fn skip_marker(message: Option<&str>) -> Option<&'static str> {
    let message = message?.to_ascii_lowercase();
    SKIP_MARKERS
        .into_iter()
        .find(|marker| message.contains(marker))
}

/// A ref as people name it, for reasons and `HOOKD_BRANCH`.
enum RefName<'a> {
    Branch(&'a str),
    Tag(&'a str),
    Other(&'a str),
}

impl<'a> RefName<'a> {
    fn of(git_ref: &'a str) -> Self {
        if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
            RefName::Branch(branch)
        } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
            RefName::Tag(tag)
        } else {
            RefName::Other(git_ref)
        }
    }

    fn short(&self) -> &'a str {
        match self {
            RefName::Branch(name) | RefName::Tag(name) | RefName::Other(name) => name,
        }
    }

    fn unwatched(&self) -> String {
        match self {
            RefName::Branch(name) => format!("branch {name} is not watched"),
            RefName::Tag(name) => {
                format!("tag {name} is not watched (a refs/tags/ pattern builds tags)")
            }
            RefName::Other(name) => format!("ref {name} is not watched"),
        }
    }
}

impl std::fmt::Display for RefName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefName::Branch(name) => write!(f, "branch {name}"),
            RefName::Tag(name) => write!(f, "tag {name}"),
            RefName::Other(name) => write!(f, "ref {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::event::Provider;
    use crate::hook::{fixtures, provider::parse};

    fn strings(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| (*p).to_owned()).collect()
    }

    fn push(git_ref: Option<&str>) -> PushEvent {
        PushEvent {
            provider: Provider::GitHub,
            event: "push".into(),
            delivery_id: None,
            repo_url: None,
            git_ref: git_ref.map(str::to_owned),
            commit: Some("abc".into()),
            before: None,
            deleted: false,
            head_message: Some("fix things".into()),
            also: Vec::new(),
        }
    }

    fn decide_with(push: PushEvent, patterns: &[&str]) -> Decision {
        let patterns = strings(patterns);
        decide(
            &Delivery::Push(push),
            &WatchRules {
                patterns: &patterns,
            },
        )
    }

    const FEED: [&str; 5] = ["main", "master", "develop", "renovate-all", "fdsafdsa"];

    #[test]
    fn every_fixture_is_decided_as_the_manifest_expects() {
        let with_tags = [&FEED[..], &["refs/tags/*"]].concat();
        for case in fixtures::cases() {
            let delivery = parse(&case.headers, None, &case.body).unwrap();
            let decision = decide_with_delivery(&delivery, &with_tags);
            let expect = case.field("expect").unwrap();
            match decision {
                Decision::Build {
                    git_ref, commit, ..
                } => {
                    assert!(expect.starts_with("build"), "{}: {expect}", case.id());
                    assert_eq!(Some(git_ref.as_str()), case.field("ref"), "{}", case.id());
                    let want = case.field("checkout_sha").or(case.field("after"));
                    assert_eq!(commit.as_deref(), want, "{}", case.id());
                }
                Decision::Pong => assert!(expect.starts_with("acknowledge"), "{}", case.id()),
                Decision::Ignore(reason) => {
                    assert!(expect.starts_with("ignore"), "{}: {reason}", case.id())
                }
                Decision::NeedsRef(none) => panic!("{}: {none}", case.id()),
            }
        }
    }

    fn decide_with_delivery(delivery: &Delivery, patterns: &[&str]) -> Decision {
        let patterns = strings(patterns);
        decide(
            delivery,
            &WatchRules {
                patterns: &patterns,
            },
        )
    }

    #[test]
    fn fixture_tags_are_ignored_without_a_tag_pattern() {
        for case in fixtures::cases() {
            if !case
                .field("ref")
                .is_some_and(|r| r.starts_with("refs/tags/"))
            {
                continue;
            }
            let delivery = parse(&case.headers, None, &case.body).unwrap();
            let Decision::Ignore(reason) = decide_with_delivery(&delivery, &FEED) else {
                panic!("{}: tag built without a tag pattern", case.id());
            };
            assert!(reason.starts_with("tag "), "{reason}");
        }
    }

    #[test]
    fn fixture_reasons() {
        let reasons: Vec<(String, String)> = fixtures::cases()
            .into_iter()
            .filter_map(|case| {
                let delivery = parse(&case.headers, None, &case.body).unwrap();
                match decide_with_delivery(&delivery, &FEED) {
                    Decision::Ignore(reason) => Some((case.id(), reason)),
                    _ => None,
                }
            })
            .collect();
        let find = |id: &str| &reasons.iter().find(|(case, _)| case == id).unwrap().1;
        assert_eq!(
            find("github/push-branch-delete"),
            "branch feature-branch was deleted"
        );
        assert_eq!(
            find("gitlab/merge-request"),
            "event Merge Request Hook ignored"
        );
        assert_eq!(find("gitlab/system-hook-push"), "event System Hook ignored");
    }

    #[test]
    fn star_does_not_cross_slashes_but_double_star_does() {
        let cases = [
            ("release/*", "refs/heads/release/1.0", true),
            ("release/*", "refs/heads/release/1.0/hotfix", false),
            ("*", "refs/heads/feature/x", false),
            ("*", "refs/heads/anything", true),
            ("feature/**", "refs/heads/feature/a/b", true),
            ("**", "refs/heads/feature/x", true),
            ("main", "refs/heads/main-2", false),
            ("main", "refs/tags/main", false),
            ("refs/heads/x", "refs/heads/x", true),
            ("refs/tags/v*", "refs/tags/v1.0", true),
            ("refs/tags/v*", "refs/heads/v1.0", false),
            ("Main", "refs/heads/main", false),
        ];
        for (pattern, git_ref, expected) in cases {
            let patterns = strings(&[pattern]);
            let rules = WatchRules {
                patterns: &patterns,
            };
            assert_eq!(rules.watches(git_ref), expected, "{pattern} vs {git_ref}");
        }
    }

    #[test]
    fn unwatched_branch_reason() {
        let decision = decide_with(push(Some("refs/heads/feature/x")), &["main"]);
        assert_eq!(
            decision,
            Decision::Ignore("branch feature/x is not watched".into())
        );
    }

    #[test]
    fn tags_need_a_tag_pattern() {
        let tag = || push(Some("refs/tags/v1.2"));
        assert!(matches!(
            decide_with(tag(), &["main", "*"]),
            Decision::Ignore(_)
        ));
        let built = decide_with(tag(), &["main", "refs/tags/v*"]);
        assert_eq!(
            built,
            Decision::Build {
                git_ref: "refs/tags/v1.2".into(),
                branch: "v1.2".into(),
                commit: Some("abc".into()),
            }
        );
    }

    #[test]
    fn deletions_are_ignored_even_when_watched() {
        let mut gone = push(Some("refs/heads/main"));
        gone.deleted = true;
        gone.commit = None;
        assert_eq!(
            decide_with(gone, &["main"]),
            Decision::Ignore("branch main was deleted".into())
        );
    }

    #[test]
    fn skip_markers_are_case_insensitive() {
        for message in ["wip [skip ci]", "WIP [CI Skip] now", "x\n\n[Skip CI]"] {
            let mut skipped = push(Some("refs/heads/main"));
            skipped.head_message = Some(message.into());
            let decision = decide_with(skipped, &["main"]);
            assert!(
                matches!(decision, Decision::Ignore(ref r) if r.contains("skip")),
                "{message}"
            );
        }
        let mut close = push(Some("refs/heads/main"));
        close.head_message = Some("skip ci later".into());
        assert!(matches!(
            decide_with(close, &["main"]),
            Decision::Build { .. }
        ));
    }

    #[test]
    fn generic_trigger_builds_default_branch_or_the_named_one() {
        let headers = http::HeaderMap::new();
        let bare = parse(&headers, None, b"").unwrap();
        let expected = Decision::Build {
            git_ref: "refs/heads/develop".into(),
            branch: "develop".into(),
            commit: None,
        };
        assert_eq!(
            decide_with_delivery(&bare, &["release/*", "develop"]),
            expected
        );
        let named = parse(&headers, Some("branch=release%2F2"), b"").unwrap();
        let decision = decide_with_delivery(&named, &["release/*", "develop"]);
        assert!(matches!(decision, Decision::Build { ref branch, .. } if branch == "release/2"));
        let unwatched = parse(&headers, Some("branch=wip"), b"").unwrap();
        let decision = decide_with_delivery(&unwatched, &["main"]);
        assert_eq!(
            decision,
            Decision::Ignore("branch wip is not watched".into())
        );
    }

    #[test]
    fn implicit_ref_is_always_a_watched_one() {
        let implicit = |patterns: &[&str]| {
            let patterns = strings(patterns);
            implicit_ref(&WatchRules {
                patterns: &patterns,
            })
        };
        let ok = |r: &str| Ok(r.to_owned());
        assert_eq!(
            implicit(&["release/*", "refs/heads/trunk"]),
            ok("refs/heads/trunk")
        );
        assert_eq!(implicit(&["refs/tags/v1", "dev"]), ok("refs/heads/dev"));
        assert_eq!(implicit(&["refs/tags/v1"]), ok("refs/tags/v1"));
        assert_eq!(implicit(&["*"]), ok("refs/heads/main"));
        assert_eq!(implicit(&["**"]), ok("refs/heads/main"));
        // Issue 10 item 13: a tags-only feed never builds main implicitly.
        for none in [
            &["refs/tags/v*"][..],
            &["feature/*"],
            &["refs/tags/*", "rel/*"],
        ] {
            let err = implicit(none).unwrap_err();
            assert_eq!(err.patterns, strings(none));
        }
        assert_eq!(
            implicit(&["refs/tags/v*", "rel/*"])
                .unwrap_err()
                .to_string(),
            "the feed watches no branch to build by default (it watches refs/tags/v*, rel/*)"
        );
    }

    #[test]
    fn generic_trigger_without_a_ref_on_a_tags_only_feed_needs_one() {
        let bare = parse(&http::HeaderMap::new(), None, b"").unwrap();
        assert!(matches!(
            decide_with_delivery(&bare, &["refs/tags/v*"]),
            Decision::NeedsRef(_)
        ));
    }

    #[test]
    fn every_change_of_a_push_is_decided_on_its_own() {
        let mut first = push(Some("refs/heads/main"));
        let tag = push(Some("refs/tags/v1"));
        let gone = PushEvent {
            deleted: true,
            commit: None,
            ..push(Some("refs/heads/gone"))
        };
        let again = push(Some("refs/heads/main"));
        first.also = vec![tag, gone, again];
        let patterns = strings(&["refs/tags/*", "gone", "main"]);
        let decided = decide_changes(
            &first,
            &WatchRules {
                patterns: &patterns,
            },
        );
        let refs: Vec<&str> = decided.iter().map(|d| d.git_ref.as_str()).collect();
        assert_eq!(
            refs,
            [
                "refs/heads/main",
                "refs/tags/v1",
                "refs/heads/gone",
                "refs/heads/main"
            ]
        );
        assert!(matches!(&decided[0].decision, Decision::Build { branch, .. } if branch == "main"));
        assert!(matches!(&decided[1].decision, Decision::Build { branch, .. } if branch == "v1"));
        assert_eq!(
            decided[2].decision,
            Decision::Ignore("branch gone was deleted".into())
        );
        assert_eq!(
            decided[3].decision,
            Decision::Ignore("refs/heads/main is named earlier in this delivery".into())
        );
        assert_eq!(decided[1].commit.as_deref(), Some("abc"));
    }
}
