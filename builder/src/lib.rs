//! hoist-builder: Dockerfile frontend, op graph, cached solver and layer exporters.
//!
//! `Dockerfile + context -> dockerfile::parse -> graph (Vertex, Op, CacheKey) -> solver (parallel,
//! deduplicated, cached) -> snapshots -> exporters (image store, oci, docker, local)`.

pub mod build;
pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod export;
pub mod graph;
pub mod ignore;
pub mod run;
pub mod snapshot;
pub mod solver;
