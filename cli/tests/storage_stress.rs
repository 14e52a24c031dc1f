//! `hoist serve` under load: garbage collection every second while images are pushed, deleted
//! and their layers pushed again inside the grace period, and many clients uploading at once.
//! Nothing referenced or acknowledged is lost, and no request gets a 5xx.

mod storage_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hoist_conformance::harness::Server;
use hoist_oci::Digest;
use storage_support::{
    Pushed, Stats, cancelled_upload, client, content, hoist, push_chunked_counted,
    push_image_counted, push_monolithic_counted,
};

const GC_INTERVAL_SECS: u64 = 1;
const GC_GRACE_SECS: u64 = 2;

fn server_with(config: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hoist.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::hoist_with(hoist(), &["--config", path.to_str().unwrap()]).unwrap();
    (server, dir)
}

async fn status(stats: &Stats, req: reqwest::RequestBuilder) -> u16 {
    let s = req
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16();
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if s >= 500 {
        stats.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    s
}

async fn push_blob(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    chunked: bool,
    stats: &Stats,
) {
    let pushed = if chunked {
        push_chunked_counted(c, base, repo, data, 2, stats).await
    } else {
        push_monolithic_counted(c, base, repo, data, stats).await
    };
    assert_eq!(
        pushed,
        Pushed::Created,
        "pushing {}",
        Digest::sha256_of(data)
    );
}

/// The sequence, by several workers at once, with GC every second: push layer L and an
/// image M1 naming it; once the grace period has passed, delete M1; push L again (201); keep
/// reading it for longer than a GC interval; then an image M2 naming it must be accepted (not
/// `MANIFEST_BLOB_UNKNOWN`). At the end every blob a live manifest names is served and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_never_loses_referenced_or_freshly_pushed_blobs() {
    const WORKERS: usize = 4;
    const ROUNDS: usize = 4;
    let (server, _config) = server_with(&format!(
        "gc_interval_secs = {GC_INTERVAL_SECS}\ngc_grace_secs = {GC_GRACE_SECS}\n"
    ));
    let base = server.url.clone();
    let stats = Arc::new(Stats::default());
    let lost = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    // Canaries: an unreferenced blob pushed, then polled until a collection takes it, then the
    // next. Each one needs a collection of its own: a lower bound on the cycles that ran.
    let canaries = {
        let (base, stats, done) = (base.clone(), stats.clone(), done.clone());
        tokio::spawn(async move {
            let c = client();
            let mut collected = 0usize;
            for i in 0.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let data = content(&format!("canary {i}"), 64);
                push_blob(&c, &base, "gc/canary", &data, false, &stats).await;
                let url = format!("{base}/v2/gc/canary/blobs/{}", Digest::sha256_of(&data));
                let deadline = Instant::now() + Duration::from_secs(4 * GC_GRACE_SECS + 10);
                while !done.load(Ordering::Relaxed) {
                    if status(&stats, c.head(&url)).await == 404 {
                        collected += 1;
                        break;
                    }
                    assert!(Instant::now() < deadline, "canary {i} never collected");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            collected
        })
    };

    // Fresh pushes alongside, timed: collection must not stall them.
    let fresh = {
        let (base, stats, done) = (base.clone(), stats.clone(), done.clone());
        tokio::spawn(async move {
            let c = client();
            let (mut n, mut worst) = (0usize, Duration::ZERO);
            let mut live = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (config, layer) = (
                    content(&format!("fresh config {n}"), 100),
                    content(&format!("fresh layer {n}"), 20_000),
                );
                push_blob(&c, &base, "gc/fresh", &config, false, &stats).await;
                push_blob(&c, &base, "gc/fresh", &layer, n % 2 == 1, &stats).await;
                let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));
                let m = push_image_counted(
                    &c,
                    &base,
                    "gc/fresh",
                    &format!("f{n}"),
                    &cd,
                    &[&ld],
                    &stats,
                )
                .await
                .unwrap_or_else(|e| panic!("fresh image {n}: {e}"));
                assert!(m.is_some());
                worst = worst.max(t.elapsed());
                live.push((cd, ld));
                n += 1;
            }
            (n, worst, live)
        })
    };

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (base, stats, lost) = (base.clone(), stats.clone(), lost.clone());
            tokio::spawn(async move {
                let c = client();
                let repo = format!("gc/worker{w}");
                let mut live = Vec::new();
                for round in 0..ROUNDS {
                    let config = content(&format!("config {w} {round}"), 50);
                    let layer = content(&format!("layer {w} {round}"), 30_000 + w * 1000);
                    let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));
                    push_blob(&c, &base, &repo, &config, false, &stats).await;
                    push_blob(&c, &base, &repo, &layer, round % 2 == 0, &stats).await;
                    let m1 = push_image_counted(&c, &base, &repo, "m1", &cd, &[&ld], &stats)
                        .await
                        .unwrap()
                        .unwrap();
                    // Past the grace period, the image goes: its blobs' links are old now.
                    tokio::time::sleep(Duration::from_secs(GC_GRACE_SECS + 1)).await;
                    let deleted = status(&stats,
                        c.delete(format!("{base}/v2/{repo}/manifests/{m1}")),
                    )
                    .await;
                    assert_eq!(deleted, 202, "deleting m1");
                    // Pushed again: acknowledged now, so it has a whole grace period from now.
                    push_blob(&c, &base, &repo, &config, false, &stats).await;
                    push_blob(&c, &base, &repo, &layer, round % 2 == 1, &stats).await;
                    let acked = Instant::now();
                    let url = format!("{base}/v2/{repo}/blobs/{ld}");
                    // Read it through more than one collection, still inside its grace.
                    while acked.elapsed() < Duration::from_millis(1500) {
                        if status(&stats, c.head(&url)).await != 200 {
                            lost.fetch_add(1, Ordering::Relaxed);
                            eprintln!("{repo}: {ld} answered 404 {:?} after its 201", acked.elapsed());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    match push_image_counted(&c, &base, &repo, &format!("m2-{round}"), &cd, &[&ld], &stats).await {
                        Ok(Some(_)) => live.push((cd, ld)),
                        other => {
                            lost.fetch_add(1, Ordering::Relaxed);
                            eprintln!("{repo}: an image naming {ld} was refused {:?} after its 201: {other:?}", acked.elapsed());
                        }
                    }
                }
                live
            })
        })
        .collect();

    let mut referenced = Vec::new();
    for (w, task) in workers.into_iter().enumerate() {
        for pair in task.await.unwrap() {
            referenced.push((format!("gc/worker{w}"), pair));
        }
    }
    done.store(true, Ordering::Relaxed);
    let (fresh_images, worst_push, fresh_live) = fresh.await.unwrap();
    let collected = canaries.await.unwrap();
    for pair in fresh_live {
        referenced.push(("gc/fresh".to_owned(), pair));
    }
    // One more collection after the last write, then every referenced blob must be there.
    tokio::time::sleep(Duration::from_secs(GC_GRACE_SECS + 2 * GC_INTERVAL_SECS)).await;
    let c = client();
    let mut verified = 0;
    for (repo, (cd, ld)) in &referenced {
        for d in [cd, ld] {
            let resp = c
                .get(format!("{base}/v2/{repo}/blobs/{d}"))
                .send()
                .await
                .unwrap();
            stats.requests.fetch_add(1, Ordering::Relaxed);
            if resp.status() != 200 || !d.matches(&resp.bytes().await.unwrap()) {
                lost.fetch_add(1, Ordering::Relaxed);
                eprintln!("referenced blob {d} in {repo} lost");
            } else {
                verified += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "gc_stress: {elapsed:?}, gc every {GC_INTERVAL_SECS} s (~{} cycles, >= {collected} seen \
         collecting a canary), grace {GC_GRACE_SECS} s; {} re-pushes inside the grace, \
         {fresh_images} fresh images (slowest {worst_push:?}), {verified} referenced blobs \
         verified, {} lost, {} requests, {} 5xx",
        elapsed.as_secs() / GC_INTERVAL_SECS,
        WORKERS * ROUNDS,
        lost.load(Ordering::Relaxed),
        stats.requests(),
        stats.server_errors()
    );
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "referenced or acknowledged blobs were lost"
    );
    assert_eq!(stats.server_errors(), 0, "server errors");
    assert!(
        collected >= 2,
        "garbage collection did not run ({collected} canaries)"
    );
}

/// Many clients uploading at once, monolithic, chunked and cancelled, into shared and separate
/// repositories: every upload directory comes and goes beside the others. No response may be a
/// 5xx. (Before: about 3 in 1,000 got `500 key not found: uploads/<id>/data`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_never_get_a_server_error() {
    const CLIENTS: usize = 6;
    const UPLOADS: usize = 200;
    let (server, _config) = server_with("");
    let base = server.url.clone();
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (base, stats) = (base.clone(), stats.clone());
            tokio::spawn(async move {
                let c = client();
                let mut failures = Vec::new();
                for i in 0..UPLOADS {
                    let repo = if i % 3 == 0 {
                        "shared/repo".to_owned()
                    } else {
                        format!("client/{k}")
                    };
                    let data = content(&format!("upload {k} {i}"), (i * 131) % 5000);
                    let outcome = match i % 4 {
                        0 | 2 => push_monolithic_counted(&c, &base, &repo, &data, &stats).await,
                        1 => push_chunked_counted(&c, &base, &repo, &data, 2, &stats).await,
                        _ => match cancelled_upload(&c, &base, &repo, &data, &stats).await {
                            Ok(()) => Pushed::Created,
                            Err(e) => e,
                        },
                    };
                    if outcome != Pushed::Created {
                        failures.push(format!("client {k} upload {i}: {outcome:?}"));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    eprintln!(
        "concurrency: {CLIENTS} clients x {UPLOADS} uploads in {:?}: {} requests, {} 5xx, {} failed uploads",
        started.elapsed(),
        stats.requests(),
        stats.server_errors(),
        failures.len()
    );
    assert_eq!(stats.server_errors(), 0, "server errors: {failures:#?}");
    assert!(failures.is_empty(), "{failures:#?}");
}
