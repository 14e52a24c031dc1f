//! `Rootfs::mount`: overlay of layer dirs, and the copy fallback (forced here) giving the same
//! tree.

use std::fs;
use std::path::{Path, PathBuf};

use hoist_runtime::rootfs::{Rootfs, RootfsKind};
use rustix::fs::{CWD, FileType, Mode, XattrFlags, makedev, mknodat};

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
                out.push(format!(
                    "{rel}={}",
                    String::from_utf8_lossy(&fs::read(&e).unwrap())
                ));
            } else if md.is_symlink() {
                out.push(format!("{rel}->{}", fs::read_link(&e).unwrap().display()));
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

/// Two layer dirs in overlay form: the second deletes, hides and adds.
fn layers(base: &Path) -> Vec<PathBuf> {
    let l1 = base.join("l1");
    fs::create_dir_all(l1.join("etc/conf.d")).unwrap();
    fs::write(l1.join("etc/conf.d/a"), "a").unwrap();
    fs::write(l1.join("etc/motd"), "hello").unwrap();
    fs::create_dir_all(l1.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib", l1.join("lib")).unwrap();
    fs::write(l1.join("usr/lib/libc.so"), "libc").unwrap();
    let l2 = base.join("l2");
    fs::create_dir_all(l2.join("etc/conf.d")).unwrap();
    rustix::fs::lsetxattr(
        l2.join("etc/conf.d"),
        "trusted.overlay.opaque",
        b"y",
        XattrFlags::empty(),
    )
    .unwrap();
    fs::write(l2.join("etc/conf.d/b"), "b").unwrap();
    mknodat(
        CWD,
        l2.join("etc/motd"),
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(0, 0),
    )
    .unwrap();
    fs::create_dir_all(l2.join("usr/lib")).unwrap();
    fs::write(l2.join("usr/lib/libz.so"), "libz").unwrap();
    vec![l1, l2]
}

fn dirs(base: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = base.join(name);
    (d.join("upper"), d.join("work"), d.join("rootfs"))
}

#[test]
fn overlay_and_forced_copy_give_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let lowers = layers(tmp.path());
    let expected = [
        "etc",
        "etc/conf.d",
        "etc/conf.d/b=b",
        "lib->usr/lib",
        "usr",
        "usr/lib",
        "usr/lib/libc.so=libc",
        "usr/lib/libz.so=libz",
    ];

    let (upper, work, target) = dirs(tmp.path(), "c1");
    let ovl = Rootfs::mount(&lowers, &upper, &work, &target).unwrap();
    assert_eq!(ovl.kind(), RootfsKind::Overlay);
    assert_eq!(listing(&target), expected);
    // Writes go to the upper dir; the layers are untouched.
    fs::write(target.join("etc/new"), "n").unwrap();
    fs::remove_file(target.join("usr/lib/libc.so")).unwrap();
    assert_eq!(fs::read(upper.join("etc/new")).unwrap(), b"n");
    assert!(lowers[0].join("usr/lib/libc.so").exists());
    ovl.unmount().unwrap();
    assert!(listing(&target).is_empty());

    // A second container from the same layers shares them: nothing copied.
    let (upper2, work2, target2) = dirs(tmp.path(), "c2");
    let ovl2 = Rootfs::mount(&lowers, &upper2, &work2, &target2).unwrap();
    assert_eq!(listing(&target2), expected);
    ovl2.unmount().unwrap();

    // The fallback, forced: the same tree, as plain files in the target.
    let (upper3, work3, target3) = dirs(tmp.path(), "c3");
    let copy = Rootfs::mount_copy(&lowers, &upper3, &work3, &target3).unwrap();
    assert_eq!(copy.kind(), RootfsKind::Copy);
    assert_eq!(listing(&target3), expected);
    // Writes go to the copy; the layers are untouched.
    fs::write(target3.join("usr/lib/libc.so"), "mine").unwrap();
    fs::write(target3.join("lib/libnew.so"), "new").unwrap();
    assert_eq!(
        fs::read(lowers[0].join("usr/lib/libc.so")).unwrap(),
        b"libc"
    );
    assert!(!lowers[0].join("usr/lib/libnew.so").exists());
    copy.unmount().unwrap();
    // Mounting again reuses the copy, changes included.
    let again = Rootfs::mount_copy(&lowers, &upper3, &work3, &target3).unwrap();
    assert_eq!(fs::read(target3.join("usr/lib/libc.so")).unwrap(), b"mine");
    assert_eq!(fs::read(target3.join("usr/lib/libnew.so")).unwrap(), b"new");
    again.unmount().unwrap();

    // The copy of an overlay upper dir (a container moved to copy mode) applies its changes too.
    let (_, work4, target4) = dirs(tmp.path(), "c4");
    let copy = Rootfs::mount_copy(&lowers, &upper, &work4, &target4).unwrap();
    let l = listing(&target4);
    assert!(l.contains(&"etc/new=n".to_owned()), "{l:?}");
    assert!(!l.contains(&"usr/lib/libc.so=libc".to_owned()), "{l:?}");
    copy.unmount().unwrap();
}

#[test]
fn many_long_lower_dirs_still_mount_as_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let long = tmp.path().join("x".repeat(100));
    let mut lowers = Vec::new();
    for i in 0..60 {
        let l = long.join(format!("{}{i:02}", "layer-".repeat(10)));
        fs::create_dir_all(&l).unwrap();
        fs::write(l.join(format!("f{i:02}")), format!("{i}")).unwrap();
        lowers.push(l);
    }
    let (upper, work, target) = dirs(tmp.path(), "c");
    let r = Rootfs::mount(&lowers, &upper, &work, &target).unwrap();
    assert_eq!(r.kind(), RootfsKind::Overlay);
    assert_eq!(fs::read_dir(&target).unwrap().count(), 60);
    assert_eq!(fs::read(target.join("f59")).unwrap(), b"59");
    r.unmount().unwrap();
}

#[test]
fn an_image_without_layers_is_its_upper_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (upper, work, target) = dirs(tmp.path(), "c");
    let r = Rootfs::mount(&[], &upper, &work, &target).unwrap();
    assert_eq!(r.kind(), RootfsKind::Bind);
    fs::write(target.join("x"), "x").unwrap();
    assert_eq!(fs::read(upper.join("x")).unwrap(), b"x");
    r.unmount().unwrap();
    assert!(!target.join("x").exists());
}

#[test]
fn a_copy_rootfs_reports_its_changes_like_an_overlay_upper() {
    let tmp = tempfile::tempdir().unwrap();
    let lowers = layers(tmp.path());
    let (upper, work, target) = dirs(tmp.path(), "copy");
    let copy = Rootfs::mount_copy(&lowers, &upper, &work, &target).unwrap();
    // What a container does: add, change, delete, replace a dir, add a tree, a symlink, a link.
    fs::write(target.join("etc/new"), "n").unwrap();
    fs::write(target.join("usr/lib/libc.so"), "patched").unwrap();
    fs::remove_file(target.join("usr/lib/libz.so")).unwrap();
    fs::remove_dir_all(target.join("etc/conf.d")).unwrap();
    fs::create_dir_all(target.join("opt/app/bin")).unwrap();
    fs::write(target.join("opt/app/bin/run"), "#!/bin/sh").unwrap();
    std::os::unix::fs::symlink("/opt/app/bin/run", target.join("usr/lib/run")).unwrap();
    fs::hard_link(target.join("opt/app/bin/run"), target.join("opt/app/run2")).unwrap();
    // A symlink to the host: never followed.
    std::os::unix::fs::symlink("/", target.join("hostroot")).unwrap();

    assert!(hoist_runtime::rootfs::sync_copy_changes(&lowers, &upper, &work, &target).unwrap());
    let changes: Vec<String> = hoist_runtime::rootfs::diff(&upper, &lowers)
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {}", c.kind.letter(), c.path.display()))
        .collect();
    let mut sorted = changes;
    sorted.sort_by(|a, b| a[2..].cmp(&b[2..]));
    assert_eq!(
        sorted,
        [
            "C /etc",
            "D /etc/conf.d",
            "A /etc/new",
            "A /hostroot",
            "A /opt",
            "A /opt/app",
            "A /opt/app/bin",
            "A /opt/app/bin/run",
            "A /opt/app/run2",
            "C /usr",
            "C /usr/lib",
            "C /usr/lib/libc.so",
            "D /usr/lib/libz.so",
            "A /usr/lib/run",
        ]
    );
    // The upper, stacked on the lowers by the kernel, is the copy.
    let (_, work2, target2) = dirs(tmp.path(), "check");
    let ovl = Rootfs::mount(&lowers, &upper, &work2, &target2).unwrap();
    assert_eq!(ovl.kind(), RootfsKind::Overlay);
    assert_eq!(listing(&target2), listing(&target));
    let md = fs::metadata(target2.join("opt/app/run2")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&md),
        std::os::unix::fs::MetadataExt::ino(
            &fs::metadata(target2.join("opt/app/bin/run")).unwrap()
        )
    );
    ovl.unmount().unwrap();
    copy.unmount().unwrap();

    // Not a copy: nothing done.
    let (u3, w3, t3) = dirs(tmp.path(), "ovl");
    let r = Rootfs::mount(&lowers, &u3, &w3, &t3).unwrap();
    assert!(!hoist_runtime::rootfs::sync_copy_changes(&lowers, &u3, &w3, &t3).unwrap());
    r.unmount().unwrap();
}
