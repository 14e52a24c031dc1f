//! The unpacked layers under `$HOIST_HOME/layers` that nothing references any more, removed
//! after `rmi`, `image prune` and `builder prune` free what referenced them.
//!
//! A layer stays while an image in the store, a container or a build cache record uses it. A
//! running build holds the layer store (its new layers are referenced only once recorded), and
//! the collection is then skipped, to run again with the next removal.

use std::collections::HashSet;

use hoist_oci::Digest;
use hoist_runtime::layers::LayerGc;

use crate::{Host, Result, ResultExt};

impl Host {
    /// Removes the unreferenced unpacked layers; `None` when a build is running.
    pub async fn collect_layers(&self) -> Result<Option<LayerGc>> {
        let mut keep: HashSet<Digest> = self
            .images()
            .await?
            .diff_ids()
            .await
            .ctx("listing the layers of the images")?;
        for c in self.containers()?.list().ctx("listing containers")? {
            keep.extend(hoist_storage::images::config_diff_ids(
                &c.config.image_config,
            ));
        }
        if self.builder_dir().exists() {
            let cache = self.build_cache()?;
            keep.extend(
                hoist_builder::snapshot::cached_diff_ids(&cache)
                    .ctx("listing the build cache's layers")?,
            );
        }
        self.layers()?
            .gc(&keep)
            .ctx("removing unreferenced unpacked layers")
    }
}
