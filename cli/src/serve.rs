//! `hoist serve`: the registry.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on: HOST:PORT, [IPV6]:PORT, or :PORT for every interface, as the CNCF
    /// registry's `addr` [default: 127.0.0.1:5000]
    #[arg(long, value_name = "ADDR", value_parser = hoist_registry::config::parse_listen)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory [default: ./hoist-data]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// TOML configuration file; flags override it, HOIST_* variables override the file
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// File whose first line is the initial `admin` password: creates `admin` on first start and
    /// turns authentication on (also HOIST_ADMIN_PASSWORD). Without either, and without users
    /// in the data directory, the registry runs open
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,
    /// Allow running open (no authentication) on a non-loopback address
    #[arg(long)]
    insecure_no_auth: bool,
    /// Serve TLS with this PEM certificate (and chain), taken again on SIGHUP or when the file
    /// changes (also HOIST_TLS_CERT)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (also HOIST_TLS_KEY)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept client certificates signed by these PEM CAs: a certificate authenticates as the
    /// user its subject's CN names (also HOIST_TLS_CLIENT_CA)
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
}

fn init_logging(format: hoist_registry::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        hoist_registry::LogFormat::Json => builder.json().init(),
        hoist_registry::LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

pub fn run(args: ServeArgs) -> Result<()> {
    let mut config =
        hoist_registry::Config::load(args.config.as_deref(), |k| std::env::var(k).ok())
            .context("loading the registry configuration")?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data = data;
    }
    if let Some(file) = args.admin_password_file {
        config.admin_password_file = Some(file);
        // The flag names the password source: it wins over the environment.
        config.admin_password = None;
    }
    if args.insecure_no_auth {
        config.insecure_no_auth = true;
    }
    if let Some(cert) = args.tls_cert {
        config.tls_cert = Some(cert);
    }
    if let Some(key) = args.tls_key {
        config.tls_key = Some(key);
    }
    if let Some(ca) = args.tls_client_ca {
        config.tls_client_ca = Some(ca);
    }
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(hoist_registry::serve(config, shutdown_signal()))
        .context("hoist serve")
}
