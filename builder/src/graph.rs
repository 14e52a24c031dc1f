//! The op graph: what a build is, independent of Dockerfiles.
//!
//! A [`Graph`] is a list of [`Vertex`]es, each an [`Op`] plus the vertices it reads (its inputs).
//! Inputs always precede the vertex that reads them, so the list is a topological order and the
//! graph can hold no cycle. The first input of an op that extends a filesystem is its *parent*
//! (the previous step of its stage); further inputs are what it reads besides (`COPY --from`).
//!
//! Each op describes itself through [`Op::key`]: a normalised, deterministic byte string (fields
//! that do not change the result are left out; content checksums of what the op reads are put in,
//! never mtimes). The solver hashes that with the keys of the op's inputs into its [`CacheKey`]:
//! `sha256(len(kind) kind len(material) material count key(input)...)`.
//!
//! **Architecture Invariant:** this module and the solver know nothing of Dockerfiles. The
//! Dockerfile driver (`build`) turns stages into ops; toy ops in the solver tests exercise the
//! same code paths.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};

/// What kind of op a vertex is; shown in progress and hashed into its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A base: an image, the build context, `scratch`.
    Source,
    /// A command run in a container (`RUN`).
    Exec,
    /// Files copied into the parent's filesystem (`COPY`, `ADD`).
    Copy,
    /// Several inputs combined (`COPY --link` onto its parent).
    Merge,
    /// Config only, no filesystem change (`ENV`, `CMD`, ...).
    Meta,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Source => "source",
            OpKind::Exec => "exec",
            OpKind::Copy => "copy",
            OpKind::Merge => "merge",
            OpKind::Meta => "meta",
        }
    }
}

/// The error an op reports; the solver wraps it with the op's name.
pub type OpError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where an op streams its output (a `RUN`'s stdout and stderr), for progress.
pub trait LogSink: Send + Sync {
    fn log(&self, bytes: &[u8]);
}

/// One step of a build. `T` is the solver's value type: what a vertex produces and its
/// dependents read (for Dockerfiles, a filesystem snapshot plus image config).
pub trait Op<T>: Send + Sync {
    fn kind(&self) -> OpKind;

    /// A one-line description for progress and errors (`RUN make`, `COPY . /app`).
    fn name(&self) -> String;

    /// The normalised op, hashed with its inputs' keys into its cache key. May read files (a
    /// COPY hashes what it copies) or resolve a base image; never depends on mtimes.
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>>;

    /// Whether the op's result is kept in the persistent cache. Cheap ops (config updates,
    /// sources read from the image store) are recomputed every time and only take part in keys.
    fn cacheable(&self) -> bool {
        !matches!(self.kind(), OpKind::Meta | OpKind::Source)
    }

    /// Produces the op's value from its inputs' values (in input order).
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<T>],
        log: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<T, OpError>>;

    /// [`Op::run`] given the inputs' values to keep: what the solver calls. When the solver held
    /// the last reference to an input, an op that derives its value from that input (a config
    /// change) can take it with [`Arc::unwrap_or_clone`] instead of copying it, so a chain of
    /// such steps costs time linear in its length.
    fn run_owned<'a>(
        &'a self,
        inputs: Vec<Arc<T>>,
        log: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<T, OpError>>
    where
        T: Send + Sync + 'a,
    {
        Box::pin(async move { self.run(&inputs, log).await })
    }
}

/// The id of a vertex in its [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexId(pub usize);

/// An op and the vertices it reads.
pub struct Vertex<T> {
    pub op: Arc<dyn Op<T>>,
    pub inputs: Vec<VertexId>,
    /// Progress prefix, e.g. `[build 3/7]`; empty for none.
    pub label: String,
}

/// A build's ops in topological order.
pub struct Graph<T> {
    vertices: Vec<Vertex<T>>,
}

impl<T> Default for Graph<T> {
    fn default() -> Self {
        Graph {
            vertices: Vec::new(),
        }
    }
}

impl<T> Graph<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex reading `inputs`, which must already be in the graph.
    ///
    /// # Panics
    /// When an input is not in the graph (a programming error: the graph would not be acyclic).
    pub fn add(
        &mut self,
        op: Arc<dyn Op<T>>,
        inputs: Vec<VertexId>,
        label: impl Into<String>,
    ) -> VertexId {
        let id = VertexId(self.vertices.len());
        for i in &inputs {
            assert!(
                i.0 < id.0,
                "input {i:?} of vertex {id:?} is not in the graph"
            );
        }
        self.vertices.push(Vertex {
            op,
            inputs,
            label: label.into(),
        });
        id
    }

    pub fn vertex(&self, id: VertexId) -> &Vertex<T> {
        &self.vertices[id.0]
    }

    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// The vertices `targets` need (themselves included), in topological order.
    pub fn needed(&self, targets: &[VertexId]) -> Vec<VertexId> {
        let mut need = vec![false; self.vertices.len()];
        let mut stack: Vec<VertexId> = targets.to_vec();
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut need[v.0], true) {
                continue;
            }
            stack.extend(self.vertices[v.0].inputs.iter().copied());
        }
        (0..self.vertices.len())
            .filter(|&i| need[i])
            .map(VertexId)
            .collect()
    }
}

/// A vertex's cache key: sha256 over its kind, its normalised op and its inputs' keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// `sha256(len(kind) kind len(material) material count key(input)...)`: lengths prefix
    /// every variable part, so no two different ops share a preimage.
    pub fn compute(kind: OpKind, material: &[u8], inputs: &[CacheKey]) -> CacheKey {
        let mut h = Sha256::new();
        let kind = kind.as_str().as_bytes();
        h.update((kind.len() as u64).to_be_bytes());
        h.update(kind);
        h.update((material.len() as u64).to_be_bytes());
        h.update(material);
        h.update((inputs.len() as u64).to_be_bytes());
        for i in inputs {
            h.update(i.0);
        }
        CacheKey(h.finalize().into())
    }

    pub fn hex(&self) -> String {
        hex_of(&self.0)
    }

    pub fn parse_hex(s: &str) -> Option<CacheKey> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(CacheKey(out))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.hex()[..12])
    }
}

pub(crate) fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Builds an op's key material from fields: each field is length-prefixed, so
/// `field("ab") field("c")` and `field("a") field("bc")` differ.
#[derive(Debug, Default, Clone)]
pub struct KeyBuilder {
    buf: Vec<u8>,
}

impl KeyBuilder {
    pub fn new(tag: &str) -> Self {
        let mut k = KeyBuilder::default();
        k.str(tag);
        k
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&(b.len() as u64).to_be_bytes());
        self.buf.extend_from_slice(b);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn opt(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => {
                self.buf.push(1);
                self.str(s)
            }
            None => {
                self.buf.push(0);
                self
            }
        }
    }

    pub fn list<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.buf
            .extend_from_slice(&(items.len() as u64).to_be_bytes());
        for i in items {
            self.str(i.as_ref());
        }
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn finish(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_part() {
        let a = CacheKey::compute(OpKind::Exec, b"x", &[]);
        assert_ne!(a, CacheKey::compute(OpKind::Copy, b"x", &[]));
        assert_ne!(a, CacheKey::compute(OpKind::Exec, b"y", &[]));
        assert_ne!(a, CacheKey::compute(OpKind::Exec, b"x", &[a]));
        assert_eq!(a, CacheKey::compute(OpKind::Exec, b"x", &[]));
        assert_eq!(CacheKey::parse_hex(&a.to_string()), Some(a));
    }

    #[test]
    fn key_builder_separates_fields() {
        let mut a = KeyBuilder::new("t");
        a.str("ab").str("c");
        let mut b = KeyBuilder::new("t");
        b.str("a").str("bc");
        assert_ne!(a.finish(), b.finish());
        let mut c = KeyBuilder::new("t");
        c.opt(None).str("x");
        let mut d = KeyBuilder::new("t");
        d.opt(Some("x"));
        assert_ne!(c.finish(), d.finish());
    }
}
