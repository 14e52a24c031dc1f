//! Root filesystems: a directory tree as an OCI layer ([`write_layer`]), what changed in an upper
//! dir ([`diff`]), and the rootfs a container runs in ([`Rootfs::mount`]: overlay of the unpacked
//! layers, or a copy when overlay is unavailable).
//!
//! Overlay form vs OCI form: an overlay upper (or an unpacked lower dir in the layer store) marks
//! a deleted path with a character device 0/0 and a directory whose lower contents are hidden with
//! the xattr `trusted.overlay.opaque=y`; an OCI layer tar marks them with an empty file
//! `.wh.NAME` and `DIR/.wh..wh..opq`. [`write_layer`] translates overlay form to OCI form,
//! [`crate::unpack`] the other way.
//!
//! Order convention: every list of lower dirs in this crate is bottom..top (the order of the
//! manifest's layers); [`Rootfs::mount`] reverses it for overlay's `lowerdir=`.

mod compress;
mod copy_changes;
mod diff;
mod mount;
mod write;

use std::io;
use std::path::PathBuf;

pub use copy_changes::sync_copy_changes;
pub use diff::{Change, ChangeKind, diff};
/// The default gzip level of the layers hoist writes; a caller may pin another
/// ([`LayerOptions::gzip_level`]; `hoist build` does), with the same guarantee of the same bytes.
pub use hoist_oci::compression::{Compression, GZIP_LEVEL};
pub use mount::{FORCE_COPY_ENV, Rootfs, RootfsKind, copy_layer, unmount};
pub use write::{LayerInfo, LayerOptions, write_layer};

/// The OCI whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI opaque-directory marker (a file of this name in the directory).
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The overlay xattr marking an opaque directory.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The same, for overlay mounted with `userxattr`.
pub const OVERLAY_USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

/// What went wrong writing, comparing or mounting a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("writing the layer: {0}")]
    Write(#[source] io::Error),
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("mounting the rootfs at {}: {reason}", target.display())]
    Mount { target: PathBuf, reason: String },
}

impl RootfsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        RootfsError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = RootfsError> = std::result::Result<T, E>;

/// Whether a directory entry's metadata is an overlay whiteout (a character device 0/0).
pub(crate) fn is_overlay_whiteout(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Whether `path` (a directory, not followed if a symlink) is marked opaque by overlay.
pub(crate) fn is_overlay_opaque(path: &std::path::Path) -> bool {
    [OVERLAY_OPAQUE_XATTR, OVERLAY_USER_OPAQUE_XATTR]
        .iter()
        .any(|name| {
            let mut buf = [0u8; 8];
            matches!(rustix::fs::lgetxattr(path, *name, &mut buf), Ok(n) if &buf[..n] == b"y")
        })
}
