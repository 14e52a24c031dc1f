//! Local image commands: the store under `$HOIST_HOME`.

use anyhow::{Context, Result};
use clap::Subcommand;
use hoist_oci::Reference;
use hoist_storage::images::ImageStore;

use crate::home;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Create a tag TARGET that refers to SOURCE
    Tag {
        /// The image to tag (NAME[:TAG] or NAME@DIGEST)
        source: String,
        /// The new name (NAME[:TAG])
        target: String,
    },
}

fn reference(s: &str) -> Result<Reference> {
    Reference::parse(s).with_context(|| format!("invalid image reference {s:?}"))
}

async fn open_store() -> Result<ImageStore> {
    let home = home::hoist_home()?;
    ImageStore::open(&home)
        .await
        .with_context(|| format!("opening the local store in {}", home.display()))
}

pub fn run(cmd: ImageCommand) -> Result<()> {
    home::runtime()?.block_on(async move {
        match cmd {
            ImageCommand::Tag { source, target } => {
                let (src, dst) = (reference(&source)?, reference(&target)?);
                let store = open_store().await?;
                store
                    .tag_reference(&src, &dst)
                    .await
                    .with_context(|| format!("tagging {source} as {target}"))?;
                Ok(())
            }
        }
    })
}
