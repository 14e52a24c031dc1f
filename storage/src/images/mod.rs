//! The local image store: images, tags and archives on top of the content [`Store`].
//!
//! A local store is the registry's own `Store` on the fs driver under `$HOIST_HOME/store`; this
//! module adds what a user means by an image. Every registry's images live in one store, each
//! repository under the name [`naming::repo_name`] gives it (`docker.io/library/alpine`,
//! `localhost__5000/team/app`). Blobs are stored once whatever the number of repositories; tags
//! point at manifests; an index keeps the platform manifests it names.
//!
//! Semantics, as docker has them:
//! - **image id**: the digest of the image's config (for a tag on an index, of the host
//!   platform's manifest's config).
//! - **dangling**: a manifest no tag points at and no index of its repository names.
//! - **rmi** removes a tag; the manifest goes when no tag of its repository points at it any
//!   more (and no index names it). Removing by image id untags every tag of that id, and is refused
//!   when there are several unless forced.
//! - **prune** removes dangling manifests; `all` also removes every tagged image not in use.
//!   This store does not know the containers (the runtime keeps them): callers pass the image ids
//!   their containers use, and `all` keeps those, as `docker image prune -a` does. Both then run
//!   the garbage collector.
//! - **gc** is [`Store::gc`] with a grace of [`GC_GRACE`]: blobs and links younger than that are
//!   kept, so a pull or load in another process (blobs first, manifest last) is never robbed. The
//!   bytes of an image removed within the grace are reclaimed by a later collection.
//!
//! Several hoist processes may share a store: metadata is SQLite (WAL, one transaction per call),
//! blobs are committed through upload sessions (so a process opening the store does not take
//! another's upload for crash debris), and collection takes the store's file lock. Spooled
//! archive entries live in `$HOIST_HOME/tmp`, in uniquely named files.

pub mod archive;
mod assemble;
mod import;
mod io;
pub mod naming;
pub mod platform;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use hoist_oci::spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use hoist_oci::{Digest, Reference, RepoName, Tag, media_type};
use tokio::io::AsyncReadExt;

use crate::content::{self, ContentError, GcReport, Store};
use crate::metadata::ManifestRecord;

pub use assemble::{StoredImage, layer_descriptor};
pub use import::{Change, Imported, merge_env, parse_change};
pub use naming::{familiar_repo, reference_of, repo_name};
pub use platform::Platform;

/// How old unreferenced blobs and links must be before [`ImageStore::gc`] removes them.
pub const GC_GRACE: Duration = Duration::from_secs(10 * 60);

/// The largest image config read into memory.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// What went wrong in the local image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error(
        "invalid reference {0}: a local store cannot name images of ipv6 registry hosts; use a host name"
    )]
    Ipv6Host(String),
    #[error("invalid local repository name for {reference}: {reason}")]
    Name { reference: String, reason: String },
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    Platform(String),
    #[error("image {reference} has no manifest for platform {platform}")]
    NoPlatform { reference: String, platform: String },
    #[error("a tag is needed to tag an image: {0}")]
    TagRequired(String),
    #[error(
        "conflict: unable to delete {id} (must be forced) - image is referenced in {count} tags"
    )]
    Conflict { id: String, count: usize },
    #[error("image id prefix {0} is ambiguous")]
    Ambiguous(String),
    #[error("invalid image {image}: {reason}")]
    Invalid { image: String, reason: String },
    #[error("invalid archive: {0}")]
    Archive(String),
    #[error("invalid change {change:?}: {reason}")]
    Change { change: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Content(#[from] ContentError),
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    fn invalid(image: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        ImageError::Invalid {
            image: image.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// A manifest read from the store by reference.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub repo: RepoName,
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// A platform-specific image: its manifest, and the index it was chosen from.
#[derive(Debug, Clone)]
pub struct Image {
    pub repo: RepoName,
    /// The image manifest's digest.
    pub digest: Digest,
    pub media_type: String,
    /// The index this manifest was chosen from, if the reference named one.
    pub index: Option<Digest>,
    pub manifest: ImageManifest,
    pub manifest_bytes: Bytes,
}

impl Image {
    /// The image id: the config's digest.
    pub fn id(&self) -> Result<Digest> {
        Digest::parse(self.manifest.config().digest().as_ref())
            .map_err(|e| ImageError::invalid(&self.digest, format!("config digest: {e}")))
    }

    /// Config plus layers, as stored (compressed).
    pub fn size(&self) -> u64 {
        self.manifest.config().size() + self.manifest.layers().iter().map(|l| l.size()).sum::<u64>()
    }
}

/// One row of `images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The familiar repository (`alpine`, `localhost:5000/team/app`).
    pub repository: String,
    /// `None` for an untagged (dangling) image.
    pub tag: Option<String>,
    /// The image id (config digest).
    pub id: Digest,
    /// The manifest (or index) digest the tag points at, for `--digests`.
    pub digest: Digest,
    /// The config's `created`, as written there (RFC 3339).
    pub created: Option<String>,
    /// `created` in seconds since the epoch.
    pub created_unix: Option<i64>,
    /// Compressed layers plus config, in bytes.
    pub size: u64,
}

/// What `rmi` or `prune` did, in docker's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A tag went (familiar reference).
    Untagged(String),
    /// A manifest went.
    Deleted(Digest),
}

/// What `prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub removed: Vec<Removed>,
    pub gc: GcReport,
}

/// `system df` for images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Distinct image ids.
    pub images: usize,
    /// Images in use by containers.
    pub active: usize,
    /// Bytes of every blob some image references, each counted once.
    pub size: u64,
    /// Bytes only images not in use reference.
    pub reclaimable: u64,
}

/// One row of `history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The layer's digest, for the newest entry of each layer.
    pub layer: Option<Digest>,
    pub created: Option<String>,
    pub created_by: Option<String>,
    /// The compressed layer's size (0 for an empty layer).
    pub size: u64,
    pub comment: Option<String>,
    pub empty_layer: bool,
}

/// `inspect`: what an image is.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: Digest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// The image manifest's digest.
    pub manifest_digest: Digest,
    /// The index the manifest was chosen from, if any.
    pub index_digest: Option<Digest>,
    pub media_type: String,
    pub created: Option<String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub size: u64,
    /// The image config, exactly as stored.
    pub config: serde_json::Value,
    /// The layers, as the manifest lists them.
    pub layers: Vec<serde_json::Value>,
}

/// The local image store. Cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    store: Arc<Store>,
    tmp: PathBuf,
}

impl ImageStore {
    /// Opens (creating) the store under `home`: the content store in `home/store`, spool files in
    /// `home/tmp`. Spool files a crashed process left more than a day ago are removed.
    pub async fn open(home: &Path) -> Result<Self> {
        let dir = home.join("store");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ImageError::io(format!("creating {}", dir.display()), e))?;
        let store = Store::open_fs(&dir).await?;
        let tmp = home.join("tmp");
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| ImageError::io(format!("creating {}", tmp.display()), e))?;
        clean_spool(&tmp).await;
        Ok(ImageStore::new(Arc::new(store), tmp))
    }

    /// An image store over any content store, spooling into `tmp` (which must exist).
    pub fn new(store: Arc<Store>, tmp: PathBuf) -> Self {
        ImageStore { store, tmp }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Where archive entries are spooled.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    // ----- content -----

    /// Stores a blob in `repo`, verifying it against `digest` as it streams. A blob the
    /// repository already has is not read again. Returns the size.
    pub async fn put_blob<S, E>(&self, repo: &RepoName, digest: &Digest, body: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        if let Some(size) = self.store.blob_stat(repo, digest).await? {
            return Ok(size);
        }
        // A session makes the upload known, so another process opening the store leaves it be.
        let up = self.store.upload_start(repo).await?;
        if let Err(e) = self.store.upload_append(repo, &up.id, Some(0), body).await {
            let _ = self.store.upload_cancel(repo, &up.id).await;
            return Err(e.into());
        }
        let none: Option<futures::stream::Empty<std::result::Result<Bytes, std::io::Error>>> = None;
        Ok(self
            .store
            .upload_complete(repo, &up.id, digest, none)
            .await?)
    }

    /// Stores a blob from a file, verifying it against `digest`.
    pub async fn put_blob_file(
        &self,
        repo: &RepoName,
        digest: &Digest,
        path: &Path,
    ) -> Result<u64> {
        if let Some(size) = self.store.blob_stat(repo, digest).await? {
            return Ok(size);
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        self.put_blob(repo, digest, body).await
    }

    /// Stores a manifest in `repo` (validated: every blob it names must be there), pointing
    /// `tag` at it when given. Returns its digest. An index may name child manifests the store
    /// lacks, as containerd's store keeps the index of a one-platform pull: reading it finds only
    /// the platforms present ([`ImageStore::image`]), and a later pull of another platform adds it.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        media_type: &str,
        bytes: Bytes,
        tag: Option<&Tag>,
    ) -> Result<Digest> {
        let reference = match tag {
            Some(t) => content::Reference::Tag(t.clone()),
            None => content::Reference::Digest(Digest::sha256_of(&bytes)),
        };
        let put = if media_type::is_index(media_type) {
            self.store
                .index_put_partial(repo, &reference, Some(media_type), bytes)
                .await?
        } else {
            self.store
                .manifest_put(repo, &reference, Some(media_type), bytes)
                .await?
        };
        Ok(put.digest)
    }

    /// Points `target`'s tag at the manifest `digest`. When `target`'s repository does not hold
    /// the manifest, it is copied there (blobs are linked, not copied) from a repository that
    /// does.
    pub async fn tag(&self, target: &Reference, digest: &Digest) -> Result<()> {
        let tag = target
            .tag()
            .ok_or_else(|| ImageError::TagRequired(target.to_string()))?;
        let repo = repo_name(target)?;
        self.copy_manifest(&repo, digest).await?;
        let m = self
            .store
            .manifest_get(&repo, &content::Reference::Digest(digest.clone()))
            .await?;
        self.put_manifest(&repo, &m.media_type, m.bytes, Some(tag))
            .await?;
        Ok(())
    }

    /// `tag SOURCE TARGET`: resolves `source` and tags what it names as `target`.
    pub async fn tag_reference(&self, source: &Reference, target: &Reference) -> Result<Digest> {
        let r = self.resolve(source).await?;
        self.tag(target, &r.digest).await?;
        Ok(r.digest)
    }

    /// Makes `repo` hold the manifest `digest` (and what it names), copying from another
    /// repository when needed.
    async fn copy_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let mut pending = vec![(digest.clone(), false)];
        // Depth-first: children are stored before the index that names them.
        while let Some((d, expanded)) = pending.pop() {
            let mref = content::Reference::Digest(d.clone());
            if self.store.manifest_stat(repo, &mref).await.is_ok() {
                continue;
            }
            let repos = self.store.manifest_repos(&d).await?;
            let Some(from) = repos.first().and_then(|r| RepoName::parse(r).ok()) else {
                if d != *digest {
                    // A platform of a partial index that was never pulled.
                    continue;
                }
                return Err(ImageError::NotFound(d.to_string()));
            };
            let m = self.store.manifest_get(&from, &mref).await?;
            if media_type::is_index(&m.media_type) {
                if !expanded {
                    pending.push((d.clone(), true));
                    let index: ImageIndex = parse_json(&d, &m.bytes)?;
                    for child in index.manifests() {
                        pending.push((descriptor_digest(&d, child.digest().as_ref())?, false));
                    }
                    continue;
                }
            } else {
                let manifest: ImageManifest = parse_json(&d, &m.bytes)?;
                for desc in std::iter::once(manifest.config()).chain(manifest.layers()) {
                    let bd = descriptor_digest(&d, desc.digest().as_ref())?;
                    if self.store.blob_mount(repo, &from, &bd).await?.is_none()
                        && self.store.blob_stat(repo, &bd).await?.is_none()
                    {
                        return Err(ImageError::invalid(&d, format!("blob {bd} is missing")));
                    }
                }
            }
            self.put_manifest(repo, &m.media_type, m.bytes, None)
                .await?;
        }
        Ok(())
    }

    // ----- reading -----

    /// The manifest (or index) `reference` names: its digest if it has one, else its tag.
    pub async fn resolve(&self, reference: &Reference) -> Result<Resolved> {
        let repo = repo_name(reference)?;
        let target = match (reference.digest(), reference.tag()) {
            (Some(d), _) => content::Reference::Digest(d.clone()),
            (None, Some(t)) => content::Reference::Tag(t.clone()),
            (None, None) => return Err(ImageError::NotFound(reference.familiar())),
        };
        match self.store.manifest_get(&repo, &target).await {
            Ok(m) => Ok(Resolved {
                repo,
                digest: m.digest,
                media_type: m.media_type,
                bytes: m.bytes,
            }),
            Err(ContentError::ManifestUnknown(_) | ContentError::NameUnknown(_)) => {
                Err(ImageError::NotFound(reference.familiar()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The image `reference` names, for `platform` when it names an index. For the host's
    /// platform, an index that holds only other platforms (`pull --platform linux/arm64`) gives
    /// its first stored image, as docker inspects and runs what was pulled.
    pub async fn image(&self, reference: &Reference, platform: &Platform) -> Result<Image> {
        let r = self.resolve(reference).await?;
        let found = match self.image_in(&r.repo, &r.digest, platform).await? {
            Some(i) => Some(i),
            None if *platform == Platform::host() => self.first_child(&r.repo, &r.digest).await?,
            None => None,
        };
        found.ok_or_else(|| ImageError::NoPlatform {
            reference: reference.familiar(),
            platform: platform.to_string(),
        })
    }

    /// The image manifest `digest` of `repo` stands for; for an index, its entry for `platform`
    /// (`None` when it has none stored locally).
    async fn image_in(
        &self,
        repo: &RepoName,
        digest: &Digest,
        platform: &Platform,
    ) -> Result<Option<Image>> {
        let m = self
            .store
            .manifest_get(repo, &content::Reference::Digest(digest.clone()))
            .await?;
        if !media_type::is_index(&m.media_type) {
            let manifest = parse_json(digest, &m.bytes)?;
            return Ok(Some(Image {
                repo: repo.clone(),
                digest: digest.clone(),
                media_type: m.media_type,
                index: None,
                manifest,
                manifest_bytes: m.bytes,
            }));
        }
        let index: ImageIndex = parse_json(digest, &m.bytes)?;
        let Some(i) = platform::choose(&index, platform) else {
            return Ok(None);
        };
        let child = descriptor_digest(digest, index.manifests()[i].digest().as_ref())?;
        match self
            .store
            .manifest_get(repo, &content::Reference::Digest(child.clone()))
            .await
        {
            Ok(c) if !media_type::is_index(&c.media_type) => Ok(Some(Image {
                repo: repo.clone(),
                digest: child.clone(),
                media_type: c.media_type,
                index: Some(digest.clone()),
                manifest: parse_json(&child, &c.bytes)?,
                manifest_bytes: c.bytes,
            })),
            Ok(_) => Err(ImageError::invalid(digest, "nested index")),
            Err(ContentError::ManifestUnknown(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole (small) blob of `repo`, checking its digest.
    pub async fn read_blob(&self, repo: &RepoName, digest: &Digest, limit: u64) -> Result<Bytes> {
        let b = self.store.blob_open(repo, digest, 0).await?;
        if b.size > limit {
            return Err(ImageError::invalid(
                digest,
                format!("{} bytes, over the {limit} byte limit", b.size),
            ));
        }
        let mut out = Vec::with_capacity(b.size as usize);
        let mut reader = b.reader;
        reader
            .read_to_end(&mut out)
            .await
            .map_err(|e| ImageError::io(format!("reading blob {digest}"), e))?;
        if !digest.matches(&out) {
            return Err(
                ContentError::Corrupt(format!("blob {digest} does not match its digest")).into(),
            );
        }
        Ok(Bytes::from(out))
    }

    /// The image's config, parsed, and its bytes.
    pub async fn config(&self, image: &Image) -> Result<(ImageConfiguration, Bytes)> {
        let id = image.id()?;
        let bytes = self.read_blob(&image.repo, &id, MAX_CONFIG_SIZE).await?;
        Ok((parse_json(&id, &bytes)?, bytes))
    }

    // ----- listing -----

    /// Manifests no tag points at and no index of their repository names.
    async fn dangling(&self) -> Result<Vec<(RepoName, ManifestRecord)>> {
        let tagged: HashSet<(String, Digest)> = self
            .store
            .all_tags()
            .await?
            .into_iter()
            .map(|t| (t.repo, t.digest))
            .collect();
        let mut out = Vec::new();
        for (repo, rec) in self.store.all_manifests().await? {
            if tagged.contains(&(repo.clone(), rec.digest.clone())) {
                continue;
            }
            let Ok(name) = RepoName::parse(&repo) else {
                continue;
            };
            if self
                .store
                .manifest_parents(&name, &rec.digest)
                .await?
                .is_empty()
            {
                out.push((name, rec));
            }
        }
        Ok(out)
    }

    /// Summarises the manifest `digest` of `repo` (for an index, its host platform's image, or
    /// its first stored image when the host has none).
    async fn summarise(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Summary>> {
        let image = match self.image_in(repo, digest, &Platform::host()).await? {
            Some(i) => i,
            None => match self.first_child(repo, digest).await? {
                Some(i) => i,
                None => return Ok(None),
            },
        };
        let id = image.id()?;
        let created = match self.config(&image).await {
            Ok((c, _)) => c.created().clone(),
            Err(_) => None,
        };
        Ok(Some(Summary {
            id,
            created_unix: created.as_deref().and_then(parse_rfc3339),
            created,
            size: image.size(),
            blobs: image_blobs(&image),
        }))
    }

    async fn first_child(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Image>> {
        let m = self
            .store
            .manifest_get(repo, &content::Reference::Digest(digest.clone()))
            .await?;
        if !media_type::is_index(&m.media_type) {
            return Ok(None);
        }
        let index: ImageIndex = parse_json(digest, &m.bytes)?;
        for child in index.manifests() {
            let cd = descriptor_digest(digest, child.digest().as_ref())?;
            if let Ok(c) = self
                .store
                .manifest_get(repo, &content::Reference::Digest(cd.clone()))
                .await
                && !media_type::is_index(&c.media_type)
            {
                return Ok(Some(Image {
                    repo: repo.clone(),
                    digest: cd.clone(),
                    media_type: c.media_type,
                    index: Some(digest.clone()),
                    manifest: parse_json(&cd, &c.bytes)?,
                    manifest_bytes: c.bytes,
                }));
            }
        }
        Ok(None)
    }

    /// Every image: one row per tag, then one per dangling manifest; newest first.
    pub async fn list(&self) -> Result<Vec<ImageSummary>> {
        Ok(self.entries().await?.into_iter().map(|e| e.row).collect())
    }

    /// The layer diff_ids of every image in the store (tagged or dangling), from their configs:
    /// what the runtime's unpacked layers must keep.
    pub async fn diff_ids(&self) -> Result<HashSet<Digest>> {
        let mut out = HashSet::new();
        let mut seen = HashSet::new();
        for e in self.entries().await? {
            if !seen.insert((e.repo.clone(), e.row.id.clone())) {
                continue;
            }
            let bytes = self.read_blob(&e.repo, &e.row.id, MAX_CONFIG_SIZE).await?;
            let config: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|err| ImageError::invalid(&e.row.id, format!("image config: {err}")))?;
            out.extend(config_diff_ids(&config));
        }
        Ok(out)
    }

    async fn entries(&self) -> Result<Vec<Entry>> {
        let mut cache: HashMap<(RepoName, Digest), Option<Summary>> = HashMap::new();
        let mut rows: Vec<(RepoName, Option<String>, Digest)> = Vec::new();
        for t in self.store.all_tags().await? {
            if let Ok(repo) = RepoName::parse(&t.repo) {
                rows.push((repo, Some(t.tag), t.digest));
            }
        }
        for (repo, rec) in self.dangling().await? {
            rows.push((repo, None, rec.digest));
        }
        let mut out = Vec::with_capacity(rows.len());
        for (repo, tag, digest) in rows {
            let key = (repo.clone(), digest.clone());
            let summary = match cache.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let s = self.summarise(&repo, &digest).await?;
                    cache.insert(key, s.clone());
                    s
                }
            };
            let Some(s) = summary else { continue };
            out.push(Entry {
                repo: repo.clone(),
                blobs: s.blobs,
                row: ImageSummary {
                    repository: familiar_repo(repo.as_str()),
                    tag,
                    id: s.id,
                    digest,
                    created: s.created,
                    created_unix: s.created_unix,
                    size: s.size,
                },
            });
        }
        out.sort_by(|a, b| {
            b.row
                .created_unix
                .cmp(&a.row.created_unix)
                .then_with(|| a.row.repository.cmp(&b.row.repository))
                .then_with(|| a.row.tag.cmp(&b.row.tag))
        });
        Ok(out)
    }

    // ----- removing -----

    /// `rmi NAME`: NAME is a reference (`alpine`, `alpine:3`, `repo@sha256:...`), a full image
    /// id (`sha256:<hex>` or the hex) or a unique prefix of one.
    pub async fn remove(&self, name: &str, force: bool) -> Result<Vec<Removed>> {
        let full_id = name
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64)
            .or((name.len() == 64).then_some(name))
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if full_id.is_none()
            && let Ok(reference) = Reference::parse(name)
        {
            match self.remove_reference(&reference, force).await {
                Err(ImageError::NotFound(_)) => {}
                other => return other,
            }
        }
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ImageError::NotFound(name.to_owned()));
        }
        self.remove_id(prefix, force).await
    }

    async fn remove_reference(&self, reference: &Reference, force: bool) -> Result<Vec<Removed>> {
        let r = self.resolve(reference).await?;
        let mut out = Vec::new();
        if reference.digest().is_some() {
            let tags = self.tags_of(&r.repo, &r.digest).await?;
            if !tags.is_empty() && !force {
                return Err(ImageError::Conflict {
                    id: reference.familiar(),
                    count: tags.len(),
                });
            }
            for t in tags {
                self.store
                    .manifest_delete(&r.repo, &content::Reference::Tag(t.clone()))
                    .await?;
                out.push(Removed::Untagged(untagged_name(&r.repo, &t)));
            }
        } else if let Some(tag) = reference.tag() {
            self.store
                .manifest_delete(&r.repo, &content::Reference::Tag(tag.clone()))
                .await?;
            out.push(Removed::Untagged(reference.familiar()));
        }
        self.delete_if_unreferenced(&r.repo, &r.digest, &mut out)
            .await?;
        Ok(out)
    }

    async fn remove_id(&self, prefix: &str, force: bool) -> Result<Vec<Removed>> {
        let entries = self.entries().await?;
        let ids: BTreeSet<&Digest> = entries
            .iter()
            .map(|e| &e.row.id)
            .filter(|id| id.hex().starts_with(prefix))
            .collect();
        let id = match ids.len() {
            0 => return Err(ImageError::NotFound(prefix.to_owned())),
            1 => (*ids.first().expect("one id")).clone(),
            _ => return Err(ImageError::Ambiguous(prefix.to_owned())),
        };
        let matching: Vec<&Entry> = entries.iter().filter(|e| e.row.id == id).collect();
        let tagged = matching.iter().filter(|e| e.row.tag.is_some()).count();
        if tagged > 1 && !force {
            return Err(ImageError::Conflict {
                id: id.hex()[..12].to_owned(),
                count: tagged,
            });
        }
        let mut out = Vec::new();
        let mut manifests = BTreeSet::new();
        for e in &matching {
            if let Some(t) = &e.row.tag {
                let tag = Tag::parse(t).map_err(|e| ContentError::TagInvalid(e.to_string()))?;
                self.store
                    .manifest_delete(&e.repo, &content::Reference::Tag(tag.clone()))
                    .await?;
                out.push(Removed::Untagged(untagged_name(&e.repo, &tag)));
            }
            manifests.insert((e.repo.clone(), e.row.digest.clone()));
        }
        for (repo, digest) in manifests {
            self.delete_if_unreferenced(&repo, &digest, &mut out)
                .await?;
        }
        Ok(out)
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
        Ok(self
            .store
            .all_tags()
            .await?
            .into_iter()
            .filter(|t| t.repo == repo.as_str() && t.digest == *digest)
            .filter_map(|t| Tag::parse(&t.tag).ok())
            .collect())
    }

    /// Deletes the manifest `digest` of `repo` if no tag points at it and no index names it; then
    /// its children the same way.
    async fn delete_if_unreferenced(
        &self,
        repo: &RepoName,
        digest: &Digest,
        out: &mut Vec<Removed>,
    ) -> Result<()> {
        let mut pending = vec![digest.clone()];
        while let Some(d) = pending.pop() {
            if !self.tags_of(repo, &d).await?.is_empty()
                || !self.store.manifest_parents(repo, &d).await?.is_empty()
            {
                continue;
            }
            let mref = content::Reference::Digest(d.clone());
            let Ok(m) = self.store.manifest_get(repo, &mref).await else {
                continue;
            };
            self.store.manifest_delete(repo, &mref).await?;
            // Deleted, in docker's sense, once no repository holds the manifest any more.
            if self.store.manifest_repos(&d).await?.is_empty() {
                out.push(Removed::Deleted(d.clone()));
            }
            if media_type::is_index(&m.media_type) {
                let index: ImageIndex = parse_json(&d, &m.bytes)?;
                for child in index.manifests() {
                    pending.push(descriptor_digest(&d, child.digest().as_ref())?);
                }
            }
        }
        Ok(())
    }

    /// `image prune [--all]`: removes dangling manifests; with `all`, every image whose id is
    /// not in `in_use` too. Then collects garbage.
    pub async fn prune(&self, all: bool, in_use: &HashSet<Digest>) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        if all {
            for e in self.entries().await? {
                if in_use.contains(&e.row.id) {
                    continue;
                }
                if let Some(t) = &e.row.tag {
                    let tag = Tag::parse(t).map_err(|e| ContentError::TagInvalid(e.to_string()))?;
                    if self
                        .store
                        .manifest_delete(&e.repo, &content::Reference::Tag(tag.clone()))
                        .await
                        .is_ok()
                    {
                        report
                            .removed
                            .push(Removed::Untagged(untagged_name(&e.repo, &tag)));
                    }
                }
            }
        }
        loop {
            let mut progressed = false;
            for e in self.entries().await? {
                if e.row.tag.is_some() || in_use.contains(&e.row.id) {
                    continue;
                }
                let before = report.removed.len();
                self.delete_if_unreferenced(&e.repo, &e.row.digest, &mut report.removed)
                    .await?;
                progressed |= report.removed.len() > before;
            }
            if !progressed {
                break;
            }
        }
        report.gc = self.gc().await?;
        Ok(report)
    }

    /// `system df` for images: `in_use` are the image ids containers use.
    pub async fn disk_usage(&self, in_use: &HashSet<Digest>) -> Result<DiskUsage> {
        let entries = self.entries().await?;
        let mut all: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut used: BTreeSet<Digest> = BTreeSet::new();
        let mut ids = BTreeSet::new();
        let mut active = BTreeSet::new();
        for e in &entries {
            ids.insert(e.row.id.clone());
            let in_use = in_use.contains(&e.row.id);
            if in_use {
                active.insert(e.row.id.clone());
            }
            for (d, size) in &e.blobs {
                all.insert(d.clone(), *size);
                if in_use {
                    used.insert(d.clone());
                }
            }
        }
        let size = all.values().sum();
        let reclaimable = all
            .iter()
            .filter(|(d, _)| !used.contains(*d))
            .map(|(_, s)| s)
            .sum();
        Ok(DiskUsage {
            images: ids.len(),
            active: active.len(),
            size,
            reclaimable,
        })
    }

    /// Removes blobs no image references any more (and stale upload sessions of crashed
    /// processes), keeping anything younger than [`GC_GRACE`].
    pub async fn gc(&self) -> Result<GcReport> {
        self.store
            .purge_stale_uploads(Duration::from_secs(24 * 3600))
            .await?;
        Ok(self.store.gc(GC_GRACE).await?)
    }

    /// [`ImageStore::gc`] with no grace at all: only safe when no other process is writing.
    pub async fn gc_now(&self) -> Result<GcReport> {
        Ok(self.store.gc_before(i64::MAX).await?)
    }

    // ----- describing -----

    /// `inspect REF`.
    pub async fn inspect(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ImageInspect> {
        let image = self.image(reference, platform).await?;
        let id = image.id()?;
        let (config, config_bytes) = self.config(&image).await?;
        let mut repo_tags = Vec::new();
        let mut repo_digests = BTreeSet::new();
        for e in self.entries().await? {
            if e.row.id == id {
                if let Some(t) = &e.row.tag {
                    repo_tags.push(format!("{}:{t}", e.row.repository));
                }
                repo_digests.insert(format!("{}@{}", e.row.repository, e.row.digest));
            }
        }
        let raw: serde_json::Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::invalid(&id, e.to_string()))?;
        Ok(ImageInspect {
            id,
            repo_tags,
            repo_digests: repo_digests.into_iter().collect(),
            manifest_digest: image.digest.clone(),
            index_digest: image.index.clone(),
            media_type: image.media_type.clone(),
            created: config.created().clone(),
            os: config.os().to_string(),
            architecture: config.architecture().to_string(),
            variant: config.variant().clone(),
            size: image.size(),
            config: raw,
            layers: image
                .manifest
                .layers()
                .iter()
                .map(|l| serde_json::to_value(l).unwrap_or_default())
                .collect(),
        })
    }

    /// `history REF`, newest first. Sizes are the compressed layers'.
    pub async fn history(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Vec<HistoryEntry>> {
        let image = self.image(reference, platform).await?;
        let (config, _) = self.config(&image).await?;
        let layers = image.manifest.layers();
        let mut next = 0usize;
        let mut out = Vec::new();
        let history = config.history().clone().unwrap_or_default();
        for h in &history {
            let empty = h.empty_layer().unwrap_or(false);
            let (layer, size) = if empty {
                (None, 0)
            } else {
                let l = layers.get(next);
                next += 1;
                (
                    l.and_then(|l| Digest::parse(l.digest().as_ref()).ok()),
                    l.map_or(0, |l| l.size()),
                )
            };
            out.push(HistoryEntry {
                layer,
                created: h.created().clone(),
                created_by: h.created_by().clone(),
                size,
                comment: h.comment().clone(),
                empty_layer: empty,
            });
        }
        // Layers the history does not account for.
        for l in layers.iter().skip(next) {
            out.push(HistoryEntry {
                layer: Digest::parse(l.digest().as_ref()).ok(),
                created: None,
                created_by: None,
                size: l.size(),
                comment: None,
                empty_layer: false,
            });
        }
        out.reverse();
        Ok(out)
    }
}

#[derive(Debug, Clone)]
struct Summary {
    id: Digest,
    created: Option<String>,
    created_unix: Option<i64>,
    size: u64,
    blobs: Vec<(Digest, u64)>,
}

struct Entry {
    repo: RepoName,
    row: ImageSummary,
    /// Every blob the image needs (manifests, config, layers) with its size.
    blobs: Vec<(Digest, u64)>,
}

fn image_blobs(image: &Image) -> Vec<(Digest, u64)> {
    let mut out = vec![(image.digest.clone(), image.manifest_bytes.len() as u64)];
    for d in std::iter::once(image.manifest.config()).chain(image.manifest.layers()) {
        if let Ok(digest) = Digest::parse(d.digest().as_ref()) {
            out.push((digest, d.size()));
        }
    }
    out
}

fn untagged_name(repo: &RepoName, tag: &Tag) -> String {
    format!("{}:{tag}", familiar_repo(repo.as_str()))
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(what: &Digest, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::invalid(what, e.to_string()))
}

pub(crate) fn descriptor_digest(parent: &Digest, s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| ImageError::invalid(parent, format!("descriptor: {e}")))
}

/// The layer diff_ids of an image config (JSON), bottom to top; entries that are not digests are
/// skipped.
pub fn config_diff_ids(config: &serde_json::Value) -> Vec<Digest> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().and_then(|s| Digest::parse(s).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, `...+02:00`).
pub use hoist_oci::time::parse_rfc3339;

/// Removes spool files older than a day (left by crashed processes).
async fn clean_spool(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    let day = Duration::from_secs(24 * 3600);
    while let Ok(Some(e)) = entries.next_entry().await {
        let old = e
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if old {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}

#[cfg(test)]
mod tests;
