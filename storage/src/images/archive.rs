//! Image archives: `save` and `load`.
//!
//! **docker-archive** (what `docker save` writes and `docker load` / `skopeo copy
//! docker-archive:` read): `manifest.json` (`[{Config, RepoTags, Layers}]`), the config as
//! `<config hex>.json` and each layer as an *uncompressed* tar at `<diff id hex>/layer.tar`, the
//! layout docker wrote up to version 24 and every docker since 1.10, skopeo and podman read.
//! Stored layers are decompressed while written; each one's digest is checked against the
//! config's `rootfs.diff_ids` first (a gzip layer is read twice: once to learn its size and check
//! it, once to write it, since a tar header carries the size before the bytes).
//!
//! **OCI image layout** (`--format oci`): `oci-layout`, `index.json` and `blobs/sha256/<hex>`,
//! every blob exactly as stored, so digests are preserved. Each `index.json` entry carries the tag
//! in `org.opencontainers.image.ref.name` (what `skopeo copy oci-archive:FILE:TAG` matches) and
//! the full name in `io.containerd.image.name` (what docker 25 writes and reads).
//!
//! `load` reads either (plain or gzipped; a tar that is both, as docker 25 writes, is read as an
//! OCI layout, which keeps its digests). The input streams once: every entry is spooled to a file
//! in the store's spool directory while its sha256 is computed, because `manifest.json` or
//! `index.json` may come last. Then every blob is verified: OCI blobs against their names, a
//! docker-archive config against its file name and each layer against the config's diff ids.
//! A docker-archive layer is stored gzipped (deterministically: level 6, zero mtime), not as the
//! plain tar, so a later `push` sends compressed layers; the loaded image's manifest is an OCI
//! manifest hoist writes, so its digest differs from the one the image had in a registry (as
//! with `docker load`). An OCI layout entry with neither a full name nor a tag loads as
//! `localhost/loaded:<first 12 hex of its digest>`; one with only a tag (`latest`) as
//! `localhost/loaded:<tag>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufWriter, Read, Write};

use bytes::Bytes;
use hoist_oci::spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use hoist_oci::{Digest, HashingWriter, Reference, RepoName, Tag, VerifyingReader, media_type};
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use super::io::{decompressed, gzip};
use super::{
    Image, ImageError, ImageStore, MAX_CONFIG_SIZE, Platform, Result, descriptor_digest,
    familiar_repo, parse_json, repo_name,
};
use crate::content;

/// The annotation OCI layouts name images with.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation docker 25 and containerd put the full image name in.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The directory of an OCI image layout that holds the blobs (an archive path, not a storage key).
pub const LAYOUT_BLOBS: &str = "blobs";

/// Where an OCI image layout keeps the blob `digest`: `blobs/<algorithm>/<hex>`.
pub fn layout_blob_path(digest: &Digest) -> String {
    format!("{LAYOUT_BLOBS}/{}/{}", digest.algorithm(), digest.hex())
}

/// Which archive `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DockerArchive,
    OciLayout,
}

fn archive_err(msg: impl Into<String>) -> ImageError {
    ImageError::Archive(msg.into())
}

fn io_err(context: &str) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |e| ImageError::io(context, e)
}

fn join_task<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| ImageError::io("archive task", io::Error::other(e)))?
}

/// Appends a regular file entry of `size` bytes read from `data`.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    tar.append_data(&mut h, path, data)
        .map_err(io_err("writing the archive"))
}

// ----- save -----

struct DockerLayer {
    blob: Digest,
    media_type: String,
    size: u64,
    diff_id: Digest,
}

/// A blob of an OCI layout being saved: manifest bytes (checked when read), or a blob to stream.
enum OciBlob {
    Manifest(Bytes),
    Blob(RepoName, u64),
}

struct DockerImage {
    repo: RepoName,
    tags: Vec<String>,
    config: (Digest, Bytes),
    layers: Vec<DockerLayer>,
}

impl ImageStore {
    /// Writes the images `refs` name into `writer` as a tar of `format`, streamed. For an index,
    /// a docker-archive gets the `platform` image; an OCI layout gets the whole index (every
    /// child must be stored locally). Returns the writer.
    pub async fn save<W: Write + Send + 'static>(
        &self,
        refs: &[Reference],
        writer: W,
        format: Format,
        platform: &Platform,
    ) -> Result<W> {
        match format {
            Format::DockerArchive => self.save_docker(refs, writer, platform).await,
            Format::OciLayout => self.save_oci(refs, writer).await,
        }
    }

    async fn save_docker<W: Write + Send + 'static>(
        &self,
        refs: &[Reference],
        writer: W,
        platform: &Platform,
    ) -> Result<W> {
        let mut images: Vec<DockerImage> = Vec::new();
        let mut by_id: HashMap<Digest, usize> = HashMap::new();
        for reference in refs {
            let image = self.image(reference, platform).await?;
            let id = image.id()?;
            let tag = reference
                .tag()
                .filter(|_| reference.digest().is_none())
                .map(|t| format!("{}:{t}", familiar_repo(image.repo.as_str())));
            if let Some(&i) = by_id.get(&id) {
                images[i].tags.extend(tag);
                continue;
            }
            let (config, bytes) = self.config(&image).await?;
            let layers = docker_layers(&image, &config)?;
            by_id.insert(id.clone(), images.len());
            images.push(DockerImage {
                repo: image.repo.clone(),
                tags: tag.into_iter().collect(),
                config: (id, bytes),
                layers,
            });
        }
        let store = self.store.clone();
        let handle = Handle::current();
        join_task(
            tokio::task::spawn_blocking(move || {
                let mut tar = tar::Builder::new(writer);
                let mut written = HashSet::new();
                let mut manifest = Vec::new();
                for img in &images {
                    let config_name = format!("{}.json", img.config.0.hex());
                    if written.insert(config_name.clone()) {
                        append(
                            &mut tar,
                            &config_name,
                            img.config.1.len() as u64,
                            &img.config.1[..],
                        )?;
                    }
                    let mut layer_names = Vec::new();
                    for l in &img.layers {
                        let name = format!("{}/layer.tar", l.diff_id.hex());
                        if written.insert(name.clone()) {
                            write_docker_layer(&store, &handle, &img.repo, l, &name, &mut tar)?;
                        }
                        layer_names.push(name);
                    }
                    manifest.push(json!({
                        "Config": config_name,
                        "RepoTags": img.tags,
                        "Layers": layer_names,
                    }));
                }
                let manifest = serde_json::to_vec(&manifest).expect("JSON values serialise");
                append(
                    &mut tar,
                    "manifest.json",
                    manifest.len() as u64,
                    &manifest[..],
                )?;
                tar.into_inner().map_err(io_err("writing the archive"))
            })
            .await,
        )
    }

    async fn save_oci<W: Write + Send + 'static>(
        &self,
        refs: &[Reference],
        writer: W,
    ) -> Result<W> {
        // Every blob to write (deduplicated, in a stable order), and the index entries.
        let mut blobs: BTreeMap<Digest, OciBlob> = BTreeMap::new();
        let mut entries = Vec::new();
        for reference in refs {
            let r = self.resolve(reference).await?;
            let mut pending = vec![r.digest.clone()];
            while let Some(d) = pending.pop() {
                let m = self
                    .store
                    .manifest_get(&r.repo, &content::Reference::Digest(d.clone()))
                    .await?;
                blobs.insert(d.clone(), OciBlob::Manifest(m.bytes.clone()));
                if media_type::is_index(&m.media_type) {
                    let index: ImageIndex = parse_json(&d, &m.bytes)?;
                    for child in index.manifests() {
                        pending.push(descriptor_digest(&d, child.digest().as_ref())?);
                    }
                } else {
                    let manifest: ImageManifest = parse_json(&d, &m.bytes)?;
                    for desc in std::iter::once(manifest.config()).chain(manifest.layers()) {
                        let bd = descriptor_digest(&d, desc.digest().as_ref())?;
                        blobs.insert(bd, OciBlob::Blob(r.repo.clone(), desc.size()));
                    }
                }
            }
            let mut annotations = serde_json::Map::new();
            if let (Some(tag), None) = (reference.tag(), reference.digest()) {
                annotations.insert(REF_NAME.into(), json!(tag.as_str()));
                annotations.insert(CONTAINERD_NAME.into(), json!(reference.to_string()));
            }
            let mut entry = json!({
                "mediaType": r.media_type,
                "digest": r.digest.as_str(),
                "size": r.bytes.len(),
            });
            if !annotations.is_empty() {
                entry["annotations"] = Value::Object(annotations);
            }
            entries.push(entry);
        }
        let store = self.store.clone();
        let handle = Handle::current();
        join_task(
            tokio::task::spawn_blocking(move || {
                let mut tar = tar::Builder::new(writer);
                for (digest, blob) in &blobs {
                    let name = layout_blob_path(digest);
                    match blob {
                        OciBlob::Manifest(bytes) => {
                            append(&mut tar, &name, bytes.len() as u64, &bytes[..])?;
                        }
                        OciBlob::Blob(repo, size) => {
                            let reader = open_blob(&store, &handle, repo, digest)?;
                            let verified =
                                VerifyingReader::new(reader, digest.clone(), Some(*size));
                            append(&mut tar, &name, *size, verified)?;
                        }
                    }
                }
                let index = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": media_type::OCI_INDEX,
                    "manifests": entries,
                }))
                .expect("JSON values serialise");
                append(&mut tar, "index.json", index.len() as u64, &index[..])?;
                let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
                append(&mut tar, "oci-layout", layout.len() as u64, &layout[..])?;
                tar.into_inner().map_err(io_err("writing the archive"))
            })
            .await,
        )
    }
}

/// The layers of an image with their diff ids from the config.
fn docker_layers(image: &Image, config: &ImageConfiguration) -> Result<Vec<DockerLayer>> {
    let diff_ids = config.rootfs().diff_ids();
    let layers = image.manifest.layers();
    if diff_ids.len() != layers.len() {
        return Err(ImageError::invalid(
            &image.digest,
            format!("{} layers but {} diff ids", layers.len(), diff_ids.len()),
        ));
    }
    layers
        .iter()
        .zip(diff_ids)
        .map(|(l, d)| {
            Ok(DockerLayer {
                blob: descriptor_digest(&image.digest, l.digest().as_ref())?,
                media_type: l.media_type().to_string(),
                size: l.size(),
                diff_id: descriptor_digest(&image.digest, d)?,
            })
        })
        .collect()
}

fn open_blob(
    store: &content::Store,
    handle: &Handle,
    repo: &RepoName,
    digest: &Digest,
) -> Result<SyncIoBridge<crate::driver::BoxReader>> {
    let b = handle.block_on(store.blob_open(repo, digest, 0))?;
    Ok(SyncIoBridge::new_with_handle(b.reader, handle.clone()))
}

fn write_docker_layer<W: Write>(
    store: &content::Store,
    handle: &Handle,
    repo: &RepoName,
    l: &DockerLayer,
    name: &str,
    tar: &mut tar::Builder<W>,
) -> Result<()> {
    let what = format!("layer {}", l.blob);
    let plain = !l.media_type.contains("gzip") && !l.media_type.contains("zstd");
    let blob = || -> Result<_> {
        let raw = open_blob(store, handle, repo, &l.blob)?;
        let verified = VerifyingReader::new(raw, l.blob.clone(), Some(l.size));
        decompressed(verified, &what).map_err(|e| ImageError::io(format!("reading {what}"), e))
    };
    let size = if plain && l.blob == l.diff_id {
        l.size
    } else {
        // First pass: the uncompressed size, and the diff id check.
        let mut w = HashingWriter::new(io::sink());
        io::copy(&mut blob()?, &mut w).map_err(io_err("reading a layer"))?;
        let (diff_id, size, _) = w.finish();
        if diff_id != l.diff_id {
            return Err(ImageError::invalid(
                &l.blob,
                format!(
                    "uncompressed digest {diff_id} does not match diff id {}",
                    l.diff_id
                ),
            ));
        }
        size
    };
    let verified = VerifyingReader::new(blob()?, l.diff_id.clone(), Some(size));
    append(tar, name, size, verified)
}

// ----- load -----

/// An archive entry spooled to a file.
struct Spooled {
    file: tempfile::NamedTempFile,
    digest: Digest,
    size: u64,
}

/// Everything an archive held.
struct Spool {
    files: HashMap<String, Spooled>,
    /// Symbolic and hard links: name → target (archive paths).
    links: HashMap<String, String>,
}

/// `a/./b/../c` → `a/c`; `None` when it leaves the archive.
fn normalise(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Spool {
    fn get(&self, name: &str) -> Option<&Spooled> {
        let mut name = normalise(name)?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&name) {
                return Some(f);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn need(&self, name: &str) -> Result<&Spooled> {
        self.get(name)
            .ok_or_else(|| archive_err(format!("{name} is missing from the archive")))
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let f = self.need(name)?;
        if f.size > MAX_CONFIG_SIZE {
            return Err(archive_err(format!(
                "{name} is too large ({} bytes)",
                f.size
            )));
        }
        std::fs::read(f.file.path()).map_err(io_err("reading a spooled entry"))
    }

    fn blob(&self, digest: &Digest) -> Result<&Spooled> {
        let name = layout_blob_path(digest);
        let f = self.need(&name)?;
        if f.digest != *digest {
            return Err(archive_err(format!(
                "{name} does not match its digest (content is {})",
                f.digest
            )));
        }
        Ok(f)
    }
}

fn spool<R: Read + Send>(reader: R, tmp: &std::path::Path) -> Result<Spool> {
    let input = decompressed(reader, "the archive").map_err(io_err("reading the archive"))?;
    let mut archive = tar::Archive::new(input);
    let mut spool = Spool {
        files: HashMap::new(),
        links: HashMap::new(),
    };
    let bad = |e: io::Error| archive_err(format!("not a tar archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw_path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some(path) = normalise(&raw_path) else {
            return Err(archive_err(format!("entry {raw_path} leaves the archive")));
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(bad)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let resolved = if kind.is_symlink() && !target.starts_with('/') {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                normalise(&format!("{dir}/{target}"))
            } else {
                normalise(&target)
            };
            if let Some(t) = resolved {
                spool.links.insert(path, t);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let file = tempfile::NamedTempFile::new_in(tmp).map_err(|e| {
            ImageError::io(format!("creating a spool file in {}", tmp.display()), e)
        })?;
        let out = BufWriter::with_capacity(
            256 * 1024,
            file.reopen().map_err(io_err("opening a spool file"))?,
        );
        let mut w = HashingWriter::new(out);
        io::copy(&mut entry, &mut w).map_err(io_err("spooling an archive entry"))?;
        let (digest, size, out) = w.finish();
        out.into_inner()
            .map_err(|e| ImageError::io("writing a spool file", e.into_error()))?;
        spool.files.insert(path, Spooled { file, digest, size });
    }
    Ok(spool)
}

/// What to store for a docker-archive layer: the gzipped spool file and its digest.
struct Gzipped {
    file: tempfile::NamedTempFile,
    digest: Digest,
    size: u64,
}

/// Gzips a spooled layer (decompressing it first if it came compressed), checking its diff id.
fn gzip_layer(
    src: &Spooled,
    diff_id: &Digest,
    tmp: &std::path::Path,
    name: &str,
) -> Result<Gzipped> {
    let input = std::fs::File::open(src.file.path()).map_err(io_err("reading a spooled layer"))?;
    let mut plain = decompressed(input, name).map_err(io_err("reading a layer"))?;
    let file = tempfile::NamedTempFile::new_in(tmp).map_err(io_err("creating a spool file"))?;
    let out = BufWriter::with_capacity(
        256 * 1024,
        file.reopen().map_err(io_err("opening a spool file"))?,
    );
    let mut gz = HashingWriter::new(gzip(HashingWriter::new(out)));
    io::copy(&mut plain, &mut gz).map_err(io_err("compressing a layer"))?;
    let (actual, _, enc) = gz.finish();
    if actual != *diff_id {
        return Err(archive_err(format!(
            "layer {name} does not match its diff id {diff_id} (content is {actual})"
        )));
    }
    let (digest, size, out) = enc
        .finish()
        .map_err(io_err("compressing a layer"))?
        .finish();
    out.into_inner()
        .map_err(|e| ImageError::io("writing a spool file", e.into_error()))?;
    Ok(Gzipped { file, digest, size })
}

/// One image of a docker-archive `manifest.json`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Reads a docker-archive or OCI layout tar (plain or gzipped), verifies and stores every
    /// image in it, and returns the references it tagged.
    pub async fn load<R: Read + Send + 'static>(&self, reader: R) -> Result<Vec<Reference>> {
        let tmp = self.tmp.clone();
        let spool = join_task(tokio::task::spawn_blocking(move || spool(reader, &tmp)).await)?;
        if spool.get("index.json").is_some() && spool.get("oci-layout").is_some() {
            self.load_oci(&spool).await
        } else if spool.get("manifest.json").is_some() {
            self.load_docker(spool).await
        } else {
            Err(archive_err(
                "neither a docker-archive (no manifest.json) nor an OCI layout (no index.json and oci-layout)",
            ))
        }
    }

    async fn load_docker(&self, spool: Spool) -> Result<Vec<Reference>> {
        let entries: Vec<DockerEntry> = serde_json::from_slice(&spool.read_small("manifest.json")?)
            .map_err(|e| archive_err(format!("manifest.json: {e}")))?;
        let spool = std::sync::Arc::new(spool);
        let mut loaded = Vec::new();
        for entry in entries {
            let config_bytes = Bytes::from(spool.read_small(&entry.config)?);
            let id = Digest::sha256_of(&config_bytes);
            // A config named by its digest (`<hex>.json`, `blobs/sha256/<hex>`) must match it.
            let stem = entry.config.rsplit('/').next().unwrap_or("");
            let stem = stem.strip_suffix(".json").unwrap_or(stem);
            if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && stem != id.hex() {
                return Err(archive_err(format!(
                    "config {} does not match its name (content is {id})",
                    entry.config
                )));
            }
            let config: ImageConfiguration = parse_json(&id, &config_bytes)?;
            let diff_ids: Vec<Digest> = config
                .rootfs()
                .diff_ids()
                .iter()
                .map(|d| descriptor_digest(&id, d))
                .collect::<Result<_>>()?;
            if diff_ids.len() != entry.layers.len() {
                return Err(archive_err(format!(
                    "image {id}: {} layers but {} diff ids",
                    entry.layers.len(),
                    diff_ids.len()
                )));
            }
            let tags: Vec<Reference> = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse(t).map_err(|e| archive_err(format!("RepoTags: {e}"))))
                .collect::<Result<_>>()?;
            let repo = match tags.first() {
                Some(t) => repo_name(t)?,
                None => loaded_repo()?,
            };
            let mut layers = Vec::new();
            for (name, diff_id) in entry.layers.iter().zip(&diff_ids) {
                let (spool, tmp, name, diff_id) = (
                    spool.clone(),
                    self.tmp.clone(),
                    name.clone(),
                    diff_id.clone(),
                );
                let gz = join_task(
                    tokio::task::spawn_blocking(move || {
                        gzip_layer(spool.need(&name)?, &diff_id, &tmp, &name)
                    })
                    .await,
                )?;
                self.put_blob_file(&repo, &gz.digest, gz.file.path())
                    .await?;
                layers.push(json!({
                    "mediaType": media_type::OCI_LAYER_GZIP,
                    "digest": gz.digest.as_str(),
                    "size": gz.size,
                }));
            }
            let config_size = config_bytes.len();
            self.put_blob(
                &repo,
                &id,
                futures::stream::iter([Ok::<_, io::Error>(config_bytes)]),
            )
            .await?;
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "config": {"mediaType": media_type::OCI_CONFIG, "digest": id.as_str(), "size": config_size},
                "layers": layers,
            }))
            .expect("JSON values serialise");
            let digest = self
                .put_manifest(&repo, media_type::OCI_MANIFEST, Bytes::from(manifest), None)
                .await?;
            if tags.is_empty() {
                let r = loaded_reference(&digest)?;
                self.tag(&r, &digest).await?;
                loaded.push(r);
            }
            for t in tags {
                self.tag(&t, &digest).await?;
                loaded.push(t);
            }
        }
        Ok(loaded)
    }

    async fn load_oci(&self, spool: &Spool) -> Result<Vec<Reference>> {
        let index: ImageIndex = serde_json::from_slice(&spool.read_small("index.json")?)
            .map_err(|e| archive_err(format!("index.json: {e}")))?;
        let mut loaded = Vec::new();
        for top in index.manifests() {
            let digest = Digest::parse(top.digest().as_ref())
                .map_err(|e| archive_err(format!("index.json: {e}")))?;
            let annotations = top.annotations().clone().unwrap_or_default();
            let reference = match (annotations.get(CONTAINERD_NAME), annotations.get(REF_NAME)) {
                (Some(full), _) => Reference::parse(full)
                    .map_err(|e| archive_err(format!("{CONTAINERD_NAME}: {e}")))?,
                (None, Some(name)) if name.contains('/') || name.contains(':') => {
                    Reference::parse(name).map_err(|e| archive_err(format!("{REF_NAME}: {e}")))?
                }
                (None, Some(tag)) => {
                    let tag =
                        Tag::parse(tag).map_err(|e| archive_err(format!("{REF_NAME}: {e}")))?;
                    loaded_reference(&digest)?.with_tag(tag)
                }
                (None, None) => loaded_reference(&digest)?,
            };
            let repo = repo_name(&reference)?;
            let stored = self.store_oci_tree(spool, &repo, &digest).await?;
            let target = reference.with_tag(
                reference
                    .tag()
                    .cloned()
                    .ok_or_else(|| ImageError::TagRequired(reference.to_string()))?,
            );
            self.tag(&target, &stored).await?;
            loaded.push(target);
        }
        Ok(loaded)
    }

    /// Stores the manifest `digest` of an OCI layout and everything it names into `repo`. An
    /// index whose children are not all in the archive is replaced by its child for this host.
    /// Returns the manifest stored for the tag.
    async fn store_oci_tree(
        &self,
        spool: &Spool,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Digest> {
        let bytes = Bytes::from(
            std::fs::read(spool.blob(digest)?.file.path())
                .map_err(io_err("reading a spooled manifest"))?,
        );
        let head: Value = serde_json::from_slice(&bytes)
            .map_err(|e| archive_err(format!("manifest {digest}: {e}")))?;
        let mt = head["mediaType"]
            .as_str()
            .unwrap_or(media_type::OCI_MANIFEST)
            .to_owned();
        if media_type::is_index(&mt) {
            let index: ImageIndex = parse_json(digest, &bytes)?;
            let children: Vec<Digest> = index
                .manifests()
                .iter()
                .map(|c| descriptor_digest(digest, c.digest().as_ref()))
                .collect::<Result<_>>()?;
            let all_there = children.iter().all(|c| spool.blob(c).is_ok());
            if !all_there {
                let i = super::platform::choose(&index, &Platform::host())
                    .filter(|i| spool.blob(&children[*i]).is_ok())
                    .ok_or_else(|| {
                        archive_err(format!(
                            "index {digest} lacks manifests and has none for {}",
                            Platform::host()
                        ))
                    })?;
                return Box::pin(self.store_oci_tree(spool, repo, &children[i])).await;
            }
            for c in &children {
                Box::pin(self.store_oci_tree(spool, repo, c)).await?;
            }
        } else {
            let manifest: ImageManifest = parse_json(digest, &bytes)?;
            for desc in std::iter::once(manifest.config()).chain(manifest.layers()) {
                let d = descriptor_digest(digest, desc.digest().as_ref())?;
                let f = spool.blob(&d)?;
                if f.size != desc.size() {
                    return Err(archive_err(format!(
                        "blob {d} is {} bytes, its descriptor says {}",
                        f.size,
                        desc.size()
                    )));
                }
                self.put_blob_file(repo, &d, f.file.path()).await?;
            }
        }
        self.put_manifest(repo, &mt, bytes, None).await
    }
}

/// Where images with no name land.
fn loaded_repo() -> Result<RepoName> {
    repo_name(&loaded_reference(&Digest::sha256_of(b""))?)
}

fn loaded_reference(digest: &Digest) -> Result<Reference> {
    Reference::parse(&format!("localhost/loaded:{}", &digest.hex()[..12]))
        .map_err(|e| archive_err(e.to_string()))
}
