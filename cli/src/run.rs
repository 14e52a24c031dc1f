//! `hoist run` and the detached supervisor (`hoist __supervise ID`).
//!
//! `run` creates the container (image resolved and its layers unpacked and verified, names,
//! volumes, /etc files), then either supervises it itself, attached to the terminal (exit status =
//! the container's), or with `-d` starts a supervisor in its own session that outlives the CLI,
//! waits until the container runs and prints its id.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use hoist_oci::Reference;
use hoist_runtime::container::{self, Attach, ContainerStore};
use hoist_runtime::spec::{self, Network, RunOptions};
use hoist_runtime::volume::VolumeStore;
use hoist_storage::images::{ImageError, Platform};

use hoist_engine::Host;
use hoist_engine::containers::NewContainer;

use crate::home;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container id
    #[arg(short, long)]
    detach: bool,
    /// The OCI runtime: hoist (its own executor), runc, crun, or the path of another OCI
    /// runtime CLI
    #[arg(long, value_name = "RUNTIME", default_value = "hoist")]
    runtime: String,
    /// Pull the image before running: missing (when it is not in the local store), always, never
    #[arg(long, value_name = "POLICY", default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    #[command(flatten)]
    net: crate::transfer::NetArgs,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Remove the container (and its anonymous volumes) when it exits
    #[arg(long)]
    rm: bool,
    /// Keep stdin open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables (KEY=VALUE, or KEY to take it from this environment)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Overwrite the image's ENTRYPOINT ("" clears it)
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name (`-h` as docker's; help is `--help`)
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Add supplementary groups (GID or a group name of the image)
    #[arg(long = "group-add", value_name = "GROUP")]
    group_add: Vec<String>,
    /// The platform of the image: only this machine's (os/arch) runs
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Username or UID (NAME|UID[:GROUP|GID])
    #[arg(short, long)]
    user: Option<String>,
    /// Bind mount a volume: NAME:/path, /host/path:/path, /path; :ro for read-only
    #[arg(short, long = "volume", value_name = "SRC:DEST[:ro]")]
    volume: Vec<String>,
    /// Network: bridge (the default network), a network's name, none, host or container:NAME
    #[arg(long, alias = "net", default_value = "bridge")]
    network: String,
    /// Add a network-scoped alias for the container (user-defined networks)
    #[arg(long = "network-alias", alias = "net-alias", value_name = "ALIAS")]
    network_alias: Vec<String>,
    /// The container's IPv4 address on its network (user-defined networks)
    #[arg(long, value_name = "IPV4")]
    ip: Option<std::net::Ipv4Addr>,
    /// Publish a container's port to the host: [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]
    #[arg(short, long = "publish", value_name = "[IP:]HOST:CONTAINER")]
    publish: Vec<String>,
    /// Publish every port the image exposes to a free host port
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Set custom DNS servers
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// Add a custom host-to-IP mapping (HOST:IP; host-gateway for the network's gateway)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_host: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// Give extended privileges (all capabilities, no seccomp, no masked paths)
    #[arg(long)]
    privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Memory limit (64m, 1g, ...)
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs (0.5, 2, ...)
    #[arg(long)]
    cpus: Option<String>,
    /// Limit on the number of processes (-1 for unlimited)
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// rlimits: NAME=SOFT[:HARD], within the host's hard limits
    #[arg(long)]
    ulimit: Vec<String>,
    /// Signal to stop the container (default: the image's STOPSIGNAL, else SIGTERM)
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Seconds to wait for the container to stop before killing it
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<u64>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]
    #[arg(long, value_name = "MOUNT")]
    mount: Vec<String>,
    /// Mount a tmpfs directory: DEST[:OPTIONS] (size=64m,mode=1777)
    #[arg(long, value_name = "DEST[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// Add a host device: HOST[:CONTAINER][:PERMISSIONS]
    #[arg(long, value_name = "HOST[:CONTAINER][:rwm]")]
    device: Vec<String>,
    /// Security options: no-new-privileges, seccomp=unconfined, seccomp=PATH
    #[arg(long = "security-opt", value_name = "OPTION")]
    security_opt: Vec<String>,
    /// Run a reaper as PID 1 that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Set metadata on the container: KEY=VALUE
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Read labels from a file of KEY=VALUE lines (before the --label ones)
    #[arg(long = "label-file", value_name = "FILE")]
    label_file: Vec<PathBuf>,
    /// Size of /dev/shm (64m when not given)
    #[arg(long = "shm-size", value_name = "SIZE")]
    shm_size: Option<String>,
    /// Write the container id to this file (which must not exist)
    #[arg(long, value_name = "FILE")]
    cidfile: Option<PathBuf>,
    /// Log options: max-size=10m, max-file=3
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    #[command(flatten)]
    policy: crate::run_flags::PolicyArgs,
    /// The image, then the command and its arguments: everything after IMAGE belongs to the
    /// container, even words that look like hoist's flags
    #[arg(
        value_name = "IMAGE",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    argv: Vec<String>,
}

impl RunArgs {
    /// The image (the first word after the flags).
    fn image(&self) -> &str {
        &self.argv[0]
    }

    /// The command and its arguments (the words after IMAGE).
    fn command(&self) -> &[String] {
        &self.argv[1..]
    }
}

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    id: String,
    /// Start the process once a client has attached (`hoist start -a`)
    #[arg(long)]
    wait_attach: bool,
}

/// Opens the stores of `home`.
pub fn stores(home: &Path) -> Result<(ContainerStore, VolumeStore)> {
    let host = Host::new(home.to_path_buf());
    Ok((host.containers()?.clone(), host.volumes()))
}

fn lookup_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// `KEY=VALUE` lines of docker's env-file format from `files`, in order (a bare `KEY` through
/// `lookup`): `--env-file` and `--label-file`.
fn read_kv_files(files: &[PathBuf], lookup: fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        out.extend(spec::parse_env_file(
            &text,
            &f.display().to_string(),
            lookup,
        )?);
    }
    Ok(out)
}

/// The run options from the flags (everything but mounts).
fn run_options(a: &RunArgs, network: Network) -> Result<RunOptions> {
    let mut env = read_kv_files(&a.env_file, lookup_env)?;
    for e in &a.env {
        if let Some(kv) = spec::env_entry(e, lookup_env)
            .map_err(|reason| anyhow::anyhow!("invalid environment variable {e:?}: {reason}"))?
        {
            env.push(kv);
        }
    }
    if let Some(w) = &a.workdir {
        spec::check_workdir(w)?;
    }
    let security = crate::run_flags::parse_security(&a.security_opt)?;
    let mut tmpfs = a
        .tmpfs
        .iter()
        .map(|t| crate::run_flags::parse_tmpfs(t))
        .collect::<Result<Vec<_>>>()?;
    for m in &a.mount {
        if let crate::run_flags::Mount::Tmpfs(t) = crate::run_flags::parse_mount(m)? {
            tmpfs.push(t);
        }
    }
    let devices = a
        .device
        .iter()
        .map(|d| crate::run_flags::parse_device(d))
        .collect::<Result<Vec<_>>>()?;
    let shm_size = a
        .shm_size
        .as_deref()
        .map(|s| {
            crate::run_flags::parse_size(s)
                .ok()
                .filter(|b| *b > 0)
                .with_context(|| format!("invalid --shm-size {s:?}: want a positive size (64m)"))
        })
        .transpose()?;
    let limits = spec::host_hard_limits();
    let ulimits = a
        .ulimit
        .iter()
        .map(|u| spec::parse_ulimit(u, &limits))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RunOptions {
        entrypoint: a.entrypoint.clone(),
        args: a.command().to_vec(),
        env,
        user: a.user.clone(),
        group_add: a.group_add.clone(),
        groups_from_group_file_only: false,
        no_hostname_env: false,
        tmpfs,
        shm_size,
        no_new_privileges: security.no_new_privileges,
        seccomp: security.seccomp,
        init: a.init,
        devices,
        workdir: a.workdir.clone(),
        hostname: a.hostname.clone(),
        privileged: a.privileged,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        read_only: a.read_only,
        tty: a.tty,
        interactive: a.interactive,
        memory: a.memory.as_deref().map(spec::parse_memory).transpose()?,
        nano_cpus: a.cpus.as_deref().map(spec::parse_cpus).transpose()?,
        pids_limit: a.pids_limit.filter(|p| *p > 0),
        network,
        networks: Vec::new(),
        publish: Vec::new(),
        dns: Vec::new(),
        extra_hosts: Vec::new(),
        ipc_ns: None,
        uts_ns: None,
        ulimits,
        mounts: Vec::new(),
    })
}

fn log_options(opts: &[String]) -> Result<(u64, u32)> {
    let (mut size, mut files) = (10u64 << 20, 3u32);
    for o in opts {
        match o.split_once('=') {
            Some(("max-size", v)) => {
                let lower = v.to_ascii_lowercase();
                let (num, mult) = match lower.char_indices().find(|(_, c)| c.is_ascii_alphabetic())
                {
                    Some((i, _)) => (
                        &lower[..i],
                        match &lower[i..] {
                            "b" => 1,
                            "k" | "kb" => 1 << 10,
                            "m" | "mb" => 1 << 20,
                            "g" | "gb" => 1 << 30,
                            _ => bail!("invalid log option {o:?}: unknown unit"),
                        },
                    ),
                    None => (lower.as_str(), 1u64),
                };
                size = num
                    .parse::<u64>()
                    .with_context(|| format!("invalid log option {o:?}"))?
                    .saturating_mul(mult);
            }
            Some(("max-file", v)) => {
                files = v
                    .parse()
                    .with_context(|| format!("invalid log option {o:?}"))?;
            }
            _ => bail!("unknown log option {o:?}: expected max-size=SIZE or max-file=N"),
        }
    }
    Ok((size, files))
}

/// Creates the container of `a`: returns its id.
fn create(home: &Path, a: &RunArgs) -> Result<String> {
    let runtime = hoist_engine::containers::runtime_choice(&a.runtime)?;
    if a.init && runtime.is_some() {
        bail!("--init needs hoist's own runtime (--runtime hoist): its reaper is hoist's init");
    }
    if let Some(f) = &a.cidfile
        && f.exists()
    {
        bail!(
            "container ID file found, make sure the other container isn't running or delete {}",
            f.display()
        );
    }
    // docker's order: the files' labels, then --label (a later one wins); a bare KEY line (no
    // `=`) is dropped, as docker's file reader drops it.
    let mut label_args = read_kv_files(&a.label_file, |_| None)?;
    label_args.extend(a.label.iter().cloned());
    let labels = crate::run_flags::parse_labels(&label_args)?;
    if let Some(p) = &a.platform {
        let host = Platform::host();
        let want = format!("{}/{}", host.os, host.architecture);
        if p.trim_end_matches('/') != want && !p.starts_with(&format!("{want}/")) {
            bail!("image platform {p:?} cannot run here: this machine runs {want}");
        }
    }
    let host = Host::new(home.to_path_buf());
    // Network first: container:NAME must name a running container, NAME a network.
    // docker's (runconfig's `validateNetContainerMode`): what the other container's network
    // decides cannot be asked for.
    if a.network.starts_with("container:") {
        if a.hostname.is_some() {
            bail!("conflicting options: hostname and the network mode");
        }
        if !a.dns.is_empty() {
            bail!("conflicting options: dns and the network mode");
        }
        if !a.add_host.is_empty() {
            bail!("conflicting options: custom host-to-IP mapping and the network mode");
        }
        if !a.publish.is_empty() || a.publish_all {
            bail!("conflicting options: port publishing and the container type network mode");
        }
    }
    let (network, share_from, networks) = host.network_for(&a.network, &a.network_alias, a.ip)?;
    let mut publish = Vec::new();
    for p in &a.publish {
        publish.extend(crate::run_flags::parse_publish(p)?);
    }
    if (!publish.is_empty() || a.publish_all) && networks.is_empty() {
        eprintln!(
            "WARNING: Published ports are discarded when using {} network mode",
            a.network
        );
        publish.clear();
    }
    for d in &a.dns {
        d.parse::<std::net::IpAddr>()
            .with_context(|| format!("{d} is not an ip address"))?;
    }
    let mut opts = run_options(a, network)?;
    // docker's: a container on another's network has that one's hostname too.
    if let Some(other) = &share_from
        && opts.hostname.is_none()
    {
        opts.hostname = Some(
            other
                .config
                .options
                .hostname
                .clone()
                .unwrap_or_else(|| other.short_id().to_owned()),
        );
    }
    opts.networks = networks;
    opts.dns = a.dns.clone();
    opts.extra_hosts = a.add_host.clone();
    let (log_max_size, log_max_files) = log_options(&a.log_opt)?;
    let restart_policy = a.policy.restart_policy()?;
    if a.rm && !restart_policy.is_none() {
        bail!("conflicting options: cannot specify both --restart and --rm");
    }
    let healthcheck = a.policy.healthcheck()?;

    let reference = Reference::parse(a.image())
        .with_context(|| format!("invalid image reference {:?}", a.image()))?;
    let rt = home::runtime()?;
    let image = rt.block_on(async {
        let store = host.images().await?;
        let image = match store.image(&reference, &Platform::host()).await {
            Err(ImageError::NotFound(_)) if a.pull == "missing" => {
                eprintln!("Unable to find image '{}' locally", reference.familiar());
                None
            }
            _ if a.pull == "always" => None,
            found => Some(found),
        };
        let image = match image {
            Some(found) => found,
            None => {
                crate::transfer::pull(a.image(), None, false, &a.net, true).await?;
                store.image(&reference, &Platform::host()).await
            }
        }
        .with_context(|| format!("unable to find image {}", a.image()))?;
        anyhow::Ok(host.runnable(image, a.image()).await?)
    })?;
    drop(rt);
    let mounts = a
        .mount
        .iter()
        .map(|m| crate::run_flags::parse_mount(m))
        .collect::<Result<Vec<_>>>()?;
    if a.publish_all && !opts.networks.is_empty() {
        publish.extend(crate::run_flags::exposed_ports(&image.config));
    }
    opts.publish = publish;
    let id = host.create_container(NewContainer {
        name: a.name.clone(),
        image_name: a.image().to_owned(),
        image,
        options: opts,
        volumes: a.volume.clone(),
        mounts,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        auto_remove: a.rm,
        // docker's: `container:` and the other's full id.
        network_mode: match &share_from {
            Some(other) if a.network.starts_with("container:") => {
                format!("container:{}", other.id())
            }
            _ => a.network.clone(),
        },
        share_from,
        log_max_size,
        log_max_files,
        runtime,
        labels,
        cidfile: a.cidfile.clone(),
        restart_policy,
        healthcheck,
    })?;
    Ok(id)
}

/// `hoist create`: the container of `a`, created and not started; prints its id.
pub fn create_cmd(a: RunArgs) -> Result<()> {
    let home = home::hoist_home()?;
    let id = create(&home, &a).map_err(|e| e.context(crate::Status(125)))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{id}").context("writing to stdout")?;
    Ok(())
}

pub fn run(a: RunArgs) -> Result<()> {
    let home = home::hoist_home()?;
    let id = create(&home, &a).map_err(|e| e.context(crate::Status(125)))?;
    let host = Host::new(home);
    if a.detach {
        // docker prints the id of the created container even when it then fails to start.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{id}").context("writing to stdout")?;
        drop(out);
        return host.start_detached(&id).map_err(|e| start_failed(e.into()));
    }
    let attach = if a.tty {
        Attach::Tty {
            stdin: a.interactive,
        }
    } else {
        Attach::Foreground {
            stdin: a.interactive,
        }
    };
    let code = host
        .supervise(&id, attach)?
        .map_err(|e| start_failed(e.into()))?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

/// A container that could not start: docker's exit status for it (its daemon's
/// `translateContainerdStartErr`): 127 when the command does not exist, 126 when it cannot be
/// invoked, else 125.
pub fn start_failed(e: anyhow::Error) -> anyhow::Error {
    let code = start_status(&crate::error_chain(&e));
    e.context(crate::Status(code))
}

fn start_status(msg: &str) -> u8 {
    let lower = msg.to_ascii_lowercase();
    if lower.contains("executable file not found") || lower.contains("no such file or directory") {
        127
    } else if lower.contains("permission denied") {
        126
    } else {
        125
    }
}

/// `hoist __supervise ID`: the detached supervisor. It leaves the CLI's session first so it
/// outlives it and gets none of its terminal's signals.
pub fn supervise(a: SuperviseArgs) -> Result<()> {
    container::new_session();
    let host = Host::from_env()?;
    host.supervise(
        &a.id,
        Attach::Detached {
            wait_client: a.wait_attach,
        },
    )?
    .map(|_| ())
    .map_err(Into::into)
}
