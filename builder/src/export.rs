//! Exporters: a solved [`Snapshot`] into the local image store (manifest, config, tags), and from
//! there to an OCI layout or docker-archive tar, or its filesystem into a local directory.
//!
//! Layers produced by the build are in the build cache; exporting links them into the image
//! store (a blob the store already has is not read again, so a rebuild with every step cached
//! writes only the config and manifest, and those only when they changed).

use std::path::Path;
use std::sync::Arc;

use hoist_oci::{Digest, Reference, RepoName, media_type};
use hoist_storage::images::{ImageStore, layer_descriptor, repo_name};
use serde_json::{Value, json};

use crate::build::{BuildError, BuildServices, Result};
use crate::layer::layer_dirs;
use crate::snapshot::Snapshot;

/// What was stored.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The image manifest's digest.
    pub manifest: Digest,
    /// The image id (the config's digest).
    pub id: Digest,
    pub repo: RepoName,
}

/// The repository an untagged build is stored in (as a dangling image).
pub const UNTAGGED_REPO: &str = "hoist-build";

/// The final image config: `rootfs.diff_ids` from the layers, `created` from the newest history
/// entry (so an unchanged build gives the same id).
pub fn image_config(snap: &Snapshot, source_date_epoch: Option<i64>) -> Value {
    let mut config = snap.config.clone();
    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": snap.layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
    });
    let created = match source_date_epoch {
        Some(t) => json!(crate::layer::hoist_time(t)),
        None => config["history"]
            .as_array()
            .and_then(|h| h.iter().rev().find_map(|e| e.get("created").cloned()))
            .unwrap_or_else(|| json!(crate::layer::hoist_time(0))),
    };
    config["created"] = created;
    if let Some(obj) = config.as_object_mut() {
        // Fields of the base image's docker config that do not describe this image.
        obj.remove("container");
        obj.remove("container_config");
        obj.remove("docker_version");
        obj.remove("id");
        obj.remove("parent");
    }
    config
}

/// Stores the image in the local store under `tags` (all of them; none: an untagged image in
/// [`UNTAGGED_REPO`]).
pub async fn to_store(
    env: &Arc<BuildServices>,
    snap: &Snapshot,
    tags: &[Reference],
) -> Result<Exported> {
    let first_repo = match tags.first() {
        Some(t) => repo_name(t)?,
        None => RepoName::parse(&format!("docker.io/library/{UNTAGGED_REPO}"))
            .map_err(|e| BuildError::Other(e.to_string()))?,
    };
    let images = &env.images;
    let repo = &first_repo;
    // Layers.
    let mut layer_descs = Vec::with_capacity(snap.layers.len());
    for l in &snap.layers {
        if images.store().blob_stat(repo, &l.digest).await?.is_none() {
            match &l.repo {
                None => {
                    let path = env.cache.blob_path(&l.digest);
                    images.put_blob_file(repo, &l.digest, &path).await?;
                }
                Some(from) => {
                    let from =
                        RepoName::parse(from).map_err(|e| BuildError::Other(e.to_string()))?;
                    if images
                        .store()
                        .blob_mount(repo, &from, &l.digest)
                        .await?
                        .is_none()
                    {
                        return Err(BuildError::Other(format!(
                            "base layer {} is no longer in the local store (repository {from}); rebuild with --pull",
                            l.digest
                        )));
                    }
                }
            }
        }
        layer_descs.push(layer_descriptor(&l.media_type, &l.digest, l.size));
    }
    // Config.
    let config = image_config(snap, env.layer_options.source_date_epoch);
    let stored = images
        .put_image(
            repo,
            media_type::OCI_MANIFEST,
            &config,
            layer_descs,
            tags.first().and_then(|t| t.tag()),
        )
        .await?;
    let (digest, id) = (stored.manifest, stored.id);
    for t in tags.iter().skip(1) {
        images.tag(t, &digest).await?;
    }
    Ok(Exported {
        manifest: digest,
        id,
        repo: first_repo,
    })
}

/// Writes the snapshot's filesystem into `dest` (created; existing files are overwritten).
pub async fn to_local(env: &Arc<BuildServices>, snap: &Snapshot, dest: &Path) -> Result<()> {
    let dirs = layer_dirs(env, snap)
        .await
        .map_err(|e| BuildError::Other(e.to_string()))?;
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<()> {
        std::fs::create_dir_all(&dest)
            .map_err(|e| BuildError::Other(format!("creating {}: {e}", dest.display())))?;
        // Apply the layers bottom..top (whiteouts delete, opaque dirs replace), each written as
        // a plain tar and unpacked by the runtime's confined unpacker: a symlink an earlier layer
        // left in `dest` cannot redirect a later layer's files out of it.
        for d in &dirs {
            hoist_runtime::rootfs::copy_layer(d, &dest).map_err(|e| {
                BuildError::Other(format!(
                    "writing {} into {}: {e}",
                    d.display(),
                    dest.display()
                ))
            })?;
        }
        Ok(())
    })
    .await
    .map_err(|e| BuildError::Other(e.to_string()))?
}

/// `--output type=oci|docker,dest=PATH`: the stored image as a tar.
pub async fn to_archive(
    images: &ImageStore,
    reference: &Reference,
    dest: &Path,
    oci: bool,
) -> Result<()> {
    let file = std::fs::File::create(dest)
        .map_err(|e| BuildError::Other(format!("creating {}: {e}", dest.display())))?;
    let format = if oci {
        hoist_storage::images::archive::Format::OciLayout
    } else {
        hoist_storage::images::archive::Format::DockerArchive
    };
    let w = images
        .save(
            std::slice::from_ref(reference),
            std::io::BufWriter::new(file),
            format,
            &hoist_storage::images::Platform::host(),
        )
        .await?;
    w.into_inner()
        .map_err(|e| BuildError::Other(format!("writing {}: {e}", dest.display())))?
        .sync_all()
        .map_err(|e| BuildError::Other(format!("writing {}: {e}", dest.display())))?;
    Ok(())
}
