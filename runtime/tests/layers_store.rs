//! `LayerStore`: unpack once, verify once, concurrent callers, tampered blobs and tampered
//! unpacked layers, with a busybox image imported into a real `ImageStore`.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use hoist_oci::{Digest, Reference, media_type};
use hoist_runtime::layers::{Check, LayerError, LayerStore};
use hoist_runtime::rootfs::{Compression, LayerOptions, Rootfs, RootfsKind, write_layer};
use hoist_storage::images::{Image, ImageStore, Platform, repo_name};
use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};

/// A busybox rootfs as BASE-IMAGES.md describes it (applets as symlinks).
fn busybox_root(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "true", "echo"] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(root.join("etc/motd"), "welcome\n").unwrap();
}

fn tar_of(root: &Path, c: Compression) -> (Vec<u8>, hoist_runtime::rootfs::LayerInfo) {
    let mut out = Vec::new();
    let info = write_layer(
        root,
        &mut out,
        &LayerOptions {
            compression: c,
            source_date_epoch: Some(1_700_000_000),
            ..LayerOptions::default()
        },
    )
    .unwrap();
    (out, info)
}

async fn import_busybox(images: &ImageStore, tmp: &Path, name: &str) -> Image {
    let root = tmp.join(format!("{name}-root"));
    busybox_root(&root);
    let (tar, _) = tar_of(&root, Compression::None);
    let reference = Reference::parse(name).unwrap();
    images
        .import(std::io::Cursor::new(tar), &reference, &[])
        .await
        .unwrap();
    images.image(&reference, &Platform::host()).await.unwrap()
}

/// A two-layer image put together here: busybox, then a layer that deletes and adds.
/// `wrong_diff_id` puts a wrong second diff_id into the config.
async fn two_layer(images: &ImageStore, tmp: &Path, name: &str, wrong_diff_id: bool) -> Image {
    let l1 = tmp.join(format!("{name}-l1"));
    busybox_root(&l1);
    let l2 = tmp.join(format!("{name}-l2"));
    fs::create_dir_all(l2.join("etc")).unwrap();
    mknodat(
        CWD,
        l2.join("etc/motd"),
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(0, 0),
    )
    .unwrap();
    fs::write(l2.join("etc/hostname"), "two\n").unwrap();
    let reference = Reference::parse(name).unwrap();
    let repo = repo_name(&reference).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (dir, c) in [(&l1, Compression::Gzip), (&l2, Compression::Zstd)] {
        let (bytes, info) = tar_of(dir, c);
        let spool = tmp.join(format!("{}.blob", info.digest.hex()));
        fs::write(&spool, &bytes).unwrap();
        images
            .put_blob_file(&repo, &info.digest, &spool)
            .await
            .unwrap();
        descs.push(serde_json::json!({
            "mediaType": info.media_type, "digest": info.digest.as_str(), "size": info.size,
        }));
        diff_ids.push(info.diff_id.to_string());
    }
    if wrong_diff_id {
        diff_ids[1] = Digest::sha256_of(b"something else").to_string();
    }
    let p = Platform::host();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": p.architecture, "os": p.os, "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = Digest::sha256_of(&config);
    let spool = tmp.join(format!("{}.config", config_digest.hex()));
    fs::write(&spool, &config).unwrap();
    images
        .put_blob_file(&repo, &config_digest, &spool)
        .await
        .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    images
        .put_manifest(
            &repo,
            media_type::OCI_MANIFEST,
            Bytes::from(manifest),
            reference.tag(),
        )
        .await
        .unwrap();
    images.image(&reference, &Platform::host()).await.unwrap()
}

/// The file holding a blob in the content store.
fn blob_file(home: &Path, digest: &Digest) -> PathBuf {
    fn find(p: &Path, hex: &str) -> Option<PathBuf> {
        for e in fs::read_dir(p).ok()? {
            let e = e.ok()?.path();
            if e.is_dir() {
                if let Some(f) = find(&e, hex) {
                    return Some(f);
                }
            } else if e.ends_with(format!("{hex}/data")) {
                return Some(e);
            }
        }
        None
    }
    find(&home.join("store"), digest.hex()).expect("the blob's file")
}

fn layer_digests(image: &Image) -> Vec<Digest> {
    image
        .manifest
        .layers()
        .iter()
        .map(|l| Digest::parse(l.digest().as_ref()).unwrap())
        .collect()
}

fn tmp_is_empty(store: &LayerStore) -> bool {
    fs::read_dir(store.dir().join("tmp"))
        .unwrap()
        .next()
        .is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_is_unpacked_once_verified_once_and_runs_as_a_rootfs() {
    let home = tempfile::tempdir().unwrap();
    let images = ImageStore::open(home.path()).await.unwrap();
    let image = import_busybox(&images, home.path(), "busybox:latest").await;
    let store = LayerStore::open(home.path()).unwrap();

    // Two callers at once: one unpacks, the other waits and finds it.
    let (a, b) = tokio::join!(
        store.prepare(&images, &image),
        store.prepare(&images, &image)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.len(), 1);
    assert!(tmp_is_empty(&store));
    let bb = a[0].join("bin/busybox");
    assert_eq!(fs::read(&bb).unwrap(), fs::read("/bin/busybox").unwrap());
    assert_eq!(
        fs::read_link(a[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let ino = fs::metadata(&bb).unwrap().ino();
    let (config, _) = images.config(&image).await.unwrap();
    let diff_id = Digest::parse(&config.rootfs().diff_ids()[0]).unwrap();
    let rec = store.record(&diff_id).unwrap().unwrap();
    assert!(rec.verified.contains(&layer_digests(&image)[0]));
    assert_eq!(store.list().unwrap(), vec![diff_id.clone()]);

    // Verified and remembered: a second prepare reads nothing. Proven by removing the blob's
    // bytes: preparing still works, since the fact is recorded.
    let blob = blob_file(home.path(), &layer_digests(&image)[0]);
    let saved = fs::read(&blob).unwrap();
    fs::write(&blob, b"").unwrap();
    let again = store.prepare(&images, &image).await.unwrap();
    assert_eq!(again, a);
    assert_eq!(fs::metadata(&bb).unwrap().ino(), ino, "not unpacked again");
    fs::write(&blob, &saved).unwrap();

    // Two containers share the layer: overlay, nothing copied.
    for c in ["c1", "c2"] {
        let d = home.path().join("containers").join(c);
        let r =
            Rootfs::mount(&again, &d.join("upper"), &d.join("work"), &d.join("rootfs")).unwrap();
        assert_eq!(r.kind(), RootfsKind::Overlay);
        let md = fs::metadata(d.join("rootfs/bin/busybox")).unwrap();
        assert_eq!(md.len(), fs::metadata("/bin/busybox").unwrap().len());
        // The real test of a rootfs: run busybox in it.
        let out = std::process::Command::new("chroot")
            .arg(d.join("rootfs"))
            .args(["/bin/sh", "-c", "cat /etc/motd; echo $((6*7))"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "welcome\n42\n");
        r.unmount().unwrap();
    }

    let report = store.verify(&images, &image).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.layers[0].unpacked, Check::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_stack_with_whiteouts_and_mixed_compression() {
    let home = tempfile::tempdir().unwrap();
    let images = ImageStore::open(home.path()).await.unwrap();
    let image = two_layer(&images, home.path(), "two:1", false).await;
    let store = LayerStore::open(home.path()).unwrap();
    let dirs = store.prepare(&images, &image).await.unwrap();
    assert_eq!(dirs.len(), 2);
    let d = home.path().join("c");
    for force_copy in [false, true] {
        let (upper, work, target) = (
            d.join(format!("u{force_copy}")),
            d.join(format!("w{force_copy}")),
            d.join(format!("r{force_copy}")),
        );
        let r = if force_copy {
            Rootfs::mount_copy(&dirs, &upper, &work, &target).unwrap()
        } else {
            Rootfs::mount(&dirs, &upper, &work, &target).unwrap()
        };
        assert!(!target.join("etc/motd").exists(), "whited out");
        assert_eq!(fs::read(target.join("etc/hostname")).unwrap(), b"two\n");
        assert_eq!(
            fs::read(target.join("etc/passwd")).unwrap(),
            b"root:x:0:0:root:/root:/bin/sh\n"
        );
        r.unmount().unwrap();
    }
    let report = store.verify(&images, &image).await.unwrap();
    assert!(report.is_ok(), "{report:?}");

    // The same diff_id under another compression (the same tree, gzip instead of zstd) is
    // verified without unpacking, and remembered.
    let (config, _) = images.config(&image).await.unwrap();
    let diff_id = Digest::parse(&config.rootfs().diff_ids()[1]).unwrap();
    let before = store.record(&diff_id).unwrap().unwrap();
    assert_eq!(before.verified.len(), 1);
    let l2 = home.path().join("two:1-l2");
    let (gz, info) = tar_of(&l2, Compression::Gzip);
    assert_eq!(info.diff_id, diff_id);
    store
        .ensure(&gz[..], &info.digest, info.size, &diff_id)
        .unwrap();
    let after = store.record(&diff_id).unwrap().unwrap();
    assert_eq!(after.verified.len(), 2);
    assert_eq!(after.tree, before.tree);
    // A blob that does not decompress to the diff_id is refused and not remembered.
    let (other, oinfo) = tar_of(&home.path().join("two:1-l1"), Compression::Gzip);
    let err = store
        .ensure(&other[..], &oinfo.digest, oinfo.size, &diff_id)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::Mismatch {
                what: "diff_id",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.record(&diff_id).unwrap().unwrap().verified.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_blob_is_refused_and_reported() {
    let home = tempfile::tempdir().unwrap();
    let images = ImageStore::open(home.path()).await.unwrap();
    let image = import_busybox(&images, home.path(), "busybox:latest").await;
    let store = LayerStore::open(home.path()).unwrap();
    let digest = layer_digests(&image)[0].clone();
    let blob = blob_file(home.path(), &digest);
    let good = fs::read(&blob).unwrap();
    let mut bad = good.clone();
    // Same size, one byte changed inside the compressed stream.
    let i = bad.len() / 2;
    bad[i] ^= 0x55;
    fs::write(&blob, &bad).unwrap();

    let err = store.prepare(&images, &image).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(digest.as_str()), "{msg}");
    assert!(store.list().unwrap().is_empty(), "nothing published");
    assert!(tmp_is_empty(&store), "nothing left behind");
    let report = store.verify(&images, &image).await.unwrap();
    assert!(!report.is_ok());
    assert!(!report.layers[0].blob.is_ok(), "{report:?}");
    assert_eq!(report.layers[0].unpacked, Check::Absent);

    // Restored, it unpacks; tampered after being verified, `verify` still sees it.
    fs::write(&blob, &good).unwrap();
    store.prepare(&images, &image).await.unwrap();
    assert!(store.verify(&images, &image).await.unwrap().is_ok());
    fs::write(&blob, &bad).unwrap();
    let report = store.verify(&images, &image).await.unwrap();
    assert!(
        matches!(
            report.layers[0].blob,
            Check::Mismatch { what: "digest", .. } | Check::Failed(_)
        ),
        "{report:?}"
    );
    assert_eq!(report.layers[0].unpacked, Check::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_unpacked_layer_is_reported() {
    let home = tempfile::tempdir().unwrap();
    let images = ImageStore::open(home.path()).await.unwrap();
    let image = two_layer(&images, home.path(), "two:1", false).await;
    let store = LayerStore::open(home.path()).unwrap();
    let dirs = store.prepare(&images, &image).await.unwrap();
    assert!(store.verify(&images, &image).await.unwrap().is_ok());

    // Content, then metadata only, then an added file: each is seen.
    let passwd = dirs[0].join("etc/passwd");
    fs::write(&passwd, "root::0:0:root:/root:/bin/sh\n").unwrap();
    let report = store.verify(&images, &image).await.unwrap();
    assert!(!report.is_ok());
    assert!(
        matches!(
            report.layers[0].unpacked,
            Check::Mismatch {
                what: "unpacked tree",
                ..
            }
        ),
        "{report:?}"
    );
    assert_eq!(report.layers[0].blob, Check::Ok);
    assert_eq!(report.layers[1].unpacked, Check::Ok);

    fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    rustix::fs::utimensat(
        CWD,
        &passwd,
        &rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_700_000_000,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_700_000_000,
                tv_nsec: 0,
            },
        },
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    assert!(
        store.verify(&images, &image).await.unwrap().is_ok(),
        "restored exactly"
    );
    rustix::fs::chmod(&passwd, Mode::from_raw_mode(0o4777)).unwrap();
    assert!(
        !store.verify(&images, &image).await.unwrap().is_ok(),
        "a mode change"
    );
    rustix::fs::chmod(&passwd, Mode::from_raw_mode(0o644)).unwrap();
    fs::write(dirs[1].join("etc/extra"), "x").unwrap();
    let report = store.verify(&images, &image).await.unwrap();
    assert!(!report.layers[1].unpacked.is_ok(), "{report:?}");

    // Removing the layer and preparing again repairs it.
    let (config, _) = images.config(&image).await.unwrap();
    let d1 = Digest::parse(&config.rootfs().diff_ids()[1]).unwrap();
    store.remove(&d1).unwrap();
    store.prepare(&images, &image).await.unwrap();
    assert!(store.verify(&images, &image).await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_diff_id_is_refused_before_anything_is_published() {
    let home = tempfile::tempdir().unwrap();
    let images = ImageStore::open(home.path()).await.unwrap();
    let image = two_layer(&images, home.path(), "bad:1", true).await;
    let store = LayerStore::open(home.path()).unwrap();
    let err = store.prepare(&images, &image).await.unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::Mismatch {
                what: "diff_id",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(layer_digests(&image)[1].as_str()),
        "{err}"
    );
    // The good layer may be there; the bad one is not.
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(tmp_is_empty(&store));
    let report = store.verify(&images, &image).await.unwrap();
    assert!(matches!(
        report.layers[1].blob,
        Check::Mismatch {
            what: "diff_id",
            ..
        }
    ));
}
