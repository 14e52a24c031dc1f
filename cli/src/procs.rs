//! `hoist top`, `stats`, `port` and `rename` (and their `hoist container ...` forms): what a
//! docker user asks of a container after `ps`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use hoist_runtime::container::{Container, RenameError};
use hoist_runtime::exec::CgroupPaths;

#[derive(Subcommand)]
pub enum ProcsCommand {
    /// Display the running processes of a container
    #[command(override_usage = "hoist top CONTAINER [ps OPTIONS]")]
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(crate::stats::StatsArgs),
    /// List port mappings or a specific mapping for the container
    #[command(override_usage = "hoist port CONTAINER [PRIVATE_PORT[/PROTO]]")]
    Port(PortArgs),
    /// Rename a container
    Rename(RenameArgs),
}

#[derive(Args)]
pub struct TopArgs {
    /// The container, then the options of `ps` (default `-ef`)
    #[arg(
        value_names = ["CONTAINER", "ps OPTIONS"],
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    argv: Vec<String>,
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

pub fn run(cmd: ProcsCommand) -> Result<()> {
    match cmd {
        ProcsCommand::Top(a) => top(a),
        ProcsCommand::Stats(a) => crate::stats::run(a),
        ProcsCommand::Port(a) => port(a),
        ProcsCommand::Rename(a) => rename(a),
    }
}

fn store() -> Result<hoist_runtime::container::ContainerStore> {
    let home = crate::home::hoist_home()?;
    Ok(crate::run::stores(&home)?.0)
}

fn print_out(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// The host pids of a running container's processes (its cgroup's).
fn container_pids(c: &Container) -> Result<Vec<i32>> {
    let cg = CgroupPaths::for_container(c.id(), Some(&PathBuf::from(format!("/hoist/{}", c.id()))))
        .with_context(|| format!("the cgroups of {}", c.name()))?;
    let mut pids = cg.pids();
    if pids.is_empty()
        && let Some(init) = c.state.init
    {
        pids.push(init.pid);
    }
    Ok(pids)
}

/// docker's refusal of `KEY=PID...` ps options other than `pid=` (they would rename the PID
/// column the rows are picked by).
fn validate_ps_args(args: &str) -> Result<()> {
    let words: Vec<&str> = args.split_ascii_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        // `\s+([^\s]*)=\s*(PID[^\s]*)`: a word after whitespace, `=`, then PID... (maybe in
        // the next word).
        if i == 0 && !args.starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let Some((k, v)) = w.split_once('=') else {
            continue;
        };
        let v = if v.is_empty() {
            words.get(i + 1).copied().unwrap_or("")
        } else {
            v
        };
        if v.starts_with("PID") && k != "pid" {
            bail!("specifying \"{k}={v}\" is not allowed");
        }
    }
    Ok(())
}

/// The titles and rows of `ps` output whose PID is one of `pids`, as docker's daemon keeps them:
/// thread lines (`-` as PID) stay with the process before them, and cells past the last title
/// are joined into its column (CMD has spaces).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = output.split('\n');
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
    let mut rows = Vec::new();
    let mut kept = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col) else {
            continue;
        };
        let keep = if *pid == "-" {
            kept
        } else {
            let p: i32 = pid
                .parse()
                .map_err(|e| anyhow!("unexpected pid '{pid}': {e}"))?;
            kept = pids.contains(&p);
            kept
        };
        if keep {
            let last = titles.len().saturating_sub(1).min(fields.len());
            let mut row: Vec<String> = fields[..last].iter().map(|s| (*s).to_owned()).collect();
            row.push(fields[last..].join(" "));
            rows.push(row);
        }
    }
    Ok((titles, rows))
}

/// Go's tabwriter as `docker top` sets it up (min width 20, padding 3): every cell but a line's
/// last is padded to its column's width.
pub fn tabwrite_top(lines: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for cells in lines {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(20);
            }
            widths[i] = widths[i].max(c.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for cells in lines {
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let w = widths[i];
                out.push_str(&format!("{c:<w$}"));
            }
        }
        out.push('\n');
    }
    out
}

fn top(a: TopArgs) -> Result<()> {
    let (name, ps_args) = a.argv.split_first().expect("clap requires CONTAINER");
    // docker joins the options with spaces and the daemon splits them again.
    let joined = ps_args.join(" ");
    let joined = if joined.is_empty() {
        "-ef".to_owned()
    } else {
        joined
    };
    validate_ps_args(&joined)?;
    let store = store()?;
    let c = store.get(name)?;
    if !c.state.running() {
        bail!("container {} is not running", c.id());
    }
    let pids = container_pids(&c)?;
    let args: Vec<&str> = joined.split(' ').collect();
    let q = format!(
        "-q{}",
        pids.iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut out = Command::new("ps")
        .args(&args)
        .arg(&q)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        // Some options (f) cannot go with -q: docker runs ps again without it.
        out = Command::new("ps")
            .args(&args)
            .output()
            .context("running ps")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err.lines().next().unwrap_or_default();
            if first.is_empty() {
                bail!("ps: {}", out.status);
            }
            bail!("ps: {first}");
        }
    }
    let (titles, rows) = parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)?;
    let mut lines = vec![titles];
    lines.extend(rows);
    print_out(&tabwrite_top(&lines))
}

/// A port as docker's `port` takes it: `80`, `80/tcp`, `53/udp`; the protocol defaults to tcp.
pub fn parse_port(s: &str) -> Result<(u16, String)> {
    let (port, proto) = s.split_once('/').unwrap_or((s, ""));
    let n: u16 = port
        .parse()
        .map_err(|e| anyhow!("invalid port ({port}): {e}"))?;
    Ok((n, if proto.is_empty() { "tcp" } else { proto }.to_owned()))
}

fn port(a: PortArgs) -> Result<()> {
    let store = store()?;
    store.get(&a.container)?;
    // hoist publishes no ports (containers use the host's network, where their ports are
    // reachable directly): `run -p` records none, so there is no mapping to list.
    if let Some(p) = &a.port {
        parse_port(p)?;
        bail!("no public port '{p}' published for {}", a.container);
    }
    Ok(())
}

fn rename(a: RenameArgs) -> Result<()> {
    let store = store()?;
    match store.rename(a.container.trim(), a.new_name.trim()) {
        Ok(_) => Ok(()),
        Err(e @ RenameError::Empty) => Err(e.into()),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("failed to rename container named {}", a.container))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
root           1       0  0 13:00 ?        00:00:01 /sbin/init splash\n\
root        3598    3577  4 14:01 ?        00:00:00 sleep 1000\n\
root        3601    3598  0 14:01 ?        00:00:00 sh -c echo a  b\n\
root        3700       1  0 14:01 ?        00:00:00 other\n";

    #[test]
    fn ps_rows_of_the_container() {
        let (titles, rows) = parse_ps(PS, &[3598, 3601]).unwrap();
        assert_eq!(
            titles,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], "3598");
        assert_eq!(rows[0][7], "sleep 1000");
        // The command's words are one cell, single-spaced as docker's daemon joins them.
        assert_eq!(rows[1][7], "sh -c echo a b");
        assert!(parse_ps("USER COMMAND\nroot x\n", &[1]).is_err());
    }

    #[test]
    fn thread_lines_follow_their_process() {
        let ps = "PID TID CMD\n3598 - sleep\n- 3598 -\n- 3599 -\n3700 - other\n- 3700 -\n";
        let (_, rows) = parse_ps(ps, &[3598]).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], ["-", "3599", "-"]);
    }

    #[test]
    fn top_table_as_docker_prints_it() {
        let lines = vec![
            vec!["UID".to_owned(), "PID".to_owned(), "CMD".to_owned()],
            vec![
                "root".to_owned(),
                "3598".to_owned(),
                "sleep 1000".to_owned(),
            ],
        ];
        assert_eq!(
            tabwrite_top(&lines),
            format!(
                "UID{}PID{}CMD\nroot{}3598{}sleep 1000\n",
                " ".repeat(17),
                " ".repeat(17),
                " ".repeat(16),
                " ".repeat(16)
            )
        );
        let long = vec![vec!["x".repeat(25), "y".to_owned()]];
        assert_eq!(tabwrite_top(&long), format!("{}   y\n", "x".repeat(25)));
    }

    #[test]
    fn ps_option_rules() {
        assert!(validate_ps_args("-ef").is_ok());
        assert!(validate_ps_args("-o pid,comm").is_ok());
        assert!(validate_ps_args("-o pid=PID").is_ok());
        let e = validate_ps_args("-o user=PID").unwrap_err();
        assert_eq!(e.to_string(), "specifying \"user=PID\" is not allowed");
        assert!(validate_ps_args("-o user= PIDX").is_err());
    }

    #[test]
    fn ports_as_docker_reads_them() {
        assert_eq!(parse_port("80").unwrap(), (80, "tcp".to_owned()));
        assert_eq!(parse_port("53/udp").unwrap(), (53, "udp".to_owned()));
        let e = parse_port("abc").unwrap_err().to_string();
        assert!(e.starts_with("invalid port (abc): "), "{e}");
        assert!(parse_port("70000").is_err());
    }
}
