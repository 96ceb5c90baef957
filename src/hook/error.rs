//! The intake's errors. Their `Display` text is what the sender reads in a 400 or 401
//! body, so it names the field or header at fault and never quotes payload content or
//! secret material.

use crate::hook::event::Provider;

/// A delivery from a recognised provider that cannot be understood (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// The JSON payload does not decode into what this event needs.
    #[error("{provider} payload: {reason}")]
    Json { provider: Provider, reason: String },
    /// A form-encoded body without the `payload` field forges put the JSON in.
    #[error("{provider} form body has no `payload` field")]
    NoFormPayload { provider: Provider },
    /// A field or header decoded but its value is unusable.
    #[error("{provider} delivery: `{field}` {problem}")]
    Field {
        provider: Provider,
        field: &'static str,
        problem: &'static str,
    },
}

/// Why a delivery's signature or token was not accepted (401).
///
/// `Missing`/`Empty` mean the sender did not sign; `Mismatch`/`Malformed` mean it signed
/// with something else. Neither variant carries the secret or the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("missing signature: the request has no {expected} header")]
    Missing { expected: &'static str },
    #[error("missing signature: the {header} header is empty (the sender has no secret configured, but this feed requires one)")]
    Empty { header: &'static str },
    #[error("invalid signature: the {header} header is malformed ({why})")]
    Malformed {
        header: &'static str,
        why: &'static str,
    },
    #[error("invalid signature: {header} does not match (wrong secret, or the body was altered)")]
    Mismatch { header: &'static str },
    #[error("missing signature: only a SHA-1 X-Hub-Signature was sent and this feed accepts X-Hub-Signature-256 only")]
    Sha1Refused,
    #[error("{provider} deliveries cannot be signed, so a feed with a secret refuses them: remove the feed's secret or use a signed webhook instead")]
    Unsigned { provider: Provider },
}
