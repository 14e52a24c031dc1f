//! `rootfs::write_layer`: deterministic OCI layers from overlay upper dirs.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use hoist_oci::Digest;
use hoist_runtime::rootfs::{Compression, LayerOptions, write_layer};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, makedev, mknodat};

fn set_mtime(p: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// An overlay-style upper dir with one of everything.
fn tree(root: &Path) {
    fs::create_dir_all(root.join("etc/opq")).unwrap();
    fs::write(root.join("etc/hostname"), b"box\n").unwrap();
    fs::write(root.join("etc/opq/kept"), b"kept").unwrap();
    rustix::fs::lsetxattr(
        root.join("etc/opq"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // An overlay whiteout: a character device 0/0.
    mknodat(
        CWD,
        root.join("etc/gone"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0),
        makedev(0, 0),
    )
    .unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("bin/busybox"), vec![7u8; 70_000]).unwrap();
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(root.join("bin/busybox"), root.join("bin/sh")).unwrap();
    symlink("busybox", root.join("bin/ls")).unwrap();
    rustix::fs::lsetxattr(
        root.join("bin/busybox"),
        "user.note",
        b"hello",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    mknodat(
        CWD,
        root.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        makedev(1, 3),
    )
    .unwrap();
    // mknod applied the umask.
    fs::set_permissions(root.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    mknodat(
        CWD,
        root.join("dev/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let deep = root.join("d".repeat(120)).join("e".repeat(120));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(150)), b"long").unwrap();
}

fn layer(
    root: &Path,
    c: Compression,
    epoch: Option<i64>,
) -> (Vec<u8>, hoist_runtime::rootfs::LayerInfo) {
    let mut out = Vec::new();
    let info = write_layer(
        root,
        &mut out,
        &LayerOptions {
            compression: c,
            source_date_epoch: epoch,
            ..LayerOptions::default()
        },
    )
    .unwrap();
    (out, info)
}

fn decompress(bytes: &[u8], c: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    match c {
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(bytes)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::None => out = bytes.to_vec(),
    }
    out
}

struct Seen {
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    link: Option<String>,
    xattrs: BTreeMap<String, Vec<u8>>,
    data: Vec<u8>,
    dev: (u32, u32),
}

fn entries(tar_bytes: &[u8]) -> Vec<(String, Seen)> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        let mut xattrs = BTreeMap::new();
        if let Some(p) = e.pax_extensions().unwrap() {
            for x in p {
                let x = x.unwrap();
                if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(k.to_owned(), x.value_bytes().to_vec());
                }
            }
        }
        let h = e.header().clone();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.to_vec()).unwrap());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        assert!(h.username_bytes().unwrap_or_default().is_empty(), "{name}");
        out.push((
            name,
            Seen {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                mtime: h.mtime().unwrap(),
                link,
                xattrs,
                data,
                dev: (
                    h.device_major().unwrap().unwrap_or(0),
                    h.device_minor().unwrap().unwrap_or(0),
                ),
            },
        ));
    }
    out
}

#[test]
fn overlay_upper_becomes_an_oci_layer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("upper");
    tree(&root);
    let (bytes, info) = layer(&root, Compression::None, None);
    assert_eq!(info.diff_id, Digest::sha256_of(&bytes));
    assert_eq!(info.digest, info.diff_id);
    assert_eq!(info.size, bytes.len() as u64);
    let es = entries(&bytes);
    let names: Vec<&str> = es.iter().map(|(n, _)| n.as_str()).collect();
    let get = |n: &str| {
        &es.iter()
            .find(|(x, _)| x == n)
            .unwrap_or_else(|| panic!("{n} in {names:?}"))
            .1
    };

    // Sorted, each directory before its contents, trailing slash on directories.
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("etc/") < pos("etc/.wh.gone"));
    assert!(pos("bin/") < pos("bin/busybox"));
    // The whiteout and the opaque directory in OCI form.
    assert!(!names.contains(&"etc/gone"), "{names:?}");
    let wh = get("etc/.wh.gone");
    assert_eq!(wh.kind, tar::EntryType::Regular);
    assert!(wh.data.is_empty());
    assert_eq!(pos("etc/opq/.wh..wh..opq"), pos("etc/opq/") + 1);
    assert!(
        get("etc/opq/").xattrs.is_empty(),
        "overlay xattrs are not written"
    );
    // Files, hard links, symlinks, devices, fifos, modes, xattrs.
    let bb = get("bin/busybox");
    assert_eq!(bb.data, vec![7u8; 70_000]);
    assert_eq!(bb.mode, 0o4755);
    assert_eq!(
        bb.xattrs.get("user.note").map(Vec::as_slice),
        Some(&b"hello"[..])
    );
    let sh = get("bin/sh");
    assert_eq!(sh.kind, tar::EntryType::Link);
    assert_eq!(sh.link.as_deref(), Some("bin/busybox"));
    let ls = get("bin/ls");
    assert_eq!(ls.kind, tar::EntryType::Symlink);
    assert_eq!(ls.link.as_deref(), Some("busybox"));
    let null = get("dev/null");
    assert_eq!(
        (null.kind, null.dev, null.mode),
        (tar::EntryType::Char, (1, 3), 0o666)
    );
    assert_eq!(get("dev/fifo").kind, tar::EntryType::Fifo);
    // A path longer than ustar can hold, through PAX.
    let long = format!(
        "{}/{}/{}",
        "d".repeat(120),
        "e".repeat(120),
        "f".repeat(150)
    );
    assert_eq!(get(&long).data, b"long");
}

#[test]
fn same_tree_same_digest_and_epoch_clamps_mtimes() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    tree(&a);
    tree(&b);
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (x, ix) = layer(&a, c, Some(1_000_000));
        let (y, iy) = layer(&b, c, Some(1_000_000));
        assert_eq!(ix, iy, "{c:?}: two identical trees give the same layer");
        assert_eq!(x, y);
        assert_eq!(ix.digest, Digest::sha256_of(&x));
        assert_eq!(ix.size, x.len() as u64);
        let plain = decompress(&x, c);
        assert_eq!(ix.diff_id, Digest::sha256_of(&plain), "{c:?}");
        assert_eq!(ix.uncompressed_size, plain.len() as u64);
        assert!(entries(&plain).iter().all(|(_, s)| s.mtime <= 1_000_000));
    }
    // Without an epoch, mtimes count; with one, later mtimes are clamped.
    set_mtime(&b.join("etc/hostname"), 1_700_000_000);
    set_mtime(&a.join("etc/hostname"), 1_600_000_000);
    assert_ne!(
        layer(&a, Compression::None, None).1,
        layer(&b, Compression::None, None).1
    );
    assert_eq!(
        layer(&a, Compression::Gzip, Some(1_000_000)).1,
        layer(&b, Compression::Gzip, Some(1_000_000)).1
    );
    let plain = layer(&a, Compression::None, None).0;
    let host = entries(&plain)
        .into_iter()
        .find(|(n, _)| n == "etc/hostname")
        .unwrap()
        .1;
    assert_eq!(host.mtime, 1_600_000_000);
    // Earlier mtimes are kept as they are.
    let plain = layer(&a, Compression::None, Some(1_650_000_000)).0;
    let host = entries(&plain)
        .into_iter()
        .find(|(n, _)| n == "etc/hostname")
        .unwrap()
        .1;
    assert_eq!(host.mtime, 1_600_000_000);
}

#[test]
fn large_layers_gzip_in_parallel_and_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("big");
    fs::create_dir_all(&root).unwrap();
    // 40 MiB of compressible but not trivial data: three gzip members.
    for i in 0..5u32 {
        let data: Vec<u8> = (0..8 * 1024 * 1024u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 26) as u8)
            .collect();
        fs::write(root.join(format!("f{i}")), data).unwrap();
    }
    let (x, ix) = layer(&root, Compression::Gzip, Some(0));
    let (y, iy) = layer(&root, Compression::Gzip, Some(0));
    assert_eq!(x, y);
    assert_eq!(ix, iy);
    let plain = decompress(&x, Compression::Gzip);
    assert_eq!(Digest::sha256_of(&plain), ix.diff_id);
    assert_eq!(
        layer(&root, Compression::None, Some(0)).1.diff_id,
        ix.diff_id
    );
}
