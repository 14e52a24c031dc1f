//! `hoist`: one binary for container images. Thin: parses the command line, sets up logging and
//! calls the libraries. Each command family lives in its own module.

mod admin;
mod build;
mod containers;
mod filter;
mod format;
mod home;
mod images;
mod images_format;
mod layer_gc;
mod layer_sizes;
mod listing;
mod run;
mod serve;
mod sysinfo;
mod transfer;
mod transfer_progress;
mod transfer_store;
mod verify;
mod volumes;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hoist", version, about = "one toolchain for container images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an OCI distribution-spec v1.1 registry
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Images(images::ImageCommand),
    #[command(flatten)]
    Transfer(transfer::TransferCommand),
    #[command(flatten)]
    Admin(admin::AdminCommand),
    #[command(flatten)]
    Build(build::BuildCommand),
    /// Create and run a new container from an image
    Run(Box<run::RunArgs>),
    /// The detached supervisor of a container (internal)
    #[command(name = "__supervise", hide = true)]
    Supervise(run::SuperviseArgs),
    #[command(flatten)]
    Containers(containers::ContainerCommand),
    #[command(flatten)]
    Volumes(volumes::VolumeCommand),
    /// Verify an image: manifest, config, layer blobs and unpacked layers
    Verify(verify::VerifyArgs),
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Images(cmd) => images::run(cmd),
        Command::Transfer(cmd) => transfer::run(cmd),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Build(cmd) => build::run(cmd),
        Command::Run(args) => run::run(*args),
        Command::Supervise(args) => run::supervise(args),
        Command::Containers(cmd) => containers::run(cmd),
        Command::Volumes(cmd) => volumes::run(cmd),
        Command::Verify(args) => verify::run(args),
    }
}

/// Errors end the program with one line (the whole cause chain) and exit status 1.
fn main() -> ExitCode {
    // A re-exec of this binary as a container's init helper never returns from here.
    hoist_runtime::exec::init_if_requested();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The line an error ends the program with: `hoist: ` and the cause chain, said once even when
/// the outermost context already names the program (`hoist serve: ...`).
pub fn error_line(e: &anyhow::Error) -> String {
    let chain = error_chain(e);
    if chain.starts_with("hoist ") || chain.starts_with("hoist:") {
        chain
    } else {
        format!("hoist: {chain}")
    }
}

/// The cause chain as one message, `outer: inner: ...`, each cause said once: a library error
/// whose message already includes its source is not followed by that source again.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod error_tests {
    /// A library error as thiserror's `#[error("step 2: {source}")]` makes it.
    #[derive(Debug)]
    struct Repeats {
        source: std::io::Error,
    }

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "step 2: {}", self.source)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let inner = std::io::Error::other("exec /bin/sh: no such file or directory");
        let e = anyhow::Error::new(Repeats { source: inner }).context("building");
        assert_eq!(
            super::error_chain(&e),
            "building: step 2: exec /bin/sh: no such file or directory"
        );
        let plain = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(super::error_chain(&plain), "outer: middle: inner");
    }

    #[test]
    fn the_program_is_named_once() {
        let e = anyhow::anyhow!("address in use").context("hoist serve");
        assert_eq!(super::error_line(&e), "hoist serve: address in use");
        let e = anyhow::anyhow!("no such image: x").context("inspecting x");
        assert_eq!(
            super::error_line(&e),
            "hoist: inspecting x: no such image: x"
        );
    }
}
