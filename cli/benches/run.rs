//! Container start benchmark: create + start + wait + delete of one bundle (`/bin/true` on a
//! busybox rootfs, the config `runc spec` writes) through hoist's executor (re-executing the
//! `hoist` binary as its init, as `hoist run` does), `runc` and `crun`; and `hoist run --rm IMAGE
//! /bin/true` end to end (image store, layers, overlay, spec, executor, cleanup).
//!
//! 3 warm-up rounds, then 30 measured rounds; each round runs every executor once, in turn, so
//! drift hits all alike. Prints the median (and min, p90) of each and the ratios to crun.
//! Targets: hoist's executor within 1.2x of crun, faster than runc. Nothing here is an assertion.
//!
//! crun runs in a private mount namespace without /sys/fs/cgroup/unified (this machine's hybrid
//! cgroup layout makes crun 1.8 refuse otherwise), set up between fork and exec.
//!
//! `cargo bench -p hoist --bench run` (as root); `HOIST_BENCH_ROUNDS=N` changes 30.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hoist_runtime::exec::{Executor, HoistExecutor, OciCliExecutor, Stdio};

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

fn busybox_rootfs(root: &Path) -> Result<()> {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox")).context("copy /bin/busybox")?;
    for applet in ["sh", "true", "ls", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    for d in ["etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

/// A bundle: busybox rootfs + `runc spec`'s config with args `/bin/true`, no terminal.
fn bundle(dir: &Path) -> Result<()> {
    busybox_rootfs(&dir.join("rootfs"))?;
    let st = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .status()
        .context("runc spec")?;
    if !st.success() {
        bail!("runc spec failed: {st}");
    }
    let path = dir.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["hostname"] = "bench".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(())
}

fn once(exec: &dyn Executor, id: &str, bundle: &Path) -> Result<Duration> {
    let t = Instant::now();
    let c = exec.create(id, bundle, Stdio::Null)?;
    exec.start(&c)?;
    let code = exec.wait(&c)?;
    exec.delete(&c)?;
    let d = t.elapsed();
    if code != 0 {
        bail!("{id}: /bin/true exited {code}");
    }
    Ok(d)
}

fn hoist_cmd(home: &Path) -> Command {
    let mut c = Command::new(HOIST);
    c.env("HOIST_HOME", home);
    c
}

/// Imports the busybox rootfs as an image; `None` when this hoist has no `run`.
fn prepare_hoist_run(dir: &Path) -> Result<Option<PathBuf>> {
    let help = hoist_cmd(dir).args(["run", "--help"]).output()?;
    if !help.status.success() {
        return Ok(None);
    }
    let home = dir.join("home");
    let rootfs = dir.join("image-rootfs");
    busybox_rootfs(&rootfs)?;
    let tar_path = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf"])
        .arg(&tar_path)
        .arg(".")
        .status()?;
    if !st.success() {
        bail!("tar failed");
    }
    let out = hoist_cmd(&home)
        .arg("import")
        .arg(&tar_path)
        .arg("bench/busybox:latest")
        .output()?;
    if !out.status.success() {
        bail!("hoist import: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Some(home))
}

fn hoist_run(home: &Path) -> Result<Duration> {
    let t = Instant::now();
    let out = hoist_cmd(home)
        .args(["run", "--rm", "bench/busybox:latest", "/bin/true"])
        .output()?;
    let d = t.elapsed();
    if !out.status.success() {
        bail!(
            "hoist run --rm: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(d)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    median: f64,
    min: f64,
    p90: f64,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let n = v.len();
    let median = if n % 2 == 1 {
        ms(v[n / 2])
    } else {
        (ms(v[n / 2 - 1]) + ms(v[n / 2])) / 2.0
    };
    Stats {
        median,
        min: ms(v[0]),
        p90: ms(v[(n * 9 / 10).min(n - 1)]),
    }
}

fn main() -> Result<()> {
    let rounds: usize = std::env::var("HOIST_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let b = dir.path().join("bundle");
    bundle(&b)?;
    let state = dir.path().join("state");
    let executors: Vec<(&str, Box<dyn Executor>)> = vec![
        (
            "hoist executor",
            Box::new(HoistExecutor::with_init_binary(HOIST)),
        ),
        ("crun", Box::new(OciCliExecutor::crun(state.join("crun"))?)),
        ("runc", Box::new(OciCliExecutor::runc(state.join("runc"))?)),
    ];
    let run_home = prepare_hoist_run(dir.path())?;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); executors.len() + 1];
    for round in 0..rounds + 3 {
        for (i, (name, exec)) in executors.iter().enumerate() {
            let id = format!("bench-{}-{round}-{i}", std::process::id());
            let d =
                once(exec.as_ref(), &id, &b).with_context(|| format!("{name}, round {round}"))?;
            if round >= 3 {
                times[i].push(d);
            }
        }
        if let Some(home) = &run_home {
            let d = hoist_run(home)?;
            if round >= 3 {
                times[executors.len()].push(d);
            }
        }
    }
    let crun = stats(times[1].clone()).median;
    println!("create+start+wait+delete of one bundle (/bin/true), {rounds} rounds\n");
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>9}",
        "", "median ms", "min ms", "p90 ms", "vs crun"
    );
    let mut names: Vec<&str> = executors.iter().map(|(n, _)| *n).collect();
    names.push("hoist run --rm IMAGE /bin/true");
    for (i, name) in names.iter().enumerate() {
        if times[i].is_empty() {
            println!("{name:<34} (no `hoist run` in this build)");
            continue;
        }
        let s = stats(times[i].clone());
        println!(
            "{name:<34} {:>10.2} {:>10.2} {:>10.2} {:>8.2}x",
            s.median,
            s.min,
            s.p90,
            s.median / crun
        );
    }
    let hoist = stats(times[0].clone()).median;
    let runc = stats(times[2].clone()).median;
    println!(
        "\nhoist executor within 1.2x of crun: {}; faster than runc: {}",
        if hoist <= 1.2 * crun { "yes" } else { "NO" },
        if hoist < runc { "yes" } else { "NO" }
    );
    Ok(())
}
