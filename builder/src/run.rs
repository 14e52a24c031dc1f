//! `RUN` in a container of the runtime's executor: an OCI bundle (spec from
//! `hoist_runtime::spec::build` with docker's defaults, for the step's args, env, user, working
//! directory and network) over the step's overlay rootfs; stdout and stderr stream to the log.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use hoist_runtime::exec::{Executor, Stdio};
use hoist_runtime::spec::{self, BindMount, Network, RunOptions};
use serde_json::json;

use crate::build::{RunRequest, Runner};
use crate::graph::{LogSink, OpError};

/// A [`Runner`] on an [`Executor`].
pub struct ExecutorRunner {
    executor: Arc<dyn Executor>,
    host_limits: BTreeMap<&'static str, u64>,
    cap_last_cap: usize,
    hostname: String,
}

impl ExecutorRunner {
    pub fn new(executor: Arc<dyn Executor>) -> Self {
        ExecutorRunner {
            executor,
            host_limits: spec::host_hard_limits(),
            cap_last_cap: spec::cap_last_cap(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into()),
        }
    }
}

impl Runner for ExecutorRunner {
    fn run(&self, req: &RunRequest, rootfs: &Path, log: &dyn LogSink) -> Result<i32, OpError> {
        let bundle = tempfile::Builder::new().prefix("hoist-run-").tempdir()?;
        let id = hoist_runtime::container::new_id();
        let hosts = bundle.path().join("hosts");
        let hostname = bundle.path().join("hostname");
        let resolv = bundle.path().join("resolv.conf");
        std::fs::write(
            &hosts,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        )?;
        std::fs::write(&hostname, format!("{}\n", &id[..12]))?;
        let resolv_text = if req.network {
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        } else {
            String::new()
        };
        std::fs::write(&resolv, resolv_text)?;
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).ok();
        let group = std::fs::read_to_string(rootfs.join("etc/group")).ok();
        let opts = RunOptions {
            args: req.args.clone(),
            env: req.env.clone(),
            user: (!req.user.is_empty()).then(|| req.user.clone()),
            workdir: Some(req.cwd.clone()),
            hostname: Some("buildkitsandbox".into()),
            network: if req.network {
                Network::Host
            } else {
                Network::None
            },
            mounts: req
                .binds
                .iter()
                .map(|(s, d, ro)| BindMount {
                    source: s.clone(),
                    destination: d.clone(),
                    read_only: *ro,
                })
                .collect(),
            ..RunOptions::default()
        };
        let ctx = spec::Context {
            id: &id,
            rootfs,
            hosts_path: &hosts,
            hostname_path: &hostname,
            resolv_conf_path: &resolv,
            passwd: passwd.as_deref(),
            group: group.as_deref(),
            host_hard_limits: &self.host_limits,
            host_hostname: &self.hostname,
            cap_last_cap: self.cap_last_cap,
            cgroups_path: format!("/hoist-build/{id}"),
        };
        let s = spec::build(None, &opts, &ctx)?;
        let mut value = serde_json::to_value(&s)?;
        for t in &req.tmpfs {
            if let Some(m) = value["mounts"].as_array_mut() {
                m.push(json!({"destination": t, "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=1777"]}));
            }
        }
        std::fs::write(
            bundle.path().join("config.json"),
            serde_json::to_vec(&value)?,
        )?;
        let (reader, writer) = rustix::pipe::pipe()?;
        let writer2: OwnedFd = writer.try_clone()?;
        let created = self.executor.create(
            &id,
            bundle.path(),
            Stdio::Fds {
                stdin: None,
                stdout: writer,
                stderr: writer2,
            },
        )?;
        let result = (|| -> Result<i32, OpError> {
            self.executor.start(&created)?;
            let mut pipe = std::fs::File::from(reader);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => log.log(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(self.executor.wait(&created)?)
        })();
        let deleted = self.executor.delete(&created);
        let code = result?;
        deleted?;
        Ok(code)
    }
}
