use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use hoist_oci::{Algorithm, Digest, RepoName, media_type};

use super::*;
use crate::metadata::now;
use crate::{FsDriver, MemoryDriver, SqliteMetadata};

type Chunk = std::result::Result<Bytes, std::io::Error>;

fn body(parts: &[&[u8]]) -> impl Stream<Item = Chunk> + Send + use<> {
    let v: Vec<Chunk> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    stream::iter(v)
}

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

async fn memory_store() -> (Store, MemoryDriver) {
    let driver = MemoryDriver::new();
    let store = Store::open(
        Arc::new(driver.clone()),
        Arc::new(SqliteMetadata::in_memory().unwrap()),
    )
    .await
    .unwrap();
    (store, driver)
}

async fn read_blob(store: &Store, r: &RepoName, d: &Digest, offset: u64) -> Vec<u8> {
    let mut b = store.blob_open(r, d, offset).await.unwrap();
    let mut out = Vec::new();
    b.reader.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn chunked_upload_commits_verified_blob_visible_only_where_linked() {
    let (store, driver) = memory_store().await;
    let (a, b) = (repo("team/a"), repo("team/b"));
    let data = b"hello, chunked world".to_vec();
    let digest = Digest::sha256_of(&data);

    let up = store.upload_start(&a).await.unwrap();
    let st = store
        .upload_append(&a, &up.id, Some(0), body(&[&data[..5], &data[5..9]]))
        .await
        .unwrap();
    assert_eq!(st.offset, 9);
    // A chunk that does not start at the offset is refused and changes nothing.
    let err = store
        .upload_append(&a, &up.id, Some(5), body(&[b"xx"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ContentError::RangeInvalid {
                current: 9,
                requested: 5
            }
        ),
        "{err}"
    );
    // The session belongs to its repository.
    assert!(matches!(
        store.upload_status(&b, &up.id).await.unwrap_err(),
        ContentError::UploadUnknown(_)
    ));
    // Not visible before commit.
    assert_eq!(store.blob_stat(&a, &digest).await.unwrap(), None);

    let size = store
        .upload_complete(&a, &up.id, &digest, Some(body(&[&data[9..]])))
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(
        store.blob_stat(&a, &digest).await.unwrap(),
        Some(data.len() as u64)
    );
    assert_eq!(read_blob(&store, &a, &digest, 7).await, &data[7..]);
    assert_eq!(store.blob_stat(&b, &digest).await.unwrap(), None);
    assert!(matches!(
        store.blob_open(&b, &digest, 0).await.err().unwrap(),
        ContentError::BlobUnknown(_)
    ));

    // Mount is a new link; the bytes are stored once.
    assert_eq!(
        store.blob_mount(&b, &a, &digest).await.unwrap(),
        Some(data.len() as u64)
    );
    assert_eq!(read_blob(&store, &b, &digest, 0).await, data);
    assert_eq!(
        store.blob_mount(&b, &repo("none"), &digest).await.unwrap(),
        None
    );
    assert_eq!(driver.keys(), vec![paths::blob_data(&digest)]);

    // Deleting from one repository leaves the other's link.
    store.blob_delete(&a, &digest).await.unwrap();
    assert_eq!(store.blob_stat(&a, &digest).await.unwrap(), None);
    assert_eq!(
        store.blob_stat(&b, &digest).await.unwrap(),
        Some(data.len() as u64)
    );
    assert!(matches!(
        store.blob_delete(&a, &digest).await.unwrap_err(),
        ContentError::BlobUnknown(_)
    ));
}

#[tokio::test]
async fn digest_mismatch_discards_the_upload_and_stores_nothing() {
    let (store, driver) = memory_store().await;
    let r = repo("x");
    let wrong = Digest::sha256_of(b"something else");
    let err = store
        .blob_put(&r, &wrong, body(&[b"actual bytes"]))
        .await
        .unwrap_err();
    assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
    assert_eq!(store.blob_stat(&r, &wrong).await.unwrap(), None);
    assert!(driver.keys().is_empty(), "left behind: {:?}", driver.keys());
    assert!(store.metadata().upload_ids().await.unwrap().is_empty());
}

#[tokio::test]
async fn sha512_blobs_are_verified_too() {
    let (store, _) = memory_store().await;
    let r = repo("x");
    let d = Digest::of(Algorithm::Sha512, b"five twelve");
    assert_eq!(
        store
            .blob_put(&r, &d, body(&[b"five ", b"twelve"]))
            .await
            .unwrap(),
        11
    );
    assert_eq!(read_blob(&store, &r, &d, 0).await, b"five twelve");
    let bad = Digest::of(Algorithm::Sha512, b"other");
    assert!(
        store
            .blob_put(&r, &bad, body(&[b"five twelve"]))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn broken_body_keeps_what_arrived_for_resume() {
    let (store, _) = memory_store().await;
    let r = repo("x");
    let up = store.upload_start(&r).await.unwrap();
    let parts: Vec<Chunk> = vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("connection reset")),
    ];
    let err = store
        .upload_append(&r, &up.id, None, stream::iter(parts))
        .await
        .unwrap_err();
    assert!(matches!(err, ContentError::Body(_)), "{err}");
    assert_eq!(store.upload_status(&r, &up.id).await.unwrap().offset, 3);
    store
        .upload_append(&r, &up.id, Some(3), body(&[b"def"]))
        .await
        .unwrap();
    let d = Digest::sha256_of(b"abcdef");
    store
        .upload_complete(&r, &up.id, &d, None::<stream::Empty<Chunk>>)
        .await
        .unwrap();
    assert_eq!(read_blob(&store, &r, &d, 0).await, b"abcdef");
}

#[tokio::test]
async fn cancelled_upload_is_gone() {
    let (store, driver) = memory_store().await;
    let r = repo("x");
    let up = store.upload_start(&r).await.unwrap();
    store
        .upload_append(&r, &up.id, None, body(&[b"data"]))
        .await
        .unwrap();
    store.upload_cancel(&r, &up.id).await.unwrap();
    assert!(matches!(
        store.upload_status(&r, &up.id).await.unwrap_err(),
        ContentError::UploadUnknown(_)
    ));
    assert!(matches!(
        store.upload_cancel(&r, &up.id).await.unwrap_err(),
        ContentError::UploadUnknown(_)
    ));
    assert!(driver.keys().is_empty());
}

#[tokio::test]
async fn uploads_resume_after_restart_and_leftovers_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo("persist/me");
    let id = {
        let store = Store::open_fs(dir.path()).await.unwrap();
        let up = store.upload_start(&r).await.unwrap();
        store
            .upload_append(&r, &up.id, Some(0), body(&[b"first half|"]))
            .await
            .unwrap();
        up.id
    };
    // Leftovers a crash could leave: an upload directory with no session, and a session whose
    // bytes are gone; plus bytes past the durable offset (a chunk cut off mid-write).
    let stray = dir.path().join(paths::upload_dir("stray-session"));
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("data"), b"junk").unwrap();
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(stray.join("data"))
        .unwrap()
        .set_modified(hours_ago)
        .unwrap();
    // A young one, as another process's monolithic upload in flight, is left alone.
    let young = dir.path().join(paths::upload_dir("young-session"));
    std::fs::create_dir_all(&young).unwrap();
    std::fs::write(young.join("data"), b"in flight").unwrap();
    {
        let meta = SqliteMetadata::open(dir.path().join("metadata.db")).unwrap();
        let hash = hoist_oci::Digester::sha256().state();
        crate::MetadataStore::upload_create(
            &meta,
            &UploadSession {
                id: "ghost".into(),
                repo: r.to_string(),
                offset: 0,
                hash,
                created_at: 0,
                updated_at: 0,
            },
        )
        .await
        .unwrap();
    }
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(paths::upload_data(&id)))
            .unwrap();
        f.write_all(b"torn").unwrap();
    }

    let store = Store::open_fs(dir.path()).await.unwrap();
    assert!(!stray.exists(), "stray upload directory survived");
    assert!(
        young.join("data").exists(),
        "a young upload directory was removed"
    );
    assert!(
        store
            .metadata()
            .upload_get("ghost")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.upload_status(&r, &id).await.unwrap().offset, 11);
    store
        .upload_append(&r, &id, Some(11), body(&[b"second half"]))
        .await
        .unwrap();
    let d = Digest::sha256_of(b"first half|second half");
    store
        .upload_complete(&r, &id, &d, None::<stream::Empty<Chunk>>)
        .await
        .unwrap();
    assert_eq!(
        read_blob(&store, &r, &d, 0).await,
        b"first half|second half"
    );
    assert!(!dir.path().join(paths::upload_dir(&id)).exists());
}

#[tokio::test]
async fn a_blob_committed_but_not_linked_stays_invisible() {
    // The crash window between the rename into blobs/ and the metadata transaction.
    let dir = tempfile::tempdir().unwrap();
    let driver = FsDriver::new(dir.path()).unwrap();
    let d = Digest::sha256_of(b"orphan");
    crate::StorageDriver::put_content(
        &driver,
        &paths::blob_data(&d),
        Bytes::from_static(b"orphan"),
    )
    .await
    .unwrap();
    let store = Store::open_fs(dir.path()).await.unwrap();
    let r = repo("x");
    assert_eq!(store.blob_stat(&r, &d).await.unwrap(), None);
    // Pushing the same content again makes it visible, reusing the bytes.
    store.blob_put(&r, &d, body(&[b"orphan"])).await.unwrap();
    assert_eq!(read_blob(&store, &r, &d, 0).await, b"orphan");
}

fn image_manifest(config: &Digest, layers: &[(&Digest, usize)], extra: &str) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| {
            format!(
                r#"{{"mediaType":"{}","digest":"{d}","size":{s}}}"#,
                media_type::OCI_LAYER_GZIP
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":2}},"layers":[{}]{extra}}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG,
        layers.join(",")
    )
    .into_bytes()
}

#[tokio::test]
async fn manifests_tags_and_referrers() {
    let (store, _) = memory_store().await;
    let r = repo("app");
    let config = Digest::sha256_of(b"{}");
    let layer = Digest::sha256_of(b"layer");
    let manifest = image_manifest(&config, &[(&layer, 5)], "");

    let v1 = Reference::parse("v1").unwrap();
    let err = store
        .manifest_put(
            &r,
            &v1,
            Some(media_type::OCI_MANIFEST),
            Bytes::from(manifest.clone()),
        )
        .await
        .unwrap_err();
    match err {
        ContentError::ManifestBlobUnknown(missing) => {
            assert_eq!(missing, vec![config.clone(), layer.clone()]);
        }
        other => panic!("{other}"),
    }
    store.blob_put(&r, &config, body(&[b"{}"])).await.unwrap();
    store.blob_put(&r, &layer, body(&[b"layer"])).await.unwrap();
    let put = store
        .manifest_put(
            &r,
            &v1,
            Some(media_type::OCI_MANIFEST),
            Bytes::from(manifest.clone()),
        )
        .await
        .unwrap();
    assert_eq!(put.digest, Digest::sha256_of(&manifest));
    let got = store.manifest_get(&r, &v1).await.unwrap();
    assert_eq!(&got.bytes[..], &manifest[..]);
    assert_eq!(got.media_type, media_type::OCI_MANIFEST);
    let by_digest = store
        .manifest_get(&r, &Reference::Digest(put.digest.clone()))
        .await
        .unwrap();
    assert_eq!(by_digest.digest, put.digest);

    // A referrer with a subject that need not exist, and an artifactType.
    let sig = image_manifest(
        &config,
        &[],
        &format!(
            r#","artifactType":"application/vnd.example.sig","subject":{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            media_type::OCI_MANIFEST,
            put.digest,
            manifest.len()
        ),
    );
    let sig_digest = Digest::sha256_of(&sig);
    let sp = store
        .manifest_put(
            &r,
            &Reference::Digest(sig_digest.clone()),
            None,
            Bytes::from(sig),
        )
        .await
        .unwrap();
    assert_eq!(sp.subject.as_ref(), Some(&put.digest));
    let refs = store.referrers(&r, &put.digest, None).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        refs[0].artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );
    assert!(
        store
            .referrers(&r, &put.digest, Some("other/type"))
            .await
            .unwrap()
            .is_empty()
    );

    // Tags page; deleting a tag leaves the manifest, deleting the manifest removes its tags.
    for t in ["v2", "latest"] {
        store
            .manifest_put(
                &r,
                &Reference::parse(t).unwrap(),
                Some(media_type::OCI_MANIFEST),
                Bytes::from(manifest.clone()),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.tags(&r, None, None).await.unwrap().items,
        ["latest", "v1", "v2"]
    );
    store
        .manifest_delete(&r, &Reference::parse("latest").unwrap())
        .await
        .unwrap();
    assert!(
        store
            .manifest_get(&r, &Reference::Digest(put.digest.clone()))
            .await
            .is_ok()
    );
    store
        .manifest_delete(&r, &Reference::Digest(put.digest.clone()))
        .await
        .unwrap();
    assert!(matches!(
        store.manifest_get(&r, &v1).await.unwrap_err(),
        ContentError::ManifestUnknown(_)
    ));
    assert!(store.tags(&r, None, None).await.unwrap().items.is_empty());
    assert!(matches!(
        store.manifest_get(&repo("nope"), &v1).await.unwrap_err(),
        ContentError::NameUnknown(_)
    ));
    assert!(matches!(
        store.tags(&repo("nope"), None, None).await.unwrap_err(),
        ContentError::NameUnknown(_)
    ));
}

#[tokio::test]
async fn manifest_validation() {
    let (store, _) = memory_store().await;
    let r = repo("app");
    let tag = Reference::parse("t").unwrap();
    let put = |ct: Option<&'static str>, b: &[u8]| {
        let b = Bytes::copy_from_slice(b);
        let store = &store;
        let r = &r;
        let tag = &tag;
        async move { store.manifest_put(r, tag, ct, b).await }
    };
    assert!(matches!(
        put(Some(media_type::OCI_MANIFEST), b"not json")
            .await
            .unwrap_err(),
        ContentError::ManifestInvalid(_)
    ));
    assert!(matches!(
        put(Some("application/json"), br#"{"schemaVersion":2}"#)
            .await
            .unwrap_err(),
        ContentError::ManifestInvalid(_)
    ));
    let mismatch = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
        media_type::OCI_INDEX
    );
    assert!(matches!(
        put(Some(media_type::OCI_MANIFEST), mismatch.as_bytes())
            .await
            .unwrap_err(),
        ContentError::ManifestInvalid(_)
    ));
    let v1 = format!(
        r#"{{"schemaVersion":1,"mediaType":"{}","manifests":[]}}"#,
        media_type::OCI_INDEX
    );
    assert!(matches!(
        put(None, v1.as_bytes()).await.unwrap_err(),
        ContentError::ManifestInvalid(_)
    ));
    // An empty index is valid; an index naming an unknown manifest is not.
    assert!(
        put(Some(media_type::OCI_INDEX), mismatch.as_bytes())
            .await
            .is_ok()
    );
    let idx = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":1}}]}}"#,
        media_type::DOCKER_MANIFEST_LIST,
        media_type::DOCKER_MANIFEST,
        Digest::sha256_of(b"x")
    );
    assert!(matches!(
        put(None, idx.as_bytes()).await.unwrap_err(),
        ContentError::ManifestBlobUnknown(_)
    ));
    let big = vec![b' '; MAX_MANIFEST_SIZE + 1];
    assert!(matches!(
        put(None, &big).await.unwrap_err(),
        ContentError::ManifestTooLarge(_)
    ));
    let wrong = Reference::Digest(Digest::sha256_of(b"other"));
    assert!(matches!(
        store
            .manifest_put(&r, &wrong, None, Bytes::from(mismatch))
            .await
            .unwrap_err(),
        ContentError::DigestMismatch { .. }
    ));
    assert!(matches!(
        Reference::parse("sha256:zz").unwrap_err(),
        ContentError::DigestInvalid(_)
    ));
    assert!(matches!(
        Reference::parse("-bad").unwrap_err(),
        ContentError::TagInvalid(_)
    ));
}

#[tokio::test]
async fn stale_uploads_are_purged_and_fresh_ones_kept() {
    let (store, driver) = memory_store().await;
    let r = repo("x");
    let old = store.upload_start(&r).await.unwrap();
    store
        .upload_append(&r, &old.id, None, body(&[b"abc"]))
        .await
        .unwrap();
    // Nothing is older than a day yet.
    assert_eq!(
        store
            .purge_stale_uploads(std::time::Duration::from_secs(86_400))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let fresh = store.upload_start(&r).await.unwrap();
    // Everything untouched for a second or more goes: the old session, not the fresh one.
    let purged = store
        .purge_stale_uploads(std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(matches!(
        store.upload_status(&r, &old.id).await.unwrap_err(),
        ContentError::UploadUnknown(_)
    ));
    assert_eq!(store.upload_status(&r, &fresh.id).await.unwrap().offset, 0);
    assert_eq!(driver.keys(), vec![paths::upload_data(&fresh.id)]);
}

async fn put_image(store: &Store, r: &RepoName, tag: &str, layer: &[u8]) -> Digest {
    let config = b"{}";
    let (cd, ld) = (Digest::sha256_of(config), Digest::sha256_of(layer));
    store.blob_put(r, &cd, body(&[config])).await.unwrap();
    store.blob_put(r, &ld, body(&[layer])).await.unwrap();
    let m = image_manifest(&cd, &[(&ld, layer.len())], "");
    store
        .manifest_put(
            r,
            &Reference::parse(tag).unwrap(),
            Some(media_type::OCI_MANIFEST),
            Bytes::from(m),
        )
        .await
        .unwrap()
        .digest
}

#[tokio::test]
async fn gc_removes_only_what_nothing_references() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).await.unwrap();
    let (r1, r2) = (repo("gc/one"), repo("gc/two"));
    let manifest = put_image(&store, &r1, "v1", b"layer one").await;
    let layer = Digest::sha256_of(b"layer one");
    let stray = Digest::sha256_of(b"never referenced");
    store
        .blob_put(&r1, &stray, body(&[b"never referenced"]))
        .await
        .unwrap();
    // The same layer, linked but unreferenced in another repository.
    store.blob_mount(&r2, &r1, &layer).await.unwrap();
    // Bytes with no metadata at all, as a crash between rename and link leaves them.
    let orphan = Digest::sha256_of(b"orphan");
    store
        .driver()
        .put_content(&paths::blob_data(&orphan), Bytes::from_static(b"orphan"))
        .await
        .unwrap();

    // Nothing is older than a generous grace period; orphaned bytes go at once.
    let first = store
        .gc(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        first,
        GcReport {
            orphans_removed: 1,
            ..GcReport::default()
        }
    );

    let report = store.gc_before(now() + 1).await.unwrap();
    assert_eq!(report.unlinked, 2, "{report:?}"); // stray in r1, layer in r2
    assert_eq!(report.blobs_removed, 1, "{report:?}"); // stray only: the layer is still linked in r1
    assert_eq!(report.bytes_freed, b"never referenced".len() as u64);
    assert_eq!(report.orphans_removed, 0);
    assert_eq!(store.blob_stat(&r1, &stray).await.unwrap(), None);
    assert!(
        store
            .driver()
            .stat(&paths::blob_data(&stray))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .driver()
            .stat(&paths::blob_data(&orphan))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(store.blob_stat(&r2, &layer).await.unwrap(), None);
    assert_eq!(read_blob(&store, &r1, &layer, 0).await, b"layer one");
    assert!(
        store
            .manifest_get(&r1, &Reference::parse("v1").unwrap())
            .await
            .is_ok()
    );

    // Once the manifest goes, so do its layer, its config and its own bytes.
    store
        .manifest_delete(&r1, &Reference::Digest(manifest.clone()))
        .await
        .unwrap();
    let report = store.gc_before(now() + 1).await.unwrap();
    assert_eq!(report.blobs_removed, 3, "{report:?}");
    assert!(
        store
            .driver()
            .stat(&paths::blob_data(&manifest))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .driver()
            .list(paths::BLOBS)
            .await
            .unwrap()
            .iter()
            .all(|alg| {
                futures::executor::block_on(store.driver().list(alg))
                    .unwrap()
                    .is_empty()
            })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_running_during_pushes_never_loses_a_linked_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_fs(dir.path()).await.unwrap());
    let r = repo("race");
    let data = b"contended content";
    let d = Digest::sha256_of(data);
    for _ in 0..40 {
        let pusher = {
            let store = store.clone();
            let (r, d) = (r.clone(), d.clone());
            tokio::spawn(async move { store.blob_put(&r, &d, body(&[data])).await.unwrap() })
        };
        let collector = {
            let store = store.clone();
            tokio::spawn(async move { store.gc_before(now() + 1).await.unwrap() })
        };
        pusher.await.unwrap();
        collector.await.unwrap();
        // Whatever the interleaving, a blob the repository can see has its bytes.
        if store.blob_stat(&r, &d).await.unwrap().is_some() {
            assert_eq!(read_blob(&store, &r, &d, 0).await, data);
        }
    }
}

/// Makes every row of the store's metadata `secs` older, as if that much time had passed.
fn age_metadata(dir: &std::path::Path, secs: i64) {
    let c = rusqlite::Connection::open(dir.join("metadata.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    for table in ["blobs", "repo_blobs", "manifests"] {
        c.execute(
            &format!("UPDATE {table} SET created_at = created_at - ?1"),
            [secs],
        )
        .unwrap();
    }
}

async fn chunked_put(store: &Store, r: &RepoName, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let up = store.upload_start(r).await.unwrap();
    let half = data.len() / 2;
    store
        .upload_append(r, &up.id, Some(0), body(&[&data[..half]]))
        .await
        .unwrap();
    store
        .upload_complete(r, &up.id, &d, Some(body(&[&data[half..]])))
        .await
        .unwrap();
    d
}

/// Every write that makes content reachable (a monolithic or chunked upload, a mount, a manifest
/// naming the blob) restarts its grace period, even when an old link or blob row is still there.
/// Before: the old rows kept their time (`INSERT OR IGNORE`) and the next collection removed
/// content a client had just been told was stored.
#[tokio::test]
async fn writes_that_make_content_reachable_restart_its_grace() {
    const GRACE: std::time::Duration = std::time::Duration::from_secs(600);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).await.unwrap();
    let (r, other) = (repo("grace/app"), repo("grace/other"));
    let (mono, chunked, mounted, named) = (
        &b"monolithic layer"[..],
        &b"chunked layer"[..],
        &b"mounted layer"[..],
        &b"named layer"[..],
    );
    let mut manifests = Vec::new();
    for layer in [mono, chunked, mounted, named] {
        manifests.push(put_image(&store, &r, "v1", layer).await);
    }
    store
        .blob_mount(&other, &r, &Digest::sha256_of(mounted))
        .await
        .unwrap();
    // Long past the grace period, the images go; their links and blobs are old and unreferenced.
    age_metadata(dir.path(), 2 * GRACE.as_secs() as i64);
    for m in &manifests {
        store
            .manifest_delete(&r, &Reference::Digest(m.clone()))
            .await
            .unwrap();
    }
    // Now each layer is made reachable again, each in its own way.
    let d = Digest::sha256_of(mono);
    store.blob_put(&r, &d, body(&[mono])).await.unwrap();
    assert_eq!(
        chunked_put(&store, &r, chunked).await,
        Digest::sha256_of(chunked)
    );
    let d = Digest::sha256_of(mounted);
    assert!(store.blob_mount(&other, &r, &d).await.unwrap().is_some());
    // A manifest naming the old link, deleted at once: the link keeps its grace from the put.
    let config = Digest::sha256_of(b"{}");
    store.blob_put(&r, &config, body(&[b"{}"])).await.unwrap();
    let d = Digest::sha256_of(named);
    let m = image_manifest(&config, &[(&d, named.len())], "");
    let put = store
        .manifest_put(
            &r,
            &Reference::parse("named").unwrap(),
            Some(media_type::OCI_MANIFEST),
            Bytes::from(m),
        )
        .await
        .unwrap();
    store
        .manifest_delete(&r, &Reference::Digest(put.digest))
        .await
        .unwrap();

    let report = store.gc(GRACE).await.unwrap();
    for (where_, layer) in [(&r, mono), (&r, chunked), (&other, mounted), (&r, named)] {
        let d = Digest::sha256_of(layer);
        assert_eq!(
            read_blob(&store, where_, &d, 0).await,
            layer,
            "{} lost in {where_} inside its grace: {report:?}",
            String::from_utf8_lossy(layer)
        );
    }
    // A manifest naming each of them is accepted.
    for layer in [mono, chunked, named] {
        let d = Digest::sha256_of(layer);
        let m = image_manifest(&config, &[(&d, layer.len())], "");
        store
            .manifest_put(
                &r,
                &Reference::parse("again").unwrap(),
                Some(media_type::OCI_MANIFEST),
                Bytes::from(m),
            )
            .await
            .unwrap();
    }
    // What nothing refreshed did go: the mounted layer's link in `r` itself.
    assert_eq!(
        store
            .blob_stat(&r, &Digest::sha256_of(mounted))
            .await
            .unwrap(),
        None
    );
}

/// The sweep checks each marked candidate again: one linked again between mark and sweep stays.
#[tokio::test]
async fn sweep_keeps_a_candidate_linked_after_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).await.unwrap();
    let r = repo("race/mark");
    let (a, b) = (&b"relinked"[..], &b"still garbage"[..]);
    for data in [a, b] {
        let d = Digest::sha256_of(data);
        store.blob_put(&r, &d, body(&[data])).await.unwrap();
        store.blob_delete(&r, &d).await.unwrap();
    }
    age_metadata(dir.path(), 3600);
    let before = now() - 60;
    let marked = store.meta.blob_candidates(before, None, 10).await.unwrap();
    assert_eq!(marked.len(), 2, "{marked:?}");
    // A push of `a` lands between the mark and the sweep.
    let da = Digest::sha256_of(a);
    store.blob_put(&r, &da, body(&[a])).await.unwrap();
    let swept = store.meta.sweep_blobs(before, &marked).await.unwrap();
    assert_eq!(
        swept,
        vec![(Digest::sha256_of(b), b.len() as u64)],
        "the sweep took a blob pushed after the mark"
    );
    assert_eq!(read_blob(&store, &r, &da, 0).await, a);
}

/// A collection over thousands of garbage blobs holds the commit lock exclusive only in short
/// batches: a commit waiting meanwhile waits for one batch, not the whole collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_over_many_blobs_keeps_exclusive_sections_short() {
    const GARBAGE: usize = 6000;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_fs(dir.path()).await.unwrap());
    // Half recorded blobs nothing links, half bytes with no metadata at all.
    {
        let mut c = rusqlite::Connection::open(dir.path().join("metadata.db")).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        let tx = c.transaction().unwrap();
        for i in 0..GARBAGE {
            let data = format!("garbage {i}");
            let d = Digest::sha256_of(data.as_bytes());
            let path = dir.path().join(paths::blob_data(&d));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &data).unwrap();
            if i % 2 == 0 {
                tx.execute(
                    "INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, 1)",
                    rusqlite::params![d.as_str(), data.len() as i64],
                )
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let started = std::time::Instant::now();
    let gc = {
        let store = store.clone();
        tokio::spawn(async move { store.gc_before(now() - 60).await.unwrap() })
    };
    let (mut waits, mut worst) = (0usize, std::time::Duration::ZERO);
    while !gc.is_finished() {
        let t = std::time::Instant::now();
        let guard = store.commit_lock.shared().await.unwrap();
        worst = worst.max(t.elapsed());
        waits += 1;
        drop(guard);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let report = gc.await.unwrap();
    let took = started.elapsed();
    eprintln!("gc of {GARBAGE} blobs took {took:?}; {waits} commits waited, the longest {worst:?}");
    assert_eq!(report.blobs_removed as usize, GARBAGE / 2, "{report:?}");
    assert_eq!(report.orphans_removed as usize, GARBAGE / 2, "{report:?}");
    assert!(
        worst < std::time::Duration::from_secs(1) && worst * 4 < took,
        "a commit waited {worst:?} during a {took:?} collection"
    );
}

/// A chunk that declares its length is taken whole or not at all, on every driver.
#[tokio::test]
async fn a_chunk_whose_body_disagrees_with_its_range_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs_store = Store::open_fs(dir.path()).await.unwrap();
    let (mem_store, _) = memory_store().await;
    for store in [&fs_store, &mem_store] {
        let r = repo("exact/chunks");
        let data = b"0123456789abcdef";
        let up = store.upload_start(&r).await.unwrap();
        let st = store
            .upload_append_exact(&r, &up.id, 0, 4, body(&[b"01", b"23"]))
            .await
            .unwrap();
        assert_eq!(st.offset, 4);
        for (parts, received) in [
            (&[&b"4567"[..], b"89"][..], 6), // longer than declared
            (&[&b"45"[..]][..], 2),          // shorter
        ] {
            let err = store
                .upload_append_exact(&r, &up.id, 4, 4, body(parts))
                .await
                .unwrap_err();
            assert!(
                matches!(err, ContentError::ChunkLength { declared: 4, received: got } if got == received),
                "{err}"
            );
            assert_eq!(store.upload_status(&r, &up.id).await.unwrap().offset, 4);
        }
        store
            .upload_append_exact(&r, &up.id, 4, 12, body(&[&data[4..]]))
            .await
            .unwrap();
        let d = Digest::sha256_of(data);
        store
            .upload_complete(&r, &up.id, &d, None::<stream::Empty<Chunk>>)
            .await
            .unwrap();
        assert_eq!(read_blob(store, &r, &d, 0).await, data);
    }
}
