//! JavaScript-style timestamps: `new Date().toISOString()` gives
//! `2026-11-26T03:34:22.070Z` (UTC, milliseconds, `Z`), and Hydra records use it
//! everywhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as JavaScript's `toISOString()` prints it.
pub(crate) fn now_iso() -> String {
    to_iso(SystemTime::now())
}

/// `time` as JavaScript's `toISOString()` prints it.
pub(crate) fn to_iso(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Milliseconds since the Unix epoch of an ISO-8601 timestamp (Node's
/// `new Date(s).getTime()`), or `None` when it does not parse.
pub(crate) fn parse_iso_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    let ms = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis();
    i64::try_from(ms).ok()
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_javascript() {
        let t = UNIX_EPOCH + Duration::from_millis(1_520_787_162_060);
        assert_eq!(to_iso(t), "2018-03-11T16:52:42.060Z");
        let s = now_iso();
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with('Z'));
    }

    #[test]
    fn parses_javascript_timestamps() {
        assert_eq!(parse_iso_ms("2018-03-11T16:52:42.060Z"), Some(1_520_787_162_060));
        assert_eq!(parse_iso_ms("2018-03-11T16:52:42Z"), Some(1_520_787_162_000));
        assert_eq!(parse_iso_ms("yesterday"), None);
        assert_eq!(parse_iso_ms(""), None);
    }
}
