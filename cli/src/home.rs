//! Where the local store lives ([`hoist_engine::home`]) and the async runtime of a command.

use anyhow::{Context, Result};

/// Resolves the hoist home directory from the environment.
pub fn hoist_home() -> Result<std::path::PathBuf> {
    Ok(hoist_engine::home::hoist_home()?)
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
