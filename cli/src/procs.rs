//! `hoist top`, `stats`, `port` and `rename` (and their `hoist container ...` forms): what a
//! docker user asks of a container after `ps`.

use std::io::Write;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use hoist_runtime::container::RenameError;

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
    let (titles, rows) = hoist_engine::Host::from_env()?.top(name, ps_args)?;
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
    let host = hoist_engine::Host::from_env()?;
    let c = host.containers()?.get(&a.container)?;
    let endpoints = host.endpoints_of(&c)?;
    let mut mappings: Vec<(u16, String, String)> = endpoints
        .iter()
        .flat_map(|(_, e)| e.ports.iter())
        .map(|p| {
            let ip = p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            (
                p.container_port,
                p.protocol.clone(),
                format!("{ip}:{}", p.host_port),
            )
        })
        .collect();
    mappings.sort();
    match &a.port {
        Some(p) => {
            let (n, proto) = parse_port(p)?;
            let found: String = mappings
                .iter()
                .filter(|(cp, pr, _)| *cp == n && *pr == proto)
                .map(|(_, _, h)| format!("{h}\n"))
                .collect();
            if found.is_empty() {
                // docker names the port as it was given.
                bail!("no public port '{p}' published for {}", a.container);
            }
            print_out(&found)
        }
        None => print_out(
            &mappings
                .iter()
                .map(|(cp, pr, h)| format!("{cp}/{pr} -> {h}\n"))
                .collect::<String>(),
        ),
    }
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
    fn ports_as_docker_reads_them() {
        assert_eq!(parse_port("80").unwrap(), (80, "tcp".to_owned()));
        assert_eq!(parse_port("53/udp").unwrap(), (53, "udp".to_owned()));
        let e = parse_port("abc").unwrap_err().to_string();
        assert!(e.starts_with("invalid port (abc): "), "{e}");
        assert!(parse_port("70000").is_err());
    }
}
