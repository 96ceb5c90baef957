//! Logging setup: `tracing` to stderr, plain (no timestamps or colours) under
//! journald, with a level that SIGHUP can change.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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
pub(crate) fn set_level(level: &str) {
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

/// How often one repeating error is logged.
const REPEAT_INTERVAL: Duration = Duration::from_secs(10);

/// When each distinct repeating error was last logged, and how often it recurred since.
static REPEATS: Mutex<Option<HashMap<String, (Instant, u64)>>> = Mutex::new(None);

/// Whether to log an error that may repeat thousands of times a second (a full disk
/// fails every write): `Some(n)` once per interval per distinct `key`, `n` being how
/// many times it was held back since the last line; `None` otherwise.
pub(crate) fn once_per_interval(key: &str) -> Option<u64> {
    let mut guard = REPEATS.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    match seen.get_mut(key) {
        Some((last, held)) if now.duration_since(*last) < REPEAT_INTERVAL => {
            *held += 1;
            None
        }
        Some((last, held)) => {
            let repeats = *held;
            (*last, *held) = (now, 0);
            Some(repeats)
        }
        None => {
            seen.insert(key.to_owned(), (now, 0));
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_repeating_error_is_logged_once_per_interval_with_a_count() {
        let key = "test: disk full";
        assert_eq!(super::once_per_interval(key), Some(0));
        for _ in 0..1000 {
            assert_eq!(super::once_per_interval(key), None);
        }
        assert_eq!(super::once_per_interval("test: another error"), Some(0));
    }
}
