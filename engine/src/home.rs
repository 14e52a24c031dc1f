//! Where the local store lives: `$HOIST_HOME`, else `/var/lib/hoist` for root and
//! `~/.local/share/hoist` (or `$XDG_DATA_HOME/hoist`) for everyone else.

use std::path::PathBuf;

use crate::{EngineError, Result};

/// Resolves the hoist home directory from the environment.
pub fn hoist_home() -> Result<PathBuf> {
    home_from(|k| std::env::var_os(k), is_root())
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective user.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn home_from(env: impl Fn(&str) -> Option<std::ffi::OsString>, root: bool) -> Result<PathBuf> {
    if let Some(h) = env("HOIST_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    if root {
        return Ok(PathBuf::from("/var/lib/hoist"));
    }
    if let Some(xdg) = env("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(xdg).join("hoist"));
    }
    let home = env("HOME").ok_or_else(|| {
        EngineError::Invalid(
            "neither HOIST_HOME nor HOME is set: cannot place the local store".into(),
        )
    })?;
    Ok(PathBuf::from(home).join(".local/share/hoist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_resolution() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).into())
            }
        };
        assert_eq!(
            home_from(env(&[("HOIST_HOME", "/x")]), true).unwrap(),
            PathBuf::from("/x")
        );
        assert_eq!(
            home_from(env(&[]), true).unwrap(),
            PathBuf::from("/var/lib/hoist")
        );
        assert_eq!(
            home_from(env(&[("HOME", "/home/a")]), false).unwrap(),
            PathBuf::from("/home/a/.local/share/hoist")
        );
        assert_eq!(
            home_from(env(&[("HOME", "/home/a"), ("XDG_DATA_HOME", "/d")]), false).unwrap(),
            PathBuf::from("/d/hoist")
        );
        assert!(home_from(env(&[]), false).is_err());
    }
}
