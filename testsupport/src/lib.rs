//! What hoist's integration tests and benches share, so each test file does not carry its own
//! copy. A dev-dependency only: no shipped crate may depend on it (tidy checks).

use std::process::Output;

/// A command's stdout then its stderr, as text (for assertion messages and searching both).
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
