//! The only place that knows the storage key layout.
//!
//! ```text
//! <driver root>
//! ├── blobs/
//! │   └── <algorithm>/<first two hex>/<hex>/data   committed content: layers, configs, manifests;
//! │                                                 global and deduplicated across repositories
//! └── uploads/
//!     └── <session id>/data                         bytes of an upload in progress; its offset
//!                                                   and partial hash live in the metadata store
//! ```
//!
//! Which repository may see which blob, tags, manifests and referrers are metadata, not keys: a
//! blob is visible in a repository only through a link row in the [`crate::MetadataStore`].

use hoist_oci::Digest;

/// Prefix of every committed blob.
pub const BLOBS: &str = "blobs";
/// Prefix of every upload session.
pub const UPLOADS: &str = "uploads";

/// Where a committed blob's bytes live.
pub fn blob_data(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{BLOBS}/{}/{}/{hex}/data", digest.algorithm(), &hex[..2])
}

/// The directory holding a committed blob.
pub fn blob_dir(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{BLOBS}/{}/{}/{hex}", digest.algorithm(), &hex[..2])
}

/// The digest a `blobs/<alg>/<xx>/<hex>` key names, if it is one.
pub fn blob_digest_of(key: &str) -> Option<Digest> {
    let mut parts = key.strip_prefix(BLOBS)?.strip_prefix('/')?.split('/');
    let (alg, prefix, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !hex.starts_with(prefix) {
        return None;
    }
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// The name of the lock file commits and garbage collection coordinate through (fs stores).
pub const LOCK_FILE: &str = "gc.lock";

/// The directory of one upload session.
pub fn upload_dir(id: &str) -> String {
    format!("{UPLOADS}/{id}")
}

/// The bytes of one upload session.
pub fn upload_data(id: &str) -> String {
    format!("{UPLOADS}/{id}/data")
}

/// The session id in an `uploads/<id>` key, if it is one.
pub fn upload_id_of(key: &str) -> Option<&str> {
    key.strip_prefix(UPLOADS)?
        .strip_prefix('/')
        .filter(|id| !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            blob_data(&d),
            "blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data"
        );
        assert_eq!(blob_digest_of(&blob_dir(&d)), Some(d.clone()));
        assert_eq!(blob_digest_of(&blob_data(&d)), None);
        assert_eq!(blob_digest_of("blobs/sha256/zz/e3b0"), None);
        assert_eq!(upload_data("abc"), "uploads/abc/data");
        assert_eq!(upload_id_of(&upload_dir("abc")), Some("abc"));
        assert_eq!(upload_id_of("uploads/abc/data"), None);
        assert_eq!(upload_id_of("blobs/x"), None);
    }
}
