//! Docker's output shapes for the image commands: sizes (`5.37MB`), ages (`2 hours ago`) and
//! tab-aligned tables.

use std::fmt::Write as _;

/// `go-units`' `HumanSizeWithPrecision`: decimal units, `precision` significant digits.
pub fn human_size(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", format_g(size, precision), UNITS[i])
}

/// Go's `%.*g` for values in `[0, 1000)`.
pub(crate) fn format_g(v: f64, precision: usize) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let exp = v.log10().floor() as i32;
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    let int_digits = s.split('.').next().map_or(0, str::len);
    if int_digits > precision {
        // Rounding carried past the precision (999.7 with 3 digits): Go writes `1e+03`.
        return format!("1e+{:02}", int_digits - 1);
    }
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// `go-units`' `HumanDuration` plus " ago", as `docker images` prints CREATED.
pub fn human_ago(created_unix: Option<i64>, now_unix: i64) -> String {
    let Some(created) = created_unix else {
        return "N/A".to_owned();
    };
    format!(
        "{} ago",
        hoist_oci::time::human_duration(now_unix - created)
    )
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The short image id: the first 12 hex digits.
pub fn short_id(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// A table as docker's `tabwriter` (min width 10, padding 3) lays it out.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(cols) {
            if i + 1 == cols {
                line.push_str(cell);
            } else {
                let width = (widths[i] + 3).max(10);
                let _ = write!(line, "{cell:<width$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker() {
        assert_eq!(human_size(0, 3), "0B");
        assert_eq!(human_size(999, 3), "999B");
        assert_eq!(human_size(5_370_000, 3), "5.37MB");
        assert_eq!(human_size(5_000_000, 3), "5MB");
        assert_eq!(human_size(1_234_567, 4), "1.235MB");
        assert_eq!(human_size(123_456, 3), "123kB");
        assert_eq!(human_size(999_700, 3), "1e+03kB");
        assert_eq!(human_size(2_500_000_000, 3), "2.5GB");
    }

    #[test]
    fn ages_as_docker() {
        let now = 1_000_000;
        assert_eq!(human_ago(None, now), "N/A");
        assert_eq!(human_ago(Some(now), now), "Less than a second ago");
        assert_eq!(human_ago(Some(now - 1), now), "1 second ago");
        assert_eq!(human_ago(Some(now - 30), now), "30 seconds ago");
        assert_eq!(human_ago(Some(now - 90), now), "About a minute ago");
        assert_eq!(human_ago(Some(now - 600), now), "10 minutes ago");
        assert_eq!(human_ago(Some(now - 3600), now), "About an hour ago");
        assert_eq!(human_ago(Some(now - 7200), now), "2 hours ago");
        assert_eq!(human_ago(Some(now - 3 * 86_400), now), "3 days ago");
        assert_eq!(human_ago(Some(now - 21 * 86_400), now), "3 weeks ago");
        assert_eq!(human_ago(Some(now - 900 * 86_400), now), "2 years ago");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["REPOSITORY", "TAG", "SIZE"],
            &[vec!["busybox".into(), "latest".into(), "1MB".into()]],
        );
        assert_eq!(
            t,
            "REPOSITORY   TAG       SIZE\nbusybox      latest    1MB\n"
        );
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }
}
