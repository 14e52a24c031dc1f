//! Scale-out benchmark: three `hoist serve` replicas against three CNCF registry
//! (`docker-registry`) replicas, each set behind a round-robin haproxy, all on one S3 server.
//!
//! - hoist: 3 replicas on one S3 bucket (prefix `hoist`; moto, or s3s-fs with
//!   `HOIST_BENCH_S3=s3s-fs`) and one PostgreSQL database (metadata), open (no users, so no auth), logging warnings only;
//! - distribution: 3 replicas on the same bucket (`rootdirectory: /distribution`), its s3
//!   driver with `regionendpoint`, a shared `http.secret` (an upload started on one replica
//!   continues on another), `redirect: disable: true` (blobs are served through the replica,
//!   as hoist's are), the in-memory blob descriptor cache, no auth, warnings only and no access
//!   log;
//! - haproxy in front of each set with the same configuration
//!   ([`hoist_testsupport::haproxy::round_robin_config`], health-checked on `GET /v2/`, which
//!   both answer 200 when open): every request goes to the next replica, so an upload's POST and
//!   PUT usually land on different replicas.
//!
//! With 32 concurrent clients (one keep-alive connection each to haproxy):
//! - blob push (MiB/s): each client pushes distinct random blobs, monolithic (POST, then PUT
//!   with the body and the digest), the total bytes over the wall time of all pushes;
//! - blob pull (MiB/s): each client GETs the blobs another client pushed in the same round;
//! - manifest GET/s: every client GETs one small image's manifest by tag, after a warm-up.
//!
//! Each measurement is taken in rounds, hoist then distribution in each, so load from other
//! processes on the machine falls on both alike; the report prints each round's number, the
//! medians, and the ratios hoist / distribution (target: at least 1.5x each). It only prints;
//! nothing here is an assertion.
//!
//! `cargo bench -p hoist --bench scaleout`; `HOIST_BENCH_QUICK=1` for a short run. s3s-fs
//! keeps its objects under `$TMPDIR`, so the disk takes part in the blob rows.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::StreamExt;
use hoist_conformance::fixtures::{self, Layout};
use hoist_conformance::harness::Server;
use hoist_oci::Digest;
use hoist_testsupport::haproxy::{Haproxy, round_robin_config};
use hoist_testsupport::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use reqwest::{Client, StatusCode, header};

mod support;
use support::{Rounds, expect, start_upload, with_digest};

const MIB: usize = 1 << 20;
const CLIENTS: usize = 32;
const REPLICAS: usize = 3;
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

struct Config {
    blob_size: usize,
    /// Blobs each client pushes (and pulls) per round.
    blobs_per_client: usize,
    rounds: usize,
    /// Manifest GETs per round and set, after `warmup`.
    manifest_round: Duration,
    warmup: Duration,
}

impl Config {
    fn from_env() -> Config {
        if std::env::var_os("HOIST_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty()) {
            Config {
                blob_size: 2 * MIB,
                blobs_per_client: 1,
                rounds: 2,
                manifest_round: Duration::from_secs(1),
                warmup: Duration::from_millis(300),
            }
        } else {
            Config {
                blob_size: 8 * MIB,
                blobs_per_client: 2,
                rounds: 3,
                manifest_round: Duration::from_secs(3),
                warmup: Duration::from_millis(500),
            }
        }
    }
}

/// What one set of replicas scored.
#[derive(Default)]
struct Scores {
    push: Rounds,
    pull: Rounds,
    manifests: Rounds,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A CNCF registry replica on a configuration of its own; killed when dropped.
struct Distribution {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Distribution {
    fn start(s3: &S3Server, secret: &str) -> Result<Distribution> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        // The keys docker-registry 2.8 (Debian 12's) reads; its s3 driver makes path-style
        // requests when `regionendpoint` is set.
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  s3:\n    regionendpoint: {}\n    region: us-east-1\n    bucket: {BUCKET}\n    \
             accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    secure: false\n    \
             v4auth: true\n    rootdirectory: /distribution\n  \
             cache:\n    blobdescriptor: inmemory\n  redirect:\n    disable: true\n  \
             delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: {secret}\n",
            s3.endpoint()
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&path)
            // The machine's CA bundle variable makes the AWS SDK replace its HTTP transport,
            // which this registry's S3 driver refuses; the S3 server here is plain HTTP.
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (installed by .ci/peers.sh)")?;
        let mut d = Distribution { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&d.addr).is_err() {
            if let Some(status) = d.child.try_wait()? {
                bail!(
                    "docker-registry exited before it listened ({status}): {}",
                    d.log()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}: {}",
                d.addr,
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hoist replica: `hoist serve` on `s3`'s bucket (prefix `hoist`) and the database `db`.
fn hoist_replica(s3: &S3Server, db: &str, dir: &Path, i: usize) -> Result<Server> {
    let config = dir.join(format!("hoist-{i}.toml"));
    std::fs::write(
        &config,
        format!(
            "[storage]\ndriver = \"s3\"\n[storage.s3]\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"{ACCESS_KEY}\"\n\
             secret_access_key = \"{SECRET_KEY}\"\nprefix = \"hoist\"\nredirect = false\n\
             [database]\nurl = \"{db}\"\n",
            s3.endpoint()
        ),
    )?;
    let config = config.to_str().context("temporary path is not utf-8")?;
    Server::hoist_with(
        Path::new(env!("CARGO_BIN_EXE_hoist")),
        &["--config", config],
    )
}

/// haproxy in front of `backends`: the shared round-robin configuration, checked on `GET /v2/`.
fn balancer(backends: &[String]) -> Result<Haproxy> {
    let bind = format!("127.0.0.1:{}", free_port()?);
    let config = round_robin_config(&bind, backends).replace("GET /readyz", "GET /v2/");
    Ok(Haproxy::with_config(&config, &bind))
}

/// Waits until `base` answers `GET /v2/` with 200 a few times in a row (every replica up).
async fn wait_ready(base: &str) -> Result<()> {
    let client = Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ok = 0;
    while ok < 2 * REPLICAS {
        let r = client.get(format!("{base}/v2/")).send().await;
        match r {
            Ok(r) if r.status() == StatusCode::OK => ok += 1,
            other => {
                ok = 0;
                ensure!(
                    Instant::now() < deadline,
                    "{base} is not ready: {:?}",
                    other.map(|r| r.status())
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

fn main() {
    let cfg = Config::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // moto by default: s3s-fs 0.14 has no ListMultipartUploads, which the CNCF registry's S3
    // driver calls to finish every upload (it answers 501, the registry 500).
    // `HOIST_BENCH_S3=s3s-fs` runs hoist's side there anyway.
    let s3 = match std::env::var("HOIST_BENCH_S3").as_deref() {
        Ok("s3s-fs") => S3Server::s3s_fs(),
        _ => S3Server::moto(),
    };
    eprintln!(
        "starting {}, postgresql, 3 + 3 replicas and haproxy...",
        s3.name
    );
    let db = hoist_testsupport::postgres::database();
    let work = tempfile::tempdir().expect("tempdir");
    // One after the other: the first creates the database's tables.
    let hoists: Vec<Server> = (0..REPLICAS)
        .map(|i| hoist_replica(&s3, db.url(), work.path(), i).expect("starting hoist serve"))
        .collect();
    let secret = format!("bench-{}", std::process::id());
    let registries: Vec<Distribution> = (0..REPLICAS)
        .map(|_| Distribution::start(&s3, &secret).expect("starting docker-registry"))
        .collect();
    let hoist_lb = balancer(&hoists.iter().map(|s| s.addr.clone()).collect::<Vec<_>>())
        .expect("starting haproxy");
    let registry_lb = balancer(
        &registries
            .iter()
            .map(|s| s.addr.clone())
            .collect::<Vec<_>>(),
    )
    .expect("starting haproxy");
    let sets = [
        ("hoist", format!("http://{}", hoist_lb.addr)),
        ("distribution", format!("http://{}", registry_lb.addr)),
    ];

    let blobs = cfg.rounds * sets.len() * CLIENTS * cfg.blobs_per_client;
    eprintln!(
        "generating {} MiB of random data...",
        (cfg.blob_size + blobs * 64) / MIB
    );
    let data: &'static [u8] =
        Box::leak(fixtures::random_bytes(cfg.blob_size + blobs * 64, 7).into_boxed_slice());

    let scores = runtime.block_on(bench(&cfg, &sets, data));
    report(&cfg, &scores);
    for (what, lb) in [("hoist", &hoist_lb), ("distribution", &registry_lb)] {
        let log = lb.log();
        if log.contains("ALERT") || log.contains("is DOWN") {
            println!("haproxy ({what}) said:\n{log}");
        }
    }
    drop((hoist_lb, registry_lb, hoists, registries, db, s3));
}

/// A blob of the run: its bytes (a slice of the random data at its own offset) and digest.
struct Blob {
    bytes: &'static [u8],
    digest: Digest,
}

async fn bench(cfg: &Config, sets: &[(&'static str, String)], data: &'static [u8]) -> Vec<Scores> {
    let mut scores: Vec<Scores> = sets.iter().map(|_| Scores::default()).collect();
    for (i, (kind, base)) in sets.iter().enumerate() {
        if let Err(e) = wait_ready(base).await {
            eprintln!("{kind}: {e:#}");
            scores[i].push.fail(e);
        }
    }
    let per_round = CLIENTS * cfg.blobs_per_client;
    let round_bytes = per_round * cfg.blob_size;
    let mut manifests: Vec<Option<usize>> = vec![None; sets.len()];
    let client = Client::builder().no_proxy().build().expect("http client");
    for (i, (_, base)) in sets.iter().enumerate() {
        match push_small_image(&client, base, "bench/manifest").await {
            Ok(len) => manifests[i] = Some(len),
            Err(e) => scores[i]
                .manifests
                .fail(anyhow!("pushing the manifest: {e:#}")),
        }
    }

    for round in 0..cfg.rounds {
        eprintln!("round {}/{}: hashing blobs...", round + 1, cfg.rounds);
        // blobs[set][client]: what that client pushes this round.
        let blobs: Vec<Vec<Arc<Vec<Blob>>>> = (0..sets.len())
            .map(|set| {
                (0..CLIENTS)
                    .map(|c| {
                        let list = (0..cfg.blobs_per_client)
                            .map(|j| {
                                let k = ((round * sets.len() + set) * CLIENTS + c)
                                    * cfg.blobs_per_client
                                    + j;
                                let bytes = &data[k * 64..k * 64 + cfg.blob_size];
                                Blob {
                                    bytes,
                                    digest: Digest::sha256_of(bytes),
                                }
                            })
                            .collect();
                        Arc::new(list)
                    })
                    .collect()
            })
            .collect();
        for (i, (kind, base)) in sets.iter().enumerate() {
            eprintln!("round {}/{}: {kind} blob pushes...", round + 1, cfg.rounds);
            let r = push_all(base, &blobs[i]).await;
            scores[i].push.record(r.map(|t| mib_s(round_bytes, t)));
        }
        for (i, (kind, base)) in sets.iter().enumerate() {
            eprintln!("round {}/{}: {kind} blob pulls...", round + 1, cfg.rounds);
            let r = pull_all(base, &blobs[i]).await;
            scores[i].pull.record(r.map(|t| mib_s(round_bytes, t)));
        }
        for (i, (kind, base)) in sets.iter().enumerate() {
            let Some(len) = manifests[i] else {
                continue;
            };
            eprintln!(
                "round {}/{}: {kind} manifest GETs...",
                round + 1,
                cfg.rounds
            );
            let url = format!("{base}/v2/bench/manifest/manifests/1");
            let r = get_load(url, len, cfg.warmup, cfg.manifest_round).await;
            scores[i]
                .manifests
                .record(r.map(|n| n as f64 / cfg.manifest_round.as_secs_f64()));
        }
    }
    scores
}

fn mib_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / MIB as f64 / t.as_secs_f64()
}

/// One HTTP client per worker: one keep-alive connection each.
fn worker_client() -> Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .build()?)
}

/// Every client pushes its blobs, all clients at once, each into its own repository; the wall
/// time of all pushes.
async fn push_all(base: &str, blobs: &[Arc<Vec<Blob>>]) -> Result<Duration> {
    let clients = blobs
        .iter()
        .map(|_| worker_client())
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut workers = Vec::new();
    for (c, (client, mine)) in clients.into_iter().zip(blobs).enumerate() {
        let (base, mine) = (base.to_owned(), Arc::clone(mine));
        workers.push(tokio::spawn(async move {
            for blob in mine.iter() {
                push_monolithic(&client, &base, &format!("bench/c{c}"), blob).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(start.elapsed())
}

/// Every client pulls the blobs the next client pushed, all clients at once; the wall time.
async fn pull_all(base: &str, blobs: &[Arc<Vec<Blob>>]) -> Result<Duration> {
    let clients = blobs
        .iter()
        .map(|_| worker_client())
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut workers = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let owner = (c + 1) % blobs.len();
        let (base, theirs) = (base.to_owned(), Arc::clone(&blobs[owner]));
        workers.push(tokio::spawn(async move {
            for blob in theirs.iter() {
                let repo = format!("bench/c{owner}");
                pull_blob(&client, &base, &repo, &blob.digest, blob.bytes.len() as u64).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(start.elapsed())
}

/// POST, then PUT with the whole blob.
async fn push_monolithic(client: &Client, base: &str, repo: &str, blob: &Blob) -> Result<()> {
    let url = start_upload(client, base, repo).await?;
    let resp = client
        .put(with_digest(&url, &blob.digest))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, blob.bytes.len().to_string())
        .body(blob.bytes)
        .send()
        .await?;
    expect(resp, StatusCode::CREATED, "monolithic PUT").await?;
    Ok(())
}

/// GETs a blob, counting its bytes as they stream in.
async fn pull_blob(
    client: &Client,
    base: &str,
    repo: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
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
    ensure!(
        got == size,
        "blob GET returned {got} bytes, expected {size}"
    );
    Ok(())
}

/// Pushes the busybox fixture (config, layer, manifest tagged `1`); the manifest's length.
async fn push_small_image(client: &Client, base: &str, repo: &str) -> Result<usize> {
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
    let len = manifest.len();
    let resp = client
        .put(format!("{base}/v2/{repo}/manifests/1"))
        .header(header::CONTENT_TYPE, image.manifest.media_type.as_str())
        .body(manifest)
        .send()
        .await?;
    expect(resp, StatusCode::CREATED, "manifest PUT").await?;
    Ok(len)
}

/// `CLIENTS` workers GET `url` in a loop, each checking a 200 of `want_len` bytes; the number of
/// GETs started after the warm-up and finished before the end.
async fn get_load(
    url: String,
    want_len: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<usize> {
    let url = Arc::new(url);
    let measure_from = Instant::now() + warmup;
    let stop = measure_from + duration;
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let client = worker_client()?;
        let url = Arc::clone(&url);
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let t0 = Instant::now();
                if t0 >= stop {
                    break;
                }
                let resp = client
                    .get(url.as_str())
                    .header(header::ACCEPT, MANIFEST_ACCEPT)
                    .send()
                    .await?;
                let resp = expect(resp, StatusCode::OK, "manifest GET").await?;
                let body = resp.bytes().await?;
                ensure!(
                    body.len() == want_len,
                    "manifest GET returned {} bytes",
                    body.len()
                );
                if t0 >= measure_from {
                    done += 1;
                }
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await??;
    }
    Ok(total)
}

fn report(cfg: &Config, scores: &[Scores]) {
    let (h, d) = (&scores[0], &scores[1]);
    println!();
    println!(
        "scale-out benchmark: {REPLICAS} replicas per set behind haproxy, one S3 server; {CLIENTS} clients; \
         blobs of {} MiB, {} per client per round; manifest GETs {:?} per round; {} rounds, medians",
        cfg.blob_size / MIB,
        cfg.blobs_per_client,
        cfg.manifest_round,
        cfg.rounds
    );
    println!(
        "{:<22}{:>14}{:>14}{:>10}",
        "", "hoist", "distribution", "ratio"
    );
    let rows = [
        ("blob push (MiB/s)", &h.push, &d.push, 1),
        ("blob pull (MiB/s)", &h.pull, &d.pull, 1),
        ("manifest GET/s", &h.manifests, &d.manifests, 0),
    ];
    for (name, a, b, precision) in rows {
        let (ma, mb) = (a.median(), b.median());
        let cell = |m: &Result<f64>| match m {
            Ok(v) => format!("{v:.precision$}"),
            Err(_) => "error".to_owned(),
        };
        let ratio = match (&ma, &mb) {
            (Ok(a), Ok(b)) if *b > 0.0 => {
                let r = a / b;
                format!(
                    "{r:.2}x  (target >= 1.5x)  {}",
                    if r >= 1.5 { "met" } else { "MISSED" }
                )
            }
            _ => "n/a".to_owned(),
        };
        println!("{name:<22}{:>14}{:>14}  {ratio}", cell(&ma), cell(&mb));
    }
    println!("rounds (in the order run):");
    for (kind, s) in [("hoist", h), ("distribution", d)] {
        for (what, r, precision) in [
            ("blob push (MiB/s)", &s.push, 1),
            ("blob pull (MiB/s)", &s.pull, 1),
            ("manifest GET/s", &s.manifests, 0),
        ] {
            println!("  {kind:<13}{what:<20}{}", r.line(precision));
        }
    }
}
