//! Pods (`hoist pod run FILE.yaml`, PODS.md): containers that share an infra process's network,
//! IPC and UTS namespaces, with `emptyDir` and `hostPath` volumes, init containers run in order
//! before the others, a restart policy, and Kubernetes' phases.
//!
//! A pod lives in `$HOIST_HOME/pods/<id>/`: `pod.json` (its name, its file, its containers),
//! `state.json` (phase, the pod supervisor, each container's restarts and last exit), its
//! `emptyDir`s under `volumes/`, and the `hosts`/`resolv.conf` its containers share. Each
//! container of a pod is a hoist container named `<pod>-<container>`. The pod supervisor
//! (`hoist __pod ID`, detached) sets up the pod's network sandbox, starts the infra process
//! (`hoist __pause`), runs the init containers, then the containers with their restart policy,
//! and on `pod stop` (SIGTERM) stops them and undoes it all.

pub mod spec;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hoist_oci::Reference;
use hoist_runtime::container::{Attach, Container, ProcessId};
use hoist_runtime::net::netns;
use hoist_runtime::net::sandbox::{self, NetworkRequest, PortRequest, SandboxSpec};
use hoist_runtime::net::store::DEFAULT_NETWORK;
use hoist_runtime::spec::{BindOptions, Network, RunOptions};
use hoist_storage::images::Platform;
use serde::{Deserialize, Serialize};

use self::spec::{ContainerSpec, PodSpec, RestartPolicy};
use crate::containers::{Mount, NewContainer};
use crate::{EngineError, Host, OptionExt, Result, ResultExt, bail};

/// Kubernetes' pod phases.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// One container of a pod.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Member {
    /// Its name in the pod file.
    pub name: String,
    /// The hoist container's id.
    pub id: String,
    pub init: bool,
}

/// `pod.json`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct PodRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The pod file as given (parsed again when needed).
    pub file: String,
    pub yaml: String,
    pub members: Vec<Member>,
    /// The network the pod is on (`pod run --network`).
    #[serde(default = "default_network")]
    pub network: String,
}

fn default_network() -> String {
    DEFAULT_NETWORK.to_owned()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct MemberState {
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub running: bool,
}

/// `state.json`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct PodState {
    pub phase: Phase,
    pub supervisor: Option<ProcessId>,
    pub infra_pid: Option<i32>,
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub members: BTreeMap<String, MemberState>,
    #[serde(default)]
    pub error: String,
}

/// A pod with its state.
pub struct Pod {
    pub record: PodRecord,
    pub state: PodState,
    pub dir: PathBuf,
}

impl Pod {
    /// Its supervisor is alive (the pod's processes run).
    pub fn running(&self) -> bool {
        self.state.supervisor.is_some_and(|p| p.alive())
    }
}

fn pods_dir(home: &Path) -> PathBuf {
    home.join("pods")
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    let bytes = std::fs::read(p).with_ctx(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&bytes).with_ctx(|| format!("reading {}", p.display()))
}

fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).ctx("encoding the pod")?;
    hoist_runtime::container::write_atomic(p, &bytes)?;
    Ok(())
}

/// The arguments of a pod container: Kubernetes' `command` replaces the image's ENTRYPOINT
/// (and its Cmd), `args` its Cmd.
fn command_of(c: &ContainerSpec) -> (Option<String>, Vec<String>) {
    if c.command.is_empty() {
        (None, c.args.clone())
    } else {
        let mut args = c.command.clone();
        args.extend(c.args.iter().cloned());
        (Some(String::new()), args)
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
/// The pod supervisor's threads change `state.json` one at a time.
static STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Host {
    /// Every pod, oldest first.
    pub fn pods(&self) -> Result<Vec<Pod>> {
        let dir = pods_dir(self.home());
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_ctx(|| format!("reading {}", dir.display())),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let d = e.path();
            let (Ok(record), Ok(state)) = (
                read_json::<PodRecord>(&d.join("pod.json")),
                read_json::<PodState>(&d.join("state.json")),
            ) else {
                continue;
            };
            out.push(Pod {
                record,
                state,
                dir: d,
            });
        }
        out.sort_by(|a, b| a.record.created.cmp(&b.record.created));
        Ok(out)
    }

    /// A pod by name or id (prefix).
    pub fn pod(&self, key: &str) -> Result<Pod> {
        let all = self.pods()?;
        let mut found: Vec<Pod> = all
            .into_iter()
            .filter(|p| p.record.name == key || (!key.is_empty() && p.record.id.starts_with(key)))
            .collect();
        match found.len() {
            0 => bail!("no pod with name or ID {key} found"),
            1 => Ok(found.remove(0)),
            _ => match found.iter().position(|p| p.record.name == key) {
                Some(i) => Ok(found.remove(i)),
                None => bail!("more than one pod matches {key}"),
            },
        }
    }

    /// The hoist container of `container` in pod `key`.
    pub fn pod_container(&self, key: &str, container: &str) -> Result<Container> {
        let pod = self.pod(key)?;
        let m = pod
            .record
            .members
            .iter()
            .find(|m| m.name == container)
            .or_invalid(|| {
                format!(
                    "pod {} has no container {container} (it has: {})",
                    pod.record.name,
                    pod.record
                        .members
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        Ok(self.containers()?.load(&m.id)?)
    }

    /// `pod run`: creates the pod of `yaml` (its images in the local store) and starts its
    /// supervisor. Returns the pod's id.
    pub async fn pod_run(&self, yaml: &str, file: &str, network: &str) -> Result<String> {
        let spec = spec::parse(yaml, file).map_err(|e| EngineError::Invalid(e.to_string()))?;
        // The network must exist (`bridge`, or a user network by name).
        let network = if network == DEFAULT_NETWORK {
            DEFAULT_NETWORK.to_owned()
        } else {
            self.networks().get(network)?.name
        };
        if self.pods()?.iter().any(|p| p.record.name == spec.name) {
            bail!(
                "pod {} already exists: remove it with `hoist pod rm {}`",
                spec.name,
                spec.name
            );
        }
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let dir = pods_dir(self.home()).join(&id);
        std::fs::create_dir_all(dir.join("volumes"))
            .with_ctx(|| format!("creating {}", dir.display()))?;
        let made = self
            .pod_create(&spec, &id, &dir, yaml, file, &network)
            .await;
        if let Err(e) = made {
            let _ = self.pod_remove_parts(&dir);
            return Err(e);
        }
        let mut child = self.spawn_pod_supervisor(&id, &dir)?;
        // Wait until it has taken over (the phase leaves Pending or it runs).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st: PodState = read_json(&dir.join("state.json"))?;
            if st.supervisor.is_some() || st.phase != Phase::Pending {
                break;
            }
            if let Some(status) = child.try_wait().ctx("waiting for the pod supervisor")? {
                let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
                bail!("starting pod {}: {} ({status})", spec.name, log.trim());
            }
            if Instant::now() > deadline {
                bail!("starting pod {}: timed out", spec.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(id)
    }

    async fn pod_create(
        &self,
        spec: &PodSpec,
        id: &str,
        dir: &Path,
        yaml: &str,
        file: &str,
        network: &str,
    ) -> Result<()> {
        let mut volumes: BTreeMap<String, PathBuf> = BTreeMap::new();
        for v in &spec.volumes {
            let path = match &v.source {
                spec::VolumeSource::EmptyDir => {
                    let p = dir.join("volumes").join(&v.name);
                    std::fs::create_dir_all(&p).with_ctx(|| format!("creating {}", p.display()))?;
                    p
                }
                spec::VolumeSource::HostPath(p) => {
                    if !p.exists() {
                        bail!("pod {}: hostPath {} does not exist", spec.name, p.display());
                    }
                    p.clone()
                }
            };
            volumes.insert(v.name.clone(), path);
        }
        let mut members = Vec::new();
        let mut record = PodRecord {
            id: id.to_owned(),
            name: spec.name.clone(),
            created: hoist_oci::time::rfc3339_nanos(std::time::SystemTime::now()),
            file: file.to_owned(),
            yaml: yaml.to_owned(),
            members: Vec::new(),
            network: network.to_owned(),
        };
        let all = spec
            .init_containers
            .iter()
            .map(|c| (c, true))
            .chain(spec.containers.iter().map(|c| (c, false)));
        for (c, init) in all {
            let made = self.pod_container_create(spec, c, &volumes).await;
            let cid = match made {
                Ok(cid) => cid,
                Err(e) => {
                    record.members = members;
                    let _ = self.remove_members(&record);
                    return Err(e);
                }
            };
            members.push(Member {
                name: c.name.clone(),
                id: cid,
                init,
            });
        }
        record.members = members;
        write_json(&dir.join("pod.json"), &record)?;
        write_json(
            &dir.join("state.json"),
            &PodState {
                phase: Phase::Pending,
                supervisor: None,
                infra_pid: None,
                ip: None,
                members: BTreeMap::new(),
                error: String::new(),
            },
        )
    }

    async fn pod_container_create(
        &self,
        pod: &PodSpec,
        c: &ContainerSpec,
        volumes: &BTreeMap<String, PathBuf>,
    ) -> Result<String> {
        let reference = Reference::parse(&c.image)
            .with_ctx(|| format!("container {}: invalid image {:?}", c.name, c.image))?;
        let image = self
            .images()
            .await?
            .image(&reference, &Platform::host())
            .await
            .with_ctx(|| format!("container {}: image {}", c.name, c.image))?;
        let runnable = self.runnable(image, &c.image).await?;
        let (entrypoint, args) = command_of(c);
        let mounts = c
            .volume_mounts
            .iter()
            .map(|m| {
                let source = volumes
                    .get(&m.name)
                    .cloned()
                    .or_invalid(|| format!("container {}: no volume {}", c.name, m.name))?;
                Ok(Mount::Bind {
                    source,
                    destination: m.mount_path.clone(),
                    read_only: m.read_only,
                    options: BindOptions::default(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut labels = pod.labels.clone();
        labels.insert("io.hoist.pod.name".into(), pod.name.clone());
        labels.insert("io.hoist.pod.container".into(), c.name.clone());
        let options = RunOptions {
            entrypoint,
            args,
            env: c.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            workdir: c.working_dir.clone(),
            // Joined at each start (the infra process's namespaces).
            network: Network::None,
            ..RunOptions::default()
        };
        self.create_container(NewContainer {
            name: Some(format!("{}-{}", pod.name, c.name)),
            image_name: c.image.clone(),
            image: runnable,
            options,
            volumes: Vec::new(),
            mounts,
            stop_signal: None,
            stop_timeout: None,
            auto_remove: false,
            network_mode: format!("pod:{}", pod.name),
            share_from: None,
            log_max_size: 10 << 20,
            log_max_files: 3,
            runtime: None,
            labels,
            cidfile: None,
            // The pod's restart policy is the pod supervisor's; no HEALTHCHECK in pods.
            restart_policy: Default::default(),
            healthcheck: None,
        })
    }

    fn spawn_pod_supervisor(&self, id: &str, dir: &Path) -> Result<std::process::Child> {
        let log_path = dir.join("supervisor.log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_ctx(|| format!("opening {}", log_path.display()))?;
        std::process::Command::new("/proc/self/exe")
            .arg("__pod")
            .arg(id)
            .env("HOIST_HOME", self.home())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ctx("starting the pod's supervisor")
    }

    fn pod_state(&self, dir: &Path, f: impl FnOnce(&mut PodState)) -> Result<PodState> {
        let _one = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let p = dir.join("state.json");
        let mut st: PodState = read_json(&p)?;
        f(&mut st);
        write_json(&p, &st)?;
        Ok(st)
    }

    /// `hoist __pod ID`: the pod's supervisor, in its own session. Returns when the pod has
    /// ended (every container done, by itself or by `pod stop`).
    pub fn pod_supervise(self: &Arc<Self>, id: &str) -> Result<()> {
        hoist_runtime::container::new_session();
        // `pod stop` is a SIGTERM: blocked in every thread, taken by one that stops the pod's
        // containers (the threads running them then see STOP and do not restart them).
        let mut signals = nix::sys::signal::SigSet::empty();
        signals.add(nix::sys::signal::Signal::SIGTERM);
        signals.add(nix::sys::signal::Signal::SIGINT);
        signals
            .thread_block()
            .map_err(std::io::Error::from)
            .ctx("blocking the pod supervisor's signals")?;
        let dir = pods_dir(self.home()).join(id);
        let record: PodRecord = read_json(&dir.join("pod.json"))?;
        {
            let host = self.clone();
            let members: Vec<String> = record.members.iter().map(|m| m.id.clone()).collect();
            std::thread::spawn(move || {
                while signals.wait().is_err() {}
                STOP.store(true, Ordering::SeqCst);
                // Again while the pod winds down: a container that was just starting is
                // stopped too.
                loop {
                    if let Ok(store) = host.containers() {
                        for id in &members {
                            if let Ok(c) = store.load(id)
                                && c.state.running()
                            {
                                let _ = host.stop(&c, Some(10), None);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
        let spec = spec::parse(&record.yaml, &record.file)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("supervisor.lock"))
            .ctx("opening the pod's lock")?;
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| EngineError::Invalid(format!("pod {} is already running", record.name)))?;
        let result = self.pod_run_locked(&record, &spec, &dir);
        let final_phase = |st: &PodState| {
            let failed = st
                .members
                .values()
                .any(|m| m.exit_code.is_some_and(|c| c != 0));
            if failed {
                Phase::Failed
            } else {
                Phase::Succeeded
            }
        };
        let err = result.as_ref().err().map(|e| crate::error::error_chain(e));
        self.pod_state(&dir, |st| {
            st.phase = if err.is_some() {
                Phase::Failed
            } else {
                final_phase(st)
            };
            st.supervisor = None;
            st.infra_pid = None;
            st.ip = None;
            for m in st.members.values_mut() {
                m.running = false;
            }
            if let Some(e) = &err {
                st.error = e.clone();
            }
        })?;
        result
    }

    fn pod_run_locked(
        self: &Arc<Self>,
        record: &PodRecord,
        spec: &PodSpec,
        dir: &Path,
    ) -> Result<()> {
        let hostname = spec.hostname.clone().unwrap_or_else(|| spec.name.clone());
        let ports: Vec<PortRequest> = spec
            .init_containers
            .iter()
            .chain(&spec.containers)
            .flat_map(|c| c.ports.iter())
            .filter_map(|p| {
                p.host_port.map(|hp| PortRequest {
                    host_ip: p.host_ip,
                    host_port: hp,
                    container_port: p.container_port,
                    protocol: match p.protocol {
                        spec::Protocol::Tcp => "tcp".into(),
                        spec::Protocol::Udp => "udp".into(),
                    },
                })
            })
            .collect();
        let (hosts, resolv) = (dir.join("hosts"), dir.join("resolv.conf"));
        let networks = [NetworkRequest {
            network: record.network.clone(),
            ..NetworkRequest::default()
        }];
        let sb = sandbox::up(
            self.home(),
            &SandboxSpec {
                id: &record.id,
                name: &record.name,
                hostname: &hostname,
                networks: &networks,
                ports: &ports,
                dns: &[],
                extra_hosts: &[],
                hosts_path: &hosts,
                resolv_conf_path: &resolv,
            },
        )?;
        // The infra process: the pod's IPC and UTS namespaces (and its hostname), in the
        // sandbox's network namespace.
        let mut infra = std::process::Command::new("/proc/self/exe")
            .arg("__pause")
            .arg(&hostname)
            .arg(sb.netns())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .ctx("starting the pod's infra process")?;
        let infra_pid = infra.id() as i32;
        let ready = |pid: i32| {
            let me = std::fs::read_link("/proc/self/ns/uts").ok();
            let it = std::fs::read_link(format!("/proc/{pid}/ns/uts")).ok();
            it.is_some() && it != me
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready(infra_pid) {
            if Instant::now() > deadline || infra.try_wait().ok().flatten().is_some() {
                let _ = infra.kill();
                bail!("the pod's infra process did not start");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let ip = self
            .endpoints_of_sandbox(&record.id)?
            .first()
            .map(|(_, e)| e.ip);
        let me = ProcessId::current();
        self.pod_state(dir, |st| {
            st.supervisor = me;
            st.infra_pid = Some(infra_pid);
            st.ip = ip;
            st.phase = Phase::Pending;
        })?;
        let ns = |kind: &str| PathBuf::from(format!("/proc/{infra_pid}/ns/{kind}"));
        let store = self.containers()?;
        for m in &record.members {
            let mut c = store.load(&m.id)?;
            c.config.options.network = Network::Container(ns("net"));
            c.config.options.ipc_ns = Some(ns("ipc"));
            c.config.options.uts_ns = Some(ns("uts"));
            store.write_config(&c.config)?;
            for (from, to) in [(&hosts, c.hosts_path()), (&resolv, c.resolv_conf_path())] {
                std::fs::copy(from, &to).with_ctx(|| format!("writing {}", to.display()))?;
            }
            std::fs::write(c.hostname_path(), format!("{hostname}\n"))
                .with_ctx(|| format!("writing {}", c.hostname_path().display()))?;
        }
        let outcome = self.pod_members(record, spec, dir);
        // Everything still running stops; then the infra and the sandbox go.
        for m in &record.members {
            if let Ok(c) = store.load(&m.id)
                && c.state.running()
            {
                let _ = self.stop(&c, Some(10), None);
            }
        }
        let _ = infra.kill();
        let _ = infra.wait();
        drop(sb);
        outcome
    }

    /// The init containers in order, then the containers at once, each under the restart
    /// policy, until all are done or the pod is stopped.
    fn pod_members(self: &Arc<Self>, record: &PodRecord, spec: &PodSpec, dir: &Path) -> Result<()> {
        let policy = spec.restart_policy;
        for m in record.members.iter().filter(|m| m.init) {
            loop {
                if STOP.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let code = self.pod_member_once(dir, m)?;
                if code == 0 {
                    break;
                }
                // Kubernetes restarts a failed init container unless the policy is Never.
                if policy == RestartPolicy::Never {
                    return Ok(());
                }
                backoff(1);
            }
        }
        let mut threads = Vec::new();
        for m in record.members.iter().filter(|m| !m.init).cloned() {
            let host = self.clone();
            let dir = dir.to_path_buf();
            threads.push(std::thread::spawn(move || -> Result<()> {
                let mut restarts = 0u32;
                loop {
                    if STOP.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    let started = Instant::now();
                    let code = host.pod_member_once(&dir, &m)?;
                    let again = match policy {
                        RestartPolicy::Always => true,
                        RestartPolicy::OnFailure => code != 0,
                        RestartPolicy::Never => false,
                    };
                    if !again || STOP.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    restarts += 1;
                    host.pod_state(&dir, |st| {
                        st.members.entry(m.name.clone()).or_default().restarts = restarts;
                    })?;
                    // Kubernetes' back-off: doubling from 1 s, reset after a while running.
                    let n = if started.elapsed() > Duration::from_secs(10) {
                        1
                    } else {
                        restarts.min(5)
                    };
                    backoff(n);
                }
            }));
        }
        // Running once every container has started (or already ended).
        let store = self.containers()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !STOP.load(Ordering::SeqCst) {
            let started = record.members.iter().filter(|m| !m.init).all(|m| {
                store
                    .load(&m.id)
                    .is_ok_and(|c| c.state.running() || c.state.finished_at.is_some())
            });
            if started {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.pod_state(dir, |st| {
            if st.phase == Phase::Pending {
                st.phase = Phase::Running;
            }
        })?;
        let mut first = None;
        for t in threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first.get_or_insert(e);
                }
                Err(_) => {
                    first.get_or_insert(EngineError::Invalid(
                        "a pod container thread panicked".into(),
                    ));
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Runs one pod container to its end: its exit code (a start that failed: 128).
    fn pod_member_once(&self, dir: &Path, m: &Member) -> Result<i32> {
        self.pod_state(dir, |st| {
            st.members.entry(m.name.clone()).or_default().running = true;
        })?;
        let result = self.supervise(&m.id, Attach::Detached { wait_client: false })?;
        let code = match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("pod container {}: {e}", m.name);
                128
            }
        };
        self.pod_state(dir, |st| {
            let s = st.members.entry(m.name.clone()).or_default();
            s.running = false;
            s.exit_code = Some(code);
        })?;
        Ok(code)
    }

    /// `pod stop`: the supervisor stops the containers and ends; waits for it.
    pub fn pod_stop(&self, key: &str) -> Result<Pod> {
        let pod = self.pod(key)?;
        if let Some(p) = pod.state.supervisor.filter(|p| p.alive()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            while p.alive() {
                if Instant::now() > deadline {
                    bail!("pod {} did not stop within 60s", pod.record.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.pod(key)
    }

    fn remove_members(&self, record: &PodRecord) -> Result<()> {
        for m in &record.members {
            match self.containers()?.load(&m.id) {
                Ok(c) => {
                    self.remove_container(c.id(), true, true)?;
                }
                Err(hoist_runtime::container::ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn pod_remove_parts(&self, dir: &Path) -> Result<()> {
        std::fs::remove_dir_all(dir).with_ctx(|| format!("removing {}", dir.display()))
    }

    /// `pod rm`: a running pod only with `force` (stopped first); its containers, its
    /// `emptyDir`s and its records go.
    pub fn pod_remove(&self, key: &str, force: bool) -> Result<String> {
        let pod = self.pod(key)?;
        if pod.running() {
            if !force {
                bail!(
                    "pod {} is running: stop it first or use --force",
                    pod.record.name
                );
            }
            self.pod_stop(key)?;
        }
        self.remove_members(&pod.record)?;
        let _ = netns::remove(&netns::path_for(&pod.record.id));
        self.pod_remove_parts(&pod.dir)?;
        Ok(pod.record.name)
    }
}

fn backoff(n: u32) {
    let wait = Duration::from_millis(500u64 << n.min(5)).min(Duration::from_secs(10));
    let end = Instant::now() + wait;
    while Instant::now() < end && !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `hoist __pause HOSTNAME NETNS`: a pod's infra process: new IPC and UTS namespaces (the
/// hostname set in it), in the pod's network namespace, asleep until killed.
pub fn pause(hostname: &str, netns_path: &Path) -> Result<()> {
    let ns =
        std::fs::File::open(netns_path).with_ctx(|| format!("opening {}", netns_path.display()))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(std::io::Error::from)
        .ctx("joining the pod's network namespace")?;
    nix::sched::unshare(
        nix::sched::CloneFlags::CLONE_NEWIPC | nix::sched::CloneFlags::CLONE_NEWUTS,
    )
    .map_err(std::io::Error::from)
    .ctx("unsharing the pod's namespaces")?;
    nix::unistd::sethostname(hostname)
        .map_err(std::io::Error::from)
        .ctx("setting the pod's hostname")?;
    // Dies with its supervisor.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    loop {
        nix::unistd::pause();
    }
}
