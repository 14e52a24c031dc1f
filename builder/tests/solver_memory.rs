//! The solver holds a bounded number of results at a time: a result is dropped once no vertex still
//! to run needs it, so a chain of n steps whose results grow with n (an image config with one more
//! history entry per step) costs memory linear in n, not quadratic.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use hoist_builder::graph::{Graph, LogSink, Op, OpError, OpKind, VertexId};
use hoist_builder::solver::{NoCache, NoProgress, ResultCache, SolveOptions, Solver};

/// Counts the values alive and the most ever alive at once.
#[derive(Default)]
struct Live {
    now: AtomicUsize,
    peak: AtomicUsize,
}

struct Value {
    n: u64,
    live: Arc<Live>,
}

impl Value {
    fn new(n: u64, live: &Arc<Live>) -> Value {
        let now = live.now.fetch_add(1, Ordering::SeqCst) + 1;
        live.peak.fetch_max(now, Ordering::SeqCst);
        Value {
            n,
            live: live.clone(),
        }
    }
}

impl Clone for Value {
    fn clone(&self) -> Self {
        Value::new(self.n, &self.live)
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        self.live.now.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Step {
    kind: OpKind,
    n: u64,
    live: Arc<Live>,
}

impl Op<Value> for Step {
    fn kind(&self) -> OpKind {
        self.kind
    }
    fn name(&self) -> String {
        format!("step {}", self.n)
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move { Ok(format!("{:?} {}", self.kind, self.n).into_bytes()) }.boxed()
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Value>],
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Value, OpError>> {
        async move {
            let parent = inputs.first().map_or(0, |v| v.n);
            Ok(Value::new(parent + self.n, &self.live))
        }
        .boxed()
    }
}

/// A source and `steps` ops of `kind` after it; solves the last one.
async fn chain_peak(kind: OpKind, steps: u64, cache: Arc<dyn ResultCache<Value>>) -> usize {
    let live = Arc::new(Live::default());
    let mut g = Graph::new();
    let mut v = g.add(
        Arc::new(Step {
            kind: OpKind::Source,
            n: 0,
            live: live.clone(),
        }),
        vec![],
        "",
    );
    for n in 1..=steps {
        v = g.add(
            Arc::new(Step {
                kind,
                n,
                live: live.clone(),
            }),
            vec![v],
            "",
        );
    }
    let target: VertexId = v;
    let solver = Solver::new(
        Arc::new(g),
        cache,
        Arc::new(NoProgress),
        SolveOptions::default(),
    );
    let out = solver.solve(&[target]).await.unwrap();
    assert_eq!(out[0].value.n, steps * (steps + 1) / 2);
    live.peak.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_config_steps_holds_a_bounded_number_of_results() {
    let peak = chain_peak(OpKind::Meta, 2_000, Arc::new(NoCache)).await;
    assert!(
        peak <= 8,
        "{peak} results alive at once in a chain of 2,000 config steps"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_cached_steps_holds_a_bounded_number_of_results() {
    // Exec steps are saved in the cache; one that stores nothing, so only the solver's count.
    let peak = chain_peak(OpKind::Exec, 2_000, Arc::new(NoCache)).await;
    assert!(
        peak <= 8,
        "{peak} results alive at once in a chain of 2,000 exec steps"
    );
}
