//! hookd: a webhook-to-build daemon. A forge POSTs to a feed's secret hook URL; hookd
//! records the trigger durably, queues a build on a persistent FIFO, honours the feed's
//! cooldown, fetches the commit with libgit2 and runs the build command.
//!
//! # Layout
//! One webhook flows one way: `http` → `intake` (routing table, `hook` verify/parse/
//! decide) → `scheduler::submit` → `store` (durable, `policy` decides) → a [`reply`].
//! Then `scheduler` claims the build and hands `runner` a plain `BuildSpec`; the
//! runner reports `RunEvent`s, and the scheduler alone turns them into store writes and
//! metrics and publishes each change on a broadcast (`admin log --follow` and the web
//! side's live views listen).
//! No module reaches back up the chain; `tests/it/architecture.rs` checks it.
//!
//! - [`cli`]: clap types only.
//! - [`config`]: TOML (unknown keys refused) → one validated [`config::Config`]; the
//!   settings in force ([`config::LiveConfig`]), replaced whole on SIGHUP; the feeds
//!   the file declares (`[feeds.NAME]` with `repo`), each with its line.
//! - [`feed`], [`build`]: the domain records and their validation.
//! - [`clock`]: wall time as Unix milliseconds, the records' one time base.
//! - [`paths`]: every path under the data dir, and the 0600 atomic write.
//! - [`process`]: what child processes share: inherited environment, descriptors
//!   closed on exec, process-group signals.
//! - [`token`]: hook tokens, minted and checked with the server key.
//! - [`secret`]: webhook secrets that never print, and their 0600 files.
//! - [`policy`]: the scheduling rules (admission, cooldown, claim eligibility) as pure
//!   functions over plain values.
//! - [`reply`]: every outcome of a hook request, and its one mapping to HTTP.
//! - [`store`]: the only sled user: feeds, tokens, queue, builds, deliveries, the
//!   outbox; applies the policy's decisions atomically, one batch per group commit on
//!   the webhook path.
//! - [`hook`]: pure webhook logic (no I/O): provider detection, parsing, signatures, rules.
//! - [`intake`]: the webhook path: the token → feed routing table in memory, and one
//!   hook request from token to reply.
//! - [`http`]: hyper accept loop, connection slots, body budget, routes, responses.
//! - [`allocator`]: memory handed back to the system after a burst of connections.
//! - [`scheduler`]: admission, FIFO dispatch to workers, cancel, shutdown grace; the one
//!   place build state changes, published as `BuildUpdate`s.
//! - [`runner`]: one build from a `BuildSpec`: git fetch and checkout, the command, its
//!   log, and the processes it leaves behind; it reports events and writes no records.
//! - [`outbound`]: what hookd tells forges and people about builds (commit statuses,
//!   `[[notify]]` notifications): which items a build change produces (`plan`,
//!   written by the scheduler in the same store batch as the change), and the sender
//!   that delivers them from the store's durable outbox with backoff (`sender`,
//!   `client`, `forge`, `tokens`, `notify`).
//! - [`notice`]: a notification's content, computed at the change and stored.
//! - [`registration`]: the feed's webhook on its forge, through the same settings,
//!   token and client: each forge's webhook calls (`api`) and whether the forge could
//!   reach `public_url` (`reach`); `admin` registers, inspects and deletes it.
//! - [`admin`]: the Unix-socket protocol, its server and the `hookd admin` client; and
//!   the declared feeds applied to the store (plan, add, change, retire, revive).
//! - [`web`]: read-only pages, JSON API, badges and live views (Server-Sent Events),
//!   over the reads and the build updates `admin` hands it; one log reader per
//!   followed build shares each encoded piece with all its followers.
//! - [`app`]: the handles shared by the daemon's tasks (the composition root).
//! - [`daemon`]: start-up, recovery, signals, ordered shutdown.
//! - [`heal`]: after a full disk, a restart in place once the disk takes writes again.
//! - [`fd`]: marking a descriptor close-on-exec (systemd's listener, inherited ones).
//! - [`metrics`], [`logging`], [`systemd`]: operations.

pub mod admin;
pub(crate) mod allocator;
pub(crate) mod app;
pub mod build;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub(crate) mod fd;
pub mod feed;
pub(crate) mod heal;
pub(crate) mod hook;
pub(crate) mod http;
pub(crate) mod intake;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod notice;
pub(crate) mod outbound;
pub(crate) mod paths;
pub(crate) mod policy;
pub(crate) mod process;
pub(crate) mod registration;
pub mod reply;
pub mod runner;
pub(crate) mod scheduler;
pub(crate) mod secret;
pub mod store;
pub mod systemd;
pub(crate) mod token;
pub(crate) mod web;
