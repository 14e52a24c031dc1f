//! `hoist verify IMAGE`: a clean image verifies; a tampered unpacked layer and a tampered blob
//! are reported and the command fails.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hoist(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hoist"))
        .env("HOIST_HOME", home)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A busybox rootfs tar, as BASE-IMAGES.md describes it.
fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let tar = dir.join("rootfs.tar");
    let mut b = tar::Builder::new(fs::File::create(&tar).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", &root).unwrap();
    b.into_inner().unwrap();
    tar
}

fn find_blob(p: &Path, hex: &str) -> Option<PathBuf> {
    for e in fs::read_dir(p).ok()? {
        let e = e.ok()?.path();
        if e.is_dir() {
            if let Some(f) = find_blob(&e, hex) {
                return Some(f);
            }
        } else if e.ends_with(format!("{hex}/data")) {
            return Some(e);
        }
    }
    None
}

#[test]
fn verify_reports_tampered_layers_and_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let tar = busybox_tar(tmp.path());
    let o = hoist(&home, &["import", tar.to_str().unwrap(), "busybox:latest"]);
    assert!(o.status.success(), "{o:?}");

    // Nothing unpacked yet: blobs are checked, layers are "not unpacked".
    let o = hoist(&home, &["verify", "busybox"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("blob: ok"), "{out}");
    assert!(out.contains("unpacked: not unpacked"), "{out}");

    // Unpack through the layer store, as `hoist run` does.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dirs, layer, id) = rt.block_on(async {
        let images = hoist_storage::images::ImageStore::open(&home)
            .await
            .unwrap();
        let r = hoist_oci::Reference::parse("busybox").unwrap();
        let image = images
            .image(&r, &hoist_storage::images::Platform::host())
            .await
            .unwrap();
        let store = hoist_runtime::layers::LayerStore::open(&home).unwrap();
        let dirs = store.prepare(&images, &image).await.unwrap();
        let layer = hoist_oci::Digest::parse(image.manifest.layers()[0].digest().as_ref()).unwrap();
        (dirs, layer, image.id().unwrap())
    });
    let o = hoist(&home, &["verify", "-q", &id.hex()[..12]]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "by id prefix: {out}{err}");
    assert!(out.is_empty(), "quiet: {out}");

    // A tampered unpacked layer.
    fs::write(dirs[0].join("etc/passwd"), "root::0:0:root:/root:/bin/sh\n").unwrap();
    let o = hoist(&home, &["verify", "busybox:latest"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("unpacked: unpacked tree mismatch"), "{out}");
    assert!(
        err.contains("verification failed for busybox:latest"),
        "{err}"
    );

    // A tampered blob.
    let blob = find_blob(&home.join("store"), layer.hex()).unwrap();
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let o = hoist(&home, &["verify", "busybox"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains(&format!("layer {layer} blob: digest mismatch"))
            || out.contains(&format!("layer {layer} blob: reading the blob")),
        "{out}"
    );

    // An unknown image is an error naming it.
    let o = hoist(&home, &["verify", "nosuch:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("nosuch"), "{o:?}");
}
