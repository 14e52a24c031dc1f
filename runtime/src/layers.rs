//! The layer store: each layer unpacked once, into a directory named by its diff_id, under
//! `$HOIST_HOME/layers`, and verified once.
//!
//! Layout:
//! ```text
//! layers/sha256/<hex>/root        the unpacked layer, in overlay form (an overlay lower dir)
//! layers/sha256/<hex>/layer.json  LayerRecord: diff_id, tree digest, compressed digests verified
//! layers/tmp/<uuid>/              unpacks in progress (renamed into place when verified)
//! layers/locks/sha256-<hex>.lock  one advisory lock per layer, across processes
//! ```
//!
//! **Verification.** The first time a compressed blob is used for a layer, its bytes are hashed
//! as they stream (digest and size against the manifest's descriptor) and so is the decompressed
//! tar (against the config's `rootfs.diff_ids` entry); only then is the unpacked tree renamed into
//! place. The blob digest is then recorded in `layer.json`, so later uses skip the check. A blob
//! with another compression of an already unpacked layer is verified (streamed, not unpacked) and
//! added. [`LayerStore::verify`] re-checks everything: blobs, and each unpacked tree against the
//! canonical digest recorded when it was unpacked (the diff_id of [`write_layer`] of the tree,
//! which covers names, types, contents, modes, owners, mtimes, links, devices, xattrs).
//!
//! **Concurrency.** Unpacking takes the layer's file lock; a second caller (thread or process)
//! waits, then finds the layer in place. A crash leaves at most a directory in `tmp/`, removed by
//! the next [`LayerStore::open`] when older than an hour.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hoist_oci::spec::image::Descriptor;
use hoist_oci::{Digest, Digester, HashingReader};
use hoist_storage::images::{Image, ImageError, ImageStore};
use serde::{Deserialize, Serialize};

use crate::rootfs::{Compression, LayerOptions, RootfsError, write_layer};
use crate::unpack::{
    DEFAULT_MAX_SIZE, UnpackError, UnpackOptions, Whiteouts, decompress, unpack_layer,
};

/// What went wrong preparing or verifying layers.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("invalid image {image}: {reason}")]
    Invalid { image: String, reason: String },
    #[error("layer {layer}: {what} mismatch: expected {expected}, got {actual}")]
    Mismatch {
        layer: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("layer {layer}: {source}")]
    Unpack {
        layer: String,
        #[source]
        source: UnpackError,
    },
    #[error("layer {layer}: {source}")]
    Tree {
        layer: String,
        #[source]
        source: RootfsError,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: reading the blob: {source}")]
    Read {
        layer: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = LayerError> = std::result::Result<T, E>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.into();
    move |source| LayerError::Io { path, source }
}

/// What the store knows about one unpacked layer (`layer.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub diff_id: Digest,
    /// The diff_id of the canonical tar of the unpacked tree ([`write_layer`], uncompressed),
    /// taken right after unpacking: what [`LayerStore::verify`] compares the tree with.
    pub tree: Digest,
    /// Bytes of the uncompressed layer tar.
    pub size: u64,
    /// Compressed blobs verified to decompress to `diff_id`.
    pub verified: BTreeSet<Digest>,
}

/// The outcome of one check of [`LayerStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Ok,
    /// Nothing to check: the layer is not unpacked (yet).
    Absent,
    Mismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },
    Failed(String),
}

impl Check {
    pub fn is_ok(&self) -> bool {
        matches!(self, Check::Ok | Check::Absent)
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Ok => f.write_str("ok"),
            Check::Absent => f.write_str("not unpacked"),
            Check::Mismatch {
                what,
                expected,
                actual,
            } => write!(f, "{what} mismatch: expected {expected}, got {actual}"),
            Check::Failed(e) => f.write_str(e),
        }
    }
}

/// One layer's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCheck {
    /// The compressed blob's digest (manifest).
    pub digest: Digest,
    /// The diff_id the config names.
    pub diff_id: Digest,
    /// The blob: its digest and size, and its decompressed digest.
    pub blob: Check,
    /// The unpacked tree against the digest recorded when it was unpacked.
    pub unpacked: Check,
}

/// What [`LayerStore::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The image manifest's digest.
    pub manifest: Digest,
    /// The manifest's bytes against its digest.
    pub manifest_check: Check,
    /// The config's digest (the image id), and its check.
    pub config: Digest,
    pub config_check: Check,
    pub layers: Vec<LayerCheck>,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn is_ok(&self) -> bool {
        self.manifest_check.is_ok()
            && self.config_check.is_ok()
            && self
                .layers
                .iter()
                .all(|l| l.blob.is_ok() && l.unpacked.is_ok())
    }
}

/// The largest ratio of uncompressed to compressed layer size accepted: beyond it a layer is
/// treated as a decompression bomb. Deflate cannot exceed ~1032:1; legitimate layers are far
/// below (sparse zero-filled files being the extreme case).
pub const MAX_RATIO: u64 = 500;
/// Layers whose compressed size is small may still reach this uncompressed size.
pub const MIN_LIMIT: u64 = 1 << 30;

/// The uncompressed size bound for a layer blob of `compressed` bytes.
pub fn size_limit(compressed: u64) -> u64 {
    compressed
        .saturating_mul(MAX_RATIO)
        .clamp(MIN_LIMIT, DEFAULT_MAX_SIZE)
}

/// What [`LayerStore::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerGc {
    pub removed: Vec<Digest>,
    /// Their uncompressed sizes, summed.
    pub bytes: u64,
}

/// A shared hold on a [`LayerStore`] ([`LayerStore::hold`]); released when dropped.
#[derive(Debug)]
pub struct InUse {
    _file: fs::File,
}

/// The unpacked layers under `$HOIST_HOME/layers`.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

impl LayerStore {
    /// Opens (creating) the store at `home/layers`, removing unpacks a crashed process left.
    pub fn open(home: &Path) -> Result<Self> {
        let dir = home.join("layers");
        for d in ["tmp", "locks", "sha256"] {
            fs::create_dir_all(dir.join(d)).map_err(io_err(dir.join(d)))?;
        }
        let store = LayerStore { dir };
        store.clean_tmp(Duration::from_secs(3600));
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir
            .join(diff_id.algorithm().as_str())
            .join(diff_id.hex())
    }

    /// Where the unpacked tree of `diff_id` is (or would be).
    pub fn root(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join("root")
    }

    /// The record of an unpacked layer; `None` if it is not unpacked.
    pub fn record(&self, diff_id: &Digest) -> Result<Option<LayerRecord>> {
        let p = self.layer_dir(diff_id).join("layer.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| LayerError::Io {
                    path: p,
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LayerError::Io { path: p, source: e }),
        }
    }

    /// The diff_ids of the unpacked layers.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let d = self.dir.join("sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&d).map_err(io_err(&d))? {
            let e = e.map_err(io_err(&d))?;
            if let Ok(dg) = Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy()))
                && e.path().join("layer.json").exists()
            {
                out.push(dg);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Marks the store in use by a process that makes layers nothing references yet (a build:
    /// its new layers are referenced only once its cache records them). [`LayerStore::gc`]
    /// collects nothing while any such guard is held.
    pub fn hold(&self) -> Result<InUse> {
        let (f, p) = self.gc_lock()?;
        f.lock_shared().map_err(io_err(&p))?;
        Ok(InUse { _file: f })
    }

    /// The file whose flock [`LayerStore::hold`] shares and [`LayerStore::gc`] takes alone.
    fn gc_lock(&self) -> Result<(fs::File, PathBuf)> {
        let p = self.dir.join("locks").join("gc");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        Ok((f, p))
    }

    /// Removes every unpacked layer not in `keep` (the diff_ids images, containers and the build
    /// cache still reference). `None`, with nothing removed, while a [`LayerStore::hold`] guard
    /// is held somewhere (a build is running).
    pub fn gc(&self, keep: &HashSet<Digest>) -> Result<Option<LayerGc>> {
        let (f, p) = self.gc_lock()?;
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&p)(e)),
        }
        let mut report = LayerGc::default();
        for d in self.list()? {
            if keep.contains(&d) {
                continue;
            }
            let size = self.record(&d)?.map_or(0, |r| r.size);
            self.remove(&d)?;
            report.removed.push(d);
            report.bytes += size;
        }
        Ok(Some(report))
    }

    /// Removes an unpacked layer (the caller makes sure no container uses it).
    pub fn remove(&self, diff_id: &Digest) -> Result<()> {
        let _lock = self.lock(diff_id)?;
        let dir = self.layer_dir(diff_id);
        if !dir.exists() {
            return Ok(());
        }
        // Out of sight first, then deleted.
        let gone = self
            .dir
            .join("tmp")
            .join(format!("removed-{}", uuid::Uuid::new_v4()));
        fs::rename(&dir, &gone).map_err(io_err(&dir))?;
        remove_tree(&gone)
    }

    /// The image's layers unpacked and verified: their directories, bottom..top, to stack as
    /// overlay lower dirs. Missing layers are unpacked (once, whoever asks concurrently); a blob
    /// not yet verified for its layer is verified first.
    pub async fn prepare(&self, images: &ImageStore, image: &Image) -> Result<Vec<PathBuf>> {
        let pairs = layer_pairs(images, image).await?;
        let mut tasks = Vec::new();
        for (desc, diff_id) in pairs {
            let me = self.clone();
            let repo = image.repo.clone();
            let fut = async move {
                let digest = descriptor_digest(&desc)?;
                if me
                    .record(&diff_id)?
                    .is_some_and(|r| r.verified.contains(&digest))
                {
                    return Ok(me.root(&diff_id));
                }
                let blob = images
                    .store()
                    .blob_open(&repo, &digest, 0)
                    .await
                    .map_err(ImageError::from)?;
                let reader = tokio_util::io::SyncIoBridge::new(blob.reader);
                let size = desc.size();
                let me2 = me.clone();
                let d2 = diff_id.clone();
                tokio::task::spawn_blocking(move || me2.ensure(reader, &digest, size, &d2))
                    .await
                    .map_err(|e| LayerError::Read {
                        layer: diff_id.to_string(),
                        source: io::Error::other(e),
                    })??;
                Ok::<_, LayerError>(me.root(&diff_id))
            };
            tasks.push(fut);
        }
        let mut out = Vec::new();
        // At most two layers at once: each is a decompression on a core.
        let mut it = tasks.into_iter();
        loop {
            let a = it.next();
            let b = it.next();
            match (a, b) {
                (Some(a), Some(b)) => {
                    let (x, y) = tokio::join!(a, b);
                    out.push(x?);
                    out.push(y?);
                }
                (Some(a), None) => out.push(a.await?),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Blocking: makes sure the layer `diff_id` is unpacked and the blob `digest` (`size` bytes,
    /// read from `blob`) verified for it.
    pub fn ensure(
        &self,
        blob: impl Read + Send,
        digest: &Digest,
        size: u64,
        diff_id: &Digest,
    ) -> Result<()> {
        let _lock = self.lock(diff_id)?;
        if let Some(mut rec) = self.record(diff_id)? {
            if rec.verified.contains(digest) {
                return Ok(());
            }
            // Another compression of a layer already here: check it, without unpacking.
            let (got_digest, got_size, got_diff) =
                hash_blob(blob, size_limit(size)).map_err(|e| LayerError::Read {
                    layer: digest.to_string(),
                    source: e,
                })?;
            check_blob(digest, size, diff_id, &got_digest, got_size, &got_diff)?;
            rec.verified.insert(digest.clone());
            return self.write_record(&self.layer_dir(diff_id), &rec);
        }
        // Named after the layer, so a cleaner can tell it is in progress (its lock is held).
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}-{}", diff_id.hex(), uuid::Uuid::new_v4()));
        let root = tmp.join("root");
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let result = self.unpack_into(blob, digest, size, diff_id, &tmp, &root);
        if result.is_err() {
            let _ = remove_tree(&tmp);
        }
        result
    }

    /// Blocking: keeps the directory `tree` (overlay form, e.g. a build step's upper dir, on the
    /// store's filesystem) as the unpacked layer `diff_id`, with the blob `digest` recorded as
    /// verified, without unpacking the blob. For the process that wrote that blob from `tree`
    /// itself ([`write_layer`]): it vouches that `digest` decompresses to `diff_id` (`size`
    /// uncompressed bytes) and that `tree_digest` is [`tree_digest`] of `tree` (the same as
    /// `diff_id` when the layer was written without `source_date_epoch`). When the layer is
    /// already there, only the blob is added to its record and `tree` is left alone. `Ok(false)`:
    /// `tree` could not be moved into the store (another filesystem); nothing changed, and the
    /// caller falls back to [`LayerStore::ensure`].
    pub fn adopt(
        &self,
        tree: &Path,
        digest: &Digest,
        diff_id: &Digest,
        tree_digest: &Digest,
        size: u64,
    ) -> Result<bool> {
        let _lock = self.lock(diff_id)?;
        if let Some(mut rec) = self.record(diff_id)? {
            if rec.verified.insert(digest.clone()) {
                self.write_record(&self.layer_dir(diff_id), &rec)?;
            }
            return Ok(true);
        }
        let tmp = self.dir.join("tmp").join(uuid::Uuid::new_v4().to_string());
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let root = tmp.join("root");
        if let Err(e) = fs::rename(tree, &root) {
            let _ = fs::remove_dir(&tmp);
            if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
                return Ok(false);
            }
            return Err(LayerError::Io {
                path: tree.to_owned(),
                source: e,
            });
        }
        let rec = LayerRecord {
            diff_id: diff_id.clone(),
            tree: tree_digest.clone(),
            size,
            verified: BTreeSet::from([digest.clone()]),
        };
        let published = (|| {
            self.write_record(&tmp, &rec)?;
            let fd = fs::File::open(&tmp).map_err(io_err(&tmp))?;
            rustix::fs::syncfs(&fd).map_err(|e| LayerError::Io {
                path: tmp.clone(),
                source: e.into(),
            })?;
            let dest = self.layer_dir(diff_id);
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            sync_dir(dest.parent().expect("a parent"));
            Ok(())
        })();
        if published.is_err() {
            let _ = remove_tree(&tmp);
        }
        published.map(|()| true)
    }

    fn unpack_into(
        &self,
        blob: impl Read + Send,
        digest: &Digest,
        size: u64,
        diff_id: &Digest,
        tmp: &Path,
        root: &Path,
    ) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).map_err(io_err(root))?;
        let mut hashed = HashingReader::new(blob);
        let stats = {
            let plain = decompress(&mut hashed).map_err(|e| LayerError::Read {
                layer: digest.to_string(),
                source: e,
            })?;
            unpack_layer(
                plain,
                root,
                &UnpackOptions {
                    whiteouts: Whiteouts::Overlay,
                    max_size: size_limit(size),
                    ..UnpackOptions::default()
                },
            )
            .map_err(|e| LayerError::Unpack {
                layer: digest.to_string(),
                source: e,
            })?
        };
        // Whatever the decompressor left unread (trailing bytes) is part of the blob.
        io::copy(&mut hashed, &mut io::sink()).map_err(|e| LayerError::Read {
            layer: digest.to_string(),
            source: e,
        })?;
        let (got_digest, got_size) = hashed.finish();
        check_blob(digest, size, diff_id, &got_digest, got_size, &stats.diff_id)?;
        let tree = tree_digest(root).map_err(|e| LayerError::Tree {
            layer: diff_id.to_string(),
            source: e,
        })?;
        let rec = LayerRecord {
            diff_id: diff_id.clone(),
            tree,
            size: stats.size,
            verified: BTreeSet::from([digest.clone()]),
        };
        self.write_record(tmp, &rec)?;
        // Durable before visible.
        let fd = fs::File::open(tmp).map_err(io_err(tmp))?;
        rustix::fs::syncfs(&fd).map_err(|e| LayerError::Io {
            path: tmp.to_owned(),
            source: e.into(),
        })?;
        let dest = self.layer_dir(diff_id);
        fs::rename(tmp, &dest).map_err(io_err(&dest))?;
        sync_dir(dest.parent().expect("a parent"));
        Ok(())
    }

    fn write_record(&self, dir: &Path, rec: &LayerRecord) -> Result<()> {
        let p = dir.join("layer.json");
        let t = dir.join(format!("layer.json.{}", uuid::Uuid::new_v4()));
        let bytes = serde_json::to_vec_pretty(rec).expect("a record serialises");
        fs::write(&t, bytes).map_err(io_err(&t))?;
        fs::File::open(&t)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&t))?;
        fs::rename(&t, &p).map_err(io_err(&p))?;
        sync_dir(dir);
        Ok(())
    }

    fn lock(&self, diff_id: &Digest) -> Result<fs::File> {
        let p = self.lock_path(diff_id);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            LayerError::Io {
                path: p,
                source: e.into(),
            }
        })?;
        Ok(f)
    }

    /// Whether another caller holds the lock of `diff_id` right now.
    fn is_locked(&self, diff_id: &Digest) -> bool {
        let p = self.lock_path(diff_id);
        let Ok(f) = fs::File::open(&p) else {
            return false;
        };
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
    }

    fn lock_path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join("locks").join(format!(
            "{}-{}.lock",
            diff_id.algorithm().as_str(),
            diff_id.hex()
        ))
    }

    fn clean_tmp(&self, older_than: Duration) {
        let Ok(rd) = fs::read_dir(self.dir.join("tmp")) else {
            return;
        };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > older_than);
            if !old {
                continue;
            }
            // An unpack in progress holds its layer's lock: leave it be.
            let name = e.file_name().to_string_lossy().into_owned();
            let in_progress = name
                .split_once('-')
                .and_then(|(hex, _)| Digest::parse(&format!("sha256:{hex}")).ok())
                .is_some_and(|d| self.is_locked(&d));
            if !in_progress {
                let _ = remove_tree(&e.path());
            }
        }
    }

    /// Re-checks the image: the manifest against its digest, the config against its digest,
    /// every layer blob (digest, size, and decompressed diff_id), and every unpacked layer tree
    /// against the digest recorded when it was unpacked. Problems are reported, not returned as
    /// errors; an error means the check itself could not run.
    pub async fn verify(&self, images: &ImageStore, image: &Image) -> Result<VerifyReport> {
        let manifest_check = if image.digest.matches(&image.manifest_bytes) {
            Check::Ok
        } else {
            Check::Mismatch {
                what: "manifest digest",
                expected: image.digest.to_string(),
                actual: Digest::sha256_of(&image.manifest_bytes).to_string(),
            }
        };
        let config = image.id()?;
        let (config_check, pairs) = match layer_pairs(images, image).await {
            Ok(p) => (Check::Ok, p),
            Err(e) => {
                return Ok(VerifyReport {
                    manifest: image.digest.clone(),
                    manifest_check,
                    config,
                    config_check: Check::Failed(e.to_string()),
                    layers: Vec::new(),
                });
            }
        };
        let mut layers = Vec::new();
        for (desc, diff_id) in pairs {
            let digest = descriptor_digest(&desc)?;
            let size = desc.size();
            let blob = match images.store().blob_open(&image.repo, &digest, 0).await {
                Ok(b) => {
                    let reader = tokio_util::io::SyncIoBridge::new(b.reader);
                    let (d, id) = (digest.clone(), diff_id.clone());
                    tokio::task::spawn_blocking(move || match hash_blob(reader, size_limit(size)) {
                        Ok((gd, gs, gdiff)) => match check_blob(&d, size, &id, &gd, gs, &gdiff) {
                            Ok(()) => Check::Ok,
                            Err(LayerError::Mismatch {
                                what,
                                expected,
                                actual,
                                ..
                            }) => Check::Mismatch {
                                what,
                                expected,
                                actual,
                            },
                            Err(e) => Check::Failed(e.to_string()),
                        },
                        Err(e) => Check::Failed(format!("reading the blob: {e}")),
                    })
                    .await
                    .unwrap_or_else(|e| Check::Failed(e.to_string()))
                }
                Err(e) => Check::Failed(e.to_string()),
            };
            let me = self.clone();
            let id = diff_id.clone();
            let unpacked = tokio::task::spawn_blocking(move || me.verify_tree(&id))
                .await
                .unwrap_or_else(|e| Check::Failed(e.to_string()));
            layers.push(LayerCheck {
                digest,
                diff_id,
                blob,
                unpacked,
            });
        }
        Ok(VerifyReport {
            manifest: image.digest.clone(),
            manifest_check,
            config,
            config_check,
            layers,
        })
    }

    /// The unpacked tree of `diff_id` against its record.
    pub fn verify_tree(&self, diff_id: &Digest) -> Check {
        let rec = match self.record(diff_id) {
            Ok(Some(r)) => r,
            Ok(None) => return Check::Absent,
            Err(e) => return Check::Failed(e.to_string()),
        };
        if rec.diff_id != *diff_id {
            return Check::Mismatch {
                what: "recorded diff_id",
                expected: diff_id.to_string(),
                actual: rec.diff_id.to_string(),
            };
        }
        match tree_digest(&self.root(diff_id)) {
            Ok(t) if t == rec.tree => Check::Ok,
            Ok(t) => Check::Mismatch {
                what: "unpacked tree",
                expected: rec.tree.to_string(),
                actual: t.to_string(),
            },
            Err(e) => Check::Failed(e.to_string()),
        }
    }
}

/// The manifest's layer descriptors paired with the config's diff_ids.
async fn layer_pairs(images: &ImageStore, image: &Image) -> Result<Vec<(Descriptor, Digest)>> {
    let (config, _) = images.config(image).await?;
    let diff_ids = config.rootfs().diff_ids();
    let layers = image.manifest.layers();
    if diff_ids.len() != layers.len() {
        return Err(LayerError::Invalid {
            image: image.digest.to_string(),
            reason: format!(
                "{} layers in the manifest but {} diff_ids in the config",
                layers.len(),
                diff_ids.len()
            ),
        });
    }
    layers
        .iter()
        .zip(diff_ids)
        .map(|(l, d)| {
            let d = Digest::parse(d).map_err(|e| LayerError::Invalid {
                image: image.digest.to_string(),
                reason: format!("diff_id {d:?}: {e}"),
            })?;
            Ok((l.clone(), d))
        })
        .collect()
}

fn descriptor_digest(desc: &Descriptor) -> Result<Digest> {
    Digest::parse(desc.digest().as_ref()).map_err(|e| LayerError::Invalid {
        image: desc.digest().to_string(),
        reason: format!("layer digest: {e}"),
    })
}

fn check_blob(
    digest: &Digest,
    size: u64,
    diff_id: &Digest,
    got_digest: &Digest,
    got_size: u64,
    got_diff: &Digest,
) -> Result<()> {
    let mismatch = |what, expected: String, actual: String| LayerError::Mismatch {
        layer: digest.to_string(),
        what,
        expected,
        actual,
    };
    if got_digest != digest {
        return Err(mismatch(
            "digest",
            digest.to_string(),
            got_digest.to_string(),
        ));
    }
    if got_size != size {
        return Err(mismatch("size", size.to_string(), got_size.to_string()));
    }
    if got_diff != diff_id {
        return Err(mismatch(
            "diff_id",
            diff_id.to_string(),
            got_diff.to_string(),
        ));
    }
    Ok(())
}

/// Streams a blob: its digest and size, and the digest of its decompressed bytes (bounded).
fn hash_blob(blob: impl Read + Send, limit: u64) -> io::Result<(Digest, u64, Digest)> {
    let mut hashed = HashingReader::new(blob);
    let mut diff = Digester::sha256();
    {
        let plain = decompress(&mut hashed)?;
        let mut bounded = plain.take(limit.saturating_add(1));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = bounded.read(&mut buf)?;
            if n == 0 {
                break;
            }
            diff.update(&buf[..n]);
        }
        if diff.len() > limit {
            return Err(io::Error::other(format!(
                "the layer is larger than the limit of {limit} bytes"
            )));
        }
    }
    io::copy(&mut hashed, &mut io::sink())?;
    let (d, n) = hashed.finish();
    Ok((d, n, diff.finish()))
}

/// The canonical digest of a tree: the diff_id of its uncompressed [`write_layer`] tar.
pub fn tree_digest(root: &Path) -> Result<Digest, RootfsError> {
    let info = write_layer(
        root,
        io::sink(),
        &LayerOptions {
            compression: Compression::None,
            source_date_epoch: None,
            ..LayerOptions::default()
        },
    )?;
    Ok(info.diff_id)
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Removes a tree this store owns, never following symlinks in it.
fn remove_tree(p: &Path) -> Result<()> {
    let parent = p.parent().expect("a parent");
    let name = p.file_name().expect("a name");
    let dir = fs::File::open(parent).map_err(io_err(parent))?;
    use std::os::unix::ffi::OsStrExt;
    match crate::unpack::remove_all_at(&dir, name.as_bytes()) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(io_err(p)),
    }
}
