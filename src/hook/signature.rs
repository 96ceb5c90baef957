//! Checking that a delivery comes from someone who knows the feed's secret: HMAC
//! signatures or shared tokens, per provider, every comparison constant-time.
//!
//! Gitea, Forgejo and Gogs sign the JSON payload itself, also when they send it
//! form-encoded (`payload=<json>`), so for those the decoded form field is checked too.

use base64::prelude::{Engine, BASE64_STANDARD};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::hook::error::SignatureError;
use crate::hook::event::Provider;
use crate::hook::request::{form_payload, is_form};
use crate::secret::Secret;

const HUB_SHA256: &str = "X-Hub-Signature-256";
const HUB: &str = "X-Hub-Signature";
const AUTHORIZATION: &str = "Authorization";

/// Checks the signature or token `provider` uses against `secret`, over the raw `body`
/// exactly as received. `allow_sha1` admits GitHub's legacy `X-Hub-Signature: sha1=`
/// when no SHA-256 signature was sent.
pub(crate) fn verify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &Secret,
    allow_sha1: bool,
) -> Result<(), SignatureError> {
    match provider {
        Provider::GitHub => github(headers, body, secret, allow_sha1),
        Provider::Gitea | Provider::Forgejo | Provider::Gogs => {
            gitea(provider, headers, body, secret)
        }
        Provider::GitLab => gitlab(headers, secret),
        Provider::BitbucketCloud | Provider::BitbucketServer => {
            let value = required(headers, HUB, HUB)?;
            hub_hmac::<Hmac<Sha256>>(HUB, value, "sha256=", &[body], secret)
        }
        Provider::AzureDevOps => basic_password(headers, secret),
        Provider::Generic => generic(headers, body, secret),
        Provider::BitbucketLegacy => Err(SignatureError::Unsigned { provider }),
    }
}

fn github(
    headers: &HeaderMap,
    body: &[u8],
    secret: &Secret,
    allow_sha1: bool,
) -> Result<(), SignatureError> {
    if let Some(value) = optional(headers, HUB_SHA256)? {
        return hub_hmac::<Hmac<Sha256>>(HUB_SHA256, value, "sha256=", &[body], secret);
    }
    match optional(headers, HUB)? {
        Some(value) if allow_sha1 => hub_hmac::<Hmac<Sha1>>(HUB, value, "sha1=", &[body], secret),
        Some(_) => Err(SignatureError::Sha1Refused),
        None => Err(SignatureError::Missing {
            expected: HUB_SHA256,
        }),
    }
}

/// Each flavour's own header first; Forgejo and Gitea also send the older names.
fn gitea(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &Secret,
) -> Result<(), SignatureError> {
    let names: &[&'static str] = match provider {
        Provider::Forgejo => &[
            "X-Forgejo-Signature",
            "X-Gitea-Signature",
            "X-Gogs-Signature",
        ],
        Provider::Gitea => &["X-Gitea-Signature", "X-Gogs-Signature"],
        _ => &["X-Gogs-Signature"],
    };
    let (name, value) = first_present(headers, names)?.ok_or(SignatureError::Missing {
        expected: names.first().copied().unwrap_or("X-Gitea-Signature"),
    })?;
    let payload = if is_form(headers) {
        form_payload(body)
    } else {
        None
    };
    let mut candidates = vec![body];
    candidates.extend(payload.as_deref().map(str::as_bytes));
    hub_hmac::<Hmac<Sha256>>(name, value, "", &candidates, secret)
}

fn gitlab(headers: &HeaderMap, secret: &Secret) -> Result<(), SignatureError> {
    const TOKEN: &str = "X-Gitlab-Token";
    let token = required(headers, TOKEN, TOKEN)?;
    same_token(TOKEN, token.as_bytes(), secret)
}

/// Azure DevOps sends the secret as the Basic-auth password; the user name is free.
fn basic_password(headers: &HeaderMap, secret: &Secret) -> Result<(), SignatureError> {
    let value = required(headers, AUTHORIZATION, "Authorization (Basic)")?;
    let malformed = |why| SignatureError::Malformed {
        header: AUTHORIZATION,
        why,
    };
    let encoded = credentials(value, "basic").ok_or(malformed("not Basic credentials"))?;
    let decoded = BASE64_STANDARD
        .decode(encoded)
        .map_err(|_| malformed("not valid base64"))?;
    let password = decoded
        .splitn(2, |&b| b == b':')
        .nth(1)
        .ok_or(malformed("no user:password pair"))?;
    same_token(AUTHORIZATION, password, secret)
}

/// Generic senders sign like GitHub or send the secret as a bearer token.
fn generic(headers: &HeaderMap, body: &[u8], secret: &Secret) -> Result<(), SignatureError> {
    if let Some(value) = optional(headers, HUB_SHA256)? {
        return hub_hmac::<Hmac<Sha256>>(HUB_SHA256, value, "sha256=", &[body], secret);
    }
    let expected = "X-Hub-Signature-256 or Authorization: Bearer";
    let value = required(headers, AUTHORIZATION, expected)?;
    let token = credentials(value, "bearer").ok_or(SignatureError::Malformed {
        header: AUTHORIZATION,
        why: "not Bearer credentials",
    })?;
    same_token(AUTHORIZATION, token.as_bytes(), secret)
}

/// A header's text; present but not visible ASCII is malformed, not missing.
fn optional<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, SignatureError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| SignatureError::Malformed {
        header: name,
        why: "not visible ASCII",
    })?;
    Ok(Some(text.trim()))
}

fn first_present<'h>(
    headers: &'h HeaderMap,
    names: &[&'static str],
) -> Result<Option<(&'static str, &'h str)>, SignatureError> {
    for name in names {
        if let Some(value) = optional(headers, name)? {
            return Ok(Some((name, value)));
        }
    }
    Ok(None)
}

fn required<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    expected: &'static str,
) -> Result<&'h str, SignatureError> {
    optional(headers, name)?.ok_or(SignatureError::Missing { expected })
}

/// The credentials after an auth scheme (case-insensitive), e.g. "Basic xyz" -> "xyz".
fn credentials<'v>(value: &'v str, scheme: &str) -> Option<&'v str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Checks a hex HMAC after `prefix` against each candidate message; one match is enough.
fn hub_hmac<M: Mac + KeyInit>(
    header: &'static str,
    value: &str,
    prefix: &str,
    messages: &[&[u8]],
    secret: &Secret,
) -> Result<(), SignatureError> {
    let malformed = |why| SignatureError::Malformed { header, why };
    let hex_digest = value
        .strip_prefix(prefix)
        .ok_or(malformed("wrong algorithm prefix"))?;
    if hex_digest.is_empty() {
        return Err(SignatureError::Empty { header });
    }
    let tag = hex::decode(hex_digest).map_err(|_| malformed("not hexadecimal"))?;
    let matches = |message: &&[u8]| {
        <M as Mac>::new_from_slice(secret.expose().as_bytes())
            .map(|mac| mac.chain_update(message).verify_slice(&tag).is_ok())
            .unwrap_or(false)
    };
    if messages.iter().any(matches) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch { header })
    }
}

/// Compares SHA-256 digests so neither the content nor the length of the secret leaks
/// through timing.
fn same_token(header: &'static str, given: &[u8], secret: &Secret) -> Result<(), SignatureError> {
    if given.is_empty() {
        return Err(SignatureError::Empty { header });
    }
    let given = Sha256::digest(given);
    let expected = Sha256::digest(secret.expose().as_bytes());
    if bool::from(given.as_slice().ct_eq(expected.as_slice())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch { header })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::{detect, fixtures};

    fn secret(text: &str) -> Secret {
        Secret::new(text.to_owned()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn github_documented_vector() {
        let map = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        let key = secret("It's a Secret to Everybody");
        assert_eq!(
            verify(Provider::GitHub, &map, b"Hello, World!", &key, false),
            Ok(())
        );
        let err = verify(Provider::GitHub, &map, b"Hello, World?", &key, false);
        assert_eq!(err, Err(SignatureError::Mismatch { header: HUB_SHA256 }));
    }

    fn signed_cases() -> Vec<(fixtures::Case, Secret)> {
        fixtures::cases()
            .into_iter()
            .filter_map(|case| {
                let key = secret(case.field("secret")?);
                Some((case, key))
            })
            .collect()
    }

    #[test]
    fn every_signed_fixture_verifies_and_a_flipped_byte_fails() {
        let cases = signed_cases();
        assert!(cases.len() >= 15);
        for (case, key) in cases {
            let provider = detect(&case.headers, &case.body);
            let ok = verify(provider, &case.headers, &case.body, &key, false);
            assert_eq!(ok, Ok(()), "{}", case.id());
            let wrong = verify(provider, &case.headers, &case.body, &secret("nope"), false);
            assert!(
                matches!(wrong, Err(SignatureError::Mismatch { .. })),
                "{}",
                case.id()
            );
            if provider == Provider::GitLab {
                continue; // a token, not a signature: the body is not covered
            }
            let mut body = case.body.clone();
            let middle = body.len() / 2;
            body[middle] ^= 0x01;
            let err = verify(provider, &case.headers, &body, &key, false).unwrap_err();
            assert!(
                matches!(err, SignatureError::Mismatch { .. }),
                "{}: {err}",
                case.id()
            );
        }
    }

    #[test]
    fn every_signed_fixture_without_its_header_is_missing() {
        let strip = [
            "x-hub-signature-256",
            "x-hub-signature",
            "x-gitea-signature",
            "x-gogs-signature",
            "x-forgejo-signature",
            "x-gitlab-token",
        ];
        for (case, key) in signed_cases() {
            let provider = detect(&case.headers, &case.body);
            let mut map = case.headers.clone();
            for name in strip {
                map.remove(name);
            }
            let err = verify(provider, &map, &case.body, &key, true).unwrap_err();
            assert!(
                matches!(err, SignatureError::Missing { .. }),
                "{}: {err}",
                case.id()
            );
        }
    }

    #[test]
    fn sha1_only_when_allowed() {
        let case = fixtures::cases()
            .into_iter()
            .find(|c| c.provider == "github" && c.name == "push-signed-upstream")
            .unwrap();
        let mut map = case.headers.clone();
        map.remove("x-hub-signature-256");
        let key = secret("topsecret");
        assert_eq!(
            verify(Provider::GitHub, &map, &case.body, &key, true),
            Ok(())
        );
        let refused = verify(Provider::GitHub, &map, &case.body, &key, false);
        assert_eq!(refused, Err(SignatureError::Sha1Refused));
    }

    #[test]
    fn gitea_without_secret_sends_empty_headers() {
        let map = headers(&[("x-gitea-signature", ""), ("x-hub-signature", "sha1=")]);
        let err = verify(Provider::Gitea, &map, b"{}", &secret("s"), false);
        assert_eq!(
            err,
            Err(SignatureError::Empty {
                header: "X-Gitea-Signature"
            })
        );
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("no secret configured"));
    }

    #[test]
    fn gitea_form_body_is_signed_over_the_json() {
        let json = r#"{"ref":"refs/heads/main"}"#;
        let key = secret("k");
        let tag = <Hmac<Sha256> as Mac>::new_from_slice(b"k")
            .unwrap()
            .chain_update(json)
            .finalize();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        let hex_tag = hex::encode(tag.into_bytes());
        let map = headers(&[
            ("x-forgejo-signature", &hex_tag),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(
            verify(Provider::Forgejo, &map, body.as_bytes(), &key, false),
            Ok(())
        );
        let mut json_only = map.clone();
        json_only.remove("content-type");
        let err = verify(Provider::Forgejo, &json_only, body.as_bytes(), &key, false);
        assert!(matches!(err, Err(SignatureError::Mismatch { .. })));
    }

    #[test]
    fn malformed_hub_signatures() {
        let key = secret("k");
        let cases = [
            ("md5=abcd", "wrong algorithm prefix"),
            ("sha256=zz", "not hexadecimal"),
        ];
        for (value, why) in cases {
            let map = headers(&[("x-hub-signature", value)]);
            let err = verify(Provider::BitbucketCloud, &map, b"x", &key, false);
            assert_eq!(err, Err(SignatureError::Malformed { header: HUB, why }));
        }
    }

    #[test]
    fn gitlab_token() {
        let key = secret("tok");
        let good = headers(&[("x-gitlab-token", "tok")]);
        assert_eq!(verify(Provider::GitLab, &good, b"", &key, false), Ok(()));
        let bad = headers(&[("x-gitlab-token", "toke")]);
        let err = verify(Provider::GitLab, &bad, b"", &key, false).unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch { .. }));
        assert!(!err.to_string().contains("tok"), "{err}");
    }

    #[test]
    fn azure_basic_auth_password_is_the_secret() {
        let key = secret("pa:ss");
        let basic = |creds: &str| format!("Basic {}", BASE64_STANDARD.encode(creds));
        let good = headers(&[("authorization", &basic("anyone:pa:ss"))]);
        assert_eq!(
            verify(Provider::AzureDevOps, &good, b"{}", &key, false),
            Ok(())
        );
        let bad = headers(&[("authorization", &basic("anyone:pass"))]);
        let err = verify(Provider::AzureDevOps, &bad, b"{}", &key, false);
        assert!(matches!(err, Err(SignatureError::Mismatch { .. })));
        let bearer = headers(&[("authorization", "Bearer pa:ss")]);
        let err = verify(Provider::AzureDevOps, &bearer, b"{}", &key, false);
        assert!(matches!(err, Err(SignatureError::Malformed { .. })));
        let none = verify(Provider::AzureDevOps, &HeaderMap::new(), b"{}", &key, false);
        assert!(matches!(none, Err(SignatureError::Missing { .. })));
    }

    #[test]
    fn generic_accepts_bearer_or_hmac() {
        let key = secret("It's a Secret to Everybody");
        let bearer = headers(&[("authorization", "bearer It's a Secret to Everybody")]);
        assert_eq!(verify(Provider::Generic, &bearer, b"", &key, false), Ok(()));
        let hmac = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            verify(Provider::Generic, &hmac, b"Hello, World!", &key, false),
            Ok(())
        );
        let none = verify(Provider::Generic, &HeaderMap::new(), b"", &key, false);
        assert!(matches!(none, Err(SignatureError::Missing { .. })));
    }

    #[test]
    fn legacy_bitbucket_cannot_be_verified() {
        let err = verify(
            Provider::BitbucketLegacy,
            &HeaderMap::new(),
            b"",
            &secret("s"),
            true,
        );
        let err = err.unwrap_err();
        assert_eq!(
            err,
            SignatureError::Unsigned {
                provider: Provider::BitbucketLegacy
            }
        );
        assert!(err.to_string().contains("cannot be signed"));
    }
}
