//! cgroups of a container: v1 (memory, cpu, cpuacct, blkio, pids, devices, freezer hierarchies
//! under /sys/fs/cgroup/<ctrl>; cpuacct and blkio only for `hoist stats`' accounting) or v2
//! (/sys/fs/cgroup is cgroup2), at `linux.cgroupsPath` (default `hoist/<id>`).

use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::ExecError;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 7] = [
    "memory", "cpu", "cpuacct", "blkio", "pids", "devices", "freezer",
];
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// Device rules added after `linux.resources.devices` (v1): null, zero, full, random, urandom,
/// tty, console, ptmx, pty slaves, and mknod of any char/block node (opening stays denied).
const DEFAULT_ALLOWED_DEVICES: [&str; 10] = [
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c *:* m",
];

/// The cgroup directories of one container.
#[derive(Debug, Clone)]
pub struct CgroupPaths {
    v2: bool,
    /// (controller, directory); for v2 one entry with controller "".
    dirs: Vec<(String, PathBuf)>,
}

/// Whether `path` is on a cgroup2 file system.
#[allow(clippy::unnecessary_cast)] // f_type's type differs between targets
pub(crate) fn is_cgroup2(path: &Path) -> bool {
    rustix::fs::statfs(path)
        .map(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), ExecError> {
    let path = dir.join(file);
    std::fs::write(&path, value)
        .map_err(|e| ExecError::io(format!("write {value:?} to {}", path.display()), e))
}

impl CgroupPaths {
    /// The cgroups of container `id` under `cgroups_path` (relative to each hierarchy's root;
    /// default `hoist/<id>`). Nothing is created yet.
    pub fn for_container(id: &str, cgroups_path: Option<&Path>) -> Result<Self, ExecError> {
        let rel: PathBuf = match cgroups_path {
            Some(p) => p
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect(),
            None => Path::new("hoist").join(id),
        };
        if rel.as_os_str().is_empty() {
            return Err(ExecError::Config(format!(
                "linux.cgroupsPath {:?} names no cgroup",
                cgroups_path.map(Path::display).map(|d| d.to_string())
            )));
        }
        let root = Path::new(CGROUP_ROOT);
        if is_cgroup2(root) {
            return Ok(CgroupPaths {
                v2: true,
                dirs: vec![(String::new(), root.join(&rel))],
            });
        }
        let dirs = V1_CONTROLLERS
            .iter()
            .filter(|c| root.join(c).is_dir())
            .map(|c| (c.to_string(), root.join(c).join(&rel)))
            .collect();
        Ok(CgroupPaths { v2: false, dirs })
    }

    /// Whether these are cgroup v2 paths.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// The directory of `controller` (v1), or the one directory (v2, any controller).
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| self.v2 || c == controller)
            .map(|(_, d)| d.as_path())
    }

    /// Creates the directories and writes the limits.
    pub fn create(&self, res: Option<&LinuxResources>) -> Result<(), ExecError> {
        for (_, dir) in &self.dirs {
            if self.v2 {
                enable_v2_controllers(dir)?;
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| ExecError::io(format!("create cgroup {}", dir.display()), e))?;
        }
        let Some(res) = res else { return Ok(()) };
        if let Some(cpu) = res.cpu()
            && (cpu.cpus().is_some() || cpu.mems().is_some())
        {
            return Err(ExecError::Config(
                "linux.resources.cpu.cpus/mems (cpusets) are not supported".into(),
            ));
        }
        if self.v2 {
            self.write_v2(res)
        } else {
            self.write_v1(res)
        }
    }

    fn write_v1(&self, res: &LinuxResources) -> Result<(), ExecError> {
        let need = |ctrl: &str| {
            self.dir(ctrl).ok_or_else(|| {
                ExecError::Config(format!("the {ctrl} cgroup controller is not mounted"))
            })
        };
        if let Some(mem) = res.memory() {
            if let Some(limit) = mem.limit() {
                let dir = need("memory")?;
                write(dir, "memory.limit_in_bytes", &limit.to_string())?;
                if let Some(swap) = mem.swap() {
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                    } else if swap != limit {
                        return Err(ExecError::Config(
                            "linux.resources.memory.swap: no swap accounting on this kernel".into(),
                        ));
                    }
                }
            }
            if let Some(r) = mem.reservation() {
                write(
                    need("memory")?,
                    "memory.soft_limit_in_bytes",
                    &r.to_string(),
                )?;
            }
            if let Some(s) = mem.swappiness() {
                write(need("memory")?, "memory.swappiness", &s.to_string())?;
            }
            if mem.disable_oom_killer() == Some(true) {
                write(need("memory")?, "memory.oom_control", "1")?;
            }
        }
        if let Some(cpu) = res.cpu() {
            if let Some(shares) = cpu.shares() {
                write(need("cpu")?, "cpu.shares", &shares.to_string())?;
            }
            if let Some(period) = cpu.period() {
                write(need("cpu")?, "cpu.cfs_period_us", &period.to_string())?;
            }
            if let Some(quota) = cpu.quota() {
                write(need("cpu")?, "cpu.cfs_quota_us", &quota.to_string())?;
            }
        }
        if let Some(pids) = res.pids() {
            let v = if pids.limit() > 0 {
                pids.limit().to_string()
            } else {
                "max".into()
            };
            write(need("pids")?, "pids.max", &v)?;
        }
        if let Some(rules) = res.devices()
            && !rules.is_empty()
        {
            let dir = need("devices")?;
            for r in rules {
                let kind = r
                    .typ()
                    .map_or_else(|| "a".to_string(), |t| t.as_str().to_string());
                let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
                let access = r.access().as_deref().unwrap_or("rwm");
                let rule = format!("{kind} {}:{} {access}", num(r.major()), num(r.minor()));
                let file = if r.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write(dir, file, &rule)?;
            }
            // What every container needs (runc allows the same): the default /dev nodes, the
            // pty multiplexer and slaves, /dev/console.
            for rule in DEFAULT_ALLOWED_DEVICES {
                write(dir, "devices.allow", rule)?;
            }
        }
        Ok(())
    }

    fn write_v2(&self, res: &LinuxResources) -> Result<(), ExecError> {
        let dir = &self.dirs[0].1;
        if let Some(mem) = res.memory() {
            if let Some(limit) = mem.limit() {
                let v = if limit < 0 {
                    "max".into()
                } else {
                    limit.to_string()
                };
                write(dir, "memory.max", &v)?;
                if let Some(swap) = mem.swap() {
                    let v = if swap < 0 {
                        "max".into()
                    } else {
                        (swap - limit.max(0)).max(0).to_string()
                    };
                    write(dir, "memory.swap.max", &v)?;
                }
            }
            if let Some(r) = mem.reservation() {
                write(dir, "memory.low", &r.to_string())?;
            }
        }
        if let Some(cpu) = res.cpu() {
            if let Some(shares) = cpu.shares() {
                let weight = 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
                write(dir, "cpu.weight", &weight.to_string())?;
            }
            if cpu.quota().is_some() || cpu.period().is_some() {
                let quota = match cpu.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".into(),
                };
                let period = cpu.period().unwrap_or(100_000);
                write(dir, "cpu.max", &format!("{quota} {period}"))?;
            }
        }
        if let Some(pids) = res.pids() {
            let v = if pids.limit() > 0 {
                pids.limit().to_string()
            } else {
                "max".into()
            };
            write(dir, "pids.max", &v)?;
        }
        Ok(())
    }

    /// Moves process `pid` into the cgroups.
    pub fn add(&self, pid: i32) -> Result<(), ExecError> {
        for (_, dir) in &self.dirs {
            write(dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// The pids in the cgroup (of the first hierarchy).
    pub fn pids(&self) -> Vec<i32> {
        self.dirs
            .first()
            .and_then(|(_, d)| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILLs every process left in the cgroups (a container without its own pid namespace
    /// leaves its children behind when its init exits).
    pub fn kill_all(&self) {
        // A frozen task only dies once thawed.
        let _ = self.freeze(false);
        for pid in self.pids() {
            // SAFETY: plain syscall.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Freezes (`true`) or thaws (`false`) every process of the container (`hoist pause` /
    /// `unpause`): v1's freezer (`freezer.state`) or v2's `cgroup.freeze`, and waits until the
    /// kernel reports the new state.
    pub fn freeze(&self, frozen: bool) -> Result<(), ExecError> {
        let (dir, file, value, done): (&Path, &str, &str, fn(&str) -> bool) = if self.v2 {
            let dir = self
                .dir("")
                .ok_or_else(|| ExecError::Config("no cgroup".into()))?;
            if frozen {
                (dir, "cgroup.freeze", "1", |e| {
                    e.lines().any(|l| l == "frozen 1")
                })
            } else {
                (dir, "cgroup.freeze", "0", |e| {
                    e.lines().any(|l| l == "frozen 0")
                })
            }
        } else {
            let dir = self.dir("freezer").ok_or_else(|| {
                ExecError::Config("the freezer cgroup controller is not mounted".into())
            })?;
            if frozen {
                (dir, "freezer.state", "FROZEN", |e| e.trim() == "FROZEN")
            } else {
                (dir, "freezer.state", "THAWED", |e| e.trim() == "THAWED")
            }
        };
        let state_file = if self.v2 {
            "cgroup.events"
        } else {
            "freezer.state"
        };
        for _ in 0..400 {
            write(dir, file, value)?;
            let now = std::fs::read_to_string(dir.join(state_file)).map_err(|e| {
                ExecError::io(format!("read {}", dir.join(state_file).display()), e)
            })?;
            if done(&now) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Err(ExecError::Io {
            what: format!(
                "{} the cgroup {}",
                if frozen { "freeze" } else { "thaw" },
                dir.display()
            ),
            source: io::Error::from(io::ErrorKind::TimedOut),
        })
    }

    /// Removes the directories (waits briefly for killed processes to leave).
    pub fn remove(&self) -> Result<(), ExecError> {
        for (_, dir) in &self.dirs {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => {
                        return Err(ExecError::io(format!("remove cgroup {}", dir.display()), e));
                    }
                }
            }
        }
        Ok(())
    }
}

/// v2: turn on memory, cpu and pids (those available) in the parents' subtree_control.
fn enable_v2_controllers(dir: &Path) -> Result<(), ExecError> {
    let root = Path::new(CGROUP_ROOT);
    let Ok(rel) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        let available = std::fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
        let want: Vec<String> = ["memory", "cpu", "pids"]
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !want.is_empty() {
            write(&cur, "cgroup.subtree_control", &want.join(" "))?;
        }
        cur.push(comp);
        if cur != dir {
            std::fs::create_dir_all(&cur)
                .map_err(|e| ExecError::io(format!("create cgroup {}", cur.display()), e))?;
        }
    }
    Ok(())
}

/// Moves `pid` into every cgroup of `target` (for `exec_in`).
pub(crate) fn join_cgroups_of(target: i32, pid: i32) -> Result<(), ExecError> {
    let path = format!("/proc/{target}/cgroup");
    let text =
        std::fs::read_to_string(&path).map_err(|e| ExecError::io(format!("read {path}"), e))?;
    let root = Path::new(CGROUP_ROOT);
    let v2 = is_cgroup2(root);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(cg)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = cg.trim_start_matches('/');
        let base = if ctrls.is_empty() {
            if v2 {
                root.to_path_buf()
            } else {
                root.join("unified")
            }
        } else {
            let first = ctrls.split(',').next().unwrap_or(ctrls);
            root.join(first.strip_prefix("name=").unwrap_or(first))
        };
        let procs = base.join(rel).join("cgroup.procs");
        if !procs.exists() {
            continue;
        }
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| ExecError::io(format!("write {pid} to {}", procs.display()), e))?;
    }
    Ok(())
}
