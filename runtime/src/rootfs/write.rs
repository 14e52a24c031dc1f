//! A directory tree (an overlay upper dir, or any dir) as a deterministic OCI layer tar.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use hoist_oci::compression::{Compression, GZIP_LEVEL};
use hoist_oci::{Digest, Digester, HashingWriter};

use super::compress::Compressor;
use super::{
    OPAQUE_MARKER, Result, RootfsError, WHITEOUT_PREFIX, is_overlay_opaque, is_overlay_whiteout,
};

/// Options for [`write_layer`].
#[derive(Debug, Clone)]
pub struct LayerOptions {
    /// gzip (zlib-rs at [`LayerOptions::gzip_level`]; layers over 16 MiB are concatenated gzip
    /// members of 16 MiB of input each, compressed on every core: the bytes do not depend on the
    /// number of cores), zstd (level 3), or a plain tar.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are written as this.
    pub source_date_epoch: Option<i64>,
    /// The gzip level (1..=9) for [`Compression::Gzip`]; [`GZIP_LEVEL`] by default. Part of what
    /// decides the bytes: the same tree and level give the same digest.
    pub gzip_level: u32,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::default(),
            source_date_epoch: None,
            gzip_level: GZIP_LEVEL,
        }
    }
}

/// What [`write_layer`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// The digest of the bytes written (the manifest's layer descriptor digest).
    pub digest: Digest,
    /// The number of bytes written.
    pub size: u64,
    /// The number of bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    pub media_type: &'static str,
}

/// Writes the tree under `upper` to `out` as an OCI layer, and returns its digests.
///
/// Entries are sorted by name within each directory (a directory before its contents), with
/// numeric uid/gid and empty user and group names, mode bits including setuid/setgid/sticky,
/// mtimes in whole seconds clamped to `opts.source_date_epoch`. Overlay whiteouts (character
/// devices 0/0) become `.wh.NAME`, opaque directories (`trusted.overlay.opaque=y`) get a
/// `DIR/.wh..wh..opq` entry right after them. Files sharing an inode become hard links to the
/// first of them; symlinks, character and block devices and fifos are kept; sockets are skipped
/// (a tar cannot hold them), as docker does. Extended attributes are written as PAX
/// `SCHILY.xattr.*` records, except overlay's own (`trusted.overlay.*`, `user.overlay.*`). Names
/// and link targets too long for ustar, and sizes over 8 GiB, are written as PAX records.
/// The same tree gives the same bytes.
pub fn write_layer(upper: &Path, out: impl Write, opts: &LayerOptions) -> Result<LayerInfo> {
    let md = fs::symlink_metadata(upper).map_err(|e| RootfsError::io(upper, e))?;
    if !md.is_dir() {
        return Err(RootfsError::Invalid {
            path: upper.to_owned(),
            reason: "not a directory".to_owned(),
        });
    }
    let compressed = HashingWriter::new(out);
    let compressor = Compressor::new(opts.compression, opts.gzip_level, compressed)
        .map_err(RootfsError::Write)?;
    let mut w = TarWriter {
        out: compressor,
        diff: Digester::sha256(),
        links: HashMap::new(),
        epoch: opts.source_date_epoch,
    };
    w.dir(upper, &mut Vec::new())?;
    // The end of the archive: two zero blocks.
    w.put(&[0u8; 1024]).map_err(RootfsError::Write)?;
    let uncompressed_size = w.diff.len();
    let diff_id = w.diff.finish();
    let compressed = w.out.finish().map_err(RootfsError::Write)?;
    let (digest, size, _) = compressed.finish();
    Ok(LayerInfo {
        digest: if opts.compression == Compression::None {
            diff_id.clone()
        } else {
            digest
        },
        diff_id,
        size,
        uncompressed_size,
        media_type: opts.compression.media_type(),
    })
}

struct TarWriter<W: Write> {
    out: Compressor<HashingWriter<W>>,
    diff: Digester,
    /// (dev, ino) of files with several links -> the name they were first written under.
    links: HashMap<(u64, u64), Vec<u8>>,
    epoch: Option<i64>,
}

/// The largest size a ustar header holds in octal.
const USTAR_MAX_SIZE: u64 = 0o77777777777;
/// The largest uid/gid a ustar header holds in octal.
const USTAR_MAX_ID: u64 = 0o7777777;

impl<W: Write> TarWriter<W> {
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.diff.update(data);
        self.out.write_all(data)
    }

    /// Writes the entries of the directory `path` (tar name `prefix`, empty for the root).
    fn dir(&mut self, path: &Path, prefix: &mut Vec<u8>) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(path)
            .map_err(|e| RootfsError::io(path, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| RootfsError::io(path, e))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let full = path.join(&name);
            let md = fs::symlink_metadata(&full).map_err(|e| RootfsError::io(&full, e))?;
            let len = prefix.len();
            let ft = md.file_type();
            if is_overlay_whiteout(&md) {
                prefix.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                prefix.extend_from_slice(name.as_bytes());
                self.marker(&full, &md, prefix)?;
            } else if ft.is_dir() {
                prefix.extend_from_slice(name.as_bytes());
                prefix.push(b'/');
                self.entry(&full, &md, prefix)?;
                if is_overlay_opaque(&full) {
                    let l = prefix.len();
                    prefix.extend_from_slice(OPAQUE_MARKER.as_bytes());
                    self.marker(&full, &md, prefix)?;
                    prefix.truncate(l);
                }
                self.dir(&full, prefix)?;
            } else if ft.is_socket() {
                // A tar cannot hold a socket; docker skips them too.
            } else {
                prefix.extend_from_slice(name.as_bytes());
                self.entry(&full, &md, prefix)?;
            }
            prefix.truncate(len);
        }
        Ok(())
    }

    fn mtime(&self, md: &fs::Metadata) -> u64 {
        let t = match self.epoch {
            Some(e) => md.mtime().min(e),
            None => md.mtime(),
        };
        t.max(0) as u64
    }

    /// An empty regular file standing for a whiteout or an opaque marker.
    fn marker(&mut self, full: &Path, md: &fs::Metadata, name: &[u8]) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0);
        h.set_size(0);
        h.set_mtime(self.mtime(md));
        self.header(full, h, md, name, None)
    }

    fn entry(&mut self, full: &Path, md: &fs::Metadata, name: &[u8]) -> Result<()> {
        let ft = md.file_type();
        let mut h = tar::Header::new_ustar();
        h.set_mode(md.mode() & 0o7777);
        h.set_mtime(self.mtime(md));
        h.set_size(0);
        let mut link: Option<Vec<u8>> = None;
        let mut data = false;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(full).map_err(|e| RootfsError::io(full, e))?;
            link = Some(target.as_os_str().as_bytes().to_vec());
        } else if let Some(first) = (md.nlink() > 1)
            .then(|| self.links.get(&(md.dev(), md.ino())))
            .flatten()
        {
            h.set_entry_type(tar::EntryType::Link);
            link = Some(first.clone());
        } else {
            if md.nlink() > 1 {
                self.links.insert((md.dev(), md.ino()), name.to_vec());
            }
            if ft.is_file() {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(md.len().min(USTAR_MAX_SIZE));
                data = true;
            } else if ft.is_char_device() || ft.is_block_device() {
                h.set_entry_type(if ft.is_char_device() {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                let rdev = md.rdev();
                let (maj, min) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
                if maj > 0o7777777 || min > 0o7777777 {
                    return Err(RootfsError::Invalid {
                        path: full.to_owned(),
                        reason: format!("device {maj}:{min} does not fit a tar header"),
                    });
                }
                h.set_device_major(maj).map_err(RootfsError::Write)?;
                h.set_device_minor(min).map_err(RootfsError::Write)?;
            } else if ft.is_fifo() {
                h.set_entry_type(tar::EntryType::Fifo);
            } else {
                return Err(RootfsError::Invalid {
                    path: full.to_owned(),
                    reason: "unknown file type".to_owned(),
                });
            }
        }
        let size = if data { md.len() } else { 0 };
        let mut pax = Pax::default();
        if size > USTAR_MAX_SIZE {
            pax.record("size", size.to_string().as_bytes());
        }
        for (k, v) in xattrs(full)? {
            if k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.") {
                continue;
            }
            pax.record(&format!("SCHILY.xattr.{k}"), &v);
        }
        self.header(full, h, md, name, Some((link, pax)))?;
        if data {
            let f = fs::File::open(full).map_err(|e| RootfsError::io(full, e))?;
            let mut r = f.take(size);
            let mut buf = vec![0u8; 256 * 1024];
            let mut copied = 0u64;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(RootfsError::io(full, e)),
                };
                copied += n as u64;
                self.put(&buf[..n]).map_err(RootfsError::Write)?;
            }
            if copied != size {
                return Err(RootfsError::Invalid {
                    path: full.to_owned(),
                    reason: format!("file shrank from {size} to {copied} bytes while being read"),
                });
            }
            let pad = (512 - (size % 512) as usize) % 512;
            self.put(&[0u8; 512][..pad]).map_err(RootfsError::Write)?;
        }
        Ok(())
    }

    /// Fills name, link name, ownership and checksum, writes a PAX header first when needed,
    /// then the header.
    fn header(
        &mut self,
        full: &Path,
        mut h: tar::Header,
        md: &fs::Metadata,
        name: &[u8],
        extra: Option<(Option<Vec<u8>>, Pax)>,
    ) -> Result<()> {
        let (link, mut pax) = extra.unwrap_or_default();
        let (uid, gid) = (u64::from(md.uid()), u64::from(md.gid()));
        for (key, id) in [("uid", uid), ("gid", gid)] {
            if id > USTAR_MAX_ID {
                pax.record(key, id.to_string().as_bytes());
            }
        }
        if !matches!(h.entry_type(), tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(0).map_err(RootfsError::Write)?;
            h.set_device_minor(0).map_err(RootfsError::Write)?;
        }
        h.set_uid(uid.min(USTAR_MAX_ID));
        h.set_gid(gid.min(USTAR_MAX_ID));
        let ustar = h.as_ustar_mut().expect("a ustar header");
        if !set_ustar_name(&mut ustar.name, &mut ustar.prefix, name) {
            pax.record("path", name);
            let n = name.len().min(100);
            ustar.name[..n].copy_from_slice(&name[..n]);
        }
        if let Some(link) = &link {
            if link.len() <= 100 {
                ustar.linkname[..link.len()].copy_from_slice(link);
            } else {
                pax.record("linkpath", link);
                ustar.linkname.copy_from_slice(&link[..100]);
            }
        }
        if !pax.0.is_empty() {
            let mut ph = tar::Header::new_ustar();
            ph.set_entry_type(tar::EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_mtime(0);
            ph.set_size(pax.0.len() as u64);
            let pname = b"PaxHeaders/x";
            ph.as_ustar_mut().expect("ustar").name[..pname.len()].copy_from_slice(pname);
            ph.set_cksum();
            self.put(ph.as_bytes()).map_err(RootfsError::Write)?;
            let pad = (512 - pax.0.len() % 512) % 512;
            let records = std::mem::take(&mut pax.0);
            self.put(&records).map_err(RootfsError::Write)?;
            self.put(&[0u8; 512][..pad]).map_err(RootfsError::Write)?;
        }
        h.set_cksum();
        let _ = full;
        self.put(h.as_bytes()).map_err(RootfsError::Write)
    }
}

/// Puts `name` into ustar's name (100 bytes) and prefix (155 bytes) fields; false if it does
/// not fit.
fn set_ustar_name(field: &mut [u8; 100], prefix: &mut [u8; 155], name: &[u8]) -> bool {
    if name.len() <= 100 {
        field[..name.len()].copy_from_slice(name);
        return true;
    }
    // Split at a `/` so that the prefix has at most 155 bytes and the rest at most 100.
    let Some(split) = (0..name.len().min(156))
        .rev()
        .find(|&i| name[i] == b'/' && name.len() - i - 1 <= 100 && name.len() - i - 1 > 0)
    else {
        return false;
    };
    prefix[..split].copy_from_slice(&name[..split]);
    field[..name.len() - split - 1].copy_from_slice(&name[split + 1..]);
    true
}

/// PAX extended header records.
#[derive(Default)]
struct Pax(Vec<u8>);

impl Pax {
    fn record(&mut self, key: &str, value: &[u8]) {
        // "LEN KEY=VALUE\n", LEN counting itself.
        let body = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        self.0.extend_from_slice(len.to_string().as_bytes());
        self.0.push(b' ');
        self.0.extend_from_slice(key.as_bytes());
        self.0.push(b'=');
        self.0.extend_from_slice(value);
        self.0.push(b'\n');
    }
}

/// The extended attributes of `path` (not followed), sorted by name. An empty list where the
/// filesystem has none.
pub(crate) fn xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let err = |e: rustix::io::Errno| RootfsError::io(PathBuf::from(path), e.into());
    let mut names = Vec::new();
    for _ in 0..8 {
        let n = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        names.resize(n, 0);
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(err(e)),
        }
    }
    let mut out = Vec::new();
    for raw in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(raw).into_owned();
        let mut value = Vec::new();
        loop {
            let n = match rustix::fs::lgetxattr_query(path, raw) {
                Ok(n) => n,
                // Removed meanwhile.
                Err(rustix::io::Errno::NODATA) => break,
                Err(e) => return Err(err(e)),
            };
            value.resize(n, 0);
            match rustix::fs::lgetxattr(path, raw, &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    out.push((name, value));
                    break;
                }
                Err(rustix::io::Errno::RANGE) => continue,
                Err(rustix::io::Errno::NODATA) => break,
                Err(e) => return Err(err(e)),
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for vlen in [0usize, 1, 5, 90, 93, 94, 95, 996, 997, 9990] {
            let mut p = Pax::default();
            let v = vec![b'a'; vlen];
            p.record("path", &v);
            let s = &p.0;
            let sp = s.iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&s[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, s.len(), "value of {vlen} bytes");
        }
    }

    #[test]
    fn ustar_names_split_at_a_slash() {
        let mut f = [0u8; 100];
        let mut p = [0u8; 155];
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert!(set_ustar_name(&mut f, &mut p, long.as_bytes()));
        assert_eq!(&p[..120], "d".repeat(120).as_bytes());
        assert_eq!(&f[..90], "f".repeat(90).as_bytes());
        let (mut f, mut p) = ([0u8; 100], [0u8; 155]);
        assert!(!set_ustar_name(&mut f, &mut p, "x".repeat(101).as_bytes()));
    }

    #[test]
    fn gzip_level_is_pinned_per_layer_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = super::super::compress::tests::pseudo(3 * 1024 * 1024)
            .iter()
            .map(|b| b"abcdefgh ijk\n"[usize::from(*b) % 13])
            .collect();
        std::fs::write(dir.path().join("f"), &text).unwrap();
        let write = |level| {
            let mut out = Vec::new();
            let info = write_layer(
                dir.path(),
                &mut out,
                &LayerOptions {
                    gzip_level: level,
                    ..Default::default()
                },
            )
            .unwrap();
            (info, out)
        };
        let (one, one_bytes) = write(1);
        let (six, _) = write(6);
        assert_eq!(LayerOptions::default().gzip_level, GZIP_LEVEL);
        // Same tar, other bytes: the level decides the digest, never the diff_id.
        assert_eq!(one.diff_id, six.diff_id);
        assert_ne!(one.digest, six.digest);
        assert!(one.size > six.size, "{} vs {}", one.size, six.size);
        // Deterministic for a given level.
        assert_eq!(write(1), (one, one_bytes.clone()));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one_bytes[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(Digest::sha256_of(&back), six.diff_id);
        // Out of range is an error, not a silent default.
        let err = write_layer(
            dir.path(),
            Vec::new(),
            &LayerOptions {
                gzip_level: 0,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("gzip level 0"), "{err}");
    }
}
