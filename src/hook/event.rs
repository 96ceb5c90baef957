//! The normalised shape of a delivery, whatever forge sent it, and the bounds every
//! field must keep before it may reach the store.

use std::fmt;

use crate::build::truncate_marked;
use crate::hook::error::ParseError;

/// Which kind of sender a delivery came from; decides parsing and signature checking.
///
/// Serialised with the same stable lowercase names as [`Provider::as_str`], so stored
/// delivery records and JSON output do not depend on Rust identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) enum Provider {
    #[serde(rename = "github")]
    GitHub,
    #[serde(rename = "gitlab")]
    GitLab,
    #[serde(rename = "bitbucket-cloud")]
    BitbucketCloud,
    /// Bitbucket's retired "POST service": form body, no event header, no signature.
    #[serde(rename = "bitbucket-legacy")]
    BitbucketLegacy,
    #[serde(rename = "bitbucket-server")]
    BitbucketServer,
    #[serde(rename = "gitea")]
    Gitea,
    #[serde(rename = "forgejo")]
    Forgejo,
    #[serde(rename = "gogs")]
    Gogs,
    #[serde(rename = "azure-devops")]
    AzureDevOps,
    /// Anything unrecognised: a plain `curl -X POST`, a git hook, a CI service.
    #[serde(rename = "generic")]
    Generic,
}

impl Provider {
    /// Stable lowercase name for logs, metrics labels, `HOOKD_PROVIDER` and stored records.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::BitbucketCloud => "bitbucket-cloud",
            Provider::BitbucketLegacy => "bitbucket-legacy",
            Provider::BitbucketServer => "bitbucket-server",
            Provider::Gitea => "gitea",
            Provider::Forgejo => "forgejo",
            Provider::Gogs => "gogs",
            Provider::AzureDevOps => "azure-devops",
            Provider::Generic => "generic",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A push (or a generic trigger), reduced to what deciding and building need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushEvent {
    pub(crate) provider: Provider,
    /// Event name as the forge sent it ("push", "Push Hook", "repo:push", "git.push", "generic").
    pub(crate) event: String,
    /// The forge's id for this delivery, to answer redeliveries without a second build.
    pub(crate) delivery_id: Option<String>,
    /// Clone URL of the pushed repository, when the payload says (or implies) it.
    pub(crate) repo_url: Option<String>,
    /// Full ref ("refs/heads/main", "refs/tags/v1"); `None` only for a generic trigger
    /// without `?branch=`, which builds the feed's default branch.
    pub(crate) git_ref: Option<String>,
    /// The commit the push names; `None` for deletions and generic triggers (fetch
    /// decides). For an annotated tag it is the tagged commit wherever the payload
    /// carries it (GitHub and Gitea `head_commit.id`, GitLab `checkout_sha`, Bitbucket
    /// Server `toCommit.id`, Bitbucket Cloud's `target`); else the tag object (Azure
    /// DevOps, Gogs, older GitHub and Bitbucket Server), which the fetch peels.
    pub(crate) commit: Option<String>,
    /// The ref's previous commit, when the forge reports it.
    pub(crate) before: Option<String>,
    /// The push deleted the ref: nothing to build.
    pub(crate) deleted: bool,
    /// Message of the pushed head commit, to honour `[skip ci]`.
    pub(crate) head_message: Option<String>,
    /// The push's further ref changes, in payload order: Bitbucket and Azure DevOps
    /// send several in one delivery (`git push --follow-tags`: a branch and its tag).
    /// Each is judged on its own; they repeat this event's shared fields and have no
    /// `also` of their own. Empty for forges that send one ref per delivery.
    pub(crate) also: Vec<PushEvent>,
}

impl PushEvent {
    /// This change, then the others of the same push, in payload order.
    pub(crate) fn changes(&self) -> impl Iterator<Item = &PushEvent> {
        std::iter::once(self).chain(&self.also)
    }

    /// One event per change of a push, the first carrying the rest in `also`;
    /// `None` when the push changed nothing.
    pub(crate) fn of_changes(changes: Vec<PushEvent>) -> Option<PushEvent> {
        let mut changes = changes.into_iter();
        let mut first = changes.next()?;
        first.also = changes.collect();
        Some(first)
    }
}

/// What one request turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Something to consider building.
    Push(PushEvent),
    /// A test delivery (GitHub `ping`, Bitbucket Server `diagnostics:ping`, Gitea's
    /// "Test Delivery"): answered with a pong, never built.
    Ping {
        provider: Provider,
        event: String,
        delivery_id: Option<String>,
    },
    /// Any other event (merge requests, issues, system hooks): recorded and ignored.
    Other {
        provider: Provider,
        event: String,
        delivery_id: Option<String>,
    },
}

impl Delivery {
    /// Who sent it, for the delivery log and metrics.
    pub(crate) fn provider(&self) -> Provider {
        match self {
            Delivery::Push(push) => push.provider,
            Delivery::Ping { provider, .. } | Delivery::Other { provider, .. } => *provider,
        }
    }

    /// The event name as sent, for the delivery log.
    pub(crate) fn event(&self) -> &str {
        match self {
            Delivery::Push(push) => &push.event,
            Delivery::Ping { event, .. } | Delivery::Other { event, .. } => event,
        }
    }

    /// The forge's delivery id, the key for recognising redeliveries.
    pub(crate) fn delivery_id(&self) -> Option<&str> {
        match self {
            Delivery::Push(push) => push.delivery_id.as_deref(),
            Delivery::Ping { delivery_id, .. } | Delivery::Other { delivery_id, .. } => {
                delivery_id.as_deref()
            }
        }
    }
}

/// Longest event name kept; forges' names are under 40 bytes.
pub(crate) const MAX_EVENT_BYTES: usize = 100;
/// Longest delivery id kept; forges send GUIDs (36 bytes) or numbers.
pub(crate) const MAX_DELIVERY_ID_BYTES: usize = 128;
/// Longest ref kept (git's own limit is the file system's name length).
pub(crate) const MAX_REF_BYTES: usize = 255;
/// Head commit messages are cut to this many bytes, with a marker appended.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;
/// Most ref changes one delivery may carry; the reply lists each, and the delivery
/// record keeps the reply, so this bounds the record (Bitbucket Cloud itself sends
/// at most 5 and marks the rest `truncated`).
pub(crate) const MAX_REF_CHANGES: usize = 10;
impl Delivery {
    /// Refuses (400) a delivery whose fields exceed their bounds, and cuts messages.
    ///
    /// Every field here can reach a stored record. sled writes a value or tree node
    /// over its blob threshold (128 KiB) to a file of its own, so bounding the fields
    /// keeps every record, and every node of 17 records, far below it.
    pub(crate) fn bounded(self) -> Result<Self, ParseError> {
        let provider = self.provider();
        let field = |field, problem| ParseError::Field {
            provider,
            field,
            problem,
        };
        if self.event().len() > MAX_EVENT_BYTES {
            return Err(field("event name", "is longer than 100 bytes"));
        }
        if self
            .delivery_id()
            .is_some_and(|id| id.len() > MAX_DELIVERY_ID_BYTES)
        {
            return Err(field("delivery id", "is longer than 128 bytes"));
        }
        let Delivery::Push(mut push) = self else {
            return Ok(self);
        };
        if push.also.len() >= MAX_REF_CHANGES {
            return Err(field("ref changes", "are more than 10 in one delivery"));
        }
        let also = std::mem::take(&mut push.also);
        let mut push = bounded_change(push, &field)?;
        push.also = also
            .into_iter()
            .map(|change| bounded_change(change, &field))
            .collect::<Result<_, _>>()?;
        Ok(Delivery::Push(push))
    }
}

/// [`Delivery::bounded`] for one ref change.
fn bounded_change(
    mut push: PushEvent,
    field: &impl Fn(&'static str, &'static str) -> ParseError,
) -> Result<PushEvent, ParseError> {
    if push
        .git_ref
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REF_BYTES)
    {
        return Err(field("ref", "is longer than 255 bytes"));
    }
    // `before` is never stored, only compared.
    if push.commit.as_deref().is_some_and(|id| !is_object_id(id)) {
        return Err(field("commit id", "is not 40 or 64 hex digits"));
    }
    if let Some(url) = &push.repo_url {
        if url.len() > 2048 {
            return Err(field("repository URL", "is longer than 2048 bytes"));
        }
    }
    push.head_message = push
        .head_message
        .map(|m| truncate_marked(m, MAX_MESSAGE_BYTES));
    Ok(push)
}

/// A SHA-1 (40) or SHA-256 (64) object id in hex.
fn is_object_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::TRUNCATED;

    fn push() -> PushEvent {
        PushEvent {
            provider: Provider::GitHub,
            event: "push".to_owned(),
            delivery_id: Some("d".repeat(MAX_DELIVERY_ID_BYTES)),
            repo_url: None,
            git_ref: Some(format!("refs/heads/{}", "b".repeat(MAX_REF_BYTES - 11))),
            commit: Some("a".repeat(64)),
            before: Some("0".repeat(40)),
            deleted: false,
            head_message: Some("é".repeat(MAX_MESSAGE_BYTES)),
            also: Vec::new(),
        }
    }

    fn refused(push: PushEvent) -> String {
        Delivery::Push(push).bounded().unwrap_err().to_string()
    }

    #[test]
    fn fields_at_their_limits_pass_and_messages_are_cut_with_a_marker() {
        let Delivery::Push(bounded) = Delivery::Push(push()).bounded().unwrap() else {
            panic!("not a push");
        };
        let message = bounded.head_message.unwrap();
        assert!(message.ends_with(TRUNCATED), "{message}");
        assert_eq!(message.len(), MAX_MESSAGE_BYTES + TRUNCATED.len());
        assert_eq!(bounded.commit, push().commit);
    }

    #[test]
    fn over_long_or_non_hex_fields_are_refused() {
        let mut p = push();
        p.event = "e".repeat(MAX_EVENT_BYTES + 1);
        assert!(refused(p).contains("event name"));
        let mut p = push();
        p.delivery_id = Some("d".repeat(MAX_DELIVERY_ID_BYTES + 1));
        assert!(refused(p).contains("delivery id"));
        let mut p = push();
        p.git_ref = Some(format!("refs/heads/{}", "b".repeat(MAX_REF_BYTES)));
        assert!(refused(p).contains("ref"));
        for bad in [
            "abc",
            &"g".repeat(40),
            &"a".repeat(41),
            &"a".repeat(2_000_000),
        ] {
            let mut p = push();
            p.commit = Some(bad.to_owned());
            assert!(refused(p).contains("40 or 64 hex"), "{bad:.50}");
        }
        let other = Delivery::Other {
            provider: Provider::AzureDevOps,
            event: "x".repeat(50_000),
            delivery_id: None,
        };
        assert!(other.bounded().is_err());
    }

    #[test]
    fn every_change_is_bounded_and_at_most_ten_per_delivery() {
        let mut p = push();
        p.also = vec![push(); MAX_REF_CHANGES - 1];
        let Delivery::Push(bounded) = Delivery::Push(p.clone()).bounded().unwrap() else {
            panic!("not a push");
        };
        assert_eq!(bounded.changes().count(), MAX_REF_CHANGES);
        assert!(bounded.also[8]
            .head_message
            .as_deref()
            .is_some_and(|m| m.ends_with(TRUNCATED)));
        p.also.push(push());
        assert!(refused(p.clone()).contains("more than 10"));
        p.also.truncate(2);
        p.also[1].commit = Some("xyz".into());
        assert!(refused(p).contains("40 or 64 hex"));
    }

    #[test]
    fn serde_names_match_as_str() {
        let all = [
            Provider::GitHub,
            Provider::GitLab,
            Provider::BitbucketCloud,
            Provider::BitbucketLegacy,
            Provider::BitbucketServer,
            Provider::Gitea,
            Provider::Forgejo,
            Provider::Gogs,
            Provider::AzureDevOps,
            Provider::Generic,
        ];
        for provider in all {
            let json = serde_json::to_string(&provider).unwrap();
            assert_eq!(json, format!("\"{provider}\""));
            assert_eq!(serde_json::from_str::<Provider>(&json).unwrap(), provider);
        }
    }
}
