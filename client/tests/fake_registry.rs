//! The transfer engine against an in-process fake registry: the Bearer token flow, corrupted
//! blobs, cut connections, retries, and an interrupted chunked upload.

mod common;

use common::fake::{FakeServer, Knobs};
use common::{DirSink, MemSource, OCI_MANIFEST, fast_retry, image, noise, recorder};
use hoist_client::credentials::Credential;
use hoist_client::{
    BlobSink, BlobWriter, Endpoints, Progress, PullOptions, PushOptions, RegistryClient,
    TransferError,
};
use hoist_oci::Reference;

fn client(addr: &str, credential: Option<Credential>) -> RegistryClient {
    RegistryClient::new(addr, &Endpoints::new(), credential, fast_retry()).unwrap()
}

fn reference(addr: &str, name: &str) -> Reference {
    Reference::parse(&format!("{addr}/{name}")).unwrap()
}

/// Puts an image with these layers in the fake under `repo:v1`; returns the source holding it.
fn seed(
    server: &FakeServer,
    repo: &str,
    layers: &[Vec<u8>],
) -> (MemSource, hoist_client::Descriptor) {
    let src = MemSource::default();
    let root = image(&src, layers, "amd64");
    let manifest = src.get(&root.digest);
    let refs: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = vec![refs["config"]["digest"].as_str().unwrap().to_owned()];
    for l in refs["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    for b in blobs {
        server.put_blob(repo, src.get(&b.parse().unwrap()));
    }
    server.put_manifest(repo, "v1", OCI_MANIFEST, &manifest);
    (src, root)
}

#[tokio::test]
async fn bearer_tokens_are_fetched_per_scope_cached_and_refreshed() {
    let server = FakeServer::start(Knobs {
        bearer: Some(("alice".into(), "secret".into())),
        ..Knobs::default()
    })
    .await;
    let (_, root) = seed(&server, "team/app", &[noise(1, 1000), noise(2, 2000)]);
    let alice = Credential::Basic {
        username: "alice".into(),
        password: "secret".into(),
    };
    let c = client(&server.addr, Some(alice));

    let sink = DirSink::new();
    let pulled = c
        .pull(
            &reference(&server.addr, "team/app:v1"),
            &sink,
            &PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(pulled.digest(), &root.digest);
    assert_eq!(pulled.fetched, 3);
    assert_eq!(
        server.fake().token_requests,
        vec![vec!["repository:team/app:pull".to_owned()]],
        "one token for the manifest and all three blobs"
    );

    // Cached: a second pull asks for no token.
    c.pull(
        &reference(&server.addr, "team/app:v1"),
        &DirSink::new(),
        &PullOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(server.fake().token_requests.len(), 1);

    // Revoked: the 401 makes the client fetch a fresh token once, and the pull succeeds.
    server.revoke_tokens();
    c.pull(
        &reference(&server.addr, "team/app:v1"),
        &DirSink::new(),
        &PullOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(server.fake().token_requests.len(), 2);

    // A push with a mount hint: a push token for the target, then one that also covers the
    // mount's source; every blob is mounted.
    let (src, root) = {
        let src = MemSource::default();
        let root = image(&src, &[noise(1, 1000), noise(2, 2000)], "amd64");
        (src, root)
    };
    let (progress, events) = recorder();
    let report = c
        .push(
            &reference(&server.addr, "team/copy:v1"),
            &root,
            &src,
            &PushOptions {
                mount_from: vec!["team/app".into()],
                progress: Some(progress),
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.mounted, 3);
    assert_eq!(report.uploaded, 0);
    let requests = server.fake().token_requests.clone();
    assert_eq!(
        requests[2..],
        [
            vec!["repository:team/copy:pull,push".to_owned()],
            vec![
                "repository:team/copy:pull,push".to_owned(),
                "repository:team/app:pull".to_owned(),
            ],
        ]
    );
    let mounted = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Progress::Mounted { from, .. } if from == "team/app"))
        .count();
    assert_eq!(mounted, 3);

    // Wrong password: the token endpoint refuses, and the error says so.
    let mallory = client(
        &server.addr,
        Some(Credential::Basic {
            username: "alice".into(),
            password: "wrong".into(),
        }),
    );
    let err = mallory
        .pull(
            &reference(&server.addr, "team/app:v1"),
            &DirSink::new(),
            &PullOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Token { detail, .. } if detail == "credentials refused"),
        "{err}"
    );
}

#[tokio::test]
async fn a_corrupted_blob_is_rejected_and_nothing_is_stored() {
    let server = FakeServer::start(Knobs::default()).await;
    let layer = noise(3, 50_000);
    let (_, _) = seed(&server, "r", std::slice::from_ref(&layer));
    server
        .fake()
        .knobs
        .corrupt
        .insert(hoist_oci::Digest::sha256_of(&layer));
    let sink = DirSink::new();
    let err = client(&server.addr, None)
        .pull(
            &reference(&server.addr, "r:v1"),
            &sink,
            &PullOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Verify { .. }), "{err}");
    let files = sink.files();
    assert!(
        !files
            .iter()
            .any(|f| f.contains(&hoist_oci::Digest::sha256_of(&layer).hex()[..16])),
        "the corrupted layer left {files:?}"
    );
    assert!(
        !files.iter().any(|f| f.starts_with("partial/")),
        "partial files left: {files:?}"
    );
}

#[tokio::test]
async fn a_cut_connection_resumes_with_range() {
    let server = FakeServer::start(Knobs::default()).await;
    let layer = noise(4, 300_001);
    let d = hoist_oci::Digest::sha256_of(&layer);
    seed(&server, "r", std::slice::from_ref(&layer));
    server.fake().knobs.cut_once.insert(d.clone());
    let sink = DirSink::new();
    client(&server.addr, None)
        .pull(
            &reference(&server.addr, "r:v1"),
            &sink,
            &PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(sink.read(&d), layer);
    let log = server.log();
    let gets: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with(&format!("GET /v2/r/blobs/{d}")))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    // The first asks from 0; the second from where the cut left the sink.
    assert!(gets[0].ends_with("bytes=0-"), "{gets:?}");
    assert!(
        gets[1].ends_with(&format!("bytes={}-", layer.len() / 2)),
        "{gets:?}"
    );
}

#[tokio::test]
async fn an_interrupted_download_resumes_from_the_sink_offset() {
    let server = FakeServer::start(Knobs::default()).await;
    let layer = noise(5, 100_000);
    let d = hoist_oci::Digest::sha256_of(&layer);
    seed(&server, "r", std::slice::from_ref(&layer));
    let sink = DirSink::new();
    // An earlier pull stopped after 40 000 bytes: the writer is dropped, its bytes kept.
    {
        let mut w = sink.writer(&d, layer.len() as u64).await.unwrap();
        w.write(layer[..40_000].to_vec().into()).await.unwrap();
    }
    client(&server.addr, None)
        .pull(
            &reference(&server.addr, "r:v1"),
            &sink,
            &PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(sink.read(&d), layer);
    assert!(
        server
            .log()
            .contains(&format!("GET /v2/r/blobs/{d} bytes=40000-")),
        "{:?}",
        server.log()
    );
}

#[tokio::test]
async fn server_errors_are_retried_client_errors_are_not() {
    let server = FakeServer::start(Knobs {
        blob_503s: 2,
        ..Knobs::default()
    })
    .await;
    seed(&server, "r", &[noise(6, 1000)]);
    let options = PullOptions {
        parallel: 1,
        ..PullOptions::default()
    };
    let c = client(&server.addr, None);
    c.pull(&reference(&server.addr, "r:v1"), &DirSink::new(), &options)
        .await
        .unwrap();

    server.fake().knobs.blob_status = Some(axum::http::StatusCode::FORBIDDEN);
    let before = server.log().len();
    let err = c
        .pull(&reference(&server.addr, "r:v1"), &DirSink::new(), &options)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let blob_gets = server.log()[before..]
        .iter()
        .filter(|l| l.starts_with("GET /v2/r/blobs/"))
        .count();
    assert_eq!(blob_gets, 1, "a 403 must not be retried");

    let err = c
        .pull(
            &reference(&server.addr, "r:nope"),
            &DirSink::new(),
            &options,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn an_interrupted_chunked_push_resumes_at_the_registry_offset() {
    const MIB: u64 = 1 << 20;
    let server = FakeServer::start(Knobs {
        fail_patch_at: Some(MIB),
        ..Knobs::default()
    })
    .await;
    let src = MemSource::default();
    let layer = noise(7, 3 * MIB as usize + 17);
    let ld = hoist_oci::Digest::sha256_of(&layer);
    let root = image(&src, std::slice::from_ref(&layer), "amd64");
    let (progress, events) = recorder();
    let report = client(&server.addr, None)
        .push(
            &reference(&server.addr, "r:v1"),
            &root,
            &src,
            &PushOptions {
                monolithic_max: MIB,
                chunk_size: MIB,
                progress: Some(progress),
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.uploaded, 2);
    assert_eq!(server.blob(&ld).unwrap(), layer);
    // The second PATCH failed after the registry kept half of it: the source was reopened
    // exactly there, not at 0 nor at the chunk's start.
    let opens = src.opens.lock().unwrap().clone();
    let layer_opens: Vec<u64> = opens
        .iter()
        .filter(|(d, _)| d == &ld)
        .map(|(_, o)| *o)
        .collect();
    assert_eq!(layer_opens, vec![0, MIB + MIB / 2]);
    let log = server.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /v2/r/blobs/uploads/")),
        "{log:?}"
    );
    assert!(
        events.lock().unwrap().iter().any(|e| matches!(
            e,
            Progress::Bytes { digest, done, .. } if digest == &ld && *done == MIB + MIB / 2
        )),
        "progress reports the resume point"
    );
}

/// Behind a load balancer, the replica completing a chunked upload may die before it answers
/// (502): the closing PUT is sent again, and the session completes.
#[tokio::test]
async fn a_failed_close_of_a_chunked_upload_is_retried() {
    const MIB: u64 = 1 << 20;
    let server = FakeServer::start(Knobs {
        fail_finish_once: true,
        ..Knobs::default()
    })
    .await;
    let src = MemSource::default();
    let layer = noise(9, 2 * MIB as usize + 5);
    let ld = hoist_oci::Digest::sha256_of(&layer);
    let root = image(&src, std::slice::from_ref(&layer), "amd64");
    client(&server.addr, None)
        .push(
            &reference(&server.addr, "r:v1"),
            &root,
            &src,
            &PushOptions {
                monolithic_max: MIB,
                chunk_size: MIB,
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(server.blob(&ld).unwrap(), layer);
    let closes = server
        .log()
        .iter()
        .filter(|l| l.starts_with("PUT /v2/r/blobs/uploads/"))
        .count();
    assert!(
        closes >= 2,
        "the close was not sent again: {:?}",
        server.log()
    );
}

/// A registry that lost the session when asked to close it (404): the blob is uploaded again
/// from its first byte in a new session, and the push completes.
#[tokio::test]
async fn a_lost_upload_session_is_started_again() {
    const MIB: u64 = 1 << 20;
    let server = FakeServer::start(Knobs {
        lose_session_once: true,
        ..Knobs::default()
    })
    .await;
    let src = MemSource::default();
    let layer = noise(11, 2 * MIB as usize + 3);
    let ld = hoist_oci::Digest::sha256_of(&layer);
    let root = image(&src, std::slice::from_ref(&layer), "amd64");
    client(&server.addr, None)
        .push(
            &reference(&server.addr, "r:v1"),
            &root,
            &src,
            &PushOptions {
                monolithic_max: MIB,
                chunk_size: MIB,
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(server.blob(&ld).unwrap(), layer);
    let opens: Vec<u64> = src
        .opens
        .lock()
        .unwrap()
        .iter()
        .filter(|(d, _)| d == &ld)
        .map(|(_, o)| *o)
        .collect();
    assert_eq!(opens, vec![0, 0], "read once per session, from the start");
}
