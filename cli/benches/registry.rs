//! Registry benchmark: `hoist serve` against the CNCF registry (`docker-registry`), side by side,
//! with reference rows of what this machine does without a registry in the way.
//!
//! Both servers run at once, each on a fresh data directory. Every measurement is taken in
//! rounds, and each round runs every contender once, one after the other (hoist, distribution,
//! the reference, hoist, distribution, the reference, ...), so load from other processes on the
//! machine falls on all of them alike. The report prints each round's number and the median.
//! For each server:
//! - blob push throughput (MiB/s) of a 256 MiB random blob, monolithic (POST + PUT with the
//!   body) and chunked (POST, PATCH 8 MiB chunks with `Content-Range`, PUT to close); 3 rounds,
//!   each push of a different blob into a different repository;
//! - blob pull throughput (MiB/s) of such a blob, 3 rounds, read by a bare HTTP/1.1 client (one
//!   GET on a std socket into a 1 MiB buffer; an HTTP client library caps the rate below what
//!   either server sends);
//! - manifest GETs per second from 32 concurrent connections, by tag and by digest (3 rounds of
//!   2 s each, after a warm-up), with p50 and p99 latency over all rounds;
//! - peak RSS of the server process (`VmHWM` in `/proc/PID/status`) after everything above.
//!
//! The reference rows, measured in the same rounds:
//! - fsync-ed disk writes (MB/s), interleaved with the monolithic pushes, in a directory beside
//!   hoist's data directory (the same filesystem), of the blob's size, in two ways: as hoist's
//!   filesystem driver writes a blob (1 MiB writes, `fdatasync` every 16 MiB and at the end,
//!   then a rename and a directory fsync), and with one `fsync` at the end only (what
//!   `dd conv=fsync` measures). See [`disk_write`] for why the files are kept, not deleted;
//! - loopback TCP throughput (GB/s), interleaved with the pulls, in two ways: of the blob's size
//!   (one thread writes a buffer as large as the blob, filled before, once into a 127.0.0.1
//!   socket, another reads and discards into a 1 MiB buffer), the rate a pull of those bytes
//!   could reach; and of one 4 MiB buffer written again and again for ~1 s, whose source stays
//!   in the CPU's cache (no blob does), the socket's own ceiling;
//! - nginx serving a static file of exactly the manifest's size (a private nginx on 127.0.0.1,
//!   2 workers, keep-alive, no access log), with the same load generator, connections and
//!   duration as the manifest GETs, interleaved with them.
//!
//! Then a table, and the ratios against hoist's targets: at least 2x the CNCF registry's manifest
//! GETs/s, at least 1.5x its blob push throughput, less memory; manifest GETs at least 70% of
//! nginx's static GETs/s; blob pulls at least 90% of loopback TCP of the blob's size, monolithic pushes at least 90%
//! of the fsync-ed disk rate (as hoist writes). It only prints; nothing here is an assertion.
//!
//! `cargo bench -p hoist --bench registry`; `HOIST_BENCH_QUICK=1` shrinks sizes and durations for a
//! smoke run; `HOIST_BENCH_ONLY=hoist` (or `distribution`) runs one server. Data directories are
//! made under `$TMPDIR`: `TMPDIR=/dev/shm` measures the servers rather than the disk.
//!
//! The load generator runs in this process, so on a small machine it competes with the servers
//! for CPU; every contender meets the same competition.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use hoist_conformance::fixtures::{self, Layout};
use hoist_conformance::harness::Server;
use hoist_oci::Digest;
use reqwest::{Client, StatusCode, header};

mod support;
use support::{Rounds, expect, location, start_upload, with_digest};

/// Rounds of a measurement that has not run (yet).
fn not_started() -> Rounds {
    let mut r = Rounds::default();
    r.fail(anyhow!("not started"));
    r
}

const MIB: usize = 1 << 20;
const CONNECTIONS: usize = 32;
/// What hoist's filesystem driver writes between two `fdatasync`s of a blob
/// (`SYNC_EVERY` in storage/src/driver/fs.rs).
const HOIST_SYNC_EVERY: usize = 16 * MIB;
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

struct Config {
    blob_size: usize,
    chunk_size: usize,
    /// Rounds of each measurement (the median is reported).
    reps: usize,
    /// Total time of manifest GETs per contender, over all rounds.
    manifest_duration: Duration,
    /// Warm-up before each round of manifest GETs (not counted).
    warmup: Duration,
    /// Duration of one loopback TCP measurement.
    loopback: Duration,
}

impl Config {
    fn from_env() -> Config {
        if std::env::var_os("HOIST_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty()) {
            Config {
                blob_size: 16 * MIB,
                chunk_size: 8 * MIB,
                reps: 2,
                manifest_duration: Duration::from_secs(2),
                warmup: Duration::from_millis(200),
                loopback: Duration::from_millis(300),
            }
        } else {
            Config {
                blob_size: 256 * MIB,
                chunk_size: 8 * MIB,
                reps: 3,
                manifest_duration: Duration::from_secs(6),
                warmup: Duration::from_millis(500),
                loopback: Duration::from_secs(1),
            }
        }
    }
}

/// MiB/s of moving `bytes` in `t`.
fn mib_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / MIB as f64 / t.as_secs_f64()
}

/// Manifest GETs (or nginx's static GETs) of one contender: GETs/s per round, and every
/// request's latency over all rounds.
#[derive(Default)]
struct Gets {
    rounds: Rounds,
    latencies: Vec<Duration>,
}

impl Gets {
    fn not_started() -> Gets {
        Gets {
            rounds: not_started(),
            latencies: Vec::new(),
        }
    }

    fn record(&mut self, r: Result<Vec<Duration>>, round: Duration) {
        match r {
            Ok(l) => {
                self.rounds.record(Ok(l.len() as f64 / round.as_secs_f64()));
                self.latencies.extend(l);
            }
            Err(e) => self.rounds.fail(e),
        }
    }

    fn score(&self) -> Result<ManifestScore> {
        let per_sec = self.rounds.median()?;
        ensure!(!self.latencies.is_empty(), "no GET completed");
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
        Ok(ManifestScore {
            per_sec,
            p50: pct(0.50),
            p99: pct(0.99),
        })
    }
}

/// What one server scored.
struct Scores {
    kind: &'static str,
    push_mono: Rounds,
    push_chunked: Rounds,
    pull: Rounds,
    by_tag: Gets,
    by_digest: Gets,
    peak_rss_kib: Result<u64>,
}

impl Scores {
    fn new(kind: &'static str) -> Scores {
        Scores {
            kind,
            push_mono: Rounds::default(),
            push_chunked: Rounds::default(),
            pull: Rounds::default(),
            by_tag: Gets::default(),
            by_digest: Gets::default(),
            peak_rss_kib: Err(anyhow!("not started")),
        }
    }

    fn not_started(kind: &'static str) -> Scores {
        Scores {
            kind,
            push_mono: not_started(),
            push_chunked: not_started(),
            pull: not_started(),
            by_tag: Gets::not_started(),
            by_digest: Gets::not_started(),
            peak_rss_kib: Err(anyhow!("not started")),
        }
    }
}

#[derive(Clone, Copy)]
struct ManifestScore {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// What this machine does without a registry in the way, measured in the servers' rounds.
struct References {
    /// GB/s, a 4 MiB buffer again and again.
    loopback: Rounds,
    /// GB/s, a buffer of the blob's size once.
    loopback_blob: Rounds,
    /// MB/s, written as hoist's filesystem driver writes a blob.
    disk_as_hoist: Rounds,
    /// MB/s, with one fsync at the end.
    disk_one_fsync: Rounds,
    /// Static GETs of a file of the manifest's size.
    nginx: Gets,
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

    let (scores, refs) = runtime.block_on(bench(&servers, &cfg, data));
    report(&cfg, &scores, &refs);
}

/// What a loopback reference writes: a 4 MiB buffer again and again for a time, or a buffer of
/// a blob's size once.
#[derive(Clone, Copy)]
enum Loop {
    Hot(Duration),
    Blob(usize),
}

/// One thread writes into a 127.0.0.1 socket as `how` says, another reads and discards into a
/// 1 MiB buffer; GB/s received.
fn loopback(how: Loop) -> Result<f64> {
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
    let mut sent = 0u64;
    let start = match how {
        Loop::Hot(duration) => {
            let buf = vec![0x5au8; 4 * MIB];
            let start = Instant::now();
            while start.elapsed() < duration {
                s.write_all(&buf)?;
                sent += buf.len() as u64;
            }
            start
        }
        Loop::Blob(size) => {
            let buf: Vec<u8> = (0..size)
                .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
                .collect();
            let start = Instant::now();
            s.write_all(&buf)?;
            sent = buf.len() as u64;
            start
        }
    };
    s.shutdown(std::net::Shutdown::Write)?;
    let got = reader
        .join()
        .map_err(|_| anyhow!("loopback reader panicked"))??;
    let elapsed = start.elapsed();
    ensure!(got == sent, "loopback read {got} bytes of {sent}");
    Ok(got as f64 / elapsed.as_secs_f64() / 1e9)
}

/// How a disk reference row writes its file.
#[derive(Clone, Copy)]
enum DiskMethod {
    /// As hoist's filesystem driver commits a blob (storage/src/driver/fs.rs: `FsWriter` and the
    /// content layer's rename into `blobs/`): 1 MiB writes, `fdatasync` after every 16 MiB and
    /// once more at the end, then a rename into place and an fsync of the directory.
    AsHoist,
    /// 1 MiB writes, one `fsync` at the end (`dd bs=1M conv=fsync`).
    OneFsync,
}

/// Writes `data` to a new file in `dir` the way `method` says (MB/s, counting from the create
/// to the last fsync).
///
/// The file is kept, as hoist keeps the blobs it stored, and `dir` is removed only when the
/// benchmark ends. Measuring on this machine's virtual disk (ext4 on /dev/vda, mounted with
/// `discard`; 24 GiB of RAM, so a 256 MiB file fits in the page cache many times over):
/// writing a 256 MiB file right after deleting the previous one reads 700-1200 MB/s, whichever
/// way it is synced (the old form of this row wrote, synced and deleted three files back to
/// back and read 1205 MB/s), while the same write after a pause, or without deleting, reads
/// 150-280 MB/s, as `dd if=rand of=f bs=1M conv=fsync` does; `oflag=dsync` (a flush after every
/// 1 MiB) reads 150-160 MB/s. The device's freshly discarded blocks, or the host's handling of
/// them, are the likely cause; either way a registry pushing new blobs does not write into
/// just-freed space, so neither does this row. The page cache hides nothing here: every variant
/// ends with an fsync of all its bytes, and the time includes it.
fn disk_write(dir: &Path, data: &[u8], method: DiskMethod, n: usize) -> Result<f64> {
    use std::io::Write;
    let tmp = dir.join(format!("upload-{n}"));
    let start = Instant::now();
    let mut file = std::fs::File::create(&tmp)?;
    let mut unsynced = 0;
    for chunk in data.chunks(MIB) {
        file.write_all(chunk)?;
        unsynced += chunk.len();
        if matches!(method, DiskMethod::AsHoist) && unsynced >= HOIST_SYNC_EVERY {
            file.sync_data()?;
            unsynced = 0;
        }
    }
    match method {
        DiskMethod::AsHoist => {
            file.sync_data()?;
            drop(file);
            std::fs::rename(&tmp, dir.join(format!("blob-{n}")))?;
            std::fs::File::open(dir)?.sync_all()?;
        }
        DiskMethod::OneFsync => file.sync_all()?,
    }
    let elapsed = start.elapsed();
    Ok(data.len() as f64 / 1e6 / elapsed.as_secs_f64())
}

/// A private nginx serving one static file on 127.0.0.1, in its own process group; stopped
/// (master and workers) when dropped.
struct Nginx {
    child: Child,
    /// `http://127.0.0.1:PORT/FILE`.
    url: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(body: &[u8]) -> Result<Nginx> {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("www");
        std::fs::create_dir(&root)?;
        std::fs::write(root.join("manifest"), body)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let d = dir.path().display();
        // Its workers run as root when we are root (nginx's default user, nobody, could not
        // read the file in our private directory); otherwise as us, and nginx ignores `user`.
        let user = if nix::unistd::geteuid().is_root() {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\n{user}\
             pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{\n  worker_connections 1024;\n}}\n\
             http {{\n  access_log off;\n  keepalive_timeout 65s;\n  keepalive_requests 1000000;\n  \
             sendfile on;\n  tcp_nodelay on;\n  default_type application/octet-stream;\n  \
             client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    root {};\n    location / {{ }}\n  }}\n}}\n",
            root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let log = std::fs::File::create(dir.path().join("stderr.log"))?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting nginx (installed by .ci/peers.sh)")?;
        let mut nginx = Nginx {
            child,
            url: format!("http://127.0.0.1:{port}/manifest"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.try_wait()? {
                bail!(
                    "nginx exited before it listened ({status}): {}",
                    nginx.log()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "nginx did not listen on 127.0.0.1:{port}: {}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        let group = nix::unistd::Pid::from_raw(pid);
        // SIGTERM to the group: nginx's fast shutdown, master and workers. The master is not
        // reaped (WNOWAIT) until the final SIGKILL, so the group's id cannot be reused by then.
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        while Instant::now() < deadline {
            match waitid(Id::Pid(group), flags) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break,
            }
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

async fn bench(
    servers: &[(&'static str, Result<Server>)],
    cfg: &Config,
    data: &'static [u8],
) -> (Vec<Scores>, References) {
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
    let mut scores: Vec<Scores> = servers
        .iter()
        .map(|(kind, s)| match s {
            Ok(_) => Scores::new(kind),
            Err(_) => Scores::not_started(kind),
        })
        .collect();
    let mut refs = References {
        loopback: Rounds::default(),
        loopback_blob: Rounds::default(),
        disk_as_hoist: Rounds::default(),
        disk_one_fsync: Rounds::default(),
        nginx: Gets::default(),
    };

    // The disk rows write beside hoist's data directory: the filesystem hoist writes blobs to.
    let beside: PathBuf = servers
        .iter()
        .find_map(|(k, s)| s.as_ref().ok().filter(|_| *k == "hoist"))
        .or_else(|| servers.iter().find_map(|(_, s)| s.as_ref().ok()))
        .and_then(|s| s.data.path().parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir);
    let disk_dir = tempfile::tempdir_in(&beside);
    if let Err(e) = &disk_dir {
        let e = anyhow!("a directory in {}: {e}", beside.display());
        refs.disk_as_hoist.fail(anyhow!("{e:#}"));
        refs.disk_one_fsync.fail(e);
    }
    let blob_len = cfg.blob_size;

    for rep in 0..cfg.reps {
        eprintln!("blob pushes, round {}/{}...", rep + 1, cfg.reps);
        for (i, base) in live() {
            let repo = format!("bench/mono{rep}");
            let r = push_monolithic(&client, base, &repo, blob_at(rep, i, 0)).await;
            scores[i]
                .push_mono
                .record(r.map(|t| mib_per_s(blob_len, t)));
        }
        if let Ok(dir) = &disk_dir {
            for (k, (method, row)) in [
                (DiskMethod::AsHoist, &mut refs.disk_as_hoist),
                (DiskMethod::OneFsync, &mut refs.disk_one_fsync),
            ]
            .into_iter()
            .enumerate()
            {
                let dir = dir.path().to_path_buf();
                let blob = &data[..blob_len];
                let n = rep * 2 + k;
                let r = tokio::task::spawn_blocking(move || disk_write(&dir, blob, method, n))
                    .await
                    .map_err(|e| anyhow!("disk write: {e}"))
                    .and_then(|r| r);
                row.record(r);
            }
        }
        for (i, base) in live() {
            let repo = format!("bench/chunked{rep}");
            let blob = blob_at(rep, i, 1);
            let r = push_chunked(&client, base, &repo, blob, cfg.chunk_size).await;
            scores[i]
                .push_chunked
                .record(r.map(|t| mib_per_s(blob_len, t)));
        }
    }
    drop(disk_dir);

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
            Err(e) => scores[i].pull.fail(e),
        }
    }
    for _ in 0..cfg.reps {
        for (i, base) in live().filter(|(i, _)| pullable[*i]) {
            let blob = blob_at(0, i, 0);
            let digest = Digest::sha256_of(blob);
            let size = blob.len() as u64;
            let url = format!("{base}/v2/bench/mono0/blobs/{digest}");
            let r = tokio::task::spawn_blocking(move || pull_raw(&url, size))
                .await
                .map_err(|e| anyhow!("pull: {e}"))
                .and_then(|r| r);
            scores[i].pull.record(r.map(|t| mib_per_s(blob_len, t)));
        }
        for (how, row) in [
            (Loop::Blob(blob_len), &mut refs.loopback_blob),
            (Loop::Hot(cfg.loopback), &mut refs.loopback),
        ] {
            let r = tokio::task::spawn_blocking(move || loopback(how))
                .await
                .map_err(|e| anyhow!("loopback: {e}"))
                .and_then(|r| r);
            row.record(r);
        }
    }

    eprintln!("manifest GETs...");
    let mut manifests: Vec<Result<Vec<u8>>> = (0..n).map(|_| Err(anyhow!("not started"))).collect();
    for (i, base) in live() {
        manifests[i] = push_small_image(&client, base, "bench/manifest").await;
        if let Err(e) = &manifests[i] {
            let e = anyhow!("pushing the manifest: {e:#}");
            scores[i].by_tag.rounds.fail(anyhow!("{e:#}"));
            scores[i].by_digest.rounds.fail(e);
        }
    }
    // nginx serves a file of the size of the manifest hoist serves.
    let hoist_first = (0..n).filter(|&i| servers[i].0 == "hoist").chain(0..n);
    let nginx = match hoist_first
        .filter_map(|i| manifests[i].as_ref().ok())
        .next()
    {
        Some(m) => Nginx::start(m).map(|x| (x, m.len())),
        None => Err(anyhow!("no manifest was pushed")),
    };
    if let Err(e) = &nginx {
        refs.nginx.rounds.fail(anyhow!("{e:#}"));
    }
    let round = cfg.manifest_duration / cfg.reps as u32;
    for rep in 0..cfg.reps {
        eprintln!("manifest GETs, round {}/{}...", rep + 1, cfg.reps);
        for by_digest in [false, true] {
            for (i, base) in live() {
                let Ok(manifest) = &manifests[i] else {
                    continue;
                };
                let reference = if by_digest {
                    Digest::sha256_of(manifest).to_string()
                } else {
                    "1".to_owned()
                };
                let url = format!("{base}/v2/bench/manifest/manifests/{reference}");
                let r = get_load(url, manifest.len(), cfg.warmup, round).await;
                let s = &mut scores[i];
                if by_digest {
                    &mut s.by_digest
                } else {
                    &mut s.by_tag
                }
                .record(r, round);
            }
            if !by_digest && let Ok((nginx, len)) = &nginx {
                let r = get_load(nginx.url.clone(), *len, cfg.warmup, round).await;
                refs.nginx.record(r, round);
            }
        }
    }
    drop(nginx);

    for (i, (_, server)) in servers.iter().enumerate() {
        if let Ok(server) = server {
            scores[i].peak_rss_kib = peak_rss_kib(server.pid());
        }
    }
    (scores, refs)
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

/// GETs `url` (`http://HOST:PORT/...`) with a bare HTTP/1.1 request on a std socket and reads
/// the answer into a 1 MiB buffer, counting the body's bytes. Returns the elapsed time.
fn pull_raw(url: &str, size: u64) -> Result<Duration> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("not an http url: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(host)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; MIB];
    let mut head = Vec::new();
    let mut body = 0u64;
    let mut in_body = false;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if !in_body {
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body = (head.len() - end - 4) as u64;
                head.truncate(end + 4);
                in_body = true;
            }
        } else {
            body += n as u64;
        }
    }
    let elapsed = start.elapsed();
    let head = String::from_utf8_lossy(&head);
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "blob GET: {}",
        head.lines().next().unwrap_or("no answer")
    );
    ensure!(
        body == size,
        "blob GET returned {body} bytes, expected {size}"
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

/// `CONNECTIONS` workers GET `url` in a loop, each on its own keep-alive connection, and check
/// each answer is a 200 of `want_len` bytes; counts the latencies of requests started after the
/// warm-up. The manifest rows and nginx's row all go through here.
async fn get_load(
    url: String,
    want_len: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Vec<Duration>> {
    let url = Arc::new(url);
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
                    .header(header::ACCEPT, MANIFEST_ACCEPT)
                    .send()
                    .await?;
                let resp = expect(resp, StatusCode::OK, "GET").await?;
                let body = resp.bytes().await?;
                ensure!(body.len() == want_len, "GET returned {} bytes", body.len());
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
        "registry benchmark: blob {} MiB, chunks {} MiB, manifest GETs from {CONNECTIONS} connections for {:?}; {} rounds, medians",
        cfg.blob_size / MIB,
        cfg.chunk_size / MIB,
        cfg.manifest_duration,
        cfg.reps,
    );
    print!("{:<28}", "");
    for s in all {
        print!("{:>14}", s.kind);
    }
    println!();
    let rate = |r: &Rounds| cell(&r.median(), |v| format!("{v:.1}"));
    let per_sec = |g: &Gets| cell(&g.score(), |m| format!("{:.0}", m.per_sec));
    let p50 = |g: &Gets| cell(&g.score(), |m| format!("{:.3}", ms(m.p50)));
    let p99 = |g: &Gets| cell(&g.score(), |m| format!("{:.3}", ms(m.p99)));
    type Row<'a> = (&'a str, Box<dyn Fn(&Scores) -> String + 'a>);
    let rows: Vec<Row<'_>> = vec![
        ("blob push mono (MiB/s)", Box::new(|s| rate(&s.push_mono))),
        (
            "blob push chunked (MiB/s)",
            Box::new(|s| rate(&s.push_chunked)),
        ),
        ("blob pull (MiB/s)", Box::new(|s| rate(&s.pull))),
        ("manifest GET/s by tag", Box::new(|s| per_sec(&s.by_tag))),
        ("  p50 (ms)", Box::new(|s| p50(&s.by_tag))),
        ("  p99 (ms)", Box::new(|s| p99(&s.by_tag))),
        (
            "manifest GET/s by digest",
            Box::new(|s| per_sec(&s.by_digest)),
        ),
        ("  p50 (ms)", Box::new(|s| p50(&s.by_digest))),
        ("  p99 (ms)", Box::new(|s| p99(&s.by_digest))),
        (
            "peak RSS (MiB)",
            Box::new(|s| cell(&s.peak_rss_kib, |k| format!("{:.1}", *k as f64 / 1024.0))),
        ),
    ];
    for (name, f) in &rows {
        print!("{name:<28}");
        for s in all {
            print!("{:>14}", f(s));
        }
        println!();
    }

    println!("references (this machine):");
    let nginx_cell = |f: &dyn Fn(&ManifestScore) -> String| cell(&refs.nginx.score(), f);
    for (name, value) in [
        (
            "loopback TCP, blob (GB/s)",
            cell(&refs.loopback_blob.median(), |v| format!("{v:.2}")),
        ),
        (
            "loopback TCP, hot (GB/s)",
            cell(&refs.loopback.median(), |v| format!("{v:.2}")),
        ),
        ("disk, as hoist (MB/s)", rate(&refs.disk_as_hoist)),
        ("disk, one fsync (MB/s)", rate(&refs.disk_one_fsync)),
        (
            "nginx static GET/s",
            nginx_cell(&|m| format!("{:.0}", m.per_sec)),
        ),
        ("  p50 (ms)", nginx_cell(&|m| format!("{:.3}", ms(m.p50)))),
        ("  p99 (ms)", nginx_cell(&|m| format!("{:.3}", ms(m.p99)))),
    ] {
        println!("  {name:<26}{value:>14}");
    }

    println!("rounds (in the order run; each round ran every contender once):");
    for s in all {
        for (what, r, precision) in [
            ("blob push mono (MiB/s)", &s.push_mono, 1),
            ("blob push chunked (MiB/s)", &s.push_chunked, 1),
            ("blob pull (MiB/s)", &s.pull, 1),
            ("manifest GET/s by tag", &s.by_tag.rounds, 0),
            ("manifest GET/s by digest", &s.by_digest.rounds, 0),
        ] {
            println!("  {:<13}{what:<27}{}", s.kind, r.line(precision));
        }
    }
    for (what, r, precision) in [
        ("disk, as hoist (MB/s)", &refs.disk_as_hoist, 1),
        ("disk, one fsync (MB/s)", &refs.disk_one_fsync, 1),
        ("loopback TCP, blob (GB/s)", &refs.loopback_blob, 2),
        ("loopback TCP, hot (GB/s)", &refs.loopback, 2),
        ("nginx static GET/s", &refs.nginx.rounds, 0),
    ] {
        println!("  {:<13}{what:<27}{}", "reference", r.line(precision));
    }

    let errors: Vec<String> = all
        .iter()
        .flat_map(|s| {
            [
                ("blob push mono", s.push_mono.median().err()),
                ("blob push chunked", s.push_chunked.median().err()),
                ("blob pull", s.pull.median().err()),
                ("manifest GETs by tag", s.by_tag.score().err()),
                ("manifest GETs by digest", s.by_digest.score().err()),
                (
                    "peak RSS",
                    s.peak_rss_kib.as_ref().err().map(|e| anyhow!("{e:#}")),
                ),
            ]
            .into_iter()
            .filter_map(move |(what, e)| e.map(|e| format!("  {}: {what}: {e:#}", s.kind)))
        })
        .chain(
            [
                ("loopback TCP, blob", refs.loopback_blob.median().err()),
                ("loopback TCP, hot", refs.loopback.median().err()),
                ("disk, as hoist", refs.disk_as_hoist.median().err()),
                ("disk, one fsync", refs.disk_one_fsync.median().err()),
                ("nginx", refs.nginx.score().err()),
            ]
            .into_iter()
            .filter_map(|(what, e)| e.map(|e| format!("  reference: {what}: {e:#}"))),
        )
        .collect();
    if !errors.is_empty() {
        println!("errors:");
        for e in errors {
            println!("{e}");
        }
    }

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
                println!("  {name:<28} {r:>6.2}x  {verdict}");
            }
            _ => println!("  {name:<28}    n/a  (a measurement failed)"),
        };
    let med = |r: &Rounds| r.median().ok();
    let gets = |g: &Gets| g.score().ok().map(|m| m.per_sec);
    let rss = |s: &Scores| s.peak_rss_kib.as_ref().ok().map(|&k| k as f64);
    let hoist = all.iter().find(|s| s.kind == "hoist");
    if let (Some(h), Some(d)) = (hoist, all.iter().find(|s| s.kind == "distribution")) {
        println!("targets (hoist / distribution):");
        ratio(
            "manifest GET/s by tag",
            gets(&h.by_tag),
            gets(&d.by_tag),
            Some((2.0, true)),
        );
        ratio(
            "manifest GET/s by digest",
            gets(&h.by_digest),
            gets(&d.by_digest),
            Some((2.0, true)),
        );
        ratio(
            "blob push mono",
            med(&h.push_mono),
            med(&d.push_mono),
            Some((1.5, true)),
        );
        ratio(
            "blob push chunked",
            med(&h.push_chunked),
            med(&d.push_chunked),
            Some((1.5, true)),
        );
        ratio("blob pull", med(&h.pull), med(&d.pull), None);
        ratio("peak RSS", rss(h), rss(d), Some((1.0, false)));
    }
    let Some(h) = hoist else {
        return;
    };
    println!("targets (hoist / this machine):");
    let nginx = gets(&refs.nginx);
    ratio(
        "manifest by tag / nginx",
        gets(&h.by_tag),
        nginx,
        Some((0.7, true)),
    );
    ratio(
        "manifest by digest / nginx",
        gets(&h.by_digest),
        nginx,
        Some((0.7, true)),
    );
    let mib_s = |r: &Rounds| med(r).map(|v| v * MIB as f64);
    ratio(
        "blob pull / loopback, blob",
        mib_s(&h.pull),
        med(&refs.loopback_blob).map(|v| v * 1e9),
        Some((0.9, true)),
    );
    ratio(
        "blob pull / loopback, hot",
        mib_s(&h.pull),
        med(&refs.loopback).map(|v| v * 1e9),
        None,
    );
    ratio(
        "push mono / disk as hoist",
        mib_s(&h.push_mono),
        med(&refs.disk_as_hoist).map(|v| v * 1e6),
        Some((0.9, true)),
    );
    ratio(
        "push mono / disk one fsync",
        mib_s(&h.push_mono),
        med(&refs.disk_one_fsync).map(|v| v * 1e6),
        None,
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
