//! Generic triggers (`curl -X POST`, git hooks, CI services): the body is ignored; the
//! query's `?ref=refs/...` or `?branch=NAME` names what to build, else the feed's
//! default (see `rules::implicit_ref`).

use http::HeaderMap;

use super::checked_ref;
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, Provider, PushEvent};
use crate::hook::request::header;

pub(super) fn parse(headers: &HeaderMap, query: Option<&str>) -> Result<Delivery, ParseError> {
    let git_ref = match (param(query, "ref"), param(query, "branch")) {
        (Some(_), Some(_)) => return Err(problem("ref", "and `branch` are both given")),
        (Some(full), None) if !full.starts_with("refs/") => {
            return Err(problem("ref", "must be a full ref such as refs/tags/v1.2"))
        }
        (Some(full), None) => Some(checked_ref(Provider::Generic, "ref", full)?),
        (None, branch) => branch.map(to_ref).transpose()?,
    };
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
        also: Vec::new(),
    }))
}

/// The first `name` query parameter, percent-decoded; an empty value counts as absent.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
}

fn problem(field: &'static str, problem: &'static str) -> ParseError {
    ParseError::Field {
        provider: Provider::Generic,
        field,
        problem,
    }
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
    use crate::hook::provider::parse;

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
    fn ref_query_names_a_full_ref() {
        let push = push(Some("ref=refs%2Ftags%2Fv1.2"), b"");
        assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v1.2"));
        for (query, message) in [
            (
                "ref=v1.2",
                "generic delivery: `ref` must be a full ref such as refs/tags/v1.2",
            ),
            (
                "ref=refs/tags/v1&branch=main",
                "generic delivery: `ref` and `branch` are both given",
            ),
            (
                "ref=refs/tags/a..b",
                "generic delivery: `ref` is not a valid git ref name",
            ),
        ] {
            let err = parse(&HeaderMap::new(), Some(query), b"").unwrap_err();
            assert_eq!(err.to_string(), message, "{query}");
        }
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
