use std::collections::HashSet;
use std::io::{Read, Write};

use bytes::Bytes;
use hoist_oci::{Digest, Reference, media_type};
use serde_json::json;

use super::*;

pub(super) fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

pub(super) async fn temp_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).await.unwrap();
    (dir, store)
}

/// A tar with one file holding `content`.
pub(super) fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut g = io::gzip(Vec::new());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

fn blob(bytes: Vec<u8>) -> futures::stream::Iter<std::vec::IntoIter<std::io::Result<Bytes>>> {
    futures::stream::iter(vec![Ok(Bytes::from(bytes))])
}

/// A test image's pieces.
pub(super) struct Made {
    pub manifest: Digest,
    pub id: Digest,
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
}

/// Stores an image of gzipped one-file layers in `repo` (untagged) for `platform`.
pub(super) async fn make_image(
    s: &ImageStore,
    repo: &RepoName,
    contents: &[&[u8]],
    created: &str,
    platform: &str,
) -> Made {
    let (os, arch) = platform.split_once('/').unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let tar = layer_tar(&format!("file{i}"), c);
        diff_ids.push(Digest::sha256_of(&tar));
        let z = gz(&tar);
        let d = Digest::sha256_of(&z);
        descs.push(
            json!({"mediaType": media_type::OCI_LAYER_GZIP, "digest": d.as_str(), "size": z.len()}),
        );
        s.put_blob(repo, &d, blob(z)).await.unwrap();
        layers.push(d);
    }
    let history: Vec<_> = contents
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"created": created, "created_by": format!("step {i}")}))
        .chain([json!({"created": created, "created_by": "CMD", "empty_layer": true})])
        .collect();
    let config = serde_json::to_vec(&json!({
        "created": created,
        "architecture": arch,
        "os": os,
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>()},
        "history": history,
    }))
    .unwrap();
    let id = Digest::sha256_of(&config);
    let config_size = config.len();
    s.put_blob(repo, &id, blob(config)).await.unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": id.as_str(), "size": config_size},
        "layers": descs,
    }))
    .unwrap();
    let manifest = s
        .put_manifest(repo, media_type::OCI_MANIFEST, Bytes::from(manifest), None)
        .await
        .unwrap();
    Made {
        manifest,
        id,
        layers,
        diff_ids,
    }
}

fn host() -> String {
    Platform::host().to_string()
}

async fn tagged(s: &ImageStore, reference: &str, contents: &[&[u8]], created: &str) -> Made {
    let reference = r(reference);
    let repo = repo_name(&reference).unwrap();
    let m = make_image(s, &repo, contents, created, &host()).await;
    s.tag(&reference, &m.manifest).await.unwrap();
    m
}

fn rows(list: &[ImageSummary]) -> Vec<(String, Option<String>)> {
    list.iter()
        .map(|i| (i.repository.clone(), i.tag.clone()))
        .collect()
}

#[tokio::test]
async fn tag_list_and_remove_like_docker() {
    let (_dir, s) = temp_store().await;
    let a = tagged(&s, "alpine", &[b"one", b"two"], "2024-01-01T00:00:00Z").await;
    // Tagging into another registry's repository links the blobs there.
    s.tag_reference(&r("alpine"), &r("localhost:5000/team/alpine:1.0"))
        .await
        .unwrap();
    s.tag_reference(&r("alpine"), &r("alpine:3")).await.unwrap();
    let list = s.list().await.unwrap();
    assert_eq!(
        rows(&list),
        vec![
            ("alpine".into(), Some("3".into())),
            ("alpine".into(), Some("latest".into())),
            ("localhost:5000/team/alpine".into(), Some("1.0".into())),
        ]
    );
    assert!(list.iter().all(|i| i.id == a.id && i.digest == a.manifest));
    assert_eq!(list[0].created_unix, Some(1_704_067_200));
    let img = s
        .image(&r("localhost:5000/team/alpine:1.0"), &Platform::host())
        .await
        .unwrap();
    assert_eq!(list[0].size, img.size());
    let (config, _) = s.config(&img).await.unwrap();
    assert_eq!(config.rootfs().diff_ids().len(), 2);

    // By id, with several tags: refused unless forced.
    let err = s.remove(&a.id.hex()[..12], false).await.unwrap_err();
    assert!(
        matches!(err, ImageError::Conflict { count: 3, .. }),
        "{err}"
    );
    // By tag: only the tag goes while another tag of the repository points at the manifest.
    assert_eq!(
        s.remove("alpine:3", false).await.unwrap(),
        vec![Removed::Untagged("alpine:3".into())]
    );
    // The last tag of the repository: its manifest goes, but the image lives on elsewhere.
    assert_eq!(
        s.remove("alpine", false).await.unwrap(),
        vec![Removed::Untagged("alpine:latest".into())]
    );
    assert!(matches!(
        s.resolve(&r("alpine")).await.unwrap_err(),
        ImageError::NotFound(_)
    ));
    // By id with one tag left: untagged and deleted.
    assert_eq!(
        s.remove(a.id.as_str(), false).await.unwrap(),
        vec![
            Removed::Untagged("localhost:5000/team/alpine:1.0".into()),
            Removed::Deleted(a.manifest.clone())
        ]
    );
    assert!(s.list().await.unwrap().is_empty());
    assert!(matches!(
        s.remove("alpine", false).await.unwrap_err(),
        ImageError::NotFound(_)
    ));
    let gc = s.gc_now().await.unwrap();
    assert_eq!(gc.blobs_removed, 4, "{gc:?}");
    assert!(s.store().metadata().all_blobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn retagging_leaves_a_dangling_image_that_prune_removes() {
    let (_dir, s) = temp_store().await;
    let old = tagged(&s, "app:1", &[b"old"], "2024-01-01T00:00:00Z").await;
    let new = tagged(&s, "app:1", &[b"new"], "2024-02-01T00:00:00Z").await;
    let keep = tagged(&s, "other", &[b"other"], "2024-03-01T00:00:00Z").await;
    let list = s.list().await.unwrap();
    assert_eq!(
        rows(&list),
        vec![
            ("other".into(), Some("latest".into())),
            ("app".into(), Some("1".into())),
            ("app".into(), None),
        ]
    );
    assert_eq!(list[1].id, new.id);
    assert_eq!(list[2].id, old.id);
    let usage = s.disk_usage(&HashSet::new()).await.unwrap();
    assert_eq!((usage.images, usage.active), (3, 0));
    assert_eq!(usage.reclaimable, usage.size);
    let in_use = HashSet::from([keep.id.clone()]);
    let usage = s.disk_usage(&in_use).await.unwrap();
    assert_eq!(usage.active, 1);
    assert!(usage.reclaimable < usage.size);

    let report = s.prune(false, &HashSet::new()).await.unwrap();
    assert_eq!(report.removed, vec![Removed::Deleted(old.manifest.clone())]);
    assert_eq!(
        rows(&s.list().await.unwrap()),
        vec![
            ("other".into(), Some("latest".into())),
            ("app".into(), Some("1".into())),
        ]
    );
    // The old layer is collected (no grace here); the new image's blobs stay.
    s.gc_now().await.unwrap();
    let blobs = s.store().metadata().all_blobs().await.unwrap();
    assert!(!blobs.contains(&old.layers[0]));
    assert!(blobs.contains(&new.layers[0]));

    // --all removes every image not in use.
    let report = s.prune(true, &in_use).await.unwrap();
    assert_eq!(
        report.removed,
        vec![
            Removed::Untagged("app:1".into()),
            Removed::Deleted(new.manifest.clone())
        ]
    );
    assert_eq!(
        rows(&s.list().await.unwrap()),
        vec![("other".into(), Some("latest".into()))]
    );
}

#[tokio::test]
async fn index_resolves_to_the_host_platform() {
    let (_dir, s) = temp_store().await;
    let reference = r("localhost:5000/multi:1");
    let repo = repo_name(&reference).unwrap();
    let other = if Platform::host().architecture == "s390x" {
        "linux/ppc64le"
    } else {
        "linux/s390x"
    };
    let mine = make_image(&s, &repo, &[b"host"], "2024-01-01T00:00:00Z", &host()).await;
    let theirs = make_image(&s, &repo, &[b"other"], "2024-01-01T00:00:00Z", other).await;
    let entry = |m: &Made, p: &str| {
        let (os, arch) = p.split_once('/').unwrap();
        json!({"mediaType": media_type::OCI_MANIFEST, "digest": m.manifest.as_str(), "size": 1,
               "platform": {"os": os, "architecture": arch}})
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [entry(&theirs, other), entry(&mine, &host())],
    }))
    .unwrap();
    let idx = s
        .put_manifest(&repo, media_type::OCI_INDEX, Bytes::from(index), None)
        .await
        .unwrap();
    s.tag(&reference, &idx).await.unwrap();
    let img = s.image(&reference, &Platform::host()).await.unwrap();
    assert_eq!(img.digest, mine.manifest);
    assert_eq!(img.index.as_ref(), Some(&idx));
    let img = s
        .image(&reference, &Platform::parse(other).unwrap())
        .await
        .unwrap();
    assert_eq!(img.digest, theirs.manifest);
    let err = s
        .image(&reference, &Platform::parse("windows/amd64").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NoPlatform { .. }), "{err}");
    // One row: the index's children are not dangling.
    let list = s.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].id.clone(), list[0].digest.clone()),
        (mine.id, idx.clone())
    );
    // Tagging the index elsewhere copies its children; removing it removes them.
    s.tag_reference(&reference, &r("copy:1")).await.unwrap();
    let removed = s.remove("copy:1", false).await.unwrap();
    assert_eq!(removed, vec![Removed::Untagged("copy:1".into())]);
    let removed = s.remove("localhost:5000/multi:1", false).await.unwrap();
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert!(s.store().all_manifests().await.unwrap().is_empty());
}

#[tokio::test]
async fn digest_references_and_history() {
    let (_dir, s) = temp_store().await;
    let a = tagged(&s, "app:1", &[b"x", b"y"], "2024-01-01T00:00:00Z").await;
    let by_digest = r(&format!("app@{}", a.manifest));
    assert_eq!(s.resolve(&by_digest).await.unwrap().digest, a.manifest);
    let h = s.history(&by_digest, &Platform::host()).await.unwrap();
    assert_eq!(h.len(), 3);
    assert!(h[0].empty_layer && h[0].size == 0);
    assert_eq!(h[1].layer.as_ref(), Some(&a.layers[1]));
    assert_eq!(h[2].created_by.as_deref(), Some("step 0"));
    let inspect = s.inspect(&r("app:1"), &Platform::host()).await.unwrap();
    assert_eq!(inspect.id, a.id);
    assert_eq!(inspect.repo_tags, ["app:1"]);
    assert_eq!(inspect.repo_digests, [format!("app@{}", a.manifest)]);
    assert_eq!(inspect.layers.len(), 2);
    let json = serde_json::to_value(&inspect).unwrap();
    assert_eq!(json["Config"]["config"]["Cmd"], json!(["sh"]));

    let err = s.remove(&by_digest.to_string(), false).await.unwrap_err();
    assert!(matches!(err, ImageError::Conflict { .. }), "{err}");
    let removed = s.remove(&by_digest.to_string(), true).await.unwrap();
    assert_eq!(
        removed,
        vec![
            Removed::Untagged("app:1".into()),
            Removed::Deleted(a.manifest.clone())
        ]
    );
    assert!(matches!(
        s.remove("ffff", false).await.unwrap_err(),
        ImageError::NotFound(_)
    ));
}

#[tokio::test]
async fn blobs_are_verified_and_shared_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = ImageStore::open(dir.path()).await.unwrap();
    let repo = RepoName::parse("docker.io/library/x").unwrap();
    let data = b"hello".to_vec();
    let wrong = Digest::sha256_of(b"other");
    let err = s1
        .put_blob(&repo, &wrong, blob(data.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Content(ContentError::DigestMismatch { .. })
        ),
        "{err}"
    );
    assert!(s1.store().blob_stat(&repo, &wrong).await.unwrap().is_none());
    // A second store over the same directory (another process) sees what the first committed.
    let made = tagged(&s1, "x:1", &[b"layer"], "2024-01-01T00:00:00Z").await;
    let s2 = ImageStore::open(dir.path()).await.unwrap();
    assert_eq!(s2.resolve(&r("x:1")).await.unwrap().digest, made.manifest);
    let img = s2.image(&r("x:1"), &Platform::host()).await.unwrap();
    assert_eq!(
        s2.config(&img).await.unwrap().0.rootfs().diff_ids().len(),
        1
    );
}

#[tokio::test]
async fn import_makes_a_one_layer_image_with_changes() {
    let (_dir, s) = temp_store().await;
    let tar = layer_tar("bin/hello", b"#!/bin/sh\necho hello\n");
    let changes = [
        r#"CMD ["/bin/hello"]"#.to_owned(),
        "ENV A=1".to_owned(),
        "EXPOSE 8080".to_owned(),
        "WORKDIR /srv".to_owned(),
    ];
    let imported = s
        .import(std::io::Cursor::new(tar.clone()), &r("my-base:1"), &changes)
        .await
        .unwrap();
    assert_eq!(imported.diff_id, Digest::sha256_of(&tar));
    // Gzipped input gives the same layer: the layer is the tar itself, compressed the same way.
    let again = s
        .import(std::io::Cursor::new(gz(&tar)), &r("my-base:2"), &[])
        .await
        .unwrap();
    assert_eq!(again.layer, imported.layer);
    assert_eq!(again.diff_id, imported.diff_id);

    let img = s.image(&r("my-base:1"), &Platform::host()).await.unwrap();
    assert_eq!(img.id().unwrap(), imported.id);
    let (config, raw) = s.config(&img).await.unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(raw["config"]["Cmd"], json!(["/bin/hello"]));
    assert_eq!(raw["config"]["Env"], json!(["A=1"]));
    assert_eq!(raw["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(raw["config"]["WorkingDir"], json!("/srv"));
    assert_eq!(
        config.rootfs().diff_ids(),
        &vec![imported.diff_id.to_string()]
    );
    assert_eq!(
        config.architecture().to_string(),
        Platform::host().architecture
    );
    assert_eq!(config.history().as_ref().unwrap().len(), 1);
    // The stored layer decompresses to the input.
    let layer = s
        .read_blob(&img.repo, &imported.layer, 1 << 20)
        .await
        .unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&layer[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, tar);

    let err = s
        .import(
            std::io::Cursor::new(b"definitely not a tar archive".repeat(40)),
            &r("bad:1"),
            &[],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a tar"), "{err}");
    let err = s
        .import(
            std::io::Cursor::new(tar),
            &r("bad:1"),
            &["RUN x".to_owned()],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("RUN x"), "{err}");
    assert!(s.resolve(&r("bad:1")).await.is_err());
}

/// The entries of a tar, in order, with their contents.
fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn build_tar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

async fn save_bytes(s: &ImageStore, refs: &[&str], format: archive::Format) -> Vec<u8> {
    let refs: Vec<Reference> = refs.iter().map(|x| r(x)).collect();
    s.save(&refs, Vec::new(), format, &Platform::host())
        .await
        .unwrap()
}

#[tokio::test]
async fn docker_archive_round_trip() {
    let (_dir, s) = temp_store().await;
    let a = tagged(&s, "app:1", &[b"base", b"top"], "2024-01-01T00:00:00Z").await;
    s.tag_reference(&r("app:1"), &r("localhost:5000/team/app:2"))
        .await
        .unwrap();
    let b = tagged(&s, "other:1", &[b"base"], "2024-01-01T00:00:00Z").await;
    let tar = save_bytes(
        &s,
        &["app:1", "localhost:5000/team/app:2", "other:1"],
        archive::Format::DockerArchive,
    )
    .await;
    let files = entries(&tar);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    // One config per image, shared layers once, uncompressed and named by diff id.
    assert_eq!(names.len(), 2 + 2 + 1, "{names:?}");
    assert_eq!(names.last(), Some(&"manifest.json"));
    let manifest: serde_json::Value = serde_json::from_slice(&files.last().unwrap().1).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        json!(["app:1", "localhost:5000/team/app:2"])
    );
    assert_eq!(manifest[0]["Config"], json!(format!("{}.json", a.id.hex())));
    assert_eq!(manifest[1]["RepoTags"], json!(["other:1"]));
    for (name, data) in &files {
        if let Some(hex) = name.strip_suffix("/layer.tar") {
            assert_eq!(Digest::sha256_of(data).hex(), hex);
            assert!(a.diff_ids.iter().any(|d| d.hex() == hex));
        }
    }

    // Loaded into another store, gzipped and with manifest.json first: the same images.
    let (_dir2, s2) = temp_store().await;
    let mut reordered = files.clone();
    reordered.reverse();
    let loaded = s2
        .load(std::io::Cursor::new(gz(&build_tar(&reordered))))
        .await
        .unwrap();
    assert_eq!(
        loaded.iter().map(Reference::familiar).collect::<Vec<_>>(),
        ["app:1", "localhost:5000/team/app:2", "other:1"]
    );
    let img = s2
        .image(&r("localhost:5000/team/app:2"), &Platform::host())
        .await
        .unwrap();
    assert_eq!(img.id().unwrap(), a.id);
    // Deterministic gzip: the layers (and so the manifest) come back with the same digests.
    assert_eq!(img.digest, a.manifest);
    let other = s2.image(&r("other:1"), &Platform::host()).await.unwrap();
    assert_eq!(other.id().unwrap(), b.id);

    // A corrupted layer is refused, and nothing gets tagged.
    let (_dir3, s3) = temp_store().await;
    let mut bad = files.clone();
    for (name, data) in &mut bad {
        if name.ends_with("layer.tar") {
            data[600] ^= 1;
        }
    }
    let err = s3
        .load(std::io::Cursor::new(build_tar(&bad)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("diff id"), "{err}");
    assert!(s3.list().await.unwrap().is_empty());
    let err = s3
        .load(std::io::Cursor::new(b"garbage".repeat(100)))
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Archive(_)), "{err}");
}

#[tokio::test]
async fn oci_layout_round_trip_keeps_digests() {
    let (_dir, s) = temp_store().await;
    let a = tagged(
        &s,
        "localhost:5000/team/app:1",
        &[b"one"],
        "2024-01-01T00:00:00Z",
    )
    .await;
    let tar = save_bytes(
        &s,
        &["localhost:5000/team/app:1"],
        archive::Format::OciLayout,
    )
    .await;
    let files = entries(&tar);
    let index = files.iter().find(|(n, _)| n == "index.json").unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index.1).unwrap();
    assert_eq!(index["manifests"][0]["digest"], json!(a.manifest.as_str()));
    assert_eq!(
        index["manifests"][0]["annotations"][archive::REF_NAME],
        json!("1")
    );
    for (name, data) in &files {
        if name.starts_with(archive::LAYOUT_BLOBS) {
            assert_eq!(name, &archive::layout_blob_path(&Digest::sha256_of(data)));
        }
    }
    let (_dir2, s2) = temp_store().await;
    let loaded = s2.load(std::io::Cursor::new(tar.clone())).await.unwrap();
    assert_eq!(loaded, vec![r("localhost:5000/team/app:1")]);
    assert_eq!(
        s2.resolve(&r("localhost:5000/team/app:1"))
            .await
            .unwrap()
            .digest,
        a.manifest
    );

    // A blob that does not match its name is refused.
    let mut bad = files.clone();
    for (name, data) in &mut bad {
        if name == &archive::layout_blob_path(&a.layers[0]) {
            data[20] ^= 1;
        }
    }
    let (_dir3, s3) = temp_store().await;
    let err = s3
        .load(std::io::Cursor::new(build_tar(&bad)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    assert!(s3.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn oci_layout_keeps_a_whole_index() {
    let (_dir, s) = temp_store().await;
    let reference = r("multi:1");
    let repo = repo_name(&reference).unwrap();
    let mine = make_image(&s, &repo, &[b"host"], "2024-01-01T00:00:00Z", &host()).await;
    let other = make_image(&s, &repo, &[b"x"], "2024-01-01T00:00:00Z", "windows/amd64").await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [
            {"mediaType": media_type::OCI_MANIFEST, "digest": other.manifest.as_str(), "size": 1,
             "platform": {"os": "windows", "architecture": "amd64"}},
            {"mediaType": media_type::OCI_MANIFEST, "digest": mine.manifest.as_str(), "size": 1,
             "platform": {"os": "linux", "architecture": Platform::host().architecture}},
        ],
    }))
    .unwrap();
    let idx = s
        .put_manifest(&repo, media_type::OCI_INDEX, Bytes::from(index), None)
        .await
        .unwrap();
    s.tag(&reference, &idx).await.unwrap();
    let tar = save_bytes(&s, &["multi:1"], archive::Format::OciLayout).await;
    let (_dir2, s2) = temp_store().await;
    s2.load(std::io::Cursor::new(tar)).await.unwrap();
    assert_eq!(s2.resolve(&reference).await.unwrap().digest, idx);
    assert_eq!(
        s2.image(&reference, &Platform::host())
            .await
            .unwrap()
            .digest,
        mine.manifest
    );
    // A docker-archive of an index holds the host's image.
    let tar = save_bytes(&s, &["multi:1"], archive::Format::DockerArchive).await;
    let (_dir3, s3) = temp_store().await;
    s3.load(std::io::Cursor::new(tar)).await.unwrap();
    let img = s3.image(&reference, &Platform::host()).await.unwrap();
    assert_eq!(img.id().unwrap(), mine.id);
}

#[tokio::test]
async fn a_partial_index_is_kept_and_completed_by_a_later_pull() {
    // What a one-platform pull of a multi-platform image stores (docker and containerd keep the
    // index): the index, and the children that were fetched.
    let (_dir, s) = temp_store().await;
    let reference = r("localhost:5000/partial:1");
    let repo = repo_name(&reference).unwrap();
    let other = if Platform::host().architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let mine = make_image(&s, &repo, &[b"host"], "2024-01-01T00:00:00Z", &host()).await;
    // The other platform's manifest is not stored (only its digest is known, from the index).
    let (_tmp, scratch) = temp_store().await;
    let theirs = make_image(&scratch, &repo, &[b"theirs"], "2024-01-01T00:00:00Z", other).await;
    let entry = |m: &Made, p: &str| {
        let (os, arch) = p.split_once('/').unwrap();
        json!({"mediaType": media_type::OCI_MANIFEST, "digest": m.manifest.as_str(), "size": 1,
               "platform": {"os": os, "architecture": arch}})
    };
    let index = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [entry(&theirs, other), entry(&mine, &host())],
        }))
        .unwrap(),
    );
    let tag = reference.tag().unwrap().clone();
    let idx = s
        .put_manifest(&repo, media_type::OCI_INDEX, index.clone(), Some(&tag))
        .await
        .unwrap();
    assert_eq!(s.resolve(&reference).await.unwrap().digest, idx);
    assert_eq!(
        s.image(&reference, &Platform::host()).await.unwrap().digest,
        mine.manifest
    );
    let err = s
        .image(&reference, &Platform::parse(other).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NoPlatform { .. }), "{err}");
    let list = s.list().await.unwrap();
    assert_eq!(
        rows(&list),
        vec![("localhost:5000/partial".into(), Some("1".into()))]
    );
    // Tagging it elsewhere copies what is there.
    s.tag_reference(&reference, &r("copy:1")).await.unwrap();
    assert_eq!(
        s.image(&r("copy:1"), &Platform::host())
            .await
            .unwrap()
            .digest,
        mine.manifest
    );

    // A later pull of the other platform stores its manifest and the index again: the index
    // names it now, so it is not a dangling image.
    let theirs2 = make_image(&s, &repo, &[b"theirs"], "2024-01-01T00:00:00Z", other).await;
    assert_eq!(theirs2.manifest, theirs.manifest);
    s.put_manifest(&repo, media_type::OCI_INDEX, index, Some(&tag))
        .await
        .unwrap();
    assert_eq!(
        s.image(&reference, &Platform::parse(other).unwrap())
            .await
            .unwrap()
            .digest,
        theirs.manifest
    );
    assert_eq!(s.list().await.unwrap().len(), 2, "the tag and the copy");
}
