//! The normalised shape of a delivery, whatever forge sent it.

use std::fmt;

/// Which kind of sender a delivery came from; decides parsing and signature checking.
///
/// Serialised with the same stable lowercase names as [`Provider::as_str`], so stored
/// delivery records and JSON output do not depend on Rust identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Provider {
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
    pub fn as_str(self) -> &'static str {
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
pub struct PushEvent {
    pub provider: Provider,
    /// Event name as the forge sent it ("push", "Push Hook", "repo:push", "git.push", "generic").
    pub event: String,
    /// The forge's id for this delivery, to answer redeliveries without a second build.
    pub delivery_id: Option<String>,
    /// Clone URL of the pushed repository, when the payload says (or implies) it.
    pub repo_url: Option<String>,
    /// Full ref ("refs/heads/main", "refs/tags/v1"); `None` only for a generic trigger
    /// without `?branch=`, which builds the feed's default branch.
    pub git_ref: Option<String>,
    /// The commit the push names; `None` for deletions and generic triggers (fetch
    /// decides). For an annotated tag it is the tagged commit wherever the payload
    /// carries it (GitHub and Gitea `head_commit.id`, GitLab `checkout_sha`, Bitbucket
    /// Server `toCommit.id`, Bitbucket Cloud's `target`); else the tag object (Azure
    /// DevOps, Gogs, older GitHub and Bitbucket Server), which the fetch peels.
    pub commit: Option<String>,
    /// The ref's previous commit, when the forge reports it.
    pub before: Option<String>,
    /// The push deleted the ref: nothing to build.
    pub deleted: bool,
    /// Message of the pushed head commit, to honour `[skip ci]`.
    pub head_message: Option<String>,
}

/// What one request turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
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
    pub fn provider(&self) -> Provider {
        match self {
            Delivery::Push(push) => push.provider,
            Delivery::Ping { provider, .. } | Delivery::Other { provider, .. } => *provider,
        }
    }

    /// The event name as sent, for the delivery log.
    pub fn event(&self) -> &str {
        match self {
            Delivery::Push(push) => &push.event,
            Delivery::Ping { event, .. } | Delivery::Other { event, .. } => event,
        }
    }

    /// The forge's delivery id, the key for recognising redeliveries.
    pub fn delivery_id(&self) -> Option<&str> {
        match self {
            Delivery::Push(push) => push.delivery_id.as_deref(),
            Delivery::Ping { delivery_id, .. } | Delivery::Other { delivery_id, .. } => {
                delivery_id.as_deref()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
