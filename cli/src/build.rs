//! `hoist build` and `hoist builder prune|du`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use futures::FutureExt;
use futures::future::BoxFuture;
use hoist_builder::build::{self, BuildOptions, Env, LayerCompression, Puller};
use hoist_builder::cache::{BuildCache, parse_size};
use hoist_builder::graph::{OpError, OpKind, VertexId};
use hoist_builder::solver::{Event, Progress};
use hoist_oci::Reference;
use hoist_storage::images::ImageStore;
use parking_lot::Mutex;

use crate::home;

#[derive(Subcommand)]
pub enum BuildCommand {
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(BuilderCommand),
}

#[derive(Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune {
        /// Keep this much cache (e.g. 10GB); least recently used records go first
        #[arg(long, value_name = "SIZE")]
        keep_storage: Option<String>,
        /// Do not prompt (accepted for docker compatibility; hoist never prompts)
        #[arg(short, long)]
        force: bool,
        /// Remove all cache (the default)
        #[arg(short, long)]
        all: bool,
    },
    /// Show the build cache's disk usage
    Du,
}

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); repeatable
    #[arg(short, long = "tag", value_name = "REF")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short, long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a build-time variable (K=V, or K to take it from the environment)
    #[arg(long = "build-arg", value_name = "K=V")]
    build_args: Vec<String>,
    /// The stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    no_cache: bool,
    /// Always pull the base images
    #[arg(long)]
    pull: bool,
    /// Networking for RUN steps: host (default) or none
    #[arg(long, default_value = "host", value_parser = ["host", "none", "default"])]
    network: String,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH
    #[arg(long, value_name = "id=ID,src=PATH")]
    secret: Vec<String>,
    /// An ssh agent for RUN --mount=type=ssh: default|ID[=SOCKET] (no SOCKET: $SSH_AUTH_SOCK)
    #[arg(long, value_name = "default|ID[=SOCKET]")]
    ssh: Vec<String>,
    /// Progress output: auto, plain, tty or quiet
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    progress: String,
    /// Print only the image id
    #[arg(short, long)]
    quiet: bool,
    /// Outputs: type=image (default), type=oci|docker,dest=FILE, type=local,dest=DIR
    #[arg(short, long, value_name = "SPEC")]
    output: Vec<String>,
    /// Push the tags after building
    #[arg(long)]
    push: bool,
    /// Layer compression: gzip or zstd
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    compression: String,
    /// The build context: a directory, or `-` for a Dockerfile or a tar on stdin
    context: String,
}

pub fn run(cmd: BuildCommand) -> Result<()> {
    match cmd {
        BuildCommand::Build(args) => build_cmd(*args),
        BuildCommand::Builder(BuilderCommand::Prune {
            keep_storage,
            force: _,
            all: _,
        }) => {
            let keep = keep_storage
                .as_deref()
                .map(|s| parse_size(s).ok_or_else(|| anyhow!("invalid --keep-storage {s:?}")))
                .transpose()?;
            let home = home::hoist_home()?;
            let dir = home.join("builder");
            let r = BuildCache::prune(&dir, keep)
                .with_context(|| format!("pruning the build cache in {}", dir.display()))?;
            println!(
                "Deleted build cache objects: {}\nTotal reclaimed space: {}",
                r.records_removed,
                human(r.bytes_freed)
            );
            Ok(())
        }
        BuildCommand::Builder(BuilderCommand::Du) => {
            let home = home::hoist_home()?;
            let c = BuildCache::open(&home.join("builder"))?;
            let u = c.usage()?;
            println!(
                "records: {}\nblobs: {}\nsize: {}",
                u.records,
                u.blobs,
                human(u.bytes)
            );
            Ok(())
        }
    }
}

fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[u])
    }
}

/// Pulls with `hoist pull` (the same binary), so progress and credentials are exactly those of
/// the pull command.
struct ProcessPuller;

impl Puller for ProcessPuller {
    fn pull<'a>(&'a self, reference: &'a Reference) -> BoxFuture<'a, Result<(), OpError>> {
        async move {
            let exe = std::env::current_exe()?;
            let out = tokio::process::Command::new(exe)
                .arg("pull")
                .arg("--quiet")
                .arg(reference.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
                .await?;
            if out.status.success() {
                Ok(())
            } else {
                let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                Err(msg
                    .strip_prefix("hoist: ")
                    .unwrap_or(&msg)
                    .to_owned()
                    .into())
            }
        }
        .boxed()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Tty,
    Quiet,
}

struct Printer {
    mode: Mode,
    state: Mutex<PrinterState>,
}

#[derive(Default)]
struct PrinterState {
    next: usize,
    ids: HashMap<VertexId, (usize, Instant)>,
    partial: HashMap<VertexId, Vec<u8>>,
    tails: HashMap<VertexId, VecDeque<String>>,
}

const TAIL: usize = 10;

impl Printer {
    fn new(mode: Mode) -> Self {
        Printer {
            mode,
            state: Mutex::new(PrinterState {
                next: 1,
                ..PrinterState::default()
            }),
        }
    }

    fn line(&self, s: &str) {
        if self.mode != Mode::Quiet {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{s}");
        }
    }

    /// A line for work outside the solver (`[internal] ...`).
    fn internal(&self, what: &str) {
        let n = {
            let mut st = self.state.lock();
            let n = st.next;
            st.next += 1;
            n
        };
        self.line(&format!("#{n} {what}"));
        self.line(&format!("#{n} DONE 0.0s\n"));
    }

    fn number(&self, st: &mut PrinterState, v: VertexId) -> usize {
        if let Some((n, _)) = st.ids.get(&v) {
            return *n;
        }
        let n = st.next;
        st.next += 1;
        st.ids.insert(v, (n, Instant::now()));
        n
    }

    /// The last lines a vertex printed.
    fn tail(&self, v: VertexId) -> Vec<String> {
        let st = self.state.lock();
        let mut lines: Vec<String> = st
            .tails
            .get(&v)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(p) = st.partial.get(&v)
            && !p.is_empty()
        {
            lines.push(String::from_utf8_lossy(p).into_owned());
        }
        lines
    }
}

fn visible(kind: OpKind, label: &str) -> bool {
    let _ = kind;
    !label.is_empty()
}

impl Progress for Printer {
    fn event(&self, event: Event) {
        let mut st = self.state.lock();
        match event {
            Event::Started {
                vertex,
                kind,
                label,
                name,
            } => {
                if visible(kind, &label) {
                    let n = self.number(&mut st, vertex);
                    self.line(&format!("#{n} {label} {name}"));
                }
            }
            Event::Cached {
                vertex,
                kind,
                label,
                name,
            } => {
                if visible(kind, &label) {
                    let n = self.number(&mut st, vertex);
                    self.line(&format!("#{n} {label} {name}"));
                    self.line(&format!("#{n} CACHED\n"));
                }
            }
            Event::Log { vertex, bytes } => {
                let start = st.ids.get(&vertex).map(|(n, t)| (*n, *t));
                let buf = st.partial.entry(vertex).or_default();
                buf.extend_from_slice(&bytes);
                let mut lines = Vec::new();
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let l: Vec<u8> = buf.drain(..=i).collect();
                    lines.push(String::from_utf8_lossy(&l[..l.len() - 1]).into_owned());
                }
                for l in lines {
                    if let (Mode::Plain, Some((n, t))) = (self.mode, start) {
                        self.line(&format!("#{n} {:.3} {l}", t.elapsed().as_secs_f64()));
                    }
                    let tail = st.tails.entry(vertex).or_default();
                    tail.push_back(l);
                    if tail.len() > TAIL {
                        tail.pop_front();
                    }
                }
            }
            Event::Done { vertex, elapsed } => {
                if let Some((n, _)) = st.ids.get(&vertex) {
                    self.line(&format!("#{n} DONE {:.1}s\n", elapsed.as_secs_f64()));
                }
            }
            Event::Failed {
                vertex,
                elapsed,
                error,
            } => {
                if let Some((n, _)) = st.ids.get(&vertex).copied() {
                    if self.mode != Mode::Plain {
                        // Folded output: show the end of it now.
                        drop(st);
                        for l in self.tail(vertex) {
                            self.line(&format!("#{n} {l}"));
                        }
                    }
                    self.line(&format!(
                        "#{n} ERROR: {error} ({:.1}s)\n",
                        elapsed.as_secs_f64()
                    ));
                }
            }
        }
    }
}

fn parse_output(spec: &str) -> Result<(String, Option<PathBuf>)> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_owned()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            Some((k, _)) => bail!("invalid --output {spec:?}: unknown key {k:?}"),
            // `-o DIR` is docker's shorthand for a local output.
            None if !part.is_empty() && kind.is_none() => {
                kind = Some("local".into());
                dest = Some(PathBuf::from(part));
            }
            None => bail!("invalid --output {spec:?}"),
        }
    }
    let kind = kind.ok_or_else(|| anyhow!("invalid --output {spec:?}: no type"))?;
    match kind.as_str() {
        "image" | "registry" => Ok((kind, dest)),
        "oci" | "docker" | "local" | "tar" => {
            if dest.is_none() {
                bail!("invalid --output {spec:?}: type={kind} needs dest=PATH");
            }
            Ok((kind, dest))
        }
        _ => bail!("invalid --output {spec:?}: unknown type {kind:?} (image, oci, docker, local)"),
    }
}

fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

fn build_cmd(args: BuildArgs) -> Result<()> {
    let started = Instant::now();
    let home = home::hoist_home()?;
    let mode = if args.quiet || args.progress == "quiet" {
        Mode::Quiet
    } else if args.progress == "plain"
        || (args.progress == "auto" && !std::io::stderr().is_terminal())
    {
        Mode::Plain
    } else {
        Mode::Tty
    };
    let printer = Arc::new(Printer::new(mode));

    // The context and the Dockerfile.
    let _stdin_context: Option<tempfile::TempDir>;
    let (context_dir, dockerfile_path, dockerfile_text) = if args.context == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading the build context from standard input")?;
        let dir = tempfile::Builder::new()
            .prefix("hoist-context-")
            .tempdir()
            .context("creating a directory for the build context")?;
        let plain = hoist_runtime::unpack::decompress(&data[..])
            .and_then(|mut r| {
                let mut v = Vec::new();
                r.read_to_end(&mut v).map(|_| v)
            })
            .unwrap_or_else(|_| data.clone());
        let (path, text) = if is_tar(&plain) {
            // The runtime's confined unpacker: no entry lands outside the context directory.
            hoist_runtime::unpack::unpack_layer(
                &plain[..],
                dir.path(),
                &hoist_runtime::unpack::UnpackOptions {
                    whiteouts: hoist_runtime::unpack::Whiteouts::Apply,
                    chown: false,
                    ..Default::default()
                },
            )
            .context("unpacking the context tar")?;
            let f = args
                .file
                .clone()
                .unwrap_or_else(|| PathBuf::from("Dockerfile"));
            let p = dir.path().join(&f);
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", f.display()))?;
            (p, text)
        } else {
            let text = String::from_utf8(data).context("the Dockerfile on stdin is not UTF-8")?;
            (PathBuf::from("Dockerfile"), text)
        };
        let d = dir.path().to_path_buf();
        _stdin_context = Some(dir);
        (d, path, text)
    } else {
        _stdin_context = None;
        let ctx = PathBuf::from(&args.context);
        if !ctx.is_dir() {
            bail!(
                "unable to prepare context: path {:?} not found",
                args.context
            );
        }
        let path = args.file.clone().unwrap_or_else(|| ctx.join("Dockerfile"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read dockerfile {}", path.display()))?;
        (ctx, path, text)
    };
    let dockerfile_name = dockerfile_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    printer.internal(&format!(
        "[internal] load build definition from {dockerfile_name}"
    ));
    // `<Dockerfile>.dockerignore` next to the Dockerfile wins over the context's `.dockerignore`
    // (read with the context, `hoist_builder::context::Context::from_dir`).
    printer.internal("[internal] load .dockerignore");

    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut secrets = BTreeMap::new();
    for s in &args.secret {
        let mut id = None;
        let mut src = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("type", "file")) => {}
                _ => bail!("invalid --secret {s:?}: expected id=ID,src=PATH"),
            }
        }
        let id = id.ok_or_else(|| anyhow!("invalid --secret {s:?}: no id"))?;
        let src = src.ok_or_else(|| anyhow!("invalid --secret {s:?}: no src"))?;
        let src = std::fs::canonicalize(&src)
            .with_context(|| format!("secret {id}: {}", src.display()))?;
        secrets.insert(id, src);
    }
    let mut ssh = BTreeMap::new();
    for s in &args.ssh {
        let (id, path) = match s.split_once('=') {
            Some((id, p)) => (id, PathBuf::from(p)),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK")
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        anyhow!("--ssh {s}: SSH_AUTH_SOCK is not set (give {s}=SOCKET)")
                    })?;
                (s.as_str(), PathBuf::from(sock))
            }
        };
        if id.is_empty() || id.contains(',') {
            bail!("invalid --ssh {s:?}: expected default|ID[=SOCKET]");
        }
        let meta =
            std::fs::metadata(&path).with_context(|| format!("--ssh {id}: {}", path.display()))?;
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            bail!(
                "--ssh {id}: {} is not an ssh agent socket (key files are not supported: load them into an agent)",
                path.display()
            );
        }
        let path = std::fs::canonicalize(&path)
            .with_context(|| format!("--ssh {id}: {}", path.display()))?;
        ssh.insert(id.to_owned(), path);
    }
    let source_date_epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| anyhow!("invalid SOURCE_DATE_EPOCH {s:?}"))
        })
        .transpose()?;
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("invalid tag {t:?}")))
        .collect::<Result<Vec<_>>>()?;
    let outputs = args
        .output
        .iter()
        .map(|o| parse_output(o))
        .collect::<Result<Vec<_>>>()?;
    if args.push && tags.is_empty() {
        bail!("--push needs a tag (-t NAME)");
    }
    let opts = BuildOptions {
        dockerfile: dockerfile_text,
        dockerfile_name: dockerfile_path.display().to_string(),
        context_dir,
        dockerfile_path: Some(dockerfile_path.clone()),
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        network_none: args.network == "none",
        secrets,
        ssh,
        compression: if args.compression == "zstd" {
            LayerCompression::Zstd
        } else {
            LayerCompression::Gzip
        },
        source_date_epoch,
    };

    let rt = home::runtime()?;
    let id = rt.block_on(async {
        let images = ImageStore::open(&home)
            .await
            .with_context(|| format!("opening the local store in {}", home.display()))?;
        let cache = Arc::new(BuildCache::open(&home.join("builder")).with_context(|| {
            format!(
                "opening the build cache in {}",
                home.join("builder").display()
            )
        })?);
        let mut env = Env::new(
            &home,
            images.clone(),
            cache,
            opts.compression,
            opts.source_date_epoch,
        )?;
        env.puller = Some(Arc::new(ProcessPuller));
        env.runner = Some(Arc::new(hoist_builder::run::ExecutorRunner::new(Arc::new(
            hoist_runtime::exec::HoistExecutor::new(),
        ))));
        let env = Arc::new(env);
        let plan = build::plan(&env, &opts).await?;
        for r in &plan.resolved {
            printer.internal(r);
        }
        let snapshot = match build::solve(&env, &plan, opts.no_cache, printer.clone()).await {
            Ok(s) => s,
            Err(e) => {
                return Err(anyhow::Error::new(e));
            }
        };
        let t = Instant::now();
        let n = {
            let mut st = printer.state.lock();
            let n = st.next;
            st.next += 1;
            n
        };
        printer.line(&format!("#{n} exporting to image"));
        let exported = hoist_builder::export::to_store(&env, &snapshot, &tags).await?;
        printer.line(&format!("#{n} writing image {} done", exported.id));
        for t in &tags {
            printer.line(&format!("#{n} naming to {t} done"));
        }
        for (kind, dest) in &outputs {
            match (kind.as_str(), dest) {
                ("oci" | "docker" | "tar", Some(d)) => {
                    let reference = match tags.first() {
                        Some(t) => t.clone(),
                        None => Reference::parse(&format!(
                            "{}@{}",
                            hoist_builder::export::UNTAGGED_REPO,
                            exported.manifest
                        ))?,
                    };
                    hoist_builder::export::to_archive(&images, &reference, d, kind == "oci")
                        .await?;
                    printer.line(&format!("#{n} exporting to {kind} {} done", d.display()));
                }
                ("local", Some(d)) => {
                    hoist_builder::export::to_local(&env, &snapshot, d).await?;
                    printer.line(&format!("#{n} copying files to {} done", d.display()));
                }
                _ => {}
            }
        }
        printer.line(&format!("#{n} DONE {:.1}s", t.elapsed().as_secs_f64()));
        let push = args.push || outputs.iter().any(|(k, _)| k == "registry");
        if push {
            for t in &tags {
                let exe = std::env::current_exe()?;
                let st = tokio::process::Command::new(exe)
                    .arg("push")
                    .arg(t.to_string())
                    .stdout(std::process::Stdio::inherit())
                    .status()
                    .await?;
                if !st.success() {
                    bail!("pushing {t} failed");
                }
            }
        }
        Ok::<_, anyhow::Error>(exported.id)
    });
    let id = id.map_err(|e| explain(e, &printer))?;
    if mode == Mode::Quiet {
        println!("{id}");
    } else {
        printer.line(&format!(
            "built {id} in {:.2}s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// A failed step: the error with the last lines of its output, as BuildKit shows it.
fn explain(e: anyhow::Error, printer: &Printer) -> anyhow::Error {
    let solve = match e.downcast_ref::<build::BuildError>() {
        Some(build::BuildError::Solve(s)) => Some(s),
        Some(build::BuildError::Step { source, .. }) => Some(source),
        _ => None,
    };
    if let Some(v) = solve.and_then(|s| s.vertex()) {
        let tail = printer.tail(v);
        if !tail.is_empty() {
            return anyhow!("{e}\nlast output lines:\n{}", tail.join("\n"));
        }
    }
    e
}
