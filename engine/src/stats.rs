//! A running container's counters, read as docker's daemon reads them: its cgroups (v1: the
//! memory, cpuacct, blkio and pids hierarchies at `/hoist/<id>`; v2: the one directory) and
//! `/proc/<init>/net/dev` when the container has a network namespace of its own.

use std::path::{Path, PathBuf};

use hoist_runtime::container::Container;
use hoist_runtime::exec::CgroupPaths;

use crate::{OptionExt, Result, ResultExt};

/// `/proc/stat` counts in clock ticks; moby takes 100 a second, as Linux reports to user space.
const CLOCK_TICKS: u64 = 100;

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

fn read(dir: Option<&Path>, file: &str) -> Option<String> {
    std::fs::read_to_string(dir?.join(file)).ok()
}

fn read_u64(dir: Option<&Path>, file: &str) -> Option<u64> {
    read(dir, file)?.trim().parse().ok()
}

/// Reads the counters of a running container.
pub fn sample(c: &Container, host: &HostInfo) -> Result<Sample> {
    let cg = CgroupPaths::for_container(c.id(), Some(&PathBuf::from(format!("/hoist/{}", c.id()))))
        .with_ctx(|| format!("the cgroups of {}", c.name()))?;
    let proc_stat = std::fs::read_to_string("/proc/stat").ctx("reading /proc/stat")?;
    let (system_ns, online_cpus) =
        parse_proc_stat(&proc_stat).or_invalid(|| "no cpu line in /proc/stat")?;
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

/// What a sample compares against: the host's memory and network namespace.
pub struct HostInfo {
    pub mem_total: u64,
    pub netns: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(format!("{:.2}%", cpu_percent(&prev, &cur)), "25.00%");
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
