//! Registry benchmark: `hoist serve` against the CNCF registry (`docker-registry`), side by side.
//!
//! Both servers run at once, each on a fresh data directory, and every measurement alternates
//! between them (hoist, distribution, hoist, ...), so load from other processes on the machine
//! falls on both alike. For each server:
//! - blob push throughput (MiB/s) of a 256 MiB random blob, monolithic (POST + PUT with the
//!   body) and chunked (POST, PATCH 8 MiB chunks with `Content-Range`, PUT to close); median of
//!   3 pushes, each of a different blob into a different repository;
//! - blob pull throughput (MiB/s) of such a blob, median of 3;
//! - manifest GETs per second from 32 concurrent connections (GET by tag, in 3 rounds of 2 s
//!   after a warm-up), with p50 and p99 latency;
//! - peak RSS of the server process (`VmHWM` in `/proc/PID/status`) after everything above.
//!
//! Then two reference measurements of the machine itself, each the median of 3: loopback TCP
//! throughput (GB/s; one thread writes a 4 MiB buffer repeatedly into a 127.0.0.1 socket for ~1 s,
//! another reads and discards) and fsync-ed disk writes in `$TMPDIR` (MB/s; the blob size in
//! 1 MiB writes, then `sync_all`, the file deleted after).
//!
//! Then a table, and the ratios against hoist's targets: at least 2x the CNCF registry's manifest
//! GETs/s, at least 1.5x its blob push throughput, less memory; blob pulls at least 90% of
//! loopback TCP, monolithic pushes at least 90% of the fsync-ed disk rate. It only prints; nothing
//! here is an assertion.
//!
//! `cargo bench -p hoist --bench registry`; `HOIST_BENCH_QUICK=1` shrinks sizes and durations for a
//! smoke run; `HOIST_BENCH_ONLY=hoist` (or `distribution`) runs one server. Data directories are
//! made under `$TMPDIR`: `TMPDIR=/dev/shm` measures the servers rather than the disk.
//!
//! The load generator runs in this process, so on a small machine it competes with the servers
//! for CPU; both servers meet the same competition.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::StreamExt;
use hoist_conformance::fixtures::{self, Layout};
use hoist_conformance::harness::Server;
use hoist_oci::Digest;
use reqwest::{Client, StatusCode, header};

const MIB: usize = 1 << 20;
const CONNECTIONS: usize = 32;

struct Config {
    blob_size: usize,
    chunk_size: usize,
    /// Repetitions of each blob measurement (the median is reported), and rounds of manifest GETs.
    reps: usize,
    /// Total time of manifest GETs per server, over all rounds.
    manifest_duration: Duration,
    /// Warm-up before each round of manifest GETs (not counted).
    warmup: Duration,
}

impl Config {
    fn from_env() -> Config {
        if std::env::var_os("HOIST_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty()) {
            Config {
                blob_size: 16 * MIB,
                chunk_size: 8 * MIB,
                reps: 1,
                manifest_duration: Duration::from_secs(1),
                warmup: Duration::from_millis(200),
            }
        } else {
            Config {
                blob_size: 256 * MIB,
                chunk_size: 8 * MIB,
                reps: 3,
                manifest_duration: Duration::from_secs(6),
                warmup: Duration::from_millis(500),
            }
        }
    }
}

/// Timings of one measurement on one server, and the first error it met.
#[derive(Default)]
struct Samples {
    times: Vec<Duration>,
    err: Option<anyhow::Error>,
}

impl Samples {
    fn record(&mut self, r: Result<Duration>) {
        match r {
            Ok(t) => self.times.push(t),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: anyhow::Error) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    /// MiB/s of the median sample.
    fn median_rate(mut self, mib: f64) -> Result<f64> {
        if let Some(e) = self.err {
            return Err(e);
        }
        ensure!(!self.times.is_empty(), "no measurement");
        self.times.sort();
        Ok(mib / self.times[self.times.len() / 2].as_secs_f64())
    }
}

/// What one server scored; `Err` holds why a measurement failed.
struct Scores {
    kind: &'static str,
    push_mono: Result<f64>,
    push_chunked: Result<f64>,
    pull: Result<f64>,
    manifests: Result<ManifestScore>,
    peak_rss_kib: Result<u64>,
}

#[derive(Clone, Copy)]
struct ManifestScore {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn main() {
    let cfg = Config::from_env();
    // `cargo bench` passes `--bench`; this benchmark reads the environment instead of flags.
    let only = std::env::var("HOIST_BENCH_ONLY").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut servers = Vec::new();
    for kind in ["hoist", "distribution"] {
        if only.as_deref().is_some_and(|o| o != kind) {
            continue;
        }
        let server = match kind {
            "hoist" => Server::hoist(Path::new(env!("CARGO_BIN_EXE_hoist"))),
            _ => Server::distribution(),
        };
        if let Err(e) = &server {
            eprintln!("cannot start {kind}: {e:#}");
        }
        servers.push((kind, server));
    }

    // One copy of the random data for the whole run. It is leaked so every request body can
    // borrow a `'static` slice of it without copying. Each push takes a slice at its own offset,
    // so no push finds its blob already stored.
    let spare = 64 * 2 * cfg.reps * servers.len();
    eprintln!("generating {} MiB of random data...", cfg.blob_size / MIB);
    let data: &'static [u8] =
        Box::leak(fixtures::random_bytes(cfg.blob_size + spare, 42).into_boxed_slice());

    let scores = runtime.block_on(bench(&servers, &cfg, data));
    drop(servers);
    eprintln!("reference measurements...");
    let refs = references(&cfg, data);
    report(&cfg, &scores, &refs);
}

/// What this machine does without a server in the way: loopback TCP (GB/s) and fsync-ed disk
/// writes in `$TMPDIR` (MB/s), each the median of 3.
struct References {
    loopback_gbps: Result<f64>,
    disk_mbps: Result<f64>,
}

fn references(cfg: &Config, data: &'static [u8]) -> References {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let secs = if cfg.reps == 1 { 0.3 } else { 1.0 };
    let loopback_gbps = (0..3)
        .map(|_| loopback(Duration::from_secs_f64(secs)))
        .collect::<Result<Vec<f64>>>()
        .map(median);
    let size = cfg.blob_size as f64 / 1e6;
    let disk_mbps = (0..3)
        .map(|_| disk_write(&data[..cfg.blob_size]).map(|t| size / t.as_secs_f64()))
        .collect::<Result<Vec<f64>>>()
        .map(median);
    References {
        loopback_gbps,
        disk_mbps,
    }
}

/// One thread writes a 4 MiB buffer repeatedly into a 127.0.0.1 socket for `duration`, another
/// reads and discards; GB/s received.
fn loopback(duration: Duration) -> Result<f64> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; MIB];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    let buf = vec![0x5au8; 4 * MIB];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        s.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let got = reader
        .join()
        .map_err(|_| anyhow!("loopback reader panicked"))??;
    let elapsed = start.elapsed();
    ensure!(got == sent, "loopback read {got} bytes of {sent}");
    Ok(got as f64 / elapsed.as_secs_f64() / 1e9)
}

/// Writes `data` to a new file in `$TMPDIR` in 1 MiB writes, then `sync_all`; the file is
/// deleted afterwards. Returns the elapsed time.
fn disk_write(data: &[u8]) -> Result<Duration> {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new()?;
    let start = Instant::now();
    for chunk in data.chunks(MIB) {
        file.as_file_mut().write_all(chunk)?;
    }
    file.as_file().sync_all()?;
    let elapsed = start.elapsed();
    file.close()?;
    Ok(elapsed)
}

fn samples(n: usize) -> Vec<Samples> {
    (0..n).map(|_| Samples::default()).collect()
}

async fn bench(
    servers: &[(&'static str, Result<Server>)],
    cfg: &Config,
    data: &'static [u8],
) -> Vec<Scores> {
    let client = Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(CONNECTIONS * 2)
        .build()
        .expect("http client");
    let n = servers.len();
    let blob_at = |rep: usize, server: usize, kind: usize| {
        let offset = ((rep * n + server) * 2 + kind) * 64;
        &data[offset..offset + cfg.blob_size]
    };
    let live = || {
        servers
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| s.as_ref().ok().map(|s| (i, s.url.as_str())))
    };
    let (mut mono, mut chunked, mut pulls) = (samples(n), samples(n), samples(n));

    for rep in 0..cfg.reps {
        eprintln!("blob pushes, round {}/{}...", rep + 1, cfg.reps);
        for (i, base) in live() {
            let repo = format!("bench/mono{rep}");
            mono[i].record(push_monolithic(&client, base, &repo, blob_at(rep, i, 0)).await);
        }
        for (i, base) in live() {
            let repo = format!("bench/chunked{rep}");
            let blob = blob_at(rep, i, 1);
            chunked[i].record(push_chunked(&client, base, &repo, blob, cfg.chunk_size).await);
        }
    }

    // Pull what the first monolithic push stored (or push it now if that failed).
    eprintln!("blob pulls...");
    let mut pullable = vec![false; n];
    for (i, base) in live() {
        let blob = blob_at(0, i, 0);
        let digest = Digest::sha256_of(blob);
        let ready = async {
            if head_blob(&client, base, "bench/mono0", &digest).await? != StatusCode::OK {
                push_monolithic(&client, base, "bench/mono0", blob).await?;
            }
            anyhow::Ok(())
        };
        match ready.await {
            Ok(()) => pullable[i] = true,
            Err(e) => pulls[i].fail(e),
        }
    }
    for _ in 0..cfg.reps {
        for (i, base) in live().filter(|(i, _)| pullable[*i]) {
            let blob = blob_at(0, i, 0);
            let digest = Digest::sha256_of(blob);
            let size = blob.len() as u64;
            pulls[i].record(pull_blob(&client, base, "bench/mono0", &digest, size).await);
        }
    }

    eprintln!("manifest GETs...");
    let mut manifests: Vec<Result<Vec<u8>>> = (0..n).map(|_| Err(anyhow!("not started"))).collect();
    for (i, base) in live() {
        manifests[i] = push_small_image(&client, base, "bench/manifest").await;
    }
    let mut latencies: Vec<Result<Vec<Duration>>> = (0..n).map(|_| Ok(Vec::new())).collect();
    let round = cfg.manifest_duration / cfg.reps as u32;
    for _ in 0..cfg.reps {
        for (i, base) in live() {
            let (Ok(manifest), Ok(acc)) = (&manifests[i], &mut latencies[i]) else {
                continue;
            };
            match manifest_load(base, "bench/manifest", manifest, cfg.warmup, round).await {
                Ok(l) => acc.extend(l),
                Err(e) => latencies[i] = Err(e),
            }
        }
    }

    let size_mib = cfg.blob_size as f64 / MIB as f64;
    let mut scores = Vec::new();
    let per_server = mono.into_iter().zip(chunked).zip(pulls);
    for (i, (((kind, server), ((mono, chunked), pulls)), latencies)) in
        servers.iter().zip(per_server).zip(latencies).enumerate()
    {
        let Ok(server) = server else {
            scores.push(Scores {
                kind,
                push_mono: Err(anyhow!("not started")),
                push_chunked: Err(anyhow!("not started")),
                pull: Err(anyhow!("not started")),
                manifests: Err(anyhow!("not started")),
                peak_rss_kib: Err(anyhow!("not started")),
            });
            continue;
        };
        let manifests = match (&manifests[i], latencies) {
            (Err(e), _) => Err(anyhow!("pushing the manifest: {e:#}")),
            (_, Err(e)) => Err(e),
            (_, Ok(l)) => manifest_score(l, cfg.manifest_duration),
        };
        scores.push(Scores {
            kind,
            push_mono: mono.median_rate(size_mib),
            push_chunked: chunked.median_rate(size_mib),
            pull: pulls.median_rate(size_mib),
            manifests,
            peak_rss_kib: peak_rss_kib(server.pid()),
        });
    }
    scores
}

fn manifest_score(mut latencies: Vec<Duration>, measured: Duration) -> Result<ManifestScore> {
    ensure!(!latencies.is_empty(), "no manifest GET completed");
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Ok(ManifestScore {
        per_sec: latencies.len() as f64 / measured.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

/// Resolves a `Location` header against the server's base URL.
fn location(base: &str, resp: &reqwest::Response) -> Result<String> {
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .context("no Location header")?
        .to_str()?;
    Ok(
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_owned()
        } else {
            format!("{base}{loc}")
        },
    )
}

fn with_digest(url: &str, digest: &Digest) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

async fn expect(
    resp: reqwest::Response,
    want: StatusCode,
    what: &str,
) -> Result<reqwest::Response> {
    if resp.status() != want {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("{what}: expected {want}, got {status}: {body}");
    }
    Ok(resp)
}

async fn start_upload(client: &Client, base: &str, repo: &str) -> Result<String> {
    let resp = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header(header::CONTENT_LENGTH, "0")
        .send()
        .await?;
    let resp = expect(
        resp,
        StatusCode::ACCEPTED,
        &format!("POST /v2/{repo}/blobs/uploads/"),
    )
    .await?;
    location(base, &resp)
}

/// POST, then PUT with the whole blob. Returns the elapsed time.
async fn push_monolithic(
    client: &Client,
    base: &str,
    repo: &str,
    blob: &'static [u8],
) -> Result<Duration> {
    let digest = Digest::sha256_of(blob);
    let start = Instant::now();
    let url = start_upload(client, base, repo).await?;
    let resp = client
        .put(with_digest(&url, &digest))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, blob.len().to_string())
        .body(blob)
        .send()
        .await?;
    expect(resp, StatusCode::CREATED, "monolithic PUT").await?;
    Ok(start.elapsed())
}

/// POST, PATCH each chunk with its `Content-Range`, PUT to close. Returns the elapsed time.
async fn push_chunked(
    client: &Client,
    base: &str,
    repo: &str,
    blob: &'static [u8],
    chunk: usize,
) -> Result<Duration> {
    let digest = Digest::sha256_of(blob);
    let start = Instant::now();
    let mut url = start_upload(client, base, repo).await?;
    let mut offset = 0;
    while offset < blob.len() {
        let end = (offset + chunk).min(blob.len());
        let resp = client
            .patch(&url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, (end - offset).to_string())
            .header(header::CONTENT_RANGE, format!("{offset}-{}", end - 1))
            .body(&blob[offset..end])
            .send()
            .await?;
        let resp = expect(
            resp,
            StatusCode::ACCEPTED,
            &format!("PATCH bytes {offset}-{}", end - 1),
        )
        .await?;
        url = location(base, &resp)?;
        offset = end;
    }
    let resp = client
        .put(with_digest(&url, &digest))
        .header(header::CONTENT_LENGTH, "0")
        .send()
        .await?;
    expect(resp, StatusCode::CREATED, "closing PUT").await?;
    Ok(start.elapsed())
}

async fn head_blob(client: &Client, base: &str, repo: &str, digest: &Digest) -> Result<StatusCode> {
    Ok(client
        .head(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?
        .status())
}

/// GETs a blob and counts its bytes as they stream in. Returns the elapsed time.
async fn pull_blob(
    client: &Client,
    base: &str,
    repo: &str,
    digest: &Digest,
    size: u64,
) -> Result<Duration> {
    let start = Instant::now();
    let resp = client
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?;
    let resp = expect(resp, StatusCode::OK, "blob GET").await?;
    let mut body = resp.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = body.next().await {
        got += chunk?.len() as u64;
    }
    let elapsed = start.elapsed();
    ensure!(
        got == size,
        "blob GET returned {got} bytes, expected {size}"
    );
    Ok(elapsed)
}

/// Pushes the busybox fixture (config, layer, manifest tagged `1`); returns the manifest bytes.
async fn push_small_image(client: &Client, base: &str, repo: &str) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let layout = Layout::create(dir.path())?;
    let image = fixtures::busybox_image(&layout, "1")?;
    for blob in [&image.config, &image.layers[0]] {
        let bytes = layout.read_blob(&blob.digest)?;
        let url = start_upload(client, base, repo).await?;
        let resp = client
            .put(with_digest(&url, &blob.digest))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await?;
        expect(resp, StatusCode::CREATED, "blob PUT").await?;
    }
    let manifest = layout.read_blob(&image.manifest.digest)?;
    let resp = client
        .put(format!("{base}/v2/{repo}/manifests/1"))
        .header(header::CONTENT_TYPE, image.manifest.media_type.as_str())
        .body(manifest.clone())
        .send()
        .await?;
    expect(resp, StatusCode::CREATED, "manifest PUT").await?;
    Ok(manifest)
}

/// `CONNECTIONS` workers GET the manifest by tag in a loop, each on its own connection; counts
/// the latencies of requests started after the warm-up.
async fn manifest_load(
    base: &str,
    repo: &str,
    manifest: &[u8],
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<Duration>> {
    let url = Arc::new(format!("{base}/v2/{repo}/manifests/1"));
    let want_len = manifest.len();
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop = measure_from + duration;
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        // One client per worker: one keep-alive connection each.
        let client = Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .build()?;
        let url = Arc::clone(&url);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= stop {
                    break;
                }
                let resp = client
                    .get(url.as_str())
                    .header(
                        header::ACCEPT,
                        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
                    )
                    .send()
                    .await?;
                let resp = expect(resp, StatusCode::OK, "manifest GET").await?;
                let body = resp.bytes().await?;
                ensure!(body.len() == want_len, "manifest GET returned {} bytes", body.len());
                if t0 >= measure_from {
                    latencies.push(t0.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    Ok(latencies)
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/PID/status")?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

fn cell<T>(r: &Result<T>, f: impl Fn(&T) -> String) -> String {
    match r {
        Ok(v) => f(v),
        Err(_) => "error".to_owned(),
    }
}

fn report(cfg: &Config, all: &[Scores], refs: &References) {
    println!();
    println!(
        "registry benchmark: blob {} MiB (median of {}), chunks {} MiB, manifest GETs from {CONNECTIONS} connections for {:?}",
        cfg.blob_size / MIB,
        cfg.reps,
        cfg.chunk_size / MIB,
        cfg.manifest_duration
    );
    print!("{:<26}", "");
    for s in all {
        print!("{:>14}", s.kind);
    }
    println!();
    type Row<'a> = (&'a str, Box<dyn Fn(&Scores) -> String>);
    let rows: Vec<Row<'_>> = vec![
        (
            "blob push mono (MiB/s)",
            Box::new(|s| cell(&s.push_mono, |v| format!("{v:.1}"))),
        ),
        (
            "blob push chunked (MiB/s)",
            Box::new(|s| cell(&s.push_chunked, |v| format!("{v:.1}"))),
        ),
        (
            "blob pull (MiB/s)",
            Box::new(|s| cell(&s.pull, |v| format!("{v:.1}"))),
        ),
        (
            "manifest GET/s",
            Box::new(|s| cell(&s.manifests, |m| format!("{:.0}", m.per_sec))),
        ),
        (
            "manifest p50 (ms)",
            Box::new(|s| cell(&s.manifests, |m| format!("{:.3}", ms(m.p50)))),
        ),
        (
            "manifest p99 (ms)",
            Box::new(|s| cell(&s.manifests, |m| format!("{:.3}", ms(m.p99)))),
        ),
        (
            "peak RSS (MiB)",
            Box::new(|s| cell(&s.peak_rss_kib, |k| format!("{:.1}", *k as f64 / 1024.0))),
        ),
    ];
    for (name, f) in &rows {
        print!("{name:<26}");
        for s in all {
            print!("{:>14}", f(s));
        }
        println!();
    }

    println!("references (this machine):");
    println!(
        "  {:<24}{:>14}",
        "loopback TCP (GB/s)",
        cell(&refs.loopback_gbps, |v| format!("{v:.2}"))
    );
    println!(
        "  {:<24}{:>14}",
        "fsync disk write (MB/s)",
        cell(&refs.disk_mbps, |v| format!("{v:.1}"))
    );
    for (what, r) in [
        ("loopback TCP", &refs.loopback_gbps),
        ("fsync disk write", &refs.disk_mbps),
    ] {
        if let Err(e) = r {
            println!("  error: {what}: {e:#}");
        }
    }

    let errors: Vec<String> = all
        .iter()
        .flat_map(|s| {
            [
                ("blob push mono", s.push_mono.as_ref().err()),
                ("blob push chunked", s.push_chunked.as_ref().err()),
                ("blob pull", s.pull.as_ref().err()),
                ("manifest GETs", s.manifests.as_ref().err()),
                ("peak RSS", s.peak_rss_kib.as_ref().err()),
            ]
            .into_iter()
            .filter_map(move |(what, e)| e.map(|e| format!("  {}: {what}: {e:#}", s.kind)))
        })
        .collect();
    if !errors.is_empty() {
        println!("errors:");
        for e in errors {
            println!("{e}");
        }
    }

    let (Some(h), Some(d)) = (
        all.iter().find(|s| s.kind == "hoist"),
        all.iter().find(|s| s.kind == "distribution"),
    ) else {
        return;
    };
    println!("targets (hoist / distribution):");
    let ratio =
        |name: &str, a: Option<f64>, b: Option<f64>, target: Option<(f64, bool)>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => {
                let r = a / b;
                let verdict = match target {
                    Some((t, true)) => format!(
                        "(target >= {t}x)  {}",
                        if r >= t { "met" } else { "MISSED" }
                    ),
                    Some((t, false)) => {
                        format!("(target < {t}x)  {}", if r < t { "met" } else { "MISSED" })
                    }
                    None => "(no target)".to_owned(),
                };
                println!("  {name:<24} {r:>6.2}x  {verdict}");
            }
            _ => println!("  {name:<24}    n/a  (a measurement failed)"),
        };
    let ok = |r: &Result<f64>| r.as_ref().ok().copied();
    let gets = |s: &Scores| s.manifests.as_ref().ok().map(|m| m.per_sec);
    let rss = |s: &Scores| s.peak_rss_kib.as_ref().ok().map(|&k| k as f64);
    ratio("manifest GET/s", gets(h), gets(d), Some((2.0, true)));
    ratio(
        "blob push mono",
        ok(&h.push_mono),
        ok(&d.push_mono),
        Some((1.5, true)),
    );
    ratio(
        "blob push chunked",
        ok(&h.push_chunked),
        ok(&d.push_chunked),
        Some((1.5, true)),
    );
    ratio("blob pull", ok(&h.pull), ok(&d.pull), None);
    ratio("peak RSS", rss(h), rss(d), Some((1.0, false)));
    println!("targets (hoist / this machine):");
    let mib_s = |r: &Result<f64>| ok(r).map(|v| v * MIB as f64);
    ratio(
        "blob pull / loopback",
        mib_s(&h.pull),
        ok(&refs.loopback_gbps).map(|v| v * 1e9),
        Some((0.9, true)),
    );
    ratio(
        "push mono / fsync disk",
        mib_s(&h.push_mono),
        ok(&refs.disk_mbps).map(|v| v * 1e6),
        Some((0.9, true)),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
