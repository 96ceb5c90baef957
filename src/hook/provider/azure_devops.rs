//! Azure DevOps service hooks: `git.push` (the event is `eventType` in the body, there
//! is no event header); every other event type is ignorable. For an annotated tag,
//! `newObjectId` is the tag object and the payload names no commit: it is kept as
//! the pushed id and the fetch peels it.

use serde::Deserialize;

use super::{buildable, is_zero_sha, Incoming};
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, PushEvent};

#[derive(Deserialize)]
struct Head {
    id: Option<String>,
    #[serde(rename = "eventType")]
    event_type: String,
}

#[derive(Deserialize)]
struct Body {
    resource: Resource,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    ref_updates: Vec<RefUpdate>,
    repository: Option<Repository>,
    commits: Option<Vec<Commit>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefUpdate {
    name: String,
    old_object_id: Option<String>,
    new_object_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Repository {
    remote_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Commit {
    commit_id: String,
    comment: Option<String>,
}

pub(super) fn parse(request: &Incoming) -> Result<Delivery, ParseError> {
    let head: Head = request.json()?;
    let delivery_id = head.id.filter(|id| !id.is_empty());
    if head.event_type != "git.push" {
        return Ok(request.other(head.event_type, delivery_id));
    }
    let body: Body = request.json()?;
    let resource = body.resource;
    let repo_url = resource.repository.and_then(|repo| repo.remote_url);
    let commits = resource.commits.unwrap_or_default();
    let changes = resource
        .ref_updates
        .into_iter()
        .map(|update| {
            let deleted = is_zero_sha(&update.new_object_id);
            let head_message = commits
                .iter()
                .find(|commit| commit.commit_id == update.new_object_id)
                .and_then(|commit| commit.comment.clone());
            Ok(PushEvent {
                provider: request.provider,
                event: head.event_type.clone(),
                delivery_id: delivery_id.clone(),
                repo_url: repo_url.clone(),
                git_ref: Some(request.git_ref("resource.refUpdates.name", update.name)?),
                commit: buildable(update.new_object_id, deleted),
                before: update.old_object_id,
                deleted,
                head_message,
                also: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let push = PushEvent::of_changes(changes).ok_or(ParseError::Field {
        provider: request.provider,
        field: "resource.refUpdates",
        problem: "is empty",
    })?;
    Ok(Delivery::Push(push))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use crate::hook::{provider::parse, Delivery, Provider};

    #[test]
    fn other_event_types_are_ignorable() {
        let body = br#"{"id":"x","eventType":"build.complete","resource":{}}"#;
        let delivery = parse(&HeaderMap::new(), None, body).unwrap();
        assert_eq!(delivery.provider(), Provider::AzureDevOps);
        assert!(matches!(delivery, Delivery::Other { .. }));
        assert_eq!(delivery.delivery_id(), Some("x"));
    }

    #[test]
    fn push_without_resource_names_the_field() {
        let body = br#"{"eventType":"git.push"}"#;
        let err = parse(&HeaderMap::new(), None, body)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `resource`"), "{err}");
    }
}
