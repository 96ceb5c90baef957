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
//! - [`clock`]: wall time as Unix milliseconds, the records' one time base.
//! - [`token`]: hook tokens, minted and checked with the server key.
//! - [`store`]: the only sled user: feeds, tokens, queue, builds, deliveries.
//! - [`secret`]: webhook secrets that never print, and their 0600 files.
//! - [`paths`]: every path under the data dir, and the 0600 atomic write.
//! - [`hook`]: pure webhook logic (no I/O): provider detection, parsing, signatures, rules.
//! - [`intake`]: the webhook path: the token → feed routing table in memory, and one
//!   hook request from token to reply.
//! - [`http`]: hyper accept loop, limits, routes, responses.
//! - [`scheduler`]: admission, FIFO dispatch to workers, cancel, shutdown grace.
//! - [`runner`]: one build: git fetch and checkout, the command, its log, and the
//!   processes it leaves behind.
//! - [`admin`]: the Unix-socket protocol, its server and the `hookd admin` client.
//! - [`app`]: the handles shared by the daemon's tasks.
//! - [`daemon`]: start-up, recovery, signals, ordered shutdown.
//! - [`heal`]: after a full disk, a restart in place once the disk takes writes again.
//! - [`metrics`], [`logging`], [`systemd`]: operations.

pub mod admin;
pub mod app;
pub mod build;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod feed;
pub mod heal;
pub mod hook;
pub mod http;
pub mod intake;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod policy;
pub mod reply;
pub mod runner;
pub mod scheduler;
pub mod secret;
pub mod store;
pub mod systemd;
pub mod token;
