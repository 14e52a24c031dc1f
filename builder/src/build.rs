//! The build driver: a parsed Dockerfile and a context directory -> a graph of ops -> a solved
//! [`Snapshot`] of the target stage.
//!
//! [`plan`] converts the Dockerfile (see `crate::convert`) into a graph of the ops in
//! `crate::ops`; [`solve`] runs it. Layers are written by `crate::layer`, `RUN` steps run
//! through a [`Runner`].

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use hoist_oci::Reference;
use hoist_runtime::layers::LayerStore;
use hoist_runtime::rootfs::{Compression, LayerOptions};
use hoist_storage::images::{ImageStore, Platform};
use serde_json::json;

use crate::cache::BuildCache;
use crate::context::Context;
use crate::dockerfile::{self, Dockerfile};
use crate::graph::{Graph, OpError, VertexId};
use crate::snapshot::Snapshot;

pub use crate::convert::plan;
pub use crate::layer::{BUILD_GZIP_LEVEL, LayerCompression, hoist_time, layer_dirs};
pub use crate::run::{RunRequest, Runner};

/// Pulls an image into the local store (the CLI does it through hoist-client).
pub trait Puller: Send + Sync {
    fn pull<'a>(
        &'a self,
        reference: &'a Reference,
        platform: &'a Platform,
    ) -> BoxFuture<'a, Result<(), OpError>>;
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

/// Shared services of one build (stores, cache, runner, puller, layer options): not variables.
pub struct BuildServices {
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

impl BuildServices {
    pub fn new(
        home: &Path,
        images: ImageStore,
        cache: Arc<BuildCache>,
        compression: LayerCompression,
        source_date_epoch: Option<i64>,
    ) -> Result<Self> {
        let layers = LayerStore::open(home)?;
        Ok(BuildServices {
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

/// Maps each stage's index to its name: the `AS` name, or `stage-N` (N its index) for a stage
/// without one.
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
    env: &Arc<BuildServices>,
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
