//! Webhook secrets: a string that cannot end up in a log or an error message by accident,
//! and its one 0600 file per feed under `DATA_DIR/secrets/`, never in the database, so a
//! copy of the database cannot forge a signed delivery.

use std::fmt;
use std::path::Path;

use crate::feed::FeedName;
use crate::paths;

/// A feed's webhook secret (HMAC key or shared token).
///
/// `Debug` and `Display` print `***`; [`Secret::expose`] is the only way to read the value,
/// so every place that touches it is easy to find. Nothing else is derived on purpose.
#[derive(Clone)]
pub(crate) struct Secret(String);

/// Refusal of an empty or whitespace-only secret: any sender could "sign" with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("webhook secret is empty")]
pub(crate) struct EmptySecret;

impl Secret {
    /// Wraps a secret, refusing one that is empty or only whitespace.
    pub(crate) fn new(value: String) -> Result<Secret, EmptySecret> {
        if value.trim().is_empty() {
            return Err(EmptySecret);
        }
        Ok(Secret(value))
    }

    /// The secret's text, for computing or comparing signatures only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Writes (or replaces) a feed's secret atomically, readable by the daemon's user only.
pub(crate) fn save(data_dir: &Path, feed: &FeedName, secret: &Secret) -> std::io::Result<()> {
    paths::create_private_dir(&paths::secrets_dir(data_dir))?;
    paths::write_private(&paths::secret(data_dir, feed), secret.expose().as_bytes())
}

/// Reads a feed's secret; `None` when the file is gone.
pub(crate) fn load(data_dir: &Path, feed: &FeedName) -> std::io::Result<Option<Secret>> {
    match std::fs::read_to_string(paths::secret(data_dir, feed)) {
        Ok(text) => Ok(Secret::new(text).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes a feed's secret, if any.
pub(crate) fn remove(data_dir: &Path, feed: &FeedName) -> std::io::Result<()> {
    match std::fs::remove_file(paths::secret(data_dir, feed)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_secrets_are_refused() {
        assert_eq!(Secret::new(String::new()).err(), Some(EmptySecret));
        assert_eq!(Secret::new(" \t\n".into()).err(), Some(EmptySecret));
    }

    #[test]
    fn secret_never_prints_itself() {
        let secret = Secret::new("hunter2".into()).unwrap();
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
