//! Small real images made locally, without any network, for interoperability tests and benchmarks.
//!
//! - [`busybox_rootfs_tar`]: a deterministic rootfs tarball (busybox from `busybox-static`, its
//!   applets as symlinks, minimal `/etc/passwd` and `/etc/group`), the input of `docker import`,
//!   `podman import` or `hoist import`.
//! - [`busybox_image`]: the same rootfs as a one-layer gzip image (config with `rootfs.diff_ids`,
//!   OCI manifest) written into an OCI image layout ([`Layout`]) that `skopeo copy oci:DIR:TAG`
//!   reads.
//! - [`random_image`]: an N-layer image of a given size made of random (incompressible) data, for
//!   throughput measurements.
//!
//! Everything is deterministic: the same inputs (and the same busybox binary) give the same bytes,
//! so the same digests. Tar entries have fixed owners and mtimes and are written in a fixed order;
//! gzip uses level 6 of flate2's zlib-rs backend with a zero mtime in its header.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use flate2::Compression;
use flate2::write::GzEncoder;
use hoist_oci::{Digest, Digester, HashingWriter, media_type};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};

/// The mtime of every tar entry and of the gzip header.
const MTIME: u64 = 0;
/// The `created` time of every image config.
const CREATED: &str = "1970-01-01T00:00:00Z";
/// The annotation an OCI layout's `index.json` names tags with.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor: what a manifest says about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl Descriptor {
    /// The descriptor as OCI JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest.as_str(),
            "size": self.size,
        })
    }
}

/// An image written into a [`Layout`].
#[derive(Debug, Clone)]
pub struct Image {
    /// The tag it carries in the layout's `index.json`.
    pub tag: String,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Image {
    /// Every blob of the image: config, layers, manifest.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        let mut all = vec![&self.config];
        all.extend(&self.layers);
        all.push(&self.manifest);
        all
    }
}

/// An OCI image layout directory: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// Creates (or reuses) a layout at `dir`.
    pub fn create(dir: &Path) -> Result<Layout> {
        fs::create_dir_all(dir.join("blobs").join("sha256"))
            .with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let layout = Layout {
            dir: dir.to_owned(),
        };
        if !dir.join("index.json").exists() {
            layout.write_index(&json!({ "schemaVersion": 2, "manifests": [] }))?;
        }
        Ok(layout)
    }

    /// Opens an existing layout (for instance one skopeo wrote).
    pub fn open(dir: &Path) -> Result<Layout> {
        ensure!(
            dir.join("oci-layout").is_file() && dir.join("index.json").is_file(),
            "{} is not an OCI image layout",
            dir.display()
        );
        Ok(Layout {
            dir: dir.to_owned(),
        })
    }

    /// `oci:DIR:TAG`, the reference skopeo, podman and buildah use for an image in this layout.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    /// Where the blob named `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Reads a blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Stores `bytes` as a blob.
    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        self.put_blob_with(media_type, |w| Ok(w.write_all(bytes)?))
    }

    /// Stores the bytes `write` produces as a blob, hashing them as they stream to disk (nothing is
    /// held in memory).
    pub fn put_blob_with(
        &self,
        media_type: &str,
        write: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<Descriptor> {
        let dir = self.dir.join("blobs").join("sha256");
        let tmp = tempfile::NamedTempFile::new_in(&dir)?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp));
        write(&mut out)?;
        let (digester, buf) = out.into_parts();
        let tmp = buf.into_inner().map_err(io::IntoInnerError::into_error)?;
        let digest = digester.current();
        let size = digester.len();
        tmp.persist(self.blob_path(&digest))?;
        Ok(Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
        })
    }

    /// Points `tag` at `manifest` in `index.json` (replacing what the tag named before).
    pub fn tag(&self, manifest: &Descriptor, tag: &str) -> Result<()> {
        let mut index = self.index()?;
        let manifests = index["manifests"]
            .as_array_mut()
            .context("index.json has no manifests array")?;
        manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
        let mut entry = manifest.to_json();
        entry["annotations"] = json!({ REF_NAME: tag });
        manifests.push(entry);
        self.write_index(&index)
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> Result<Value> {
        let bytes = fs::read(self.dir.join("index.json"))?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The manifest descriptor that `tag` names in `index.json`.
    pub fn manifest_for(&self, tag: &str) -> Result<Descriptor> {
        let index = self.index()?;
        let entry = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"][REF_NAME].as_str() == Some(tag))
            .with_context(|| format!("no manifest tagged {tag:?} in {}", self.dir.display()))?;
        Ok(Descriptor {
            media_type: entry["mediaType"].as_str().unwrap_or_default().to_owned(),
            digest: Digest::parse(
                entry["digest"]
                    .as_str()
                    .context("descriptor without digest")?,
            )?,
            size: entry["size"].as_u64().context("descriptor without size")?,
        })
    }

    /// Every blob file under `blobs/sha256`, by digest, with its size.
    pub fn blob_files(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for entry in fs::read_dir(self.dir.join("blobs").join("sha256"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            out.insert(format!("sha256:{name}"), entry.metadata()?.len());
        }
        Ok(out)
    }

    /// Checks that every blob file hashes to its name.
    pub fn verify(&self) -> Result<()> {
        for name in self.blob_files()?.keys() {
            let digest = Digest::parse(name)?;
            let mut file = File::open(self.blob_path(&digest))?;
            let mut digester = Digester::sha256();
            io::copy(&mut file, &mut digester)?;
            ensure!(
                digester.finish() == digest,
                "blob {name} in {} does not match its digest",
                self.dir.display()
            );
        }
        Ok(())
    }

    fn write_index(&self, index: &Value) -> Result<()> {
        fs::write(self.dir.join("index.json"), serde_json::to_vec(index)?)?;
        Ok(())
    }
}

/// The busybox binary from `busybox-static`; fails (naming the package) if it is missing or is the
/// dynamically linked one from the `busybox` package, which would not run inside a bare rootfs.
pub fn busybox_binary() -> Result<PathBuf> {
    let path = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("busybox is not installed (apt-get install busybox-static)")?;
    let bytes = fs::read(&path)?;
    ensure!(
        !elf_has_interpreter(&bytes),
        "{} is dynamically linked (apt-get install busybox-static)",
        path.display()
    );
    Ok(path)
}

/// Whether an ELF64 little-endian file asks for a program interpreter (is dynamically linked).
fn elf_has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if elf.get(..5) != Some(b"\x7fELF\x02".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let at = usize::try_from(phoff)
            .unwrap_or(usize::MAX)
            .saturating_add(i * usize::from(phentsize));
        u32_at(at) == Some(PT_INTERP)
    })
}

/// The applets `busybox --list` names, sorted (the rootfs gets a `bin/<applet>` symlink for each).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    ensure!(out.status.success(), "{} --list failed", busybox.display());
    let mut applets: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect();
    for needed in ["sh", "ls", "cat", "echo"] {
        ensure!(
            applets.iter().any(|a| a == needed),
            "busybox has no {needed} applet"
        );
    }
    applets.sort();
    applets.dedup();
    Ok(applets)
}

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    // Names are ASCII and short: these cannot fail.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str, mode: u32) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    tar.append_data(&mut h, path, io::empty())?;
    Ok(())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    data: impl Read,
    size: u64,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, size);
    tar.append_data(&mut h, path, data)?;
    Ok(())
}

fn append_symlink<W: Write>(tar: &mut tar::Builder<W>, path: &str, target: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    tar.append_link(&mut h, path, target)?;
    Ok(())
}

/// Writes a busybox rootfs as an uncompressed tar: `bin/busybox` (from `busybox-static`), a
/// `bin/<applet>` symlink for every applet (`sh`, `ls`, `cat`, `echo`, ...), `/etc/passwd`,
/// `/etc/group`, and empty `dev`, `proc`, `sys`, `tmp`, `root`, `var` directories. Deterministic
/// for a given busybox binary. This is also the input `docker import`/`podman import` take.
pub fn busybox_rootfs_tar(out: impl Write) -> Result<()> {
    let busybox = busybox_binary()?;
    let applets = busybox_applets(&busybox)?;
    let size = fs::metadata(&busybox)?.len();
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    append_dir(&mut tar, "bin/", 0o755)?;
    append_file(&mut tar, "bin/busybox", 0o755, File::open(&busybox)?, size)?;
    for applet in &applets {
        append_symlink(&mut tar, &format!("bin/{applet}"), "busybox")?;
    }
    append_dir(&mut tar, "dev/", 0o755)?;
    append_dir(&mut tar, "etc/", 0o755)?;
    append_file(
        &mut tar,
        "etc/group",
        0o644,
        GROUP.as_bytes(),
        GROUP.len() as u64,
    )?;
    append_file(
        &mut tar,
        "etc/passwd",
        0o644,
        PASSWD.as_bytes(),
        PASSWD.len() as u64,
    )?;
    append_dir(&mut tar, "proc/", 0o755)?;
    append_dir(&mut tar, "root/", 0o700)?;
    append_dir(&mut tar, "sys/", 0o755)?;
    append_dir(&mut tar, "tmp/", 0o1777)?;
    append_dir(&mut tar, "var/", 0o755)?;
    tar.into_inner()?.flush()?;
    Ok(())
}

/// Writes [`busybox_rootfs_tar`] to a file (for `docker import FILE`, `podman import FILE`).
pub fn write_busybox_rootfs_tar(path: &Path) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    busybox_rootfs_tar(&mut out)?;
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(())
}

/// The OCI architecture name of this machine.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// An OCI image config (`application/vnd.oci.image.config.v1+json`) for layers with these diff ids.
pub fn image_config(diff_ids: &[Digest], cmd: &[&str], comment: &str) -> Vec<u8> {
    let history: Vec<Value> = diff_ids
        .iter()
        .map(|_| json!({ "created": CREATED, "created_by": comment }))
        .collect();
    let config = json!({
        "created": CREATED,
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>(),
        },
        "history": history,
    });
    serde_json::to_vec(&config).expect("JSON values serialise")
}

/// An OCI image manifest (`application/vnd.oci.image.manifest.v1+json`).
pub fn image_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config.to_json(),
        "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).expect("JSON values serialise")
}

/// Stores config and manifest for `layers` and tags the manifest.
fn finish_image(
    layout: &Layout,
    tag: &str,
    layers: Vec<Descriptor>,
    diff_ids: &[Digest],
    cmd: &[&str],
    comment: &str,
) -> Result<Image> {
    let config = layout.put_blob(
        media_type::OCI_CONFIG,
        &image_config(diff_ids, cmd, comment),
    )?;
    let manifest = layout.put_blob(media_type::OCI_MANIFEST, &image_manifest(&config, &layers))?;
    layout.tag(&manifest, tag)?;
    Ok(Image {
        tag: tag.to_owned(),
        manifest,
        config,
        layers,
    })
}

/// Writes a one-layer busybox image (the rootfs of [`busybox_rootfs_tar`], gzipped) into `layout`
/// under `tag`. About 1 MB; deterministic.
pub fn busybox_image(layout: &Layout, tag: &str) -> Result<Image> {
    let mut diff_id = None;
    let layer = layout.put_blob_with(media_type::OCI_LAYER_GZIP, |out| {
        let gz = GzEncoder::new(out, Compression::new(6));
        let mut tee = HashingWriter::new(gz);
        busybox_rootfs_tar(&mut tee)?;
        let (digester, gz) = tee.into_parts();
        gz.finish()?.flush()?;
        diff_id = Some(digester.finish());
        Ok(())
    })?;
    let diff_id = diff_id.expect("set by the writer");
    finish_image(
        layout,
        tag,
        vec![layer],
        &[diff_id],
        &["sh"],
        "hoist-conformance busybox fixture",
    )
}

/// Writes an image of `layers` layers whose layer blobs add up to about `total_size` bytes (each
/// layer also carries 2-2.5 KiB of tar framing) into `layout` under `tag`. The content is random,
/// so it is incompressible; layers are uncompressed tars
/// (`application/vnd.oci.image.layer.v1.tar`), so diff ids equal layer digests and making the
/// image costs no compression time. Layers stream to disk; nothing is held in memory. The same
/// `seed` gives the same image.
pub fn random_image(
    layout: &Layout,
    tag: &str,
    layers: usize,
    total_size: u64,
    seed: u64,
) -> Result<Image> {
    ensure!(layers > 0, "an image needs at least one layer");
    let per_layer = total_size / layers as u64;
    let mut descs = Vec::with_capacity(layers);
    for i in 0..layers {
        let size = if i + 1 == layers {
            total_size - per_layer * (layers as u64 - 1)
        } else {
            per_layer
        };
        let rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let desc = layout.put_blob_with(media_type::OCI_LAYER_TAR, |out| {
            let mut tar = tar::Builder::new(out);
            append_dir(&mut tar, "data/", 0o755)?;
            append_file(
                &mut tar,
                &format!("data/layer-{i}.bin"),
                0o644,
                RandomReader {
                    rng,
                    remaining: size,
                },
                size,
            )?;
            tar.into_inner()?.flush()?;
            Ok(())
        })?;
        descs.push(desc);
    }
    let diff_ids: Vec<Digest> = descs.iter().map(|d| d.digest.clone()).collect();
    finish_image(
        layout,
        tag,
        descs,
        &diff_ids,
        &["true"],
        "hoist-conformance random fixture",
    )
}

/// `len` random bytes from `seed` (the same seed gives the same bytes).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut buf);
    buf
}

/// A reader of `remaining` random bytes.
struct RandomReader {
    rng: StdRng,
    remaining: u64,
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.rng.fill_bytes(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads a whole file or fails naming it.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Fails unless every blob file in `a` is also in `b` with the same bytes, and vice versa.
pub fn assert_same_blobs(a: &Layout, b: &Layout) -> Result<()> {
    let (fa, fb) = (a.blob_files()?, b.blob_files()?);
    if fa.keys().ne(fb.keys()) {
        bail!(
            "blob sets differ:\n  {}: {:?}\n  {}: {:?}",
            a.dir.display(),
            fa,
            b.dir.display(),
            fb
        );
    }
    for name in fa.keys() {
        let digest = Digest::parse(name)?;
        ensure!(
            a.read_blob(&digest)? == b.read_blob(&digest)?,
            "blob {name} differs between {} and {}",
            a.dir.display(),
            b.dir.display()
        );
    }
    a.verify()?;
    b.verify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_image_is_deterministic_and_valid() {
        if busybox_binary().is_err() {
            // The interop tests fail loudly when busybox-static is missing; unit tests stay portable.
            return;
        }
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let la = Layout::create(a.path()).unwrap();
        let lb = Layout::create(b.path()).unwrap();
        let ia = busybox_image(&la, "1").unwrap();
        let ib = busybox_image(&lb, "1").unwrap();
        assert_eq!(ia.manifest, ib.manifest);
        assert_same_blobs(&la, &lb).unwrap();
        assert_eq!(la.manifest_for("1").unwrap(), ia.manifest);

        // diff_id is the digest of the uncompressed layer.
        let gz = la.read_blob(&ia.layers[0].digest).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let config: Value =
            serde_json::from_slice(&la.read_blob(&ia.config.digest).unwrap()).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            Digest::sha256_of(&tar).as_str()
        );
        let names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in ["bin/busybox", "bin/sh", "etc/passwd", "etc/group"] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
    }

    #[test]
    fn random_image_has_requested_shape() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let img = random_image(&layout, "r", 3, 300_000, 7).unwrap();
        assert_eq!(img.layers.len(), 3);
        let total: u64 = img.layers.iter().map(|l| l.size).sum();
        assert!((300_000..300_000 + 3 * 2560).contains(&total), "{total}");
        layout.verify().unwrap();
        let again = random_image(&layout, "r2", 3, 300_000, 7).unwrap();
        assert_eq!(again.layers, img.layers);
    }

    #[test]
    fn tagging_replaces_previous_tag() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let a = layout.put_blob(media_type::OCI_MANIFEST, b"{}").unwrap();
        let b = layout.put_blob(media_type::OCI_MANIFEST, b"{ }").unwrap();
        layout.tag(&a, "t").unwrap();
        layout.tag(&b, "t").unwrap();
        assert_eq!(layout.manifest_for("t").unwrap(), b);
        assert_eq!(
            layout.index().unwrap()["manifests"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
