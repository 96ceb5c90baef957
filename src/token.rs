//! Hook tokens: the secret part of a hook URL, minted and checked with a server key.
//!
//! A token is `base64url(id ‖ HMAC-SHA256(server_key, id)[..16])`: 64 random bits that
//! name the token's record plus a 128-bit MAC. The database stores only the id, so a
//! copy of it can neither recover nor forge a token; the key lives in its own 0600
//! file. Because the MAC is derived, `hook-url` can show a URL again at any time.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use subtle::ConstantTimeEq;

/// Bytes of a token id.
const ID_LEN: usize = 8;
/// Bytes of the MAC half: 128 bits of unguessable entropy.
const MAC_LEN: usize = 16;
/// Bytes of the server key.
const KEY_LEN: usize = 32;

/// Why the server key could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// Reading, creating or checking the key file failed.
    #[error("server key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file exists but does not hold a key.
    #[error("server key {0} is not {KEY_LEN} bytes; restore it from backup (tokens depend on it)")]
    Malformed(PathBuf),
    /// The key file is gone but tokens made with it exist: a new key would change
    /// every hook URL, so hookd refuses to start until it is restored.
    #[error(
        "server key {0} is missing, but the store holds hook tokens made with it; a new key \
         would change every hook URL (forges would get 404). Restore the file (mode 0600) from \
         a backup of the data dir, or from an export: \
         printf '%s=' \"$(jq -r .server_key BACKUP.json)\" | basenc --base64url -d > {0}"
    )]
    Missing(PathBuf),
    /// The OS random source failed.
    #[error("no randomness available: {0}")]
    Random(String),
}

/// The public half of a token: names its record, shown by `token list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenId([u8; ID_LEN]);

impl TokenId {
    /// Raw bytes, as used for the store key.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// From store key bytes.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// From the hex form an operator types (`token revoke NAME ID`).
    pub(crate) fn parse_hex(text: &str) -> Option<Self> {
        hex::decode(text).ok().and_then(|b| Self::from_bytes(&b))
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A whole token: the secret path segment of a hook URL. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HookToken(String);

impl HookToken {
    /// The token text, for building the URL shown to the operator.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HookToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HookToken(***)")
    }
}

/// A presented token, checked: `id` says which record to load, `mac_ok` whether it is genuine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presented {
    /// The id half (all zeros when the token was malformed).
    pub(crate) id: TokenId,
    /// Whether the MAC half matched, compared in constant time.
    pub(crate) mac_ok: bool,
}

/// The daemon's secret key for tokens.
#[derive(Clone)]
pub(crate) struct ServerKey([u8; KEY_LEN]);

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKey(***)")
    }
}

impl ServerKey {
    /// Loads `DIR/server.key`. A missing key is made (0600, random) only while no
    /// token depends on it (`tokens_exist` false: a fresh data dir); otherwise a new
    /// key would silently change every hook URL, so that is [`KeyError::Missing`].
    pub(crate) fn load(data_dir: &Path, tokens_exist: bool) -> Result<Self, KeyError> {
        let path = crate::paths::server_key(data_dir);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::File::open(&path) {
            Ok(mut file) => {
                let mode = file.metadata().map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "server key is readable by others; chmod 600 it");
                }
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(io)?;
                let key: [u8; KEY_LEN] = bytes
                    .try_into()
                    .map_err(|_| KeyError::Malformed(path.clone()))?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tokens_exist => {
                Err(KeyError::Missing(path.clone()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; KEY_LEN] = random_bytes()?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                file.write_all(&key).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key's bytes, for `admin export` (a backup must carry it, or every hook URL
    /// changes on restore).
    pub(crate) fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Restores an exported key and writes it to `DATA_DIR/server.key` (0600), replacing
    /// the current file atomically.
    pub(crate) fn restore(data_dir: &Path, text: &str) -> Result<Self, KeyError> {
        let path = crate::paths::server_key(data_dir);
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| KeyError::Malformed(path.clone()))?;
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::Malformed(path.clone()))?;
        crate::paths::write_private(&path, &key).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self(key))
    }

    /// Mints a fresh token with a random id.
    pub(crate) fn mint(&self) -> Result<(TokenId, HookToken), KeyError> {
        let id = TokenId(random_bytes()?);
        Ok((id, self.token_for(id)))
    }

    /// The token text for an id (deterministic, so URLs can be shown again).
    pub(crate) fn token_for(&self, id: TokenId) -> HookToken {
        let mut raw = [0u8; ID_LEN + MAC_LEN];
        raw[..ID_LEN].copy_from_slice(&id.0);
        raw[ID_LEN..].copy_from_slice(&self.mac(id));
        HookToken(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Checks a presented token. Malformed input does the same work as a real one,
    /// so a guess answers in the same time whatever it looks like.
    pub(crate) fn check(&self, presented: &str) -> Presented {
        let mut raw = [0u8; ID_LEN + MAC_LEN];
        let well_formed = presented.len() == 32
            && URL_SAFE_NO_PAD.decode_slice(presented, &mut raw).ok() == Some(raw.len());
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&raw[..ID_LEN]);
        let id = TokenId(id);
        let expected = self.mac(id);
        let mac_ok: bool = expected.ct_eq(&raw[ID_LEN..]).into();
        Presented {
            id,
            mac_ok: mac_ok && well_formed,
        }
    }

    fn mac(&self, id: TokenId) -> [u8; MAC_LEN] {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(b"hookd hook token v1\0");
        mac.update(&id.0);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

/// Random bytes from the OS.
fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_is_made_only_while_no_token_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::paths::server_key(dir.path());
        let err = ServerKey::load(dir.path(), true).unwrap_err();
        assert!(matches!(err, KeyError::Missing(_)), "{err}");
        assert!(err.to_string().contains("backup"), "{err}");
        assert!(
            !path.exists(),
            "a key was made although tokens need the old one"
        );
        ServerKey::load(dir.path(), false).unwrap();
        assert!(path.exists());
        // An existing key loads whether or not tokens exist.
        ServerKey::load(dir.path(), true).unwrap();
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load(dir.path(), false).unwrap();
        let mode = std::fs::metadata(crate::paths::server_key(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ServerKey::load(dir.path(), false).unwrap();
        let (id, token) = key.mint().unwrap();
        assert_eq!(again.token_for(id), token);
    }

    #[test]
    fn genuine_tokens_check_and_forgeries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load(dir.path(), false).unwrap();
        let (id, token) = key.mint().unwrap();
        assert_eq!(token.expose().len(), 32);
        assert!(token
            .expose()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let p = key.check(token.expose());
        assert!(p.mac_ok);
        assert_eq!(p.id, id);
        // Same id, different MAC: a forger who copied the database knows the id.
        let mut forged = token.expose().to_owned();
        let last = if forged.ends_with('A') { "B" } else { "A" };
        forged.replace_range(31.., last);
        assert!(!key.check(&forged).mac_ok);
        for junk in [
            "",
            "x",
            &"A".repeat(32),
            &"é".repeat(16),
            &token.expose()[..31],
        ] {
            assert!(!key.check(junk).mac_ok, "{junk}");
        }
        let other = tempfile::tempdir().unwrap();
        let other_key = ServerKey::load(other.path(), false).unwrap();
        assert!(!other_key.check(token.expose()).mac_ok);
    }

    #[test]
    fn an_exported_key_restores_the_same_tokens() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let key = ServerKey::load(a.path(), false).unwrap();
        let (id, token) = key.mint().unwrap();
        let restored = ServerKey::restore(b.path(), &key.to_base64()).unwrap();
        assert_eq!(restored.token_for(id), token);
        assert_eq!(
            ServerKey::load(b.path(), false).unwrap().token_for(id),
            token
        );
        assert!(ServerKey::restore(b.path(), "not base64!").is_err());
    }

    #[test]
    fn token_ids_round_trip_through_hex() {
        let id = TokenId([1, 2, 3, 4, 5, 6, 7, 255]);
        assert_eq!(id.to_string(), "01020304050607ff");
        assert_eq!(TokenId::parse_hex("01020304050607ff"), Some(id));
        assert_eq!(TokenId::parse_hex("zz"), None);
        assert_eq!(TokenId::parse_hex("0102"), None);
    }
}
