//! The local image use cases: names resolved to images, `rmi` with docker's in-use rule,
//! `image prune`, `save`, `load`, `import`, `history` and image `inspect`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use hoist_oci::{Digest, Reference};
use hoist_storage::images::archive::Format;
use hoist_storage::images::{
    HistoryEntry, ImageInspect, ImageStore, ImageSummary, Platform, Removed, familiar_repo,
    parse_change, parse_rfc3339, repo_name,
};
use serde_json::{Map, Value, json};

use crate::{EngineError, Host, Result, ResultExt, bail, sizes};

/// A reference given on the command line.
pub fn parse_reference(s: &str) -> Result<Reference> {
    Reference::parse(s).with_ctx(|| format!("invalid image reference {s:?}"))
}

/// A reference that names exactly this row's image.
pub fn row_reference(r: &ImageSummary) -> String {
    match &r.tag {
        Some(t) => format!("{}:{t}", r.repository),
        None => format!("{}@{}", r.repository, r.digest),
    }
}

/// `REPOSITORY[:TAG]` of `images`: the familiar repository, and the tag only when one was given.
pub fn repo_filter(s: &str) -> Result<(String, Option<String>)> {
    let r = parse_reference(s)?;
    let repo = repo_name(&r).with_ctx(|| format!("invalid image reference {s:?}"))?;
    let last = s.rsplit('/').next().unwrap_or(s);
    let tag = if last.contains(':') && !s.contains('@') {
        r.tag().map(ToString::to_string)
    } else {
        None
    };
    Ok((familiar_repo(repo.as_str()), tag))
}

/// The creation time of the row `name` names (an id prefix of 4 or more, `REPO:TAG`, or `REPO`
/// for its `latest`), for `--filter before=` and `since=`.
pub fn created_of(rows: &[ImageSummary], name: &str) -> Result<i64> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    let row = rows
        .iter()
        .find(|r| {
            r.id.hex().starts_with(hex) && hex.len() >= 4
                || r.tag
                    .as_ref()
                    .is_some_and(|t| format!("{}:{t}", r.repository) == *name)
                || (r.repository == *name && r.tag.as_deref() == Some("latest"))
        })
        .ok_or_else(|| EngineError::Invalid(format!("no such image: {name}")))?;
    Ok(row.created_unix.unwrap_or(0))
}

/// Manifest (or index) digest to image id, for every image in the store.
async fn image_ids(store: &ImageStore) -> Result<HashMap<Digest, Digest>> {
    Ok(store
        .list()
        .await
        .ctx("listing images")?
        .into_iter()
        .map(|r| (r.digest, r.id))
        .collect())
}

/// What `rmi` removed: the store's lines, and the image ids of the manifests it deleted (read
/// before the removal).
#[derive(Debug)]
pub struct RemovedImage {
    pub removed: Vec<Removed>,
    /// Manifest (or index) digest to image id.
    pub ids: HashMap<Digest, Digest>,
}

/// What `image prune` removed and freed.
#[derive(Debug)]
pub struct PruneReport {
    pub removed: Vec<Removed>,
    /// Manifest (or index) digest to image id, read before the prune.
    pub ids: HashMap<Digest, Digest>,
    /// The bytes of the blobs no image references any more and of the unpacked layers freed.
    pub reclaimed: u64,
}

/// An image's history, newest first, with each entry's unpacked size.
#[derive(Debug)]
pub struct History {
    pub id: Digest,
    pub entries: Vec<HistoryRow>,
}

#[derive(Debug)]
pub struct HistoryRow {
    pub entry: HistoryEntry,
    /// The entry's `created`, in Unix seconds.
    pub created: Option<i64>,
    pub size: u64,
}

/// The images `load` stored, with the errors of measuring their sizes (not fatal).
#[derive(Debug)]
pub struct Loaded {
    pub images: Vec<Reference>,
    pub unmeasured: Vec<EngineError>,
}

/// docker's rule: the last name of an image a container uses goes only by force; with several
/// tags, one goes (unless the image is named by id).
fn in_use_conflict(name: &str, id: &Digest, tags: usize, user: &str) -> Option<String> {
    let by_id = name.trim_start_matches("sha256:").len() >= 12
        && id.hex().starts_with(name.trim_start_matches("sha256:"));
    if tags > 1 && !by_id {
        return None;
    }
    Some(format!(
        "conflict: unable to remove {name} (must force) - container {} is using its referenced image {}",
        &user[..12],
        &id.hex()[..12]
    ))
}

impl Host {
    /// Resolves `name` (a reference, or an image id or unique prefix of one) to a reference.
    pub async fn image_reference(&self, name: &str) -> Result<Reference> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let looks_like_id = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if looks_like_id {
            let rows = self.images().await?.list().await.ctx("listing images")?;
            let ids: BTreeSet<_> = rows
                .iter()
                .filter(|r| r.id.hex().starts_with(hex))
                .map(|r| r.id.clone())
                .collect();
            if ids.len() > 1 {
                bail!("image id prefix {hex} is ambiguous");
            }
            if let Some(row) = rows.iter().find(|r| ids.contains(&r.id)) {
                return parse_reference(&row_reference(row));
            }
        }
        parse_reference(name).with_ctx(|| format!("no such image: {name}"))
    }

    /// Refuses (unless forced) to remove the last name of an image a container uses, as docker
    /// does.
    async fn check_not_in_use(&self, name: &str) -> Result<()> {
        let Ok(r) = self.image_reference(name).await else {
            return Ok(());
        };
        let store = self.images().await?;
        let Ok(id) = store
            .image(&r, &Platform::host())
            .await
            .and_then(|i| i.id())
        else {
            return Ok(());
        };
        let users = self.containers_using(&id)?;
        let Some(user) = users.first() else {
            return Ok(());
        };
        let rows = store.list().await.ctx("listing images")?;
        let tags = rows
            .iter()
            .filter(|r| r.id == id && r.tag.is_some())
            .count();
        match in_use_conflict(name, &id, tags, user) {
            Some(m) => Err(EngineError::Invalid(m)),
            None => Ok(()),
        }
    }

    /// `rmi NAME`: the name (or the image, by id) removed. The unpacked layers it frees go with
    /// [`Host::collect_layers`], once all the names are removed.
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<RemovedImage> {
        if !force {
            self.check_not_in_use(name).await?;
        }
        let store = self.images().await?;
        let ids = image_ids(store).await?;
        let removed = store.remove(name, force).await?;
        Ok(RemovedImage { removed, ids })
    }

    /// `image prune`: the dangling images (or, with `all`, every image no container uses)
    /// removed, and the unpacked layers only they used.
    pub async fn prune_images(&self, all: bool) -> Result<PruneReport> {
        let store = self.images().await?;
        let in_use = self.images_in_use()?;
        let before = store.disk_usage(&in_use).await.ctx("measuring images")?;
        let ids = image_ids(store).await?;
        let report = store.prune(all, &in_use).await.ctx("pruning images")?;
        let after = store.disk_usage(&in_use).await.ctx("measuring images")?;
        // What no image references any more; blobs younger than the collector's grace are freed
        // from disk by a later collection. The unpacked layers only those images used go now.
        let layers = self.collect_layers().await?;
        Ok(PruneReport {
            removed: report.removed,
            ids,
            reclaimed: before.size.saturating_sub(after.size)
                + layers.as_ref().map_or(0, |l| l.bytes),
        })
    }

    /// `save -o PATH`: unknown images fail before the file is touched; a file this call created
    /// is removed when the save fails (never one that was there, such as `/dev/null`).
    pub async fn save_to_file(
        &self,
        refs: &[Reference],
        path: &Path,
        format: Format,
        what: &str,
    ) -> Result<()> {
        let store = self.images().await?;
        for r in refs {
            store
                .resolve(r)
                .await
                .with_ctx(|| format!("saving {}", r.familiar()))?;
        }
        let existed = std::fs::symlink_metadata(path).is_ok();
        let file =
            std::fs::File::create(path).with_ctx(|| format!("creating {}", path.display()))?;
        let saved = match store
            .save(
                refs,
                std::io::BufWriter::new(file),
                format,
                &Platform::host(),
            )
            .await
            .with_ctx(|| format!("saving {what}"))
        {
            Ok(w) => w
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_ctx(|| format!("writing {}", path.display())),
            Err(e) => Err(e),
        };
        if saved.is_err() && !existed {
            let _ = std::fs::remove_file(path);
        }
        saved
    }

    /// `save` into `w`; returns the writer, unflushed.
    pub async fn save_to<W: std::io::Write + Send + 'static>(
        &self,
        refs: &[Reference],
        w: W,
        format: Format,
        what: &str,
    ) -> Result<W> {
        self.images()
            .await?
            .save(refs, w, format, &Platform::host())
            .await
            .with_ctx(|| format!("saving {what}"))
    }

    /// `load` from the file `input` (stdin without one), the sizes `images` shows measured
    /// after, while the layers are in the page cache.
    pub async fn load(&self, input: Option<&Path>) -> Result<Loaded> {
        let store = self.images().await?;
        let images = match input {
            Some(path) => {
                let file =
                    std::fs::File::open(path).with_ctx(|| format!("opening {}", path.display()))?;
                store
                    .load(std::io::BufReader::new(file))
                    .await
                    .with_ctx(|| format!("loading {}", path.display()))?
            }
            None => store
                .load(std::io::stdin())
                .await
                .ctx("loading from stdin")?,
        };
        let mut unmeasured = Vec::new();
        for r in &images {
            if let Err(e) = sizes::image_size(store, r, &Platform::host()).await {
                unmeasured.push(e);
            }
        }
        Ok(Loaded { images, unmeasured })
    }

    /// `import TARBALL REF` (`-` for stdin): the image id of the filesystem image made.
    pub async fn import(
        &self,
        tarball: &str,
        reference: &Reference,
        changes: &[String],
        name: &str,
    ) -> Result<Digest> {
        for c in changes {
            parse_change(c).ctx("parsing --change")?;
        }
        let store = self.images().await?;
        let what = format!("importing {tarball} as {name}");
        let imported = if tarball == "-" {
            store.import(std::io::stdin(), reference, changes).await
        } else {
            let file = std::fs::File::open(tarball).with_ctx(|| format!("opening {tarball}"))?;
            store
                .import(std::io::BufReader::new(file), reference, changes)
                .await
        }
        .ctx(what)?;
        Ok(imported.id)
    }

    /// `history NAME`: the image id and its entries, with their unpacked layer sizes.
    pub async fn history(&self, name: &str) -> Result<History> {
        let store = self.images().await?;
        let platform = Platform::host();
        let r = self.image_reference(name).await?;
        let what = || format!("reading the history of {name}");
        let id = store
            .image(&r, &platform)
            .await
            .and_then(|i| i.id())
            .with_ctx(what)?;
        let entries = store.history(&r, &platform).await.with_ctx(what)?;
        let repo = store.image(&r, &platform).await.with_ctx(what)?.repo;
        let mut rows = Vec::with_capacity(entries.len());
        for entry in entries {
            let size = match &entry.layer {
                Some(l) => sizes::layer_size(store, &repo, l).await?,
                None => 0,
            };
            let created = entry.created.as_deref().and_then(parse_rfc3339);
            rows.push(HistoryRow {
                entry,
                created,
                size,
            });
        }
        Ok(History { id, entries: rows })
    }

    /// Image `inspect NAME`: docker's JSON.
    pub async fn inspect_image(&self, name: &str) -> Result<Value> {
        let store = self.images().await?;
        let platform = Platform::host();
        let r = self.image_reference(name).await?;
        let i = store
            .inspect(&r, &platform)
            .await
            .with_ctx(|| format!("inspecting {name}"))?;
        let size = sizes::image_size(store, &r, &platform).await?;
        Ok(inspect_json(&i, size))
    }

    /// The unpacked size of each image id of `rows`.
    pub async fn image_sizes(&self, rows: &[ImageSummary]) -> Result<HashMap<Digest, u64>> {
        let store = self.images().await?;
        let mut out = HashMap::new();
        for r in rows {
            if !out.contains_key(&r.id) {
                let size = sizes::image_size(
                    store,
                    &parse_reference(&row_reference(r))?,
                    &Platform::host(),
                )
                .await?;
                out.insert(r.id.clone(), size);
            }
        }
        Ok(out)
    }

    /// The labels of the row's image config.
    pub async fn image_labels(&self, r: &ImageSummary) -> Result<Option<Map<String, Value>>> {
        let name = match &r.tag {
            Some(t) => format!("{}:{t}", r.repository),
            None => r.repository.clone(),
        };
        let i = self
            .images()
            .await?
            .inspect(&parse_reference(&row_reference(r))?, &Platform::host())
            .await
            .with_ctx(|| format!("inspecting {name}"))?;
        Ok(i.config
            .pointer("/config/Labels")
            .and_then(Value::as_object)
            .cloned())
    }
}

/// Docker's `inspect` keys, plus hoist's manifest view (`ManifestDigest`, `Layers`, ...).
pub fn inspect_json(i: &ImageInspect, size: u64) -> Value {
    let cfg = &i.config;
    let mut v = json!({
        "Id": i.id.to_string(),
        "RepoTags": i.repo_tags,
        "RepoDigests": i.repo_digests,
        "Parent": "",
        "Comment": cfg.get("comment").cloned().unwrap_or(Value::from("")),
        "Created": i.created,
        "Author": cfg.get("author").cloned().unwrap_or(Value::from("")),
        "Config": cfg.get("config").cloned().unwrap_or(Value::Null),
        "DockerVersion": cfg.get("docker_version").cloned().unwrap_or(Value::from("")),
        "Architecture": i.architecture,
        "Os": i.os,
        "Size": size,
        "GraphDriver": {"Name": "overlay2", "Data": Value::Null},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "RootFS": {
            "Type": cfg.pointer("/rootfs/type").cloned().unwrap_or(Value::from("layers")),
            "Layers": cfg.pointer("/rootfs/diff_ids").cloned().unwrap_or(json!([])),
        },
        "ManifestDigest": i.manifest_digest.to_string(),
        "IndexDigest": i.index_digest.as_ref().map(ToString::to_string),
        "MediaType": i.media_type,
        "Layers": i.layers,
    });
    // docker leaves the variant out when there is none.
    if let Some(variant) = &i.variant {
        v["Variant"] = json!(variant);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn row(repo: &str, tag: Option<&str>, id: char, created: i64) -> ImageSummary {
        ImageSummary {
            repository: repo.to_owned(),
            tag: tag.map(str::to_owned),
            id: digest(id),
            digest: digest('f'),
            created: None,
            created_unix: Some(created),
            size: 0,
        }
    }

    #[test]
    fn the_last_name_of_an_image_in_use_is_a_conflict() {
        let id = digest('a');
        let user = "c".repeat(64);
        let m = in_use_conflict("alpine", &id, 1, &user).unwrap();
        assert_eq!(
            m,
            format!(
                "conflict: unable to remove alpine (must force) - container cccccccccccc is using its referenced image aaaaaaaaaaaa"
            )
        );
        // One of several tags goes; the image by id does not.
        assert_eq!(in_use_conflict("alpine", &id, 2, &user), None);
        assert!(in_use_conflict("aaaaaaaaaaaa", &id, 2, &user).is_some());
        assert!(in_use_conflict("sha256:aaaaaaaaaaaa", &id, 2, &user).is_some());
        // A short id prefix is a name like any other.
        assert_eq!(in_use_conflict("aaaa", &id, 2, &user), None);
    }

    #[test]
    fn created_of_finds_ids_tags_and_latest() {
        let rows = [
            row("alpine", Some("latest"), 'a', 10),
            row("busybox", Some("1"), 'b', 20),
        ];
        assert_eq!(created_of(&rows, "aaaa").unwrap(), 10);
        assert_eq!(created_of(&rows, "sha256:bbbb").unwrap(), 20);
        assert_eq!(created_of(&rows, "busybox:1").unwrap(), 20);
        assert_eq!(created_of(&rows, "alpine").unwrap(), 10);
        assert_eq!(
            created_of(&rows, "aaa").unwrap_err().to_string(),
            "no such image: aaa"
        );
        assert!(created_of(&rows, "busybox").is_err());
    }

    #[test]
    fn repo_filter_keeps_a_tag_only_when_given() {
        assert_eq!(repo_filter("alpine").unwrap(), ("alpine".to_owned(), None));
        assert_eq!(
            repo_filter("docker.io/library/alpine:3").unwrap(),
            ("alpine".to_owned(), Some("3".to_owned()))
        );
        assert_eq!(
            repo_filter("localhost:5000/app").unwrap(),
            ("localhost:5000/app".to_owned(), None)
        );
    }

    #[test]
    fn row_reference_names_untagged_rows_by_digest() {
        assert_eq!(row_reference(&row("alpine", Some("3"), 'a', 0)), "alpine:3");
        assert_eq!(
            row_reference(&row("alpine", None, 'a', 0)),
            format!("alpine@sha256:{}", "f".repeat(64))
        );
    }
}
