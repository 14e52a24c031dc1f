//! Image transfer benchmark: `hoist push`/`hoist pull` against `skopeo copy`, same registry, one
//! run.
//!
//! One `hoist serve` (on a fresh data directory under `$TMPDIR`) is the registry for both tools.
//! The image is a random 1 GiB OCI layout with 8 layers, each a tar of random bytes gzipped at
//! level 0 (`tar+gzip`, so skopeo does not compress them on push, which it does to plain `tar`
//! layers; neither tool transforms a byte). Untimed set-up: skopeo pushes it to `bench/src:bench` (what both tools pull), and
//! an OCI archive of it is loaded into a hoist home (as `localhost/loaded:bench`, a different
//! registry host, so no local repository of the benchmark's registry shares its blobs).
//!
//! Then, for each round (the median of 3 is reported), alternating which tool goes first:
//! - **push**: skopeo copies `oci:LAYOUT:bench` to `docker://HOST/bench/skopeo-N:bench`; hoist tags
//!   the loaded image as `HOST/bench/hoist-N:bench` and pushes it (only the push is timed), then
//!   removes that tag, so the next round has no local repository of the registry to mount from.
//!   Every round pushes to a fresh repository, so the registry has no link to skip or mount (its
//!   HEADs say 404 for both tools) and every byte is uploaded. hoist's output is checked for
//!   `Mounted from`.
//! - **pull**: skopeo copies `docker://HOST/bench/src:bench` to a fresh `oci:` directory; hoist
//!   pulls it into a fresh `HOIST_HOME`.
//!
//! skopeo keeps a blob-info cache (`/var/lib/containers/cache` for root) and mounts any blob it
//! has seen in another repository of the registry. Each skopeo call therefore runs in a private
//! mount namespace (`unshare -m`) with an empty directory bound over that cache, so skopeo, like
//! hoist, uploads every byte.
//!
//! It prints seconds and MiB/s for each, the ratios, and whether hoist is at least 1.5x skopeo on
//! both. Nothing here is an assertion.
//!
//! `cargo bench -p hoist --bench transfer`; `HOIST_BENCH_QUICK=1` for 64 MiB and one round.
//! `TMPDIR=/dev/shm` takes the disk out of the measurement.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use hoist_conformance::fixtures::{self, Descriptor, Image, Layout};
use hoist_conformance::harness::Server;
use hoist_oci::{HashingWriter, media_type};

const MIB: u64 = 1 << 20;
const LAYERS: usize = 8;
const TAG: &str = "bench";
const TARGET: f64 = 1.5;

fn hoist_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hoist"))
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Runs `cmd` and returns how long it took.
fn timed(cmd: &mut Command) -> Result<(Duration, Output)> {
    let start = Instant::now();
    let out = run(cmd)?;
    Ok((start.elapsed(), out))
}

struct Env {
    addr: String,
    /// An empty docker config directory, so no credential of the user's is looked up.
    docker_config: PathBuf,
    work: PathBuf,
}

impl Env {
    fn hoist(&self, home: &Path) -> Command {
        let mut c = Command::new(hoist_bin());
        c.env("HOIST_HOME", home)
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("RUST_LOG", "warn");
        c
    }

    /// skopeo with an empty blob-info cache (see the module comment).
    fn skopeo(&self) -> Result<Command> {
        let cache = tempfile::tempdir_in(&self.work)?.keep();
        let mut c = Command::new("unshare");
        c.args(["-m", "sh", "-c"])
            .arg("mount --bind \"$0\" /var/lib/containers/cache && exec skopeo --insecure-policy \"$@\"")
            .arg(cache);
        Ok(c)
    }
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn median(&self) -> Option<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len() / 2).copied()
    }
}

fn main() {
    if let Err(e) = bench() {
        eprintln!("transfer benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

fn bench() -> Result<()> {
    let quick = std::env::var_os("HOIST_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty());
    let (size, rounds) = if quick {
        (64 * MIB, 1)
    } else {
        (1024 * MIB, 3)
    };
    let work = tempfile::tempdir()?;
    let docker_config = work.path().join("docker");
    std::fs::create_dir_all(&docker_config)?;

    let server = Server::hoist(hoist_bin()).context("starting hoist serve")?;
    let env = Env {
        addr: server.addr.clone(),
        docker_config,
        work: work.path().to_owned(),
    };
    eprintln!(
        "registry: hoist serve on {} (data in {})",
        server.addr,
        server.data.path().display()
    );

    eprintln!("making a {} MiB image with {LAYERS} layers...", size / MIB);
    let layout_dir = work.path().join("layout");
    let layout = Layout::create(&layout_dir)?;
    let image = gzip_image(&layout, size)?;
    let bytes: u64 = image.blobs().iter().map(|d| d.size).sum();
    let mib = bytes as f64 / MIB as f64;
    let oci = format!("oci:{}:{TAG}", layout_dir.display());

    eprintln!("set-up: skopeo pushes bench/src, hoist loads the image (untimed)...");
    let src = format!("{}/bench/src:{TAG}", env.addr);
    run(env
        .skopeo()?
        .args(["copy", "--dest-tls-verify=false", &oci])
        .arg(format!("docker://{src}")))?;
    let archive = work.path().join("image.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&archive)?);
        tar.append_dir_all(".", &layout_dir)?;
        tar.into_inner()?.sync_all()?;
    }
    let push_home = work.path().join("push-home");
    run(env.hoist(&push_home).arg("load").arg("-i").arg(&archive))?;
    std::fs::remove_file(&archive)?;
    let loaded = format!("localhost/loaded:{TAG}");

    let mut skopeo_push = Samples::default();
    let mut hoist_push = Samples::default();
    let mut skopeo_pull = Samples::default();
    let mut hoist_pull = Samples::default();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}...", round + 1);
        let hoist_first = round % 2 == 1;
        for turn in 0..2 {
            if (turn == 0) == hoist_first {
                let target = format!("{}/bench/hoist-{round}:{TAG}", env.addr);
                run(env.hoist(&push_home).args(["tag", &loaded, &target]))?;
                let (t, out) = timed(env.hoist(&push_home).args(["push", &target]))?;
                let text = String::from_utf8_lossy(&out.stdout);
                if text.contains("Mounted from") {
                    bail!("hoist push mounted blobs; the comparison would be unfair:\n{text}");
                }
                run(env.hoist(&push_home).args(["rmi", &target]))?;
                eprintln!("  hoist push   {:>7.2} s", t.as_secs_f64());
                hoist_push.0.push(t);
            } else {
                let (t, _) = timed(
                    env.skopeo()?
                        .args(["copy", "--dest-tls-verify=false", &oci])
                        .arg(format!("docker://{}/bench/skopeo-{round}:{TAG}", env.addr)),
                )?;
                eprintln!("  skopeo push  {:>7.2} s", t.as_secs_f64());
                skopeo_push.0.push(t);
            }
        }
        for turn in 0..2 {
            if (turn == 0) == hoist_first {
                let home = work.path().join(format!("pull-home-{round}"));
                let (t, _) = timed(env.hoist(&home).args(["pull", &src]))?;
                eprintln!("  hoist pull   {:>7.2} s", t.as_secs_f64());
                hoist_pull.0.push(t);
                std::fs::remove_dir_all(&home)?;
            } else {
                let dest = work.path().join(format!("skopeo-pull-{round}"));
                let (t, _) = timed(
                    env.skopeo()?
                        .args(["copy", "--src-tls-verify=false"])
                        .arg(format!("docker://{src}"))
                        .arg(format!("oci:{}:{TAG}", dest.display())),
                )?;
                eprintln!("  skopeo pull  {:>7.2} s", t.as_secs_f64());
                skopeo_pull.0.push(t);
                std::fs::remove_dir_all(&dest)?;
            }
        }
    }
    drop(server);

    println!();
    println!(
        "image: {mib:.0} MiB in {} blobs ({LAYERS} layers, config, manifest); median of {rounds}",
        image.blobs().len()
    );
    println!(
        "{:<14} {:>9} {:>9}   {:>9} {:>9}",
        "", "push s", "MiB/s", "pull s", "MiB/s"
    );
    let row = |name: &str, push: &Samples, pull: &Samples| {
        let (p, l) = (push.median(), pull.median());
        let fmt = |d: Option<Duration>| match d {
            Some(d) => format!("{:>9.2} {:>9.1}", d.as_secs_f64(), mib / d.as_secs_f64()),
            None => format!("{:>9} {:>9}", "-", "-"),
        };
        println!("{name:<14} {}   {}", fmt(p), fmt(l));
    };
    row("hoist", &hoist_push, &hoist_pull);
    row("skopeo", &skopeo_push, &skopeo_pull);
    for (what, h, s) in [
        ("push", &hoist_push, &skopeo_push),
        ("pull", &hoist_pull, &skopeo_pull),
    ] {
        if let (Some(h), Some(s)) = (h.median(), s.median()) {
            let ratio = s.as_secs_f64() / h.as_secs_f64();
            let verdict = if ratio >= TARGET { "met" } else { "MISSED" };
            println!("{what}: hoist is {ratio:.2}x skopeo (target {TARGET}x: {verdict})");
        }
    }
    Ok(())
}

/// An image of [`LAYERS`] gzipped layers holding `size` random bytes in all, tagged [`TAG`].
fn gzip_image(layout: &Layout, size: u64) -> Result<Image> {
    let per_layer = size / LAYERS as u64;
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..LAYERS {
        let data = fixtures::random_bytes(per_layer as usize, 1000 + i as u64);
        let mut diff_id = None;
        let desc = layout.put_blob_with(media_type::OCI_LAYER_GZIP, |out| {
            let gz = GzEncoder::new(out, Compression::none());
            let mut tar = tar::Builder::new(HashingWriter::new(gz));
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            tar.append_data(&mut header, format!("data/layer-{i}.bin"), &data[..])?;
            let (digester, gz) = tar.into_inner()?.into_parts();
            diff_id = Some(digester.current());
            gz.finish()?;
            Ok(())
        })?;
        diff_ids.push(diff_id.context("layer written")?);
        layers.push(desc);
    }
    let config = layout.put_blob(
        media_type::OCI_CONFIG,
        &fixtures::image_config(&diff_ids, &["true"], "hoist transfer benchmark"),
    )?;
    let manifest = layout.put_blob(
        media_type::OCI_MANIFEST,
        &fixtures::image_manifest(&config, &layers),
    )?;
    layout.tag(&manifest, TAG)?;
    Ok(Image {
        tag: TAG.to_owned(),
        manifest,
        config,
        layers,
    })
}
