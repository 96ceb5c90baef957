//! Command-line definitions (clap types only): what the user can type, nothing more.
//!
//! Turning these into a validated [`crate::config::Config`] or an admin request
//! happens in `config` and `admin::client`; this file only describes the surface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hookd: turns "somebody pushed" into "the build ran", with nothing lost.
#[derive(Debug, Parser)]
#[command(
    name = "hookd",
    version,
    about,
    propagate_version = true,
    term_width = 80
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level verbs: the daemon, its config check, the operator's client, and the
/// generators the package uses for its man page and shell completions.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: HTTP hook endpoint, build queue and admin socket.
    Serve(ServeArgs),
    /// Validate a config file and print the effective settings, or with --plan ask
    /// the running daemon what applying its declared feeds would change.
    CheckConfig(CheckConfigArgs),
    /// Talk to the running daemon over its Unix socket.
    Admin(AdminArgs),
    /// Print a shell completion script on stdout.
    Completions {
        /// Shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page hookd(1) (roff) on stdout.
    Man {
        /// Write hookd.1 and a page per subcommand (hookd-serve.1, …) into DIR instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Where the config comes from; shared by `serve` and `check-config`.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// TOML config file (default: embedded defaults, no file needed).
    #[arg(long, value_name = "PATH", env = "HOOKD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on for hooks, overriding the config (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Data directory, overriding the config.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

/// `hookd check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Ask the running daemon (over its admin socket) which declared feeds applying
    /// the file would add, change, retire or revive; nothing is applied.
    #[arg(long, requires = "config")]
    pub plan: bool,
    /// With --plan: print one JSON document.
    #[arg(long, requires = "plan")]
    pub json: bool,
    /// With --plan: the daemon's admin socket [default: $HOOKD_SOCKET, else the
    /// file's admin_socket].
    #[arg(long, value_name = "PATH", requires = "plan")]
    pub socket: Option<PathBuf>,
}

/// `hookd serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Start even though the database lacks writes it acknowledged, or cannot be read
    /// at all (then it is moved aside and an empty one started); the loss is logged.
    #[arg(long)]
    pub accept_data_loss: bool,
}

/// The heading `hookd admin`'s global flags are listed under in every subcommand's
/// help, so they are not mistaken for the subcommand's own flags.
const GLOBAL: &str = "Global options";

/// `hookd admin`: global flags plus one operator command.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin socket [default: $HOOKD_SOCKET, the config's admin_socket, or
    /// ./hookd-data/admin.sock].
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub(crate) socket: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) json: bool,
    /// Config file used only to find the socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "HOOKD_CONFIG",
        help_heading = GLOBAL
    )]
    pub(crate) config: Option<PathBuf>,
    /// The operator command.
    #[command(subcommand)]
    pub(crate) command: AdminCommand,
}

/// Every operator command; SPEC.md's "Admin CLI" section is the contract.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Manage feeds (build sources).
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Manage a feed's hook tokens (one per sending host).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Rotate a feed's webhook secret without refusing a push on the way.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// The feed's webhook on its forge ([feeds.NAME.status]): register, status,
    /// unregister.
    #[command(subcommand)]
    Hook(HookCommand),
    /// Show a feed's hook URL(s) again.
    HookUrl {
        /// Feed name.
        name: String,
    },
    /// Queue a build by hand.
    Trigger {
        /// Feed name.
        name: String,
        /// Branch (NAME) or full ref (refs/tags/v1.2) to build; it must be one the
        /// feed watches. Default: the feed's default branch, if it has one.
        #[arg(long, visible_alias = "ref", value_name = "BRANCH|REF")]
        branch: Option<String>,
        /// Ignore the feed's cooldown.
        #[arg(long)]
        force: bool,
        /// Build the named ref even if the feed does not watch it.
        #[arg(long, requires = "branch")]
        any_ref: bool,
    },
    /// Show running, queued and deferred builds.
    Queue,
    /// List recent builds, newest first.
    Builds {
        /// Only this feed's builds.
        name: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one build.
    #[command(subcommand)]
    Build(BuildCommand),
    /// Print a build's log.
    Log {
        /// Build id.
        id: u64,
        /// Keep printing until the build ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a queued or running build.
    Cancel {
        /// Build id.
        id: u64,
    },
    /// Recent deliveries to a feed and what became of them.
    Deliveries {
        /// Feed name.
        name: String,
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Status posts waiting to be sent or refused for good, with attempts and the
    /// last error; `retry ID` sends one again now, `drop ID` gives it up.
    Outbox {
        /// What to do with one item (none: list them).
        #[command(subcommand)]
        action: Option<OutboxCommand>,
    },
    /// Version, uptime, workers and queue depth.
    Status,
    /// The `[[notify]]` targets of the config file.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Back up feeds, tokens, webhook secrets and the token key as JSON (keep it secret).
    Export {
        /// Write here (mode 0600) instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Restore a backup made by `export` into a daemon that has no feeds.
    Import {
        /// The backup file.
        file: PathBuf,
    },
}

/// `hookd admin notify …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NotifyCommand {
    /// Send a sample notification to each of a feed's targets now (not through the
    /// outbox) and print what each answered; exit code 1 when one failed.
    Test {
        /// Feed name.
        name: String,
    },
}

/// `hookd admin outbox …`.
#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// Send an item again now (a failed one becomes pending).
    Retry {
        /// Item id, as `hookd admin outbox` lists it.
        id: u64,
    },
    /// Give an item up: it is never sent.
    Drop {
        /// Item id, as `hookd admin outbox` lists it.
        id: u64,
    },
}

/// `hookd admin build …`.
#[derive(Debug, Subcommand)]
pub(crate) enum BuildCommand {
    /// Show one build in full.
    Show {
        /// Build id.
        id: u64,
    },
}

/// `hookd admin feed …`.
#[derive(Debug, Subcommand)]
pub(crate) enum FeedCommand {
    /// Add a feed and print its hook URL.
    Add {
        /// Feed name: [a-z0-9][a-z0-9._-]{0,62}.
        name: String,
        #[command(flatten)]
        spec: FeedAddArgs,
    },
    /// List feeds.
    List,
    /// Show one feed.
    Show {
        /// Feed name.
        name: String,
    },
    /// Change a feed; flags not given keep their value.
    Edit {
        /// Feed name.
        name: String,
        #[command(flatten)]
        spec: FeedSpecArgs,
        /// Remove the feed's webhook secret.
        #[arg(long, conflicts_with = "secret_file")]
        clear_secret: bool,
    },
    /// Remove a feed, its tokens and its history.
    Remove {
        /// Feed name.
        name: String,
    },
    /// Stop starting builds for a feed; triggers are still recorded.
    Pause {
        /// Feed name.
        name: String,
    },
    /// Start building a paused feed again.
    Resume {
        /// Feed name.
        name: String,
    },
    /// Let the config file own a feed made with `feed add` (it must declare it);
    /// tokens and history stay, the file's settings apply at the next reload.
    Adopt {
        /// Feed name.
        name: String,
    },
}

/// `feed add`'s settings: what a feed cannot do without is required, the rest shows
/// the default it gets.
#[derive(Debug, Args, Clone)]
pub(crate) struct FeedAddArgs {
    /// Git repository URL (https://, ssh://, git://, file:// or a local path).
    #[arg(long, value_name = "URL")]
    pub(crate) repo: String,
    /// Build command: once = a /bin/sh -c string; repeated = argv words.
    #[arg(long = "command", value_name = "CMD", required = true)]
    pub(crate) command: Vec<String>,
    /// Branch pattern to watch (glob; repeatable; `refs/tags/*` watches tags).
    #[arg(long = "branch", value_name = "PATTERN", default_value = crate::feed::DEFAULT_BRANCH)]
    pub(crate) branches: Vec<String>,
    /// Least seconds between two build starts (0 = off).
    #[arg(long, value_name = "SECS", default_value_t = crate::feed::DEFAULT_COOLDOWN_SECS)]
    pub(crate) cooldown: u64,
    /// What to do with a trigger during the cooldown.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = CooldownArg::Defer)]
    pub(crate) on_cooldown: CooldownArg,
    /// Build timeout in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = crate::feed::DEFAULT_TIMEOUT_SECS,
        value_parser = at_least_one
    )]
    pub(crate) timeout: u64,
    /// File holding the webhook secret (signatures/tokens are then required).
    #[arg(long, value_name = "PATH")]
    pub(crate) secret_file: Option<PathBuf>,
    /// Ask a network remote for its refs first; refuse the feed if it does not
    /// answer or lists no watched branch (local paths are always checked).
    #[arg(long)]
    pub(crate) check: bool,
    /// Show the feed's build status at /badge/NAME.svg and in /cc.xml.
    #[arg(long, value_enum, value_name = "on|off", default_value_t = OnOff::Off)]
    pub(crate) badge: OnOff,
}

/// `feed edit`'s settings: all optional, a flag not given keeps the feed's value.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct FeedSpecArgs {
    /// Git repository URL (https://, ssh://, git://, file:// or a local path).
    #[arg(long, value_name = "URL")]
    pub(crate) repo: Option<String>,
    /// Branch pattern to watch (glob; repeatable; replaces the list).
    #[arg(long = "branch", value_name = "PATTERN")]
    pub(crate) branches: Vec<String>,
    /// Build command: once = a /bin/sh -c string; repeated = argv words.
    #[arg(long = "command", value_name = "CMD")]
    pub(crate) command: Vec<String>,
    /// Least seconds between two build starts (0 = off).
    #[arg(long, value_name = "SECS")]
    pub(crate) cooldown: Option<u64>,
    /// What to do with a trigger during the cooldown.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub(crate) on_cooldown: Option<CooldownArg>,
    /// Build timeout in seconds.
    #[arg(long, value_name = "SECS", value_parser = at_least_one)]
    pub(crate) timeout: Option<u64>,
    /// File holding the webhook secret (signatures/tokens are then required).
    #[arg(long, value_name = "PATH")]
    pub(crate) secret_file: Option<PathBuf>,
    /// Ask a network remote for its refs first; refuse the change if it does not
    /// answer or lists no watched branch (local paths are always checked).
    #[arg(long)]
    pub(crate) check: bool,
    /// Show the feed's build status at /badge/NAME.svg and in /cc.xml.
    #[arg(long, value_enum, value_name = "on|off")]
    pub(crate) badge: Option<OnOff>,
}

/// A switch typed as `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// A count or duration that must not be 0 (a 0 s timeout would kill every build).
fn at_least_one(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Cooldown policy as typed on the command line.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum CooldownArg {
    /// Queue the build for when the cooldown ends.
    Defer,
    /// Answer 429 with Retry-After.
    Reject,
}

/// `hookd admin hook …`: done by the daemon, with the feed's forge settings and API
/// token.
#[derive(Debug, Subcommand)]
pub(crate) enum HookCommand {
    /// Create (or repair) the feed's webhook on its forge, with a new secret; pushes
    /// signed with the old one are accepted until the forge has the new one.
    Register {
        /// Feed name.
        name: String,
        /// Events: push, tag (default: push, and tag when the feed watches tags).
        #[arg(long, value_delimiter = ',', value_name = "push,tag")]
        events: Vec<String>,
        /// Register even though public_url is a loopback, private or localhost
        /// address (a self-hosted forge on the same network).
        #[arg(long)]
        allow_private: bool,
    },
    /// The forge's view of the webhook, next to hookd's own latest deliveries.
    Status {
        /// Feed name.
        name: String,
    },
    /// Delete the webhook on the forge and revoke its hook URL.
    Unregister {
        /// Feed name.
        name: String,
    },
}

/// `hookd admin secret …`: change a webhook secret the forge must learn too.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Accept a new secret next to the current one, until `confirm` (set it on the
    /// forge in between).
    Rotate {
        /// Feed name.
        name: String,
        /// File holding the new secret.
        #[arg(long, value_name = "PATH")]
        secret_file: PathBuf,
    },
    /// The forge signs with the new secret: make it the only one.
    Confirm {
        /// Feed name.
        name: String,
    },
    /// Drop the new secret; the current one stays.
    Cancel {
        /// Feed name.
        name: String,
    },
}

/// `hookd admin token …`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Add a hook token (one per sending host) and print its URL.
    Add {
        /// Feed name.
        name: String,
        /// What the token is for, e.g. "github".
        #[arg(long)]
        label: String,
    },
    /// List a feed's tokens.
    List {
        /// Feed name.
        name: String,
    },
    /// Revoke one token; the feed's other tokens keep working.
    Revoke {
        /// Feed name.
        name: String,
        /// Token id as shown by `token list`.
        token_id: String,
    },
}
