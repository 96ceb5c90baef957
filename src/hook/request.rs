//! What the intake reads from a request: header text, the JSON document inside a raw or
//! form-encoded body, and decoding it with errors that are safe to show the sender.

use std::borrow::Cow;

use http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::hook::error::ParseError;
use crate::hook::event::Provider;

/// A header's value as trimmed text; a value that is not visible ASCII counts as absent.
pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// Whether the body is `application/x-www-form-urlencoded`, the forges' "form" option.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    header(headers, "content-type").is_some_and(|value| {
        let media_type = value.split(';').next().unwrap_or_default().trim();
        media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// The decoded `payload=` field of a form body, where forges put their JSON.
pub(crate) fn form_payload(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())
}

/// The JSON document a forge sent: the body itself, or its `payload=` field.
pub(crate) fn json_document<'b>(
    provider: Provider,
    headers: &HeaderMap,
    body: &'b [u8],
) -> Result<Cow<'b, [u8]>, ParseError> {
    if !is_form(headers) {
        return Ok(Cow::Borrowed(body));
    }
    form_payload(body)
        .map(|payload| Cow::Owned(payload.into_bytes()))
        .ok_or(ParseError::NoFormPayload { provider })
}

/// Decodes JSON into `T`, turning serde's message into one fit for a 400 body.
pub(crate) fn decode<T: DeserializeOwned>(
    provider: Provider,
    json: &[u8],
) -> Result<T, ParseError> {
    serde_json::from_slice(json).map_err(|err| ParseError::Json {
        provider,
        reason: describe(&err),
    })
}

fn describe(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Eof => "the JSON ends early".to_owned(),
        Category::Syntax => "the body is not valid JSON".to_owned(),
        Category::Io => "the body could not be read".to_owned(),
        Category::Data => data_problem(err),
    };
    format!("{what} (line {}, column {})", err.line(), err.column())
}

/// serde's "missing field `x`" names one of our fields; its other data errors quote the
/// offending value, which may be long or sensitive, so they are summarised instead.
fn data_problem(err: &serde_json::Error) -> String {
    let message = err.to_string();
    match message.split(" at line ").next() {
        Some(missing) if missing.starts_with("missing field") => missing.to_owned(),
        _ => "a field has an unexpected type or value".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Needs {
        #[serde(rename = "ref")]
        _git_ref: String,
    }

    #[test]
    fn missing_field_is_named() {
        let err = decode::<Needs>(Provider::GitHub, br#"{"after":"x"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "github payload: missing field `ref` (line 1, column 13)"
        );
    }

    #[test]
    fn wrong_type_does_not_echo_the_value() {
        let body = br#"{"ref": ["very secret and very long content"]}"#;
        let err = decode::<Needs>(Provider::GitHub, body)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("unexpected type"), "{err}");
    }

    #[test]
    fn truncated_json_says_so() {
        let err = decode::<Needs>(Provider::GitLab, br#"{"ref": "#).unwrap_err();
        assert!(err.to_string().contains("ends early"), "{err}");
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert!(is_form(&headers));
    }
}
