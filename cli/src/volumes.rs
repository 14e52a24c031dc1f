//! `hoist volume create|ls|inspect|rm|prune`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::home;
use crate::images_format::table;
use crate::run::stores;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeGroup),
}

#[derive(Subcommand)]
pub enum VolumeGroup {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(NamesArgs),
    /// Remove one or more volumes (refused for a volume any container uses)
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Remove unused volumes (anonymous ones; all unused with --all)
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Set metadata for a volume (KEY=VALUE)
    #[arg(long = "label")]
    label: Vec<String>,
    /// The volume's name (random when omitted)
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Filter output (name=, dangling=, label=, driver=)
    #[arg(short, long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Format output: table TEMPLATE, json, or a Go template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn print_out(s: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(s.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

pub fn run(cmd: VolumeCommand) -> Result<()> {
    let VolumeCommand::Volume(cmd) = cmd;
    let home = home::hoist_home()?;
    let (containers, volumes) = stores(&home)?;
    match cmd {
        VolumeGroup::Create(a) => {
            let mut labels = BTreeMap::new();
            for l in &a.label {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(k.to_owned(), v.to_owned());
            }
            let v = volumes.create(a.name.as_deref(), labels)?;
            print_out(&format!("{}\n", v.name))
        }
        VolumeGroup::Ls(a) => {
            let filters = crate::filter::Filters::parse(&a.filter, crate::listing::VOLUME_FILTERS)?;
            let format = crate::format::Format::parse(a.format.as_deref())?;
            let used = containers.volumes_in_use()?;
            let mut list = Vec::new();
            for v in volumes.list()? {
                if crate::listing::volume_keep(&filters, &v, used.contains_key(&v.name))? {
                    list.push(v);
                }
            }
            if !format.is_default() && !a.quiet {
                let rows: Vec<_> = list.iter().map(crate::listing::volume_row).collect();
                return crate::format::print(&format, &rows, crate::listing::VOLUME_HEADERS);
            }
            if a.quiet {
                return print_out(
                    &list
                        .iter()
                        .map(|v| format!("{}\n", v.name))
                        .collect::<String>(),
                );
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|v| vec![v.driver.clone(), v.name.clone()])
                .collect();
            print_out(&table(&["DRIVER", "VOLUME NAME"], &rows))
        }
        VolumeGroup::Inspect(a) => {
            let mut out = Vec::new();
            for n in &a.volumes {
                out.push(serde_json::to_value(volumes.get(n)?).context("encoding the volume")?);
            }
            let mut s = serde_json::to_string_pretty(&out).context("encoding the output")?;
            s.push('\n');
            print_out(&s)
        }
        VolumeGroup::Rm(a) => {
            let in_use = containers.volumes_in_use()?;
            let mut failed = None;
            for n in &a.volumes {
                let users = in_use.get(n).cloned().unwrap_or_default();
                match volumes.remove(n, &users) {
                    Ok(()) => print_out(&format!("{n}\n"))?,
                    Err(e) => {
                        if let Some(prev) = failed.replace(anyhow::Error::new(e)) {
                            eprintln!("{}", crate::error_line(&prev));
                        }
                    }
                }
            }
            failed.map_or(Ok(()), Err)
        }
        VolumeGroup::Prune(a) => {
            if !a.force
                && !crate::confirm(&format!(
                    "WARNING! This will remove {} volumes not used by at least one container.",
                    if a.all {
                        "all local"
                    } else {
                        "anonymous local"
                    }
                ))?
            {
                return Ok(());
            }
            let in_use: HashSet<String> = containers.volumes_in_use()?.into_keys().collect();
            let removed = volumes.prune(&in_use, a.all)?;
            let mut out = String::new();
            if !removed.is_empty() {
                out.push_str("Deleted Volumes:\n");
                for n in &removed {
                    out.push_str(n);
                    out.push('\n');
                }
                out.push('\n');
            }
            print_out(&out)
        }
    }
}
