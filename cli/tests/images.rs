//! The local image store's archives against skopeo: what `hoist_storage::images` saves, skopeo
//! reads, and what skopeo writes, `load` reads. Images are made locally by
//! `hoist_conformance::fixtures` (a real busybox rootfs), no network.
//!
//! skopeo must be installed (`.ci/peers.sh`); a missing tool is a failure naming its package.

use std::path::Path;

use hoist_conformance::fixtures::{self, Layout};
use hoist_oci::{Digest, Reference};
use hoist_storage::images::archive::Format;
use hoist_storage::images::{ImageStore, Platform};
use hoist_testsupport::path;
use hoist_testsupport::peers::{run, skopeo};
use serde_json::Value;

/// Runs skopeo and returns its stdout; fails the test with its stderr otherwise.
fn run_skopeo(args: &[&str]) -> String {
    run(skopeo().arg("--insecure-policy").args(args))
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// A store with the busybox rootfs imported as `reference`.
async fn store_with_busybox(dir: &Path, reference: &str) -> (ImageStore, Digest) {
    let store = ImageStore::open(&dir.join("home")).await.unwrap();
    let rootfs = dir.join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
    let file = std::fs::File::open(&rootfs).unwrap();
    let imported = store
        .import(file, &r(reference), &[r#"CMD ["sh"]"#.to_owned()])
        .await
        .unwrap();
    (store, imported.id)
}

#[tokio::test]
async fn saved_docker_archive_is_read_by_skopeo() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = store_with_busybox(dir.path(), "localhost:5000/team/busybox:1").await;
    store
        .tag_reference(&r("localhost:5000/team/busybox:1"), &r("busybox:extra"))
        .await
        .unwrap();
    let archive = dir.path().join("busybox.tar");
    let file = std::fs::File::create(&archive).unwrap();
    store
        .save(
            &[r("localhost:5000/team/busybox:1"), r("busybox:extra")],
            file,
            Format::DockerArchive,
            &Platform::host(),
        )
        .await
        .unwrap()
        .sync_all()
        .unwrap();

    let image = store
        .image(&r("busybox:extra"), &Platform::host())
        .await
        .unwrap();
    let (config, _) = store.config(&image).await.unwrap();
    let inspect: Value = serde_json::from_str(&run_skopeo(&[
        "inspect",
        &format!("docker-archive:{}", path(&archive)),
    ]))
    .unwrap();
    // A docker-archive's layers are the uncompressed tars: skopeo names them by diff id.
    assert_eq!(
        inspect["Layers"],
        serde_json::json!(config.rootfs().diff_ids()),
        "{inspect}"
    );
    assert_eq!(
        inspect["Architecture"],
        Platform::host().architecture.as_str()
    );
    assert_eq!(inspect["Env"], Value::Null);

    let oci = dir.path().join("oci");
    run_skopeo(&[
        "copy",
        &format!("docker-archive:{}:busybox:extra", path(&archive)),
        &format!("oci:{}:copied", path(&oci)),
    ]);
    let layout = Layout::open(&oci).unwrap();
    layout.verify().unwrap();
    let manifest: Value = serde_json::from_slice(
        &layout
            .read_blob(&layout.manifest_for("copied").unwrap().digest)
            .unwrap(),
    )
    .unwrap();
    let copied: Value = serde_json::from_slice(
        &layout
            .read_blob(&Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap())
            .unwrap(),
    )
    .unwrap();
    // skopeo re-serialises the config when it converts the manifest to OCI: the same JSON.
    let ours: Value =
        serde_json::from_slice(&store.read_blob(&image.repo, &id, 1 << 20).await.unwrap()).unwrap();
    assert_eq!(copied, ours);
}

#[tokio::test]
async fn skopeo_docker_archive_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(&dir.path().join("layout")).unwrap();
    let fixture = fixtures::busybox_image(&layout, "latest").unwrap();
    let archive = dir.path().join("skopeo.tar");
    run_skopeo(&[
        "copy",
        &layout.reference("latest"),
        &format!(
            "docker-archive:{}:localhost:5000/team/busybox:1",
            path(&archive)
        ),
    ]);

    let store = ImageStore::open(&dir.path().join("home")).await.unwrap();
    let loaded = store
        .load(std::fs::File::open(&archive).unwrap())
        .await
        .unwrap();
    assert_eq!(loaded, vec![r("localhost:5000/team/busybox:1")]);
    let image = store.image(&loaded[0], &Platform::host()).await.unwrap();
    // skopeo keeps the config bytes in a docker-archive: the image id survives the trip.
    assert_eq!(image.id().unwrap(), fixture.config.digest);
    let (config, _) = store.config(&image).await.unwrap();
    assert_eq!(image.manifest.layers().len(), 1);
    assert_eq!(config.rootfs().diff_ids().len(), 1);
    // The layer is gzipped deterministically: another store loading the archive gets the same
    // manifest.
    let other = ImageStore::open(&dir.path().join("home2")).await.unwrap();
    other
        .load(std::fs::File::open(&archive).unwrap())
        .await
        .unwrap();
    assert_eq!(
        other.resolve(&loaded[0]).await.unwrap().digest,
        image.digest
    );
    let list = store.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].repository, "localhost:5000/team/busybox");
    assert_eq!(list[0].tag.as_deref(), Some("1"));
}

#[tokio::test]
async fn saved_oci_archive_is_read_by_skopeo_and_loaded_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = store_with_busybox(dir.path(), "localhost:5000/team/busybox:1").await;
    let resolved = store
        .resolve(&r("localhost:5000/team/busybox:1"))
        .await
        .unwrap();
    let archive = dir.path().join("busybox-oci.tar");
    let file = std::fs::File::create(&archive).unwrap();
    store
        .save(
            &[r("localhost:5000/team/busybox:1")],
            file,
            Format::OciLayout,
            &Platform::host(),
        )
        .await
        .unwrap()
        .sync_all()
        .unwrap();

    let inspect: Value = serde_json::from_str(&run_skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:1", path(&archive)),
    ]))
    .unwrap();
    assert_eq!(inspect["config"]["digest"], id.as_str());
    let oci = dir.path().join("oci");
    run_skopeo(&[
        "copy",
        &format!("oci-archive:{}:1", path(&archive)),
        &format!("oci:{}:copied", path(&oci)),
    ]);
    let layout = Layout::open(&oci).unwrap();
    layout.verify().unwrap();
    // Nothing was converted: the manifest digest is the stored one.
    assert_eq!(
        layout.manifest_for("copied").unwrap().digest,
        resolved.digest
    );

    // skopeo's own OCI archive of it loads back under the name it carries.
    let again = dir.path().join("again.tar");
    run_skopeo(&[
        "copy",
        &format!("oci:{}:copied", path(&oci)),
        &format!("oci-archive:{}:localhost:5000/team/copy:2", path(&again)),
    ]);
    let other = ImageStore::open(&dir.path().join("home2")).await.unwrap();
    let loaded = other
        .load(std::fs::File::open(&again).unwrap())
        .await
        .unwrap();
    assert_eq!(loaded, vec![r("localhost:5000/team/copy:2")]);
    assert_eq!(
        other.resolve(&loaded[0]).await.unwrap().digest,
        resolved.digest
    );
}
