//! GitLab: push and tag push hooks (also when sent as `Service Hook`, recognised by
//! `object_kind`); system hooks and every other kind are ignorable.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{buildable, is_zero_sha, Incoming};
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, PushEvent};

/// Enough of any GitLab body to know what it is.
#[derive(Deserialize)]
struct Kind {
    object_kind: Option<String>,
    event_name: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: String,
    /// The commit a tag points at; `after` is the tag object for annotated tags.
    checkout_sha: Option<String>,
    project: Option<Location>,
    repository: Option<Location>,
    #[serde(default)]
    commits: Option<Vec<Commit>>,
}

#[derive(Deserialize)]
struct Location {
    git_http_url: Option<String>,
}

#[derive(Deserialize)]
struct Commit {
    #[serde(default)]
    id: String,
    message: Option<String>,
}

pub(super) fn parse(request: &Incoming) -> Result<Delivery, ParseError> {
    // Idempotency-Key survives GitLab's retries; X-Gitlab-Event-UUID is the older id.
    let delivery_id = request
        .id("idempotency-key")
        .or_else(|| request.id("x-gitlab-event-uuid"));
    let header_event = request.id("x-gitlab-event");
    // System hooks fire for every project on the instance: never a feed's trigger.
    if let Some(event) = header_event.clone().filter(|e| e == "System Hook") {
        return Ok(request.other(event, delivery_id));
    }
    let kind: Kind = request.json()?;
    let event = header_event
        .or_else(|| kind.object_kind.clone())
        .unwrap_or_else(|| "unknown".to_owned());
    match kind.object_kind.as_deref() {
        Some("push" | "tag_push") => push(request, event, delivery_id),
        Some(_) => Ok(request.other(event, delivery_id)),
        None if kind.event_name.is_some() => Ok(request.other(event, delivery_id)),
        None => Err(ParseError::Field {
            provider: request.provider,
            field: "object_kind",
            problem: "is missing",
        }),
    }
}

fn push(
    request: &Incoming,
    event: String,
    delivery_id: Option<String>,
) -> Result<Delivery, ParseError> {
    let push: Push = request.json()?;
    let deleted = is_zero_sha(&push.after);
    let target = push
        .checkout_sha
        .clone()
        .unwrap_or_else(|| push.after.clone());
    let head_message = push
        .commits
        .iter()
        .flatten()
        .find(|commit| commit.id == target)
        .and_then(|commit| commit.message.clone());
    let repo_url = [push.project, push.repository]
        .into_iter()
        .flatten()
        .find_map(|location| location.git_http_url);
    Ok(Delivery::Push(PushEvent {
        provider: request.provider,
        event,
        delivery_id,
        repo_url,
        git_ref: Some(request.git_ref("ref", push.git_ref)?),
        commit: buildable(target, deleted),
        before: push.before,
        deleted,
        head_message,
        also: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use crate::hook::fixtures;
    use crate::hook::{provider::parse, Delivery, Provider};

    fn tag_push_case() -> fixtures::Case {
        fixtures::cases()
            .into_iter()
            .find(|c| c.provider == "gitlab" && c.name == "tag-push")
            .unwrap()
    }

    #[test]
    fn service_hook_with_push_body_is_a_push() {
        let case = tag_push_case();
        let mut headers = case.headers.clone();
        headers.insert("x-gitlab-event", "Service Hook".parse().unwrap());
        let Delivery::Push(push) = parse(&headers, None, &case.body).unwrap() else {
            panic!("not a push");
        };
        assert_eq!(push.event, "Service Hook");
        assert_eq!(
            push.commit.as_deref(),
            Some("16862e368d8ab812e48833b741dad720d6e2cb7f")
        );
    }

    #[test]
    fn push_without_any_gitlab_header_is_recognised_by_object_kind() {
        let case = tag_push_case();
        let delivery = parse(&HeaderMap::new(), None, &case.body).unwrap();
        assert_eq!(delivery.provider(), Provider::GitLab);
        assert_eq!(delivery.event(), "tag_push");
    }

    #[test]
    fn idempotency_key_is_preferred() {
        let case = tag_push_case();
        let mut headers = case.headers.clone();
        headers.insert("idempotency-key", "idem-1".parse().unwrap());
        let delivery = parse(&headers, None, &case.body).unwrap();
        assert_eq!(delivery.delivery_id(), Some("idem-1"));
    }

    #[test]
    fn body_without_object_kind_or_event_name_is_a_400() {
        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-event", "Push Hook".parse().unwrap());
        let err = parse(&headers, None, b"{}").unwrap_err().to_string();
        assert!(err.contains("object_kind"), "{err}");
    }
}
