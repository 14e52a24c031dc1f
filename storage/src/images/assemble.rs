//! Image assembly, in one place for every path that makes an image (build, commit, import): the
//! config stored as a blob, then a manifest naming it and layers the repository already has.

use bytes::Bytes;
use hoist_oci::{Digest, RepoName, Tag, media_type};
use serde_json::{Value, json};

use super::{ImageStore, Result};

/// What [`ImageStore::put_image`] stored.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The manifest's digest.
    pub manifest: Digest,
    /// The image id: the config's digest.
    pub id: Digest,
}

/// A layer descriptor of a manifest.
pub fn layer_descriptor(media_type: &str, digest: &Digest, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest.as_str(), "size": size})
}

impl ImageStore {
    /// Stores `config` and a manifest of `manifest_type` (OCI's, or docker's schema 2 with
    /// docker's config type) naming it and `layers` (descriptors of blobs `repo` has), tagged
    /// `tag` when given.
    pub async fn put_image(
        &self,
        repo: &RepoName,
        manifest_type: &str,
        config: &Value,
        layers: Vec<Value>,
        tag: Option<&Tag>,
    ) -> Result<StoredImage> {
        let config_bytes = Bytes::from(serde_json::to_vec(config).expect("JSON values serialise"));
        let id = Digest::sha256_of(&config_bytes);
        let config_size = config_bytes.len();
        self.put_blob(
            repo,
            &id,
            futures::stream::iter([Ok::<_, std::io::Error>(config_bytes)]),
        )
        .await?;
        let config_type = if manifest_type == media_type::DOCKER_MANIFEST {
            media_type::DOCKER_CONFIG
        } else {
            media_type::OCI_CONFIG
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": id.as_str(), "size": config_size},
            "layers": layers,
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("JSON values serialise"));
        let manifest = self.put_manifest(repo, manifest_type, bytes, tag).await?;
        Ok(StoredImage { manifest, id })
    }
}
