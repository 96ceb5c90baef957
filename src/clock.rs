//! The clock: wall time as Unix milliseconds, the one time base every record uses, and
//! its RFC 3339 rendering for people; and moments timed on the monotonic clock, read
//! in wall time, for waits a wall-clock jump must neither stretch nor shrink.

use std::time::Instant;

/// Current time as Unix milliseconds; the only clock the records use.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// When `at` happened, in the wall time `now_ms` read at the monotonic moment `now`:
/// `now_ms` minus how long ago it really was, so a wall-clock jump since moves it along.
pub(crate) fn wall_ms_at(at: Instant, now: Instant, now_ms: i64) -> i64 {
    let ago = now.saturating_duration_since(at).as_millis();
    now_ms.saturating_sub(i64::try_from(ago).unwrap_or(i64::MAX))
}

/// Formats Unix milliseconds as RFC 3339 (UTC, seconds).
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Reads back what [`rfc3339`] wrote, as Unix milliseconds.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(text).ok()?;
    let since = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
    }

    #[test]
    fn a_monotonic_moment_reads_in_the_wall_time_given() {
        let at = Instant::now();
        let now = at + std::time::Duration::from_secs(20);
        assert_eq!(wall_ms_at(at, now, 1_000_000), 980_000);
        // The wall clock jumped a day ahead meanwhile: the moment moves with it.
        assert_eq!(wall_ms_at(at, now, 87_400_000), 87_380_000);
        // A moment not yet reached reads as now.
        assert_eq!(wall_ms_at(now, at, 5), 5);
    }
}
