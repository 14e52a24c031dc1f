//! Layer compressions: which one a stream is (by its first bytes), their media types, and the
//! gzip level hoist writes layers with.

use std::io::{self, BufRead};

use crate::media_type;

/// The default gzip level of the layers hoist writes (commit, import, save...). Level and
/// backend (flate2's zlib-rs) are pinned: they decide the bytes, so the digests.
pub const GZIP_LEVEL: u32 = 6;

/// How a layer's tar is compressed (or, from [`sniff`], what a stream's first bytes say it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip (one or several members).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// A plain tar.
    None,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            Compression::None => media_type::OCI_LAYER_TAR,
        }
    }
}

/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The zstd frame magic bytes.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What the first bytes of a stream say it is: gzip, zstd, or neither ([`Compression::None`]).
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// [`sniff`] of what `r` buffers first, without consuming it.
pub fn sniff_reader<R: BufRead + ?Sized>(r: &mut R) -> io::Result<Compression> {
    Ok(sniff(r.fill_buf()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(sniff(b"ustar"), Compression::None);
        assert_eq!(sniff(&[0x1f]), Compression::None);
        assert_eq!(
            sniff_reader(&mut &[0x1f, 0x8b][..]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::default().media_type(),
            media_type::OCI_LAYER_GZIP
        );
    }
}
