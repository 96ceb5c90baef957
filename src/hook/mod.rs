//! Webhook logic: recognise the sender, parse its delivery, check its signature and
//! decide what the delivery asks for. Pure logic: no I/O, no store, no HTTP server.
//!
//! The HTTP layer calls, in order: [`parse`](provider::parse) (which provider, what happened),
//! [`verify`] (only when the feed has a secret), then [`decide`] against the feed's
//! branch patterns.

mod detect;
mod error;
mod event;
mod provider;
mod request;
mod rules;
mod signature;

#[cfg(test)]
mod fixtures;

pub(crate) use detect::{body_needed, detect};
pub(crate) use error::{ParseError, SignatureError};
pub(crate) use event::{Delivery, Provider};
pub(crate) use rules::{
    decide, decide_changes, implicit_ref, short_name, ChangeDecision, Decision, WatchRules,
};
pub(crate) use signature::verify;

/// [`parse`](provider::parse), then [`Delivery::bounded`]: what the intake stores. A malformed or
/// over-long delivery is a [`ParseError`] (400).
pub(crate) fn parse_bounded(
    headers: &http::HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Delivery, ParseError> {
    match provider::parse(headers, query, body) {
        Ok(delivery) => delivery.bounded(),
        // serde's messages may quote a payload value; keep the stored reason small.
        Err(ParseError::Json { provider, reason }) => Err(ParseError::Json {
            provider,
            reason: crate::build::truncate_marked(reason, 200),
        }),
        Err(e) => Err(e),
    }
}
