//! `hoist run` and the detached supervisor (`hoist __supervise ID`).
//!
//! `run` creates the container (image resolved and its layers unpacked and verified, names,
//! volumes, /etc files), then either supervises it itself, attached to the terminal (exit status =
//! the container's), or with `-d` starts a supervisor in its own session that outlives the CLI,
//! waits until the container runs and prints its id.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hoist_oci::Reference;
use hoist_runtime::container::{
    self, Attach, ContainerConfig, ContainerStore, MountRecord, Status, Supervisor,
};
use hoist_runtime::exec::{Executor, HoistExecutor, OciCliExecutor};
use hoist_runtime::spec::{self, Network, RunOptions};
use hoist_runtime::volume::{VolumeArg, VolumeStore, parse_volume_arg};
use hoist_storage::images::{ImageError, ImageStore, Platform};

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
    /// Network: bridge (the host's network, own hostname), none, host or container:NAME
    #[arg(long, alias = "net", default_value = "bridge")]
    network: String,
    /// Publish ports (accepted for compatibility: hoist has no bridge, containers use the host's
    /// network, where their ports are reachable directly)
    #[arg(short, long = "publish", value_name = "HOST:CONTAINER")]
    publish: Vec<String>,
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
    let containers = ContainerStore::open(home)
        .with_context(|| format!("opening the containers in {}", home.display()))?;
    Ok((containers, VolumeStore::open(home)))
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
    let runtime = runtime_choice(&a.runtime)?;
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
    let (containers, volumes) = stores(home)?;
    // Network first: container:NAME must name a running container.
    let (network, share_from) = match Network::parse(&a.network)? {
        Ok(n) => (n, None),
        Err(name) => {
            let other = containers
                .get(&name)
                .with_context(|| format!("joining the network of {name}"))?;
            let Some(init) = other.state.init.filter(|_| other.state.running()) else {
                bail!("cannot join the network of container {name}: it is not running");
            };
            (
                Network::Container(PathBuf::from(format!("/proc/{}/ns/net", init.pid))),
                Some(other),
            )
        }
    };
    if !a.publish.is_empty() {
        eprintln!(
            "WARNING: published ports are discarded: hoist has no bridge network, the container uses the host's network"
        );
    }
    let mut opts = run_options(a, network)?;
    let (log_max_size, log_max_files) = log_options(&a.log_opt)?;

    let reference = Reference::parse(a.image())
        .with_context(|| format!("invalid image reference {:?}", a.image()))?;
    let rt = home::runtime()?;
    let (image, config_value, layers) = rt.block_on(async {
        let store = ImageStore::open(home)
            .await
            .with_context(|| format!("opening the local store in {}", home.display()))?;
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
        let (_, bytes) = store
            .config(&image)
            .await
            .with_context(|| format!("reading the config of {}", a.image()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).context("parsing the image config")?;
        let layers = prepare_layers(home, &store, &image)
            .await
            .with_context(|| format!("preparing the layers of {}", a.image()))?;
        anyhow::Ok((image, value, layers))
    })?;
    drop(rt);
    let image_cfg: Option<oci_config::Config> = config_value
        .get("config")
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .context("parsing the image config")?;
    let cmd = spec::command(image_cfg.as_ref(), &opts)?;
    spec::workdir(image_cfg.as_ref(), &opts)?;

    let id = container::new_id();
    let name = containers.reserve_name(a.name.as_deref(), &id)?;
    let result = (|| {
        // Volumes: -v first, then the image's VOLUME paths not covered by one.
        let mut mounts: Vec<MountRecord> = Vec::new();
        for v in &a.volume {
            let vopts = hoist_runtime::volume::volume_arg_options(v)?;
            let rec = match parse_volume_arg(v)? {
                VolumeArg::Named {
                    name,
                    destination,
                    read_only,
                } => {
                    let vol = volumes.create(Some(&name), BTreeMap::new())?;
                    MountRecord {
                        kind: "volume".to_owned(),
                        name: Some(name),
                        source: vol.mountpoint,
                        destination,
                        read_only,
                        anonymous: false,
                        no_copy: vopts.no_copy,
                        bind: Default::default(),
                    }
                }
                VolumeArg::Bind {
                    source,
                    destination,
                    read_only,
                } => {
                    if !source.exists() {
                        std::fs::create_dir_all(&source)
                            .with_context(|| format!("creating {}", source.display()))?;
                    }
                    MountRecord {
                        kind: "bind".to_owned(),
                        name: None,
                        source,
                        destination,
                        read_only,
                        anonymous: false,
                        no_copy: false,
                        bind: hoist_runtime::spec::BindOptions {
                            propagation: vopts.propagation.clone(),
                            non_recursive: false,
                        },
                    }
                }
                VolumeArg::Anonymous { destination } => {
                    let vol = volumes.create(None, BTreeMap::new())?;
                    MountRecord {
                        kind: "volume".to_owned(),
                        name: Some(vol.name),
                        source: vol.mountpoint,
                        destination,
                        read_only: false,
                        anonymous: true,
                        no_copy: vopts.no_copy,
                        bind: Default::default(),
                    }
                }
            };
            if mounts.iter().any(|m| m.destination == rec.destination) {
                bail!("duplicate mount point: {}", rec.destination);
            }
            mounts.push(rec);
        }
        for m in &a.mount {
            let rec = match crate::run_flags::parse_mount(m)? {
                crate::run_flags::Mount::Tmpfs(_) => continue,
                crate::run_flags::Mount::Bind {
                    source,
                    destination,
                    read_only,
                    options,
                } => MountRecord {
                    kind: "bind".to_owned(),
                    name: None,
                    source,
                    destination,
                    read_only,
                    anonymous: false,
                    no_copy: false,
                    bind: options,
                },
                crate::run_flags::Mount::Volume {
                    name,
                    destination,
                    read_only,
                    no_copy,
                    labels,
                } => {
                    let anonymous = name.is_none();
                    let vol = volumes.create(name.as_deref(), labels)?;
                    MountRecord {
                        kind: "volume".to_owned(),
                        name: Some(vol.name),
                        source: vol.mountpoint,
                        destination,
                        read_only,
                        anonymous,
                        no_copy,
                        bind: Default::default(),
                    }
                }
            };
            if mounts.iter().any(|m| m.destination == rec.destination)
                || opts.tmpfs.iter().any(|t| t.destination == rec.destination)
            {
                bail!("duplicate mount point: {}", rec.destination);
            }
            mounts.push(rec);
        }
        for path in image_cfg
            .as_ref()
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default()
        {
            let dest = path.trim_end_matches('/').to_owned();
            if dest.is_empty()
                || mounts.iter().any(|m| m.destination == dest)
                || opts.tmpfs.iter().any(|t| t.destination == dest)
            {
                continue;
            }
            let vol = volumes.create(None, BTreeMap::new())?;
            mounts.push(MountRecord {
                kind: "volume".to_owned(),
                name: Some(vol.name),
                source: vol.mountpoint,
                destination: dest,
                read_only: false,
                anonymous: true,
                no_copy: false,
                bind: Default::default(),
            });
        }
        opts.mounts = mounts.iter().map(MountRecord::bind_mount).collect();
        let now = std::time::SystemTime::now();
        let stop_signal = a
            .stop_signal
            .clone()
            .or_else(|| image_cfg.as_ref().and_then(|c| c.stop_signal().clone()));
        if let Some(s) = &stop_signal
            && container::parse_signal(s).is_none()
        {
            bail!("invalid stop signal {s:?}");
        }
        let config = ContainerConfig {
            id: id.clone(),
            name: name.clone(),
            created: container::rfc3339(now),
            created_unix: container::now_unix(),
            image: a.image().to_owned(),
            image_id: image.id()?.to_string(),
            image_repo: image.repo.to_string(),
            image_manifest_digest: image.digest.to_string(),
            image_manifest: serde_json::from_slice(&image.manifest_bytes)
                .context("parsing the image manifest")?,
            image_config: config_value.clone(),
            layers: layers.clone(),
            options: opts.clone(),
            path: cmd[0].clone(),
            args: cmd[1..].to_vec(),
            stop_signal,
            stop_timeout: a.stop_timeout,
            auto_remove: a.rm,
            mounts,
            network_mode: a.network.clone(),
            log_max_size,
            log_max_files,
            runtime: runtime.clone(),
            labels: labels.clone(),
        };
        let c = containers.create(&config)?;
        let hostname = spec::hostname(&opts, &id, &host_hostname());
        container::write_etc_files(&c, &hostname, share_from.as_ref())?;
        if let Some(f) = &a.cidfile {
            std::fs::write(f, &id).with_context(|| format!("writing {}", f.display()))?;
        }
        anyhow::Ok(())
    })();
    if let Err(e) = result {
        // Nothing half-made stays behind.
        if let Ok(c) = containers.load(&id) {
            let _ = containers.remove(&c);
        } else {
            let _ = std::fs::remove_file(containers.root().join(".names").join(&name));
        }
        return Err(e);
    }
    Ok(id)
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// The image's layers, unpacked (once) and verified, bottom to top.
async fn prepare_layers(
    home: &Path,
    store: &ImageStore,
    image: &hoist_storage::images::Image,
) -> Result<Vec<PathBuf>> {
    let layers = hoist_runtime::layers::LayerStore::open(home)?;
    Ok(layers.prepare(store, image).await?)
}

mod oci_config {
    pub use hoist_oci::spec::image::Config;
}

/// Removes a container and its anonymous volumes (for `--rm`).
pub fn remove_with_volumes(
    containers: &ContainerStore,
    volumes: &VolumeStore,
    id: &str,
) -> Result<()> {
    let c = containers.load(id)?;
    let anon = containers.remove(&c)?;
    let in_use = containers.volumes_in_use()?;
    for v in anon {
        if !in_use.contains_key(&v) {
            volumes.remove(&v, &[])?;
        }
    }
    Ok(())
}

/// Starts the detached supervisor of `id` and waits until the container runs (or has already
/// exited). Fails with the supervisor's error when it could not start it.
pub fn start_detached(home: &Path, containers: &ContainerStore, id: &str) -> Result<()> {
    let c = containers.load(id)?;
    let sup_log = c.dir.join("supervisor.log");
    let before = containers.raw_state(id)?;
    let mut child = spawn_supervisor(home, containers, id, false)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // A `--rm` container that ran and already removed itself is gone by the time it is looked
    // at: it started.
    let state = |id: &str| match containers.raw_state(id) {
        Err(container::ContainerError::NotFound(_)) => Ok(None),
        other => other.map(Some),
    };
    loop {
        let Some(st) = state(id)? else {
            return Ok(());
        };
        let progressed = st.started_at != before.started_at || st.finished_at != before.finished_at;
        if st.status == Status::Running || (st.status == Status::Exited && progressed) {
            return Ok(());
        }
        if let Some(status) = child.try_wait().context("waiting for the supervisor")? {
            let Some(st) = state(id)? else {
                return Ok(());
            };
            if st.status == Status::Exited && st.started_at != before.started_at {
                return Ok(());
            }
            let err = if st.error.is_empty() {
                std::fs::read_to_string(&sup_log).unwrap_or_default()
            } else {
                st.error
            };
            bail!(
                "starting container {}: {} (supervisor {status})",
                c.name(),
                err.trim()
            );
        }
        if Instant::now() > deadline {
            bail!("starting container {}: timed out", c.name());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts the detached supervisor of `id` (`hoist __supervise ID`), its stderr to the
/// container's `supervisor.log`; with `wait_attach` it starts the process once a client has
/// attached to it.
pub fn spawn_supervisor(
    home: &Path,
    containers: &ContainerStore,
    id: &str,
    wait_attach: bool,
) -> Result<std::process::Child> {
    let c = containers.load(id)?;
    let sup_log = c.dir.join("supervisor.log");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&sup_log)
        .with_context(|| format!("opening {}", sup_log.display()))?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("__supervise").arg(id);
    if wait_attach {
        cmd.arg("--wait-attach");
    }
    cmd.env("HOIST_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the container's supervisor")
}

/// `hoist create`: the container of `a`, created and not started; prints its id.
pub fn create_cmd(a: RunArgs) -> Result<()> {
    let home = home::hoist_home()?;
    let id = create(&home, &a).map_err(|e| e.context(crate::Status(125)))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{id}").context("writing to stdout")?;
    Ok(())
}

/// `--runtime`: `None` for hoist's own executor, else a runtime CLI that must exist.
fn runtime_choice(name: &str) -> Result<Option<String>> {
    if name == "hoist" {
        return Ok(None);
    }
    let found = if name.contains('/') {
        Path::new(name).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
    };
    if !found {
        bail!("unknown runtime {name:?}: want hoist, or an OCI runtime CLI (runc, crun) on PATH");
    }
    Ok(Some(name.to_owned()))
}

/// The executor a container runs with (its `--runtime`); runtime CLIs keep their state under
/// `$HOIST_HOME/runtimes/<name>`.
fn executor_for(home: &Path, runtime: Option<&str>) -> Result<Box<dyn Executor>> {
    let Some(name) = runtime else {
        return Ok(Box::new(HoistExecutor::new()));
    };
    let dir = Path::new(name)
        .file_name()
        .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned());
    let executor = OciCliExecutor::new(name, home.join("runtimes").join(dir))
        .with_context(|| format!("starting the {name} runtime"))?;
    Ok(Box::new(executor))
}

pub fn run(a: RunArgs) -> Result<()> {
    let home = home::hoist_home()?;
    if a.detach && a.rm && a.interactive && a.tty {
        // Allowed by docker; nothing special.
    }
    let id = create(&home, &a).map_err(|e| e.context(crate::Status(125)))?;
    let (containers, volumes) = stores(&home).map_err(|e| e.context(crate::Status(125)))?;
    if a.detach {
        // docker prints the id of the created container even when it then fails to start.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{id}").context("writing to stdout")?;
        drop(out);
        return start_detached(&home, &containers, &id).map_err(start_failed);
    }
    let runtime = containers.load(&id)?.config.runtime;
    let executor = executor_for(&home, runtime.as_deref())?;
    let sup = Supervisor {
        store: &containers,
        volumes: &volumes,
        executor: executor.as_ref(),
    };
    let attach = if a.tty {
        Attach::Tty {
            stdin: a.interactive,
        }
    } else {
        Attach::Foreground {
            stdin: a.interactive,
        }
    };
    let result = sup.run(&id, attach);
    if a.rm {
        remove_with_volumes(&containers, &volumes, &id)
            .with_context(|| format!("removing container {id}"))?;
    }
    let code = result.map_err(|e| start_failed(e.into()))?;
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
    let home = home::hoist_home()?;
    let (containers, volumes) = stores(&home)?;
    let runtime = containers.load(&a.id)?.config.runtime;
    let executor = executor_for(&home, runtime.as_deref())?;
    let sup = Supervisor {
        store: &containers,
        volumes: &volumes,
        executor: executor.as_ref(),
    };
    let result = sup.run(
        &a.id,
        Attach::Detached {
            wait_client: a.wait_attach,
        },
    );
    let c = containers.load(&a.id)?;
    if c.config.auto_remove {
        remove_with_volumes(&containers, &volumes, &a.id)?;
    }
    result.map(|_| ()).map_err(Into::into)
}
