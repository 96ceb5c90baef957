//! Logging setup: `tracing` to stderr, plain (no timestamps or colours) under
//! journald, with a level that SIGHUP can change.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// Handle to swap the filter on reload.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the subscriber; `RUST_LOG` wins over the configured level.
pub fn init(level: &str) {
    let filter = filter(level);
    let (filter, handle) = reload::Layer::new(filter);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = fmt::layer().with_writer(std::io::stderr).with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if journald {
        registry
            .with(layer.without_time().with_ansi(false))
            .try_init()
    } else {
        registry.with(layer.with_ansi(false)).try_init()
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Applies a new level from a reloaded config (unless `RUST_LOG` pins it).
pub fn set_level(level: &str) {
    if let Some(handle) = FILTER.get() {
        if let Err(e) = handle.reload(filter(level)) {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
}

fn filter(level: &str) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::new(env),
        _ => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
    }
}
