//! GitHub: `push` (JSON or form-encoded), `ping`, and every other event as ignorable.

use serde::Deserialize;

use super::{buildable, is_zero_sha, tag_commit, Incoming};
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, PushEvent};

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
    head_commit: Option<HeadCommit>,
}

#[derive(Deserialize)]
struct Repository {
    clone_url: Option<String>,
}

/// For a tag, the tagged commit (GitHub sends it since October 2021; before, tag
/// pushes often had none), while `after` is the tag object of an annotated tag.
#[derive(Deserialize)]
struct HeadCommit {
    id: Option<String>,
    message: Option<String>,
}

pub(super) fn parse(request: &Incoming) -> Result<Delivery, ParseError> {
    let event = request.event("x-github-event")?;
    let delivery_id = request.id("x-github-delivery");
    match event.as_str() {
        "ping" => Ok(request.ping(event, delivery_id)),
        "push" => push(request, event, delivery_id),
        _ => Ok(request.other(event, delivery_id)),
    }
}

fn push(
    request: &Incoming,
    event: String,
    delivery_id: Option<String>,
) -> Result<Delivery, ParseError> {
    let push: Push = request.json()?;
    let deleted = push.deleted || is_zero_sha(&push.after);
    let git_ref = request.git_ref("ref", push.git_ref)?;
    let (head_id, head_message) = match push.head_commit {
        Some(head) => (head.id, head.message),
        None => (None, None),
    };
    Ok(Delivery::Push(PushEvent {
        provider: request.provider,
        event,
        delivery_id,
        repo_url: push.repository.clone_url,
        commit: buildable(tag_commit(&git_ref, push.after, head_id), deleted),
        git_ref: Some(git_ref),
        before: push.before,
        deleted,
        head_message,
        also: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use crate::hook::{provider::parse, Delivery, ParseError, Provider};

    fn github(event: &'static str, content_type: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", event.parse().unwrap());
        headers.insert("content-type", content_type.parse().unwrap());
        headers
    }

    #[test]
    fn form_body_without_payload_is_a_400() {
        let headers = github("push", "application/x-www-form-urlencoded");
        let err = parse(&headers, None, b"other=1").unwrap_err();
        assert_eq!(
            err,
            ParseError::NoFormPayload {
                provider: Provider::GitHub
            }
        );
    }

    #[test]
    fn unknown_events_are_other_without_reading_the_body() {
        let headers = github("issues", "application/json");
        let delivery = parse(&headers, None, b"not json").unwrap();
        assert!(matches!(delivery, Delivery::Other { .. }));
        assert_eq!(delivery.event(), "issues");
    }

    #[test]
    fn push_without_ref_names_the_field() {
        let headers = github("push", "application/json");
        let body = br#"{"after":"abc","repository":{}}"#;
        let err = parse(&headers, None, body).unwrap_err().to_string();
        assert!(err.contains("missing field `ref`"), "{err}");
    }

    #[test]
    fn bogus_ref_is_refused() {
        let headers = github("push", "application/json");
        let body = br#"{"ref":"refs/heads/a..b","after":"abc","repository":{}}"#;
        let err = parse(&headers, None, body).unwrap_err().to_string();
        assert!(err.contains("not a valid git ref"), "{err}");
    }
}
