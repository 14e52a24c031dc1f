//! The metadata store test suite: every backend runs each case (SQLite in `sqlite.rs`,
//! PostgreSQL in `postgres.rs`) on a fresh, empty store.

use hoist_oci::{Digest, Digester};

use super::{ManifestRecord, MetaError, MetadataStore, RefKind, UploadSession};

fn d(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

fn rec(name: &str, subject: Option<Digest>) -> ManifestRecord {
    ManifestRecord {
        digest: d(name),
        media_type: hoist_oci::media_type::OCI_MANIFEST.into(),
        size: 10,
        artifact_type: Some("application/x-test".into()),
        subject,
        annotations: None,
        created_at: 1,
    }
}

pub(crate) async fn blobs_links_and_manifests(m: &impl MetadataStore) {
    assert_eq!(m.blob_size(&d("a")).await.unwrap(), None);
    m.link_blob("r1", &d("a"), 5).await.unwrap();
    assert_eq!(m.blob_size(&d("a")).await.unwrap(), Some(5));
    assert_eq!(m.repo_blob_size("r1", &d("a")).await.unwrap(), Some(5));
    assert_eq!(m.repo_blob_size("r2", &d("a")).await.unwrap(), None);

    let err = m
        .manifest_put(
            "r1",
            &rec("m", None),
            &[(d("a"), RefKind::Blob), (d("b"), RefKind::Blob)],
            Some("v1"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MetaError::MissingReferences(v) if v == &vec![d("b")]),
        "{err}"
    );
    assert!(m.manifest_by_tag("r1", "v1").await.unwrap().is_none());

    m.manifest_put(
        "r1",
        &rec("m", None),
        &[(d("a"), RefKind::Blob)],
        Some("v1"),
    )
    .await
    .unwrap();
    assert_eq!(
        m.manifest_by_tag("r1", "v1").await.unwrap().unwrap().digest,
        d("m")
    );
    // An index that names a manifest of another repository is refused.
    let err = m
        .manifest_put("r2", &rec("i", None), &[(d("m"), RefKind::Manifest)], None)
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::MissingReferences(_)));

    m.manifest_put("r1", &rec("ref", Some(d("m"))), &[], None)
        .await
        .unwrap();
    let refs = m.referrers("r1", &d("m")).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, d("ref"));
    assert!(m.referrers("r2", &d("m")).await.unwrap().is_empty());

    assert!(m.manifest_delete("r1", &d("m")).await.unwrap());
    assert!(m.manifest_by_tag("r1", "v1").await.unwrap().is_none());
    assert!(!m.manifest_delete("r1", &d("m")).await.unwrap());
    let h = m.tag_history("r1", "v1").await.unwrap();
    assert_eq!(
        h.iter().map(|e| e.digest.clone()).collect::<Vec<_>>(),
        vec![Some(d("m")), None]
    );
}

pub(crate) async fn listings_across_repositories(m: &impl MetadataStore) {
    m.manifest_put("b", &rec("x", None), &[], Some("v1"))
        .await
        .unwrap();
    m.manifest_put("a", &rec("x", None), &[], Some("v2"))
        .await
        .unwrap();
    m.manifest_put("a", &rec("y", None), &[], None)
        .await
        .unwrap();
    m.manifest_put("a", &rec("i", None), &[(d("x"), RefKind::Manifest)], None)
        .await
        .unwrap();
    let tags = m.all_tags().await.unwrap();
    assert_eq!(
        tags.iter()
            .map(|t| (t.repo.as_str(), t.tag.as_str(), t.digest.clone()))
            .collect::<Vec<_>>(),
        vec![("a", "v2", d("x")), ("b", "v1", d("x"))]
    );
    let all = m.all_manifests().await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(all.iter().filter(|(r, _)| r == "a").count(), 3);
    assert_eq!(
        m.manifest_parents("a", &d("x")).await.unwrap(),
        vec![d("i")]
    );
    assert!(m.manifest_parents("b", &d("x")).await.unwrap().is_empty());
    assert_eq!(m.manifest_repos(&d("x")).await.unwrap(), ["a", "b"]);
    assert_eq!(m.manifest_repos(&d("y")).await.unwrap(), ["a"]);
    // Deleting the index drops its references (ON DELETE CASCADE).
    assert!(m.manifest_delete("a", &d("i")).await.unwrap());
    assert!(m.manifest_parents("a", &d("x")).await.unwrap().is_empty());
}

pub(crate) async fn tag_pages_and_catalog(m: &impl MetadataStore) {
    assert_eq!(m.tags("nope", None, None).await.unwrap(), None);
    for t in ["c", "a", "b", "d"] {
        m.manifest_put("r", &rec("x", None), &[], Some(t))
            .await
            .unwrap();
    }
    let all = m.tags("r", None, None).await.unwrap().unwrap();
    assert_eq!(all.items, ["a", "b", "c", "d"]);
    assert!(!all.more);
    let p1 = m.tags("r", Some(2), None).await.unwrap().unwrap();
    assert_eq!(
        (p1.items.as_slice(), p1.more),
        (&["a".to_string(), "b".into()][..], true)
    );
    let p2 = m.tags("r", Some(2), Some("b")).await.unwrap().unwrap();
    assert_eq!(
        (p2.items.as_slice(), p2.more),
        (&["c".to_string(), "d".into()][..], false)
    );
    assert!(
        m.tags("r", Some(0), None)
            .await
            .unwrap()
            .unwrap()
            .items
            .is_empty()
    );
    assert!(m.tag_delete("r", "a").await.unwrap());
    assert!(!m.tag_delete("r", "a").await.unwrap());
    m.link_blob("q", &d("z"), 1).await.unwrap();
    assert_eq!(m.repositories(None, None).await.unwrap().items, ["q", "r"]);
    assert_eq!(
        m.repositories(Some(1), Some("q")).await.unwrap().items,
        ["r"]
    );
}

/// `open` opens the same (initially empty) store each time it is called.
pub(crate) async fn uploads_survive_reopen_and_advance_atomically<S: MetadataStore>(
    open: impl AsyncFn() -> S,
) {
    let mut h = Digester::sha256();
    h.update(b"hello");
    {
        let m = open().await;
        let mut s = UploadSession {
            id: "u1".into(),
            repo: "r".into(),
            offset: 0,
            hash: Digester::sha256().state(),
            created_at: 1,
            updated_at: 1,
        };
        m.upload_create(&s).await.unwrap();
        assert!(m.upload_advance("u1", 0, 5, &h.state()).await.unwrap());
        // A second request that saw offset 0 loses.
        assert!(!m.upload_advance("u1", 0, 3, &h.state()).await.unwrap());
        s.offset = 5;
        s.hash = h.state();
        let got = m.upload_get("u1").await.unwrap().unwrap();
        assert_eq!((got.offset, &got.hash), (5, &s.hash));
    }
    let m = open().await;
    let got = m.upload_get("u1").await.unwrap().unwrap();
    let mut resumed = Digester::resume(&got.hash).unwrap();
    resumed.update(b" world");
    assert_eq!(resumed.finish(), Digest::sha256_of(b"hello world"));
    m.upload_finish("u1", &d("blob"), 11).await.unwrap();
    assert!(m.upload_get("u1").await.unwrap().is_none());
    assert_eq!(m.repo_blob_size("r", &d("blob")).await.unwrap(), Some(11));
    assert!(m.upload_ids().await.unwrap().is_empty());
}

/// Writers racing on one repository: every write lands once, and of several requests that saw
/// one upload offset, exactly one moves it.
pub(crate) async fn concurrent_writers_serialize<S: MetadataStore + Clone>(m: S) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                let (blob, man) = (d(&format!("c{i}")), format!("m{i}"));
                m.link_blob("r", &blob, 1).await.unwrap();
                m.manifest_put(
                    "r",
                    &rec(&man, None),
                    &[(blob, RefKind::Blob)],
                    Some("latest"),
                )
                .await
                .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(m.tag_history("r", "latest").await.unwrap().len(), 16);
    assert_eq!(m.all_manifests().await.unwrap().len(), 16);
    assert_eq!(m.all_blobs().await.unwrap().len(), 32);

    let s = UploadSession {
        id: "race".into(),
        repo: "r".into(),
        offset: 0,
        hash: Digester::sha256().state(),
        created_at: 1,
        updated_at: 1,
    };
    m.upload_create(&s).await.unwrap();
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                let mut h = Digester::sha256();
                h.update(&vec![b'x'; i as usize + 1]);
                m.upload_advance("race", 0, i + 1, &h.state())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_ne!(m.upload_get("race").await.unwrap().unwrap().offset, 0);
}

/// Processes sharing one store (`open` twice) claim a periodic task once per period between
/// them, however many ask at once.
pub(crate) async fn maintenance_claims_once_per_period<S: MetadataStore>(
    open: impl AsyncFn() -> S,
) {
    let (a, b) = (open().await, open().await);
    assert!(a.claim_task("gc", 60, 1_000).await.unwrap());
    assert!(!b.claim_task("gc", 60, 1_000).await.unwrap());
    assert!(!b.claim_task("gc", 60, 1_059).await.unwrap());
    // Another task has its own period.
    assert!(b.claim_task("purge", 3_600, 1_059).await.unwrap());
    assert!(b.claim_task("gc", 60, 1_060).await.unwrap());
    assert!(!a.claim_task("gc", 60, 1_060).await.unwrap());
    assert!(!a.claim_task("purge", 3_600, 4_000).await.unwrap());
    // Many claimants at the same moment: exactly one wins.
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let claims = (0..8).map(|i| {
        let m = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { m.claim_task("gc", 60, 2_000).await.unwrap() }
    });
    let won = futures::future::join_all(claims).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}
