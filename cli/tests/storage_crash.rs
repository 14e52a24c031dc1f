//! `hoist serve` killed with SIGKILL in the middle of concurrent monolithic and chunked pushes:
//! after every restart, everything it acknowledged (a `201`) is there and matches its digest.

mod storage_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hoist_conformance::harness::Server;
use hoist_oci::Digest;
use storage_support::{Pushed, client, content, hoist, push_chunked, push_image, push_monolithic};

/// How many times the server is killed.
const KILLS: usize = 24;
/// Concurrent pushers.
const PUSHERS: usize = 4;

/// What the server acknowledged: blobs and manifests, each with its repository.
#[derive(Default)]
struct Acked {
    blobs: parking_lot::Mutex<Vec<(String, Digest)>>,
    manifests: parking_lot::Mutex<Vec<(String, Digest, String)>>,
    count: AtomicUsize,
}

/// One pusher: blobs of varied sizes, alternately monolithic and chunked, and now and then an
/// image manifest naming two of its acknowledged blobs, until `stop`.
async fn pusher(base: String, round: usize, task: usize, acked: Arc<Acked>, stop: Arc<AtomicBool>) {
    let c = client();
    let repo = format!("crash/t{task}");
    let mut mine: Vec<Digest> = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let data = content(
            &format!("crash {round} {task} {i}"),
            (i * 7919 + task * 104_729) % 60_000,
        );
        let d = Digest::sha256_of(&data);
        let pushed = if i % 2 == 0 {
            push_monolithic(&c, &base, &repo, &data).await
        } else {
            push_chunked(&c, &base, &repo, &data, 3).await
        };
        match pushed {
            Pushed::Created => {
                acked.blobs.lock().push((repo.clone(), d.clone()));
                acked.count.fetch_add(1, Ordering::Relaxed);
                mine.push(d);
            }
            Pushed::Refused(status) => panic!("push {i} of task {task} refused: {status}"),
            // The server went away mid-request: nothing was acknowledged.
            Pushed::Lost => break,
        }
        if mine.len() >= 2 && i % 3 == 2 {
            let tag = format!("r{round}-t{task}-{i}");
            let (config, layer) = (&mine[mine.len() - 2], &mine[mine.len() - 1]);
            match push_image(&c, &base, &repo, &tag, config, &[layer]).await {
                Ok(Some(m)) => acked.manifests.lock().push((repo.clone(), m, tag)),
                Ok(None) => break,
                Err(status) => panic!("manifest {tag} refused: {status}"),
            }
        }
    }
}

async fn verify_all(base: &str, acked: &Acked) -> (usize, usize) {
    let c = client();
    let blobs = acked.blobs.lock().clone();
    let manifests = acked.manifests.lock().clone();
    let checks = futures::stream::iter(blobs.iter().map(|(repo, d)| {
        let c = c.clone();
        async move {
            let resp = c
                .get(format!("{base}/v2/{repo}/blobs/{d}"))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.bytes().await.unwrap();
            assert_eq!(status, 200, "acknowledged blob {d} in {repo} lost");
            assert!(
                d.matches(&body),
                "acknowledged blob {d} in {repo} is corrupt"
            );
        }
    }));
    use futures::StreamExt;
    checks.buffer_unordered(8).collect::<Vec<()>>().await;
    for (repo, m, tag) in &manifests {
        for reference in [m.as_str(), tag.as_str()] {
            let resp = c
                .get(format!("{base}/v2/{repo}/manifests/{reference}"))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.bytes().await.unwrap();
            assert_eq!(
                status, 200,
                "acknowledged manifest {reference} in {repo} lost"
            );
            assert!(
                m.matches(&body),
                "manifest {reference} in {repo} is corrupt"
            );
        }
    }
    (blobs.len(), manifests.len())
}

fn sigkill(server: Server) -> tempfile::TempDir {
    let pid = server.pid().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -KILL {pid} failed");
    // The process is gone; collect it and keep its data directory.
    let (status, data) = server.terminate().expect("collecting the killed server");
    assert!(
        !status.success(),
        "the server exited cleanly after SIGKILL: {status}"
    );
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_sigkill_during_concurrent_pushes() {
    let started = Instant::now();
    let acked = Arc::new(Acked::default());
    let mut server = Server::hoist(hoist()).unwrap();
    let (mut kills, mut verified_blobs, mut verified_manifests) = (0, 0, 0);
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let before = acked.count.load(Ordering::Relaxed);
        let tasks: Vec<_> = (0..PUSHERS)
            .map(|task| {
                tokio::spawn(pusher(
                    server.url.clone(),
                    round,
                    task,
                    acked.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        // Kill once this round has acknowledged a varying number of blobs, with requests of
        // every kind in flight.
        let target = before + 3 + (round * 5) % 11;
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.count.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: pushes made no progress"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let data = sigkill(server);
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        server = Server::hoist_on(hoist(), data, &[]).unwrap();
        (verified_blobs, verified_manifests) = verify_all(&server.url, &acked).await;
    }
    eprintln!(
        "storage_crash: {kills} SIGKILLs, {verified_blobs} acknowledged blobs and \
         {verified_manifests} manifests verified after each restart, in {:?}",
        started.elapsed()
    );
    assert!(kills >= 20 && verified_blobs > KILLS * 3);
}
