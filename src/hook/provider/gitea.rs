//! Gitea, Forgejo and Gogs: GitHub-like push payloads under their own headers. A push
//! whose `before` equals `after` is the "Test Delivery" button, answered as a ping.

use serde::Deserialize;

use super::{buildable, is_zero_sha, tag_commit, Incoming};
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, Provider, PushEvent};

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: String,
    repository: Repository,
    head_commit: Option<Commit>,
    commits: Option<Vec<Commit>>,
}

#[derive(Deserialize)]
struct Repository {
    clone_url: Option<String>,
}

#[derive(Deserialize)]
struct Commit {
    #[serde(default)]
    id: String,
    message: Option<String>,
}

/// (event header, delivery header) for each flavour.
fn header_names(provider: Provider) -> (&'static str, &'static str) {
    match provider {
        Provider::Forgejo => ("x-forgejo-event", "x-forgejo-delivery"),
        Provider::Gogs => ("x-gogs-event", "x-gogs-delivery"),
        _ => ("x-gitea-event", "x-gitea-delivery"),
    }
}

pub(super) fn parse(request: &Incoming) -> Result<Delivery, ParseError> {
    let (event_header, delivery_header) = header_names(request.provider);
    let event = request.event(event_header)?;
    let delivery_id = request.id(delivery_header);
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
    // Newer Gitea tests with all-zero ids; older Gitea and Gogs with the head commit as
    // both before and after. A real push never has before == after.
    if push.before.as_deref() == Some(push.after.as_str()) {
        return Ok(request.ping(event, delivery_id));
    }
    let deleted = is_zero_sha(&push.after);
    let head_message = head_message(&push);
    let git_ref = request.git_ref("ref", push.git_ref)?;
    // Gitea and Forgejo send an annotated tag's commit as `head_commit` (Gitea 1.17+,
    // go-gitea/gitea#18173); Gogs sends no `head_commit`, so its tag object is kept.
    let head_id = push.head_commit.map(|commit| commit.id);
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

/// `head_commit` where sent (Gitea), else the listed commit whose id is `after` (Gogs).
fn head_message(push: &Push) -> Option<String> {
    let listed = push.commits.iter().flatten();
    push.head_commit
        .iter()
        .chain(listed.filter(|commit| commit.id == push.after))
        .find_map(|commit| commit.message.clone())
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use crate::hook::{provider::parse, Delivery, Provider};

    fn gitea_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", "push".parse().unwrap());
        headers.insert("x-gitea-event", "push".parse().unwrap());
        headers.insert("x-gitea-delivery", "d-1".parse().unwrap());
        headers
    }

    #[test]
    fn test_delivery_with_zero_ids_is_a_ping() {
        let zero = "0".repeat(40);
        let body = format!(
            r#"{{"ref":"refs/heads/main","before":"{zero}","after":"{zero}","repository":{{}}}}"#
        );
        let delivery = parse(&gitea_headers(), None, body.as_bytes()).unwrap();
        assert_eq!(
            delivery,
            Delivery::Ping {
                provider: Provider::Gitea,
                event: "push".into(),
                delivery_id: Some("d-1".into()),
            }
        );
    }

    #[test]
    fn older_test_delivery_with_head_as_before_and_after_is_a_ping() {
        let body = br#"{"ref":"refs/heads/main","before":"abc1","after":"abc1","repository":{}}"#;
        let delivery = parse(&gitea_headers(), None, body).unwrap();
        assert!(matches!(delivery, Delivery::Ping { .. }));
    }

    #[test]
    fn deletion_is_a_push_marked_deleted() {
        let zero = "0".repeat(40);
        let body = format!(
            r#"{{"ref":"refs/heads/x","before":"abc1","after":"{zero}","repository":{{}}}}"#
        );
        let Delivery::Push(push) = parse(&gitea_headers(), None, body.as_bytes()).unwrap() else {
            panic!("not a push");
        };
        assert!(push.deleted);
        assert_eq!(push.commit, None);
    }

    #[test]
    fn form_encoded_gitea_push() {
        let mut headers = gitea_headers();
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let json = r#"{"ref":"refs/heads/main","before":"a1","after":"b2","repository":{"clone_url":"u"},"commits":[{"id":"b2","message":"m [skip ci]"}]}"#;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        let Delivery::Push(push) = parse(&headers, None, body.as_bytes()).unwrap() else {
            panic!("not a push");
        };
        assert_eq!(push.commit.as_deref(), Some("b2"));
        assert_eq!(push.head_message.as_deref(), Some("m [skip ci]"));
    }

    #[test]
    fn other_gitea_events_are_ignorable() {
        let mut headers = gitea_headers();
        headers.insert("x-gitea-event", "create".parse().unwrap());
        let delivery = parse(&headers, None, b"{}").unwrap();
        assert!(matches!(delivery, Delivery::Other { .. }));
    }
}
