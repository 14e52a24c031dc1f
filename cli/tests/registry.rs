//! End-to-end behaviour of `hoist serve` as a process: uploads that survive a restart, graceful
//! shutdown on SIGTERM, and multi-gigabyte blobs streamed in flat memory.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hoist_conformance::harness::Server;
use hoist_oci::{Digest, Digester};

fn hoist() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hoist"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_owned()
    } else {
        format!("{base}{loc}")
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_resumes_after_a_restart() {
    let server = Server::hoist(hoist()).unwrap();
    let c = client();
    let base = server.url.clone();
    let resp = c
        .post(format!("{base}/v2/restart/me/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let loc = absolute(&base, &location(&resp));
    let first = vec![7u8; 300_000];
    let resp = c
        .patch(&loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    // Stop gracefully and start again on the same data.
    let (status, data) = server.terminate().unwrap();
    assert!(
        status.success(),
        "hoist serve exited with {status} on SIGTERM"
    );
    let server = Server::hoist_on(hoist(), data, &[]).unwrap();
    let base = server.url.clone();
    let path = loc
        .split_once("/v2/")
        .map(|(_, p)| format!("{base}/v2/{p}"))
        .unwrap();

    let resp = c.get(&path).send().await.unwrap();
    assert_eq!(resp.status(), 204, "upload status after restart");
    assert_eq!(
        resp.headers()["range"],
        format!("0-{}", first.len() - 1).as_str()
    );

    let second = vec![9u8; 123_457];
    let resp = c
        .patch(&path)
        .header(
            "content-range",
            format!("{}-{}", first.len(), first.len() + second.len() - 1),
        )
        .body(second.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let mut all = first;
    all.extend_from_slice(&second);
    let digest = Digest::sha256_of(&all);
    let resp = c
        .put(format!("{path}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let got = c
        .get(format!("{base}/v2/restart/me/blobs/{digest}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&got), digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_request_in_flight_finish() {
    let server = Server::hoist(hoist()).unwrap();
    let c = client();
    let base = server.url.clone();
    let resp = c
        .post(format!("{base}/v2/slow/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = absolute(&base, &location(&resp));

    // A body that sends half, waits for the signal, then sends the rest.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let half = Bytes::from(vec![1u8; 64 * 1024]);
    let body = futures::stream::once({
        let half = half.clone();
        async move { Ok::<_, std::io::Error>(half) }
    })
    .chain(futures::stream::once({
        let half = half.clone();
        async move {
            let _ = rx.await;
            Ok(half)
        }
    }));
    let patch = tokio::spawn({
        let c = c.clone();
        async move {
            c.patch(&loc)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = server.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(()).unwrap();
    let resp = patch
        .await
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.headers()["range"],
        format!("0-{}", 2 * half.len() - 1).as_str()
    );
    let (status, _) = server.terminate().unwrap();
    assert!(status.success(), "exit after graceful shutdown: {status}");
}

/// 5 GiB through the registry both ways: the digest is computed as the bytes are written, and the
/// server's peak memory stays flat.
#[tokio::test(flavor = "multi_thread")]
async fn a_5_gib_blob_streams_in_flat_memory() {
    const TOTAL: u64 = 5 << 30;
    const CHUNK: usize = 1 << 20;
    let server = Server::hoist(hoist()).unwrap();
    let c = client();
    let base = server.url.clone();

    let resp = c
        .post(format!("{base}/v2/big/blob/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = absolute(&base, &location(&resp));
    let mut seed = vec![0u8; CHUNK];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2654435761) >> 13) as u8;
    }
    let seed = Bytes::from(seed);
    let sent = Arc::new(Mutex::new(Digester::sha256()));
    let body = futures::stream::iter(0..TOTAL / CHUNK as u64).map({
        let sent = sent.clone();
        move |i| {
            let mut chunk = seed.to_vec();
            chunk[..8].copy_from_slice(&i.to_le_bytes());
            sent.lock().unwrap().update(&chunk);
            Ok::<_, std::io::Error>(Bytes::from(chunk))
        }
    });
    let resp = c
        .patch(&loc)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let digest = sent.lock().unwrap().current();
    let resp = c
        .put(format!("{loc}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "{}",
        resp.text().await.unwrap_or_default()
    );

    let resp = c
        .get(format!("{base}/v2/big/blob/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(TOTAL));
    let mut got = Digester::sha256();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        got.update(&chunk.unwrap());
    }
    assert_eq!(got.len(), TOTAL);
    assert_eq!(got.finish(), digest);

    let peak = peak_rss_kib(server.pid());
    assert!(
        peak < 96 * 1024,
        "hoist serve peaked at {peak} KiB for a 5 GiB blob"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_garbage_collection_removes_unreferenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hoist.toml");
    std::fs::write(&config, "gc_interval_secs = 1\ngc_grace_secs = 0\n").unwrap();
    let server = Server::hoist_with(hoist(), &["--config", config.to_str().unwrap()]).unwrap();
    let c = client();
    let data = b"pushed, never referenced".to_vec();
    let digest = Digest::sha256_of(&data);
    let url = format!("{}/v2/gc/me/blobs/uploads/?digest={digest}", server.url);
    assert_eq!(c.post(&url).body(data).send().await.unwrap().status(), 201);
    let blob = format!("{}/v2/gc/me/blobs/{digest}", server.url);
    let on_disk = server
        .data
        .path()
        .join("blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex());
    assert!(
        on_disk.exists(),
        "the pushed bytes are not at {}",
        on_disk.display()
    );
    // A collection first removes the repository's link (the blob answers 404 from then on), then,
    // in the same pass, the unlinked blob's row and bytes. Wait for the end state of one whole pass:
    // both, not only the first.
    let (mut status, mut present) = (200, true);
    for _ in 0..100 {
        status = c.head(&blob).send().await.unwrap().status().as_u16();
        present = on_disk.exists();
        if status == 404 && !present {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 404,
        "the unreferenced blob was still served after 10 s"
    );
    assert!(!present, "bytes left at {} after 10 s", on_disk.display());
}
