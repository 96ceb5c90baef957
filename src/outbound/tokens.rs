//! API tokens for status posts: read from each `[feeds.NAME.status] token_file` at
//! start and on SIGHUP, held in memory as [`Secret`]s (which never print), never
//! written to the store or a log.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::RwLock;

use crate::config::Config;
use crate::secret::Secret;

/// The tokens in force, by feed name.
#[derive(Debug, Default)]
pub(crate) struct Tokens(RwLock<HashMap<String, Secret>>);

impl Tokens {
    /// Reads every token file the config names (blocking I/O: call it off the async
    /// threads). A file that cannot be read is logged (its path, not its content)
    /// and its feed's posts wait until a reload reads it.
    pub(crate) fn load(&self, config: &Config) {
        let mut tokens = HashMap::new();
        for (feed, status) in &config.status {
            let path = &status.token_file;
            match std::fs::read_to_string(path) {
                Ok(text) => match Secret::new(text.trim().to_owned()) {
                    Ok(token) => {
                        warn_if_open(path);
                        tokens.insert(feed.clone(), token);
                    }
                    Err(_) => {
                        tracing::error!(feed = %feed, path = %path.display(), "the status token file is empty; posts wait")
                    }
                },
                Err(e) => {
                    tracing::error!(feed = %feed, path = %path.display(), error = %e, "cannot read the status token file; posts wait")
                }
            }
        }
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = tokens;
    }

    /// A feed's token.
    pub(crate) fn get(&self, feed: &str) -> Option<Secret> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(feed)
            .cloned()
    }
}

/// A token readable by other users is logged (like the server key).
fn warn_if_open(path: &std::path::Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "status token file is readable by others; chmod 600 it");
        }
    }
}
