//! The unpacked layers under `$HOIST_HOME/layers` that nothing references any more, removed
//! after `rmi`, `image prune` and `builder prune` free what referenced them.
//!
//! A layer stays while an image in the store, a container or a build cache record uses it. A
//! running build holds the layer store (its new layers are referenced only once recorded), and
//! the collection is then skipped, to run again with the next removal.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use hoist_builder::cache::BuildCache;
use hoist_oci::Digest;
use hoist_runtime::container::ContainerStore;
use hoist_runtime::layers::{LayerGc, LayerStore};
use hoist_storage::images::ImageStore;

/// Removes the unreferenced unpacked layers; `None` when a build is running.
pub async fn collect(home: &Path, images: &ImageStore) -> Result<Option<LayerGc>> {
    let layers = LayerStore::open(home).context("opening the layer store")?;
    let mut keep: HashSet<Digest> = images
        .diff_ids()
        .await
        .context("listing the layers of the images")?;
    for c in ContainerStore::open(home)?
        .list()
        .context("listing containers")?
    {
        keep.extend(hoist_storage::images::config_diff_ids(
            &c.config.image_config,
        ));
    }
    let builder = home.join("builder");
    if builder.exists() {
        let cache = BuildCache::open(&builder)
            .with_context(|| format!("opening the build cache in {}", builder.display()))?;
        keep.extend(
            hoist_builder::snapshot::cached_diff_ids(&cache)
                .context("listing the build cache's layers")?,
        );
    }
    layers
        .gc(&keep)
        .context("removing unreferenced unpacked layers")
}
