//! `hookd admin`: turns the command line into one request, sends it over the socket,
//! and prints the reply as text or `--json`. Errors carry context for the operator.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::admin::proto::{FeedSpec, Reply, Request};
use crate::admin::render;
use crate::cli::{
    AdminArgs, AdminCommand, BuildCommand, CooldownArg, FeedAddArgs, FeedCommand, FeedSpecArgs,
    HookCommand, NotifyCommand, OutboxCommand, SecretCommand, TokenCommand,
};
use crate::feed::CooldownPolicy;

/// The config file a packaged install uses, consulted when nothing else names a socket.
const PACKAGE_CONFIG: &str = "/etc/hookd/hookd.toml";

/// Runs one admin command; an `Err` means exit code 1.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let socket = socket_path(&args)?;
    let output = match &args.command {
        AdminCommand::Export { output } => output.clone(),
        _ => None,
    };
    let request = request(args.command)?;
    let follow = matches!(request, Request::Log { follow: true, .. });
    let mut lines = send(&socket, &request).await?;
    let mut log = String::new();
    while let Some(line) = lines.next_line().await.context("reading the reply")? {
        let reply: Reply = serde_json::from_str(&line)
            .map_err(|_| not_hookd(&socket, "answered something else"))?;
        match reply {
            Reply::Error(message) => bail!(message),
            Reply::LogChunk(text) if args.json => log.push_str(&text),
            Reply::LogChunk(text) => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())?;
                if follow {
                    out.flush()?;
                }
            }
            Reply::LogEnd(status) if args.json => {
                let doc = serde_json::json!({"log": log, "status": status});
                return print_out(&format!("{doc}\n"));
            }
            Reply::LogEnd(_) => return Ok(()),
            Reply::Backup(backup) => return write_backup(&backup, output.as_deref()),
            Reply::NotifyTest(results) => {
                let failed = results.iter().filter(|r| !r.ok).count();
                let reply = Reply::NotifyTest(results);
                match args.json {
                    true => print_out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&json_payload(&reply))?
                    ))?,
                    false => print_out(&render::text(&reply))?,
                }
                if failed > 0 {
                    bail!("{failed} of the feed's notification targets failed");
                }
                return Ok(());
            }
            other if args.json => {
                let doc = serde_json::to_string_pretty(&json_payload(&other))?;
                return print_out(&format!("{doc}\n"));
            }
            other => return print_out(&render::text(&other)),
        }
    }
    Err(not_hookd(&socket, "closed the connection without a reply"))
}

/// `hookd check-config --config FILE --plan`: checks the file here, then asks the
/// running daemon what applying it would change, and prints that.
pub async fn plan(args: &crate::cli::CheckConfigArgs) -> anyhow::Result<()> {
    let Some(file) = &args.config.config else {
        bail!("--plan needs --config FILE");
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let config = crate::config::Config::from_text(file, &text, &args.config)?;
    let socket = match (&args.socket, std::env::var_os("HOOKD_SOCKET")) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) if !path.is_empty() => PathBuf::from(path),
        _ => config.admin_socket.clone(),
    };
    let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
    let request = Request::Plan {
        file: file.display().to_string(),
        text,
    };
    let reply = send(&socket, &request)
        .await?
        .next_line()
        .await
        .context("reading the reply")?
        .ok_or_else(|| not_hookd(&socket, "closed the connection without a reply"))?;
    match serde_json::from_str(&reply).map_err(|_| not_hookd(&socket, "answered something else"))? {
        Reply::Error(message) => bail!(message),
        other if args.json => print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&json_payload(&other))?
        )),
        other => print_out(&render::text(&other)),
    }
}

/// Sends one request; the reply lines follow.
async fn send(
    socket: &Path,
    request: &Request,
) -> anyhow::Result<tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>> {
    let stream = connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write
        .write_all(&line)
        .await
        .context("sending the request")?;
    Ok(BufReader::new(read).lines())
}

/// Writes to stdout and flushes, returning the error instead of panicking as
/// `print!` does: `main` treats a closed pipe (`| head`) as a quiet end.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints a backup, or writes it to a new 0600 file: it holds secrets.
fn write_backup(backup: &crate::admin::proto::Backup, output: Option<&Path>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(backup)? + "\n";
    let Some(path) = output else {
        return print_out(&text);
    };
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    eprintln!(
        "backup of {} feeds written to {}",
        backup.feeds.len(),
        path.display()
    );
    Ok(())
}

/// The `data` part of a reply: what `--json` prints.
fn json_payload(reply: &Reply) -> serde_json::Value {
    let value = serde_json::to_value(reply).unwrap_or_default();
    match value.get("data") {
        Some(serde_json::Value::String(message)) => serde_json::json!({ "message": message }),
        Some(data) => data.clone(),
        None => value,
    }
}

/// Connects to the admin socket, telling apart the ways that fails: nothing there,
/// a daemon that is gone, a socket the user may not open, and a path that is no socket.
async fn connect(socket: &Path) -> anyhow::Result<UnixStream> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::metadata(socket) {
        if !meta.file_type().is_socket() {
            return Err(not_hookd(socket, "is not a socket"));
        }
    }
    UnixStream::connect(socket)
        .await
        .map_err(|e| connect_error(socket, &e))
}

/// The message for a failed connect; the path is shown absolute, once.
fn connect_error(socket: &Path, e: &std::io::Error) -> anyhow::Error {
    let path = shown(socket);
    let hint = "Start it with `hookd serve` (or `systemctl start hookd`), or name its \
                socket with --socket PATH or HOOKD_SOCKET.";
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("hookd is not running: no socket at {path}.\n{hint}")
        }
        std::io::ErrorKind::ConnectionRefused => anyhow::anyhow!(
            "hookd is not running: nothing listens on {path} (left by a stopped daemon).\n{hint}"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "permission denied on {path}: you must be root, the daemon's user, or in its group"
        ),
        _ => anyhow::anyhow!("cannot connect to {path}: {e}"),
    }
}

/// Something at the socket path that does not speak the admin protocol.
fn not_hookd(socket: &Path, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is not a hookd socket (it {what}); name the daemon's socket with --socket PATH \
         or HOOKD_SOCKET",
        shown(socket)
    )
}

/// The path as the operator should read it: absolute, so it means the same from any
/// directory.
fn shown(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// `--socket`, `HOOKD_SOCKET`, the config's `admin_socket`, else the default location.
fn socket_path(args: &AdminArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.socket {
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("HOOKD_SOCKET").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let from_config = |path: &Path| -> anyhow::Result<PathBuf> {
        let args = crate::cli::ConfigArgs {
            config: Some(path.to_owned()),
            ..Default::default()
        };
        Ok(crate::config::Config::load_settings(&args)?.admin_socket)
    };
    if let Some(path) = &args.config {
        return from_config(path);
    }
    let local = Path::new(crate::config::DEFAULT_DATA_DIR).join("admin.sock");
    if !local.exists() && Path::new(PACKAGE_CONFIG).exists() {
        return from_config(Path::new(PACKAGE_CONFIG));
    }
    Ok(local)
}

fn request(command: AdminCommand) -> anyhow::Result<Request> {
    Ok(match command {
        AdminCommand::Feed(cmd) => feed_request(cmd)?,
        AdminCommand::Token(TokenCommand::Add { name, label }) => Request::TokenAdd { name, label },
        AdminCommand::Token(TokenCommand::List { name }) => Request::TokenList { name },
        AdminCommand::Token(TokenCommand::Revoke { name, token_id }) => {
            Request::TokenRevoke { name, token_id }
        }
        AdminCommand::Secret(SecretCommand::Rotate { name, secret_file }) => {
            Request::SecretRotate {
                name,
                secret: read_secret(&secret_file)?,
            }
        }
        AdminCommand::Secret(SecretCommand::Confirm { name }) => Request::SecretConfirm { name },
        AdminCommand::Secret(SecretCommand::Cancel { name }) => Request::SecretCancel { name },
        AdminCommand::Hook(HookCommand::Register {
            name,
            events,
            allow_private,
        }) => Request::HookRegister {
            name,
            events,
            allow_private,
        },
        AdminCommand::Hook(HookCommand::Status { name }) => Request::HookStatus { name },
        AdminCommand::Hook(HookCommand::Unregister { name }) => Request::HookUnregister { name },
        AdminCommand::HookUrl { name } => Request::HookUrl { name },
        AdminCommand::Trigger {
            name,
            branch,
            force,
            any_ref,
        } => Request::Trigger {
            name,
            branch,
            force,
            any_ref,
        },
        AdminCommand::Queue => Request::Queue,
        AdminCommand::Builds { name, limit } => Request::Builds { name, limit },
        AdminCommand::Build(BuildCommand::Show { id }) => Request::BuildShow { id },
        AdminCommand::Log { id, follow } => Request::Log { id, follow },
        AdminCommand::Cancel { id } => Request::Cancel { id },
        AdminCommand::Deliveries { name, limit } => Request::Deliveries { name, limit },
        AdminCommand::Outbox { action } => match action {
            None => Request::Outbox,
            Some(OutboxCommand::Retry { id }) => Request::OutboxRetry { id },
            Some(OutboxCommand::Drop { id }) => Request::OutboxDrop { id },
        },
        AdminCommand::Status => Request::Status,
        AdminCommand::Notify(NotifyCommand::Test { name }) => Request::NotifyTest { name },
        AdminCommand::Export { .. } => Request::Export,
        AdminCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let backup = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a hookd backup", file.display()))?;
            Request::Import { backup }
        }
    })
}

fn feed_request(cmd: FeedCommand) -> anyhow::Result<Request> {
    Ok(match cmd {
        FeedCommand::Add { name, spec } => Request::FeedAdd {
            name,
            spec: feed_spec(add_spec(spec), false)?,
        },
        FeedCommand::List => Request::FeedList,
        FeedCommand::Show { name } => Request::FeedShow { name },
        FeedCommand::Edit {
            name,
            spec,
            clear_secret,
        } => Request::FeedEdit {
            name,
            spec: feed_spec(spec, clear_secret)?,
        },
        FeedCommand::Remove { name } => Request::FeedRemove { name },
        FeedCommand::Pause { name } => Request::FeedPause { name, paused: true },
        FeedCommand::Resume { name } => Request::FeedPause {
            name,
            paused: false,
        },
        FeedCommand::Adopt { name } => Request::FeedAdopt { name },
    })
}

/// `feed add`'s flags as a full spec: its defaults are explicit values.
fn add_spec(args: FeedAddArgs) -> FeedSpecArgs {
    FeedSpecArgs {
        repo: Some(args.repo),
        branches: args.branches,
        command: args.command,
        cooldown: Some(args.cooldown),
        on_cooldown: Some(args.on_cooldown),
        timeout: Some(args.timeout),
        secret_file: args.secret_file,
        check: args.check,
        badge: Some(args.badge),
    }
}

fn feed_spec(args: FeedSpecArgs, clear_secret: bool) -> anyhow::Result<FeedSpec> {
    let secret = match &args.secret_file {
        Some(path) => Some(read_secret(path)?),
        None => None,
    };
    Ok(FeedSpec {
        repo: args.repo,
        branches: args.branches,
        command: args.command,
        cooldown_secs: args.cooldown,
        on_cooldown: args.on_cooldown.map(|p| match p {
            CooldownArg::Defer => CooldownPolicy::Defer,
            CooldownArg::Reject => CooldownPolicy::Reject,
        }),
        timeout_secs: args.timeout,
        secret,
        clear_secret,
        check: args.check,
        badge: args.badge.map(|b| b == crate::cli::OnOff::On),
    })
}

/// Reads a secret file, dropping the trailing newline editors and `echo` add.
fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read secret file {}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    if secret.trim().is_empty() {
        bail!(
            "secret file {} is empty; a webhook secret must not be empty",
            path.display()
        );
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_tell_the_causes_apart() {
        let socket = Path::new("/run/hookd/admin.sock");
        let said = |kind| connect_error(socket, &std::io::Error::from(kind)).to_string();
        let refused = said(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            refused,
            "permission denied on /run/hookd/admin.sock: you must be root, the daemon's \
             user, or in its group"
        );
        assert!(said(std::io::ErrorKind::NotFound).starts_with("hookd is not running: no socket"));
        assert!(said(std::io::ErrorKind::ConnectionRefused)
            .starts_with("hookd is not running: nothing listens"));
    }
}
