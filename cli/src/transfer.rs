//! Registry commands: credentials, pull and push.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hoist_client::credentials::{Credential, DockerConfig};
use hoist_client::{
    ClientOptions, Descriptor, Endpoints, Platform, PullOptions, PushOptions, RegistryClient,
    TransferError,
};
use hoist_oci::{Digest, Reference, RepoName};
use hoist_storage::content::Reference as ContentRef;
use hoist_storage::images::naming::split_repo;
use hoist_storage::images::{ImageError, ImageStore, repo_name};

use crate::home;
use crate::transfer_progress::Reporter;
use crate::transfer_store::{StoreSink, StoreSource};

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

/// The part of `$HOIST_HOME/config.toml` the registry commands read.
#[derive(serde::Deserialize, Default)]
struct HomeConfig {
    #[serde(default)]
    insecure_registries: Vec<String>,
}

/// Endpoints from the flags, `$HOIST_HOME/config.toml` and the certs.d directories.
pub(crate) fn endpoints(net: &NetArgs, home: &Path) -> Result<Endpoints> {
    let path = home.join("config.toml");
    let config: HomeConfig = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HomeConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let insecure = net
        .insecure_registries
        .iter()
        .chain(&config.insecure_registries);
    Ok(Endpoints::new()
        .with_insecure(insecure)
        .context("invalid insecure registry")?
        .with_certs_dirs([
            Path::new("/etc/docker/certs.d").to_path_buf(),
            home.join("certs.d"),
        ]))
}

fn reference(s: &str) -> Result<Reference> {
    Reference::parse(s).with_context(|| format!("invalid image reference {s:?}"))
}

async fn open_store(home: &Path) -> Result<ImageStore> {
    ImageStore::open(home)
        .await
        .with_context(|| format!("opening the local store in {}", home.display()))
}

/// One clear line for a transfer failure.
fn explain(e: TransferError, what: &str, reference: &Reference) -> anyhow::Error {
    let host = reference.registry();
    match e {
        TransferError::Unauthorized { .. } => anyhow!(
            "{what} {}: unauthorized: authentication required (run `hoist login {host}`)",
            reference.familiar()
        ),
        TransferError::Token { detail, .. } => anyhow!(
            "{what} {}: unauthorized: {detail} (run `hoist login {host}`)",
            reference.familiar()
        ),
        TransferError::NotFound { .. } => anyhow!(
            "{what} {}: manifest unknown: the registry has no such image",
            reference.familiar()
        ),
        TransferError::Connection { source, .. } => anyhow!(
            "{what} {}: cannot reach registry {host}: {}",
            reference.familiar(),
            error_chain(&source)
        ),
        e => anyhow::Error::new(e).context(format!("{what} {}", reference.familiar())),
    }
}

/// A reqwest error with its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

async fn connect(
    reference: &Reference,
    endpoints: &Endpoints,
    what: &str,
) -> Result<RegistryClient> {
    let config = DockerConfig::from_env().context("reading the docker config")?;
    RegistryClient::connect(
        reference.registry(),
        endpoints,
        &config,
        ClientOptions::default(),
    )
    .await
    .map_err(|e| explain(e, what, reference))
}

/// Local repositories, other than `except`, with their tags.
async fn local_repos(store: &ImageStore, except: &RepoName) -> Result<Vec<RepoName>> {
    let tags = store
        .store()
        .all_tags()
        .await
        .context("listing local images")?;
    let names: BTreeSet<String> = tags
        .into_iter()
        .map(|t| t.repo)
        .filter(|r| r != except.as_str())
        .collect();
    Ok(names
        .into_iter()
        .filter_map(|r| RepoName::parse(&r).ok())
        .collect())
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
                error_chain(&source)
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
    let home = home::hoist_home()?;
    let endpoints = endpoints(net, &home)?;
    let store = open_store(&home).await?;
    let repo = repo_name(&reference)?;
    let before = match store.resolve(&reference).await {
        Ok(r) => Some(r.digest),
        Err(ImageError::NotFound(_)) => None,
        Err(e) => return Err(e).context("reading the local store"),
    };
    let client = connect(&reference, &endpoints, "pull").await?;
    let others = local_repos(&store, &repo).await?;
    let sink = StoreSink::new(store.clone(), repo.clone(), others);
    let reporter = Reporter::new(quiet || to_stderr, "Pull complete");
    let options = PullOptions {
        platform: platform.unwrap_or_else(Platform::host),
        progress: reporter.callback(),
        ..PullOptions::default()
    };
    if !quiet && let Some(t) = reference.tag() {
        say(format!("{t}: Pulling from {}", reference.repository()));
    }
    let pulled = client
        .pull(&reference, &sink, &options)
        .await
        .map_err(|e| explain(e, "pull", &reference))?;
    reporter.settle(&pulled.config.digest);
    reporter.finish();

    // Blobs and manifests are in the store as blobs; record the manifests, the index last, and
    // point the tag at the top one.
    let tag = reference.tag().filter(|_| reference.digest().is_none());
    let manifest_tag = if pulled.index.is_none() { tag } else { None };
    record_manifest(&store, &repo, &pulled.manifest, manifest_tag).await?;
    if let Some(index) = &pulled.index {
        record_manifest(&store, &repo, index, tag).await?;
    }
    let digest = pulled.digest();
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

async fn record_manifest(
    store: &ImageStore,
    repo: &RepoName,
    d: &Descriptor,
    tag: Option<&hoist_oci::Tag>,
) -> Result<()> {
    let bytes = store
        .read_blob(repo, &d.digest, hoist_client::transfer::MAX_MANIFEST_SIZE)
        .await
        .with_context(|| format!("reading the pulled manifest {}", d.digest))?;
    store
        .put_manifest(repo, &d.media_type, bytes, tag)
        .await
        .with_context(|| format!("storing manifest {}", d.digest))?;
    Ok(())
}

// ----- push -----

/// What a push sends for `resolved`: itself, unless it is an index some of whose platforms are
/// not stored locally (a one-platform pull keeps the whole index). Then, as docker does with a
/// partial index, the single-platform image that is there (the host's, else the first stored)
/// is pushed, and the index's digest is returned to say so. Docker's classic store and podman
/// keep only the pulled platform, so they push the same manifest.
async fn push_root(
    store: &ImageStore,
    resolved: &hoist_storage::images::Resolved,
) -> Result<(Descriptor, Bytes, Option<Digest>)> {
    let whole = Descriptor {
        media_type: resolved.media_type.clone(),
        digest: resolved.digest.clone(),
        size: resolved.bytes.len() as u64,
    };
    if !hoist_oci::media_type::is_index(&resolved.media_type) {
        return Ok((whole, resolved.bytes.clone(), None));
    }
    let index: serde_json::Value =
        serde_json::from_slice(&resolved.bytes).context("parsing the local index")?;
    let mut stored = Vec::new();
    let mut missing = false;
    for m in index
        .get("manifests")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        let Some(d) = m
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(|d| Digest::parse(d).ok())
        else {
            continue;
        };
        match store
            .store()
            .manifest_get(&resolved.repo, &ContentRef::Digest(d.clone()))
            .await
        {
            Ok(child) => stored.push((m.get("platform").cloned(), child)),
            Err(_) => missing = true,
        }
    }
    if !missing {
        return Ok((whole, resolved.bytes.clone(), None));
    }
    let host = hoist_storage::images::platform::Platform::host();
    let is_host = |p: &Option<serde_json::Value>| {
        p.as_ref().is_some_and(|p| {
            p.get("os").and_then(|v| v.as_str()) == Some(host.os.as_str())
                && p.get("architecture").and_then(|v| v.as_str())
                    == Some(host.architecture.as_str())
        })
    };
    let pick = stored
        .iter()
        .position(|(p, _)| is_host(p))
        .or_else(|| (!stored.is_empty()).then_some(0));
    let Some(i) = pick else {
        bail!(
            "{}: no platform of this multi-platform image is stored locally",
            resolved.digest
        );
    };
    let child = stored.swap_remove(i).1;
    let root = Descriptor {
        media_type: child.media_type,
        digest: child.digest,
        size: child.bytes.len() as u64,
    };
    Ok((root, child.bytes, Some(resolved.digest.clone())))
}

/// A stored manifest and, for an index, every child manifest stored locally, parsed.
pub(crate) async fn stored_manifests(
    store: &ImageStore,
    repo: &RepoName,
    bytes: &Bytes,
) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    let mut pending = vec![bytes.clone()];
    while let Some(b) = pending.pop() {
        let v: serde_json::Value = serde_json::from_slice(&b).context("parsing a manifest")?;
        for m in v
            .get("manifests")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
        {
            let Some(d) = descriptor_digest(m) else {
                continue;
            };
            if let Ok(child) = store
                .store()
                .manifest_get(repo, &ContentRef::Digest(d))
                .await
            {
                pending.push(child.bytes);
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// The digest a descriptor names, when it is a valid one.
pub(crate) fn descriptor_digest(d: &serde_json::Value) -> Option<Digest> {
    d.get("digest")
        .and_then(|d| d.as_str())
        .and_then(|d| Digest::parse(d).ok())
}

/// The blobs a stored manifest names (for an index, those of the children stored locally).
async fn blobs_of(store: &ImageStore, repo: &RepoName, bytes: &Bytes) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for v in stored_manifests(store, repo, bytes).await? {
        out.extend(v.get("config").and_then(descriptor_digest));
        for l in v
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            out.extend(descriptor_digest(l));
        }
    }
    Ok(out)
}

/// Repositories of the registry `host` (other local tags) holding some of `blobs`, most shared
/// first: the registry is asked to mount from them.
async fn mount_candidates(
    store: &ImageStore,
    repo: &RepoName,
    host: &str,
    blobs: &[Digest],
) -> Result<Vec<String>> {
    let mut shared: HashMap<String, usize> = HashMap::new();
    for other in local_repos(store, repo).await? {
        let Some((h, path)) = split_repo(other.as_str()) else {
            continue;
        };
        if h != host {
            continue;
        }
        let mut n = 0;
        for b in blobs {
            if store
                .store()
                .blob_stat(&other, b)
                .await
                .context("reading the local store")?
                .is_some()
            {
                n += 1;
            }
        }
        if n > 0 {
            shared.insert(path.to_owned(), n);
        }
    }
    let mut ranked: Vec<(String, usize)> = shared.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(ranked.into_iter().take(3).map(|(r, _)| r).collect())
}

async fn push(image: &str, quiet: bool, net: &NetArgs) -> Result<()> {
    let reference = reference(image)?;
    let home = home::hoist_home()?;
    let endpoints = endpoints(net, &home)?;
    let store = open_store(&home).await?;
    let resolved = match store.resolve(&reference).await {
        Ok(r) => r,
        Err(ImageError::NotFound(_)) => bail!(
            "an image does not exist locally with the tag: {}",
            reference.familiar()
        ),
        Err(e) => return Err(e).context("reading the local store"),
    };
    let (root, root_bytes, partial) = push_root(&store, &resolved).await?;
    let blobs = blobs_of(&store, &resolved.repo, &root_bytes).await?;
    let mount_from = mount_candidates(&store, &resolved.repo, reference.registry(), &blobs).await?;
    let client = connect(&reference, &endpoints, "push").await?;
    if !quiet {
        println!(
            "The push refers to repository [{}/{}]",
            reference.registry(),
            reference.repository()
        );
    }
    let reporter = Reporter::new(quiet, "Pushed");
    reporter
        .hide(crate::transfer_progress::configs_of(&store, &resolved.repo, &resolved.bytes).await);
    let options = PushOptions {
        mount_from,
        progress: reporter.callback(),
        ..PushOptions::default()
    };
    let source = StoreSource::new(store.clone(), resolved.repo.clone());
    let report = client
        .push(&reference, &root, &source, &options)
        .await
        .map_err(|e| explain(e, "push", &reference))?;
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
