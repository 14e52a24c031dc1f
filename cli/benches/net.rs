//! Network benchmarks, as root:
//!
//! 1. What a bridge and a published port add to `hoist run --rm IMAGE /bin/true`: `--network
//!    none`, the default bridge, and the default bridge with `-p 127.0.0.1::80`, interleaved
//!    round by round (target: the bridge with `-p` under 10 ms over `--network none`). With
//!    docker (a private dockerd with its own bridge, no iptables: its published ports go through
//!    docker-proxy) the same three rows side by side, when docker is installed.
//! 2. TCP throughput between two containers on a user network with iperf3 (Debian's, copied
//!    into the image with its libraries), against a bare veth pair between two namespaces made
//!    here (target: at least 90% of it).
//! 3. Pod start for PODS.md's mc2 (its image built by `hoist build`): from `hoist pod run` to
//!    both containers started (their `State.StartedAt`) and to the pod's `Succeeded`.
//!
//! Traffic stays on this machine: loopback and the namespaces made here. Nothing here is an
//! assertion.
//!
//! `cargo bench -p hoist --bench net`; `HOIST_BENCH_ROUNDS=N` (default 20) for the first part,
//! `HOIST_BENCH_IPERF_SECS=N` (default 5) per iperf3 run, `HOIST_BENCH_SKIP=docker,iperf,pod`
//! to leave parts out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use hoist_testsupport::peers::Dockerd;

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");
const MC2: &str = include_str!("../../engine/src/pods/testdata/mc2.yaml");
const IPC_C: &str = include_str!("../../engine/src/pods/testdata/ipc.c");
const MC2_DOCKERFILE: &str = include_str!("../../engine/src/pods/testdata/mc2.Dockerfile");

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn skipped(part: &str) -> bool {
    std::env::var("HOIST_BENCH_SKIP").is_ok_and(|s| s.split(',').any(|p| p == part))
}

fn check(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Busybox (`sh`, `true`, `httpd`) and iperf3 with the shared libraries `ldd` names.
fn rootfs(root: &Path) -> Result<()> {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox")).context("copy /bin/busybox")?;
    for applet in ["sh", "true", "httpd", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    for d in ["etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    let Ok(iperf) = which("iperf3") else {
        return Ok(());
    };
    let mut files = vec![iperf.clone()];
    for line in check(Command::new("ldd").arg(&iperf))?.lines() {
        // `libx.so => /lib/.../libx.so (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`.
        if let Some(p) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(PathBuf::from(p));
        }
    }
    for f in files {
        let real = std::fs::canonicalize(&f)?;
        let to = root.join(f.strip_prefix("/")?);
        std::fs::create_dir_all(to.parent().expect("a parent"))?;
        std::fs::copy(&real, &to).with_context(|| format!("copy {}", f.display()))?;
    }
    Ok(())
}

fn which(name: &str) -> Result<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed"))
}

fn hoist(home: &Path) -> Command {
    let mut c = Command::new(HOIST);
    c.env("HOIST_HOME", home);
    c
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn timed(cmd: &mut Command) -> Result<Duration> {
    let t = Instant::now();
    check(cmd)?;
    Ok(t.elapsed())
}

/// The three ways of running `/bin/true`, as `run` arguments before the image.
const MODES: [(&str, &[&str]); 3] = [
    ("--network none", &["--network", "none"]),
    ("default bridge", &[]),
    ("bridge + -p 127.0.0.1::80", &["-p", "127.0.0.1::80"]),
];

/// Part 1: medians (ms) per mode for hoist and, when it runs, docker.
fn start_cost(home: &Path, docker: Option<&Dockerd>, rounds: u64) -> Result<()> {
    let mut hoist_ms: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut docker_ms: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for round in 0..rounds + 2 {
        for (i, (_, args)) in MODES.iter().enumerate() {
            let d = timed(
                hoist(home)
                    .args(["run", "--rm"])
                    .args(*args)
                    .args(["bench/net:latest", "/bin/true"]),
            )?;
            if round >= 2 {
                hoist_ms[i].push(ms(d));
            }
            if let Some(dk) = docker {
                let d = timed(
                    dk.docker()
                        .args(["run", "--rm"])
                        .args(*args)
                        .args(["bench/net:latest", "/bin/true"]),
                )?;
                if round >= 2 {
                    docker_ms[i].push(ms(d));
                }
            }
        }
    }
    println!("run --rm IMAGE /bin/true, {rounds} rounds (median ms)\n");
    println!("{:<28} {:>10} {:>10}", "", "hoist", "docker");
    let h: Vec<f64> = hoist_ms.into_iter().map(median).collect();
    let d: Vec<f64> = docker_ms.into_iter().map(median).collect();
    for (i, (name, _)) in MODES.iter().enumerate() {
        let dk = if docker.is_some() {
            format!("{:>10.1}", d[i])
        } else {
            format!("{:>10}", "-")
        };
        println!("{name:<28} {:>10.1} {dk}", h[i]);
    }
    println!(
        "\nhoist: the bridge adds {:.1} ms, the bridge with -p {:.1} ms (target under 10 ms): {}",
        h[1] - h[0],
        h[2] - h[0],
        if h[2] - h[0] < 10.0 { "yes" } else { "NO" }
    );
    if docker.is_some() {
        println!(
            "docker: the bridge adds {:.1} ms, the bridge with -p {:.1} ms",
            d[1] - d[0],
            d[2] - d[0]
        );
    }
    Ok(())
}

/// `bits_per_second` received, from iperf3's `-J` report.
fn received_bps(json: &str) -> Result<f64> {
    let v: serde_json::Value = serde_json::from_str(json).context("iperf3 -J output")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("no end.sum_received in {json}"))
}

/// Runs the iperf3 client `client` (retried while the server is not listening yet).
fn iperf_client(mut client: impl FnMut() -> Command) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = client().stdin(Stdio::null()).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return received_bps(&text);
        }
        if Instant::now() > deadline {
            bail!(
                "iperf3 client: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until something listens on TCP port 5201 (iperf3's, on IPv6 and IPv4 at once) in the
/// namespace whose `/proc/net/tcp` and `tcp6` `read_tcp` returns.
fn wait_listening(mut read_tcp: impl FnMut() -> Result<String>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // `local_address` `...:1451`, state `0A` (LISTEN).
        let tcp = read_tcp().unwrap_or_default();
        if tcp.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(":1451") && f[3] == "0A"
        }) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the iperf3 server does not listen");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a server started here.
fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Two namespaces joined by one veth pair, removed on drop.
struct VethPair {
    a: String,
    b: String,
}

impl VethPair {
    fn new() -> Result<VethPair> {
        let tag = std::process::id() % 100_000;
        let p = VethPair {
            a: format!("hbench-a-{tag}"),
            b: format!("hbench-b-{tag}"),
        };
        let (va, vb) = (format!("hbva{tag}"), format!("hbvb{tag}"));
        for ns in [&p.a, &p.b] {
            check(Command::new("ip").args(["netns", "add", ns]))?;
        }
        check(Command::new("ip").args(["link", "add", &va, "type", "veth", "peer", "name", &vb]))?;
        for (ns, dev, ip) in [(&p.a, &va, "10.253.0.1/24"), (&p.b, &vb, "10.253.0.2/24")] {
            check(Command::new("ip").args(["link", "set", dev, "netns", ns]))?;
            check(Command::new("ip").args(["-n", ns, "addr", "add", ip, "dev", dev]))?;
            check(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]))?;
            check(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        }
        Ok(p)
    }

    fn iperf(&self, secs: u64) -> Result<f64> {
        let server = Command::new("ip")
            .args(["netns", "exec", &self.a, "iperf3", "-s"])
            .stdout(Stdio::null())
            .spawn()?;
        let bps = wait_listening(|| {
            check(Command::new("ip").args([
                "netns",
                "exec",
                &self.a,
                "cat",
                "/proc/net/tcp",
                "/proc/net/tcp6",
            ]))
        })
        .and_then(|()| {
            iperf_client(|| {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.b, "iperf3", "-c", "10.253.0.1", "-J"])
                    .args(["-t", &secs.to_string()]);
                c
            })
        });
        stop(server);
        bps
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One iperf3 run between two hoist containers on `net`.
fn hoist_iperf(home: &Path, net: &str, secs: u64) -> Result<f64> {
    check(
        hoist(home)
            .args(["run", "-d", "--network", net, "--name", "iperf-server"])
            .args(["bench/net:latest", "iperf3", "-s"]),
    )?;
    let run = || -> Result<f64> {
        let ip = check(hoist(home).args([
            "inspect",
            "--format",
            &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"),
            "iperf-server",
        ]))?;
        let ip = ip.trim().to_owned();
        wait_listening(|| {
            check(hoist(home).args([
                "exec",
                "iperf-server",
                "cat",
                "/proc/net/tcp",
                "/proc/net/tcp6",
            ]))
        })?;
        iperf_client(|| {
            let mut c = hoist(home);
            c.args(["run", "--rm", "--network", net])
                .args(["bench/net:latest", "iperf3", "-c", &ip, "-J"])
                .args(["-t", &secs.to_string()]);
            c
        })
    };
    let bps = run();
    check(hoist(home).args(["rm", "-f", "iperf-server"]))?;
    bps
}

/// Part 2.
fn throughput(home: &Path, secs: u64) -> Result<()> {
    if which("iperf3").is_err() {
        println!("\niperf3 is not installed (apt-get install iperf3): no throughput rows");
        return Ok(());
    }
    check(hoist(home).args(["network", "create", "--subnet", "10.254.0.0/24", "benchnet"]))?;
    let pair = VethPair::new()?;
    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        bare.push(pair.iperf(secs)? / 1e9);
        ours.push(hoist_iperf(home, "benchnet", secs)? / 1e9);
    }
    drop(pair);
    check(hoist(home).args(["network", "rm", "benchnet"]))?;
    let (b, o) = (median(bare), median(ours));
    println!("\nTCP throughput, iperf3 -t {secs}, 3 runs each (median Gbit/s)\n");
    println!("{:<40} {:>8.2}", "bare veth pair between two namespaces", b);
    println!(
        "{:<40} {:>8.2}",
        "two hoist containers on a user network", o
    );
    println!(
        "hoist: {:.0}% of the bare pair (target at least 90%): {}",
        100.0 * o / b,
        if o >= 0.9 * b { "yes" } else { "NO" }
    );
    Ok(())
}

/// Seconds since the epoch of an RFC 3339 time with a fraction (`...T12:00:00.123456789Z`).
fn epoch_secs(t: &str) -> Option<f64> {
    let whole = hoist_oci::time::parse_rfc3339(t)? as f64;
    let frac = t
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches('Z'))
        .filter(|f| !f.is_empty())
        .map(|f| format!("0.{f}").parse::<f64>().unwrap_or(0.0))
        .unwrap_or(0.0);
    Some(whole + frac)
}

/// Part 3: (to `pod run` returned, to both started, to Succeeded), in ms.
fn pod_start(home: &Path, work: &Path) -> Result<Vec<(f64, f64, f64)>> {
    let base = hoist_testsupport::bases::debian_gcc_tar(Path::new(env!("CARGO_TARGET_TMPDIR")));
    check(
        hoist(home)
            .arg("import")
            .arg(&base)
            .arg("debian-gcc:bookworm"),
    )?;
    let ctx = work.join("mc2");
    std::fs::create_dir_all(&ctx)?;
    std::fs::write(ctx.join("ipc.c"), IPC_C)?;
    std::fs::write(ctx.join("Dockerfile"), MC2_DOCKERFILE)?;
    check(
        hoist(home)
            .args(["build", "-q", "-t", "allingeek/ch6_ipc"])
            .arg(&ctx),
    )?;
    let file = ctx.join("mc2.yaml");
    std::fs::write(&file, MC2)?;
    let mut out = Vec::new();
    for _ in 0..5 {
        let t0 = SystemTime::now();
        let start = Instant::now();
        check(hoist(home).args(["pod", "run"]).arg(&file))?;
        let returned = ms(start.elapsed());
        let deadline = Instant::now() + Duration::from_secs(30);
        let v = loop {
            let v: serde_json::Value =
                serde_json::from_str(&check(hoist(home).args(["pod", "inspect", "mc2"]))?)?;
            let phase = v[0]["Phase"].as_str().unwrap_or_default().to_owned();
            if phase == "Succeeded" || phase == "Failed" {
                if phase == "Failed" {
                    bail!("mc2 failed: {v}");
                }
                break v;
            }
            if Instant::now() > deadline {
                bail!("mc2 did not end: {v}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let done = ms(start.elapsed());
        let t0 = t0.duration_since(UNIX_EPOCH)?.as_secs_f64();
        let mut started: f64 = 0.0;
        for c in v[0]["Containers"].as_array().context("pod members")? {
            let id = c["Id"].as_str().context("member id")?;
            let at = check(hoist(home).args(["inspect", "--format", "{{.State.StartedAt}}", id]))?;
            let at = epoch_secs(at.trim()).with_context(|| format!("StartedAt {at}"))?;
            started = started.max((at - t0) * 1000.0);
        }
        out.push((returned, started, done));
        check(hoist(home).args(["pod", "rm", "mc2"]))?;
    }
    Ok(out)
}

/// Removes what the bench made in its home, also when a part fails.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(out) = hoist(&self.0).args(["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = hoist(&self.0).args(["rm", "-f", id]).output();
            }
        }
        let _ = hoist(&self.0).args(["pod", "rm", "-f", "mc2"]).output();
        let _ = hoist(&self.0).args(["network", "prune", "-f"]).output();
    }
}

fn main() -> Result<()> {
    let rounds = env_num("HOIST_BENCH_ROUNDS", 20);
    let secs = env_num("HOIST_BENCH_IPERF_SECS", 5);
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let root = dir.path().join("rootfs");
    rootfs(&root)?;
    let tar = dir.path().join("rootfs.tar");
    check(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    check(hoist(&home).arg("import").arg(&tar).arg("bench/net:latest"))?;
    let _cleanup = Cleanup(home.clone());

    let docker = if skipped("docker") || which("dockerd").is_err() {
        None
    } else {
        let d = Dockerd::start_with_bridge();
        check(d.docker().arg("import").arg(&tar).arg("bench/net:latest"))?;
        Some(d)
    };
    start_cost(&home, docker.as_ref(), rounds)?;
    drop(docker);

    if !skipped("iperf") {
        throughput(&home, secs)?;
    }
    if !skipped("pod") {
        let runs = pod_start(&home, dir.path())?;
        println!("\nPODS.md's mc2, 5 runs (median ms from `hoist pod run`)\n");
        let col = |f: fn(&(f64, f64, f64)) -> f64| median(runs.iter().map(f).collect());
        println!("{:<36} {:>8.1}", "`pod run` returned", col(|r| r.0));
        println!("{:<36} {:>8.1}", "both containers started", col(|r| r.1));
        println!("{:<36} {:>8.1}", "phase Succeeded", col(|r| r.2));
    }
    Ok(())
}
