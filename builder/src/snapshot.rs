//! Snapshots: a build's filesystem state as a stack of layers, and the unpacked form of each
//! layer a build reads (`$HOIST_HOME/builder/snapshots/<diff_id hex>/`, overlay form: whiteouts
//! are character devices 0/0, opaque directories carry `trusted.overlay.opaque=y`), so they are
//! usable directly as overlay lower dirs.
//!
//! A layer the build produced is its upper dir, renamed into place; a base image's layer or a
//! cached layer whose dir is gone is unpacked from its blob once (into a temp dir, then renamed,
//! so concurrent builds never see half a layer).

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

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

impl CacheValue for Snapshot {
    fn blobs(&self) -> Vec<Digest> {
        self.layers
            .iter()
            .filter(|l| l.repo.is_none())
            .map(|l| l.digest.clone())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: entry {entry}: {reason}")]
    Entry {
        layer: String,
        entry: String,
        reason: String,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SnapshotError {
    let context = context.into();
    move |source| SnapshotError::Io { context, source }
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// The unpacked layers of builds.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir.join("tmp"))
            .map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(Snapshots {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    pub fn has(&self, diff_id: &Digest) -> bool {
        self.path(diff_id).is_dir()
    }

    /// A fresh empty directory to write into (an upper dir, a work dir).
    pub fn temp_dir(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("work-")
            .tempdir_in(self.dir.join("tmp"))
            .map_err(io_err("creating a build directory"))
    }

    /// Keeps `upper` as the unpacked form of the layer `diff_id` (unless one is there already).
    pub fn adopt(&self, upper: &Path, diff_id: &Digest) -> Result<PathBuf> {
        let dest = self.path(diff_id);
        if !dest.is_dir() {
            match fs::rename(upper, &dest) {
                Ok(()) => {}
                // Another build adopted the same layer first.
                Err(_) if dest.is_dir() => {}
                Err(e) => return Err(io_err(format!("keeping {}", dest.display()))(e)),
            }
        }
        Ok(dest)
    }

    /// Unpacks the (possibly compressed) layer tar `blob` as `diff_id`, unless it is there.
    pub fn unpack(&self, diff_id: &Digest, blob: impl Read) -> Result<PathBuf> {
        let dest = self.path(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self.temp_dir()?;
        let root = tmp.path().join("layer");
        fs::create_dir(&root).map_err(io_err(format!("creating {}", root.display())))?;
        unpack_layer(blob, &root, diff_id.as_str())?;
        self.adopt(&root, diff_id)
    }
}

/// Decompresses a layer stream (gzip, zstd or plain tar, sniffed).
pub fn decompressed<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(r)?))
    } else {
        Ok(Box::new(r))
    }
}

/// Extracts one layer tar into `root` in overlay form: `.wh.NAME` becomes a character device 0/0,
/// `.wh..wh..opq` the opaque xattr on its directory. Paths are confined to `root` (entries with
/// `..` or absolute names are refused, and `tar` refuses to write through symlinks out of it).
pub fn unpack_layer(blob: impl Read, root: &Path, what: &str) -> Result<()> {
    let input = decompressed(blob).map_err(io_err(format!("reading layer {what}")))?;
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let bad = |entry: &str, reason: String| SnapshotError::Entry {
        layer: what.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    for entry in archive
        .entries()
        .map_err(io_err(format!("reading layer {what}")))?
    {
        let mut entry = entry.map_err(io_err(format!("reading layer {what}")))?;
        let path = entry
            .path()
            .map_err(io_err(format!("reading layer {what}")))?
            .into_owned();
        let shown = path.display().to_string();
        let mut clean = PathBuf::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => clean.push(p),
                Component::CurDir | Component::RootDir => {}
                _ => return Err(bad(&shown, "path leaves the layer".into())),
            }
        }
        let Some(name) = clean.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if name == crate::snapshot::OPAQUE {
            let dir = root.join(clean.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
            set_opaque(&dir).map_err(|e| bad(&shown, e.to_string()))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let parent = root.join(clean.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
            let target = parent.join(hidden);
            let _ = fs::remove_dir_all(&target);
            let _ = fs::remove_file(&target);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &target,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )
            .map_err(|e| bad(&shown, format!("making a whiteout: {e}")))?;
            continue;
        }
        let ok = entry
            .unpack_in(root)
            .map_err(|e| bad(&shown, e.to_string()))?;
        if !ok {
            return Err(bad(&shown, "path leaves the layer".into()));
        }
    }
    Ok(())
}

pub(crate) const WHITEOUT: &str = ".wh.";
pub(crate) const OPAQUE: &str = ".wh..wh..opq";

fn set_opaque(dir: &Path) -> io::Result<()> {
    rustix::fs::setxattr(
        dir,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(io::Error::from)
}

/// An overlay mount of `lowers` (bottom..top) with `upper`, unmounted on drop. Read-only when
/// `upper` is `None`.
pub struct Overlay {
    target: PathBuf,
    mounted: bool,
}

impl Overlay {
    pub fn mount(
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        empty: &Path,
        target: &Path,
    ) -> Result<Overlay> {
        let mut lower: Vec<String> = lowers
            .iter()
            .rev()
            .map(|p| escape_overlay(&p.to_string_lossy()))
            .collect();
        // overlay needs a lower dir, and two for a read-only mount.
        if lower.is_empty() || (upper.is_none() && lower.len() < 2) {
            lower.push(escape_overlay(&empty.to_string_lossy()));
        }
        let mut data = format!("lowerdir={}", lower.join(":"));
        if let Some((u, w)) = upper {
            data.push_str(&format!(
                ",upperdir={},workdir={}",
                escape_overlay(&u.to_string_lossy()),
                escape_overlay(&w.to_string_lossy())
            ));
        }
        let flags = if upper.is_none() {
            rustix::mount::MountFlags::RDONLY
        } else {
            rustix::mount::MountFlags::empty()
        };
        let data = std::ffi::CString::new(data).map_err(|_| SnapshotError::Io {
            context: format!("mounting an overlay on {}", target.display()),
            source: io::Error::other("a layer path holds a NUL byte"),
        })?;
        rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str())).map_err(
            |e| SnapshotError::Io {
                context: format!("mounting an overlay on {}", target.display()),
                source: e.into(),
            },
        )?;
        Ok(Overlay {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }

    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
            SnapshotError::Io {
                context: format!("unmounting {}", self.target.display()),
                source: e.into(),
            }
        })
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.mounted {
            let _ = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn escape_overlay(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

/// Looks `rel` up through layer dirs (bottom..top) as overlay would: the topmost entry wins, a
/// whiteout or an opaque directory above hides what is below. Returns the path of the file.
pub fn lookup(lowers: &[PathBuf], rel: &Path) -> Option<PathBuf> {
    let comps: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    'layers: for dir in lowers.iter().rev() {
        let mut p = dir.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(md) => {
                    if md.file_type().is_char_device() && md.rdev() == 0 {
                        return None;
                    }
                    if i + 1 < comps.len() && md.is_dir() && is_opaque(&p) {
                        // Below this layer, the directory's contents are hidden.
                        let rest: PathBuf = comps[i + 1..].iter().collect();
                        return fs::symlink_metadata(p.join(&rest))
                            .ok()
                            .filter(|m| !(m.file_type().is_char_device() && m.rdev() == 0))
                            .map(|_| p.join(rest));
                    }
                }
                Err(_) => continue 'layers,
            }
        }
        return Some(p);
    }
    None
}

fn is_opaque(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(p, "trusted.overlay.opaque", &mut buf), Ok(n) if &buf[..n] == b"y")
}

/// The mode bits of a path as docker's `--chmod` writes them.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
