//! `hoist`: one binary for container images. Thin: parses the command line, sets up logging and
//! calls the libraries. Each command family lives in its own module.

mod admin;
mod attach;
mod build;
mod containers;
mod cp;
mod df;
mod filter;
mod format;
mod home;
mod images;
mod images_format;
mod listing;
mod manifest;
mod network;
mod pod;
mod procs;
mod run;
mod run_flags;
mod serve;
mod service;
mod stats;
mod sysinfo;
mod transfer;
mod transfer_progress;
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
    #[command(
        override_usage = "hoist run [OPTIONS] IMAGE [COMMAND] [ARG...]",
        disable_help_flag = true
    )]
    Run(Box<run::RunArgs>),
    /// Create a new container from an image, without starting it
    #[command(
        override_usage = "hoist create [OPTIONS] IMAGE [COMMAND] [ARG...]",
        disable_help_flag = true
    )]
    Create(Box<run::RunArgs>),
    /// Attach local standard input, output, and error streams to a running container
    Attach(attach::AttachArgs),
    /// The detached supervisor of a container (internal)
    #[command(name = "__supervise", hide = true)]
    Supervise(run::SuperviseArgs),
    #[command(flatten)]
    Containers(containers::ContainerCommand),
    #[command(flatten)]
    Procs(procs::ProcsCommand),
    #[command(flatten)]
    Cp(cp::CpCommand),
    #[command(flatten)]
    Volumes(volumes::VolumeCommand),
    #[command(flatten)]
    Manifest(manifest::ManifestCommand),
    #[command(flatten)]
    Network(network::NetworkCommand),
    #[command(flatten)]
    Pod(pod::PodCommand),
    /// Verify an image: manifest, config, layer blobs and unpacked layers
    Verify(verify::VerifyArgs),
}

/// docker's prune prompt: `warning`, then "Are you sure you want to continue? [y/N]"; true for
/// y or yes.
pub fn confirm(warning: &str) -> Result<bool> {
    use anyhow::Context as _;
    use std::io::Write;
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush().context("writing to stdout")?;
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Images(cmd) => images::run(cmd),
        Command::Transfer(cmd) => transfer::run(cmd),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Build(cmd) => build::run(cmd),
        Command::Run(args) => run::run(*args),
        Command::Create(args) => run::create_cmd(*args),
        Command::Attach(args) => attach::attach_cmd(args),
        Command::Supervise(args) => run::supervise(args),
        Command::Containers(cmd) => containers::run(cmd),
        Command::Procs(cmd) => procs::run(cmd),
        Command::Cp(cmd) => cp::run(cmd),
        Command::Volumes(cmd) => volumes::run(cmd),
        Command::Verify(args) => verify::run(args),
        Command::Manifest(cmd) => manifest::run(cmd),
        Command::Network(cmd) => network::run(cmd),
        Command::Pod(cmd) => pod::run(cmd),
    }
}

/// The exit status a failure ends the program with when it is not 1: docker's 125 (`run` failed
/// before the command), 126 (the command cannot be invoked) and 127 (no such command). Attached
/// as context, it is not part of the message.
#[derive(Debug, Clone, Copy)]
pub struct Status(pub u8);

/// Says nothing: the message is the error's.
impl std::fmt::Display for Status {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

/// hoist's own commands, which keep clap's usage status 2; the docker-shaped ones (every other)
/// exit 125 for a usage error and 1 for a missing argument, as docker's do.
const HOIST_ONLY_COMMANDS: &[&str] = &["serve", "admin", "verify", "__supervise"];

/// Errors end the program with one line (the whole cause chain) and exit status 1 (or the
/// [`Status`] attached to the error).
fn main() -> ExitCode {
    // A re-exec of this binary as a container's init helper never returns from here.
    hoist_runtime::exec::init_if_requested();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let docker = std::env::args()
                .nth(1)
                .is_none_or(|c| !HOIST_ONLY_COMMANDS.contains(&c.as_str()));
            let code = e.exit_code();
            let _ = e.print();
            use clap::error::ErrorKind;
            let missing = matches!(
                e.kind(),
                ErrorKind::MissingRequiredArgument
                    | ErrorKind::WrongNumberOfValues
                    | ErrorKind::TooFewValues
            );
            return if docker && missing {
                // docker: `"docker start" requires at least 1 argument`, status 1.
                ExitCode::FAILURE
            } else if docker && code == 2 {
                ExitCode::from(125)
            } else {
                ExitCode::from(u8::try_from(code).unwrap_or(1))
            };
        }
    };
    if !relays_or_serves(&cli.command) {
        hoist_runtime::exec::sigpipe_default();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if broken_pipe(&e) => {
            // The reader of our output went away (`hoist run ... | head -1`): a quiet end, with
            // the status of a process that SIGPIPE ended.
            ExitCode::from(128 + 13)
        }
        Err(e) => {
            eprintln!("{}", error_line(&e));
            e.downcast_ref::<Status>()
                .map_or(ExitCode::FAILURE, |s| ExitCode::from(s.0))
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

/// The commands that keep SIGPIPE ignored: they relay containers' output (and must outlive a
/// closed reader long enough to clean up), serve connections, or feed pipes of their own
/// children. They handle EPIPE themselves; the other commands only print, and end quietly on a
/// closed pipe.
fn relays_or_serves(c: &Command) -> bool {
    matches!(
        c,
        Command::Serve(_)
            | Command::Run(_)
            | Command::Attach(_)
            | Command::Supervise(_)
            | Command::Build(_)
            | Command::Containers(_)
    )
}

/// Whether the failure is a write to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The cause chain as one message, `outer: inner: ...`, each cause said once: a library error
/// whose message already includes its source is not followed by that source again.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if s.is_empty() {
            // A [`Status`] context.
            continue;
        }
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
