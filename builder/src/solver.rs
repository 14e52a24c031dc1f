//! The solver: runs what a target needs, in parallel, each cache key once, with the cache rule.
//!
//! **Interface.** [`Solver::solve`] takes a [`Graph`] and target vertices and returns each
//! target's [`Solved`] value. It visits only the vertices the targets need. Every needed vertex
//! becomes a task as soon as the graph is read, so independent vertices (whole stages) run in
//! parallel; a task waits for its inputs, then:
//! 1. computes its key: [`CacheKey::compute`] over the op's [`Op::key`] (computed while the inputs
//!    are still running) and its inputs' keys;
//! 2. if another vertex of this solve has the same key, waits for that one's result instead of
//!    running (each key runs at most once per solve);
//! 3. applies **the cache rule**: when every input was itself a hit, a cacheable op looks its key
//!    up in the [`ResultCache`]; a hit reuses the stored value and runs nothing. A miss runs the op
//!    and stores its result, and every op after it (every op with a missed input) runs without a
//!    lookup. Ops that are not cacheable (sources, config changes) always run; they are cheap and
//!    count as hits when all their inputs were.
//!
//! **Rationale.** Keys chain (each includes its inputs' keys), so a changed step changes the keys
//! of everything after it anyway; the explicit "a miss runs everything after it" rule also holds
//! when a record in the middle was pruned, which is the behaviour users are told to expect.
//!
//! **Caveats.** On a failure the solve waits for the vertices already running to finish (their
//! results are cached), then returns the first error; dependents of the failed vertex do not run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::graph::{CacheKey, Graph, LogSink, OpError, OpKind, VertexId};

/// Where results persist between solves.
pub trait ResultCache<T>: Send + Sync {
    fn load(&self, key: &CacheKey) -> Result<Option<T>, OpError>;
    fn save(&self, key: &CacheKey, value: &T) -> Result<(), OpError>;
}

/// A cache that holds nothing.
pub struct NoCache;

impl<T> ResultCache<T> for NoCache {
    fn load(&self, _: &CacheKey) -> Result<Option<T>, OpError> {
        Ok(None)
    }
    fn save(&self, _: &CacheKey, _: &T) -> Result<(), OpError> {
        Ok(())
    }
}

/// An in-memory cache (for tests and single-process use).
pub struct MemoryCache<T>(Mutex<HashMap<CacheKey, T>>);

impl<T> Default for MemoryCache<T> {
    fn default() -> Self {
        MemoryCache(Mutex::new(HashMap::new()))
    }
}

impl<T: Clone + Send + Sync> ResultCache<T> for MemoryCache<T> {
    fn load(&self, key: &CacheKey) -> Result<Option<T>, OpError> {
        Ok(self.0.lock().get(key).cloned())
    }
    fn save(&self, key: &CacheKey, value: &T) -> Result<(), OpError> {
        self.0.lock().insert(*key, value.clone());
        Ok(())
    }
}

/// What the solver reports as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// The vertex started: its key is known and it will run.
    Started {
        vertex: VertexId,
        kind: OpKind,
        label: String,
        name: String,
    },
    /// The vertex's result came from the cache (or from another vertex with the same key).
    Cached {
        vertex: VertexId,
        kind: OpKind,
        label: String,
        name: String,
    },
    /// Output of a running vertex.
    Log { vertex: VertexId, bytes: Vec<u8> },
    /// The vertex ran and finished.
    Done { vertex: VertexId, elapsed: Duration },
    /// The vertex ran and failed.
    Failed {
        vertex: VertexId,
        elapsed: Duration,
        error: String,
    },
}

/// Receives [`Event`]s; called from many threads.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: Event) {}
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SolveOptions {
    /// Run every cacheable op (`--no-cache`); results are still stored.
    pub no_cache: bool,
}

/// A vertex's result.
pub struct Solved<T> {
    pub key: CacheKey,
    pub value: Arc<T>,
    /// Whether the value came without running anything that the cache could have saved.
    pub hit: bool,
}

impl<T> Clone for Solved<T> {
    fn clone(&self) -> Self {
        Solved {
            key: self.key,
            value: self.value.clone(),
            hit: self.hit,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("{name}: {source}")]
    Op {
        vertex: VertexId,
        name: String,
        #[source]
        source: OpError,
    },
    #[error("build cache: {0}")]
    Cache(#[source] OpError),
    #[error("the build task of {0} stopped unexpectedly")]
    Task(String),
}

impl SolveError {
    /// The vertex that failed, when an op did.
    pub fn vertex(&self) -> Option<VertexId> {
        match self {
            SolveError::Op { vertex, .. } => Some(*vertex),
            _ => None,
        }
    }
}

type Outcome<T> = Result<Solved<T>, Arc<SolveError>>;
type SharedOutcome<T> = Shared<BoxFuture<'static, Outcome<T>>>;
type KeyCell<T> = Arc<OnceCell<Result<(Arc<T>, bool), Arc<SolveError>>>>;

pub struct Solver<T> {
    graph: Arc<Graph<T>>,
    cache: Arc<dyn ResultCache<T>>,
    progress: Arc<dyn Progress>,
    options: SolveOptions,
}

struct VertexLog {
    vertex: VertexId,
    progress: Arc<dyn Progress>,
}

impl LogSink for VertexLog {
    fn log(&self, bytes: &[u8]) {
        self.progress.event(Event::Log {
            vertex: self.vertex,
            bytes: bytes.to_vec(),
        });
    }
}

impl<T: Send + Sync + 'static> Solver<T> {
    pub fn new(
        graph: Arc<Graph<T>>,
        cache: Arc<dyn ResultCache<T>>,
        progress: Arc<dyn Progress>,
        options: SolveOptions,
    ) -> Self {
        Solver {
            graph,
            cache,
            progress,
            options,
        }
    }

    /// Solves `targets` (see the module docs). Must be called inside a multi-threaded tokio
    /// runtime: vertices are spawned as tasks.
    pub async fn solve(&self, targets: &[VertexId]) -> Result<Vec<Solved<T>>, SolveError> {
        let needed = self.graph.needed(targets);
        let keyed: Arc<Mutex<HashMap<CacheKey, KeyCell<T>>>> = Arc::default();
        let mut futures: HashMap<VertexId, SharedOutcome<T>> = HashMap::new();
        let mut all = Vec::with_capacity(needed.len());
        for &v in &needed {
            let inputs: Vec<SharedOutcome<T>> = self
                .graph
                .vertex(v)
                .inputs
                .iter()
                .map(|i| futures[i].clone())
                .collect();
            let task = tokio::spawn(solve_vertex(
                self.graph.clone(),
                v,
                inputs,
                self.cache.clone(),
                self.progress.clone(),
                self.options,
                keyed.clone(),
            ));
            let name = self.graph.vertex(v).op.name();
            let fut: BoxFuture<'static, Outcome<T>> = async move {
                match task.await {
                    Ok(r) => r,
                    Err(_) => Err(Arc::new(SolveError::Task(name))),
                }
            }
            .boxed();
            let shared = fut.shared();
            futures.insert(v, shared.clone());
            all.push((v, shared));
        }
        // Wait for everything started, so no op is left running when the solve returns.
        let mut first_error: Option<Arc<SolveError>> = None;
        for (_, f) in &all {
            if let Err(e) = f.clone().await {
                // Prefer the root cause: the vertex that failed itself, i.e. the earliest one.
                match &first_error {
                    Some(prev) if prev.vertex() <= e.vertex() && prev.vertex().is_some() => {}
                    _ => first_error = Some(e),
                }
            }
        }
        if let Some(e) = first_error {
            return Err(Arc::try_unwrap(e).unwrap_or_else(|e| clone_error(&e)));
        }
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            out.push(futures[t].clone().await.map_err(|e| clone_error(&e))?);
        }
        Ok(out)
    }
}

fn clone_error(e: &SolveError) -> SolveError {
    match e {
        SolveError::Op {
            vertex,
            name,
            source,
        } => SolveError::Op {
            vertex: *vertex,
            name: name.clone(),
            source: source.to_string().into(),
        },
        SolveError::Cache(s) => SolveError::Cache(s.to_string().into()),
        SolveError::Task(n) => SolveError::Task(n.clone()),
    }
}

async fn solve_vertex<T: Send + Sync + 'static>(
    graph: Arc<Graph<T>>,
    v: VertexId,
    inputs: Vec<SharedOutcome<T>>,
    cache: Arc<dyn ResultCache<T>>,
    progress: Arc<dyn Progress>,
    options: SolveOptions,
    keyed: Arc<Mutex<HashMap<CacheKey, KeyCell<T>>>>,
) -> Outcome<T> {
    let vertex = graph.vertex(v);
    let op = vertex.op.clone();
    let op_err = |source: OpError| {
        Arc::new(SolveError::Op {
            vertex: v,
            name: op.name(),
            source,
        })
    };
    // The op's own key material is computed while the inputs are still being solved.
    let (material, solved_inputs) =
        futures::future::join(op.key(), futures::future::join_all(inputs)).await;
    let mut ins = Vec::with_capacity(solved_inputs.len());
    for i in solved_inputs {
        ins.push(i?);
    }
    let material = material.map_err(op_err)?;
    let input_keys: Vec<CacheKey> = ins.iter().map(|s| s.key).collect();
    let key = CacheKey::compute(op.kind(), &material, &input_keys);
    let inputs_hit = ins.iter().all(|s| s.hit);

    let cell = keyed.lock().entry(key).or_default().clone();
    let mut produced_here = false;
    let result = cell
        .get_or_init(|| async {
            produced_here = true;
            let try_cache = inputs_hit && op.cacheable() && !options.no_cache;
            if try_cache {
                match cache.load(&key) {
                    Ok(Some(value)) => {
                        progress.event(Event::Cached {
                            vertex: v,
                            kind: op.kind(),
                            label: vertex.label.clone(),
                            name: op.name(),
                        });
                        return Ok((Arc::new(value), true));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(Arc::new(SolveError::Cache(e))),
                }
            }
            // A cheap op on inputs that were all hits is part of the cached chain: it is
            // recomputed silently and reported as cached.
            let quiet = inputs_hit && !op.cacheable() && !ins.is_empty();
            if !quiet {
                progress.event(Event::Started {
                    vertex: v,
                    kind: op.kind(),
                    label: vertex.label.clone(),
                    name: op.name(),
                });
            }
            let started = Instant::now();
            let values: Vec<Arc<T>> = ins.iter().map(|s| s.value.clone()).collect();
            let log = VertexLog {
                vertex: v,
                progress: progress.clone(),
            };
            match op.run(&values, &log).await {
                Ok(value) => {
                    if op.cacheable() {
                        cache
                            .save(&key, &value)
                            .map_err(|e| Arc::new(SolveError::Cache(e)))?;
                    }
                    if quiet {
                        progress.event(Event::Cached {
                            vertex: v,
                            kind: op.kind(),
                            label: vertex.label.clone(),
                            name: op.name(),
                        });
                    } else {
                        progress.event(Event::Done {
                            vertex: v,
                            elapsed: started.elapsed(),
                        });
                    }
                    // Running a cheap op whose inputs were all hits is still a hit.
                    Ok((Arc::new(value), inputs_hit && !op.cacheable()))
                }
                Err(e) => {
                    progress.event(Event::Failed {
                        vertex: v,
                        elapsed: started.elapsed(),
                        error: e.to_string(),
                    });
                    Err(op_err(e))
                }
            }
        })
        .await
        .clone();
    let (value, hit) = result?;
    if !produced_here {
        // Another vertex with the same key produced it: this one reuses it.
        progress.event(Event::Cached {
            vertex: v,
            kind: op.kind(),
            label: vertex.label.clone(),
            name: op.name(),
        });
    }
    Ok(Solved { key, value, hit })
}
