//! `hoist stats`: docker's resource usage table, read from each container's cgroups (v1: the
//! memory, cpuacct, blkio and pids hierarchies at `/hoist/<id>`; v2: the one directory) and
//! from `/proc/<init>/net/dev` when the container has a network namespace of its own.
//!
//! The numbers are computed as docker's daemon and CLI compute them: CPU % is the container's
//! share of the host's CPU time between two samples, times the online CPUs; memory is the usage
//! without inactive page cache, against the limit capped at the host's memory; block I/O sums the
//! `Read`/`Write` rows of the blkio (or `io.stat`) counters. Sizes use go-units' `BytesSize`
//! (binary, 4 digits) and `HumanSizeWithPrecision(_, 3)` (decimal).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hoist_runtime::container::{Container, ContainerStore};
use hoist_runtime::exec::CgroupPaths;
use serde_json::{Value, json};

use crate::images_format::human_size;

/// docker's default table.
const DEFAULT_FORMAT: &str = "table {{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}";

/// docker's column names.
pub const HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("ID", "CONTAINER ID"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// Time between the two samples of a CPU percentage (docker's daemon samples once a second).
const INTERVAL: Duration = Duration::from_secs(1);

/// `/proc/stat` counts in clock ticks; moby takes 100 a second, as Linux reports to user space.
const CLOCK_TICKS: u64 = 100;

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: table TEMPLATE, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

/// One reading of a container's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// The container's CPU time, ns.
    pub cpu_ns: u64,
    /// The host's CPU time (all CPUs, idle included), ns.
    pub system_ns: u64,
    pub online_cpus: u32,
    pub mem_usage: u64,
    pub mem_limit: u64,
    /// `total_inactive_file` (v1) or `inactive_file` (v2) of memory.stat.
    pub inactive_file: Option<u64>,
    pub net_rx: u64,
    pub net_tx: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    pub pids: u64,
}

/// docker's `calculateCPUPercentUnix`.
pub fn cpu_percent(prev: &Sample, cur: &Sample) -> f64 {
    let cpu = cur.cpu_ns as f64 - prev.cpu_ns as f64;
    let system = cur.system_ns as f64 - prev.system_ns as f64;
    if system > 0.0 && cpu > 0.0 {
        cpu / system * f64::from(cur.online_cpus) * 100.0
    } else {
        0.0
    }
}

/// docker's `calculateMemUsageUnixNoCache`: usage without the inactive page cache.
pub fn mem_usage_no_cache(s: &Sample) -> u64 {
    match s.inactive_file {
        Some(v) if v < s.mem_usage => s.mem_usage - v,
        _ => s.mem_usage,
    }
}

/// The host's CPU time from `/proc/stat` (its `cpu` line's first seven fields, ticks to ns) and
/// the number of `cpuN` lines, as moby reads them.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u32)> {
    let mut total = None;
    let mut cpus = 0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let ticks: Vec<u64> = f.take(7).map(|v| v.parse().ok()).collect::<Option<_>>()?;
                if ticks.len() < 7 {
                    return None;
                }
                total = Some(ticks.iter().sum::<u64>() * 1_000_000_000 / CLOCK_TICKS);
            }
            Some(c) if c.starts_with("cpu") && c[3..].bytes().all(|b| b.is_ascii_digit()) => {
                cpus += 1;
            }
            _ => {}
        }
    }
    Some((total?, cpus))
}

/// One key of a `KEY VALUE` file (memory.stat).
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Bytes read and written from a v1 `blkio.*io_service_bytes*` file (`MAJ:MIN Op VALUE` rows;
/// docker counts the ops starting with `r` or `w`, so `Total` and `Sync` are left out).
pub fn parse_blkio(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, op, value] = f[..] else { continue };
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        match op.bytes().next() {
            Some(b'r' | b'R') => r += v,
            Some(b'w' | b'W') => w += v,
            _ => {}
        }
    }
    (r, w)
}

/// Bytes read and written from a v2 `io.stat` (`MAJ:MIN rbytes=N wbytes=N ...` rows).
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        for kv in line.split_whitespace().skip(1) {
            match kv.split_once('=') {
                Some(("rbytes", v)) => r += v.parse::<u64>().unwrap_or(0),
                Some(("wbytes", v)) => w += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    (r, w)
}

/// Bytes received and sent by the interfaces of a `/proc/PID/net/dev` but `lo` (docker counts
/// the container's network endpoints, never its loopback).
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_mem_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// go-units' `BytesSize`: binary units, `%.4g`.
pub fn bytes_size(bytes: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", crate::images_format::format_g(size, 4), UNITS[i])
}

/// Go's `strconv.FormatFloat(v, 'f', 2, 64) + "%"`.
fn percent(v: f64) -> String {
    format!("{v:.2}%")
}

fn read(dir: Option<&Path>, file: &str) -> Option<String> {
    std::fs::read_to_string(dir?.join(file)).ok()
}

fn read_u64(dir: Option<&Path>, file: &str) -> Option<u64> {
    read(dir, file)?.trim().parse().ok()
}

/// Reads the counters of a running container.
fn sample(c: &Container, host: &Host) -> Result<Sample> {
    let cg = CgroupPaths::for_container(c.id(), Some(&PathBuf::from(format!("/hoist/{}", c.id()))))
        .with_context(|| format!("the cgroups of {}", c.name()))?;
    let proc_stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let (system_ns, online_cpus) =
        parse_proc_stat(&proc_stat).context("no cpu line in /proc/stat")?;
    let mut s = Sample {
        system_ns,
        online_cpus,
        ..Sample::default()
    };
    if cg.is_v2() {
        let d = cg.dir("");
        s.cpu_ns = read(d, "cpu.stat")
            .and_then(|t| stat_value(&t, "usage_usec"))
            .unwrap_or(0)
            * 1000;
        s.mem_usage = read_u64(d, "memory.current").unwrap_or(0);
        s.mem_limit = read_u64(d, "memory.max").unwrap_or(u64::MAX);
        s.inactive_file = read(d, "memory.stat").and_then(|t| stat_value(&t, "inactive_file"));
        (s.blk_read, s.blk_write) = read(d, "io.stat").map_or((0, 0), |t| parse_io_stat(&t));
        s.pids = read_u64(d, "pids.current").unwrap_or(0);
    } else {
        let mem = cg.dir("memory");
        s.cpu_ns = read_u64(cg.dir("cpuacct"), "cpuacct.usage").unwrap_or(0);
        s.mem_usage = read_u64(mem, "memory.usage_in_bytes").unwrap_or(0);
        s.mem_limit = read_u64(mem, "memory.limit_in_bytes").unwrap_or(u64::MAX);
        s.inactive_file =
            read(mem, "memory.stat").and_then(|t| stat_value(&t, "total_inactive_file"));
        let blkio = cg.dir("blkio");
        // containerd's order: the CFQ/BFQ counters where the kernel keeps them, else throttling's.
        (s.blk_read, s.blk_write) = [
            "blkio.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        ]
        .iter()
        .filter_map(|f| read(blkio, f))
        .map(|t| parse_blkio(&t))
        .find(|rw| *rw != (0, 0))
        .unwrap_or((0, 0));
        s.pids = read_u64(cg.dir("pids"), "pids.current").unwrap_or(0);
    }
    // The daemon's rule: no limit (or one above the host's memory) is the host's memory.
    if host.mem_total > 0 && s.mem_limit > host.mem_total {
        s.mem_limit = host.mem_total;
    }
    if let Some(init) = c.state.init {
        let ns = std::fs::read_link(format!("/proc/{}/ns/net", init.pid)).ok();
        // On the host's network (`bridge`, `host` here) there is no endpoint of its own: 0B, as
        // docker's `--network host`.
        if ns.is_some() && ns != host.netns {
            let dev =
                std::fs::read_to_string(format!("/proc/{}/net/dev", init.pid)).unwrap_or_default();
            (s.net_rx, s.net_tx) = parse_net_dev(&dev);
        }
    }
    Ok(s)
}

struct Host {
    mem_total: u64,
    netns: Option<PathBuf>,
}

/// A row of the table: docker's `StatsEntry` as its template fields.
pub fn row(
    container: &str,
    c: &Container,
    prev: Option<&Sample>,
    cur: Option<&Sample>,
    trunc: bool,
) -> Value {
    let id = if trunc { c.short_id() } else { c.id() };
    let name = if c.name().is_empty() { "--" } else { c.name() };
    let (cpu, mem, limit, perc, net, blk, pids) = match (prev, cur) {
        (Some(p), Some(s)) => {
            let used = mem_usage_no_cache(s);
            let perc = if s.mem_limit != 0 {
                used as f64 / s.mem_limit as f64 * 100.0
            } else {
                0.0
            };
            (
                cpu_percent(p, s),
                used,
                s.mem_limit,
                perc,
                (s.net_rx, s.net_tx),
                (s.blk_read, s.blk_write),
                s.pids,
            )
        }
        // Not running: docker's daemon answers an empty sample.
        _ => (0.0, 0, 0, 0.0, (0, 0), (0, 0), 0),
    };
    json!({
        "Container": container,
        "Name": name,
        "ID": id,
        "CPUPerc": percent(cpu),
        "MemUsage": format!("{} / {}", bytes_size(mem as f64), bytes_size(limit as f64)),
        "MemPerc": percent(perc),
        "NetIO": format!("{} / {}", human_size(net.0, 3), human_size(net.1, 3)),
        "BlockIO": format!("{} / {}", human_size(blk.0, 3), human_size(blk.1, 3)),
        "PIDs": pids.to_string(),
    })
}

/// The containers shown and the name each is shown as (`.Container`): those named, as named;
/// else the running ones (every one with `-a`), by short id.
fn targets(store: &ContainerStore, a: &StatsArgs) -> Result<Vec<(String, String)>> {
    if a.containers.is_empty() {
        return Ok(store
            .list()?
            .into_iter()
            .filter(|c| a.all || c.state.running())
            .map(|c| (c.short_id().to_owned(), c.id().to_owned()))
            .collect());
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut missing = Vec::new();
    for n in &a.containers {
        match store.resolve(n) {
            Ok(id) => {
                if !out.iter().any(|(shown, _)| shown == n) {
                    out.push((n.clone(), id));
                }
            }
            Err(e) => missing.push(e.to_string()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!("{}", missing.join("\n"));
    }
    Ok(out)
}

pub fn run(a: StatsArgs) -> Result<()> {
    let home = crate::home::hoist_home()?;
    let (store, _) = crate::run::stores(&home)?;
    let format = crate::format::Format::parse(Some(a.format.as_deref().unwrap_or(DEFAULT_FORMAT)))?;
    let format = if format.is_default() {
        crate::format::Format::parse(Some(DEFAULT_FORMAT))?
    } else {
        format
    };
    let host = Host {
        mem_total: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_mem_total(&t))
            .unwrap_or(0),
        netns: std::fs::read_link("/proc/self/ns/net").ok(),
    };
    let explicit = !a.containers.is_empty();
    let mut prev: Vec<(String, Option<Sample>)> = Vec::new();
    let mut first = true;
    loop {
        let shown = targets(&store, &a)?;
        let mut current = Vec::new();
        let mut containers = Vec::new();
        for (label, id) in &shown {
            let Ok(c) = store.load(id) else { continue };
            let s = if c.state.running() {
                sample(&c, &host).ok()
            } else {
                None
            };
            current.push((id.clone(), s));
            containers.push((label.clone(), c));
        }
        if first {
            // The first CPU percentage needs a second sample, as docker's daemon takes.
            first = false;
            prev = current;
            std::thread::sleep(INTERVAL);
            continue;
        }
        let rows: Vec<Value> = containers
            .iter()
            .zip(&current)
            .map(|((label, c), (id, cur))| {
                let p = prev
                    .iter()
                    .find(|(i, _)| i == id)
                    .and_then(|(_, s)| s.as_ref());
                row(label, c, p.or(cur.as_ref()), cur.as_ref(), !a.no_trunc)
            })
            .collect();
        let table = format.render(&rows, HEADERS)?;
        let mut out = std::io::stdout().lock();
        if a.no_stream {
            out.write_all(table.as_bytes())
                .and_then(|()| out.flush())
                .context("writing to stdout")?;
            return Ok(());
        }
        // docker's redraw: home, each line then erase-to-end-of-line, erase below.
        let mut frame = String::from("\x1b[H");
        for line in table.lines() {
            frame.push_str(line);
            frame.push_str("\x1b[K\n");
        }
        frame.push_str("\x1b[J");
        out.write_all(frame.as_bytes())
            .and_then(|()| out.flush())
            .context("writing to stdout")?;
        drop(out);
        // Named containers that have all stopped: nothing will change any more.
        if explicit && containers.iter().all(|(_, c)| !c.state.running()) {
            return Ok(());
        }
        prev = current;
        std::thread::sleep(INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_go_units() {
        // BytesSize: binary units, 4 significant digits.
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1023.0), "1023B");
        assert_eq!(bytes_size(1024.0), "1KiB");
        assert_eq!(bytes_size(319_488.0), "312KiB");
        assert_eq!(bytes_size(1_572_864.0), "1.5MiB");
        assert_eq!(bytes_size(25_275_101_184.0), "23.54GiB");
        assert_eq!(bytes_size(1_048_575.0), "1024KiB");
        assert_eq!(bytes_size(123_456_789.0), "117.7MiB");
        // HumanSizeWithPrecision(_, 3): decimal.
        assert_eq!(human_size(1_234, 3), "1.23kB");
        assert_eq!(human_size(0, 3), "0B");
        assert_eq!(percent(0.0), "0.00%");
        assert_eq!(percent(12.345_6), "12.35%");
    }

    #[test]
    fn cpu_percent_from_two_samples() {
        let prev = Sample {
            cpu_ns: 1_000_000_000,
            system_ns: 100_000_000_000,
            online_cpus: 2,
            ..Sample::default()
        };
        // 0.5 s of the container's CPU time in 2 s of both CPUs (4 s of host time).
        let cur = Sample {
            cpu_ns: 1_500_000_000,
            system_ns: 104_000_000_000,
            online_cpus: 2,
            ..Sample::default()
        };
        assert!((cpu_percent(&prev, &cur) - 25.0).abs() < 1e-9);
        assert_eq!(percent(cpu_percent(&prev, &cur)), "25.00%");
        // No progress of either clock, or a counter that went back: 0, as docker's.
        assert_eq!(cpu_percent(&cur, &cur), 0.0);
        assert_eq!(cpu_percent(&cur, &prev), 0.0);
    }

    #[test]
    fn proc_stat() {
        let text = "cpu  100 5 50 1000 10 1 4 7 0 0\ncpu0 50 2 25 500 5 0 2 3 0 0\ncpu1 50 3 25 500 5 1 2 4 0 0\nintr 1 2 3\nctxt 9\n";
        // user..softirq = 1170 ticks; steal (7) is not counted, as moby does not.
        assert_eq!(parse_proc_stat(text), Some((11_700_000_000, 2)));
        assert_eq!(parse_proc_stat("intr 1\n"), None);
    }

    #[test]
    fn memory_without_inactive_cache() {
        let stat = "cache 8192\nrss 4096\ntotal_cache 8192\ntotal_inactive_file 12288\ntotal_active_file 0\n";
        assert_eq!(stat_value(stat, "total_inactive_file"), Some(12288));
        assert_eq!(stat_value(stat, "inactive_file"), None);
        let s = Sample {
            mem_usage: 331_776,
            inactive_file: stat_value(stat, "total_inactive_file"),
            ..Sample::default()
        };
        assert_eq!(mem_usage_no_cache(&s), 319_488);
        // More inactive cache than usage (counters read at different times): usage as it is.
        let s = Sample {
            mem_usage: 4096,
            inactive_file: Some(8192),
            ..Sample::default()
        };
        assert_eq!(mem_usage_no_cache(&s), 4096);
        assert_eq!(
            parse_mem_total("MemTotal:       24683984 kB\nMemFree: 1 kB\n"),
            Some(24_683_984 * 1024)
        );
    }

    #[test]
    fn block_and_network_counters() {
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 8192\n8:0 Async 4096\n8:0 Discard 0\n8:0 Total 12288\n8:16 Read 100\nTotal 12388\n";
        assert_eq!(parse_blkio(v1), (4196, 8192));
        assert_eq!(parse_blkio("Total 0\n"), (0, 0));
        let v2 = "8:0 rbytes=1000 wbytes=2000 rios=3 wios=4 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=1 wios=1\n";
        assert_eq!(parse_io_stat(v2), (1001, 2002));
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    9000      10    0    0    0     0          0         0     9000      10    0    0    0     0       0          0\n  eth0:    1500      12    0    0    0     0          0         0      700       8    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(dev), (1500, 700));
    }
}
