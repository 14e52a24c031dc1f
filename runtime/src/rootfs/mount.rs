//! The rootfs a container runs in: an overlay of the unpacked layers under its upper dir, or,
//! where overlay is unavailable, a merged copy.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use hoist_oci::compression::Compression;
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use super::write::{LayerOptions, write_layer};
use super::{Result, RootfsError};
use crate::unpack::{UnpackOptions, Whiteouts, unpack_layer};

/// Set to `1` to make [`Rootfs::mount`] copy instead of mounting an overlay.
pub const FORCE_COPY_ENV: &str = "HOIST_ROOTFS_COPY";

/// The file in the work dir that says a copy rootfs is complete.
pub(super) const COPY_DONE: &str = "hoist-copy-complete";

/// How a [`Rootfs`] was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    /// An overlay mount: lowers read-only, writes go to the upper dir.
    Overlay,
    /// An image without layers: the upper dir bind-mounted.
    Bind,
    /// A merged copy of the lowers (and the upper) in the target directory itself; writes go to
    /// the target. Made once per target; later mounts reuse it.
    Copy,
}

/// A container's root filesystem at `target`.
#[derive(Debug)]
pub struct Rootfs {
    target: PathBuf,
    kind: RootfsKind,
}

impl Rootfs {
    /// Mounts `lowers` (bottom..top, overlay form as the layer store keeps them) with `upper`
    /// and `work` (empty dirs on the same filesystem as each other) at `target` (created if
    /// missing). Falls back to a copy when overlay cannot be mounted (no overlay support, no
    /// privilege, an unsupported filesystem under the dirs, or [`FORCE_COPY_ENV`] set).
    pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<Rootfs> {
        if std::env::var_os(FORCE_COPY_ENV).is_some_and(|v| v == "1") {
            return Rootfs::mount_copy(lowers, upper, work, target);
        }
        for d in [upper, work, target] {
            fs::create_dir_all(d).map_err(|e| RootfsError::io(d, e))?;
        }
        if lowers.is_empty() {
            rustix::mount::mount_bind(upper, target).map_err(|e| RootfsError::Mount {
                target: target.to_owned(),
                reason: format!("bind mount of {}: {e}", upper.display()),
            })?;
            return Ok(Rootfs {
                target: target.to_owned(),
                kind: RootfsKind::Bind,
            });
        }
        match mount_overlay(lowers, upper, work, target) {
            Ok(()) => Ok(Rootfs {
                target: target.to_owned(),
                kind: RootfsKind::Overlay,
            }),
            Err(reason) => {
                tracing::warn!(
                    target = %target.display(),
                    "overlay unavailable ({reason}); copying the layers instead"
                );
                Rootfs::mount_copy(lowers, upper, work, target)
            }
        }
    }

    /// The copy fallback, explicitly: the lowers and then `upper` are applied in turn onto
    /// `target` (whiteouts delete, opaque directories drop lower contents), with the same
    /// containment as unpacking. A complete copy is recorded in `work` and reused.
    pub fn mount_copy(
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<Rootfs> {
        for d in [upper, work, target] {
            fs::create_dir_all(d).map_err(|e| RootfsError::io(d, e))?;
        }
        let done = work.join(COPY_DONE);
        if !done.exists() {
            // Whatever an interrupted copy left goes first.
            for e in fs::read_dir(target).map_err(|e| RootfsError::io(target, e))? {
                let e = e.map_err(|e| RootfsError::io(target, e))?;
                let dir = fs::File::open(target).map_err(|e| RootfsError::io(target, e))?;
                crate::unpack::remove_all_at(&dir, e.file_name().as_bytes())
                    .map_err(|err| RootfsError::io(e.path(), err))?;
            }
            for layer in lowers.iter().map(PathBuf::as_path).chain([upper]) {
                copy_layer(layer, target)?;
            }
            fs::write(&done, b"").map_err(|e| RootfsError::io(&done, e))?;
        }
        Ok(Rootfs {
            target: target.to_owned(),
            kind: RootfsKind::Copy,
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn kind(&self) -> RootfsKind {
        self.kind
    }

    /// Unmounts an overlay or bind rootfs; a copy stays where it is (it is the container's
    /// state).
    pub fn unmount(self) -> Result<()> {
        match self.kind {
            RootfsKind::Copy => Ok(()),
            _ => unmount(&self.target),
        }
    }
}

/// Unmounts whatever is mounted at `target` (for a process other than the one that mounted it);
/// nothing mounted there is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(target, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH).map_err(
                |e| RootfsError::Mount {
                    target: target.to_owned(),
                    reason: format!("unmount: {e}"),
                },
            )
        }
        Err(e) => Err(RootfsError::Mount {
            target: target.to_owned(),
            reason: format!("unmount: {e}"),
        }),
    }
}

/// The largest mount data the kernel takes (a page).
const MOUNT_DATA_MAX: usize = 4095;

fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> std::result::Result<(), String> {
    let bad = |p: &Path| {
        let b = p.as_os_str().as_bytes();
        b.contains(&b',') || b.contains(&b':') || b.contains(&b'\\')
    };
    if let Some(p) = lowers
        .iter()
        .map(PathBuf::as_path)
        .chain([upper, work])
        .find(|p| bad(p))
    {
        return Err(format!("{} has a ',', ':' or '\\'", p.display()));
    }
    let data = |lower: Vec<String>| {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        )
    };
    let mut opts = data(
        lowers
            .iter()
            .rev()
            .map(|l| l.display().to_string())
            .collect(),
    );
    // Many long paths: name the lowers through descriptors, which overlay resolves at mount.
    let mut _fds: Vec<OwnedFd> = Vec::new();
    if opts.len() > MOUNT_DATA_MAX {
        let mut names = Vec::new();
        for l in lowers.iter().rev() {
            let fd = rustix::fs::open(
                l,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("{}: {e}", l.display()))?;
            names.push(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            _fds.push(fd);
        }
        opts = data(names);
        if opts.len() > MOUNT_DATA_MAX {
            return Err(format!(
                "{} lower dirs are too many for one mount",
                lowers.len()
            ));
        }
    }
    let data = std::ffi::CString::new(opts).map_err(|e| format!("mount data: {e}"))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| format!("mount overlay: {e}"))
}

/// Applies one overlay-form dir onto `target`: written as a plain layer on a thread and
/// unpacked in apply mode, so whiteouts and opaque directories mean what they mean in overlay and
/// every path resolves inside `target` (a rootfs copy, and the builder's `--output type=local`).
pub fn copy_layer(layer: &Path, target: &Path) -> Result<()> {
    let (reader, writer) = io::pipe().map_err(RootfsError::Write)?;
    let src = layer.to_owned();
    let producer = std::thread::spawn(move || {
        write_layer(
            &src,
            io::BufWriter::with_capacity(256 * 1024, writer),
            &LayerOptions {
                compression: Compression::None,
                source_date_epoch: None,
                ..LayerOptions::default()
            },
        )
    });
    let unpacked = unpack_layer(
        io::BufReader::with_capacity(256 * 1024, reader),
        target,
        &UnpackOptions {
            whiteouts: Whiteouts::Apply,
            max_size: u64::MAX,
            ..UnpackOptions::default()
        },
    );
    let written = producer
        .join()
        .map_err(|_| RootfsError::Write(io::Error::other("the copy thread panicked")))?;
    written?;
    unpacked.map_err(|e| RootfsError::Invalid {
        path: layer.to_owned(),
        reason: format!("copying into {}: {e}", target.display()),
    })?;
    Ok(())
}
