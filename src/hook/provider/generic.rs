//! Generic triggers (`curl -X POST`, git hooks, CI services): the body is ignored; the
//! query's `?branch=NAME` names the branch, else the feed's default branch is built.

use http::HeaderMap;

use super::checked_ref;
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, Provider, PushEvent};
use crate::hook::request::header;

pub(super) fn parse(headers: &HeaderMap, query: Option<&str>) -> Result<Delivery, ParseError> {
    let git_ref = branch(query).map(to_ref).transpose()?;
    Ok(Delivery::Push(PushEvent {
        provider: Provider::Generic,
        event: "generic".to_owned(),
        // A caller that retries can send the standard Idempotency-Key to avoid rebuilding.
        delivery_id: header(headers, "idempotency-key")
            .filter(|key| !key.is_empty())
            .map(str::to_owned),
        repo_url: None,
        git_ref,
        commit: None,
        before: None,
        deleted: false,
        head_message: None,
    }))
}

/// The first `branch` query parameter, percent-decoded; an empty value counts as absent.
fn branch(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "branch")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
}

/// A branch name becomes `refs/heads/NAME`; a full `refs/...` name is kept as given.
fn to_ref(branch: String) -> Result<String, ParseError> {
    let full = if branch.starts_with("refs/") {
        branch
    } else {
        format!("refs/heads/{branch}")
    };
    checked_ref(Provider::Generic, "branch", full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::parse;

    fn push(query: Option<&str>, body: &[u8]) -> PushEvent {
        match parse(&HeaderMap::new(), query, body).unwrap() {
            Delivery::Push(push) => push,
            other => panic!("not a push: {other:?}"),
        }
    }

    #[test]
    fn empty_post_builds_the_default_branch() {
        let push = push(None, b"");
        assert_eq!(push.provider, Provider::Generic);
        assert_eq!(push.event, "generic");
        assert_eq!(push.git_ref, None);
    }

    #[test]
    fn branch_query_is_percent_decoded() {
        let push = push(
            Some("x=1&branch=release%2F1.0&branch=other"),
            b"ignored body",
        );
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/release/1.0"));
        assert_eq!(push.provider, Provider::Generic);
    }

    #[test]
    fn empty_branch_counts_as_absent() {
        assert_eq!(push(Some("branch="), b"").git_ref, None);
    }

    #[test]
    fn full_refs_are_kept() {
        let push = push(Some("branch=refs/tags/v1"), b"");
        assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v1"));
    }

    #[test]
    fn invalid_branch_is_a_400() {
        let err = parse(&HeaderMap::new(), Some("branch=a..b"), b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "generic delivery: `branch` is not a valid git ref name"
        );
    }

    #[test]
    fn idempotency_key_is_the_delivery_id() {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", "k1".parse().unwrap());
        let delivery = parse(&headers, None, b"").unwrap();
        assert_eq!(delivery.delivery_id(), Some("k1"));
    }
}
