//! `hoist cp` and `hoist export` ([`hoist_engine::copy`] does the copying).

use std::io;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use hoist_engine::copy::{self, Copied};

use crate::home;

#[derive(Subcommand)]
pub enum CpCommand {
    /// Copy files/folders between a container and the local filesystem
    #[command(
        override_usage = "hoist cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       hoist cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
        after_help = "Use '-' as the source to read a tar archive from stdin\nand extract it to a directory destination in a container.\nUse '-' as the destination to stream a tar archive of a\ncontainer source to stdout."
    )]
    Cp(CpArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
}

#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy. Progress output is automatically suppressed if
    /// no terminal is attached
    #[arg(short, long)]
    quiet: bool,
    #[arg(value_name = "SRC")]
    src: String,
    #[arg(value_name = "DEST")]
    dest: String,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    container: String,
}

pub fn run(cmd: CpCommand) -> Result<()> {
    match cmd {
        CpCommand::Cp(a) => cp(a),
        CpCommand::Export(a) => export(a),
    }
}

fn cp(a: CpArgs) -> Result<()> {
    if a.src.is_empty() {
        bail!("source can not be empty");
    }
    if a.dest.is_empty() {
        bail!("destination can not be empty");
    }
    let (sc, sp) = copy::split_arg(&a.src);
    let (dc, dp) = copy::split_arg(&a.dest);
    let home = home::hoist_home()?;
    let (store, _) = crate::run::stores(&home)?;
    match (sc, dc) {
        (Some(c), None) => {
            progress_done(a.quiet, copy::copy_out(&store, c, sp, dp, a.follow_link)?);
            Ok(())
        }
        (None, Some(c)) => {
            let copied = copy::copy_in(&store, c, sp, dp, a.follow_link, a.archive)?;
            progress_done(a.quiet, copied);
            Ok(())
        }
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

/// docker's `Successfully copied 2.05kB to DEST`, on a terminal only (docker's progress output
/// is suppressed without one, and with `-q`).
fn progress_done(quiet: bool, copied: Copied) {
    if let Some((n, dest)) = copied
        && !quiet
        && rustix::termios::isatty(io::stderr())
    {
        eprintln!(
            "Successfully copied {} to {dest}",
            crate::images_format::human_size(n, 3)
        );
    }
}

/// `hoist export`.
fn export(a: ExportArgs) -> Result<()> {
    if a.output.is_none() && rustix::termios::isatty(io::stdout()) {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let home = home::hoist_home()?;
    let (store, _) = crate::run::stores(&home)?;
    Ok(copy::export(&store, &a.container, a.output.as_deref())?)
}
