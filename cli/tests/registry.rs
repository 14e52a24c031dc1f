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

/// Pushes `data` to `repo` as one monolithic blob; its digest.
async fn push_blob(c: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> Digest {
    let digest = Digest::sha256_of(data);
    let resp = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    digest
}

/// The bytes the server sent with `sendfile` so far (its /metrics counter).
async fn sendfile_bytes(c: &reqwest::Client, base: &str) -> u64 {
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("hoist_http_sendfile_bytes_total "))
        .map_or(0, |v| v.trim().parse::<f64>().expect("a counter") as u64)
}

/// One GET of a blob (`range` as `(first, last)`), checked for status and length; its body.
async fn get_blob(
    c: &reqwest::Client,
    url: &str,
    range: Option<(usize, usize)>,
) -> (reqwest::Version, Vec<u8>) {
    let mut req = c.get(url);
    if let Some((a, b)) = range {
        req = req.header("range", format!("bytes={a}-{b}"));
    }
    let resp = req.send().await.unwrap();
    let want = if range.is_some() { 206 } else { 200 };
    assert_eq!(resp.status(), want, "GET {url} {range:?}");
    let version = resp.version();
    (version, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn large_blobs_go_out_with_sendfile_and_every_range_is_exact() {
    let server = Server::hoist(hoist()).unwrap();
    let c = client();
    let base = server.url.clone();
    let data: Vec<u8> = (0..(12 << 20) + 123)
        .map(|i: usize| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let digest = push_blob(&c, &base, "send/big", &data).await;
    let small = &data[..4096];
    let small_digest = push_blob(&c, &base, "send/big", small).await;
    let url = format!("{base}/v2/send/big/blobs/{digest}");
    let before = sendfile_bytes(&c, &base).await;

    let (_, whole) = get_blob(&c, &url, None).await;
    assert!(whole == data, "the whole blob differs");
    let n = data.len();
    for (a, b) in [
        (0, 0),
        (10, 20),
        ((1 << 20) - 1, 2 << 20),
        (5_000_000, 9_000_000),
        (n - 1, n - 1),
        (n - (3 << 20), n - 1),
    ] {
        let (_, part) = get_blob(&c, &url, Some((a, b))).await;
        assert!(part == data[a..=b], "range {a}-{b} differs");
    }
    let (_, got) = get_blob(
        &c,
        &format!("{base}/v2/send/big/blobs/{small_digest}"),
        None,
    )
    .await;
    assert_eq!(got, small);
    // Concurrent pulls of one blob share one mapping's pages and each gets all of it.
    let pulls = (0..4).map(|_| get_blob(&c, &url, None));
    for (_, got) in futures::future::join_all(pulls).await {
        assert!(got == data, "a concurrent pull differs");
    }
    let sent = sendfile_bytes(&c, &base).await - before;
    let ranged = (2 << 20) - ((1 << 20) - 1) + 1 + 4_000_001 + (3 << 20);
    assert!(
        sent >= (5 * n + ranged) as u64,
        "sendfile sent {sent} bytes, expected at least 5 whole pulls and the long ranges"
    );
    // HTTP/2 (prior knowledge) frames the same bytes through the mapping.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let (version, got) = get_blob(&h2, &url, None).await;
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert!(got == data, "the blob over h2c differs");
}
