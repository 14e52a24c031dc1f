//! Snapshots: a build's filesystem state as a stack of layers (blob digest, diff_id, where the
//! blob is) plus its image config.
//!
//! The unpacked form of every layer lives in the runtime's content-addressed layer store
//! (`$HOIST_HOME/layers`, [`hoist_runtime::layers::LayerStore`]), shared with `hoist run`: base
//! image layers and cached layers are unpacked there from their verified blobs, a layer a build
//! produced is its upper dir, adopted into the store. [`crate::tree::View`] reads through such
//! dirs.

use hoist_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::cache::CacheValue;

/// One layer of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The blob's digest (compressed).
    pub digest: Digest,
    /// The uncompressed tar's digest.
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
    /// The image store repository holding the blob (a base image's layer); `None` when the blob
    /// is in the build cache.
    pub repo: Option<String>,
}

/// A filesystem (layers, bottom..top) and the image config that goes with it (the whole OCI
/// image config JSON: `config`, `history`, `os`, `architecture`...; `rootfs` is filled in when
/// the image is exported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub layers: Vec<LayerRef>,
    pub config: serde_json::Value,
}

impl Snapshot {
    /// No layers, an empty config: what `COPY --link` makes its layer on.
    pub fn empty() -> Snapshot {
        Snapshot {
            layers: Vec::new(),
            config: serde_json::json!({}),
        }
    }
}

/// The diff_ids of the layers the build cache's records use: their unpacked trees must stay in
/// the layer store while the records do.
pub fn cached_diff_ids(
    cache: &crate::cache::BuildCache,
) -> crate::cache::Result<std::collections::HashSet<Digest>> {
    Ok(cache
        .values()?
        .iter()
        .filter_map(|v| serde_json::from_slice::<Snapshot>(v).ok())
        .flat_map(|s| s.layers.into_iter().map(|l| l.diff_id))
        .collect())
}

impl CacheValue for Snapshot {
    fn blobs(&self) -> Vec<Digest> {
        self.layers
            .iter()
            .filter(|l| l.repo.is_none())
            .map(|l| l.digest.clone())
            .collect()
    }
}
