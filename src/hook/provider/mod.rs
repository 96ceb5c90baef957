//! Turning a request into a [`Delivery`]: the entry point picks the provider's parser;
//! the rest of this file is what every parser shares (headers, payload, ref checks).

mod azure_devops;
mod bitbucket_cloud;
mod bitbucket_server;
mod generic;
mod gitea;
mod github;
mod gitlab;

use http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::hook::detect::detect;
use crate::hook::error::ParseError;
use crate::hook::event::{Delivery, Provider};
use crate::hook::request::{decode, header, json_document};

/// Parses one webhook request (headers, query string, raw body) into a [`Delivery`].
///
/// The provider is detected from the request itself. Ping and unrelated events are not
/// errors; only a malformed delivery from a recognised provider is. Never panics.
pub(crate) fn parse(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Delivery, ParseError> {
    let provider = detect(headers, body);
    let request = Incoming {
        provider,
        headers,
        body,
    };
    match provider {
        Provider::GitHub => github::parse(&request),
        Provider::GitLab => gitlab::parse(&request),
        Provider::BitbucketCloud => bitbucket_cloud::parse(&request),
        Provider::BitbucketLegacy => bitbucket_cloud::parse_legacy(&request),
        Provider::BitbucketServer => bitbucket_server::parse(&request),
        Provider::Gitea | Provider::Forgejo | Provider::Gogs => gitea::parse(&request),
        Provider::AzureDevOps => azure_devops::parse(&request),
        Provider::Generic => generic::parse(headers, query),
    }
}

/// A request whose provider is known, as the parsers see it.
struct Incoming<'a> {
    provider: Provider,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Incoming<'_> {
    /// The event header detection keyed on; present but not text is a 400.
    fn event(&self, name: &'static str) -> Result<String, ParseError> {
        header(self.headers, name)
            .map(str::to_owned)
            .ok_or(ParseError::Field {
                provider: self.provider,
                field: name,
                problem: "is missing or not valid text",
            })
    }

    /// An optional id header, owned.
    fn id(&self, name: &str) -> Option<String> {
        header(self.headers, name)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    }

    /// The JSON payload (raw or inside a form body) decoded into `T`.
    fn json<T: DeserializeOwned>(&self) -> Result<T, ParseError> {
        let json = json_document(self.provider, self.headers, self.body)?;
        decode(self.provider, &json)
    }

    fn ping(&self, event: String, delivery_id: Option<String>) -> Delivery {
        Delivery::Ping {
            provider: self.provider,
            event,
            delivery_id,
        }
    }

    fn other(&self, event: String, delivery_id: Option<String>) -> Delivery {
        Delivery::Other {
            provider: self.provider,
            event,
            delivery_id,
        }
    }

    /// A ref from the payload, refused unless it is a plausible git ref.
    fn git_ref(&self, field: &'static str, git_ref: String) -> Result<String, ParseError> {
        checked_ref(self.provider, field, git_ref)
    }
}

/// All-zero object ids stand for "no commit" (created or deleted refs, test deliveries).
fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// The commit to build: the given id unless the ref is gone or the id is all zeros.
fn buildable(sha: String, deleted: bool) -> Option<String> {
    (!deleted && !sha.is_empty() && !is_zero_sha(&sha)).then_some(sha)
}

/// The commit a push of `git_ref` names. For an annotated tag several forges send the
/// tag object as the pushed id and the tagged commit in another field (`peeled`);
/// hookd records the commit, so that every view of the push names what is built.
/// Without a peeled id the pushed id is kept, and the fetch peels it.
fn tag_commit(git_ref: &str, pushed: String, peeled: Option<String>) -> String {
    let peeled = peeled.filter(|id| !id.is_empty() && !is_zero_sha(id));
    match peeled {
        Some(commit) if git_ref.starts_with("refs/tags/") => commit,
        _ => pushed,
    }
}

/// Keeps a ref only if it looks like one git would accept (a simplified
/// `git check-ref-format`), since it ends up in `HOOKD_REF` and in fetch refspecs.
fn checked_ref(
    provider: Provider,
    field: &'static str,
    git_ref: String,
) -> Result<String, ParseError> {
    if is_valid_ref(&git_ref) {
        Ok(git_ref)
    } else {
        Err(ParseError::Field {
            provider,
            field,
            problem: "is not a valid git ref name",
        })
    }
}

fn is_valid_ref(git_ref: &str) -> bool {
    const FORBIDDEN: &[u8] = b" ~^:?*[\\";
    git_ref.starts_with("refs/")
        && git_ref.len() <= 1024
        && !git_ref.contains("..")
        && !git_ref.contains("@{")
        && !git_ref.ends_with('.')
        && !git_ref
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || FORBIDDEN.contains(&b))
        && git_ref
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::fixtures::{self, Case};

    fn expected_commit(case: &Case) -> Option<&str> {
        if case.manifest["deleted"] == true || case.field("after").is_some_and(is_zero_sha) {
            return None;
        }
        case.field("checkout_sha").or(case.field("after"))
    }

    fn check_push(case: &Case, delivery: &Delivery) {
        let Delivery::Push(push) = delivery else {
            panic!("{}: expected a push, got {delivery:?}", case.id());
        };
        assert_eq!(
            push.git_ref.as_deref(),
            case.field("ref"),
            "{} ref",
            case.id()
        );
        assert_eq!(
            push.commit.as_deref(),
            expected_commit(case),
            "{} commit",
            case.id()
        );
        assert_eq!(
            push.repo_url.as_deref(),
            case.field("clone_url"),
            "{} url",
            case.id()
        );
        if let Some(before) = case.field("before") {
            assert_eq!(push.before.as_deref(), Some(before), "{} before", case.id());
        }
        let deleted = case.field("after").is_some_and(is_zero_sha);
        assert_eq!(push.deleted, deleted, "{} deleted", case.id());
    }

    #[test]
    fn every_fixture_parses_as_the_manifest_says() {
        for case in fixtures::cases() {
            let delivery = parse(&case.headers, None, &case.body)
                .unwrap_or_else(|err| panic!("{}: {err}", case.id()));
            let expect = case.field("expect").unwrap();
            match (case.name.as_str(), expect) {
                ("ping", _) => assert!(matches!(delivery, Delivery::Ping { .. }), "{}", case.id()),
                ("merge-request" | "system-hook-push", _) => {
                    assert!(matches!(delivery, Delivery::Other { .. }), "{}", case.id())
                }
                _ => check_push(&case, &delivery),
            }
            assert!(
                delivery.delivery_id().is_some() || no_id_expected(&case),
                "{}",
                case.id()
            );
        }
    }

    /// Only the legacy POST service and Azure DevOps' header-less form lack header ids;
    /// Azure carries its id in the body.
    fn no_id_expected(case: &Case) -> bool {
        case.name == "legacy-post-service"
    }

    #[test]
    fn fixture_event_names_and_ids() {
        let by_name = |provider: &str, name: &str| {
            let case = fixtures::cases()
                .into_iter()
                .find(|c| c.provider == provider && c.name == name)
                .unwrap();
            parse(&case.headers, None, &case.body).unwrap()
        };
        let cases = [
            (
                "github",
                "push",
                "push",
                "95781f0d-4746-58b5-bf86-c6127ca68a6d",
            ),
            (
                "gitlab",
                "push",
                "Push Hook",
                "9aaa12d7-08ec-57f2-bcd4-5f9708e3c00a",
            ),
            (
                "bitbucket-cloud",
                "repo-push",
                "repo:push",
                "3dc1ba9c-6cb2-5973-ae90-df3273e8fa1f",
            ),
            (
                "bitbucket-server",
                "ping",
                "diagnostics:ping",
                "9363bc23-6191-50d5-8a19-2a7f15b91936",
            ),
            (
                "gitea",
                "push",
                "push",
                "6ee7dbba-cad6-5206-9d59-e61e729c6db4",
            ),
            (
                "gogs",
                "push",
                "push",
                "f6266f16-1bf3-46a5-9ea4-602e06ead473",
            ),
            (
                "azure-devops",
                "git-push",
                "git.push",
                "03c164c2-8912-4d5e-8009-3707d5f83734",
            ),
        ];
        for (provider, name, event, id) in cases {
            let delivery = by_name(provider, name);
            assert_eq!(delivery.event(), event, "{provider}/{name}");
            assert_eq!(delivery.delivery_id(), Some(id), "{provider}/{name}");
        }
    }

    /// Tiny deterministic xorshift, so the robustness test needs no `rand`.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn truncated_bodies_never_panic() {
        let empty = HeaderMap::new();
        for case in fixtures::cases() {
            for len in 0..case.body.len() {
                let _ = parse(&case.headers, None, &case.body[..len]);
            }
            for len in (0..case.body.len()).step_by(97) {
                let _ = parse(&empty, Some("branch=x"), &case.body[..len]);
            }
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for case in fixtures::cases() {
            for _ in 0..300 {
                let mut body = case.body.clone();
                for _ in 0..=(xorshift(&mut state) % 4) {
                    let at = (xorshift(&mut state) % body.len() as u64) as usize;
                    body[at] ^= (xorshift(&mut state) % 255 + 1) as u8;
                }
                let _ = parse(&case.headers, None, &body);
            }
        }
    }

    const TAG: &str = "1111111111111111111111111111111111111111";
    const COMMIT: &str = "2222222222222222222222222222222222222222";

    fn pushed_commit(case: &Case) -> Option<String> {
        match parse(&case.headers, None, &case.body).unwrap() {
            Delivery::Push(push) => {
                assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v1.2"));
                push.commit
            }
            other => panic!("{}: not a push: {other:?}", case.id()),
        }
    }

    /// Issue 17: an annotated tag's push names the tagged commit wherever the
    /// payload carries it, and the tag object only where it does not.
    #[test]
    fn annotated_tags_name_their_commit_where_the_payload_has_it() {
        use serde_json::{json, Value};
        let github = |head: Value| {
            fixtures::edited("github", "push-tag", |b| {
                b["ref"] = json!("refs/tags/v1.2");
                b["after"] = json!(TAG);
                b["head_commit"] = head;
            })
        };
        let bitbucket_server = |to_commit: Value, changes: usize| {
            fixtures::edited("bitbucket-server", "refs-changed", |b| {
                let change = json!({"ref": {"id": "refs/tags/v1.2", "displayId": "v1.2",
                    "type": "TAG"}, "refId": "refs/tags/v1.2",
                    "fromHash": "0".repeat(40), "toHash": TAG, "type": "ADD"});
                b["changes"] = Value::Array(vec![change; changes]);
                b["toCommit"] = to_commit;
            })
        };
        let gitea = |provider, name, head: Value| {
            fixtures::edited(provider, name, |b| {
                b["ref"] = json!("refs/tags/v1.2");
                b["after"] = json!(TAG);
                b["commits"] = json!([]);
                b["head_commit"] = head;
            })
        };
        let cases = [
            (github(json!({"id": COMMIT, "message": "m"})), COMMIT),
            (github(Value::Null), TAG),
            (bitbucket_server(json!({"id": COMMIT}), 1), COMMIT),
            (bitbucket_server(Value::Null, 1), TAG),
            // With several changes, `toCommit` cannot be tied to one of them.
            (bitbucket_server(json!({"id": COMMIT}), 2), TAG),
            (
                gitea("gitea", "push-new-branch", json!({"id": COMMIT})),
                COMMIT,
            ),
            (gitea("gogs", "push", Value::Null), TAG),
            (
                fixtures::edited("bitbucket-cloud", "repo-push", |b| {
                    let new = &mut b["push"]["changes"][0]["new"];
                    new["type"] = json!("tag");
                    new["name"] = json!("v1.2");
                    new["target"]["hash"] = json!(COMMIT);
                }),
                COMMIT,
            ),
            (
                fixtures::edited("gitlab", "tag-push", |b| {
                    b["ref"] = json!("refs/tags/v1.2");
                    b["after"] = json!(TAG);
                    b["checkout_sha"] = json!(COMMIT);
                }),
                COMMIT,
            ),
            (
                fixtures::edited("azure-devops", "git-push", |b| {
                    let update = &mut b["resource"]["refUpdates"][0];
                    update["name"] = json!("refs/tags/v1.2");
                    update["newObjectId"] = json!(TAG);
                }),
                TAG,
            ),
        ];
        for (case, expected) in cases {
            assert_eq!(
                pushed_commit(&case).as_deref(),
                Some(expected),
                "{}",
                case.id()
            );
        }
    }

    #[test]
    fn a_branch_push_keeps_after_whatever_head_commit_says() {
        let case = fixtures::edited("github", "push", |b| {
            b["head_commit"]["id"] = serde_json::json!(COMMIT);
        });
        let Delivery::Push(push) = parse(&case.headers, None, &case.body).unwrap() else {
            panic!("not a push");
        };
        assert_eq!(
            push.commit.as_deref(),
            Some("366701fde727cb7a9e7f21eb88264f59f6f9b89c")
        );
    }

    #[test]
    fn ref_validation() {
        for good in [
            "refs/heads/main",
            "refs/heads/feature/x-1",
            "refs/tags/v1.2",
        ] {
            assert!(is_valid_ref(good), "{good}");
        }
        for bad in [
            "main",
            "refs/heads/",
            "refs/heads/a..b",
            "refs/heads/a b",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/a//b",
            "refs/heads/a\nb",
            "refs/heads/x@{1}",
            "refs/heads/*",
        ] {
            assert!(!is_valid_ref(bad), "{bad:?}");
        }
    }
}
