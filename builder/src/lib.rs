//! hoist-builder: Dockerfile frontend, op graph, cached solver and layer exporters.
//!
//! `Dockerfile + context -> dockerfile::parse -> graph (Vertex, Op, CacheKey) -> solver (parallel,
//! deduplicated, cached) -> snapshots -> exporters (image store, oci, docker, local)`.
//!
//! - [`dockerfile`], [`ignore`], [`context`]: the frontend (parser with spans, docker's word
//!   expansion, `.dockerignore` rules, build contexts).
//! - [`graph`]: ops and vertices, [`graph::CacheKey`] = sha256 of the normalised op and its
//!   inputs' keys. Knows nothing of Dockerfiles.
//! - [`solver`]: runs what a target needs, independent vertices in parallel, each key once, with
//!   the cache rule (a hit runs nothing; a miss runs that op and everything after it).
//! - [`cache`]: the persistent, concurrency-safe build cache under `$HOIST_HOME/builder/`
//!   (SQLite records + layer blobs, `prune --keep-storage`).
//! - [`build`]: the Dockerfile driver (entry points, options, errors, [`build::BuildServices`]);
//!   `convert`: stages -> ops, one function per instruction; `ops`: the ops and their cache keys
//!   (COPY/ADD written straight into an upper dir, RUN through a [`run::Runner`]); `layer`:
//!   layer writing and compression; [`run`]: the runner on the runtime's executor,
//!   [`snapshot`]: layer stacks (unpacked in the runtime's layer store, mounted with its
//!   `Rootfs`), [`export`]: image store, archives, local, [`tree`]: every file operation on an
//!   image or layer tree, confined to it (descriptors, `*at` calls, symlinks resolved inside).

pub mod build;
pub mod cache;
pub mod context;
pub(crate) mod convert;
pub mod dockerfile;
pub mod export;
pub mod git;
pub mod graph;
pub mod ignore;
pub(crate) mod layer;
pub(crate) mod ops;
pub mod run;
pub mod snapshot;
pub mod solver;
pub mod tree;
