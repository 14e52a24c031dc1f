//! `RUN`: the command run by the build's [`Runner`](crate::run::Runner) on an overlay of the
//! parent's layers, with its mounts (cache, bind, tmpfs, secret, ssh).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use hoist_runtime::confined::Root;
use hoist_runtime::rootfs::{Rootfs, RootfsKind};

use crate::build::{BuildServices, Result};
use crate::context::Context;
use crate::dockerfile::{self};
use crate::graph::{KeyBuilder, LogSink, Op, OpError, OpKind};
use crate::layer::{commit_layer, layer_dirs, layer_key};
use crate::ops::normalize_src;
use crate::run::{RunRequest, Runner};
use crate::snapshot::Snapshot;
use crate::tree::{Upper, View};

#[derive(Debug, Clone)]
pub(crate) struct RunMountSpec {
    pub(crate) kind: dockerfile::MountType,
    pub(crate) target: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) readonly: bool,
    pub(crate) required: bool,
    /// `env=`: a secret as an environment variable.
    pub(crate) env: Option<String>,
    /// The input (index into the op's inputs) a bind mount reads from or a cache is seeded from.
    pub(crate) from: Option<usize>,
    /// `sharing=` (cache).
    pub(crate) sharing: dockerfile::CacheSharing,
    /// `mode=`, `uid=`, `gid=` (cache: the new directory; secret: the file; ssh: the socket).
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    /// `size=` in bytes (tmpfs).
    pub(crate) size: Option<u64>,
}

impl RunMountSpec {
    /// `type=...,source=...,target=...` for messages.
    fn describe(&self) -> String {
        let mut s = format!(
            "RUN --mount=type={}",
            format!("{:?}", self.kind).to_lowercase()
        );
        if let Some(src) = &self.source {
            s.push_str(&format!(",source={src}"));
        }
        if let Some(t) = &self.target {
            s.push_str(&format!(",target={t}"));
        }
        s
    }
}

pub(crate) struct RunOp {
    pub(crate) env: Arc<BuildServices>,
    pub(crate) name: String,
    pub(crate) request: RunRequest,
    pub(crate) mounts: Vec<RunMountSpec>,
    pub(crate) secrets: BTreeMap<String, PathBuf>,
    pub(crate) ssh: BTreeMap<String, PathBuf>,
    pub(crate) context: Arc<Context>,
    pub(crate) created_by: String,
}

/// The directory of cache mount `id`: named by a hash of the id, so ids never share (nor reach
/// outside `mounts/`).
pub(crate) fn cache_mount_base(env: &BuildServices, id: &str) -> PathBuf {
    let mut k = KeyBuilder::new("cache-mount");
    k.str(id);
    env.cache
        .dir()
        .join("mounts")
        .join(crate::graph::CacheKey::compute(OpKind::Meta, &k.finish(), &[]).hex())
}

/// Removes the mount points the runtime made for the RUN's mounts (empty files and directories
/// not in the parent's layers), as BuildKit does: they are not part of the layer.
pub(crate) fn remove_mount_stubs(
    upper: &Path,
    lowers: &[PathBuf],
    targets: &[String],
) -> io::Result<()> {
    let up = Upper::new(upper, &View::open(lowers)?)?;
    let mut targets: Vec<&String> = targets.iter().collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.matches('/').count()));
    for t in targets {
        up.remove_mount_stub(t)?;
    }
    Ok(())
}

/// A rootfs mount, unmounted on drop (error paths) or explicitly.
pub(crate) struct Mounted(Option<Rootfs>);

impl Mounted {
    fn new(r: Rootfs) -> Self {
        Mounted(Some(r))
    }
    fn kind(&self) -> RootfsKind {
        self.0.as_ref().map_or(RootfsKind::Copy, Rootfs::kind)
    }
    fn unmount(mut self) -> Result<(), OpError> {
        match self.0.take() {
            Some(r) => Ok(r.unmount()?),
            None => Ok(()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            let _ = r.unmount();
        }
    }
}

impl Op<Snapshot> for RunOp {
    fn kind(&self) -> OpKind {
        OpKind::Exec
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move {
            let r = &self.request;
            let mut k = KeyBuilder::new("run");
            layer_key(&mut k, &self.env.layer_options);
            k.list(&r.args)
                .list(&r.env)
                .str(&r.cwd)
                .str(&r.user)
                .u64(u64::from(r.network));
            // Every option of every mount; never a cache's contents, a secret's or the agent.
            let opt = |v: Option<u32>| v.map_or(u64::MAX, u64::from);
            for m in &self.mounts {
                k.str(&format!("{:?}", m.kind))
                    .opt(m.target.as_deref())
                    .opt(m.source.as_deref())
                    .opt(m.id.as_deref())
                    .opt(m.env.as_deref())
                    .u64(m.from.map_or(u64::MAX, |f| f as u64))
                    .u64(u64::from(m.readonly))
                    .u64(u64::from(m.required))
                    .str(&format!("{:?}", m.sharing))
                    .u64(opt(m.mode))
                    .u64(opt(m.uid))
                    .u64(opt(m.gid))
                    .u64(m.size.unwrap_or(u64::MAX));
            }
            Ok(k.finish())
        }
        .boxed()
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        log: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move {
            let runner = self
                .env
                .runner
                .clone()
                .ok_or("RUN needs a container executor, and none is configured")?;
            let parent = inputs[0].clone();
            let lowers = layer_dirs(&self.env, &parent).await?;
            let mut from_dirs = HashMap::new();
            for m in &self.mounts {
                if let Some(i) = m.from {
                    from_dirs.insert(i, layer_dirs(&self.env, &inputs[i]).await?);
                }
            }
            tokio::task::block_in_place(|| {
                self.run_blocking(&*runner, &parent, &lowers, &from_dirs, log)
            })
        }
        .boxed()
    }
}

/// A RUN being set up: its request, and what it holds until the command ends. The fields drop in
/// order: the agent proxies, the cache locks, the mounts, then the work dir.
struct RunWork<'a> {
    op: &'a RunOp,
    request: RunRequest,
    /// The layer dirs of the op's `from=` inputs, by input index.
    from_dirs: &'a HashMap<usize, Vec<PathBuf>>,
    /// Mount points the runtime makes for the mounts (not part of the layer).
    targets: Vec<String>,
    ssh_n: usize,
    proxies: Vec<crate::run::SshProxy>,
    locks: Vec<crate::run::CacheLock>,
    /// Overlays of `from=` stages and of rw context binds.
    from_mounts: Vec<Mounted>,
    work: tempfile::TempDir,
}

impl RunOp {
    /// The RUN on its blocking thread: the step's dirs, its mounts, the command, then its layer.
    fn run_blocking(
        &self,
        runner: &dyn Runner,
        parent: &Arc<Snapshot>,
        lowers: &[PathBuf],
        from_dirs: &HashMap<usize, Vec<PathBuf>>,
        log: &dyn LogSink,
    ) -> Result<Snapshot, OpError> {
        let work = self.env.temp_dir()?;
        let upper = work.path().join("upper");
        let wd = work.path().join("work");
        let merged = work.path().join("rootfs");
        for d in [&upper, &wd, &merged] {
            fs::create_dir(d)?;
        }
        fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))?;
        let mut request = self.request.clone();
        request.image_config = parent.config.clone();
        let mut w = RunWork {
            op: self,
            request,
            from_dirs,
            targets: Vec::new(),
            ssh_n: 0,
            proxies: Vec::new(),
            locks: Vec::new(),
            from_mounts: Vec::new(),
            work,
        };
        let cache_dirs = w.cache_dirs()?;
        for (n, m) in self.mounts.iter().enumerate() {
            w.mount(n, m, &cache_dirs)?;
        }
        w.execute(runner, lowers, &upper, &wd, &merged, log)?;
        // Mount points the runtime created for the mounts are not part of the layer.
        // The files the runtime binds onto /etc are not either, when the image has none.
        let mut targets = w.targets.clone();
        targets.extend(["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].map(str::to_owned));
        remove_mount_stubs(&upper, lowers, &targets)?;
        commit_layer(&self.env, parent, &upper, &self.created_by)
    }
}

impl RunWork<'_> {
    /// A stage's (or image's) filesystem as an overlay with a throwaway upper: writes (rw)
    /// vanish with the step, as BuildKit discards them.
    fn mount_from(&mut self, i: usize) -> Result<PathBuf, OpError> {
        let n = self.from_mounts.len();
        let at = self.work.path().join(format!("from{n}"));
        let o = Mounted::new(Rootfs::mount(
            self.from_dirs.get(&i).map_or(&[][..], |d| &d[..]),
            &self.work.path().join(format!("from{n}-upper")),
            &self.work.path().join(format!("from{n}-work")),
            &at,
        )?);
        self.from_mounts.push(o);
        Ok(at)
    }

    /// The cache directories, by mount index: locked in the order of their paths, so two RUNs
    /// that lock the same caches never wait on each other crosswise; a cache named twice in one
    /// RUN is one directory, locked once. A `from=` seeds a new cache.
    fn cache_dirs(&mut self) -> Result<HashMap<usize, PathBuf>, OpError> {
        let mut pending = Vec::new();
        for (n, m) in self.op.mounts.iter().enumerate() {
            if m.kind != dockerfile::MountType::Cache {
                continue;
            }
            let target = m.target.clone().unwrap_or_default();
            let id = m.id.clone().unwrap_or(target);
            let seed = match m.from {
                Some(i) => {
                    let at = self.mount_from(i)?;
                    let src = m.source.as_deref().unwrap_or("");
                    let (p, meta) = crate::run::resolve_confined(&at, src, true).map_err(|e| {
                        format!(
                            "{}: source {src} {}",
                            m.describe(),
                            e.replace("the root", "the stage's root")
                        )
                    })?;
                    let Some(meta) = meta else {
                        return Err(format!(
                            "{}: source /{} not found in from=",
                            m.describe(),
                            normalize_src(src)
                        )
                        .into());
                    };
                    let rel = p.strip_prefix(&at).unwrap_or(Path::new("")).to_path_buf();
                    Some((at, rel, meta.is_dir()))
                }
                None => None,
            };
            pending.push((cache_mount_base(&self.op.env, &id), n, seed));
        }
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        let mut cache_dirs: HashMap<usize, PathBuf> = HashMap::new();
        let mut by_base: HashMap<PathBuf, PathBuf> = HashMap::new();
        for (base, n, seed) in pending {
            let m = &self.op.mounts[n];
            let dir = match by_base.get(&base) {
                Some(d) => d.clone(),
                None => {
                    let init = crate::run::CacheInit {
                        uid: m.uid,
                        gid: m.gid,
                        mode: m.mode,
                        seed: seed
                            .as_ref()
                            .map(|(at, rel, dir)| (at.as_path(), rel.as_path(), *dir)),
                    };
                    let (dir, lock) = crate::run::cache_dir(&base, m.sharing, &init)?;
                    self.locks.push(lock);
                    by_base.insert(base, dir.clone());
                    dir
                }
            };
            cache_dirs.insert(n, dir);
        }
        Ok(cache_dirs)
    }

    /// Mount `n` of the RUN into its request.
    fn mount(
        &mut self,
        n: usize,
        m: &RunMountSpec,
        cache_dirs: &HashMap<usize, PathBuf>,
    ) -> Result<(), OpError> {
        let target = m.target.clone().unwrap_or_default();
        match m.kind {
            dockerfile::MountType::Cache => {
                let dir = cache_dirs.get(&n).cloned().unwrap_or_default();
                self.request.binds.push((dir, target.clone(), m.readonly));
            }
            dockerfile::MountType::Tmpfs => {
                self.request.tmpfs.push((target.clone(), m.size));
            }
            dockerfile::MountType::Bind => self.bind_mount(n, m, &target)?,
            dockerfile::MountType::Secret => return self.secret_mount(n, m),
            dockerfile::MountType::Ssh => return self.ssh_mount(m),
        }
        self.targets.push(target);
        Ok(())
    }

    /// `type=bind`: a path of a `from=` stage or of the context (without what the ignore file
    /// excludes), read-only, or rw through a throwaway overlay (a file: a private copy).
    fn bind_mount(&mut self, n: usize, m: &RunMountSpec, target: &str) -> Result<(), OpError> {
        let src = m.source.as_deref().unwrap_or("");
        let (root, in_stage) = match m.from {
            Some(i) => (self.mount_from(i)?, true),
            None => (self.op.context.root().to_path_buf(), false),
        };
        let root_name = if in_stage {
            "the stage's root"
        } else {
            "the build context"
        };
        let (path, meta) = crate::run::resolve_confined(&root, src, in_stage).map_err(|e| {
            format!(
                "{}: source {src} {}",
                m.describe(),
                e.replace("the root", root_name)
            )
        })?;
        let meta = meta.ok_or_else(|| {
            format!(
                "{}: /{} not found in {}",
                m.describe(),
                normalize_src(src),
                if in_stage {
                    "the stage"
                } else {
                    "the build context"
                }
            )
        })?;
        let mut path = path;
        if !in_stage {
            // The context as the build sees it: without what the ignore
            // file excludes.
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if self.op.context.is_ignored(&rel)
                && (!meta.is_dir() || self.op.context.ignore().can_skip_dir(&rel))
            {
                return Err(format!(
                    "{}: /{} is excluded by {}",
                    m.describe(),
                    normalize_src(src),
                    self.op
                        .context
                        .ignore_file()
                        .map_or_else(|| ".dockerignore".into(), |f| f.display().to_string())
                )
                .into());
            }
            if meta.is_dir() && !self.op.context.ignore().is_empty() {
                let view = self.work.path().join(format!("bind{n}-view"));
                crate::run::context_view(&self.op.context, &path, &view)?;
                path = view;
            }
        }
        let source = if in_stage || m.readonly {
            path
        } else if meta.is_dir() {
            // rw over the context: an overlay whose upper is thrown away, so
            // writes never reach the user's files.
            let at = self.work.path().join(format!("bind{n}"));
            self.from_mounts.push(Mounted::new(Rootfs::mount(
                &[path],
                &self.work.path().join(format!("bind{n}-upper")),
                &self.work.path().join(format!("bind{n}-work")),
                &at,
            )?));
            at
        } else {
            let copy = self.work.path().join(format!("bind{n}-file"));
            let rel = path.strip_prefix(&root).unwrap_or(Path::new(""));
            crate::run::copy_tree(&root, rel, &copy)?;
            copy
        };
        self.request
            .binds
            .push((source, target.to_owned(), m.readonly));
        Ok(())
    }

    /// `type=secret`: a private copy of the secret file (and/or an environment variable).
    fn secret_mount(&mut self, n: usize, m: &RunMountSpec) -> Result<(), OpError> {
        let id = m.id.clone().or_else(|| {
            m.target
                .as_deref()
                .and_then(|t| t.rsplit('/').next())
                .map(str::to_owned)
        });
        let id = id.unwrap_or_default();
        match self.op.secrets.get(&id) {
            Some(p) => {
                if let Some(var) = &m.env {
                    let value = fs::read_to_string(p)?;
                    self.request
                        .env
                        .push(format!("{var}={}", value.trim_end_matches('\n')));
                }
                if m.target.is_some() || m.env.is_none() {
                    let t = m
                        .target
                        .clone()
                        .unwrap_or_else(|| format!("/run/secrets/{id}"));
                    // A private copy with the mount's mode and owner.
                    let copy = self.work.path().join(format!("secret{n}"));
                    crate::run::secret_copy(p, &copy, m.mode, m.uid, m.gid)
                        .map_err(|e| format!("secret {id}: {}: {e}", p.display()))?;
                    self.request.binds.push((copy, t.clone(), true));
                    self.targets.push(t);
                }
            }
            None if m.required => {
                return Err(format!(
                    "secret {id} is required but was not given (--secret id={id},src=PATH)"
                )
                .into());
            }
            None => {}
        }
        Ok(())
    }

    /// `type=ssh`: a proxy of the agent socket, `SSH_AUTH_SOCK` set to the first.
    fn ssh_mount(&mut self, m: &RunMountSpec) -> Result<(), OpError> {
        let id = m.id.clone().unwrap_or_else(|| "default".into());
        let t = m
            .target
            .clone()
            .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{}", self.ssh_n));
        self.ssh_n += 1;
        match self.op.ssh.get(&id) {
            Some(sock) => {
                let proxy = crate::run::SshProxy::start(sock, m.mode, m.uid, m.gid)
                    .map_err(|e| format!("ssh agent {id}: {}: {e}", sock.display()))?;
                self.request.binds.push((proxy.socket(), t.clone(), false));
                if !self
                    .request
                    .env
                    .iter()
                    .any(|e| e.starts_with("SSH_AUTH_SOCK="))
                {
                    self.request.env.push(format!("SSH_AUTH_SOCK={t}"));
                }
                self.proxies.push(proxy);
                self.targets.push(t);
            }
            None if m.required => {
                return Err(format!(
                    "{}: ssh agent {id} is required but was not given (--ssh {id}[=SOCKET])",
                    m.describe()
                )
                .into());
            }
            None => {}
        }
        Ok(())
    }

    /// Mounts the rootfs (an overlay of the parent's layers), runs the command, then unmounts
    /// everything and releases the locks and agents; a non-zero exit is an error.
    fn execute(
        &mut self,
        runner: &dyn Runner,
        lowers: &[PathBuf],
        upper: &Path,
        wd: &Path,
        merged: &Path,
        log: &dyn LogSink,
    ) -> Result<(), OpError> {
        let overlay = Mounted::new(Rootfs::mount(lowers, upper, wd, merged)?);
        if overlay.kind() == RootfsKind::Copy {
            // A copy rootfs writes to the merged dir, not the upper: the layer would be
            // wrong.
            return Err(format!(
                "RUN needs an overlay mount of the parent's layers on {}, and overlay is unavailable there",
                merged.display()
            )
            .into());
        }
        // The working directory exists, as docker makes it: inside the rootfs, through
        // its symlinks resolved there (a WORKDIR behind a link to a host path is made in
        // the image).
        Root::open(merged)?
            .create_dir_all(&self.request.cwd, 0o755)
            .map_err(|e| format!("WORKDIR {}: {e}", self.request.cwd))?;
        let code = runner.run(&self.request, merged, log);
        overlay.unmount()?;
        for o in self.from_mounts.drain(..) {
            o.unmount()?;
        }
        self.proxies.clear();
        self.locks.clear();
        let code = code?;
        if code != 0 {
            return Err(format!(
                "process \"{}\" did not complete successfully: exit code: {code}",
                self.request.args.join(" ")
            )
            .into());
        }
        Ok(())
    }
}
