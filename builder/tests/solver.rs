//! Solver tests with toy arithmetic ops that count their executions: caching, deduplication,
//! target pruning, parallelism and the cache rule, proven without containers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use hoist_builder::cache::{BuildCache, CacheValue};
use hoist_builder::graph::{Graph, LogSink, Op, OpError, OpKind, VertexId};
use hoist_builder::solver::{
    Event, MemoryCache, NoProgress, Progress, ResultCache, SolveOptions, Solver,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The toy value: a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct N(i64);

impl CacheValue for N {
    fn blobs(&self) -> Vec<hoist_oci::Digest> {
        Vec::new()
    }
}

#[derive(Clone)]
enum Toy {
    /// A source: a constant.
    Const(i64),
    /// parent + n
    Add(i64),
    /// sum of every input
    Sum,
    /// a config-only op: parent * 1, never cached
    Meta,
    /// fails
    Fail,
    /// waits at a barrier that only opens when `parties` ops wait at once, then parent + 1
    Meet(Arc<tokio::sync::Barrier>),
}

/// A toy op with a name and a shared execution counter.
struct ToyOp {
    toy: Toy,
    name: String,
    runs: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

impl Op<N> for ToyOp {
    fn kind(&self) -> OpKind {
        match self.toy {
            Toy::Const(_) => OpKind::Source,
            Toy::Sum => OpKind::Merge,
            Toy::Meta => OpKind::Meta,
            _ => OpKind::Exec,
        }
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        let k = match &self.toy {
            Toy::Const(n) => format!("const {n}"),
            Toy::Add(n) => format!("add {n}"),
            Toy::Sum => "sum".into(),
            Toy::Meta => "meta".into(),
            Toy::Fail => "fail".into(),
            // Each meeting op is distinct.
            Toy::Meet(_) => format!("meet {}", self.name),
        };
        async move { Ok(k.into_bytes()) }.boxed()
    }

    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<N>],
        log: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<N, OpError>> {
        async move {
            *self.runs.lock().entry(self.name.clone()).or_default() += 1;
            self.total.fetch_add(1, Ordering::SeqCst);
            log.log(format!("running {}\n", self.name).as_bytes());
            let parent = inputs.first().map_or(0, |n| n.0);
            match &self.toy {
                Toy::Const(n) => Ok(N(*n)),
                Toy::Add(n) => Ok(N(parent + n)),
                Toy::Sum => Ok(N(inputs.iter().map(|n| n.0).sum())),
                Toy::Meta => Ok(N(parent)),
                Toy::Fail => Err("exit code 1".into()),
                Toy::Meet(b) => {
                    tokio::time::timeout(Duration::from_secs(20), b.wait())
                        .await
                        .map_err(|_| "independent vertices did not run at the same time")?;
                    Ok(N(parent + 1))
                }
            }
        }
        .boxed()
    }
}

#[derive(Default, Clone)]
struct Counter {
    runs: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

impl Counter {
    fn op(&self, name: &str, toy: Toy) -> Arc<dyn Op<N>> {
        Arc::new(ToyOp {
            toy,
            name: name.into(),
            runs: self.runs.clone(),
            total: self.total.clone(),
        })
    }

    fn runs(&self, name: &str) -> usize {
        self.runs.lock().get(name).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.runs.lock().clear();
        self.total.store(0, Ordering::SeqCst);
    }
}

/// A linear stage: const `base`, then add each of `steps`.
fn chain(g: &mut Graph<N>, c: &Counter, prefix: &str, base: i64, steps: &[i64]) -> VertexId {
    let mut v = g.add(c.op(&format!("{prefix}0"), Toy::Const(base)), vec![], "");
    for (i, s) in steps.iter().enumerate() {
        v = g.add(
            c.op(&format!("{prefix}{}", i + 1), Toy::Add(*s)),
            vec![v],
            "",
        );
    }
    v
}

async fn solve(
    g: Graph<N>,
    cache: Arc<dyn ResultCache<N>>,
    targets: &[VertexId],
    opts: SolveOptions,
) -> Result<Vec<i64>, hoist_builder::solver::SolveError> {
    let s = Solver::new(Arc::new(g), cache, Arc::new(NoProgress), opts);
    Ok(s.solve(targets)
        .await?
        .into_iter()
        .map(|s| s.value.0)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hit_runs_nothing_and_a_miss_runs_everything_after_it() {
    let c = Counter::default();
    let cache: Arc<dyn ResultCache<N>> = Arc::new(MemoryCache::<N>::default());
    let build = |steps: &[i64]| {
        let mut g = Graph::new();
        let t = chain(&mut g, &c, "s", 1, steps);
        (g, t)
    };

    let (g, t) = build(&[10, 20, 30, 40]);
    assert_eq!(
        solve(g, cache.clone(), &[t], SolveOptions::default())
            .await
            .unwrap(),
        vec![101]
    );
    assert_eq!(c.total(), 5, "cold: the source and four steps run");

    c.reset();
    let (g, t) = build(&[10, 20, 30, 40]);
    assert_eq!(
        solve(g, cache.clone(), &[t], SolveOptions::default())
            .await
            .unwrap(),
        vec![101]
    );
    assert_eq!(c.runs("s0"), 1, "sources are always read");
    assert_eq!(c.total(), 1, "warm: every cacheable step is a hit");

    // Change step 2: steps 2, 3 and 4 run, step 1 is a hit.
    c.reset();
    let (g, t) = build(&[10, 21, 30, 40]);
    assert_eq!(
        solve(g, cache.clone(), &[t], SolveOptions::default())
            .await
            .unwrap(),
        vec![102]
    );
    assert_eq!(
        (c.runs("s1"), c.runs("s2"), c.runs("s3"), c.runs("s4")),
        (0, 1, 1, 1)
    );

    // --no-cache runs every step, and the results are stored again.
    c.reset();
    let (g, t) = build(&[10, 21, 30, 40]);
    let opts = SolveOptions { no_cache: true };
    assert_eq!(
        solve(g, cache.clone(), &[t], opts).await.unwrap(),
        vec![102]
    );
    assert_eq!(c.total(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_record_in_the_middle_reruns_the_rest_of_the_stage() {
    // A cache that lost the record of step 2 (as after a prune) but still has step 3's.
    struct Forgetful {
        inner: MemoryCache<N>,
        forget: Mutex<Option<hoist_builder::graph::CacheKey>>,
    }
    impl ResultCache<N> for Forgetful {
        fn load(&self, key: &hoist_builder::graph::CacheKey) -> Result<Option<N>, OpError> {
            if *self.forget.lock() == Some(*key) {
                return Ok(None);
            }
            self.inner.load(key)
        }
        fn save(&self, key: &hoist_builder::graph::CacheKey, value: &N) -> Result<(), OpError> {
            self.inner.save(key, value)
        }
    }
    let c = Counter::default();
    let cache = Arc::new(Forgetful {
        inner: MemoryCache::default(),
        forget: Mutex::new(None),
    });
    let mut g = Graph::new();
    let t = chain(&mut g, &c, "s", 0, &[1, 2, 3]);
    let g = Arc::new(g);
    let s = Solver::new(
        g.clone(),
        cache.clone(),
        Arc::new(NoProgress),
        SolveOptions::default(),
    );
    let solved = s.solve(&[VertexId(2)]).await.unwrap();
    s.solve(&[t]).await.unwrap();
    *cache.forget.lock() = Some(solved[0].key);
    c.reset();
    let out = s.solve(&[t]).await.unwrap();
    assert_eq!(out[0].value.0, 6);
    assert!(!out[0].hit);
    assert_eq!((c.runs("s1"), c.runs("s2"), c.runs("s3")), (0, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_key_runs_once_and_only_what_the_target_needs() {
    let c = Counter::default();
    let mut g = Graph::new();
    // Two stages with identical steps (same keys), a third unrelated stage, and a merge of the
    // first two.
    let a = chain(&mut g, &c, "a", 5, &[1, 2]);
    let b = chain(&mut g, &c, "b", 5, &[1, 2]);
    let _unused = chain(&mut g, &c, "u", 7, &[1, 1, 1]);
    let m = g.add(c.op("merge", Toy::Sum), vec![a, b], "");
    let out = solve(
        g,
        Arc::new(MemoryCache::default()),
        &[m],
        SolveOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out, vec![16]);
    // Each key once: a and b share every key, so only one of each pair ran.
    assert_eq!(c.runs("a1") + c.runs("b1"), 1);
    assert_eq!(c.runs("a2") + c.runs("b2"), 1);
    assert_eq!(c.runs("merge"), 1);
    // Only what the target needs.
    for u in ["u0", "u1", "u2", "u3"] {
        assert_eq!(c.runs(u), 0, "{u} is not needed by the target");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn independent_vertices_run_in_parallel() {
    let c = Counter::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let mut g = Graph::new();
    let mut tips = Vec::new();
    for s in ["x", "y", "z"] {
        let base = g.add(c.op(&format!("{s}0"), Toy::Const(1)), vec![], "");
        tips.push(g.add(
            c.op(&format!("{s}1"), Toy::Meet(barrier.clone())),
            vec![base],
            "",
        ));
    }
    let m = g.add(c.op("merge", Toy::Sum), tips, "");
    // The three meeting ops only get past their barrier if all three run at once.
    let out = solve(
        g,
        Arc::new(MemoryCache::default()),
        &[m],
        SolveOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out, vec![6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_ops_always_run_and_do_not_break_the_chain_of_hits() {
    let c = Counter::default();
    let cache: Arc<dyn ResultCache<N>> = Arc::new(MemoryCache::<N>::default());
    let build = || {
        let mut g = Graph::new();
        let s = g.add(c.op("src", Toy::Const(2)), vec![], "");
        let a = g.add(c.op("add", Toy::Add(3)), vec![s], "");
        let m = g.add(c.op("env", Toy::Meta), vec![a], "");
        let b = g.add(c.op("add2", Toy::Add(4)), vec![m], "");
        (g, b)
    };
    let (g, t) = build();
    solve(g, cache.clone(), &[t], SolveOptions::default())
        .await
        .unwrap();
    c.reset();
    let (g, t) = build();
    assert_eq!(
        solve(g, cache.clone(), &[t], SolveOptions::default())
            .await
            .unwrap(),
        vec![9]
    );
    assert_eq!(c.runs("env"), 1, "config ops are recomputed");
    assert_eq!(
        c.runs("add2"),
        0,
        "the step after a config op is still a hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failure_names_the_op_keeps_the_cache_and_skips_dependents() {
    let c = Counter::default();
    let cache: Arc<dyn ResultCache<N>> = Arc::new(MemoryCache::<N>::default());
    let build = || {
        let mut g = Graph::new();
        let ok = chain(&mut g, &c, "ok", 1, &[1, 1]);
        let s = g.add(c.op("src", Toy::Const(0)), vec![], "");
        let a = g.add(c.op("before", Toy::Add(1)), vec![s], "");
        let f = g.add(c.op("RUN false", Toy::Fail), vec![a], "");
        let after = g.add(c.op("after", Toy::Add(1)), vec![f], "");
        let m = g.add(c.op("merge", Toy::Sum), vec![ok, after], "");
        (g, m)
    };
    let (g, t) = build();
    let err = solve(g, cache.clone(), &[t], SolveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "RUN false: exit code 1");
    assert_eq!(c.runs("after"), 0);
    assert_eq!(c.runs("merge"), 0);
    assert_eq!(c.runs("ok2"), 1, "the independent branch finished");
    // Rerun: what succeeded before is cached; only the failing op runs again.
    c.reset();
    let (g, t) = build();
    solve(g, cache.clone(), &[t], SolveOptions::default())
        .await
        .unwrap_err();
    assert_eq!((c.runs("ok1"), c.runs("ok2"), c.runs("before")), (0, 0, 0));
    assert_eq!(c.runs("RUN false"), 1);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn event(&self, e: Event) {
        let s = match e {
            Event::Started { name, .. } => format!("start {name}"),
            Event::Cached { name, .. } => format!("cached {name}"),
            Event::Log { bytes, .. } => format!("log {}", String::from_utf8_lossy(&bytes).trim()),
            Event::Done { .. } => "done".into(),
            Event::Failed { error, .. } => format!("failed {error}"),
        };
        self.0.lock().push(s);
    }
}

#[test]
fn the_persistent_cache_survives_invocations_and_concurrent_builds() {
    let home = tempfile::tempdir().unwrap();
    let c = Counter::default();
    let run = |c: &Counter, progress: Arc<dyn Progress>| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cache: Arc<dyn ResultCache<N>> = Arc::new(BuildCache::open(home.path()).unwrap());
        let mut g = Graph::new();
        let t = chain(&mut g, c, "p", 3, &[1, 2, 3]);
        rt.block_on(solve_with(g, cache, t, progress))
    };
    async fn solve_with(
        g: Graph<N>,
        cache: Arc<dyn ResultCache<N>>,
        t: VertexId,
        progress: Arc<dyn Progress>,
    ) -> i64 {
        Solver::new(Arc::new(g), cache, progress, SolveOptions::default())
            .solve(&[t])
            .await
            .unwrap()[0]
            .value
            .0
    }
    // Four concurrent first builds, each with its own handle on the same cache directory.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| run(&c, Arc::new(NoProgress))))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 9);
        }
    });
    assert!(c.runs("p1") >= 1);
    // A later invocation: everything is a hit, and progress says so.
    c.reset();
    let rec = Arc::new(Recorder::default());
    assert_eq!(run(&c, rec.clone()), 9);
    assert_eq!(c.total(), 1, "only the source is read again");
    let events = rec.0.lock().clone();
    for step in ["p1", "p2", "p3"] {
        assert!(
            events.contains(&format!("cached {step}")),
            "{step} reported cached: {events:?}"
        );
    }
    // Prune everything: the next build runs every step again.
    drop(rec);
    let report = BuildCache::prune(home.path(), None).unwrap();
    assert_eq!(report.records_removed, 3);
    c.reset();
    let rec = Arc::new(Recorder::default());
    assert_eq!(run(&c, rec.clone()), 9);
    assert_eq!(c.total(), 4);
    assert!(rec.0.lock().contains(&"log running p2".to_string()));
}
