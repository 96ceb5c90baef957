//! Bitbucket Cloud: `repo:push` webhooks, and the retired "POST service" (form body,
//! no event header). Neither payload has a clone URL, so it is derived from the web URL.
//! A tag change's `target` is the tagged commit, annotated tag or not.

use serde::Deserialize;

use super::{buildable, Incoming};
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, PushEvent};

#[derive(Deserialize)]
struct Body {
    repository: Repository,
    push: Push,
}

#[derive(Deserialize)]
struct Repository {
    links: Option<Links>,
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct Links {
    html: Option<Href>,
}

#[derive(Deserialize)]
struct Href {
    href: String,
}

#[derive(Deserialize)]
struct Push {
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    new: Option<RefState>,
    old: Option<RefState>,
}

#[derive(Deserialize)]
struct RefState {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    target: Target,
}

#[derive(Deserialize)]
struct Target {
    hash: String,
    message: Option<String>,
}

pub(super) fn parse(request: &Incoming) -> Result<Delivery, ParseError> {
    let event = request.event("x-event-key")?;
    let delivery_id = request.id("x-request-uuid");
    if event != "repo:push" {
        return Ok(request.other(event, delivery_id));
    }
    let body: Body = request.json()?;
    let repo_url = clone_url(body.repository);
    let changes = body
        .push
        .changes
        .into_iter()
        .map(|change| {
            Ok(PushEvent {
                event: event.clone(),
                delivery_id: delivery_id.clone(),
                repo_url: repo_url.clone(),
                ..ref_change(request, change)?
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let push = PushEvent::of_changes(changes).ok_or_else(|| missing(request, "push.changes"))?;
    Ok(Delivery::Push(push))
}

/// One entry of `push.changes`: a created or moved ref (`new`) or a deleted one.
fn ref_change(request: &Incoming, change: Change) -> Result<PushEvent, ParseError> {
    let deleted = change.new.is_none();
    let (old, new) = (change.old, change.new);
    let named = new
        .as_ref()
        .or(old.as_ref())
        .ok_or_else(|| missing(request, "push.changes.new"))?;
    let git_ref = request.git_ref("push.changes.new.name", full_ref(request, named)?)?;
    let (commit, head_message) = match new {
        Some(state) => (buildable(state.target.hash, false), state.target.message),
        None => (None, None),
    };
    Ok(PushEvent {
        provider: request.provider,
        event: String::new(),
        delivery_id: None,
        repo_url: None,
        git_ref: Some(git_ref),
        commit,
        before: old.map(|state| state.target.hash),
        deleted,
        head_message,
        also: Vec::new(),
    })
}

fn missing(request: &Incoming, field: &'static str) -> ParseError {
    ParseError::Field {
        provider: request.provider,
        field,
        problem: "is missing or empty",
    }
}

fn full_ref(request: &Incoming, state: &RefState) -> Result<String, ParseError> {
    match state.kind.as_str() {
        "branch" | "named_branch" => Ok(format!("refs/heads/{}", state.name)),
        "tag" | "annotated_tag" => Ok(format!("refs/tags/{}", state.name)),
        _ => Err(ParseError::Field {
            provider: request.provider,
            field: "push.changes.new.type",
            problem: "is neither a branch nor a tag",
        }),
    }
}

/// `links.html.href` + ".git" is the HTTPS clone URL; `full_name` is the fallback.
fn clone_url(repository: Repository) -> Option<String> {
    let html = repository
        .links
        .and_then(|links| links.html)
        .map(|html| html.href);
    let web = html.or_else(|| {
        let name = repository.full_name?;
        Some(format!("https://bitbucket.org/{name}"))
    })?;
    Some(format!("{}.git", web.trim_end_matches('/')))
}

/// The legacy POST service's payload (`payload=` form field).
#[derive(Deserialize)]
struct Legacy {
    canon_url: String,
    repository: LegacyRepository,
    #[serde(default)]
    commits: Option<Vec<LegacyCommit>>,
}

#[derive(Deserialize)]
struct LegacyRepository {
    absolute_url: String,
}

#[derive(Deserialize)]
struct LegacyCommit {
    branch: Option<String>,
    raw_node: String,
    message: Option<String>,
}

/// The legacy service lists the pushed commits oldest first, each with its branch; the
/// last one that names a branch is the new head. It sends no event name and no id.
pub(super) fn parse_legacy(request: &Incoming) -> Result<Delivery, ParseError> {
    let legacy: Legacy = request.json()?;
    let repo_url = format!(
        "{}/{}.git",
        legacy.canon_url.trim_end_matches('/'),
        legacy.repository.absolute_url.trim_matches('/')
    );
    let head = legacy
        .commits
        .into_iter()
        .flatten()
        .rfind(|commit| commit.branch.is_some());
    let Some(LegacyCommit {
        branch: Some(branch),
        raw_node,
        message,
    }) = head
    else {
        return Ok(request.other("push without commits".to_owned(), None));
    };
    Ok(Delivery::Push(PushEvent {
        provider: request.provider,
        event: "push".to_owned(),
        delivery_id: None,
        repo_url: Some(repo_url),
        git_ref: Some(request.git_ref("commits.branch", format!("refs/heads/{branch}"))?),
        commit: buildable(raw_node, false),
        before: None,
        deleted: false,
        head_message: message,
        also: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use crate::hook::{provider::parse, Delivery};

    fn cloud(key: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-event-key", key.parse().unwrap());
        headers.insert("x-request-uuid", "r-1".parse().unwrap());
        headers
    }

    fn push(body: &str) -> crate::hook::event::PushEvent {
        match parse(&cloud("repo:push"), None, body.as_bytes()).unwrap() {
            Delivery::Push(push) => push,
            other => panic!("not a push: {other:?}"),
        }
    }

    #[test]
    fn branch_deletion_has_new_null() {
        let push = push(
            r#"{"repository":{"full_name":"a/b"},"push":{"changes":[{"new":null,"closed":true,
            "old":{"type":"branch","name":"gone","target":{"hash":"abc"}}}]}}"#,
        );
        assert!(push.deleted);
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/gone"));
        assert_eq!(push.commit, None);
        assert_eq!(
            push.repo_url.as_deref(),
            Some("https://bitbucket.org/a/b.git")
        );
    }

    #[test]
    fn every_change_is_kept_in_payload_order() {
        let push = push(
            r#"{"repository":{},"push":{"changes":[
            {"new":null,"old":{"type":"branch","name":"gone","target":{"hash":"abc"}}},
            {"new":{"type":"tag","name":"v1","target":{"hash":"def","message":"m"}},"old":null}]}}"#,
        );
        assert!(push.deleted);
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/gone"));
        let tag = &push.also[0];
        assert!(!tag.deleted);
        assert_eq!(tag.git_ref.as_deref(), Some("refs/tags/v1"));
        assert_eq!(tag.commit.as_deref(), Some("def"));
        assert_eq!(
            (tag.event.as_str(), tag.repo_url.as_deref()),
            ("repo:push", None)
        );
    }

    #[test]
    fn empty_changes_is_a_400() {
        let body = br#"{"repository":{},"push":{"changes":[]}}"#;
        let err = parse(&cloud("repo:push"), None, body)
            .unwrap_err()
            .to_string();
        assert!(err.contains("push.changes"), "{err}");
    }

    #[test]
    fn pull_requests_are_other() {
        let delivery = parse(&cloud("pullrequest:created"), None, b"{}").unwrap();
        assert!(matches!(delivery, Delivery::Other { .. }));
    }

    #[test]
    fn legacy_without_commits_is_ignorable() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let json = r#"{"canon_url":"https://bitbucket.org","repository":{"absolute_url":"/a/b/"},"commits":[]}"#;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        let delivery = parse(&headers, None, body.as_bytes()).unwrap();
        assert!(matches!(delivery, Delivery::Other { .. }), "{delivery:?}");
    }
}
