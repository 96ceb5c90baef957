//! Key layouts: big-endian integers so sled's byte order is numeric order, and
//! `feed \0 rest` composites so one feed's records are one prefix scan.

use super::StoreError;

/// meta key: the schema version.
pub(super) const SCHEMA: &[u8] = b"schema";
/// meta key: the next build id.
pub(super) const NEXT_BUILD: &[u8] = b"next_build";
/// meta key: the next outbox item id.
pub(super) const NEXT_OUTBOX: &[u8] = b"next_outbox";
/// meta key: scratch value written by health checks.
pub(super) const HEALTH: &[u8] = b"health";
/// The last group commit's number and time (see `mark`).
pub(super) const COMMIT: &[u8] = b"commit";

/// `feed \0` — the prefix of every per-feed composite key.
pub(super) fn feed_prefix(feed: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(feed.len() + 1);
    k.extend_from_slice(feed.as_bytes());
    k.push(0);
    k
}

/// `feed \0 n` with `n` big-endian.
pub(super) fn feed_u64(feed: &str, n: u64) -> Vec<u8> {
    let mut k = feed_prefix(feed);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// `feed \0 text`.
pub(super) fn feed_text(feed: &str, text: &str) -> Vec<u8> {
    let mut k = feed_prefix(feed);
    k.extend_from_slice(text.as_bytes());
    k
}

/// Reads a big-endian u64 (a key suffix or a counter value).
pub(super) fn read_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .get(bytes.len().saturating_sub(8)..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("short integer".into()))?;
    Ok(u64::from_be_bytes(arr))
}

/// Reads a big-endian i64 value.
pub(super) fn read_i64(bytes: &[u8]) -> Result<i64, StoreError> {
    read_u64(bytes).map(|v| v as i64)
}

/// Reads a big-endian u32 value.
pub(super) fn read_u32(bytes: &[u8]) -> Result<u32, StoreError> {
    let arr: [u8; 4] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("bad u32".into()))?;
    Ok(u32::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_sort_numerically_within_a_feed() {
        assert!(feed_u64("a", 2) < feed_u64("a", 256));
        assert!(feed_u64("a", u64::MAX) < feed_prefix("a0"));
        assert_eq!(read_u64(&feed_u64("web", 42)).unwrap(), 42);
        assert!(read_u64(b"short").is_err());
    }
}
