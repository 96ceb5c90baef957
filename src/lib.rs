//! hookd: a webhook-to-build daemon. A forge POSTs to a feed's secret hook URL; hookd
//! records the trigger durably, queues a build on a persistent FIFO, honours the feed's
//! cooldown, fetches the commit with libgit2 and runs the build command.
//!
//! # Layout
//! One webhook flows one way: `http` → `intake` (token, `hook` verify/parse/decide)
//! → `store` (durable) → reply; then `scheduler` → `runner` (fetch, run, log) → `store`.
//!
//! - [`cli`]: clap types only.
//! - [`config`]: TOML (unknown keys refused) → one validated [`config::Config`].
//! - [`feed`], [`build`]: the domain records and their validation.
//! - [`token`]: hook tokens, minted and checked with the server key.
//! - [`store`]: the only sled user: feeds, tokens, queue, builds, deliveries.

pub mod build;
pub mod cli;
pub mod config;
pub mod feed;
pub mod store;
pub mod token;
