//! Registry commands: credentials, pull and push.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use hoist_client::credentials::{Credential, DockerConfig};
use hoist_client::{
    ClientOptions, Endpoints, Platform, PullOptions, PushOptions, RegistryClient, TransferError,
};
use hoist_engine::Host;
use hoist_oci::Reference;

use crate::home;
use crate::transfer_progress::Reporter;

#[derive(Subcommand)]
pub enum TransferCommand {
    /// Log in to a registry (checks the credentials, then stores them where docker does)
    Login {
        /// The registry [default: docker.io]
        server: Option<String>,
        /// Username
        #[arg(short, long)]
        username: Option<String>,
        /// Password (prefer --password-stdin)
        #[arg(short, long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Log out from a registry (removes the credentials docker and hoist share)
    Logout {
        /// The registry [default: docker.io]
        server: Option<String>,
    },
    /// Download an image from a registry into the local store
    Pull {
        /// The platform to choose from a multi-platform image (os/arch[/variant])
        #[arg(long)]
        platform: Option<Platform>,
        /// Print only the image name
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        net: NetArgs,
        /// The image (NAME[:TAG|@DIGEST])
        image: String,
    },
    /// Upload an image from the local store to a registry
    Push {
        /// Print only the digest line
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        net: NetArgs,
        /// The image (NAME[:TAG])
        image: String,
    },
}

/// How registries are reached.
#[derive(Args, Clone, Debug, Default)]
pub struct NetArgs {
    /// A registry to reach over plain HTTP (host, host:port or CIDR); repeatable. Also read
    /// from `insecure_registries` in $HOIST_HOME/config.toml
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
}

/// Endpoints from the flags, `$HOIST_HOME/config.toml` and the certs.d directories.
pub(crate) fn endpoints(net: &NetArgs, home: &Path) -> Result<Endpoints> {
    Ok(hoist_engine::transfer::endpoints(
        &net.insecure_registries,
        home,
    )?)
}

fn reference(s: &str) -> Result<Reference> {
    Reference::parse(s).with_context(|| format!("invalid image reference {s:?}"))
}

pub fn run(cmd: TransferCommand) -> Result<()> {
    match cmd {
        TransferCommand::Logout { server } => {
            let server = server.unwrap_or_else(|| hoist_oci::DEFAULT_REGISTRY.to_owned());
            let config = DockerConfig::from_env().context("reading the docker config")?;
            let removed = config
                .logout(&server)
                .with_context(|| format!("logging out of {server}"))?;
            if removed {
                println!("Removing login credentials for {server}");
            } else {
                println!("Not logged in to {server}");
            }
            Ok(())
        }
        TransferCommand::Login {
            server,
            username,
            password,
            password_stdin,
            net,
        } => login(server, username, password, password_stdin, &net),
        TransferCommand::Pull {
            platform,
            quiet,
            net,
            image,
        } => home::runtime()?.block_on(pull(&image, platform, quiet, &net, false)),
        TransferCommand::Push { quiet, net, image } => {
            home::runtime()?.block_on(push(&image, quiet, &net))
        }
    }
}

// ----- login -----

/// The registry host a `login` argument names (`https://host/v2/` is accepted, as docker does).
fn login_host(server: &str) -> String {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    if hoist_client::endpoint::is_docker_hub(&host) {
        hoist_oci::DEFAULT_REGISTRY.to_owned()
    } else {
        host
    }
}

fn login(
    server: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
    net: &NetArgs,
) -> Result<()> {
    let server = server.unwrap_or_else(|| hoist_oci::DEFAULT_REGISTRY.to_owned());
    let host = login_host(&server);
    let terminal = std::io::stdin().is_terminal();
    let username = match username {
        Some(u) => u,
        None if password_stdin => bail!("--password-stdin needs a username (-u)"),
        None if terminal => prompt_line("Username: ")?,
        None => bail!(
            "no username given and standard input is not a terminal (use -u USER with -p or --password-stdin)"
        ),
    };
    if username.is_empty() {
        bail!("a username is required");
    }
    let password = if password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = password {
        p
    } else if terminal {
        rpassword::prompt_password("Password: ").context("reading the password")?
    } else {
        bail!(
            "no password given and standard input is not a terminal (use -p or --password-stdin)"
        );
    };
    if password.is_empty() {
        bail!("a password is required");
    }
    let home = home::hoist_home()?;
    let endpoints = endpoints(net, &home)?;
    let credential = Credential::Basic {
        username: username.clone(),
        password: password.clone(),
    };
    let client = RegistryClient::new(
        &host,
        &endpoints,
        Some(credential),
        ClientOptions::default(),
    )
    .with_context(|| format!("login to {host}"))?;
    home::runtime()?
        .block_on(client.check_credentials())
        .map_err(|e| match e {
            TransferError::Unauthorized { .. } | TransferError::Token { .. } => {
                anyhow!("login to {host} failed: unauthorized: incorrect username or password")
            }
            TransferError::Connection { source, .. } => anyhow!(
                "login to {host} failed: cannot reach the registry: {}",
                hoist_engine::error::error_chain(&source)
            ),
            e => anyhow::Error::new(e).context(format!("login to {host} failed")),
        })?;
    let config = DockerConfig::from_env().context("reading the docker config")?;
    config
        .login(&host, &username, &password)
        .with_context(|| format!("saving the credentials for {host}"))?;
    println!("Login Succeeded");
    Ok(())
}

fn prompt_line(prompt: &str) -> Result<String> {
    use std::io::Write;
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading from the terminal")?;
    Ok(line.trim().to_owned())
}

// ----- pull -----

/// Pulls `image` into the local store. `to_stderr` sends the status lines to stderr, for commands
/// (`run`) whose stdout belongs to something else.
pub(crate) async fn pull(
    image: &str,
    platform: Option<Platform>,
    quiet: bool,
    net: &NetArgs,
    to_stderr: bool,
) -> Result<()> {
    let say = |line: String| {
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let reference = reference(image)?;
    let host = Host::from_env()?;
    let endpoints = endpoints(net, host.home())?;
    host.images().await?;
    let client = hoist_engine::transfer::connect(&reference, &endpoints, "pull").await?;
    let reporter = Reporter::new(quiet || to_stderr, "Pull complete");
    let options = PullOptions {
        platform: platform.unwrap_or_else(Platform::host),
        progress: reporter.callback(),
        ..PullOptions::default()
    };
    if !quiet && let Some(t) = reference.tag() {
        say(format!("{t}: Pulling from {}", reference.repository()));
    }
    let pulled = host.pull(&client, &reference, &options).await?;
    reporter.settle(&pulled.config);
    reporter.finish();
    let before = pulled.before;
    let digest = &pulled.digest;
    if quiet {
        say(reference.familiar());
        return Ok(());
    }
    say(format!("Digest: {digest}"));
    if before.as_ref() == Some(digest) {
        say(format!(
            "Status: Image is up to date for {}",
            reference.familiar()
        ));
    } else {
        say(format!(
            "Status: Downloaded newer image for {}",
            reference.familiar()
        ));
    }
    say(reference.to_string());
    Ok(())
}

pub(crate) async fn push(image: &str, quiet: bool, net: &NetArgs) -> Result<()> {
    let reference = reference(image)?;
    let host = Host::from_env()?;
    let endpoints = endpoints(net, host.home())?;
    let plan = host.push_plan(&reference).await?;
    let client = hoist_engine::transfer::connect(&reference, &endpoints, "push").await?;
    if !quiet {
        println!(
            "The push refers to repository [{}/{}]",
            reference.registry(),
            reference.repository()
        );
    }
    let reporter = Reporter::new(quiet, "Pushed");
    let store = host.images().await?;
    reporter.hide(
        crate::transfer_progress::configs_of(store, &plan.resolved.repo, &plan.resolved.bytes)
            .await,
    );
    let options = PushOptions {
        progress: reporter.callback(),
        ..PushOptions::default()
    };
    let report = host.push(&client, &reference, &plan, options).await?;
    let (root, partial) = (&plan.root, &plan.partial);
    reporter.finish();
    if let Some(index) = partial
        && !quiet
    {
        println!(
            "Not all multiplatform-content is present and only the available single-platform \
             image was pushed\n{index} -> {}",
            root.digest
        );
    }
    let target = match reference.tag() {
        Some(t) => t.to_string(),
        None => report.digest.to_string(),
    };
    println!("{target}: digest: {} size: {}", report.digest, root.size);
    Ok(())
}
