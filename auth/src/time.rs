//! Unix time now, and RFC 3339 formatting (UTC) of the times auth records.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-11-22T05:30:00Z` for a unix time in seconds.
pub fn rfc3339(secs: u64) -> String {
    hoist_oci::time::rfc3339(secs as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_325_400), "2026-11-22T05:30:00Z");
    }
}
