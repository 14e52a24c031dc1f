//! What the storage tests share (`storage_crash.rs`, `storage_stress.rs`): pushing blobs
//! monolithically or in chunks and images over plain HTTP, counting every response.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use hoist_oci::Digest;

pub fn hoist() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hoist"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client")
}

/// `len` bytes that differ for every `seed`.
pub fn content(seed: &str, len: usize) -> Vec<u8> {
    let mut out = seed.as_bytes().to_vec();
    let mut x: u32 = out
        .iter()
        .fold(2166136261u32, |h, b| (h ^ *b as u32).wrapping_mul(16777619));
    while out.len() < seed.len() + len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(x as u8);
    }
    out
}

/// Every response the helpers saw, and how many were server errors.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicUsize,
    pub server_errors: AtomicUsize,
}

impl Stats {
    fn saw(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn server_errors(&self) -> usize {
        self.server_errors.load(Ordering::Relaxed)
    }
}

/// How a push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// `201`: the server acknowledged it.
    Created,
    /// An unexpected status, with the response body.
    Refused(String),
    /// The connection failed: no answer, nothing acknowledged.
    Lost,
}

async fn send(stats: &Stats, req: reqwest::RequestBuilder) -> Result<reqwest::Response, Pushed> {
    match req.send().await {
        Ok(resp) => {
            stats.saw(resp.status().as_u16());
            Ok(resp)
        }
        Err(_) => Err(Pushed::Lost),
    }
}

async fn expect(
    resp: reqwest::Response,
    want: u16,
    what: &str,
) -> Result<reqwest::Response, Pushed> {
    if resp.status().as_u16() == want {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    Err(Pushed::Refused(format!("{what}: {status} {body}")))
}

fn outcome(r: Result<(), Pushed>) -> Pushed {
    match r {
        Ok(()) => Pushed::Created,
        Err(p) => p,
    }
}

fn absolute(base: &str, resp: &reqwest::Response) -> String {
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if loc.starts_with("http") {
        loc.to_owned()
    } else {
        format!("{base}{loc}")
    }
}

fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') {
        format!("{url}&{q}")
    } else {
        format!("{url}?{q}")
    }
}

/// `POST …/uploads/?digest=` with the whole blob.
pub async fn push_monolithic(c: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> Pushed {
    push_monolithic_counted(c, base, repo, data, &Stats::default()).await
}

pub async fn push_monolithic_counted(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    stats: &Stats,
) -> Pushed {
    let d = Digest::sha256_of(data);
    outcome(
        async {
            let resp = send(
                stats,
                c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                    .header("content-type", "application/octet-stream")
                    .body(data.to_vec()),
            )
            .await?;
            expect(resp, 201, "monolithic push").await?;
            Ok(())
        }
        .await,
    )
}

/// `POST`, then `pieces` PATCHes with `Content-Range`, then `PUT ?digest=`.
pub async fn push_chunked(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    pieces: usize,
) -> Pushed {
    push_chunked_counted(c, base, repo, data, pieces, &Stats::default()).await
}

pub async fn push_chunked_counted(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    pieces: usize,
    stats: &Stats,
) -> Pushed {
    let d = Digest::sha256_of(data);
    outcome(
        async {
            let mut url = start_upload(c, base, repo, stats).await?;
            let step = data.len().div_ceil(pieces.max(1)).max(1);
            for (i, piece) in data.chunks(step).enumerate() {
                let start = i * step;
                let resp = send(
                    stats,
                    c.patch(&url)
                        .header("content-type", "application/octet-stream")
                        .header(
                            "content-range",
                            format!("{start}-{}", start + piece.len() - 1),
                        )
                        .body(piece.to_vec()),
                )
                .await?;
                let resp = expect(resp, 202, "chunk").await?;
                url = absolute(base, &resp);
            }
            let resp = send(stats, c.put(with_query(&url, &format!("digest={d}")))).await?;
            expect(resp, 201, "closing PUT").await?;
            Ok(())
        }
        .await,
    )
}

/// Opens an upload session; its absolute URL.
pub async fn start_upload(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    stats: &Stats,
) -> Result<String, Pushed> {
    let resp = send(stats, c.post(format!("{base}/v2/{repo}/blobs/uploads/"))).await?;
    let resp = expect(resp, 202, "upload start").await?;
    Ok(absolute(base, &resp))
}

/// Opens an upload, sends one chunk and cancels it.
pub async fn cancelled_upload(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    stats: &Stats,
) -> Result<(), Pushed> {
    let url = start_upload(c, base, repo, stats).await?;
    let resp = send(
        stats,
        c.patch(&url)
            .header("content-type", "application/octet-stream")
            .body(data.to_vec()),
    )
    .await?;
    let resp = expect(resp, 202, "chunk").await?;
    let url = absolute(base, &resp);
    let resp = send(stats, c.delete(&url)).await?;
    expect(resp, 204, "cancel").await?;
    Ok(())
}

/// The bytes of an image manifest naming `config` and `layers` (sizes are not checked).
pub fn image_manifest(config: &Digest, layers: &[&Digest]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.as_str(),
            "size": 1
        },
        "layers": layers.iter().map(|d| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.as_str(),
            "size": 1
        })).collect::<Vec<_>>()
    }))
    .expect("json")
}

/// Puts an image manifest under `tag`. `Ok(Some(digest))` on 201, `Ok(None)` when the
/// connection failed, `Err` with the status and body otherwise.
pub async fn push_image(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    config: &Digest,
    layers: &[&Digest],
) -> Result<Option<Digest>, String> {
    push_image_counted(c, base, repo, tag, config, layers, &Stats::default()).await
}

pub async fn push_image_counted(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    config: &Digest,
    layers: &[&Digest],
    stats: &Stats,
) -> Result<Option<Digest>, String> {
    let body = image_manifest(config, layers);
    let d = Digest::sha256_of(&body);
    let req = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body);
    match send(stats, req).await {
        Err(_) => Ok(None),
        Ok(resp) => match expect(resp, 201, "manifest").await {
            Ok(_) => Ok(Some(d)),
            Err(Pushed::Refused(why)) => Err(why),
            Err(other) => Err(format!("{other:?}")),
        },
    }
}
