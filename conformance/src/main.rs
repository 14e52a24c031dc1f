//! `hoist-conformance`: runs the distribution-spec v1.1 suite against a registry URL.
//!
//! Prints `ok NAME` or `FAIL NAME: reason` per case, then `N passed, M failed`; exits 1 when a
//! case fails.

use std::process::ExitCode;

use clap::Parser;
use hoist_conformance::suite::{self, Credentials, Options};

/// Run the OCI distribution-spec v1.1 conformance suite against a registry.
#[derive(Debug, Parser)]
#[command(name = "hoist-conformance", version)]
struct Args {
    /// Base URL of the registry, e.g. http://127.0.0.1:5000
    #[arg(long, required_unless_present = "list")]
    url: Option<String>,
    /// Report only the cases whose name contains this substring
    #[arg(long)]
    filter: Option<String>,
    /// A user with push rights: sent as Basic auth, or to the token endpoint when the registry
    /// challenges with Bearer
    #[arg(long, alias = "user")]
    username: Option<String>,
    /// The user's password (prefer --password-stdin)
    #[arg(
        long,
        requires = "username",
        conflicts_with = "password_stdin",
        env = "HOIST_CONFORMANCE_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// Read the user's password from standard input
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Prefix of the repositories the run creates
    #[arg(long, default_value = "conformance")]
    namespace: String,
    /// Also check mounts without `from`: `true` if the registry mounts them, `false` if not
    #[arg(long)]
    automatic_crossmount: Option<bool>,
    /// List the case names and exit
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for name in suite::all_case_names() {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let password = if args.password_stdin {
        let mut s = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            eprintln!("hoist-conformance: reading the password from standard input: {e}");
            return ExitCode::from(2);
        }
        Some(s.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        args.password
    };
    let credentials = match (args.username, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (Some(username), None) => {
            eprintln!(
                "hoist-conformance: --username {username} needs --password-stdin or --password"
            );
            return ExitCode::from(2);
        }
        _ => None,
    };
    let opts = Options {
        namespace: args.namespace,
        credentials,
        filter: args.filter,
        automatic_crossmount: args.automatic_crossmount,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hoist-conformance: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let url = args.url.unwrap_or_default();
    let report = runtime.block_on(suite::run(&url, &opts));
    print!("{}", report.render());
    if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
