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
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hoist_engine::stats::{
    HostInfo, Sample, cpu_percent, mem_usage_no_cache, parse_mem_total, sample,
};
use hoist_runtime::container::{Container, ContainerStore};
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
    let host = HostInfo {
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
}
