//! Webhook logic: recognise the sender, parse its delivery, check its signature and
//! decide what the delivery asks for. Pure logic: no I/O, no store, no HTTP server.
//!
//! The HTTP layer calls, in order: [`parse`] (which provider, what happened),
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

pub use detect::detect;
pub use error::{ParseError, SignatureError};
pub use event::{Delivery, Provider, PushEvent};
pub use provider::parse;
pub use rules::{check_pattern, decide, default_branch, BadPattern, Decision, WatchRules};
pub use signature::verify;
