//! Bitbucket Server / Data Center: `repo:refs_changed` pushes and the
//! `diagnostics:ping` test request (keyed on the header; its body means nothing).

use serde::Deserialize;

use super::{buildable, is_zero_sha, tag_commit, Incoming};
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, PushEvent};

#[derive(Deserialize)]
struct Body {
    repository: Repository,
    changes: Vec<Change>,
    /// The pushed commit (Bitbucket Data Center 8 and later; older servers omit it).
    /// For an annotated tag `toHash` is the tag object and this is its commit.
    #[serde(rename = "toCommit")]
    to_commit: Option<CommitRef>,
}

#[derive(Deserialize)]
struct CommitRef {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    clone: Vec<CloneLink>,
}

#[derive(Deserialize)]
struct CloneLink {
    href: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(rename = "refId")]
    ref_id: String,
    #[serde(rename = "fromHash")]
    from_hash: Option<String>,
    #[serde(rename = "toHash")]
    to_hash: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl Change {
    fn is_delete(&self) -> bool {
        self.kind.as_deref() == Some("DELETE") || is_zero_sha(&self.to_hash)
    }
}

pub(super) fn parse(request: &Incoming) -> Result<Delivery, ParseError> {
    let event = request.event("x-event-key")?;
    let delivery_id = request.id("x-request-id");
    match event.as_str() {
        "diagnostics:ping" => Ok(request.ping(event, delivery_id)),
        "repo:refs_changed" => refs_changed(request, event, delivery_id),
        _ => Ok(request.other(event, delivery_id)),
    }
}

fn refs_changed(
    request: &Incoming,
    event: String,
    delivery_id: Option<String>,
) -> Result<Delivery, ParseError> {
    let body: Body = request.json()?;
    // `toCommit` describes the push as a whole: it names a change's commit only when
    // the push changed one ref.
    let peeled = match body.changes.len() {
        1 => body.to_commit.and_then(|commit| commit.id),
        _ => None,
    };
    let repo_url = http_clone_url(body.repository);
    let changes = body
        .changes
        .into_iter()
        .map(|change| {
            let deleted = change.is_delete();
            let git_ref = request.git_ref("changes.refId", change.ref_id)?;
            Ok(PushEvent {
                provider: request.provider,
                event: event.clone(),
                delivery_id: delivery_id.clone(),
                repo_url: repo_url.clone(),
                commit: buildable(
                    tag_commit(&git_ref, change.to_hash, peeled.clone()),
                    deleted,
                ),
                git_ref: Some(git_ref),
                before: change.from_hash,
                deleted,
                head_message: None,
                also: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let push = PushEvent::of_changes(changes).ok_or(ParseError::Field {
        provider: request.provider,
        field: "changes",
        problem: "is empty",
    })?;
    Ok(Delivery::Push(push))
}

/// The clone link named "http" (Server's HTTP(S) URL); SSH needs keys hookd may not have.
fn http_clone_url(repository: Repository) -> Option<String> {
    let links = repository.links?.clone;
    links
        .into_iter()
        .find(|link| link.name.as_deref() == Some("http"))
        .map(|link| link.href)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use crate::hook::{provider::parse, Delivery};

    #[test]
    fn ping_ignores_any_body() {
        let mut headers = HeaderMap::new();
        headers.insert("x-event-key", "diagnostics:ping".parse().unwrap());
        for body in [&b""[..], b"not json", b"{\"test\": true}"] {
            let delivery = parse(&headers, None, body).unwrap();
            assert!(matches!(delivery, Delivery::Ping { .. }));
        }
    }

    #[test]
    fn empty_changes_is_a_400() {
        let mut headers = HeaderMap::new();
        headers.insert("x-event-key", "repo:refs_changed".parse().unwrap());
        let err = parse(&headers, None, br#"{"repository":{},"changes":[]}"#).unwrap_err();
        assert!(err.to_string().contains("`changes` is empty"), "{err}");
    }
}
