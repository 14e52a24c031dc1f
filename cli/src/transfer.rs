//! Registry commands: credentials, pull and push.

use anyhow::{Context, Result};
use clap::Subcommand;
use hoist_client::credentials::DockerConfig;

#[derive(Subcommand)]
pub enum TransferCommand {
    /// Log out from a registry (removes the credentials docker and hoist share)
    Logout {
        /// The registry [default: docker.io]
        server: Option<String>,
    },
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
    }
}
