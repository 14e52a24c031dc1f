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
        let keyed = Arc::new(Keyed::new(&self.graph, &needed));
        // Each vertex's outcome, for the tasks of its dependents: held here until its last
        // dependent is spawned (targets: until the end), then only by the tasks that read it. A
        // result lives while a vertex still to run needs it, so a long chain holds a bounded
        // number of results at a time, whatever its length.
        let mut futures: HashMap<VertexId, SharedOutcome<T>> = HashMap::new();
        // How many vertices still to spawn read each one (targets count one more, for the end).
        let mut readers: HashMap<VertexId, usize> = HashMap::new();
        for &v in &needed {
            for &i in &self.graph.vertex(v).inputs {
                *readers.entry(i).or_default() += 1;
            }
        }
        for &t in targets {
            *readers.entry(t).or_default() += 1;
        }
        let mut tasks = Vec::with_capacity(needed.len());
        for &v in &needed {
            let mut inputs: Vec<SharedOutcome<T>> = Vec::new();
            for i in &self.graph.vertex(v).inputs {
                inputs.push(futures[i].clone());
                let left = readers.get_mut(i).expect("an input has readers");
                *left -= 1;
                if *left == 0 {
                    // Its last reader holds it now: the vertices already done can be dropped
                    // while the rest of the graph is still being spawned.
                    futures.remove(i);
                }
            }
            let (tx, rx) = tokio::sync::oneshot::channel::<Outcome<T>>();
            let solving = solve_vertex(
                self.graph.clone(),
                v,
                inputs,
                self.cache.clone(),
                self.progress.clone(),
                self.options,
                keyed.clone(),
            );
            let task = tokio::spawn(async move {
                let outcome = solving.await;
                let status = outcome.as_ref().map(|_| ()).map_err(Arc::clone);
                let _ = tx.send(outcome);
                status
            });
            let name = self.graph.vertex(v).op.name();
            let fut: BoxFuture<'static, Outcome<T>> = {
                let name = name.clone();
                async move {
                    rx.await
                        .unwrap_or_else(|_| Err(Arc::new(SolveError::Task(name))))
                }
                .boxed()
            };
            futures.insert(v, fut.shared());
            tasks.push((task, name));
        }
        // Wait for everything started, so no op is left running when the solve returns.
        let mut first_error: Option<Arc<SolveError>> = None;
        for (task, name) in tasks {
            let e = match task.await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(_) => Arc::new(SolveError::Task(name)),
            };
            // Prefer the root cause: the vertex that failed itself, i.e. the earliest one.
            match &first_error {
                Some(prev) if prev.vertex() <= e.vertex() && prev.vertex().is_some() => {}
                _ => first_error = Some(e),
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

/// The results of this solve by key, so each key runs once. Equal keys hash equal input keys, so
/// two vertices with one key are at the same depth (the longest path from a source): once every
/// vertex at a depth has looked its key up, that depth's entries are dropped and the map holds no
/// result a vertex still to run could want.
struct Keyed<T> {
    inner: Mutex<KeyedInner<T>>,
    depth: HashMap<VertexId, usize>,
}

struct KeyedInner<T> {
    cells: HashMap<CacheKey, KeyCell<T>>,
    /// Per depth: vertices that have not looked their key up yet, and the keys added.
    pending: HashMap<usize, (usize, Vec<CacheKey>)>,
}

impl<T> Keyed<T> {
    fn new(graph: &Graph<T>, needed: &[VertexId]) -> Self {
        let mut depth: HashMap<VertexId, usize> = HashMap::with_capacity(needed.len());
        let mut pending: HashMap<usize, (usize, Vec<CacheKey>)> = HashMap::new();
        // `needed` lists inputs before the vertices that use them.
        for &v in needed {
            let d = graph
                .vertex(v)
                .inputs
                .iter()
                .map(|i| depth[i] + 1)
                .max()
                .unwrap_or(0);
            depth.insert(v, d);
            pending.entry(d).or_default().0 += 1;
        }
        Keyed {
            inner: Mutex::new(KeyedInner {
                cells: HashMap::new(),
                pending,
            }),
            depth,
        }
    }

    /// `v`'s cell for `key` (`None`: `v` failed before it had a key). Called once per vertex.
    fn lookup(&self, v: VertexId, key: Option<CacheKey>) -> Option<KeyCell<T>> {
        let d = self.depth[&v];
        let mut g = self.inner.lock();
        let KeyedInner { cells, pending } = &mut *g;
        let cell = key.map(|k| {
            cells
                .entry(k)
                .or_insert_with(|| {
                    if let Some(p) = pending.get_mut(&d) {
                        p.1.push(k);
                    }
                    Default::default()
                })
                .clone()
        });
        if let Some(p) = pending.get_mut(&d) {
            p.0 -= 1;
            if p.0 == 0 {
                for k in &p.1 {
                    cells.remove(k);
                }
                pending.remove(&d);
            }
        }
        cell
    }
}

/// Looks `v` up once in [`Keyed`] on every path, also when it fails before it has a key.
struct LookupGuard<'a, T> {
    keyed: &'a Keyed<T>,
    v: VertexId,
    done: bool,
}

impl<T> LookupGuard<'_, T> {
    fn lookup(mut self, key: CacheKey) -> KeyCell<T> {
        self.done = true;
        self.keyed
            .lookup(self.v, Some(key))
            .expect("a key gives a cell")
    }
}

impl<T> Drop for LookupGuard<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.keyed.lookup(self.v, None);
        }
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
    keyed: Arc<Keyed<T>>,
) -> Outcome<T> {
    let guard = LookupGuard {
        keyed: &*keyed,
        v,
        done: false,
    };
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

    let cell = guard.lookup(key);
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
            // The inputs' values move to the op: it may hold the only reference to one.
            let values: Vec<Arc<T>> = ins.drain(..).map(|s| s.value).collect();
            let log = VertexLog {
                vertex: v,
                progress: progress.clone(),
            };
            match op.run_owned(values, &log).await {
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
