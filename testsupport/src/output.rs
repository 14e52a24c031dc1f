//! Turning a command's output into text, and small text helpers for assertions.

use std::path::Path;
use std::process::Output;

/// A command's stdout then its stderr, as text (for assertion messages and searching both).
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The rest of the line of `/proc/self/status`-like text that starts with `key`, trimmed.
pub fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

/// A path as `&str`, for argument lists.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
