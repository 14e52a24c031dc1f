//! Round trips against real registries: the CNCF registry (anonymous, and with htpasswd Basic
//! auth) and `hoist serve`.

mod common;

use common::{DirSink, MemSource, Registry, image, index, noise, recorder};
use hoist_client::credentials::Credential;
use hoist_client::{
    Endpoints, Platform, Progress, PullOptions, PushOptions, RegistryClient, TransferError,
};
use hoist_oci::{Digest, Reference};

const MIB: usize = 1 << 20;

fn client(r: &Registry, credential: Option<Credential>) -> RegistryClient {
    RegistryClient::new(&r.addr, &Endpoints::new(), credential, common::fast_retry()).unwrap()
}

fn reference(r: &Registry, name: &str) -> Reference {
    Reference::parse(&format!("{}/{name}", r.addr)).unwrap()
}

fn pull_options(platform: &str) -> PullOptions {
    PullOptions {
        platform: platform.parse().unwrap(),
        ..PullOptions::default()
    }
}

/// Pushes a single-platform image with a chunked layer, pulls it back, and checks every byte.
async fn round_trip(r: &Registry, c: &RegistryClient) {
    let src = MemSource::default();
    let big = noise(10, 9 * MIB + 3);
    let small = noise(11, 4096);
    let root = image(&src, &[small.clone(), big.clone()], "amd64");
    let report = c
        .push(
            &reference(r, "hoist/single:v1"),
            &root,
            &src,
            &PushOptions {
                chunk_size: 4 * MIB as u64,
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (report.uploaded, report.skipped, report.manifests),
        (3, 0, 1)
    );
    let sink = DirSink::new();
    let pulled = c
        .pull(
            &reference(r, "hoist/single:v1"),
            &sink,
            &pull_options("linux/amd64"),
        )
        .await
        .unwrap();
    assert_eq!(pulled.digest(), &root.digest);
    assert_eq!(pulled.index, None);
    assert_eq!(pulled.layers.len(), 2);
    assert_eq!(sink.read(&Digest::sha256_of(&big)), big);
    assert_eq!(sink.read(&Digest::sha256_of(&small)), small);
    assert_eq!(sink.read(&root.digest), src.get(&root.digest));
    // Pinned by digest too.
    let by_digest = reference(r, &format!("hoist/single@{}", root.digest));
    let again = c
        .pull(&by_digest, &DirSink::new(), &pull_options("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(again.manifest, pulled.manifest);
}

#[tokio::test]
async fn distribution_index_round_trip_with_skip_and_mount() {
    let r = common::distribution(None);
    let c = client(&r, None);
    round_trip(&r, &c).await;

    let src = MemSource::default();
    let shared = noise(20, 1000);
    let amd = image(&src, &[shared.clone(), noise(21, 9 * MIB)], "amd64");
    let arm = image(&src, &[shared.clone(), noise(22, 5000)], "arm64");
    let idx = index(&src, &[(amd.clone(), "amd64"), (arm.clone(), "arm64")]);
    let (progress, events) = recorder();
    let options = PushOptions {
        progress: Some(progress),
        ..PushOptions::default()
    };
    let report = c
        .push(&reference(&r, "hoist/multi:v1"), &idx, &src, &options)
        .await
        .unwrap();
    // Two configs, the shared layer once, two other layers; two manifests and the index.
    assert_eq!((report.uploaded, report.manifests), (5, 3));
    let manifests: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Progress::Manifest { reference, .. } => Some(reference.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        manifests.last().map(String::as_str),
        Some("v1"),
        "the index goes last"
    );
    assert_eq!(manifests.len(), 3);

    let sink = DirSink::new();
    let pulled = c
        .pull(
            &reference(&r, "hoist/multi:v1"),
            &sink,
            &pull_options("linux/arm64"),
        )
        .await
        .unwrap();
    assert_eq!(pulled.digest(), &idx.digest);
    assert_eq!(pulled.manifest.digest, arm.digest);
    assert_eq!(sink.read(&idx.digest), src.get(&idx.digest));
    assert_eq!(sink.read(&arm.digest), src.get(&arm.digest));
    assert!(
        !sink.blob_path(&amd.digest).exists(),
        "only the chosen platform"
    );
    let err = c
        .pull(
            &reference(&r, "hoist/multi:v1"),
            &DirSink::new(),
            &pull_options("linux/s390x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::NoPlatform { .. }), "{err}");

    // Pushing again skips every blob.
    let (progress, events) = recorder();
    let report = c
        .push(
            &reference(&r, "hoist/multi:v2"),
            &idx,
            &src,
            &PushOptions {
                progress: Some(progress),
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((report.uploaded, report.skipped), (0, 5));
    let skipped = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Progress::Skipped { .. }))
        .count();
    assert_eq!(skipped, 5);

    // Another repository with a hint: every blob is mounted from it.
    let (progress, events) = recorder();
    let report = c
        .push(
            &reference(&r, "other/copy:v1"),
            &idx,
            &src,
            &PushOptions {
                mount_from: vec!["hoist/multi".into()],
                progress: Some(progress),
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((report.uploaded, report.mounted), (0, 5));
    assert!(events.lock().unwrap().iter().all(|e| !matches!(
        e,
        Progress::Mounted { from, .. } if from != "hoist/multi"
    )));
    let pulled = c
        .pull(
            &reference(&r, "other/copy:v1"),
            &DirSink::new(),
            &pull_options("linux/amd64"),
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest, amd.digest);
}

#[tokio::test]
async fn distribution_with_htpasswd_basic_auth() {
    let r = common::distribution(Some(("hoist", "s3cret")));
    let good = Credential::Basic {
        username: "hoist".into(),
        password: "s3cret".into(),
    };
    client(&r, Some(good.clone()))
        .check_credentials()
        .await
        .unwrap();
    round_trip(&r, &client(&r, Some(good))).await;

    for credential in [
        None,
        Some(Credential::Basic {
            username: "hoist".into(),
            password: "wrong".into(),
        }),
    ] {
        let err = client(&r, credential.clone())
            .check_credentials()
            .await
            .unwrap_err();
        assert!(matches!(err, TransferError::Unauthorized { .. }), "{err}");
        let err = client(&r, credential)
            .pull(
                &reference(&r, "hoist/single:v1"),
                &DirSink::new(),
                &PullOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, TransferError::Unauthorized { .. }), "{err}");
    }
}

#[tokio::test]
async fn hoist_serve_round_trip() {
    let r = common::hoist_serve();
    round_trip(&r, &client(&r, None)).await;
}

#[test]
fn host_platform_is_the_default() {
    assert_eq!(PullOptions::default().platform, Platform::host());
}
