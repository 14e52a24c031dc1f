//! The build driver: a parsed Dockerfile and a context directory -> a graph of ops -> a solved
//! [`Snapshot`] of the target stage.
//!
//! Conversion (as BuildKit's `dockerfile2llb`): base images are resolved first (from the local
//! store; pulled through the caller's [`Puller`] when missing or with `--pull`), so the
//! environment each instruction sees is known and words are expanded at conversion time with
//! docker's rules. Each stage becomes a chain of vertices: the source (an image, `scratch`, or an
//! earlier stage's last vertex), then one vertex per instruction. `RUN` and `COPY`/`ADD` are
//! cacheable ops producing a layer; the other instructions are config-only ops (a history entry
//! with `empty_layer`). Only the stages the target needs are converted.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use hoist_oci::{Digest, Reference};
use hoist_runtime::confined::Root;
use hoist_runtime::layers::LayerStore;
use hoist_runtime::rootfs::{Compression, LayerOptions, Rootfs, RootfsKind, write_layer};
use hoist_runtime::unpack::{UnpackOptions, Whiteouts, decompress, unpack_layer_at};
use hoist_storage::images::{ImageStore, Platform};
use serde_json::{Value, json};

use crate::cache::BuildCache;
use crate::context::{Context, ContextFile, FileKind, destination_paths};
use crate::dockerfile::{self, Command, Dockerfile, Instr, Instruction};
use crate::graph::{Graph, KeyBuilder, LogSink, Op, OpError, OpKind, VertexId};
use crate::snapshot::{LayerRef, Snapshot};
use crate::tree::{CopyAs, Entry, Meta, NewDir, Source, Upper, View};

/// Pulls an image into the local store (the CLI does it through hoist-client).
pub trait Puller: Send + Sync {
    fn pull<'a>(
        &'a self,
        reference: &'a Reference,
        platform: &'a Platform,
    ) -> BoxFuture<'a, Result<(), OpError>>;
}

/// Runs a `RUN` step (the runtime's executor in production).
pub trait Runner: Send + Sync {
    /// Runs `request` with `rootfs` as the container's root (an overlay whose upper dir is the
    /// step's new layer). Returns the exit code; output goes to `log`.
    fn run(&self, request: &RunRequest, rootfs: &Path, log: &dyn LogSink) -> Result<i32, OpError>;
}

/// What a `RUN` step runs.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub args: Vec<String>,
    /// `KEY=value`, the image's environment plus build args in scope.
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    /// Host network unless `false`.
    pub network: bool,
    /// `(host path, container path, read-only)` bind mounts (cache, bind, secret mounts).
    pub binds: Vec<(PathBuf, String, bool)>,
    /// Container paths to mount as tmpfs, with their `size=` in bytes.
    pub tmpfs: Vec<(String, Option<u64>)>,
    /// The image config (for `spec` defaults: user resolution and the like).
    pub image_config: Value,
}

/// The gzip level of the layers `hoist build` writes. Pinned: it decides the bytes, so the
/// digests, and it is part of every layer's cache key (a change of level is a cache miss, never a
/// layer whose digest differs from what the key promised).
///
/// Level 3, not the runtime's default 6: on the build bench's context (5,000 text files, 200 MB
/// uncompressed, `write_layer` alone, 2 cores, dev profile) level 1 took 1.9 s for 82.6 MB, level
/// 3 3.8 s for 55.2 MB and level 6 11.4 s for 46.9 MB. Level 6 made cold builds 1.29x slower than
/// buildah's (which does not compress until a push); level 3 is 3x faster for layers 18% larger,
/// while level 1 would gain another 2 s at the price of layers 50% larger than level 3's (pushed
/// and stored as such).
pub const BUILD_GZIP_LEVEL: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    #[default]
    Gzip,
    Zstd,
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's text and its name for messages.
    pub dockerfile: String,
    pub dockerfile_name: String,
    pub context_dir: PathBuf,
    /// The Dockerfile's path: `<Dockerfile>.dockerignore` next to it wins over the context's
    /// `.dockerignore` ([`Context::from_dir`]).
    pub dockerfile_path: Option<PathBuf>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    /// `--network none` for every RUN.
    pub network_none: bool,
    /// `--secret id=ID,src=PATH`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh default|ID[=SOCKET]`: ssh agent sockets by id, for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
    pub compression: LayerCompression,
    pub source_date_epoch: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Parse(#[from] dockerfile::ParseError),
    #[error("{file}:{line}: {message}\n  {line:>4} | {source_line}")]
    Instruction {
        file: String,
        line: usize,
        source_line: String,
        message: String,
    },
    #[error("target stage {0:?} could not be found")]
    NoTarget(String),
    #[error("the Dockerfile has no FROM")]
    NoStages,
    #[error("base image {reference}: {message}")]
    Base { reference: String, message: String },
    #[error(transparent)]
    Solve(#[from] crate::solver::SolveError),
    #[error("{file}:{line}: {source}")]
    Step {
        file: String,
        line: usize,
        #[source]
        source: crate::solver::SolveError,
    },
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Layers(#[from] hoist_runtime::layers::LayerError),
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image store: {0}")]
    Images(#[from] hoist_storage::images::ImageError),
    #[error("image store: {0}")]
    Content(#[from] hoist_storage::content::ContentError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Shared services of one build.
pub struct Env {
    pub images: ImageStore,
    pub cache: Arc<BuildCache>,
    /// The unpacked layers (the runtime's store, shared with `hoist run`).
    pub layers: LayerStore,
    /// Where steps write (`$HOIST_HOME/builder/work`): upper, work and mount dirs, on the same
    /// filesystem as the layer store so a finished upper dir moves into it.
    pub work_dir: PathBuf,
    pub runner: Option<Arc<dyn Runner>>,
    pub puller: Option<Arc<dyn Puller>>,
    pub layer_options: LayerOptions,
    pub platform: Platform,
    /// The layer store is in use: the layers this build makes are referenced by nothing until
    /// its cache records them, so the layer collector waits for the build to end.
    _hold: hoist_runtime::layers::InUse,
}

/// A converted build: the graph and its target.
pub struct Plan {
    pub graph: Arc<Graph<Snapshot>>,
    pub target: VertexId,
    /// Lines to show before solving (`[internal] load metadata for ...`).
    pub resolved: Vec<String>,
    pub context: Option<Arc<Context>>,
    /// The Dockerfile line of each instruction's vertex, for errors.
    pub lines: HashMap<VertexId, usize>,
    pub file: String,
}

impl Env {
    pub fn new(
        home: &Path,
        images: ImageStore,
        cache: Arc<BuildCache>,
        compression: LayerCompression,
        source_date_epoch: Option<i64>,
    ) -> Result<Self> {
        let layers = LayerStore::open(home)?;
        Ok(Env {
            images,
            cache,
            _hold: layers.hold()?,
            layers,
            work_dir: {
                let d = home.join("builder/work");
                fs::create_dir_all(&d).map_err(|source| BuildError::Io {
                    path: d.clone(),
                    source,
                })?;
                d
            },
            runner: None,
            puller: None,
            layer_options: LayerOptions {
                compression: match compression {
                    LayerCompression::Gzip => Compression::Gzip,
                    LayerCompression::Zstd => Compression::Zstd,
                },
                source_date_epoch,
                gzip_level: BUILD_GZIP_LEVEL,
            },
            platform: Platform::host(),
        })
    }

    /// A fresh empty directory for a step (removed when dropped).
    pub fn temp_dir(&self) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(&self.work_dir)
    }
}

// ---------------------------------------------------------------------------------------------
// Conversion

struct StageState {
    env: Vec<(String, String)>,
    args: BTreeMap<String, Option<String>>,
    workdir: String,
    user: String,
    shell: Vec<String>,
    config: Value,
    /// A CMD was set in this stage: a later ENTRYPOINT keeps it (BuildKit's `cmdSet`; an
    /// ENTRYPOINT clears only a CMD the stage inherited).
    cmd_set: bool,
    /// The stage's ONBUILD triggers (its own ONBUILD lines): a stage built `FROM` it runs them.
    onbuild: Vec<String>,
}

impl StageState {
    fn lookup(&self, k: &str) -> Option<String> {
        // Args first, then ENV overrides them, as docker does.
        if let Some((_, v)) = self.env.iter().rev().find(|(n, _)| n == k) {
            return Some(v.clone());
        }
        self.args.get(k).cloned().flatten()
    }
}

fn predefined_args(platform: &Platform) -> BTreeMap<String, String> {
    let p = match &platform.variant {
        Some(v) => format!("{}/{}/{v}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    };
    let mut m = BTreeMap::new();
    for prefix in ["TARGET", "BUILD"] {
        m.insert(format!("{prefix}PLATFORM"), p.clone());
        m.insert(format!("{prefix}OS"), platform.os.clone());
        m.insert(format!("{prefix}ARCH"), platform.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            platform.variant.clone().unwrap_or_default(),
        );
    }
    m
}

/// Proxy and platform args docker provides without an `ARG` line.
const IMPLICIT_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

enum Base {
    Scratch,
    Stage(usize),
    Image(Box<(Reference, hoist_storage::images::Image, Value)>),
}

fn instr_error(file: &str, i: &Instr, message: impl Into<String>) -> BuildError {
    BuildError::Instruction {
        file: file.to_owned(),
        line: i.line,
        source_line: i.source.clone(),
        message: message.into(),
    }
}

/// Converts the Dockerfile into a graph for `opts.target` (the last stage by default).
pub async fn plan(env: &Arc<Env>, opts: &BuildOptions) -> Result<Plan> {
    let df = dockerfile::parse(&opts.dockerfile, &opts.dockerfile_name)?;
    if df.stages.is_empty() {
        return Err(BuildError::NoStages);
    }
    let file = opts.dockerfile_name.clone();
    let escape = df.directives.escape;
    let predefined = predefined_args(&env.platform);
    // Global args: defaults, overridden by --build-arg.
    let mut global: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (k, v) in &predefined {
        global.insert(k.clone(), Some(v.clone()));
    }
    for a in &df.global_args {
        let lookup = |k: &str| global.get(k).cloned().flatten();
        let value = match opts.build_args.get(&a.name) {
            Some(v) => Some(v.clone()),
            None => match &a.default {
                Some(d) => Some(
                    dockerfile::expand(d, &lookup, escape)
                        .map_err(|e| BuildError::Other(format!("{file}: ARG {}: {e}", a.name)))?,
                ),
                None => None,
            },
        };
        global.insert(a.name.clone(), value);
    }
    let target = match &opts.target {
        Some(t) => df
            .stage(t)
            .map(|(i, _)| i)
            .ok_or_else(|| BuildError::NoTarget(t.clone()))?,
        None => df.stages.len() - 1,
    };
    // Bases and dependencies of each stage.
    let stage_index = |name: &str| -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        df.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    };
    let mut bases: Vec<Option<String>> = vec![None; df.stages.len()];
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); df.stages.len()];
    // `FROM --platform=`: the platform whose image the stage starts from.
    let mut platforms: Vec<Option<Platform>> = vec![None; df.stages.len()];
    for (i, s) in df.stages.iter().enumerate() {
        let lookup = |k: &str| global.get(k).cloned().flatten();
        let base =
            dockerfile::expand(&s.base, &lookup, escape).map_err(|e| BuildError::Instruction {
                file: file.clone(),
                line: s.line,
                source_line: s.source.clone(),
                message: e.to_string(),
            })?;
        if let Some(j) = stage_index(&base).filter(|&j| j < i) {
            deps[i].push(j);
        }
        for instr in &s.instructions {
            let from = match &instr.kind {
                Instruction::Copy(c) | Instruction::Add(c) => c.from.clone(),
                _ => None,
            };
            if let Some(f) = from {
                if let Some(j) = stage_index(&f).filter(|&j| j < i) {
                    deps[i].push(j);
                } else if let Ok(n) = f.parse::<usize>()
                    && n < i
                {
                    deps[i].push(n);
                }
            }
            if let Instruction::Run(r) = &instr.kind {
                for m in &r.mounts {
                    if let Some(f) = &m.from
                        && let Some(j) = stage_index(f).filter(|&j| j < i)
                    {
                        deps[i].push(j);
                    }
                }
            }
        }
        if let Some(p) = &s.platform {
            let lookup = |k: &str| global.get(k).cloned().flatten();
            let p =
                dockerfile::expand(p, &lookup, escape).map_err(|e| BuildError::Instruction {
                    file: file.clone(),
                    line: s.line,
                    source_line: s.source.clone(),
                    message: e.to_string(),
                })?;
            let parsed = Platform::parse(&p).map_err(|e| BuildError::Instruction {
                file: file.clone(),
                line: s.line,
                source_line: s.source.clone(),
                message: format!("FROM --platform={p}: {e}"),
            })?;
            platforms[i] = Some(parsed);
        }
        bases[i] = Some(base);
    }
    let mut needed = vec![false; df.stages.len()];
    let mut stack = vec![target];
    while let Some(s) = stack.pop() {
        if !std::mem::replace(&mut needed[s], true) {
            stack.extend(deps[s].iter().copied());
        }
    }
    // Resolve the bases of the needed stages.
    let mut resolved_bases: Vec<Option<Base>> = (0..df.stages.len()).map(|_| None).collect();
    let mut resolved = Vec::new();
    for i in 0..df.stages.len() {
        if !needed[i] {
            continue;
        }
        let base = bases[i].clone().unwrap_or_default();
        resolved_bases[i] = Some(if base == "scratch" {
            Base::Scratch
        } else if let Some(j) = stage_index(&base).filter(|&j| j < i) {
            if platforms[i].is_none() {
                platforms[i] = platforms[j].clone();
            }
            Base::Stage(j)
        } else {
            let (reference, image, config) =
                resolve_image(env, &base, opts.pull, platforms[i].as_ref()).await?;
            resolved.push(format!("[internal] load metadata for {reference}"));
            Base::Image(Box::new((reference, image, config)))
        });
    }

    // Images named by COPY --from or RUN --mount from= (not stages) in the needed stages.
    let mut from_image_refs: Vec<String> = Vec::new();
    for (i, s) in df.stages.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        for instr in &s.instructions {
            let froms: Vec<&String> = match &instr.kind {
                Instruction::Copy(c) | Instruction::Add(c) => c.from.iter().collect(),
                // RUN --mount=...,from=IMAGE (bind, cache).
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                let lookup = |k: &str| global.get(k).cloned().flatten();
                let f = dockerfile::expand(f, &lookup, escape)
                    .map_err(|e| instr_error(&file, instr, e.to_string()))?;
                let is_stage = stage_index(&f).is_some_and(|j| j < i)
                    || f.parse::<usize>().is_ok_and(|n| n < i);
                if !is_stage && !from_image_refs.contains(&f) {
                    from_image_refs.push(f);
                }
            }
        }
    }
    let mut from_image_sources = Vec::new();
    for f in from_image_refs {
        let (reference, image, config) = resolve_image(env, &f, opts.pull, None).await?;
        resolved.push(format!("[internal] load metadata for {reference}"));
        from_image_sources.push((f, reference, image, config));
    }

    // Convert.
    let context = Context::from_dir(&opts.context_dir, opts.dockerfile_path.as_deref())?;
    let hashes = hash_cache_path(&env.cache, context.root());
    let context = Arc::new(context.with_hash_cache(hashes));
    let mut graph: Graph<Snapshot> = Graph::new();
    let mut lines = HashMap::new();
    let mut from_images: HashMap<String, VertexId> = HashMap::new();
    for (name, reference, image, config) in from_image_sources {
        let snap = image_snapshot(&image, config)?;
        let mut k = KeyBuilder::new("image");
        k.str(image.digest.as_str());
        let v = graph.add(
            Arc::new(SourceOp {
                name: format!("FROM {reference}@{}", image.digest),
                key: k.finish(),
                snapshot: snap,
            }),
            vec![],
            "[internal]",
        );
        from_images.insert(name, v);
    }
    let mut tips: Vec<Option<(VertexId, StageState)>> =
        (0..df.stages.len()).map(|_| None).collect();
    let stage_count = df.stages.len();
    for i in 0..stage_count {
        if !needed[i] {
            continue;
        }
        let stage = &df.stages[i];
        let steps = 1 + stage
            .instructions
            .iter()
            .filter(|x| is_step(&x.kind))
            .count();
        let stage_label = |k: usize| match (&stage.name, stage_count) {
            (_, 1) => format!("[{k}/{steps}]"),
            (Some(n), _) => format!("[{n} {k}/{steps}]"),
            (None, _) => format!("[stage-{i} {k}/{steps}]"),
        };
        let mut onbuild: Vec<Instr> = Vec::new();
        let (mut tip, mut st) = match resolved_bases[i].take().expect("needed stage resolved") {
            Base::Scratch => {
                let snap = Snapshot {
                    layers: Vec::new(),
                    config: empty_config(platforms[i].as_ref().unwrap_or(&env.platform)),
                };
                let v = graph.add(
                    Arc::new(SourceOp {
                        name: "FROM scratch".into(),
                        key: b"scratch".to_vec(),
                        snapshot: snap.clone(),
                    }),
                    vec![],
                    "",
                );
                (v, state_of(&snap.config, &global))
            }
            Base::Stage(j) => {
                let (v, prev) = tips[j].as_ref().expect("earlier stage converted");
                let st = StageState {
                    env: prev.env.clone(),
                    args: BTreeMap::new(),
                    workdir: prev.workdir.clone(),
                    user: prev.user.clone(),
                    shell: prev.shell.clone(),
                    config: prev.config.clone(),
                    cmd_set: false,
                    onbuild: Vec::new(),
                };
                // The base stage's ONBUILD triggers run first here and are not inherited, as
                // for an image base (BuildKit reads them from the stage's image config).
                let mut v = *v;
                if !prev.onbuild.is_empty() {
                    for t in &prev.onbuild {
                        let of = df.stages[j]
                            .name
                            .clone()
                            .unwrap_or_else(|| format!("stage {j}"));
                        onbuild.extend(onbuild_trigger(t, &of)?);
                    }
                    v = graph.add(
                        Arc::new(MetaOp {
                            name: "ONBUILD triggers".into(),
                            change: MetaChange::ClearOnBuild,
                            history: None,
                        }),
                        vec![v],
                        String::new(),
                    );
                }
                (v, st)
            }
            Base::Image(b) => {
                let (reference, image, mut config) = *b;
                // The base's ONBUILD triggers run first in this stage, and are not inherited.
                if let Some(triggers) = config["config"]
                    .as_object_mut()
                    .and_then(|c| c.remove("OnBuild"))
                    .and_then(|t| t.as_array().cloned())
                {
                    for t in triggers.iter().filter_map(|t| t.as_str()) {
                        onbuild.extend(onbuild_trigger(t, &reference.to_string())?);
                    }
                }
                let config = base_config(config);
                let st = state_of(&config, &global);
                let snap = image_snapshot(&image, config)?;
                let mut k = KeyBuilder::new("image");
                k.str(image.digest.as_str());
                let v = graph.add(
                    Arc::new(SourceOp {
                        name: format!("FROM {}@{}", reference, image.digest),
                        key: k.finish(),
                        snapshot: snap,
                    }),
                    vec![],
                    stage_label(1),
                );
                (v, st)
            }
        };
        // Args of the stage: only what it declares (global values for global names).
        st.args.clear();
        for k in IMPLICIT_ARGS {
            if let Some(v) = opts.build_args.get(*k) {
                st.args.insert((*k).to_owned(), Some(v.clone()));
            }
        }
        let mut step = 1;
        for instr in onbuild.iter().chain(&stage.instructions) {
            if is_step(&instr.kind) {
                step += 1;
            }
            if let (Instruction::Run(_), Some(p)) = (&instr.kind, &platforms[i])
                && !can_run(&env.platform, p)
            {
                return Err(instr_error(
                    &file,
                    instr,
                    format!(
                        "RUN in a {p} stage: this host runs {} programs, and no emulator for {} is registered (binfmt_misc)",
                        env.platform, p.architecture
                    ),
                ));
            }
            let label = if is_step(&instr.kind) {
                stage_label(step)
            } else {
                String::new()
            };
            let before = graph.len();
            tip = convert(
                env,
                &mut graph,
                &context,
                &df,
                &file,
                escape,
                instr,
                tip,
                &mut st,
                &global,
                &predefined,
                opts,
                &tips,
                &from_images,
                label,
            )?;
            // Every vertex the instruction made (a linked COPY makes two) names its line.
            for v in before..graph.len() {
                lines.insert(VertexId(v), instr.line);
            }
        }
        tips[i] = Some((tip, st));
    }
    let (target_vertex, _) = tips[target].take().expect("target converted");
    Ok(Plan {
        graph: Arc::new(graph),
        target: target_vertex,
        resolved,
        context: Some(context),
        lines,
        file,
    })
}

/// The image config fields BuildKit keeps from a base image (the OCI ones and docker's
/// extensions); the rest (`Hostname`, `AttachStdin`, `Tty`...) is dropped, as BuildKit's parse
/// into its image struct drops it. A config with no `PATH` gets the default one, as
/// dockerfile2llb adds it.
fn base_config(mut config: Value) -> Value {
    const KEEP: &[&str] = &[
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ];
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    if let Some(c) = config["config"].as_object_mut() {
        c.retain(|k, v| KEEP.contains(&k.as_str()) && !v.is_null());
        let has_path = c.get("Env").and_then(Value::as_array).is_some_and(|e| {
            e.iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with("PATH=")))
        });
        if !has_path {
            let e = c.entry("Env").or_insert_with(|| json!([]));
            if !e.is_array() {
                *e = json!([]);
            }
            if let Some(a) = e.as_array_mut() {
                a.insert(0, json!(DEFAULT_PATH));
            }
        }
    }
    config
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn image_snapshot(image: &hoist_storage::images::Image, config: Value) -> Result<Snapshot> {
    let config = base_config(config);
    let layers = image
        .manifest
        .layers()
        .iter()
        .zip(hoist_storage::images::config_diff_ids(&config))
        .map(|(l, diff_id)| {
            Ok(LayerRef {
                digest: Digest::parse(l.digest().as_ref())
                    .map_err(|e| BuildError::Other(e.to_string()))?,
                diff_id,
                size: l.size(),
                media_type: l.media_type().to_string(),
                repo: Some(image.repo.to_string()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Snapshot { layers, config })
}

/// The ports one EXPOSE word names, as docker's `nat.ParsePortSpecs` reads it: `80`,
/// `80/udp`, a range `8000-8002/tcp` (one port each), an `ip:host:container` spec's container
/// part; the number normalised (`080` is `80`), the protocol lowercased.
fn expose_ports(spec: &str) -> std::result::Result<Vec<String>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let container = parts[parts.len() - 1];
    let (port, proto) = match container.split_once('/') {
        _ if container.is_empty() || container.starts_with('/') => ("", ""),
        None => (container, "tcp"),
        Some((p, "")) => (p, "tcp"),
        Some((p, proto)) => (p, proto.split('/').next().unwrap_or(proto)),
    };
    if port.is_empty() {
        return Err(format!("EXPOSE {spec}: no port specified"));
    }
    // Go's ParseUint: digits only (no sign), at most 65535.
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    let range = |r: &str| match r.split_once('-') {
        None => number(r).map(|p| (p, p)),
        Some((a, b)) => match (number(a), number(b.split('-').next().unwrap_or(b))) {
            (Some(a), Some(b)) if a <= b => Some((a, b)),
            _ => None,
        },
    };
    if parts.len() >= 2 {
        let host = parts[parts.len() - 2];
        if !host.is_empty() && range(host).is_none() {
            return Err(format!("EXPOSE {spec}: invalid hostPort: {host}"));
        }
    }
    let (start, end) =
        range(port).ok_or_else(|| format!("EXPOSE {spec}: invalid containerPort: {port}"))?;
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {spec}: invalid proto: {proto}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// The instructions of one ONBUILD trigger (`ENV A=1`) of `of` (an image or a stage).
fn onbuild_trigger(trigger: &str, of: &str) -> Result<Vec<Instr>> {
    let parsed = dockerfile::parse(
        &format!("FROM scratch\n{trigger}\n"),
        &format!("ONBUILD trigger of {of}"),
    )?;
    Ok(parsed
        .stages
        .into_iter()
        .next()
        .map(|s| s.instructions)
        .unwrap_or_default())
}

fn is_step(k: &Instruction) -> bool {
    matches!(
        k,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

fn empty_config(platform: &Platform) -> Value {
    let mut c = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": [DEFAULT_PATH], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    });
    if let Some(v) = &platform.variant {
        c["variant"] = json!(v);
    }
    c
}

fn state_of(config: &Value, _global: &BTreeMap<String, Option<String>>) -> StageState {
    let c = &config["config"];
    let env = c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str())
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (e.to_owned(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default();
    StageState {
        env,
        args: BTreeMap::new(),
        workdir: c["WorkingDir"].as_str().unwrap_or("").to_owned(),
        user: c["User"].as_str().unwrap_or("").to_owned(),
        shell: c["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]),
        config: config.clone(),
        cmd_set: false,
        onbuild: Vec::new(),
    }
}

/// Whether this host runs `p`'s programs: its own platform, or one with a binfmt_misc emulator
/// (qemu-user) registered.
fn can_run(host: &Platform, p: &Platform) -> bool {
    if p.os != host.os {
        return false;
    }
    if p.architecture == host.architecture {
        return true;
    }
    let qemu = match p.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        other => other,
    };
    Path::new("/proc/sys/fs/binfmt_misc")
        .join(format!("qemu-{qemu}"))
        .exists()
}

/// A base image from the local store (pulled when missing or with `pull`), for `platform` (from
/// `FROM --platform`; the host's when `None`). An image that is not for the platform asked for is
/// an error, not a silent substitute.
async fn resolve_image(
    env: &Arc<Env>,
    name: &str,
    pull: bool,
    platform: Option<&Platform>,
) -> Result<(Reference, hoist_storage::images::Image, Value)> {
    let wanted = platform.unwrap_or(&env.platform);
    let reference = Reference::parse(name).map_err(|e| BuildError::Base {
        reference: name.to_owned(),
        message: e.to_string(),
    })?;
    let base_err = |message: String| BuildError::Base {
        reference: reference.familiar(),
        message,
    };
    let mut present = env.images.image(&reference, wanted).await;
    if pull || present.is_err() {
        match &env.puller {
            Some(p) => {
                let pulled = p.pull(&reference, wanted).await;
                match (pulled, &present) {
                    (Ok(()), _) => present = env.images.image(&reference, wanted).await,
                    // Without --pull a missing image must come from the registry.
                    (Err(e), Err(_)) => {
                        return Err(base_err(format!(
                            "not in the local store, and pulling failed: {e}"
                        )));
                    }
                    (Err(e), Ok(_)) => {
                        return Err(base_err(format!("pulling failed: {e}")));
                    }
                }
            }
            None if present.is_err() => {
                return Err(base_err("not in the local store".into()));
            }
            None => {}
        }
    }
    let image = present.map_err(|e| base_err(e.to_string()))?;
    let (_, bytes) = env.images.config(&image).await?;
    let config: Value =
        serde_json::from_slice(&bytes).map_err(|e| base_err(format!("config: {e}")))?;
    if let Some(p) = platform {
        let is = |k: &str, v: &str| config[k].as_str().is_none_or(|c| c == v);
        if !is("os", &p.os) || !is("architecture", &p.architecture) {
            return Err(base_err(format!(
                "the image is for {}/{}, not {p}",
                config["os"].as_str().unwrap_or("?"),
                config["architecture"].as_str().unwrap_or("?")
            )));
        }
    }
    Ok((reference, image, config))
}

#[allow(clippy::too_many_arguments)]
fn convert(
    env: &Arc<Env>,
    graph: &mut Graph<Snapshot>,
    context: &Arc<Context>,
    df: &Dockerfile,
    file: &str,
    escape: char,
    instr: &Instr,
    tip: VertexId,
    st: &mut StageState,
    global: &BTreeMap<String, Option<String>>,
    predefined: &BTreeMap<String, String>,
    opts: &BuildOptions,
    tips: &[Option<(VertexId, StageState)>],
    from_images: &HashMap<String, VertexId>,
    label: String,
) -> Result<VertexId> {
    let err = |m: String| instr_error(file, instr, m);
    let ex = |w: &str, st: &StageState| -> Result<String> {
        dockerfile::expand(w, &|k| st.lookup(k), escape).map_err(|e| err(e.to_string()))
    };
    let meta = |graph: &mut Graph<Snapshot>, change: MetaChange, history: bool| {
        let history = if history {
            meta_created_by(&change)
        } else {
            None
        };
        graph.add(
            Arc::new(MetaOp {
                name: instr.source.clone(),
                change,
                history,
            }),
            vec![tip],
            label.clone(),
        )
    };
    let v = match &instr.kind {
        Instruction::Arg(decls) => {
            let mut written = Vec::new();
            for a in decls {
                let value = match opts.build_args.get(&a.name) {
                    Some(v) => Some(v.clone()),
                    None => match &a.default {
                        Some(d) => Some(ex(d, st)?),
                        None => global
                            .get(&a.name)
                            .cloned()
                            .flatten()
                            .or_else(|| predefined.get(&a.name).cloned()),
                    },
                };
                written.push(match &a.default {
                    Some(d) => format!("{}={}", a.name, ex(d, st)?),
                    None => a.name.clone(),
                });
                st.args.insert(a.name.clone(), value);
            }
            // An empty history entry, as BuildKit's (`ARG A=default`, the default not the value).
            meta(graph, MetaChange::Arg(written.join(" ")), true)
        }
        Instruction::Env(pairs) => {
            // Every value is expanded against the environment before this ENV, as BuildKit's
            // (`ENV A=2 B=$A` after `A=1` sets B=1).
            let mut set = Vec::new();
            for (k, v) in pairs {
                set.push((ex(k, st)?, ex(v, st)?));
            }
            for (k, v) in &set {
                st.env.retain(|(n, _)| n != k);
                st.env.push((k.clone(), v.clone()));
            }
            meta(graph, MetaChange::Env(set), true)
        }
        Instruction::Label(pairs) => {
            let mut set = Vec::new();
            for (k, v) in pairs {
                set.push((ex(k, st)?, ex(v, st)?));
            }
            meta(graph, MetaChange::Labels(set), true)
        }
        Instruction::Maintainer(m) => meta(graph, MetaChange::Author(m.clone()), true),
        Instruction::Expose(ports) => {
            let mut out = Vec::new();
            for p in ports {
                for w in dockerfile::expand_words(p, &|k| st.lookup(k), escape)
                    .map_err(|e| err(e.to_string()))?
                {
                    out.extend(expose_ports(&w).map_err(err)?);
                }
            }
            meta(graph, MetaChange::Expose(out), true)
        }
        Instruction::Volume(vols) => {
            let mut out = Vec::new();
            for v in vols {
                let v = ex(v, st)?;
                if v.trim().is_empty() {
                    return Err(err("VOLUME specified can not be an empty string".into()));
                }
                out.push(v);
            }
            meta(graph, MetaChange::Volumes(out), true)
        }
        Instruction::User(u) => {
            let u = ex(u, st)?;
            st.user = u.clone();
            meta(graph, MetaChange::User(u), true)
        }
        Instruction::Workdir(w) => {
            let w = ex(w, st)?;
            // As BuildKit 0.8: an absolute path is kept as written, a relative one joined to
            // the current workdir and cleaned.
            let abs = if w.starts_with('/') {
                w
            } else {
                let j = clean_abs(&format!("{}/{w}", st.workdir));
                if j.is_empty() { "/".to_owned() } else { j }
            };
            st.workdir = abs.clone();
            if abs == "/" {
                meta(graph, MetaChange::Workdir(abs), true)
            } else {
                // As BuildKit: the directory is made (with its parents, owned by USER) in a
                // layer of its own, an empty one when it exists.
                graph.add(
                    Arc::new(WorkdirOp {
                        env: env.clone(),
                        name: instr.source.clone(),
                        created_by: format!("WORKDIR {abs}"),
                        path: abs,
                        user: st.user.clone(),
                    }),
                    vec![tip],
                    label,
                )
            }
        }
        Instruction::Stopsignal(s) => meta(graph, MetaChange::StopSignal(ex(s, st)?), true),
        Instruction::Shell(s) => {
            st.shell = s.clone();
            meta(graph, MetaChange::Shell(s.clone()), true)
        }
        Instruction::Cmd(c) => {
            st.cmd_set = true;
            meta(graph, MetaChange::Cmd(command_args(c, &st.shell)), true)
        }
        Instruction::Entrypoint(c) => meta(
            graph,
            MetaChange::Entrypoint {
                args: command_args(c, &st.shell),
                keep_cmd: st.cmd_set,
            },
            true,
        ),
        Instruction::Healthcheck(h) => meta(
            graph,
            MetaChange::Healthcheck(serde_json::to_value(HealthJson::from(h)).unwrap_or_default()),
            true,
        ),
        Instruction::Onbuild(inner) => {
            st.onbuild.push(inner.source.clone());
            meta(graph, MetaChange::OnBuild(inner.source.clone()), true)
        }
        Instruction::Copy(c) | Instruction::Add(c) => {
            let is_add = matches!(instr.kind, Instruction::Add(_));
            let mut sources = Vec::new();
            for s in &c.sources {
                sources.push(ex(s, st)?);
            }
            let dest_raw = ex(&c.dest, st)?;
            let dest = if dest_raw.starts_with('/') {
                dest_raw.clone()
            } else {
                format!("{}/{}", st.workdir.trim_end_matches('/'), dest_raw)
            };
            // `.` (the workdir) is a directory, as BuildKit's dockerfile2llb reads it.
            let dest_is_dir = dest_raw.ends_with('/')
                || dest_raw.ends_with("/.")
                || dest_raw == "."
                || dest_raw.is_empty()
                || sources.len() + c.heredocs.len() > 1;
            let chown = c.chown.as_deref().map(|s| ex(s, st)).transpose()?;
            let chmod = match c.chmod.as_deref().map(|s| ex(s, st)).transpose()? {
                Some(m) => Some(
                    u32::from_str_radix(&m, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            err(format!("invalid --chmod={m}: expected an octal mode"))
                        })?,
                ),
                None => None,
            };
            let mut heredocs = Vec::new();
            for h in &c.heredocs {
                let content = if h.expand {
                    dockerfile::expand_heredoc(&h.content, &|k| st.lookup(k), escape)
                        .map_err(|e| err(e.to_string()))?
                } else {
                    h.content.clone()
                };
                heredocs.push((h.name.clone(), content));
            }
            let mut from_input = None;
            let from = match c.from.as_deref().map(|f| ex(f, st)).transpose()? {
                None => CopyFrom::Context(context.clone()),
                Some(f) => {
                    let lower = f.to_ascii_lowercase();
                    let idx = df
                        .stages
                        .iter()
                        .position(|s| s.name.as_deref() == Some(lower.as_str()))
                        .or_else(|| f.parse::<usize>().ok());
                    match idx.and_then(|j| tips.get(j).and_then(|t| t.as_ref())) {
                        Some((v, _)) => {
                            from_input = Some(*v);
                            CopyFrom::Input
                        }
                        None => match from_images.get(&f) {
                            Some(v) => {
                                from_input = Some(*v);
                                CopyFrom::Input
                            }
                            None => {
                                return Err(err(format!(
                                    "COPY --from={f}: no such stage or image"
                                )));
                            }
                        },
                    }
                }
            };
            // `--link --chown=NAME` needs the parent's /etc/passwd and /etc/group: only then is
            // the parent an input of the linked copy.
            let link_parent = c.link
                && chown
                    .as_deref()
                    .is_some_and(|spec| spec.split(':').any(|part| part.parse::<u32>().is_err()));
            // BuildKit's form: the sources and destination expanded, the flags left out.
            let copy_created_by = format!(
                "{} {} {} # buildkit",
                if is_add { "ADD" } else { "COPY" },
                sources.join(" "),
                dest_raw
            );
            let op = CopyOp {
                env: env.clone(),
                name: instr.source.clone(),
                is_add,
                sources,
                heredocs,
                dest,
                dest_is_dir,
                chown,
                chmod,
                exclude: c.exclude.clone(),
                parents: c.parents,
                link: c.link,
                link_parent,
                from,
                created_by: copy_created_by,
                checksum: c.checksum.as_deref().map(|s| ex(s, st)).transpose()?,
                fetched: parking_lot::Mutex::new(HashMap::new()),
                keep_git_dir: c.keep_git_dir,
                git: parking_lot::Mutex::new(Vec::new()),
            };
            let mut inputs = Vec::new();
            if !c.link || link_parent {
                inputs.push(tip);
            }
            inputs.extend(from_input);
            let copied = graph.add(Arc::new(op), inputs, label);
            if c.link {
                // The linked layer goes on the parent; cheap, so recomputed, never cached.
                graph.add(
                    Arc::new(MergeOp {
                        name: instr.source.clone(),
                    }),
                    vec![tip, copied],
                    String::new(),
                )
            } else {
                copied
            }
        }
        Instruction::Run(r) => {
            let args = match r.script() {
                Some(dockerfile::RunScript::Shell(s)) => {
                    let mut a = st.shell.clone();
                    a.push(s);
                    a
                }
                Some(dockerfile::RunScript::Shebang(body)) => {
                    let mut a = st.shell.clone();
                    a.push(format!(
                        "f=$(mktemp); cat > \"$f\" <<'HOIST_EOF'\n{body}HOIST_EOF\nchmod +x \"$f\"; \"$f\"; s=$?; rm -f \"$f\"; exit $s"
                    ));
                    a
                }
                None => match &r.command {
                    Command::Exec(a) => a.clone(),
                    Command::Shell(s) => vec![s.clone()],
                },
            };
            let mut env_list: Vec<String> =
                st.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            // Build args in scope reach RUN's environment (not the image's).
            for (k, v) in &st.args {
                if let Some(v) = v
                    && !st.env.iter().any(|(n, _)| n == k)
                {
                    env_list.push(format!("{k}={v}"));
                }
            }
            let network = match r.network.as_deref() {
                Some("none") => false,
                Some(_) => true,
                None => !opts.network_none,
            };
            let mut mounts = Vec::new();
            let mut extra_inputs = Vec::new();
            for m in &r.mounts {
                let target = m.target.as_deref().map(|t| ex(t, st)).transpose()?;
                // `from=` a stage or an image (bind, cache): an extra input.
                let from = match m.from.as_deref().map(|f| ex(f, st)).transpose()? {
                    None => None,
                    Some(f) => {
                        if !matches!(
                            m.kind,
                            dockerfile::MountType::Bind | dockerfile::MountType::Cache
                        ) {
                            return Err(err(format!(
                                "RUN --mount=type={},from={f}: from= is for bind and cache mounts only",
                                format!("{:?}", m.kind).to_lowercase()
                            )));
                        }
                        let lower = f.to_ascii_lowercase();
                        let v = df
                            .stages
                            .iter()
                            .position(|s| s.name.as_deref() == Some(lower.as_str()))
                            .or_else(|| f.parse::<usize>().ok())
                            .and_then(|j| tips.get(j).and_then(|t| t.as_ref()))
                            .map(|(v, _)| *v)
                            .or_else(|| from_images.get(&f).copied())
                            .ok_or_else(|| {
                                err(format!("RUN --mount from={f}: no such stage or image"))
                            })?;
                        extra_inputs.push(v);
                        Some(extra_inputs.len())
                    }
                };
                mounts.push(RunMountSpec {
                    kind: m.kind,
                    target,
                    source: m.source.as_deref().map(|t| ex(t, st)).transpose()?,
                    id: m.id.as_deref().map(|t| ex(t, st)).transpose()?,
                    readonly: m.readonly,
                    required: m.required,
                    env: m.env.clone(),
                    from,
                    sharing: m.sharing.unwrap_or(dockerfile::CacheSharing::Shared),
                    mode: m.mode,
                    uid: m.uid,
                    gid: m.gid,
                    size: m.size,
                });
            }
            let secrets = opts.secrets.clone();
            let ssh = opts.ssh.clone();
            graph.add(
                Arc::new(RunOp {
                    env: env.clone(),
                    name: instr.source.clone(),
                    request: RunRequest {
                        args,
                        env: env_list,
                        cwd: if st.workdir.is_empty() {
                            "/".into()
                        } else {
                            st.workdir.clone()
                        },
                        user: st.user.clone(),
                        network,
                        binds: Vec::new(),
                        tmpfs: Vec::new(),
                        image_config: Value::Null,
                    },
                    mounts,
                    secrets,
                    ssh,
                    context: context.clone(),
                    created_by: format!("RUN {}", run_created_by(r, st)),
                }),
                std::iter::once(tip).chain(extra_inputs).collect(),
                label,
            )
        }
    };
    Ok(v)
}

/// What shapes a layer's bytes besides the op: compression (and its level) and the clamped
/// mtimes.
fn layer_key(k: &mut KeyBuilder, o: &LayerOptions) {
    match o.compression {
        Compression::Gzip => k.str("gzip").u64(u64::from(o.gzip_level)),
        Compression::Zstd => k.str("zstd"),
        Compression::None => k.str("none"),
    };
    k.u64(o.source_date_epoch.map_or(u64::MAX, |t| t as u64));
}

/// BuildKit's `runCommandString`: `|N K=V ...` for the stage's declared ARGs (an ENV of the same
/// name wins), then the command's arguments (the SHELL's for the shell form) joined by spaces.
fn run_created_by(r: &dockerfile::Run, st: &StageState) -> String {
    let args: Vec<String> = st
        .args
        .iter()
        .map(|(k, v)| {
            let v = st
                .env
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| v.clone())
                .unwrap_or_default();
            format!("{k}={v}")
        })
        .collect();
    let prefix = if args.is_empty() {
        String::new()
    } else {
        format!("|{} {} ", args.len(), args.join(" "))
    };
    let cmd = match &r.command {
        Command::Shell(s) => format!("{} {s}", st.shell.join(" ")),
        Command::Exec(a) => a.join(" "),
    };
    format!("{prefix}{cmd} # buildkit")
}

fn command_args(c: &Command, shell: &[String]) -> Vec<String> {
    match c {
        Command::Exec(a) => a.clone(),
        Command::Shell(s) => {
            let mut a = shell.to_vec();
            a.push(s.clone());
            a
        }
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct HealthJson {
    test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
}

impl From<&dockerfile::Healthcheck> for HealthJson {
    fn from(h: &dockerfile::Healthcheck) -> Self {
        HealthJson {
            test: h.test.clone(),
            interval: h.interval,
            timeout: h.timeout,
            start_period: h.start_period,
            start_interval: h.start_interval,
            retries: h.retries,
        }
    }
}

fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

// ---------------------------------------------------------------------------------------------
// Ops

struct SourceOp {
    name: String,
    key: Vec<u8>,
    snapshot: Snapshot,
}

impl Op<Snapshot> for SourceOp {
    fn kind(&self) -> OpKind {
        OpKind::Source
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move { Ok(self.key.clone()) }.boxed()
    }
    fn run<'a>(
        &'a self,
        _: &'a [Arc<Snapshot>],
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move { Ok(self.snapshot.clone()) }.boxed()
    }
}

/// The history entry BuildKit's dockerfile2llb writes for a config-only instruction (its Go
/// formatting: `EXPOSE map[80/tcp:{}]`, `CMD ["a" "b"]`, `VOLUME [/a /b]`); `ONBUILD` and
/// `HEALTHCHECK`'s own forms aside, none for `ONBUILD`.
fn meta_created_by(change: &MetaChange) -> Option<String> {
    let q = |a: &[String]| {
        a.iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pairs = |set: &[(String, String)]| {
        set.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(match change {
        MetaChange::Env(set) => format!("ENV {}", pairs(set)),
        MetaChange::Labels(set) => format!("LABEL {}", pairs(set)),
        MetaChange::Author(a) => format!("MAINTAINER {a}"),
        MetaChange::Expose(ports) => {
            let mut p: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
            p.sort();
            p.dedup();
            format!("EXPOSE map[{}]", p.join(" "))
        }
        MetaChange::Volumes(v) => format!("VOLUME [{}]", v.join(" ")),
        MetaChange::User(u) => format!("USER {u}"),
        MetaChange::Workdir(w) => format!("WORKDIR {w}"),
        MetaChange::StopSignal(s) => format!("STOPSIGNAL {s}"),
        MetaChange::Shell(s) => format!("SHELL [{}]", s.join(" ")),
        MetaChange::Cmd(a) => format!("CMD [{}]", q(a)),
        MetaChange::Entrypoint { args, .. } => format!("ENTRYPOINT [{}]", q(args)),
        MetaChange::Healthcheck(h) => {
            let d = |k: &str| {
                let ns = h[k].as_u64().unwrap_or(0);
                go_duration(ns)
            };
            let test: Vec<String> = h["Test"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "HEALTHCHECK &{{[{}] {:?} {:?} {:?} '\\x{:02x}'}}",
                q(&test),
                d("Interval"),
                d("Timeout"),
                d("StartPeriod"),
                h["Retries"].as_u64().unwrap_or(0)
            )
        }
        MetaChange::OnBuild(_) | MetaChange::ClearOnBuild => return None,
        MetaChange::Arg(a) => format!("ARG {a}"),
    })
}

/// A duration in nanoseconds as Go's `time.Duration` prints it (`5s`, `1m30s`, `0s`).
fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

#[derive(Debug, Clone, serde::Serialize)]
enum MetaChange {
    Env(Vec<(String, String)>),
    Labels(Vec<(String, String)>),
    Author(String),
    Expose(Vec<String>),
    Volumes(Vec<String>),
    User(String),
    Workdir(String),
    StopSignal(String),
    Shell(Vec<String>),
    Cmd(Vec<String>),
    /// `keep_cmd`: a CMD was set earlier in the stage (an inherited one is cleared).
    Entrypoint {
        args: Vec<String>,
        keep_cmd: bool,
    },
    Healthcheck(Value),
    OnBuild(String),
    /// A stage built on another stage ran its ONBUILD triggers: they are not inherited.
    ClearOnBuild,
    /// No change: `ARG`'s history entry.
    Arg(String),
}

struct MetaOp {
    name: String,
    change: MetaChange,
    history: Option<String>,
}

/// The `created` time of the newest history entry: config-only steps reuse it, so a rebuild with
/// every layer cached gives the same image config (and id).
fn last_created(config: &Value) -> Value {
    config["history"]
        .as_array()
        .and_then(|h| h.iter().rev().find_map(|e| e.get("created").cloned()))
        .or_else(|| config.get("created").cloned())
        .unwrap_or(Value::Null)
}

impl Op<Snapshot> for MetaOp {
    fn kind(&self) -> OpKind {
        OpKind::Meta
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move {
            let mut k = KeyBuilder::new("meta");
            k.bytes(&serde_json::to_vec(&self.change)?);
            k.opt(self.history.as_deref());
            Ok(k.finish())
        }
        .boxed()
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        log: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        self.run_owned(inputs.to_vec(), log)
    }
    fn run_owned<'a>(
        &'a self,
        mut inputs: Vec<Arc<Snapshot>>,
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>>
    where
        Snapshot: Send + Sync + 'a,
    {
        async move {
            // Unshared (the solver's last reference): changed in place, not copied.
            let mut s = Arc::unwrap_or_clone(inputs.swap_remove(0));
            apply_meta(&mut s.config, &self.change);
            if let Some(h) = &self.history {
                let created = last_created(&s.config);
                push_history(&mut s.config, h, created, true);
            }
            Ok(s)
        }
        .boxed()
    }
}

/// `WORKDIR DIR`: the working directory in the config, and DIR made in a layer of its own (its
/// missing parents too, 0755, owned by the stage's USER), as BuildKit's mkdir file op: an empty
/// layer when DIR exists, an error when a non-directory is in the way. Paths resolve inside the
/// root (a symlinked parent is followed there).
struct WorkdirOp {
    env: Arc<Env>,
    name: String,
    path: String,
    user: String,
    created_by: String,
}

impl Op<Snapshot> for WorkdirOp {
    fn kind(&self) -> OpKind {
        OpKind::Copy
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move {
            let mut k = KeyBuilder::new("workdir");
            layer_key(&mut k, &self.env.layer_options);
            k.str(&self.path).str(&self.user);
            Ok(k.finish())
        }
        .boxed()
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move {
            let parent = inputs[0].clone();
            let dirs = layer_dirs(&self.env, &parent).await?;
            let env = self.env.clone();
            tokio::task::block_in_place(|| -> Result<Snapshot, OpError> {
                let upper = env.temp_dir()?;
                let root = upper.path().join("upper");
                fs::create_dir(&root)?;
                let view = View::open(&dirs)?;
                let up = Upper::new(&root, &view)?;
                let resolved = up.view().resolve(&self.path, true)?;
                let mut exists = true;
                for i in 1..=resolved.len() {
                    match up.view().get(&resolved[..i])? {
                        Some(e) if e.meta.is_dir() => {}
                        Some(_) => {
                            return Err(format!(
                                "WORKDIR {}: /{} is not a directory",
                                self.path,
                                resolved[..i].join("/")
                            )
                            .into());
                        }
                        None => {
                            exists = false;
                            break;
                        }
                    }
                }
                if !exists {
                    let (uid, gid) = workdir_owner(&self.user, &view);
                    up.dir_all(
                        &self.path,
                        NewDir {
                            mode: 0o755,
                            uid,
                            gid,
                        },
                    )?;
                }
                let mut base = (*parent).clone();
                apply_meta(&mut base.config, &MetaChange::Workdir(self.path.clone()));
                commit_layer(&env, &base, &root, &self.created_by)
            })
        }
        .boxed()
    }
}

/// Who owns the directories WORKDIR makes: the stage's USER (`name`, `uid`, `user:group`)
/// through the image's /etc/passwd and /etc/group; root when there is none or the image does not
/// know the name, as BuildKit's file op reads it.
fn workdir_owner(user: &str, view: &View) -> (u32, u32) {
    if user.is_empty() {
        return (0, 0);
    }
    resolve_chown(user, view).unwrap_or_else(|e| {
        tracing::debug!("WORKDIR owner {user}: {e}: root");
        (0, 0)
    })
}

/// `COPY --link`: the linked layer(s) of its second input on top of its first, with their
/// history entries.
struct MergeOp {
    name: String,
}

impl Op<Snapshot> for MergeOp {
    fn kind(&self) -> OpKind {
        OpKind::Merge
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move { Ok(KeyBuilder::new("merge").finish()) }.boxed()
    }
    fn cacheable(&self) -> bool {
        false
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move {
            let mut s = (*inputs[0]).clone();
            let linked = &inputs[1];
            s.layers.extend(linked.layers.iter().cloned());
            if !s.config["history"].is_array() {
                s.config["history"] = json!([]);
            }
            if let (Some(h), Some(add)) = (
                s.config["history"].as_array_mut(),
                linked.config["history"].as_array(),
            ) {
                h.extend(add.iter().cloned());
            }
            Ok(s)
        }
        .boxed()
    }
}

fn push_history(config: &mut Value, created_by: &str, created: Value, empty: bool) {
    if !config["history"].is_array() {
        config["history"] = json!([]);
    }
    let mut h = json!({"created_by": created_by, "comment": "buildkit.dockerfile.v0"});
    if !created.is_null() {
        h["created"] = created;
    }
    if empty {
        h["empty_layer"] = json!(true);
    }
    config["history"]
        .as_array_mut()
        .expect("history is an array")
        .push(h);
}

fn apply_meta(config: &mut Value, change: &MetaChange) {
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let c = config["config"].as_object_mut().expect("config object");
    match change {
        MetaChange::Env(set) => {
            // In place: a step costs what it changes, not the size of the environment.
            let env = c.entry("Env").or_insert_with(|| json!([]));
            if !env.is_array() {
                *env = json!([]);
            }
            let env = env.as_array_mut().expect("env array");
            env.retain(Value::is_string);
            for (k, v) in set {
                let entry = Value::String(format!("{k}={v}"));
                let name = |e: &Value| {
                    let e = e.as_str().unwrap_or_default();
                    e.split_once('=').map_or(e, |(n, _)| n) == k
                };
                match env.iter().position(name) {
                    Some(i) => env[i] = entry,
                    None => env.push(entry),
                }
            }
        }
        MetaChange::Labels(set) => {
            let labels = c.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in set {
                labels[k] = json!(v);
            }
        }
        MetaChange::Author(a) => {
            config["author"] = json!(a);
        }
        MetaChange::Expose(ports) => {
            let e = c.entry("ExposedPorts").or_insert_with(|| json!({}));
            if !e.is_object() {
                *e = json!({});
            }
            for p in ports {
                e[p] = json!({});
            }
        }
        MetaChange::Volumes(vols) => {
            let e = c.entry("Volumes").or_insert_with(|| json!({}));
            if !e.is_object() {
                *e = json!({});
            }
            for v in vols {
                e[v] = json!({});
            }
        }
        MetaChange::User(u) => {
            c.insert("User".into(), json!(u));
        }
        MetaChange::Workdir(w) => {
            c.insert("WorkingDir".into(), json!(w));
        }
        MetaChange::StopSignal(s) => {
            c.insert("StopSignal".into(), json!(s));
        }
        MetaChange::Shell(s) => {
            c.insert("Shell".into(), json!(s));
        }
        // An empty list is no value, as BuildKit's config (`omitempty`) writes it: `CMD []`
        // clears the inherited command.
        MetaChange::Cmd(a) if a.is_empty() => {
            c.remove("Cmd");
        }
        MetaChange::Cmd(a) => {
            c.insert("Cmd".into(), json!(a));
        }
        MetaChange::Entrypoint { args, keep_cmd } => {
            if args.is_empty() {
                c.remove("Entrypoint");
            } else {
                c.insert("Entrypoint".into(), json!(args));
            }
            // As BuildKit: a new ENTRYPOINT resets a CMD the stage inherited, not one it set.
            if !keep_cmd {
                c.remove("Cmd");
            }
        }
        MetaChange::Healthcheck(h) => {
            c.insert("Healthcheck".into(), h.clone());
        }
        MetaChange::Arg(_) => {}
        MetaChange::ClearOnBuild => {
            c.remove("OnBuild");
        }
        MetaChange::OnBuild(s) => {
            let e = c.entry("OnBuild").or_insert_with(|| json!([]));
            if !e.is_array() {
                *e = json!([]);
            }
            e.as_array_mut().expect("array").push(json!(s));
        }
    }
}

/// Unpacked dirs of a snapshot's layers (bottom..top), from the runtime's layer store: a layer
/// missing there (or whose blob was never checked against it) is unpacked from its blob, verified
/// (digest, size, diff_id) as it streams, whoever else asks concurrently.
pub async fn layer_dirs(env: &Arc<Env>, snap: &Snapshot) -> Result<Vec<PathBuf>, OpError> {
    let mut out = Vec::with_capacity(snap.layers.len());
    for l in &snap.layers {
        let ready = env
            .layers
            .record(&l.diff_id)?
            .is_some_and(|r| r.verified.contains(&l.digest));
        if !ready {
            let layers = env.layers.clone();
            let (digest, diff_id, size) = (l.digest.clone(), l.diff_id.clone(), l.size);
            match &l.repo {
                None => {
                    let blob = env.cache.blob_path(&l.digest);
                    tokio::task::spawn_blocking(move || {
                        let f = fs::File::open(&blob)
                            .map_err(|e| format!("build cache blob {}: {e}", blob.display()))?;
                        layers.ensure(f, &digest, size, &diff_id)?;
                        Ok::<_, OpError>(())
                    })
                    .await??;
                }
                Some(repo) => {
                    let repo = hoist_oci::RepoName::parse(repo)?;
                    let mut reader = env
                        .images
                        .store()
                        .blob_open(&repo, &l.digest, 0)
                        .await?
                        .reader;
                    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
                    let unpack = tokio::task::spawn_blocking(move || {
                        layers.ensure(ChannelReader::new(rx), &digest, size, &diff_id)
                    });
                    use tokio::io::AsyncReadExt;
                    loop {
                        let mut buf = vec![0u8; 256 * 1024];
                        match reader.read(&mut buf).await {
                            Ok(0) => break,
                            Ok(n) => {
                                buf.truncate(n);
                                if tx.send(Ok(buf)).is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                break;
                            }
                        }
                    }
                    drop(tx);
                    unpack.await??;
                }
            }
        }
        out.push(env.layers.root(&l.diff_id));
    }
    Ok(out)
}

struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes `upper` as a layer into the build cache, keeps the dir as the layer's snapshot, and
/// returns the snapshot with the layer (and its history entry) added.
fn commit_layer(
    env: &Env,
    parent: &Snapshot,
    upper: &Path,
    created_by: &str,
) -> Result<Snapshot, OpError> {
    let tmp = env.cache.temp_file()?;
    let out = io::BufWriter::with_capacity(256 * 1024, tmp.reopen()?);
    let info = write_layer(upper, out, &env.layer_options)?;
    let blob = env.cache.commit_blob(tmp, &info.digest)?;
    // The upper dir becomes the unpacked layer in the store (no unpack of the blob just written).
    // Its canonical tree digest is the diff_id unless mtimes were clamped in the tar.
    let tree = match env.layer_options.source_date_epoch {
        None => info.diff_id.clone(),
        Some(_) => hoist_runtime::layers::tree_digest(upper)?,
    };
    let adopted = env.layers.adopt(
        upper,
        &info.digest,
        &info.diff_id,
        &tree,
        info.uncompressed_size,
    )?;
    if !adopted {
        env.layers.ensure(
            io::BufReader::new(fs::File::open(&blob)?),
            &info.digest,
            info.size,
            &info.diff_id,
        )?;
    }
    let mut s = parent.clone();
    s.layers.push(LayerRef {
        digest: info.digest,
        diff_id: info.diff_id,
        size: info.size,
        media_type: info.media_type.to_owned(),
        repo: None,
    });
    let created = match env.layer_options.source_date_epoch {
        Some(t) => hoist_time(t),
        None => hoist_time(now_secs()),
    };
    push_history(&mut s.config, created_by, json!(created), false);
    Ok(s)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// RFC 3339 UTC.
pub fn hoist_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ----- the build context -----

/// Where the file-hash cache of a context directory persists: `$HOIST_HOME/builder/hashes/<sha256
/// of the context's canonical path>.json` (see [`Context::with_hash_cache`]; it only saves
/// re-reading unchanged files, keys are always content digests).
fn hash_cache_path(cache: &BuildCache, root: &Path) -> PathBuf {
    let d = hoist_oci::Digest::sha256_of(root.as_os_str().as_encoded_bytes());
    cache.dir().join("hashes").join(format!("{}.json", d.hex()))
}

/// A source path relative to the root (`/`, `.` and `..` resolved, never above the root).
fn normalize_src(s: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

enum CopyFrom {
    Context(Arc<Context>),
    /// The op's second input (a stage).
    Input,
}

struct CopyOp {
    env: Arc<Env>,
    name: String,
    is_add: bool,
    sources: Vec<String>,
    heredocs: Vec<(String, String)>,
    dest: String,
    dest_is_dir: bool,
    chown: Option<String>,
    chmod: Option<u32>,
    exclude: Vec<String>,
    parents: bool,
    /// `--link`: the layer is made on nothing (its key does not depend on the parent) and a
    /// [`MergeOp`] puts it on the parent.
    link: bool,
    /// With `--link`, the op's first input is the parent, read only for `--chown` names.
    link_parent: bool,
    from: CopyFrom,
    created_by: String,
    /// `ADD --checksum=`.
    checksum: Option<String>,
    /// URLs ADD downloaded while computing its key (downloaded once per build).
    fetched: parking_lot::Mutex<
        HashMap<String, (tempfile::NamedTempFile, hoist_client::fetch::Fetched)>,
    >,
    /// `ADD --keep-git-dir`.
    keep_git_dir: bool,
    /// Git sources ADD resolved while computing its key (checked out by `run` on a miss).
    git: parking_lot::Mutex<Vec<(crate::git::GitRef, crate::git::Resolved)>>,
}

/// One file to copy: where it comes from and its path under the destination.
struct Planned {
    src: Source,
    /// The destination as written (not resolved), relative to the layer's root.
    dest: PathBuf,
    md: Meta,
    /// A source argument itself (not found inside a source directory).
    top_level: bool,
    /// A source directory whose contents are copied: only its destination directory is made.
    contents_only: bool,
}

impl CopyOp {
    /// The context entries this COPY reads (docker's source rules, `.dockerignore`, `--exclude`,
    /// `--parents`), each with its absolute destination.
    fn resolve_context(
        &self,
        ctx: &Context,
        dest_is_dir: bool,
    ) -> Result<Vec<(ContextFile, String)>, OpError> {
        let sources: Vec<String> = self
            .sources
            .iter()
            .filter(|s| !(self.is_add && (is_url(s) || crate::git::is_git_ref(s))))
            .cloned()
            .collect();
        let files = ctx.resolve(&sources, &self.exclude, self.parents)?;
        let dests = destination_paths(&files, &self.dest, dest_is_dir)?;
        Ok(files.into_iter().zip(dests).collect())
    }

    /// [`CopyOp::resolve_context`] with each entry's metadata.
    fn plan_context(&self, ctx: &Context, dest_is_dir: bool) -> Result<Vec<Planned>, OpError> {
        let root = Arc::new(Root::open(ctx.root())?);
        let mut out = Vec::new();
        for (f, dest) in self.resolve_context(ctx, dest_is_dir)? {
            // Read through the context's directory descriptor, never by host path.
            let rel = f
                .host_path
                .strip_prefix(ctx.root())
                .map_err(|_| format!("{}: outside the build context", f.host_path.display()))?
                .to_string_lossy()
                .into_owned();
            let src = Source::Dir(root.clone(), rel);
            let md = src.meta()?;
            out.push(Planned {
                contents_only: f.kind == FileKind::Dir && f.dest.is_empty(),
                src,
                dest: PathBuf::from(dest.trim_start_matches('/')),
                md,
                top_level: f.top_level,
            });
        }
        Ok(out)
    }
}

/// A plain HTTP download for ADD (a git repository URL is a git source, not a download).
fn is_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && !crate::git::is_git_ref(s)
}

impl Op<Snapshot> for CopyOp {
    fn kind(&self) -> OpKind {
        OpKind::Copy
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move {
            let mut k = KeyBuilder::new(if self.is_add { "add" } else { "copy" });
            layer_key(&mut k, &self.env.layer_options);
            // `existing-dir`: a destination that is a directory in the parent is one (keys of
            // builds before that rule name other layers).
            k.str("existing-dir")
                .list(&self.sources)
                .str(&self.dest)
                .u64(u64::from(self.dest_is_dir))
                .opt(self.chown.as_deref())
                .u64(self.chmod.map_or(u64::MAX, u64::from))
                .list(&self.exclude)
                .u64(u64::from(self.parents))
                .u64(u64::from(self.link));
            for (n, c) in &self.heredocs {
                k.str(n).str(c);
            }
            if let CopyFrom::Context(ctx) = &self.from {
                // Exactly the entries read: destination, type, mode, link target and content
                // digest ([`Context::checksum`]); never mtime.
                let checksum = tokio::task::block_in_place(|| -> Result<String, OpError> {
                    let files: Vec<ContextFile> = self
                        .resolve_context(ctx, self.dest_is_dir)?
                        .into_iter()
                        .map(|(f, _)| f)
                        .collect();
                    Ok(ctx.checksum(&files)?)
                })?;
                k.str(&checksum);
                self.git.lock().clear();
                for s in &self.sources {
                    if self.is_add && crate::git::is_git_ref(s) {
                        // Keyed by the commit the ref resolves to now (`git ls-remote`): a moved
                        // branch is a miss, an unchanged one a hit without a fetch.
                        let g = crate::git::parse(s)?;
                        let resolved = tokio::task::block_in_place(|| crate::git::resolve(&g))?;
                        crate::git::verify(&g, &resolved, self.checksum.as_deref())?;
                        k.str("git")
                            .str(s)
                            .str(&resolved.commit)
                            .u64(u64::from(self.keep_git_dir));
                        self.git.lock().push((g, resolved));
                    } else if self.is_add && is_url(s) {
                        // Keyed by what the URL serves (and its time), as BuildKit does.
                        let tmp = self.env.cache.temp_file()?;
                        let out = io::BufWriter::new(tmp.reopen()?);
                        let fetched = hoist_client::fetch::fetch(s, out).await?;
                        if let Some(c) = &self.checksum
                            && c != fetched.digest.as_str()
                        {
                            return Err(format!(
                                "ADD {s}: checksum mismatch: expected {c}, got {}",
                                fetched.digest
                            )
                            .into());
                        }
                        k.str(s)
                            .str(fetched.digest.as_str())
                            .u64(fetched.last_modified.unwrap_or(0) as u64);
                        self.fetched.lock().insert(s.clone(), (tmp, fetched));
                    }
                }
            }
            Ok(k.finish())
        }
        .boxed()
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        _log: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move {
            // `COPY --link` makes its layer on nothing: the parent is an input only to resolve
            // `--chown` names, and the layer is merged onto it by a [`MergeOp`].
            let (parent, rest) = if self.link && !self.link_parent {
                (Arc::new(Snapshot::empty()), inputs)
            } else {
                (inputs[0].clone(), &inputs[1..])
            };
            let parent_dirs = layer_dirs(&self.env, &parent).await?;
            let from_dirs = match &self.from {
                CopyFrom::Input => Some(layer_dirs(&self.env, &rest[0]).await?),
                CopyFrom::Context(_) => None,
            };
            let env = self.env.clone();
            tokio::task::block_in_place(|| -> Result<Snapshot, OpError> {
                let upper = env.temp_dir()?;
                let root = upper.path().join("upper");
                fs::create_dir(&root)?;
                let parent_view = View::open(&parent_dirs)?;
                let (uid, gid) = match &self.chown {
                    Some(c) => resolve_chown(c, &parent_view)?,
                    None => (0, 0),
                };
                // What paths are resolved against: the parent's filesystem, unless the layer is
                // linked (made on nothing, as BuildKit's `--link` is), and what this COPY wrote
                // so far. Symlinks on the way are followed inside the root (a COPY into /lib/x
                // of a merged-/usr image lands in /usr/lib/x; it never replaces the /lib symlink
                // with a directory), and a symlink an earlier source wrote is followed inside
                // the root too, never on the host.
                let below = if self.link {
                    View::default()
                } else {
                    parent_view
                };
                let up = Upper::new(&root, &below)?;
                let dest_written = clean_abs(&self.dest);
                let dest_written = dest_written.trim_start_matches('/').to_owned();
                // A destination that is a directory already (symlinks followed inside the root)
                // is one whatever its spelling, as BuildKit's copy treats it: `COPY f /tmp` and
                // `WORKDIR /srv` + `COPY f .` copy into it, never replace it with a file.
                let dest_is_dir = self.dest_is_dir
                    || up
                        .view()
                        .stat(&dest_written)?
                        .is_some_and(|e| e.meta.is_dir());
                let planned = match (&self.from, &from_dirs) {
                    (CopyFrom::Context(ctx), _) => self.plan_context(ctx, dest_is_dir)?,
                    (CopyFrom::Input, Some(dirs)) => {
                        self.plan_stage(Arc::new(View::open(dirs)?), dest_is_dir)?
                    }
                    _ => Vec::new(),
                };
                // The destination itself is followed to the end, as BuildKit resolves it in the
                // rootfs (`COPY x /lib` in a merged-/usr image writes into /usr/lib; a heredoc
                // onto a symlink writes its target inside the image); what is copied under it
                // replaces a symlink in its way instead of writing through it.
                let dest = up.view().resolve(&dest_written, true)?.join("/");
                let under_dest = |p: &Path| -> String {
                    match p.strip_prefix(&dest_written) {
                        Ok(rest) if rest.as_os_str().is_empty() => dest.clone(),
                        Ok(rest) if dest.is_empty() => rest.to_string_lossy().into_owned(),
                        Ok(rest) => format!("{dest}/{}", rest.to_string_lossy()),
                        Err(_) => p.to_string_lossy().into_owned(),
                    }
                };
                let dest_parent = |d: &str| -> String {
                    d.rsplit_once('/')
                        .map_or(String::new(), |(p, _)| p.to_owned())
                };
                // Several sources or matches went into the destination: it is a directory.
                let dest_is_dir = dest_is_dir || planned.iter().filter(|p| p.top_level).count() > 1;
                let dest_dir = if dest_is_dir {
                    dest.clone()
                } else {
                    dest_parent(&dest)
                };
                // Directories COPY makes on the way belong to --chown's owner, as BuildKit's.
                // Wildcards that matched nothing copy nothing: no destination is made.
                let nothing = planned.is_empty()
                    && self.heredocs.is_empty()
                    && self.fetched.lock().is_empty()
                    && self.git.lock().is_empty();
                if !nothing {
                    up.dir_all(
                        &dest_dir,
                        NewDir {
                            mode: 0o755,
                            uid,
                            gid,
                        },
                    )
                    .map_err(|e| {
                        format!(
                            "{} to /{dest_dir}: {e}",
                            if self.is_add { "ADD" } else { "COPY" }
                        )
                    })?;
                }
                // A file of another stage keeps its owner unless --chown says otherwise.
                let keep_owner = self.chown.is_none() && matches!(self.from, CopyFrom::Input);
                let io_at = |what: &str, e: io::Error| -> OpError {
                    format!("{} {what}: {e}", if self.is_add { "ADD" } else { "COPY" }).into()
                };
                for p in &planned {
                    let target = under_dest(&p.dest);
                    if p.contents_only {
                        up.dir(
                            &target,
                            NewDir {
                                mode: 0o755,
                                uid,
                                gid,
                            },
                        )
                        .map_err(|e| io_at(&format!("/{target}"), e))?;
                        continue;
                    }
                    if self.is_add
                        && p.top_level
                        && p.md.is_file()
                        && try_extract(&p.src, &up, &dest)?.is_some()
                    {
                        continue;
                    }
                    let how = CopyAs {
                        uid: if keep_owner { p.md.uid } else { uid },
                        gid: if keep_owner { p.md.gid } else { gid },
                        chmod: self.chmod,
                        mtime: None,
                    };
                    up.copy(&p.src, &p.md, &target, &how)
                        .map_err(|e| io_at(&format!("{} to /{target}", p.src.describe()), e))?;
                }
                let git_sources = self.git.lock().clone();
                for (g, resolved) in &git_sources {
                    // The checked-out tree (or its subdir) becomes the destination directory's
                    // contents; everything gets the commit's time (reproducible layers).
                    let work = tempfile::Builder::new()
                        .prefix("git-")
                        .tempdir_in(env.cache.dir().join("tmp"))?;
                    let co = crate::git::checkout(g, resolved, work.path(), self.keep_git_dir)?;
                    up.dir(&dest, NewDir::ROOT)?;
                    let tree = Arc::new(View::open(std::slice::from_ref(&co.root))?);
                    let mut copied = Vec::new();
                    for (rel, e) in tree.walk(&[])? {
                        let target = if dest.is_empty() {
                            rel
                        } else {
                            format!("{dest}/{rel}")
                        };
                        let md = e.meta.clone();
                        let how = CopyAs {
                            uid,
                            gid,
                            chmod: self.chmod,
                            mtime: Some(co.commit_time),
                        };
                        up.copy(&Source::Tree(tree.clone(), e), &md, &target, &how)?;
                        copied.push(target);
                    }
                    if !dest.is_empty() {
                        copied.push(dest.clone());
                    }
                    // Deepest first: writing into a directory changes its mtime.
                    for t in copied.iter().rev() {
                        up.set_mtime(t, co.commit_time)?;
                    }
                }
                for (url, (tmp, fetched)) in self.fetched.lock().iter() {
                    // Never extracted; 0600 unless --chmod, as docker does.
                    let target = if dest_is_dir {
                        let name = url
                            .split(['?', '#'])
                            .next()
                            .unwrap_or(url)
                            .trim_end_matches('/')
                            .rsplit('/')
                            .next()
                            .filter(|n| !n.is_empty() && !n.contains(':'))
                            .unwrap_or("download");
                        format!("{dest}/{name}")
                    } else {
                        dest.clone()
                    };
                    up.write_file(
                        &target,
                        &mut tmp.reopen()?,
                        self.chmod.unwrap_or(0o600),
                        uid,
                        gid,
                        fetched.last_modified.map(|t| (t.max(0), 0)),
                    )
                    .map_err(|e| io_at(&format!("{url} to /{target}"), e))?;
                }
                for (name, content) in &self.heredocs {
                    let target = if dest_is_dir {
                        format!("{dest}/{name}")
                    } else {
                        dest.clone()
                    };
                    up.write_file(
                        &target,
                        &mut content.as_bytes(),
                        self.chmod.unwrap_or(0o644),
                        uid,
                        gid,
                        None,
                    )
                    .map_err(|e| io_at(&format!("/{target}"), e))?;
                }
                // A linked layer is a snapshot of its own (the layer and its history entry).
                let base = if self.link {
                    Snapshot::empty()
                } else {
                    (*parent).clone()
                };
                commit_layer(&env, &base, &root, &self.created_by)
            })
        }
        .boxed()
    }
}

impl CopyOp {
    /// Files of another stage this COPY reads: each source resolved inside the stage's root
    /// (symlinked parents followed there, never on the host), a directory's contents merged
    /// across its layers.
    fn plan_stage(&self, view: Arc<View>, dest_is_dir: bool) -> Result<Vec<Planned>, OpError> {
        let dest = PathBuf::from(clean_abs(&self.dest).trim_start_matches('/'));
        // Each source, its wildcards matched in the stage's tree (one that matches nothing
        // copies nothing, as BuildKit's), with the name it is copied under.
        let mut found = Vec::new();
        for s in &self.sources {
            let src = normalize_src(s);
            if crate::ignore::has_wildcards(&src) {
                crate::ignore::go_match(&src, "")
                    .map_err(|reason| format!("COPY --from: {s}: {reason}"))?;
                found.extend(glob_tree(&view, &src)?);
                continue;
            }
            let Some(e) = view.lstat(&src)? else {
                return Err(format!("COPY --from: /{src}: not found").into());
            };
            found.push((src, e));
        }
        // Several sources (or matches) go into a directory.
        let dest_is_dir = dest_is_dir || found.len() > 1;
        let mut out = Vec::new();
        for (src, found) in found {
            // A symlink source is followed inside the stage's root, as BuildKit's copy follows
            // it: what it points to is copied, under the source's own name.
            let found = if found.meta.is_symlink() {
                view.stat(&src)?
                    .ok_or_else(|| format!("COPY --from: /{src}: a dangling symlink"))?
            } else {
                found
            };
            if found.meta.is_dir() {
                for (rel, e) in view.walk(&found.path)? {
                    out.push(Planned {
                        md: e.meta.clone(),
                        src: Source::Tree(view.clone(), e),
                        dest: dest.join(rel),
                        top_level: false,
                        contents_only: false,
                    });
                }
            } else {
                let base = src.rsplit('/').next().unwrap_or(&src).to_owned();
                out.push(Planned {
                    md: found.meta.clone(),
                    src: Source::Tree(view.clone(), found),
                    dest: if dest_is_dir {
                        dest.join(base)
                    } else {
                        dest.clone()
                    },
                    top_level: true,
                    contents_only: false,
                });
            }
        }
        Ok(out)
    }
}

/// The entries of `tree` a wildcard path (`/a*`, `lib/*.so`) matches, Go's `filepath.Match` on
/// the part from its first wildcard component, as BuildKit's copy resolves them: walked with no
/// symlink followed, a matching directory not looked into, sorted by name.
fn glob_tree(tree: &View, pattern: &str) -> Result<Vec<(String, Entry)>, OpError> {
    let comps: Vec<&str> = pattern.split('/').collect();
    let first = comps
        .iter()
        .position(|c| crate::ignore::has_wildcards(c))
        .unwrap_or(0);
    let base = tree.resolve(&comps[..first].join("/"), true)?;
    let rest = comps[first..].join("/");
    let depth = comps.len() - first;
    let mut out = Vec::new();
    let mut todo = vec![(base, String::new())];
    while let Some((dir, rel)) = todo.pop() {
        let mut found = Vec::new();
        for name in tree.list(&dir)? {
            let mut p = dir.clone();
            p.push(name.clone());
            let Some(e) = tree.get(&p)? else { continue };
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if crate::ignore::go_match(&rest, &r).unwrap_or(false) {
                out.push((p.join("/"), e));
            } else if e.meta.is_dir() && r.split('/').count() < depth {
                found.push((p, r));
            }
        }
        todo.extend(found.into_iter().rev());
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Extracts `src` into the destination directory `dest` of `up` when it is a tar archive (plain,
/// gzip or zstd). `None` when it is not one (ADD then copies it as a file). The directory is
/// resolved inside the root and extraction goes through the runtime's confined unpacker (with
/// whiteouts applied) on its descriptor: no entry (`..`, absolute names, symlinked parents, hard
/// links) can write outside it, as docker's chrooted untar.
fn try_extract(src: &Source, up: &Upper, dest: &str) -> Result<Option<()>, OpError> {
    let is_tar = {
        let f = src.open()?;
        let mut r = decompress(f)?;
        let mut head = [0u8; 512];
        let mut n = 0;
        while n < 512 {
            match r.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                // Not a valid compressed stream after all: a plain file.
                Err(_) => return Ok(None),
            }
        }
        n == 512 && &head[257..262] == b"ustar"
    };
    if !is_tar {
        return Ok(None);
    }
    let dir = up.dir(dest, NewDir::ROOT)?;
    let f = src.open()?;
    unpack_layer_at(
        decompress(f)?,
        dir,
        &UnpackOptions {
            whiteouts: Whiteouts::Apply,
            ..UnpackOptions::default()
        },
    )
    .map_err(|e| format!("ADD {}: {e}", src.describe()))?;
    Ok(Some(()))
}

/// A rootfs mount, unmounted on drop (error paths) or explicitly.
struct Mounted(Option<Rootfs>);

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

/// `--chown=user[:group]`: numbers as given; names through the image's /etc/passwd and
/// /etc/group (found through the layers).
fn resolve_chown(spec: &str, view: &View) -> Result<(u32, u32), OpError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // Through the layers, symlinks resolved inside the image's root: an /etc/passwd that links
    // to /etc/shadow reads the image's shadow, never the host's.
    let read = |f: &str| -> Option<String> { view.read_to_string(f, 4 << 20).ok().flatten() };
    let find = |file: &str, name: &str| -> Result<(u32, Option<u32>), OpError> {
        let text = read(file).ok_or_else(|| {
            format!(
                "unable to convert {name:?} to an id: the image has no /{file} (use numeric ids)"
            )
        })?;
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                let id: u32 = f[2]
                    .parse()
                    .map_err(|_| format!("/{file}: bad id for {name}"))?;
                let gid = f.get(3).and_then(|g| g.parse().ok());
                return Ok((id, gid));
            }
        }
        Err(format!("unable to find {name:?} in /{file}").into())
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let (u, g) = find("etc/passwd", user)?;
            (u, g)
        }
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => find("etc/group", g)?.0,
        },
        None => primary_gid.unwrap_or(uid),
    };
    Ok((uid, gid))
}

// ----- RUN -----

#[derive(Debug, Clone)]
struct RunMountSpec {
    kind: dockerfile::MountType,
    target: Option<String>,
    source: Option<String>,
    id: Option<String>,
    readonly: bool,
    required: bool,
    /// `env=`: a secret as an environment variable.
    env: Option<String>,
    /// The input (index into the op's inputs) a bind mount reads from or a cache is seeded from.
    from: Option<usize>,
    /// `sharing=` (cache).
    sharing: dockerfile::CacheSharing,
    /// `mode=`, `uid=`, `gid=` (cache: the new directory; secret: the file; ssh: the socket).
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    /// `size=` in bytes (tmpfs).
    size: Option<u64>,
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

struct RunOp {
    env: Arc<Env>,
    name: String,
    request: RunRequest,
    mounts: Vec<RunMountSpec>,
    secrets: BTreeMap<String, PathBuf>,
    ssh: BTreeMap<String, PathBuf>,
    context: Arc<Context>,
    created_by: String,
}

/// The directory of cache mount `id`: named by a hash of the id, so ids never share (nor reach
/// outside `mounts/`).
fn cache_mount_base(env: &Env, id: &str) -> PathBuf {
    let mut k = KeyBuilder::new("cache-mount");
    k.str(id);
    env.cache
        .dir()
        .join("mounts")
        .join(crate::graph::CacheKey::compute(OpKind::Meta, &k.finish(), &[]).hex())
}

/// Removes the mount points the runtime made for the RUN's mounts (empty files and directories
/// not in the parent's layers), as BuildKit does: they are not part of the layer.
fn remove_mount_stubs(upper: &Path, lowers: &[PathBuf], targets: &[String]) -> io::Result<()> {
    let up = Upper::new(upper, &View::open(lowers)?)?;
    let mut targets: Vec<&String> = targets.iter().collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.matches('/').count()));
    for t in targets {
        up.remove_mount_stub(t)?;
    }
    Ok(())
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
            let env = self.env.clone();
            tokio::task::block_in_place(|| -> Result<Snapshot, OpError> {
                let work = env.temp_dir()?;
                let mut from_mounts = Vec::new();
                let upper = work.path().join("upper");
                let wd = work.path().join("work");
                let merged = work.path().join("rootfs");
                for d in [&upper, &wd, &merged] {
                    fs::create_dir(d)?;
                }
                fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))?;
                let mut request = self.request.clone();
                request.image_config = parent.config.clone();
                // Held until the RUN ends: cache locks, ssh agent proxies.
                let mut locks = Vec::new();
                let mut proxies = Vec::new();
                let mut targets = Vec::new();
                let mut ssh_n = 0usize;
                // A stage's (or image's) filesystem as an overlay with a throwaway upper: writes
                // (rw) vanish with the step, as BuildKit discards them.
                let mount_from = |i: usize,
                                      from_mounts: &mut Vec<Mounted>|
                 -> Result<PathBuf, OpError> {
                    let n = from_mounts.len();
                    let at = work.path().join(format!("from{n}"));
                    let o = Mounted::new(Rootfs::mount(
                        from_dirs.get(&i).map_or(&[][..], |d| &d[..]),
                        &work.path().join(format!("from{n}-upper")),
                        &work.path().join(format!("from{n}-work")),
                        &at,
                    )?);
                    from_mounts.push(o);
                    Ok(at)
                };
                // Cache directories first, locked in the order of their paths, so two RUNs that
                // lock the same caches never wait on each other crosswise; a cache named twice in
                // one RUN is one directory, locked once.
                let mut pending = Vec::new();
                for (n, m) in self.mounts.iter().enumerate() {
                    if m.kind != dockerfile::MountType::Cache {
                        continue;
                    }
                    let target = m.target.clone().unwrap_or_default();
                    let id = m.id.clone().unwrap_or(target);
                    let seed = match m.from {
                        Some(i) => {
                            let at = mount_from(i, &mut from_mounts)?;
                            let src = m.source.as_deref().unwrap_or("");
                            let (p, meta) = crate::run::resolve_confined(&at, src, true)
                                .map_err(|e| {
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
                    pending.push((cache_mount_base(&env, &id), n, seed));
                }
                pending.sort_by(|a, b| a.0.cmp(&b.0));
                let mut cache_dirs: HashMap<usize, PathBuf> = HashMap::new();
                let mut by_base: HashMap<PathBuf, PathBuf> = HashMap::new();
                for (base, n, seed) in pending {
                    let m = &self.mounts[n];
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
                            locks.push(lock);
                            by_base.insert(base, dir.clone());
                            dir
                        }
                    };
                    cache_dirs.insert(n, dir);
                }
                for (n, m) in self.mounts.iter().enumerate() {
                    let target = m.target.clone().unwrap_or_default();
                    match m.kind {
                        dockerfile::MountType::Cache => {
                            let dir = cache_dirs.get(&n).cloned().unwrap_or_default();
                            request.binds.push((dir, target.clone(), m.readonly));
                        }
                        dockerfile::MountType::Tmpfs => {
                            request.tmpfs.push((target.clone(), m.size));
                        }
                        dockerfile::MountType::Bind => {
                            let src = m.source.as_deref().unwrap_or("");
                            let (root, in_stage) = match m.from {
                                Some(i) => (mount_from(i, &mut from_mounts)?, true),
                                None => (self.context.root().to_path_buf(), false),
                            };
                            let root_name = if in_stage {
                                "the stage's root"
                            } else {
                                "the build context"
                            };
                            let (path, meta) = crate::run::resolve_confined(&root, src, in_stage)
                                .map_err(|e| {
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
                                    if in_stage { "the stage" } else { "the build context" }
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
                                if self.context.is_ignored(&rel)
                                    && (!meta.is_dir() || self.context.ignore().can_skip_dir(&rel))
                                {
                                    return Err(format!(
                                        "{}: /{} is excluded by {}",
                                        m.describe(),
                                        normalize_src(src),
                                        self.context.ignore_file().map_or_else(
                                            || ".dockerignore".into(),
                                            |f| f.display().to_string()
                                        )
                                    )
                                    .into());
                                }
                                if meta.is_dir() && !self.context.ignore().is_empty() {
                                    let view = work.path().join(format!("bind{n}-view"));
                                    crate::run::context_view(&self.context, &path, &view)?;
                                    path = view;
                                }
                            }
                            let source = if in_stage || m.readonly {
                                path
                            } else if meta.is_dir() {
                                // rw over the context: an overlay whose upper is thrown away, so
                                // writes never reach the user's files.
                                let at = work.path().join(format!("bind{n}"));
                                from_mounts.push(Mounted::new(Rootfs::mount(
                                    &[path],
                                    &work.path().join(format!("bind{n}-upper")),
                                    &work.path().join(format!("bind{n}-work")),
                                    &at,
                                )?));
                                at
                            } else {
                                let copy = work.path().join(format!("bind{n}-file"));
                                let rel = path.strip_prefix(&root).unwrap_or(Path::new(""));
                                crate::run::copy_tree(&root, rel, &copy)?;
                                copy
                            };
                            request.binds.push((source, target.clone(), m.readonly));
                        }
                        dockerfile::MountType::Secret => {
                            let id = m.id.clone().or_else(|| {
                                m.target
                                    .as_deref()
                                    .and_then(|t| t.rsplit('/').next())
                                    .map(str::to_owned)
                            });
                            let id = id.unwrap_or_default();
                            match self.secrets.get(&id) {
                                Some(p) => {
                                    if let Some(var) = &m.env {
                                        let value = fs::read_to_string(p)?;
                                        request.env.push(format!("{var}={}", value.trim_end_matches('\n')));
                                    }
                                    if m.target.is_some() || m.env.is_none() {
                                        let t = m
                                            .target
                                            .clone()
                                            .unwrap_or_else(|| format!("/run/secrets/{id}"));
                                        // A private copy with the mount's mode and owner.
                                        let copy = work.path().join(format!("secret{n}"));
                                        crate::run::secret_copy(p, &copy, m.mode, m.uid, m.gid)
                                            .map_err(|e| format!("secret {id}: {}: {e}", p.display()))?;
                                        request.binds.push((copy, t.clone(), true));
                                        targets.push(t);
                                    }
                                }
                                None if m.required => {
                                    return Err(format!("secret {id} is required but was not given (--secret id={id},src=PATH)").into());
                                }
                                None => {}
                            }
                            continue;
                        }
                        dockerfile::MountType::Ssh => {
                            let id = m.id.clone().unwrap_or_else(|| "default".into());
                            let t = m
                                .target
                                .clone()
                                .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_n}"));
                            ssh_n += 1;
                            match self.ssh.get(&id) {
                                Some(sock) => {
                                    let proxy = crate::run::SshProxy::start(sock, m.mode, m.uid, m.gid)
                                        .map_err(|e| format!("ssh agent {id}: {}: {e}", sock.display()))?;
                                    request.binds.push((proxy.socket(), t.clone(), false));
                                    if !request.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                                        request.env.push(format!("SSH_AUTH_SOCK={t}"));
                                    }
                                    proxies.push(proxy);
                                    targets.push(t);
                                }
                                None if m.required => {
                                    return Err(format!("{}: ssh agent {id} is required but was not given (--ssh {id}[=SOCKET])", m.describe()).into());
                                }
                                None => {}
                            }
                            continue;
                        }
                    }
                    targets.push(target);
                }
                let overlay = Mounted::new(Rootfs::mount(&lowers, &upper, &wd, &merged)?);
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
                Root::open(&merged)?
                    .create_dir_all(&request.cwd, 0o755)
                    .map_err(|e| format!("WORKDIR {}: {e}", request.cwd))?;
                let code = runner.run(&request, &merged, log);
                overlay.unmount()?;
                for o in from_mounts {
                    o.unmount()?;
                }
                drop(proxies);
                drop(locks);
                let code = code?;
                if code != 0 {
                    return Err(format!(
                        "process \"{}\" did not complete successfully: exit code: {code}",
                        request.args.join(" ")
                    )
                    .into());
                }
                // Mount points the runtime created for the mounts are not part of the layer.
                // The files the runtime binds onto /etc are not either, when the image has none.
                let mut targets = targets.clone();
                targets.extend(
                    ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].map(str::to_owned),
                );
                remove_mount_stubs(&upper, &lowers, &targets)?;
                commit_layer(&env, &parent, &upper, &self.created_by)
            })
        }
        .boxed()
    }
}

/// Counts how many entries a hash map has; used by progress to size.
pub fn stage_names(df: &Dockerfile) -> HashMap<usize, String> {
    df.stages
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.name.clone().unwrap_or_else(|| format!("stage-{i}"))))
        .collect()
}

/// `--label K=V`s on the built image's config (over the Dockerfile's `LABEL`s, with no history
/// entry, as docker's `--label` does).
pub fn apply_labels(snap: &mut Snapshot, labels: &BTreeMap<String, String>) {
    if labels.is_empty() {
        return;
    }
    let cfg = &mut snap.config["config"];
    if !cfg["Labels"].is_object() {
        cfg["Labels"] = json!({});
    }
    for (k, v) in labels {
        cfg["Labels"][k] = json!(v);
    }
}

/// Solves a plan: runs what is not cached and returns the target's snapshot.
pub async fn solve(
    env: &Arc<Env>,
    plan: &Plan,
    no_cache: bool,
    progress: Arc<dyn crate::solver::Progress>,
) -> Result<Snapshot> {
    let solver = crate::solver::Solver::new(
        plan.graph.clone(),
        env.cache.clone(),
        progress,
        crate::solver::SolveOptions { no_cache },
    );
    let result = solver.solve(&[plan.target]).await;
    // Remember the context hashes computed, whatever the outcome.
    if let Some(ctx) = &plan.context {
        ctx.save_hash_cache()?;
    }
    let solved = result.map_err(|e| match e.vertex().and_then(|v| plan.lines.get(&v)) {
        Some(line) => BuildError::Step {
            file: plan.file.clone(),
            line: *line,
            source: e,
        },
        None => BuildError::Solve(e),
    })?;
    Ok((*solved[0].value).clone())
}
