//! `hoist build` against `buildah bud --layers --isolation chroot` on a fixed project: 10 steps in
//! 2 stages, a generated context of 5,000 files / 200 MB (compressible text, as source trees
//! are). Measured in one run: a cold build, a no-op rebuild and a rebuild after changing one file.
//! Each tool has its own fresh storage and the same busybox base (from `busybox-static`).
//!
//! `hoist` writes gzip layers (level 3, `hoist build`'s pinned level) and `hoist-z` zstd layers
//! (`--compression zstd`); buildah keeps its layers uncompressed until a push.
//!
//! Docker's BuildKit is measured when `dockerd` and Debian's docker.io client (`/usr/bin/docker`,
//! 20.10, which drives the daemon's built-in BuildKit with `DOCKER_BUILDKIT=1`, no buildx plugin
//! needed) are installed: a private daemon (own data root and socket, no bridge, so RUN steps use
//! `--network host`) with the same base imported by `docker import`. BuildKit keeps layers
//! uncompressed in dockerd's overlay2 store, as buildah does.
//!
//! A second row builds a Dockerfile of 10,000 `ENV` lines (FROM scratch): wall time and the peak
//! RSS of the `hoist build` process (`getrusage(RUSAGE_CHILDREN)`, measured before the bench runs
//! any other child).
//!
//! Run: `cargo bench -p hoist --bench build` (as root; buildah from `.ci/peers.sh`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hoist_testsupport::peers;

const FILES: usize = 5_000;
const TOTAL: usize = 200 * 1024 * 1024;
const DOCKERFILE: &str = "FROM localhost/bench-base:latest AS build
WORKDIR /src
COPY deps.txt /src/
RUN wc -l deps.txt > /deps.out
COPY . /src
RUN find /src -type f | wc -l > /count
FROM localhost/bench-base:latest
COPY --from=build /count /count
ENV APP=bench
CMD [\"cat\", \"/count\"]
";

/// Deterministic pseudo-text (xorshift over a small vocabulary).
fn generate(dir: &Path) {
    let words = [
        "fn", "let", "struct", "impl", "return", "match", "self", "value", "error", "result",
        "config", "layer", "image", "build", "cache", "context", "file", "digest", "manifest",
        "registry", "0x1f", "42", "{", "}", "(", ")", ";", "=>", "::", "&mut",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let per = TOTAL / FILES;
    for i in 0..FILES {
        let sub = dir.join(format!("src/m{:02}/d{:02}", i % 50, (i / 50) % 10));
        std::fs::create_dir_all(&sub).unwrap();
        let mut s = String::with_capacity(per + 64);
        while s.len() < per {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(words[(x % words.len() as u64) as usize]);
            s.push(if x.is_multiple_of(11) { '\n' } else { ' ' });
        }
        s.truncate(per);
        std::fs::write(sub.join(format!("f{i}.txt")), s).unwrap();
    }
    std::fs::write(dir.join("deps.txt"), "a\nb\nc\n").unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
}

fn run(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Numbers {
    cold: Duration,
    noop: Duration,
    change: Duration,
}

/// Cold build, then 5 no-op rebuilds and 3 one-file-change rebuilds (medians).
fn measure(ctx: &Path, build: &dyn Fn() -> Command) -> Numbers {
    let cold = run(&mut build());
    let noop = median((0..5).map(|_| run(&mut build())).collect());
    let file = ctx.join("src/m07/d07/f357.txt");
    let change = median(
        (0..3)
            .map(|i| {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&file)
                    .unwrap();
                writeln!(f, "change {i}").unwrap();
                drop(f);
                run(&mut build())
            })
            .collect(),
    );
    Numbers { cold, noop, change }
}

const MANY: usize = 10_000;

/// A cold `hoist build` of `FROM scratch` and [`MANY`] `ENV` lines: wall time and peak RSS in MB.
/// Must run before any other child of the bench (ru_maxrss of children is the largest one's).
fn many_instructions(hoist: &Path, work: &Path) -> (Duration, i64) {
    use nix::sys::resource::{UsageWho, getrusage};
    let ctx = work.join("ctx-many");
    std::fs::create_dir(&ctx).unwrap();
    let mut df = String::from("FROM scratch\n");
    for i in 0..MANY {
        df.push_str(&format!("ENV V{i}=value-{i}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let before = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert_eq!(
        before, 0,
        "the {MANY}-ENV row must run before any other child"
    );
    let took = run(Command::new(hoist)
        .env("HOIST_HOME", work.join("hoist-home-many"))
        .args(["build", "--progress", "quiet", "-t", "many"])
        .arg(&ctx));
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    (took, peak_kib / 1024)
}

fn main() {
    let hoist = PathBuf::from(env!("CARGO_BIN_EXE_hoist"));
    let work = tempfile::Builder::new()
        .prefix("hoist-build-bench-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let (many_time, many_rss) = many_instructions(&hoist, work.path());
    eprintln!(
        "{MANY} ENV lines: {:.0} ms, peak RSS {many_rss} MB",
        many_time.as_secs_f64() * 1e3
    );
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let t = Instant::now();
    generate(&ctx);
    eprintln!(
        "context: {FILES} files, {} MB, generated in {:.1}s",
        TOTAL >> 20,
        t.elapsed().as_secs_f64()
    );
    let base = work.path().join("busybox.tar");
    hoist_conformance::fixtures::busybox_rootfs_tar(std::fs::File::create(&base).unwrap()).unwrap();

    // hoist
    let home = work.path().join("hoist-home");
    run(Command::new(&hoist)
        .env("HOIST_HOME", &home)
        .args(["import"])
        .arg(&base)
        .arg("localhost/bench-base:latest"));
    let h = measure(&ctx, &|| {
        let mut c = Command::new(&hoist);
        c.env("HOIST_HOME", &home)
            .args(["build", "--progress", "quiet", "-t", "bench"])
            .arg(&ctx);
        c
    });
    eprintln!(
        "hoist: cold {:?}, no-op {:?}, one-file change {:?}",
        h.cold, h.noop, h.change
    );
    // The same with zstd layers (`--compression zstd`), in a fresh home.
    let home_z = work.path().join("hoist-home-zstd");
    run(Command::new(&hoist)
        .env("HOIST_HOME", &home_z)
        .args(["import"])
        .arg(&base)
        .arg("localhost/bench-base:latest"));
    let hz = measure(&ctx, &|| {
        let mut c = Command::new(&hoist);
        c.env("HOIST_HOME", &home_z)
            .args([
                "build",
                "--progress",
                "quiet",
                "--compression",
                "zstd",
                "-t",
                "bench",
            ])
            .arg(&ctx);
        c
    });

    // buildah
    let root = work.path().join("buildah-root");
    let runroot = work.path().join("buildah-run");
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "overlay"])
            .args(args);
        c
    };
    // The same base: a container from scratch with the rootfs tar added (extracted), committed.
    let out = buildah(&["from", "scratch"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ctr = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    run(buildah(&["add", &ctr]).arg(&base).arg("/"));
    run(&mut buildah(&[
        "commit",
        "--quiet",
        &ctr,
        "localhost/bench-base:latest",
    ]));
    run(&mut buildah(&["rm", &ctr]));
    let b = measure(&ctx, &|| {
        let mut c = buildah(&[
            "bud",
            "--layers",
            "--isolation",
            "chroot",
            "--quiet",
            "-t",
            "bench",
        ]);
        c.arg(&ctx);
        c
    });
    // buildah's storage has overlay mounts; remove them through buildah.
    let _ = buildah(&["rmi", "--all", "--force"]).output();
    let _ = Command::new("umount")
        .arg("-R")
        .arg(root.join("overlay"))
        .output();

    let row = |name: &str, n: &Numbers| {
        println!(
            "{name:<8} cold {:>8.0} ms   no-op {:>7.0} ms   one-file change {:>8.0} ms",
            n.cold.as_secs_f64() * 1e3,
            n.noop.as_secs_f64() * 1e3,
            n.change.as_secs_f64() * 1e3
        );
    };
    println!(
        "build bench: 10 steps, 2 stages, {FILES} files / {} MB context",
        TOTAL >> 20
    );
    row("hoist", &h);
    row("hoist-z", &hz);
    row("buildah", &b);
    println!(
        "hoist    {MANY} ENV instructions: cold {:>8.0} ms   peak RSS {many_rss} MB (target < 200 MB)",
        many_time.as_secs_f64() * 1e3
    );
    println!(
        "no-op: hoist {:.1}x faster than buildah (target >= 3x, < 150 ms); cold: hoist/buildah = {:.2} (target <= 1)",
        b.noop.as_secs_f64() / h.noop.as_secs_f64(),
        h.cold.as_secs_f64() / b.cold.as_secs_f64()
    );
    match Dockerd::start(work.path()) {
        Some(d) => {
            run(d
                .docker()
                .arg("import")
                .arg(&base)
                .arg("localhost/bench-base:latest"));
            let k = measure(&ctx, &|| {
                let mut c = d.docker();
                c.env("DOCKER_BUILDKIT", "1")
                    .args(["build", "--network", "host", "-q", "-t", "bench"])
                    .arg(&ctx);
                c
            });
            row("buildkit", &k);
            println!(
                "no-op: hoist {:.1}x faster than BuildKit; cold: hoist/BuildKit = {:.2}; one-file change: hoist/BuildKit = {:.2}",
                k.noop.as_secs_f64() / h.noop.as_secs_f64(),
                h.cold.as_secs_f64() / k.cold.as_secs_f64(),
                h.change.as_secs_f64() / k.change.as_secs_f64()
            );
        }
        None => println!("docker BuildKit: not measured (no dockerd and docker.io client here)"),
    }
}

/// A private dockerd for the BuildKit row: its own data root, exec root and socket under `dir`.
struct Dockerd {
    child: std::process::Child,
    root: PathBuf,
}

impl Dockerd {
    const CLIENT: &str = "/usr/bin/docker";

    fn start(dir: &Path) -> Option<Dockerd> {
        if !Path::new(Self::CLIENT).exists()
            || Command::new("dockerd").arg("--version").output().is_err()
        {
            return None;
        }
        // Short paths: the sockets under it must stay below the 108-byte sun_path limit.
        let root = tempfile::Builder::new()
            .prefix("hoist-bench-dockerd-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = peers::Dockerd::command(Path::new("dockerd"), &root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .ok()?;
        let d = Dockerd { child, root };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if d.docker()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Some(d);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "dockerd did not answer within 60 s (log: {})",
            dir.join("dockerd.log").display()
        );
        None
    }

    fn docker(&self) -> Command {
        let mut c = Command::new(Self::CLIENT);
        c.env("DOCKER_HOST", peers::Dockerd::host(&self.root));
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.docker().args(["image", "prune", "-af"]).output();
        let _ = self.docker().args(["builder", "prune", "-af"]).output();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.root.join("data"))
            .output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
