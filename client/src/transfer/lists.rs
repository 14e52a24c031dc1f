//! What `hoist manifest` needs of a registry: a manifest as it is (bytes, media type, digest), an
//! image's config (its platform), a manifest put as given, and a manifest copied from another
//! repository of the same registry (its blobs mounted, then the manifest put by digest), as
//! `docker manifest push` copies the images a list names into the list's repository.

use bytes::Bytes;
use futures::StreamExt;
use hoist_oci::{Digest, media_type};

use super::TransferError;
use super::auth::Scope;
use super::registry::{Mount, RegistryClient};

/// The largest image config read for its platform.
const MAX_CONFIG: usize = 4 << 20;

impl RegistryClient {
    /// A manifest's exact bytes, media type and digest (`reference`: a tag or a digest, which
    /// the bytes are checked against).
    pub async fn fetch_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Bytes, String, Digest), TransferError> {
        let pinned = Digest::parse(reference).ok();
        self.get_manifest(repo, reference, pinned.as_ref()).await
    }

    /// A small blob (an image config) whole, checked against its digest.
    pub async fn fetch_config(&self, repo: &str, digest: &Digest) -> Result<Bytes, TransferError> {
        let (mut stream, _) = self.open_blob(repo, digest, 0).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| TransferError::Protocol(format!("{digest}: {e}")))?;
            if out.len() + chunk.len() > MAX_CONFIG {
                return Err(TransferError::Protocol(format!(
                    "{digest}: an image config larger than {MAX_CONFIG} bytes"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        let actual = Digest::of(digest.algorithm(), &out);
        if &actual != digest {
            return Err(TransferError::Verify {
                digest: digest.clone(),
                detail: format!("the config from {repo} has digest {actual}"),
            });
        }
        Ok(Bytes::from(out))
    }

    /// Makes the image manifest `bytes` (of `from`) present in `to`: each blob it names is
    /// mounted from `from` unless `to` has it, then the manifest is put by its digest. A blob
    /// the registry will not mount is an error naming it.
    pub async fn copy_manifest(
        &self,
        from: &str,
        to: &str,
        digest: &Digest,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), TransferError> {
        if from != to {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| TransferError::Protocol(format!("manifest {digest}: {e}")))?;
            if media_type::is_index(media_type) {
                return Err(TransferError::Protocol(format!(
                    "{digest} in {from} is a manifest list, not an image"
                )));
            }
            let mut blobs = Vec::new();
            for d in std::iter::once(&v["config"]).chain(
                v["layers"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            ) {
                if let Some(b) = d["digest"].as_str().and_then(|s| Digest::parse(s).ok()) {
                    blobs.push(b);
                }
            }
            for b in blobs {
                if self.blob_exists(to, &b, &Scope::push(to)).await? {
                    continue;
                }
                match self.mount(to, from, &b).await? {
                    Mount::Mounted => {}
                    Mount::Session(_) | Mount::Refused => {
                        return Err(TransferError::Protocol(format!(
                            "blob {b} of {from}@{digest}: the registry would not mount it into {to}"
                        )));
                    }
                }
            }
        }
        self.put_manifest(to, digest.as_str(), media_type, bytes)
            .await
    }
}
