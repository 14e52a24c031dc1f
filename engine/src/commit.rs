//! `commit`: a container's changes as a new image in the local store.

use hoist_oci::{Digest, Reference, RepoName};
use hoist_runtime::container::{self, Container};
use hoist_runtime::rootfs::{Compression, LayerOptions, write_layer};
use hoist_storage::images::{layer_descriptor, merge_env, repo_name};
use serde_json::{Value, json};

use crate::{Host, Result, ResultExt, bail};

/// The command a container runs, as its history records it.
fn command_line(c: &Container) -> String {
    let mut parts = vec![c.config.path.clone()];
    parts.extend(c.config.args.iter().cloned());
    parts.join(" ")
}

/// The image config of a commit: the container's image config, its run options applied (as
/// docker records the container's config), one more layer and history entry.
fn committed_config(
    c: &Container,
    diff_id: &Digest,
    message: Option<&str>,
    author: Option<&str>,
) -> Value {
    let mut cfg = c.config.image_config.clone();
    if !cfg.is_object() {
        cfg = json!({});
    }
    let now = container::rfc3339(std::time::SystemTime::now());
    let o = &c.config.options;
    let conf = cfg
        .as_object_mut()
        .expect("an object")
        .entry("config")
        .or_insert_with(|| json!({}));
    if !conf.is_object() {
        *conf = json!({});
    }
    if !o.args.is_empty() {
        conf["Cmd"] = json!(o.args);
    }
    match &o.entrypoint {
        Some(e) if e.is_empty() => conf["Entrypoint"] = Value::Null,
        Some(e) => {
            conf["Entrypoint"] = json!([e]);
            if o.args.is_empty() {
                conf["Cmd"] = Value::Null;
            }
        }
        None => {}
    }
    if !o.env.is_empty()
        && let Some(conf) = conf.as_object_mut()
    {
        merge_env(conf, o.env.iter().cloned());
    }
    if let Some(w) = &o.workdir {
        conf["WorkingDir"] = json!(w);
    }
    if let Some(u) = &o.user {
        conf["User"] = json!(u);
    }
    cfg["created"] = json!(now);
    if let Some(a) = author {
        cfg["author"] = json!(a);
    }
    let rootfs = cfg
        .as_object_mut()
        .expect("an object")
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    if let Some(ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        ids.push(json!(diff_id.to_string()));
    } else {
        rootfs["diff_ids"] = json!([diff_id.to_string()]);
    }
    let mut h = json!({"created": now, "created_by": command_line(c)});
    if let Some(m) = message {
        h["comment"] = json!(m);
    }
    if let Some(a) = author {
        h["author"] = json!(a);
    }
    match cfg.get_mut("history").and_then(Value::as_array_mut) {
        Some(hist) => hist.push(h),
        None => cfg["history"] = json!([h]),
    }
    cfg
}

struct TmpFile(std::path::PathBuf);

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `commit`: the container's upper dir as a new layer on its image; stored (tagged when a
/// reference is given, else a dangling image of the base's repository). Returns the image id.
impl Host {
    pub async fn commit(
        &self,
        c: &Container,
        reference: Option<&Reference>,
        message: Option<&str>,
        author: Option<&str>,
    ) -> Result<Digest> {
        let store = self.images().await?;
        let base_repo = RepoName::parse(&c.config.image_repo)
            .with_ctx(|| format!("invalid repository {}", c.config.image_repo))?;
        let repo = match reference {
            Some(r) => repo_name(r)?,
            None => base_repo.clone(),
        };
        // A uniquely named spool file in the store's tmp dir, removed when done.
        let tmp = TmpFile(
            store
                .tmp_dir()
                .join(format!("commit-{}", container::new_id())),
        );
        let file =
            std::fs::File::create(&tmp.0).with_ctx(|| format!("creating {}", tmp.0.display()))?;
        let upper = c.upper();
        let info = tokio::task::spawn_blocking(move || {
            write_layer(
                &upper,
                std::io::BufWriter::new(file),
                &LayerOptions {
                    compression: Compression::Gzip,
                    source_date_epoch: None,
                    ..LayerOptions::default()
                },
            )
        })
        .await
        .ctx("writing the layer")?
        .with_ctx(|| format!("writing the layer of {}", c.name()))?;
        let cfg = committed_config(c, &info.diff_id, message, author);
        let manifest = &c.config.image_manifest;
        let manifest_type = manifest
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(hoist_oci::media_type::OCI_MANIFEST)
            .to_owned();
        let docker = manifest_type.contains("docker");
        let layer_type = if docker {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        } else {
            info.media_type
        };
        // Base blobs: linked into the target repository from the base's.
        let base_layers: Vec<Digest> = manifest
            .get("layers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.get("digest").and_then(Value::as_str))
                    .filter_map(|d| Digest::parse(d).ok())
                    .collect()
            })
            .unwrap_or_default();
        for d in &base_layers {
            if store.store().blob_stat(&repo, d).await?.is_none()
                && store
                    .store()
                    .blob_mount(&repo, &base_repo, d)
                    .await?
                    .is_none()
            {
                bail!("the base image's layer {d} is missing from the store");
            }
        }
        store
            .put_blob_file(&repo, &info.digest, &tmp.0)
            .await
            .ctx("storing the layer")?;
        let mut layers: Vec<Value> = manifest
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        layers.push(layer_descriptor(layer_type, &info.digest, info.size));
        let stored = store
            .put_image(
                &repo,
                &manifest_type,
                &cfg,
                layers,
                reference.and_then(|r| r.tag()),
            )
            .await
            .ctx("storing the image")?;
        Ok(stored.id)
    }
}
