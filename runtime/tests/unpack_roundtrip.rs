//! `write_layer` and `unpack_layer` agree: a tree written as a layer and unpacked is the same
//! tree (same layer bytes when written again), and whiteouts mean the same in both directions.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use hoist_runtime::rootfs::{ChangeKind, Compression, LayerOptions, diff, write_layer};
use hoist_runtime::unpack::{UnpackOptions, Whiteouts, decompress, unpack_layer};
use rustix::fs::{CWD, FileType, Mode, XattrFlags, makedev, mknodat};

fn whiteout(p: &Path) {
    mknodat(
        CWD,
        p,
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(0, 0),
    )
    .unwrap();
}

fn opaque(p: &Path) {
    rustix::fs::lsetxattr(p, "trusted.overlay.opaque", b"y", XattrFlags::empty()).unwrap();
}

fn tree(root: &Path) {
    fs::create_dir_all(root.join("etc/opq")).unwrap();
    fs::write(root.join("etc/hostname"), b"box\n").unwrap();
    fs::write(root.join("etc/opq/kept"), b"kept").unwrap();
    opaque(&root.join("etc/opq"));
    whiteout(&root.join("etc/gone"));
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("bin/busybox"), vec![7u8; 70_000]).unwrap();
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(root.join("bin/busybox"), root.join("bin/sh")).unwrap();
    symlink("busybox", root.join("bin/ls")).unwrap();
    symlink("/etc/../../x", root.join("abs")).unwrap();
    rustix::fs::lsetxattr(
        root.join("bin/busybox"),
        "user.note",
        b"hi",
        XattrFlags::empty(),
    )
    .unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    mknodat(
        CWD,
        root.join("dev/null"),
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(1, 3),
    )
    .unwrap();
    fs::set_permissions(root.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    mknodat(CWD, root.join("dev/fifo"), FileType::Fifo, Mode::empty(), 0).unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(root.join("tmp/owned"), b"x").unwrap();
    rustix::fs::chown(
        root.join("tmp/owned"),
        Some(rustix::fs::Uid::from_raw(1234)),
        Some(rustix::fs::Gid::from_raw(5678)),
    )
    .unwrap();
    let deep = root.join("d".repeat(120)).join("e".repeat(120));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(150)), b"long").unwrap();
    // Times long past and each different, so an entry the unpacker leaves at "now" shows.
    let mut n = 0;
    backdate(root, &mut n);
}

/// Gives every entry under `dir` (children before their directory) its own old mtime.
fn backdate(dir: &Path, n: &mut i64) {
    let mut es: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    es.sort();
    for e in es {
        if fs::symlink_metadata(&e).unwrap().is_dir() {
            backdate(&e, n);
        }
        *n += 1;
        let t = rustix::fs::Timespec {
            tv_sec: 1_000_000_000 + *n * 1000,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            CWD,
            &e,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
}

fn plain(root: &Path) -> (Vec<u8>, hoist_runtime::rootfs::LayerInfo) {
    let mut out = Vec::new();
    let info = write_layer(
        root,
        &mut out,
        &LayerOptions {
            compression: Compression::None,
            source_date_epoch: None,
            ..LayerOptions::default()
        },
    )
    .unwrap();
    (out, info)
}

/// A layer's entries, one line each with every header field, so that a mismatch shows where.
fn layer_listing(layer: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(layer);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let pax: Vec<String> = e
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|x| {
                    let x = x.unwrap();
                    format!("{}={:?}", x.key().unwrap(), x.value_bytes())
                })
                .collect();
            format!(
                "{} {:?} mode={:o} uid={} gid={} mtime={} size={} link={:?} pax={pax:?}",
                e.path().unwrap().display(),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                h.size().unwrap(),
                e.link_name().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_tree_round_trips_through_a_layer() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src);
    // Through gzip, as a layer store sees it.
    let mut gz = Vec::new();
    let info = write_layer(&src, &mut gz, &LayerOptions::default()).unwrap();
    let dst = dir.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let stats = unpack_layer(
        decompress(&gz[..]).unwrap(),
        &dst,
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(stats.diff_id, info.diff_id);
    // Written again, the unpacked tree gives the same layer: names, types, modes, owners,
    // mtimes, links, devices, xattrs, whiteouts and opaque dirs all survived.
    let (again, info2) = plain(&dst);
    let (first, _) = plain(&src);
    assert_eq!(layer_listing(&again), layer_listing(&first));
    assert_eq!(info2.diff_id, info.diff_id);
    assert_eq!(again, first);
    // And on disk, in overlay form.
    let md = fs::symlink_metadata(dst.join("etc/gone")).unwrap();
    assert!(md.file_type().is_char_device() && md.rdev() == 0);
    let mut v = [0u8; 4];
    let n = rustix::fs::lgetxattr(dst.join("etc/opq"), "trusted.overlay.opaque", &mut v).unwrap();
    assert_eq!(&v[..n], b"y");
    let bb = fs::metadata(dst.join("bin/busybox")).unwrap();
    assert_eq!(bb.mode() & 0o7777, 0o4755);
    assert_eq!(bb.ino(), fs::metadata(dst.join("bin/sh")).unwrap().ino());
    let owned = fs::metadata(dst.join("tmp/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    assert_eq!(
        fs::metadata(dst.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::read_link(dst.join("abs")).unwrap(),
        Path::new("/etc/../../x")
    );
}

/// Applies layers bottom..top onto one merged tree.
fn merged(layers: &[&Path], dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    for l in layers {
        let (bytes, _) = plain(l);
        unpack_layer(
            &bytes[..],
            dest,
            &UnpackOptions {
                whiteouts: Whiteouts::Apply,
                ..UnpackOptions::default()
            },
        )
        .unwrap();
    }
}

fn listing(root: &Path) -> Vec<String> {
    fn walk(p: &Path, base: &Path, out: &mut Vec<String>) {
        let mut es: Vec<PathBuf> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        es.sort();
        for e in es {
            let md = fs::symlink_metadata(&e).unwrap();
            let rel = e.strip_prefix(base).unwrap().display().to_string();
            if md.is_file() {
                let mut s = String::new();
                fs::File::open(&e).unwrap().read_to_string(&mut s).unwrap();
                out.push(format!("{rel}={s}"));
            } else {
                out.push(rel);
            }
            if md.is_dir() {
                walk(&e, base, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn whiteouts_and_opaque_dirs_apply_to_lower_layers_only() {
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    fs::create_dir_all(lower.join("etc/conf.d")).unwrap();
    fs::write(lower.join("etc/conf.d/a"), "a").unwrap();
    fs::write(lower.join("etc/conf.d/b"), "b").unwrap();
    fs::write(lower.join("etc/motd"), "hello").unwrap();
    fs::create_dir_all(lower.join("var/cache/sub")).unwrap();
    fs::write(lower.join("var/cache/sub/x"), "x").unwrap();

    let upper = dir.path().join("upper");
    fs::create_dir_all(upper.join("etc/conf.d")).unwrap();
    opaque(&upper.join("etc/conf.d"));
    fs::write(upper.join("etc/conf.d/c"), "c").unwrap();
    whiteout(&upper.join("etc/motd"));
    fs::create_dir_all(upper.join("var")).unwrap();
    whiteout(&upper.join("var/cache"));

    let m = dir.path().join("merged");
    merged(&[&lower, &upper], &m);
    assert_eq!(
        listing(&m),
        ["etc", "etc/conf.d", "etc/conf.d/c=c", "var"],
        "the merged view"
    );

    // The same result as the kernel's overlay of the two, unpacked in overlay form.
    let l1 = dir.path().join("l1");
    let l2 = dir.path().join("l2");
    for (src, dst) in [(&lower, &l1), (&upper, &l2)] {
        fs::create_dir(dst).unwrap();
        unpack_layer(&plain(src).0[..], dst, &UnpackOptions::default()).unwrap();
    }
    let target = dir.path().join("ovl");
    let work = dir.path().join("work");
    let up = dir.path().join("up");
    for d in [&target, &work, &up] {
        fs::create_dir(d).unwrap();
    }
    let lowers = [l1, l2];
    let rootfs = hoist_runtime::rootfs::Rootfs::mount(&lowers, &up, &work, &target).unwrap();
    assert_eq!(rootfs.kind(), hoist_runtime::rootfs::RootfsKind::Overlay);
    assert_eq!(listing(&target), listing(&m));
    rootfs.unmount().unwrap();

    // `diff` of the upper over the lower: what docker diff would say.
    let changes: Vec<(char, String)> = diff(&upper, &lowers[..1])
        .unwrap()
        .into_iter()
        .map(|c| (c.kind.letter(), c.path.display().to_string()))
        .collect();
    let expect: Vec<(char, String)> = [
        ('C', "/etc"),
        ('C', "/etc/conf.d"),
        ('D', "/etc/conf.d/a"),
        ('D', "/etc/conf.d/b"),
        ('A', "/etc/conf.d/c"),
        ('D', "/etc/motd"),
        ('C', "/var"),
        ('D', "/var/cache"),
    ]
    .iter()
    .map(|(k, p)| (*k, p.to_string()))
    .collect();
    assert_eq!(changes, expect);
    let _ = ChangeKind::Added;

    // A layer that creates a file and whites out the same name keeps the file.
    let mut t = Vec::new();
    let mut put = |name: &[u8], data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        t.extend_from_slice(h.as_bytes());
        t.extend_from_slice(data);
        t.resize(t.len().div_ceil(512) * 512, 0);
    };
    put(b"etc/conf.d/c", b"new c");
    put(b"etc/conf.d/.wh.c", b"");
    put(b"etc/.wh..wh..opq", b"");
    t.extend_from_slice(&[0u8; 1024]);
    unpack_layer(
        &t[..],
        &m,
        &UnpackOptions {
            whiteouts: Whiteouts::Apply,
            ..UnpackOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        listing(&m),
        ["etc", "etc/conf.d", "etc/conf.d/c=new c", "var"]
    );
}

#[test]
fn global_pax_headers_and_dot_entries_are_accepted() {
    // What `git archive` writes: a global header first, then `./`-prefixed names.
    let mut t = Vec::new();
    let mut put = |name: &[u8], kind: tar::EntryType, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000);
        h.set_cksum();
        t.extend_from_slice(h.as_bytes());
        t.extend_from_slice(data);
        t.resize(t.len().div_ceil(512) * 512, 0);
    };
    put(
        b"pax_global_header",
        tar::EntryType::XGlobalHeader,
        b"52 comment=0123456789abcdef0123456789abcdef01234567\n",
    );
    put(b"./", tar::EntryType::Directory, b"");
    put(b"./bin/", tar::EntryType::Directory, b"");
    put(b"./bin/tool", tar::EntryType::Regular, b"#!/bin/sh\n");
    t.extend_from_slice(&[0u8; 1024]);
    let dir = tempfile::tempdir().unwrap();
    let stats = unpack_layer(&t[..], dir.path(), &UnpackOptions::default()).unwrap();
    assert_eq!(stats.size, t.len() as u64);
    assert!(!dir.path().join("pax_global_header").exists());
    assert_eq!(
        fs::read(dir.path().join("bin/tool")).unwrap(),
        b"#!/bin/sh\n"
    );
    let md = fs::metadata(dir.path().join("bin")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.mtime()), (0o755, 1_000));
}
