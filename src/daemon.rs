//! The daemon's start-up script and ordered shutdown: open the store, recover what a
//! crash left, bind, spawn the long-lived tasks, tell systemd, then on a signal stop
//! accepting, drain requests, give builds their grace, and flush.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::ConfigArgs;
use crate::clock::now_ms;
use crate::config::{Config, LiveConfig};
use crate::metrics::Metrics;
use crate::outbound::sender::Sender;
use crate::outbound::Outbox;
use crate::runner::leftovers::{self, Marker};
use crate::scheduler::Scheduler;
use crate::store::{OnLoss, Store, StoreOptions};
use crate::token::ServerKey;

/// What the signal thread reports.
#[derive(Debug, Clone, Copy)]
enum Signal {
    /// SIGTERM or SIGINT: drain and exit.
    Stop,
    /// SIGHUP: reload the config.
    Reload,
}

/// Runs the daemon until SIGTERM/SIGINT; returns once everything is drained. `on_loss`
/// says whether a store that lost acknowledged writes may open (`--accept-data-loss`).
/// `inherited` is the hook listener systemd passed, if any (see `systemd::take_listener`).
pub async fn run(
    config: Config,
    args: ConfigArgs,
    inherited: Option<std::net::TcpListener>,
    on_loss: OnLoss,
) -> anyhow::Result<()> {
    // Bounded libgit2 network timeouts, so a silent server cannot wedge a worker.
    crate::runner::git::init();
    crate::runner::exec::init()
        .context("preparing to run builds (subreaper, close-on-exec descriptors)")?;
    let data_dir = config.data_dir.clone();
    protect_data_dir(&data_dir)?;
    let options = StoreOptions {
        cache_bytes: config.store_cache_bytes,
        keep_deliveries: config.keep_deliveries,
    };
    let (store, key) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let store = Store::open_checked(&data_dir, options, on_loss)?;
        // A key is made only for a store without tokens: never a silent new hook URL.
        let key = ServerKey::load(&data_dir, store.holds_tokens()?)?;
        Ok((store, key))
    })
    .await??;
    recover(&store, &config.data_dir).await?;

    let listener = bind(&config, inherited).await?;
    let bound = listener.local_addr().context("reading the bound address")?;
    // A copy for healing in place after a full disk (see `heal`); close-on-exec.
    let handover = std::os::fd::AsFd::as_fd(&listener)
        .try_clone_to_owned()
        .context("keeping the hook socket for a restart in place")?;
    let web_listener = bind_web(&config.web).await?;
    let admin = crate::admin::server::bind(&config.admin_socket).await?;
    let config = config.with_bound_addr(bound);
    let (live, metrics) = (LiveConfig::new(config), Arc::<Metrics>::default());
    let outbox = Outbox::default();
    let (tokens, config) = (outbox.clone(), live.get());
    tokio::task::spawn_blocking(move || tokens.tokens().load(&config)).await?;
    let sender = Sender::new(store.clone(), live.clone(), outbox.clone(), metrics.clone())
        .map_err(anyhow::Error::msg)?;
    let scheduler = Scheduler::new(store.clone(), live.clone(), metrics.clone(), outbox.clone());
    let check_repo = crate::runner::check_repo;
    let app = App::new(
        live,
        store,
        key,
        scheduler.clone(),
        metrics,
        check_repo,
        outbox.clone(),
    );
    let (routes, store, dir) = (
        app.routes.clone(),
        app.store.clone(),
        app.config().data_dir.clone(),
    );
    tokio::task::spawn_blocking(move || routes.reload(&store, &dir)).await??;
    let ready = format!("listening on {bound}");
    let status = match apply_declared(&app, &app.config()).await {
        Ok(()) => ready.clone(),
        Err(e) => format!("{ready}; declared feeds not applied: {e}"),
    };

    let shutdown = CancellationToken::new();
    // Stops only the HTTP listeners: on shutdown, and before healing in place.
    let accepting = shutdown.child_token();
    let mut servers = vec![tokio::spawn(crate::http::serve(
        listener,
        app.clone(),
        crate::http::Role::Hooks,
        accepting.clone(),
    ))];
    if let Some(listener) = web_listener {
        servers.push(tokio::spawn(crate::http::serve(
            listener,
            app.clone(),
            crate::http::Role::Web,
            accepting.clone(),
        )));
    }
    let admin_task = tokio::spawn(crate::admin::server::serve(
        admin,
        app.clone(),
        shutdown.clone(),
    ));
    let builds = tokio::spawn(scheduler.run(shutdown.clone()));
    let posts = tokio::spawn(sender.run(shutdown.clone()));
    let reaper = tokio::spawn(leftovers::reap_adopted(shutdown.clone()));
    let mut room = tokio::spawn(crate::heal::room_returned(
        app.store.clone(),
        app.config().data_dir.clone(),
        shutdown.clone(),
    ));
    tracing::info!(listen = %bound, admin_socket = %app.config().admin_socket.display(), version = env!("CARGO_PKG_VERSION"), "hookd ready");
    crate::systemd::notify(&format!("READY=1\nSTATUS={status}"));

    let mut signals = signals()?;
    let mut watching = true;
    loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => reload(&app, &outbox, &args, &ready).await,
                Some(Signal::Stop) | None => break,
            },
            healed = &mut room, if watching => {
                watching = false;
                if matches!(healed, Ok(true)) {
                    heal_in_place(&accepting, &mut servers, &handover).await;
                }
            }
        }
    }
    tracing::info!("stopping: no new connections; draining requests and builds");
    crate::systemd::notify("STOPPING=1\nSTATUS=draining");
    shutdown.cancel();
    for server in servers {
        let _ = server.await;
    }
    let _ = builds.await;
    let _ = posts.await;
    if watching {
        let _ = room.await;
    }
    let _ = reaper.await;
    let _ = admin_task.await;
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || store.durable_blocking()).await??;
    let _ = std::fs::remove_file(&app.config().admin_socket);
    tracing::info!("stopped");
    Ok(())
}

/// The disk takes writes again after a failed commit: stop accepting, answer what was
/// accepted, then restart in place with the hook socket (see `heal`). Never returns.
async fn heal_in_place(
    accepting: &CancellationToken,
    servers: &mut Vec<tokio::task::JoinHandle<()>>,
    handover: &std::os::fd::OwnedFd,
) -> ! {
    tracing::warn!("the disk takes writes again; restarting hookd in place to reopen the store");
    accepting.cancel();
    for server in servers.drain(..) {
        let _ = server.await;
    }
    let error = crate::heal::reexec(handover);
    tracing::error!(%error, "cannot restart in place; exiting so the service manager restarts hookd");
    std::process::exit(1);
}

/// What hookd and its builds create gets no world access and no group write, whatever
/// umask hookd was started with (store, logs, mirrors, workspaces, secrets, sockets);
/// and the data dir is created 0750, or tightened to that if it was more open.
fn protect_data_dir(dir: &Path) -> anyhow::Result<()> {
    const CLOSED: u32 = 0o027;
    // SAFETY: umask only swaps the process's file mode mask; the first call reads it.
    unsafe { libc::umask(libc::umask(CLOSED) | CLOSED) };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read data dir {}", dir.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & CLOSED != 0 {
        let tightened = mode & !CLOSED;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(tightened)).with_context(
            || {
                format!(
                    "data dir {} is mode {mode:04o}, open to other users, and cannot be \
                     tightened to {tightened:04o}; chmod it (hookd's user must own it)",
                    dir.display()
                )
            },
        )?;
        tracing::warn!(dir = %dir.display(), from = format!("{mode:04o}"), to = format!("{tightened:04o}"), "data dir was open to other users; tightened");
    }
    Ok(())
}

/// Marks builds a crash left `running` as interrupted (queued again once) and kills
/// whatever of their processes survived the daemon, in their group or out of it.
async fn recover(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    let store = store.clone();
    let interrupted =
        tokio::task::spawn_blocking(move || store.recover_interrupted(now_ms())).await??;
    for build in &interrupted {
        tracing::warn!(feed = %build.feed, build = build.id.0, "build was interrupted by a daemon stop; queued again once");
    }
    // Reading /proc blocks: off the async threads.
    let data_dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || {
        for build in interrupted {
            let marker = Marker::new(build.id.0, &data_dir);
            if let Some(pgid) = build.pgid {
                let killed = leftovers::reap_orphans(pgid, &marker);
                if killed > 0 {
                    tracing::warn!(
                        build = build.id.0,
                        pgid,
                        processes = killed,
                        "killed the leftover process group"
                    );
                }
            }
            leftovers::kill_escaped(&marker);
        }
    })
    .await?;
    Ok(())
}

/// The web side's own listener, when `[web] listen` names one (read at start only).
async fn bind_web(web: &crate::config::WebConfig) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = web.listen.filter(|_| web.enabled) else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ([web] listen)"))?;
    tracing::info!(listen = %addr, "web pages on their own listener");
    Ok(Some(listener))
}

/// The hook listener: the socket systemd passed (socket activation), else a new one
/// bound to `listen`.
async fn bind(
    config: &Config,
    inherited: Option<std::net::TcpListener>,
) -> anyhow::Result<TcpListener> {
    if let Some(listener) = inherited {
        listener.set_nonblocking(true)?;
        tracing::info!("using the listening socket passed by systemd");
        return Ok(TcpListener::from_std(listener)?);
    }
    TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))
}

/// Applies the config's declared feeds; a refusal is logged with its reason (file,
/// key, line) and changes nothing.
async fn apply_declared(app: &App, config: &Config) -> Result<(), String> {
    match crate::admin::declared::apply(app, config).await {
        Ok(plan) => {
            let changed = plan.changes.len();
            tracing::info!(
                changed,
                unchanged = plan.unchanged,
                "declared feeds applied"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "declared feeds refused; the stored feeds stay as they were");
            Err(e.to_string())
        }
    }
}

/// SIGHUP: re-read the config file and apply it whole, declared feeds first, or
/// refuse it whole (the old settings and feeds stay, the reason is logged and put in
/// systemd's status line); then re-read the webhook secrets, which an operator may
/// have replaced on disk, and the status API tokens.
async fn reload(app: &App, outbox: &Outbox, args: &ConfigArgs, ready: &str) {
    let args = args.clone();
    let loaded = tokio::task::spawn_blocking(move || Config::load(&args)).await;
    let refused = match loaded {
        Ok(Ok(new)) => match apply_declared(app, &new).await {
            Ok(()) => {
                apply_config(app, new);
                None
            }
            Err(e) => Some(e),
        },
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("the reload task failed: {e}")),
    };
    if let Some(reason) = refused {
        tracing::error!(error = %reason, "configuration reload refused; keeping the old one");
        crate::systemd::notify(&format!("STATUS=reload refused, old config kept: {reason}"));
        return;
    }
    crate::systemd::notify(&format!("STATUS={ready}"));
    let (tokens, config) = (outbox.clone(), app.config());
    if tokio::task::spawn_blocking(move || tokens.tokens().load(&config))
        .await
        .is_ok()
    {
        outbox.wake();
    }
    let app2 = app.clone();
    let secrets = tokio::task::spawn_blocking(move || {
        app2.routes.reload(&app2.store, &app2.config().data_dir)
    })
    .await;
    match secrets {
        Ok(Ok(())) => tracing::info!("configuration reloaded"),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "configuration reloaded, but the feeds could not be re-read")
        }
        Err(e) => tracing::error!(error = %e, "configuration reload failed"),
    }
}

/// Swaps in a reloaded config, keeping what only a restart can change.
fn apply_config(app: &App, new: Config) {
    let current = app.config();
    if new.data_dir != current.data_dir || new.admin_socket != current.admin_socket {
        tracing::warn!(
            "data_dir and admin_socket changes need a restart; keeping the current ones"
        );
    }
    let new = Config {
        data_dir: current.data_dir.clone(),
        admin_socket: current.admin_socket.clone(),
        ..new
    }
    .with_bound_addr(current.listen);
    crate::logging::set_level(&new.log_level);
    app.set_config(new);
    app.scheduler.wake();
}

/// Forwards SIGTERM/SIGINT/SIGHUP from a signal-hook thread into the runtime.
fn signals() -> anyhow::Result<mpsc::Receiver<Signal>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    let (tx, rx) = mpsc::channel(8);
    std::thread::Builder::new()
        .name("hookd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let message = if signal == SIGHUP {
                    Signal::Reload
                } else {
                    Signal::Stop
                };
                if tx.blocking_send(message).is_err() {
                    break;
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(rx)
}
