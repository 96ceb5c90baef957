//! Recognising the sender from the request itself: event headers first, then the shape
//! of a form or JSON body; whatever is left is a generic trigger.

use http::HeaderMap;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::hook::event::Provider;
use crate::hook::request::{form_payload, header, is_form};

/// Event headers in the order they must be checked: Gitea, Forgejo and Gogs also send
/// `X-GitHub-Event` (and Forgejo sends Gitea's headers), so the most specific comes first.
const EVENT_HEADERS: [(&str, Provider); 5] = [
    ("x-forgejo-event", Provider::Forgejo),
    ("x-gitea-event", Provider::Gitea),
    ("x-gogs-event", Provider::Gogs),
    ("x-github-event", Provider::GitHub),
    ("x-gitlab-event", Provider::GitLab),
];

/// `X-Event-Key` prefixes only Bitbucket Server/Data Center sends.
const SERVER_KEYS: [&str; 7] = [
    "repo:refs_changed",
    "repo:modified",
    "repo:forked",
    "repo:comment:",
    "pr:",
    "mirror:",
    "diagnostics:",
];

/// `X-Event-Key` prefixes only Bitbucket Cloud sends.
const CLOUD_KEYS: [&str; 6] = [
    "repo:push",
    "repo:fork",
    "repo:updated",
    "repo:commit_",
    "pullrequest:",
    "issue:",
];

/// Which provider sent this request; never fails, the fallback is [`Provider::Generic`].
pub(crate) fn detect(headers: &HeaderMap, body: &[u8]) -> Provider {
    if let Some((_, provider)) = EVENT_HEADERS
        .iter()
        .find(|(name, _)| headers.contains_key(*name))
    {
        return *provider;
    }
    if headers.contains_key("x-event-key") {
        return bitbucket_flavour(headers, body);
    }
    if is_form(headers) {
        return form_sender(body);
    }
    json_sender(body).unwrap_or(Provider::Generic)
}

/// Whether a request's body must be kept to detect, verify and parse it, judged from
/// the headers and the body's first non-blank byte (`None`: empty body). Only a generic
/// trigger can do without: no event header, no form, no body signature, and a body that
/// is not JSON (which GitLab and Azure DevOps may send without an event header); it
/// is then counted against the size limit and dropped, and [`detect`] and [`parse`]
/// give the same answers for it as they would with the whole body.
///
/// [`parse`]: crate::hook::provider::parse
pub(crate) fn body_needed(headers: &HeaderMap, first_byte: Option<u8>) -> bool {
    EVENT_HEADERS
        .iter()
        .any(|(name, _)| headers.contains_key(*name))
        || headers.contains_key("x-event-key")
        || headers.contains_key("x-hub-signature-256")
        || is_form(headers)
        || first_byte == Some(b'{')
}

/// Cloud and Server share `X-Event-Key`; their keys, their id headers and, last, the
/// Server-only `eventKey` body field tell them apart.
fn bitbucket_flavour(headers: &HeaderMap, body: &[u8]) -> Provider {
    let key = header(headers, "x-event-key").unwrap_or_default();
    if SERVER_KEYS.iter().any(|prefix| key.starts_with(prefix)) {
        return Provider::BitbucketServer;
    }
    if CLOUD_KEYS.iter().any(|prefix| key.starts_with(prefix))
        || headers.contains_key("x-request-uuid")
        || headers.contains_key("x-hook-uuid")
    {
        return Provider::BitbucketCloud;
    }
    if headers.contains_key("x-request-id") || has_server_event_key(body) {
        return Provider::BitbucketServer;
    }
    Provider::BitbucketCloud
}

fn has_server_event_key(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(rename = "eventKey")]
        event_key: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Shape>(body).is_ok_and(|shape| shape.event_key.is_some())
}

/// A form body without an event header: the legacy Bitbucket POST service carries
/// `canon_url`; any other form (GitHub always sends `X-GitHub-Event`) is generic.
fn form_sender(body: &[u8]) -> Provider {
    #[derive(Deserialize)]
    struct Shape {
        canon_url: Option<IgnoredAny>,
    }
    let legacy = form_payload(body)
        .and_then(|json| serde_json::from_str::<Shape>(&json).ok())
        .is_some_and(|shape| shape.canon_url.is_some());
    if legacy {
        Provider::BitbucketLegacy
    } else {
        Provider::Generic
    }
}

/// A JSON body without an event header: GitLab (`object_kind`, e.g. hooks relayed
/// without headers) or Azure DevOps (`eventType`, it never sends an event header).
fn json_sender(body: &[u8]) -> Option<Provider> {
    #[derive(Deserialize)]
    struct Shape {
        object_kind: Option<IgnoredAny>,
        #[serde(rename = "eventType")]
        event_type: Option<IgnoredAny>,
    }
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let shape: Shape = serde_json::from_slice(body).ok()?;
    if shape.object_kind.is_some() {
        Some(Provider::GitLab)
    } else if shape.event_type.is_some() {
        Some(Provider::AzureDevOps)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::fixtures;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn every_fixture_is_recognised() {
        for case in fixtures::cases() {
            let expected = match case.provider.as_str() {
                "bitbucket-cloud" if case.name == "legacy-post-service" => "bitbucket-legacy",
                other => other,
            };
            let got = detect(&case.headers, &case.body);
            assert_eq!(got.as_str(), expected, "{}", case.name);
        }
    }

    #[test]
    fn forgejo_wins_over_gitea_and_github_headers() {
        let map = headers(&[
            ("x-github-event", "push"),
            ("x-gitea-event", "push"),
            ("x-forgejo-event", "push"),
        ]);
        assert_eq!(detect(&map, b"{}"), Provider::Forgejo);
    }

    #[test]
    fn bitbucket_flavour_from_key_headers_and_body() {
        let key = |k| headers(&[("x-event-key", k)]);
        assert_eq!(detect(&key("repo:push"), b""), Provider::BitbucketCloud);
        assert_eq!(detect(&key("pr:opened"), b""), Provider::BitbucketServer);
        assert_eq!(
            detect(&key("diagnostics:ping"), b"x"),
            Provider::BitbucketServer
        );
        let server_body = br#"{"eventKey":"whatever:new"}"#;
        assert_eq!(
            detect(&key("whatever:new"), server_body),
            Provider::BitbucketServer
        );
        assert_eq!(
            detect(&key("whatever:new"), b"{}"),
            Provider::BitbucketCloud
        );
    }

    #[test]
    fn a_body_judged_unneeded_detects_as_generic_whatever_it_holds() {
        let none = HeaderMap::new();
        let bodies: [&[u8]; 4] = [
            b"",
            b"hello",
            b"[1,2]",
            b"payload=%7B%22canon_url%22%3A1%7D",
        ];
        for body in bodies {
            let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
            assert!(!body_needed(&none, first), "{body:?}");
            assert_eq!(detect(&none, body), Provider::Generic, "{body:?}");
        }
        assert!(body_needed(&none, Some(b'{')));
        for case in fixtures::cases() {
            let first = case.body.iter().copied().find(|b| !b.is_ascii_whitespace());
            assert!(body_needed(&case.headers, first), "{}", case.name);
        }
        let signed = headers(&[("x-hub-signature-256", "sha256=00")]);
        assert!(body_needed(&signed, Some(b'x')));
    }

    #[test]
    fn bodies_without_headers() {
        let none = HeaderMap::new();
        assert_eq!(detect(&none, b""), Provider::Generic);
        assert_eq!(detect(&none, b"hello"), Provider::Generic);
        assert_eq!(
            detect(&none, br#"{"object_kind":"push"}"#),
            Provider::GitLab
        );
        assert_eq!(
            detect(&none, br#" {"eventType":"git.push"}"#),
            Provider::AzureDevOps
        );
        assert_eq!(
            detect(&none, br#"{"ref":"refs/heads/x"}"#),
            Provider::Generic
        );
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(detect(&form, b"payload=%7B%7D"), Provider::Generic);
        assert_eq!(detect(&form, b"a=b"), Provider::Generic);
    }
}
