//! Containers on this host: creation with its rollback, the detached supervisor, start, stop,
//! signals and removal with anonymous volumes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hoist_oci::Digest;
use hoist_runtime::container::health::HealthConfig;
use hoist_runtime::container::restart::{self, RestartPolicy};
use hoist_runtime::container::{
    self, Attach, Container, ContainerConfig, ContainerError, ContainerStore, MountRecord,
    RunError, Status, Supervisor,
};
use hoist_runtime::exec::{self, Executor, HoistExecutor, OciCliExecutor};
use hoist_runtime::spec::{self, BindOptions, RunOptions, TmpfsMount};
use hoist_runtime::volume::{VolumeArg, VolumeStore, parse_volume_arg};
use hoist_storage::images::Image;
use serde_json::Value;

use crate::{Host, OptionExt, Result, ResultExt, bail};

/// One `--mount`.
#[derive(Debug, PartialEq, Eq)]
pub enum Mount {
    Bind {
        source: PathBuf,
        destination: String,
        read_only: bool,
        options: BindOptions,
    },
    /// A named volume, or an anonymous one (`name` None).
    Volume {
        name: Option<String>,
        destination: String,
        read_only: bool,
        /// `volume-nocopy`.
        no_copy: bool,
        /// `volume-label=K=V`: labels of a volume this mount creates.
        labels: BTreeMap<String, String>,
    },
    Tmpfs(TmpfsMount),
}

/// An image ready to run: its config and its layers, unpacked and verified, bottom to top.
pub struct RunnableImage {
    pub image: Image,
    pub config: Value,
    pub layers: Vec<PathBuf>,
}

/// A container to create.
pub struct NewContainer {
    /// `--name`; a generated one when `None`.
    pub name: Option<String>,
    /// The image as the user named it.
    pub image_name: String,
    pub image: RunnableImage,
    /// The run options; their bind mounts are filled from `volumes` and `mounts`.
    pub options: RunOptions,
    /// `-v` arguments, as given.
    pub volumes: Vec<String>,
    /// `--mount` arguments (tmpfs ones are in `options`).
    pub mounts: Vec<Mount>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
    pub auto_remove: bool,
    pub network_mode: String,
    /// The running container whose network this one joins (`--network container:NAME`).
    pub share_from: Option<Container>,
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub runtime: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `--cidfile`: written with the id once the container exists.
    pub cidfile: Option<PathBuf>,
    /// `--restart`.
    pub restart_policy: RestartPolicy,
    /// The `--health-*` flags' health check (merged over the image's `HEALTHCHECK`).
    pub healthcheck: Option<HealthConfig>,
}

impl Host {
    /// The local image `image` ready to run: its config, and its layers unpacked once and
    /// verified.
    pub async fn runnable(&self, image: Image, name: &str) -> Result<RunnableImage> {
        let store = self.images().await?;
        let (_, bytes) = store
            .config(&image)
            .await
            .with_ctx(|| format!("reading the config of {name}"))?;
        let config: Value = serde_json::from_slice(&bytes).ctx("parsing the image config")?;
        let layers = self
            .layers()?
            .prepare(store, &image)
            .await
            .with_ctx(|| format!("preparing the layers of {name}"))?;
        Ok(RunnableImage {
            image,
            config,
            layers,
        })
    }

    /// Creates the container of `new` (stored, not started) and returns its id. Nothing half
    /// made stays behind when it fails.
    pub fn create_container(&self, new: NewContainer) -> Result<String> {
        if new.auto_remove && !new.restart_policy.is_none() {
            bail!("conflicting options: cannot specify both --restart and --rm");
        }
        let containers = self.containers()?;
        let image_cfg: Option<hoist_oci::spec::image::Config> = new
            .image
            .config
            .get("config")
            .filter(|v| !v.is_null())
            .map(|v| serde_json::from_value(v.clone()))
            .transpose()
            .ctx("parsing the image config")?;
        let cmd = spec::command(image_cfg.as_ref(), &new.options)?;
        spec::workdir(image_cfg.as_ref(), &new.options)?;

        let id = container::new_id();
        let name = containers.reserve_name(new.name.as_deref(), &id)?;
        let result = self.fill_container(&new, image_cfg.as_ref(), cmd, &id, &name);
        if let Err(e) = result {
            if let Ok(c) = containers.load(&id) {
                let _ = containers.remove(&c);
            } else {
                let _ = std::fs::remove_file(containers.root().join(".names").join(&name));
            }
            return Err(e);
        }
        Ok(id)
    }

    fn fill_container(
        &self,
        new: &NewContainer,
        image_cfg: Option<&hoist_oci::spec::image::Config>,
        cmd: Vec<String>,
        id: &str,
        name: &str,
    ) -> Result<()> {
        let containers = self.containers()?;
        let mut opts = new.options.clone();
        let mounts = self.container_mounts(new, image_cfg, &opts)?;
        opts.mounts = mounts.iter().map(MountRecord::bind_mount).collect();
        let stop_signal = new
            .stop_signal
            .clone()
            .or_else(|| image_cfg.and_then(|c| c.stop_signal().clone()));
        if let Some(s) = &stop_signal
            && container::parse_signal(s).is_none()
        {
            bail!("invalid stop signal {s:?}");
        }
        let image = &new.image.image;
        let config = ContainerConfig {
            id: id.to_owned(),
            name: name.to_owned(),
            created: container::rfc3339(std::time::SystemTime::now()),
            created_unix: container::now_unix(),
            image: new.image_name.clone(),
            image_id: image.id()?.to_string(),
            image_repo: image.repo.to_string(),
            image_manifest_digest: image.digest.to_string(),
            image_manifest: serde_json::from_slice(&image.manifest_bytes)
                .ctx("parsing the image manifest")?,
            image_config: new.image.config.clone(),
            layers: new.image.layers.clone(),
            options: opts.clone(),
            path: cmd[0].clone(),
            args: cmd[1..].to_vec(),
            stop_signal,
            stop_timeout: new.stop_timeout,
            auto_remove: new.auto_remove,
            mounts,
            network_mode: new.network_mode.clone(),
            log_max_size: new.log_max_size,
            log_max_files: new.log_max_files,
            runtime: new.runtime.clone(),
            labels: new.labels.clone(),
            restart_policy: new.restart_policy.clone(),
            healthcheck: HealthConfig::merge(
                new.healthcheck.clone(),
                HealthConfig::of_image(&new.image.config),
            ),
        };
        let c = containers.create(&config)?;
        let hostname = spec::hostname(&opts, id, &host_hostname());
        container::write_etc_files(&c, &hostname, new.share_from.as_ref())?;
        if let Some(f) = &new.cidfile {
            std::fs::write(f, id).with_ctx(|| format!("writing {}", f.display()))?;
        }
        Ok(())
    }

    /// The container's volumes and binds: `-v` first, then `--mount`, then the image's VOLUME
    /// paths not covered by one.
    fn container_mounts(
        &self,
        new: &NewContainer,
        image_cfg: Option<&hoist_oci::spec::image::Config>,
        opts: &RunOptions,
    ) -> Result<Vec<MountRecord>> {
        let volumes = self.volumes();
        let mut mounts: Vec<MountRecord> = Vec::new();
        for v in &new.volumes {
            let rec = volume_flag(&volumes, v)?;
            if mounts.iter().any(|m| m.destination == rec.destination) {
                bail!("duplicate mount point: {}", rec.destination);
            }
            mounts.push(rec);
        }
        for m in &new.mounts {
            let Some(rec) = mount_flag(&volumes, m)? else {
                continue;
            };
            if mounts.iter().any(|m| m.destination == rec.destination)
                || opts.tmpfs.iter().any(|t| t.destination == rec.destination)
            {
                bail!("duplicate mount point: {}", rec.destination);
            }
            mounts.push(rec);
        }
        for path in image_cfg
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
            mounts.push(volume_record(
                vol.name,
                vol.mountpoint,
                dest,
                false,
                true,
                false,
            ));
        }
        Ok(mounts)
    }
}

fn volume_record(
    name: String,
    source: PathBuf,
    destination: String,
    read_only: bool,
    anonymous: bool,
    no_copy: bool,
) -> MountRecord {
    MountRecord {
        kind: "volume".to_owned(),
        name: Some(name),
        source,
        destination,
        read_only,
        anonymous,
        no_copy,
        bind: Default::default(),
    }
}

fn bind_record(
    source: PathBuf,
    destination: String,
    read_only: bool,
    bind: BindOptions,
) -> MountRecord {
    MountRecord {
        kind: "bind".to_owned(),
        name: None,
        source,
        destination,
        read_only,
        anonymous: false,
        no_copy: false,
        bind,
    }
}

/// One `-v`: a named or anonymous volume (made when missing), or a bind whose missing source
/// directory is made, as docker does.
fn volume_flag(volumes: &VolumeStore, v: &str) -> Result<MountRecord> {
    let vopts = hoist_runtime::volume::volume_arg_options(v)?;
    Ok(match parse_volume_arg(v)? {
        VolumeArg::Named {
            name,
            destination,
            read_only,
        } => {
            let vol = volumes.create(Some(&name), BTreeMap::new())?;
            volume_record(
                name,
                vol.mountpoint,
                destination,
                read_only,
                false,
                vopts.no_copy,
            )
        }
        VolumeArg::Bind {
            source,
            destination,
            read_only,
        } => {
            if !source.exists() {
                std::fs::create_dir_all(&source)
                    .with_ctx(|| format!("creating {}", source.display()))?;
            }
            let bind = BindOptions {
                propagation: vopts.propagation,
                non_recursive: false,
            };
            bind_record(source, destination, read_only, bind)
        }
        VolumeArg::Anonymous { destination } => {
            let vol = volumes.create(None, BTreeMap::new())?;
            volume_record(
                vol.name,
                vol.mountpoint,
                destination,
                false,
                true,
                vopts.no_copy,
            )
        }
    })
}

/// One `--mount` (a tmpfs one is a run option, not a record).
fn mount_flag(volumes: &VolumeStore, m: &Mount) -> Result<Option<MountRecord>> {
    Ok(Some(match m {
        Mount::Tmpfs(_) => return Ok(None),
        Mount::Bind {
            source,
            destination,
            read_only,
            options,
        } => bind_record(
            source.clone(),
            destination.clone(),
            *read_only,
            options.clone(),
        ),
        Mount::Volume {
            name,
            destination,
            read_only,
            no_copy,
            labels,
        } => {
            let vol = volumes.create(name.as_deref(), labels.clone())?;
            volume_record(
                vol.name,
                vol.mountpoint,
                destination.clone(),
                *read_only,
                name.is_none(),
                *no_copy,
            )
        }
    }))
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// `--runtime`: `None` for hoist's own executor, else a runtime CLI that must exist.
pub fn runtime_choice(name: &str) -> Result<Option<String>> {
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

impl Host {
    /// The executor a container runs with (its `--runtime`); runtime CLIs keep their state
    /// under `$HOIST_HOME/runtimes/<name>`.
    pub fn executor_for(&self, runtime: Option<&str>) -> Result<Box<dyn Executor>> {
        let Some(name) = runtime else {
            return Ok(Box::new(HoistExecutor::new()));
        };
        let dir = Path::new(name)
            .file_name()
            .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned());
        let executor = OciCliExecutor::new(name, self.home.join("runtimes").join(dir))
            .with_ctx(|| format!("starting the {name} runtime"))?;
        Ok(Box::new(executor))
    }

    /// The image ids containers use: `rmi` and `image prune` keep them.
    pub fn images_in_use(&self) -> Result<HashSet<Digest>> {
        Ok(self
            .containers()?
            .images_in_use()?
            .into_iter()
            .filter_map(|d| Digest::parse(&d).ok())
            .collect())
    }

    /// The ids of the containers (any state) that use the image `id`.
    pub fn containers_using(&self, id: &Digest) -> Result<Vec<String>> {
        let want = id.to_string();
        Ok(self
            .containers()?
            .list()?
            .into_iter()
            .filter(|c| c.config.image_id == want)
            .map(|c| c.config.id)
            .collect())
    }

    /// `rm`: removes the container `name` (running: only with `force`, killed first), and with
    /// `volumes` its anonymous volumes no other container uses.
    pub fn remove_container(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let store = self.containers()?;
        let c = store.get(name)?;
        if c.state.running() {
            if !force {
                return Err(ContainerError::Running(c.name().to_owned()).into());
            }
            restart::request_stop(&c);
            store.thaw_if_paused(&c)?;
            let _ = signal(&c, SIGKILL);
            wait_exit(store, c.id(), Some(Duration::from_secs(30)))
                .with_ctx(|| format!("killing container {}", c.name()))?;
            wait_supervisor_done(&c);
        }
        let c = store.load(c.id())?;
        let anon = store.remove(&c)?;
        if volumes {
            let used = store.volumes_in_use()?;
            let store = self.volumes();
            for v in anon {
                if !used.contains_key(&v) {
                    store.remove(&v, &[])?;
                }
            }
        }
        Ok(())
    }

    /// `container prune`: removes every container that is neither running nor supervised; the
    /// ids removed and the bytes of their writable layers.
    pub fn prune_containers(&self) -> Result<(Vec<String>, u64)> {
        let store = self.containers()?;
        let mut removed = Vec::new();
        let mut reclaimed = 0u64;
        for c in store.list()? {
            if c.state.running() || c.state.supervisor.is_some() {
                continue;
            }
            reclaimed += crate::usage::dir_size(&c.upper());
            store.remove(&c)?;
            removed.push(c.config.id.clone());
        }
        Ok((removed, reclaimed))
    }

    /// `hoist system service start`: starts every container whose restart policy brings it
    /// back when the host comes up ([`restart::starts_at_boot`]), oldest first, as docker's
    /// daemon does at its start. Returns the names started and, for each that failed, why;
    /// one failure does not keep the others down.
    pub fn start_at_boot(&self) -> Result<(Vec<String>, Vec<String>)> {
        let store = self.containers()?;
        // The namespaces, links and rules of the last boot are gone, or are left by supervisors
        // that are: their endpoints go first.
        hoist_runtime::net::sandbox::reconcile(self.home())?;
        let mut all = store.list()?;
        all.sort_by(|a, b| a.config.created.cmp(&b.config.created));
        let (mut started, mut failed) = (Vec::new(), Vec::new());
        for c in all.into_iter().filter(restart::starts_at_boot) {
            match self.start_detached(c.id()) {
                Ok(()) => started.push(c.name().to_owned()),
                Err(e) => failed.push(format!("{}: {e:#}", c.name())),
            }
        }
        Ok((started, failed))
    }

    /// Runs container `id` under a supervisor in this process, attached as `attach`, then
    /// removes it if it was created with `--rm`. The outer error is the engine's (no executor,
    /// the removal failed); the inner result is the run's: the exit code, or why it did not
    /// start.
    pub fn supervise(&self, id: &str, attach: Attach) -> Result<Result<i32, RunError>> {
        let containers = self.containers()?;
        let runtime = containers.load(id)?.config.runtime;
        let executor = self.executor_for(runtime.as_deref())?;
        let volumes = self.volumes();
        let sup = Supervisor {
            store: containers,
            volumes: &volumes,
            executor: executor.as_ref(),
        };
        let began = Instant::now();
        let result = sup.run(id, attach);
        // A `--rm` container that is already gone removed itself.
        let c = match containers.load(id) {
            Ok(c) => Some(c),
            Err(ContainerError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if c.as_ref().is_some_and(|c| c.config.auto_remove) {
            self.remove_with_volumes(id)
                .with_ctx(|| format!("removing container {id}"))?;
        }
        // A foreground `run --restart` whose policy restarts it goes on detached (docker's
        // daemon restarts it after the CLI has returned).
        if let (Ok(code), Some(c), false) = (&result, &c, matches!(attach, Attach::Detached { .. }))
        {
            let stopped = c.dir.join("stop-requested").exists();
            let mut policy =
                container::restart::RestartManager::new(c.config.restart_policy.clone());
            if policy
                .should_restart(*code, stopped, began.elapsed())
                .is_some()
            {
                self.start_detached(id)?;
            }
        }
        Ok(result)
    }

    /// Removes a container and its anonymous volumes (for `--rm`).
    pub fn remove_with_volumes(&self, id: &str) -> Result<()> {
        let containers = self.containers()?;
        let c = containers.load(id)?;
        let anon = containers.remove(&c)?;
        let in_use = containers.volumes_in_use()?;
        let volumes = self.volumes();
        for v in anon {
            if !in_use.contains_key(&v) {
                volumes.remove(&v, &[])?;
            }
        }
        Ok(())
    }

    /// Starts the detached supervisor of `id` (`hoist __supervise ID`, the binary re-executed),
    /// its stderr to the container's `supervisor.log`; with `wait_attach` it starts the process
    /// once a client has attached to it.
    pub fn spawn_supervisor(&self, id: &str, wait_attach: bool) -> Result<std::process::Child> {
        let c = self.containers()?.load(id)?;
        let sup_log = c.dir.join("supervisor.log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&sup_log)
            .with_ctx(|| format!("opening {}", sup_log.display()))?;
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg("__supervise").arg(id);
        if wait_attach {
            cmd.arg("--wait-attach");
        }
        cmd.env("HOIST_HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ctx("starting the container's supervisor")
    }

    /// Starts the detached supervisor of `id` and waits until the container runs (or has
    /// already exited). Fails with the supervisor's error when it could not start it.
    pub fn start_detached(&self, id: &str) -> Result<()> {
        let containers = self.containers()?;
        let c = containers.load(id)?;
        let sup_log = c.dir.join("supervisor.log");
        let before = containers.raw_state(id)?;
        let mut child = self.spawn_supervisor(id, false)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        // A `--rm` container that ran and already removed itself is gone by the time it is
        // looked at: it started.
        let state = |id: &str| match containers.raw_state(id) {
            Err(container::ContainerError::NotFound(_)) => Ok(None),
            other => other.map(Some),
        };
        loop {
            let Some(st) = state(id)? else {
                return Ok(());
            };
            let progressed =
                st.started_at != before.started_at || st.finished_at != before.finished_at;
            if st.status == Status::Running || (st.status == Status::Exited && progressed) {
                return Ok(());
            }
            if let Some(status) = child.try_wait().ctx("waiting for the supervisor")? {
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

    /// Starts `c` unless it runs.
    pub fn start(&self, c: &Container) -> Result<()> {
        if !c.state.running() {
            self.start_detached(c.id())?;
        }
        Ok(())
    }

    /// docker stop: the stop signal (`sig`, else the container's), `time` seconds (else the
    /// container's stop timeout, else 10), then SIGKILL.
    pub fn stop(&self, c: &Container, time: Option<u64>, sig: Option<&str>) -> Result<()> {
        let store = self.containers()?;
        if c.state.running() {
            // An explicit stop: no restart follows.
            restart::request_stop(c);
        }
        // A paused container is thawed first: a frozen process cannot handle its stop signal.
        store.thaw_if_paused(c)?;
        if c.state.running() {
            let sig = match sig {
                Some(s) => {
                    container::parse_signal(s).or_invalid(|| format!("invalid signal {s:?}"))?
                }
                None => c.stop_signal(),
            };
            let t = time.or(c.config.stop_timeout).unwrap_or(10);
            // A process that exits between the check and the signal is fine.
            let _ = signal(c, sig);
            if wait_exit(store, c.id(), Some(Duration::from_secs(t))).is_err() {
                let c = store.load(c.id())?;
                let _ = signal(&c, SIGKILL);
                wait_exit(store, c.id(), Some(Duration::from_secs(30)))
                    .with_ctx(|| format!("container {} did not stop after SIGKILL", c.name()))?;
            }
            wait_supervisor_done(c);
        }
        Ok(())
    }
}

/// Waits (10 s at most) until the supervisor of the exited `c` has finished: after recording the
/// exit it tears down the network sandbox, which `stop` and `rm` wait for, as docker's do.
pub fn wait_supervisor_done(c: &Container) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(f) = std::fs::File::options()
            .write(true)
            .open(c.dir.join("supervisor.lock"))
        else {
            return;
        };
        if nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL's number.
pub const SIGKILL: i32 = 9;

/// Sends `sig` to the container's init (checked to be the same process by its start time).
pub fn signal(c: &Container, sig: i32) -> Result<()> {
    let Some(init) = c.state.init.filter(|i| c.state.running() && i.alive()) else {
        bail!("container {} is not running", c.name());
    };
    exec::signal_pid(init.pid, sig).with_ctx(|| format!("signalling container {}", c.name()))?;
    Ok(())
}

/// Waits until `id` is not running (at most `timeout`): its exit code.
pub fn wait_exit(store: &ContainerStore, id: &str, timeout: Option<Duration>) -> Result<i32> {
    let start = Instant::now();
    loop {
        let st = store.state(id)?;
        if !st.running() && st.supervisor.is_none() {
            return Ok(st.exit_code.unwrap_or(0));
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            bail!("timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
