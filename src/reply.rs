//! What the hook endpoint answers: every outcome of a hook request is one [`HookReply`]
//! variant, and [`HookReply::parts`] maps it to status, headers and body in one
//! exhaustive match. The store keeps the reply as this data, so a redelivery is
//! answered from it without calling back up into the intake.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::build::BuildId;
use crate::clock::rfc3339;

/// One hook request's outcome. Stored by variant position: new variants go last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookReply {
    /// A new build was queued (202).
    Queued {
        /// The build.
        build: BuildId,
    },
    /// The trigger joined a queued build (202).
    Coalesced {
        /// The build it joined.
        build: BuildId,
    },
    /// The build waits for the feed's cooldown (202).
    Deferred {
        /// The build that will run.
        build: BuildId,
        /// When it may start, Unix ms.
        run_at_ms: i64,
    },
    /// A ping or test delivery (200).
    Pong,
    /// Nothing to build: an unwatched ref, a deleted branch, another event (200).
    Ignored {
        /// Why.
        reason: String,
    },
    /// The signature or token check failed (401).
    Unauthorized {
        /// Which check, never the secret.
        reason: String,
    },
    /// The request could not be read or parsed (400).
    BadRequest {
        /// What was wrong.
        reason: String,
    },
    /// The body could not be read off the connection (400).
    Unreadable,
    /// The body is over the limit (413).
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body did not arrive in time (408).
    TimedOut,
    /// Unknown, malformed or revoked token (404, the same for all three).
    NotFound,
    /// Cooldown policy `reject` (429 with Retry-After).
    Rejected {
        /// Seconds until the cooldown ends.
        retry_after_secs: u64,
    },
    /// Too many request bodies are held in memory right now (503 with Retry-After).
    Busy {
        /// Seconds to wait before sending again.
        retry_after_secs: u64,
    },
    /// The trigger could not be made durable, or the daemon is stopping (503).
    Unavailable {
        /// Which.
        reason: String,
    },
    /// A reply recorded by a hookd from before replies were data, sent back as it was.
    Recorded {
        /// Its HTTP status.
        status: u16,
        /// Its JSON body.
        body: String,
    },
    /// A delivery that changed several refs (Bitbucket, Azure DevOps): each ref's own
    /// outcome in payload order, listed under `refs`. The top level (HTTP status,
    /// `status`, `build`) is the first ref that got a build, else the first rejected,
    /// else the first ref, so clients that read one outcome still read the right one.
    Refs {
        /// Each ref and what became of it.
        refs: Vec<RefReply>,
    },
}

/// One ref change of a multi-ref delivery and its own one-ref reply (queued,
/// coalesced, deferred, rejected or ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefReply {
    /// The full ref.
    pub(crate) git_ref: String,
    /// What became of it.
    pub(crate) reply: HookReply,
}

/// Which of a delivery's ref outcomes the reply's top level speaks for: the first
/// that got a build, else the first rejected (its 429 tells the sender to retry),
/// else the first.
pub(crate) fn top_index(refs: &[RefReply]) -> usize {
    let built = refs.iter().position(|r| r.reply.build().is_some());
    let rejected = || {
        refs.iter()
            .position(|r| matches!(r.reply, HookReply::Rejected { .. }))
    };
    built.or_else(rejected).unwrap_or(0)
}

/// A reply as HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parts {
    /// The status code.
    pub(crate) status: StatusCode,
    /// Seconds for `Retry-After`, when the sender should come back later.
    pub(crate) retry_after: Option<u64>,
    /// The JSON body, always with a `status` word.
    pub(crate) body: String,
}

impl HookReply {
    /// The status, headers and body this outcome is sent as: the one place they are chosen.
    pub(crate) fn parts(&self) -> Parts {
        let word = self.word();
        let (status, body) = match self {
            Self::Queued { build } | Self::Coalesced { build } => (
                StatusCode::ACCEPTED,
                serde_json::json!({ "status": word, "build": build.0 }),
            ),
            Self::Deferred { build, run_at_ms } => (
                StatusCode::ACCEPTED,
                serde_json::json!({ "status": word, "build": build.0, "run_at": rfc3339(*run_at_ms) }),
            ),
            Self::Pong => (StatusCode::OK, serde_json::json!({ "status": word })),
            Self::Ignored { reason } => (StatusCode::OK, with_reason(word, reason)),
            Self::Unauthorized { reason } => (StatusCode::UNAUTHORIZED, with_reason(word, reason)),
            Self::BadRequest { reason } => (StatusCode::BAD_REQUEST, with_reason(word, reason)),
            // These were written out by hand before this enum: same bytes still.
            Self::TooLarge { limit } => {
                return raw(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        r#"{{"status":"too_large","reason":"request body is over the {limit} byte limit"}}"#
                    ),
                )
            }
            Self::TimedOut => {
                return raw(
                    StatusCode::REQUEST_TIMEOUT,
                    r#"{"status":"timeout","reason":"request body took too long"}"#.into(),
                )
            }
            Self::Busy { retry_after_secs } => {
                return Parts {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    retry_after: Some(*retry_after_secs),
                    body: r#"{"status":"unavailable","reason":"too many request bodies in memory; retry later"}"#.into(),
                }
            }
            Self::Unreadable => {
                return raw(
                    StatusCode::BAD_REQUEST,
                    r#"{"status":"bad_request","reason":"request body could not be read"}"#.into(),
                )
            }
            Self::NotFound => (StatusCode::NOT_FOUND, serde_json::json!({ "status": word })),
            Self::Rejected { retry_after_secs } => {
                let body = serde_json::json!({
                    "status": word,
                    "reason": "the feed is cooling down",
                    "retry_after": retry_after_secs,
                });
                return Parts {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    retry_after: Some(*retry_after_secs),
                    body: body.to_string(),
                };
            }
            Self::Unavailable { reason } => {
                (StatusCode::SERVICE_UNAVAILABLE, with_reason(word, reason))
            }
            Self::Recorded { status, body } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return raw(status, body.clone());
            }
            Self::Refs { refs } => return refs_parts(refs),
        };
        Parts {
            status,
            retry_after: None,
            body: body.to_string(),
        }
    }

    /// The body's `status` word, also the delivery's recorded outcome.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::Coalesced { .. } => "coalesced",
            Self::Deferred { .. } => "deferred",
            Self::Pong => "pong",
            Self::Ignored { .. } => "ignored",
            Self::Unauthorized { .. } => "unauthorized",
            Self::BadRequest { .. } | Self::Unreadable => "bad_request",
            Self::TooLarge { .. } => "too_large",
            Self::TimedOut => "timeout",
            Self::NotFound => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } | Self::Busy { .. } => "unavailable",
            Self::Recorded { .. } => "recorded",
            Self::Refs { refs } => refs
                .get(top_index(refs))
                .map_or("ignored", |r| r.reply.word()),
        }
    }

    /// The build this reply names, if any.
    pub(crate) fn build(&self) -> Option<BuildId> {
        match self {
            Self::Queued { build } | Self::Coalesced { build } | Self::Deferred { build, .. } => {
                Some(*build)
            }
            Self::Recorded { body, .. } => serde_json::from_str::<serde_json::Value>(body)
                .ok()?
                .get("build")?
                .as_u64()
                .map(BuildId),
            Self::Refs { refs } => refs.get(top_index(refs))?.reply.build(),
            _ => None,
        }
    }

    /// The body's `reason`, when it gives one (ignored, refused, rejected).
    pub(crate) fn reason(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_str(&self.parts().body).ok()?;
        body.get("reason")?.as_str().map(str::to_owned)
    }

    /// Each ref's outcome, for a delivery that changed several; empty otherwise.
    pub(crate) fn refs(&self) -> &[RefReply] {
        match self {
            Self::Refs { refs } => refs,
            _ => &[],
        }
    }

    /// Whether the sender was told it succeeded (2xx): only those replies are
    /// remembered for a redelivery, so a bad signature never sticks to an id.
    pub(crate) fn is_success(&self) -> bool {
        self.parts().status.is_success()
    }
}

/// A multi-ref reply: the top outcome's status, Retry-After and body, with `refs`
/// listing each ref's own body and its `ref`.
fn refs_parts(refs: &[RefReply]) -> Parts {
    let top = refs.get(top_index(refs)).map(|r| r.reply.parts());
    let mut parts = top.unwrap_or_else(|| raw(StatusCode::OK, r#"{"status":"ignored"}"#.into()));
    let object = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}))
    };
    let listed: Vec<serde_json::Value> = refs
        .iter()
        .map(|r| {
            let mut entry = object(&r.reply.parts().body);
            entry["ref"] = r.git_ref.clone().into();
            entry
        })
        .collect();
    let mut body = object(&parts.body);
    body["refs"] = listed.into();
    parts.body = body.to_string();
    parts
}

fn raw(status: StatusCode, body: String) -> Parts {
    Parts {
        status,
        retry_after: None,
        body,
    }
}

fn with_reason(word: &str, reason: &str) -> serde_json::Value {
    serde_json::json!({ "status": word, "reason": reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_statuses_are_the_ones_forges_see() {
        let cases = [
            (
                HookReply::Queued { build: BuildId(7) },
                202,
                r#"{"build":7,"status":"queued"}"#,
            ),
            (
                HookReply::Coalesced { build: BuildId(7) },
                202,
                r#"{"build":7,"status":"coalesced"}"#,
            ),
            (
                HookReply::Deferred {
                    build: BuildId(7),
                    run_at_ms: 0,
                },
                202,
                r#"{"build":7,"run_at":"1970-01-01T00:00:00Z","status":"deferred"}"#,
            ),
            (HookReply::Pong, 200, r#"{"status":"pong"}"#),
            (HookReply::NotFound, 404, r#"{"status":"not_found"}"#),
            (
                HookReply::TooLarge { limit: 10 },
                413,
                r#"{"status":"too_large","reason":"request body is over the 10 byte limit"}"#,
            ),
            (
                HookReply::Rejected {
                    retry_after_secs: 5,
                },
                429,
                r#"{"reason":"the feed is cooling down","retry_after":5,"status":"rejected"}"#,
            ),
            (
                HookReply::Recorded {
                    status: 202,
                    body: r#"{"build":3}"#.into(),
                },
                202,
                r#"{"build":3}"#,
            ),
        ];
        for (reply, status, body) in cases {
            let parts = reply.parts();
            assert_eq!(
                (parts.status.as_u16(), parts.body.as_str()),
                (status, body),
                "{reply:?}"
            );
        }
        let rejected = HookReply::Rejected {
            retry_after_secs: 5,
        }
        .parts();
        assert_eq!(rejected.retry_after, Some(5));
        assert_eq!(HookReply::Pong.parts().retry_after, None);
    }

    #[test]
    fn only_success_is_remembered_and_builds_are_named() {
        assert!(HookReply::Queued { build: BuildId(1) }.is_success());
        assert!(!HookReply::Unauthorized { reason: "x".into() }.is_success());
        let old = HookReply::Recorded {
            status: 202,
            body: r#"{"build":3,"status":"queued"}"#.into(),
        };
        assert_eq!(old.build(), Some(BuildId(3)));
        assert_eq!(
            HookReply::Deferred {
                build: BuildId(4),
                run_at_ms: 0
            }
            .build(),
            Some(BuildId(4))
        );
        assert_eq!(HookReply::Pong.build(), None);
    }

    fn at(git_ref: &str, reply: HookReply) -> RefReply {
        RefReply {
            git_ref: git_ref.into(),
            reply,
        }
    }

    #[test]
    fn several_refs_answer_for_the_first_built_and_list_each() {
        let ignored = |reason: &str| HookReply::Ignored {
            reason: reason.into(),
        };
        let reply = HookReply::Refs {
            refs: vec![
                at("refs/heads/dev", ignored("branch dev is not watched")),
                at(
                    "refs/heads/main",
                    HookReply::Rejected {
                        retry_after_secs: 5,
                    },
                ),
                at("refs/tags/v1", HookReply::Queued { build: BuildId(7) }),
            ],
        };
        let parts = reply.parts();
        assert_eq!((parts.status.as_u16(), parts.retry_after), (202, None));
        assert_eq!(
            parts.body,
            concat!(
                r#"{"build":7,"refs":["#,
                r#"{"reason":"branch dev is not watched","ref":"refs/heads/dev","status":"ignored"},"#,
                r#"{"reason":"the feed is cooling down","ref":"refs/heads/main","retry_after":5,"status":"rejected"},"#,
                r#"{"build":7,"ref":"refs/tags/v1","status":"queued"}"#,
                r#"],"status":"queued"}"#
            )
        );
        assert_eq!((reply.word(), reply.build()), ("queued", Some(BuildId(7))));
        assert_eq!(reply.reason(), None);
        assert_eq!(reply.refs().len(), 3);

        // Nothing built: the first rejection speaks, with its Retry-After.
        let HookReply::Refs { mut refs } = reply else {
            unreachable!()
        };
        refs.pop();
        let rejected = HookReply::Refs { refs };
        let parts = rejected.parts();
        assert_eq!((parts.status.as_u16(), parts.retry_after), (429, Some(5)));
        assert_eq!(rejected.word(), "rejected");
        // Nothing built or rejected: the first ref, ignored.
        let none = HookReply::Refs {
            refs: vec![
                at("refs/heads/a", ignored("branch a was deleted")),
                at("refs/heads/b", ignored("branch b is not watched")),
            ],
        };
        assert_eq!(none.parts().status.as_u16(), 200);
        assert_eq!(none.reason().as_deref(), Some("branch a was deleted"));
        assert!(none.is_success());
        assert!(none.refs().iter().all(|r| r.reply.build().is_none()));
    }
}
